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

    /// The window `[y0, y1) x [x0, x1)` (given as `[y0, y1, x0, x1]`) resampled to
    /// `out_h x out_w`, written into `out` (`channels * out_h * out_w` values) with `finish`
    /// applied to each value: a caller that scales the pixels next saves a pass over them.
    pub fn crop_resize_into(
        &self,
        [y0, y1, x0, x1]: [usize; 4],
        out_h: usize,
        out_w: usize,
        out: &mut [f32],
        finish: impl Fn(f32) -> f32,
    ) {
        let in_w = x1 - x0;
        let rows = cell_ranges(y1 - y0, out_h);
        let cols = Columns::new(in_w, out_w);
        // Rows first into a scratch buffer, then columns: the mean of a rectangle is separable.
        // Each scratch row has zeros after its `in_w` values, for the fixed-width column sums.
        let stride = in_w + TAPS;
        let mut scratch = vec![0.0f32; out_h * stride];
        let mut sums = vec![0.0f32; out_w];
        for (c, out) in out.chunks_exact_mut(out_h * out_w).enumerate() {
            let plane =
                &self.data[c * self.height * self.width..(c + 1) * self.height * self.width];
            for (oy, &(start, end)) in rows.iter().enumerate() {
                let inv = 1.0 / (end - start) as f32;
                let dst = &mut scratch[oy * stride..oy * stride + in_w];
                let row = |y: usize| &plane[(y0 + y) * self.width + x0..(y0 + y) * self.width + x1];
                dst.copy_from_slice(row(start));
                for y in start + 1..end {
                    for (d, s) in dst.iter_mut().zip(row(y)) {
                        *d += s;
                    }
                }
                for d in dst.iter_mut() {
                    *d *= inv;
                }
            }
            for (oy, out) in out.chunks_exact_mut(out_w).enumerate() {
                cols.sum(&scratch[oy * stride..(oy + 1) * stride], &mut sums);
                for ((o, &sum), &count) in out.iter_mut().zip(&sums).zip(&cols.counts) {
                    *o = finish(sum / count);
                }
            }
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

    /// The whole image resampled to `out_h x out_w`, with `finish` applied to each value.
    pub fn resize_with(&self, out_h: usize, out_w: usize, finish: impl Fn(f32) -> f32) -> Planar {
        let mut data = vec![0.0; self.channels * out_h * out_w];
        self.crop_resize_into(
            [0, self.height, 0, self.width],
            out_h,
            out_w,
            &mut data,
            finish,
        );
        Planar {
            channels: self.channels,
            height: out_h,
            width: out_w,
            data,
        }
    }
}

/// Column sums of up to this many values run without branches.
const TAPS: usize = 4;

/// The output columns' cells, prepared once per resize.
struct Columns {
    cells: Vec<(usize, usize)>,
    /// Each cell's width as a float, the divisor of its mean.
    counts: Vec<f32>,
    /// Per cell, 1.0 for each of the first `TAPS` values inside it and 0.0 after.
    masks: Vec<[f32; TAPS]>,
    narrow: bool,
}

impl Columns {
    fn new(input: usize, output: usize) -> Columns {
        let cells = cell_ranges(input, output);
        let counts = cells.iter().map(|&(s, e)| (e - s) as f32).collect();
        let masks = cells
            .iter()
            .map(|&(s, e)| std::array::from_fn(|k| if k < e - s { 1.0 } else { 0.0 }))
            .collect();
        let narrow = cells.iter().all(|&(s, e)| e - s <= TAPS);
        Columns {
            cells,
            counts,
            masks,
            narrow,
        }
    }

    /// Each cell's sum over `row` (which has `TAPS` zeros after its values), added left to
    /// right as a plain loop would. Cells of at most `TAPS` values, the common case, add a
    /// fixed number of terms with the extra ones multiplied by zero: the values are finite and
    /// non-negative, so adding `0.0` changes no sum and no branch mispredicts.
    fn sum(&self, row: &[f32], sums: &mut [f32]) {
        if self.narrow {
            for ((sum, &(start, _)), mask) in sums.iter_mut().zip(&self.cells).zip(&self.masks) {
                let v = &row[start..start + TAPS];
                *sum = ((v[0] + v[1] * mask[1]) + v[2] * mask[2]) + v[3] * mask[3];
            }
        } else {
            for (sum, &(start, end)) in sums.iter_mut().zip(&self.cells) {
                *sum = row[start..end].iter().sum();
            }
        }
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
        let out = img.resize_with(1, 2, |v| v);
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

    /// The plain loops the fast path must equal bit for bit: per output row, the mean of the
    /// cell's rows; then per output value, the sum of the cell's columns over their count.
    fn plain_crop_resize(
        img: &Planar,
        [y0, y1, x0, x1]: [usize; 4],
        oh: usize,
        ow: usize,
    ) -> Vec<f32> {
        let (rows, cols) = (cell_ranges(y1 - y0, oh), cell_ranges(x1 - x0, ow));
        let mut out = Vec::new();
        for c in 0..img.channels {
            let at = |y: usize, x: usize| img.data[(c * img.height + y0 + y) * img.width + x0 + x];
            let means: Vec<Vec<f32>> = rows
                .iter()
                .map(|&(s, e)| {
                    let inv = 1.0 / (e - s) as f32;
                    (0..x1 - x0)
                        .map(|x| (s..e).fold(0.0f32, |acc, y| acc + at(y, x)) * inv)
                        .collect()
                })
                .collect();
            for row in &means {
                for &(s, e) in &cols {
                    out.push(row[s..e].iter().sum::<f32>() / (e - s) as f32);
                }
            }
        }
        out
    }

    #[test]
    fn fast_resampling_equals_the_plain_loops_bit_for_bit() {
        let mut state = 0x2545_f491_u64;
        let mut next = |n: usize| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) as usize % n
        };
        let img = Planar {
            channels: 3,
            height: 97,
            width: 131,
            data: (0..3 * 97 * 131).map(|_| next(256) as f32).collect(),
        };
        for _ in 0..300 {
            let (y0, x0) = (next(96), next(130));
            let (y1, x1) = (y0 + 1 + next(97 - y0), x0 + 1 + next(131 - x0));
            // Upscales, mild and strong downscales (wide cells take the general path).
            let (oh, ow) = (1 + next(60), 1 + next(60));
            let window = [y0, y1, x0, x1];
            let plain = plain_crop_resize(&img, window, oh, ow);
            let mut fast = vec![0.0; plain.len()];
            img.crop_resize_into(window, oh, ow, &mut fast, |v| v);
            for (f, p) in fast.iter().zip(&plain) {
                assert_eq!(f.to_bits(), p.to_bits(), "window {window:?} to {oh}x{ow}");
            }
            img.crop_resize_into(window, oh, ow, &mut fast, |v| v * 0.5 - 1.0);
            for (f, p) in fast.iter().zip(&plain) {
                assert_eq!(f.to_bits(), (p * 0.5 - 1.0).to_bits());
            }
        }
    }

    #[test]
    fn uneven_cells_overlap_like_adaptive_pooling() {
        assert_eq!(cell_ranges(5, 3), vec![(0, 2), (1, 4), (3, 5)]);
        assert_eq!(cell_ranges(2, 4), vec![(0, 1), (0, 1), (1, 2), (1, 2)]);
    }
}
