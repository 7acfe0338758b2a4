//! "Area" resampling: each output pixel is the mean of the input pixels its cell covers, as
//! PyTorch's `interpolate(mode="area")` (adaptive average pooling) computes it. MTCNN was run
//! with this resampling in facenet-pytorch; using the same keeps detections identical.

/// A planar float image: `channels` planes of `height * width` values.
#[derive(Clone, Debug)]
pub struct Planar {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub data: Vec<f32>,
}

impl Planar {
    pub fn from_rgb(image: &facegate_image::RgbImage) -> Planar {
        let (width, height) = (image.width() as usize, image.height() as usize);
        let mut data = vec![0.0; 3 * width * height];
        for (i, pixel) in image.pixels().enumerate() {
            for c in 0..3 {
                data[c * width * height + i] = f32::from(pixel.0[c]);
            }
        }
        Planar {
            channels: 3,
            height,
            width,
            data,
        }
    }

    /// The window `[y0, y1) x [x0, x1)`, resampled to `out_h x out_w`.
    pub fn crop_resize(
        &self,
        y0: usize,
        y1: usize,
        x0: usize,
        x1: usize,
        out_h: usize,
        out_w: usize,
    ) -> Planar {
        let (in_h, in_w) = (y1 - y0, x1 - x0);
        let rows = cell_ranges(in_h, out_h);
        let cols = cell_ranges(in_w, out_w);
        let mut data = vec![0.0; self.channels * out_h * out_w];
        // Rows first into a scratch buffer, then columns: the mean of a rectangle is separable.
        let mut scratch = vec![0.0f32; out_h * in_w];
        for c in 0..self.channels {
            let plane =
                &self.data[c * self.height * self.width..(c + 1) * self.height * self.width];
            for (oy, &(start, end)) in rows.iter().enumerate() {
                let inv = 1.0 / (end - start) as f32;
                let dst = &mut scratch[oy * in_w..(oy + 1) * in_w];
                dst.fill(0.0);
                for y in start..end {
                    let src = &plane[(y0 + y) * self.width + x0..(y0 + y) * self.width + x1];
                    for (d, s) in dst.iter_mut().zip(src) {
                        *d += s;
                    }
                }
                for d in dst.iter_mut() {
                    *d *= inv;
                }
            }
            let out = &mut data[c * out_h * out_w..(c + 1) * out_h * out_w];
            for oy in 0..out_h {
                let src = &scratch[oy * in_w..(oy + 1) * in_w];
                for (ox, &(start, end)) in cols.iter().enumerate() {
                    let sum: f32 = src[start..end].iter().sum();
                    out[oy * out_w + ox] = sum / (end - start) as f32;
                }
            }
        }
        Planar {
            channels: self.channels,
            height: out_h,
            width: out_w,
            data,
        }
    }

    /// The rows `rows` of every plane, as an image of their own.
    pub fn rows(&self, rows: std::ops::Range<usize>) -> Planar {
        let plane = self.height * self.width;
        let data = (0..self.channels)
            .flat_map(|c| {
                &self.data[c * plane + rows.start * self.width..c * plane + rows.end * self.width]
            })
            .copied()
            .collect();
        Planar {
            channels: self.channels,
            height: rows.len(),
            width: self.width,
            data,
        }
    }

    pub fn resize(&self, out_h: usize, out_w: usize) -> Planar {
        self.crop_resize(0, self.height, 0, self.width, out_h, out_w)
    }
}

/// `[floor(i * n / m), ceil((i + 1) * n / m))` for each output index `i`.
fn cell_ranges(input: usize, output: usize) -> Vec<(usize, usize)> {
    (0..output)
        .map(|i| {
            let start = i * input / output;
            let end = ((i + 1) * input).div_ceil(output);
            (start, end.max(start + 1))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halving_averages_2x2_blocks() {
        let img = Planar {
            channels: 1,
            height: 2,
            width: 4,
            data: vec![1.0, 3.0, 5.0, 7.0, 3.0, 5.0, 7.0, 9.0],
        };
        let out = img.resize(1, 2);
        assert_eq!(out.data, vec![3.0, 7.0]);
    }

    #[test]
    fn rows_cut_every_plane() {
        let img = Planar {
            channels: 2,
            height: 3,
            width: 2,
            data: (0..12).map(|v| v as f32).collect(),
        };
        let strip = img.rows(1..3);
        assert_eq!((strip.height, strip.width), (2, 2));
        assert_eq!(strip.data, vec![2.0, 3.0, 4.0, 5.0, 8.0, 9.0, 10.0, 11.0]);
    }

    #[test]
    fn uneven_cells_overlap_like_adaptive_pooling() {
        assert_eq!(cell_ranges(5, 3), vec![(0, 2), (1, 4), (3, 5)]);
        assert_eq!(cell_ranges(2, 4), vec![(0, 1), (0, 1), (1, 2), (1, 2)]);
    }
}
