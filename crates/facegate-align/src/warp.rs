//! Resampling for alignment: bilinear, with black outside the source image (as OpenCV's
//! `warpAffine` with a constant border).

use facegate_image::{Rgb, RgbImage};

use crate::Similarity;

/// Output pixel `(u, v)` samples the source at `transform⁻¹(u, v)`.
pub fn warp_similarity(
    image: &RgbImage,
    transform: &Similarity,
    width: u32,
    height: u32,
) -> RgbImage {
    let inverse = transform.inverse();
    // Source pixels per output pixel; above 2, average sub-samples so the crop is not aliased.
    let steps = inverse.scale().ceil().clamp(1.0, 8.0) as i32;
    if steps <= 2 {
        return warp_bilinear(image, &inverse, width, height);
    }
    RgbImage::from_fn(width, height, |u, v| {
        let mut acc = [0.0f32; 3];
        for j in 0..steps {
            for i in 0..steps {
                let du = (i as f32 + 0.5) / steps as f32 - 0.5;
                let dv = (j as f32 + 0.5) / steps as f32 - 0.5;
                let [x, y] = inverse.apply([u as f32 + du, v as f32 + dv]);
                let p = sample(image, x, y).0;
                for c in 0..3 {
                    acc[c] += f32::from(p[c]);
                }
            }
        }
        let n = (steps * steps) as f32;
        Rgb(acc.map(|a| (a / n).round() as u8))
    })
}

/// One bilinear sample per output pixel: the arithmetic of [`sample`], written for speed (an
/// alignment crop is on every verify's critical path): pixels converted to float through a
/// table and written straight into the output buffer, not through a closure per pixel.
fn warp_bilinear(image: &RgbImage, inverse: &Similarity, width: u32, height: u32) -> RgbImage {
    // Pixels go in groups: first every coordinate of the group, then every load, then every
    // blend, so the arithmetic runs several pixels per instruction.
    const GROUP: usize = 16;
    let (w, h) = (image.width() as i64, image.height() as i64);
    let raw = image.as_raw();
    let stride = w as usize * 3;
    let to_f32: [f32; 256] = std::array::from_fn(|i| i as f32);
    let mut out = vec![0u8; width as usize * height as usize * 3];
    for (v, out_row) in out.chunks_exact_mut(width as usize * 3).enumerate() {
        for (g, out_group) in out_row.chunks_mut(GROUP * 3).enumerate() {
            let n = out_group.len() / 3;
            let (mut fx, mut fy) = ([0.0f32; GROUP], [0.0f32; GROUP]);
            let mut at = [usize::MAX; GROUP];
            for k in 0..n {
                let [x, y] = inverse.apply([(g * GROUP + k) as f32, v as f32]);
                let (x0, y0) = (floor(x), floor(y));
                (fx[k], fy[k]) = (x - x0, y - y0);
                let (x0, y0) = (x0 as i64, y0 as i64);
                if x0 >= 0 && y0 >= 0 && x0 + 1 < w && y0 + 1 < h {
                    at[k] = y0 as usize * stride + x0 as usize * 3;
                } else {
                    out_group[k * 3..k * 3 + 3].copy_from_slice(&sample(image, x, y).0);
                }
            }
            // The four neighbours of each pixel, channel by channel (zeros for pixels done above).
            let mut p = [[[0.0f32; GROUP]; 3]; 4];
            for k in 0..n {
                if at[k] == usize::MAX {
                    continue;
                }
                let i = at[k];
                for c in 0..3 {
                    p[0][c][k] = to_f32[usize::from(raw[i + c])];
                    p[1][c][k] = to_f32[usize::from(raw[i + 3 + c])];
                    p[2][c][k] = to_f32[usize::from(raw[i + stride + c])];
                    p[3][c][k] = to_f32[usize::from(raw[i + stride + 3 + c])];
                }
            }
            let mut value = [[0u8; GROUP]; 3];
            for c in 0..3 {
                for k in 0..GROUP {
                    let top = p[0][c][k] * (1.0 - fx[k]) + p[1][c][k] * fx[k];
                    let bottom = p[2][c][k] * (1.0 - fx[k]) + p[3][c][k] * fx[k];
                    value[c][k] = round_to_u8(top * (1.0 - fy[k]) + bottom * fy[k]);
                }
            }
            for k in 0..n {
                if at[k] != usize::MAX {
                    for c in 0..3 {
                        out_group[k * 3 + c] = value[c][k];
                    }
                }
            }
        }
    }
    // The buffer has exactly width * height pixels, so this cannot fail.
    RgbImage::from_raw(width, height, out).unwrap_or_else(|| RgbImage::new(width, height))
}

/// `v.round().clamp(0.0, 255.0) as u8` without a call into libm and without branches (the
/// rounding is the same, half away from zero; a NaN passes the clamp and casts to 0).
fn round_to_u8(v: f32) -> u8 {
    let v = v.clamp(0.0, 255.0);
    let whole = v as i32;
    let up = i32::from(v - whole as f32 >= 0.5);
    (whole + up) as u8
}

/// Resamples the (possibly out-of-bounds) box `[x1, y1, x2, y2]` to `width x height`.
pub fn crop_resize(image: &RgbImage, b: [f32; 4], width: u32, height: u32) -> RgbImage {
    let sx = (b[2] - b[0]) / width as f32;
    let sy = (b[3] - b[1]) / height as f32;
    RgbImage::from_fn(width, height, |u, v| {
        // Pixel centres map to pixel centres.
        let x = b[0] + (u as f32 + 0.5) * sx - 0.5;
        let y = b[1] + (v as f32 + 0.5) * sy - 0.5;
        sample_area(image, x, y, sx, sy)
    })
}

fn sample(image: &RgbImage, x: f32, y: f32) -> Rgb<u8> {
    let (w, h) = (image.width() as i64, image.height() as i64);
    let (x0, y0) = (floor(x), floor(y));
    let (fx, fy) = (x - x0, y - y0);
    let (x0, y0) = (x0 as i64, y0 as i64);
    let blend = |p00: [f32; 3], p10: [f32; 3], p01: [f32; 3], p11: [f32; 3]| {
        Rgb(std::array::from_fn(|c| {
            let top = p00[c] * (1.0 - fx) + p10[c] * fx;
            let bottom = p01[c] * (1.0 - fx) + p11[c] * fx;
            round_to_u8(top * (1.0 - fy) + bottom * fy)
        }))
    };
    if x0 >= 0 && y0 >= 0 && x0 + 1 < w && y0 + 1 < h {
        // All four neighbours inside: read them straight from the buffer (the common case).
        let raw = image.as_raw();
        let row = w as usize * 3;
        let i = y0 as usize * row + x0 as usize * 3;
        let at = |i: usize| [raw[i], raw[i + 1], raw[i + 2]].map(f32::from);
        return blend(at(i), at(i + 3), at(i + row), at(i + row + 3));
    }
    let pixel = |px: i64, py: i64| -> [f32; 3] {
        if px < 0 || py < 0 || px >= w || py >= h {
            [0.0; 3]
        } else {
            image.get_pixel(px as u32, py as u32).0.map(f32::from)
        }
    };
    blend(
        pixel(x0, y0),
        pixel(x0 + 1, y0),
        pixel(x0, y0 + 1),
        pixel(x0 + 1, y0 + 1),
    )
}

/// `x.floor()` without a call into libm (baseline x86-64 has no rounding instruction): exact
/// for every `|x| < 2^31`, and far outside any image beyond that.
fn floor(x: f32) -> f32 {
    if x.abs() >= 2_147_483_648.0 || x.is_nan() {
        return x.floor();
    }
    let truncated = x as i32 as f32;
    if truncated > x {
        truncated - 1.0
    } else if truncated == x {
        x // keeps the sign of -0.0
    } else {
        truncated
    }
}

/// When shrinking by more than 2x, average a small grid of bilinear samples so the crop is not
/// aliased; otherwise plain bilinear.
fn sample_area(image: &RgbImage, x: f32, y: f32, sx: f32, sy: f32) -> Rgb<u8> {
    let steps = sx.max(sy).ceil().clamp(1.0, 8.0) as i32;
    if steps <= 2 {
        return sample(image, x, y);
    }
    let mut acc = [0.0f32; 3];
    for j in 0..steps {
        for i in 0..steps {
            let ox = ((i as f32 + 0.5) / steps as f32 - 0.5) * sx;
            let oy = ((j as f32 + 0.5) / steps as f32 - 0.5) * sy;
            let p = sample(image, x + ox, y + oy).0;
            for c in 0..3 {
                acc[c] += f32::from(p[c]);
            }
        }
    }
    let n = (steps * steps) as f32;
    Rgb(acc.map(|v| (v / n).round() as u8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_matches_libm() {
        let mut values = vec![
            -0.0,
            0.0,
            -0.5,
            -1.0,
            -1.5,
            1.0,
            0.99999994,
            -0.99999994,
            1e9,
            -1e9,
            3e9,
            -3e9,
            f32::MAX,
            f32::MIN,
            8388609.0,
            -8388609.0,
        ];
        values.extend((-200_000..200_000).map(|i| i as f32 * 0.00137));
        for v in values {
            assert_eq!(floor(v).to_bits(), v.floor().to_bits(), "{v}");
        }
    }

    #[test]
    fn rounding_matches_round_then_clamp() {
        let mut values = vec![
            0.0,
            -0.0,
            -0.3,
            0.49999997,
            0.5,
            1.5,
            2.5,
            254.49998,
            254.5,
            255.0,
            255.4,
            300.0,
            f32::NAN,
        ];
        // Every float between 0 and 256 in steps that land on and beside the halves.
        values.extend((0..2_560_000).map(|i| i as f32 * 1e-4));
        for v in values {
            let expected = v.round().clamp(0.0, 255.0) as u8;
            assert_eq!(round_to_u8(v), expected, "{v}");
        }
    }

    #[test]
    fn the_fast_warp_equals_per_pixel_sampling_bit_for_bit() {
        let image = RgbImage::from_fn(61, 47, |x, y| {
            Rgb([(x * 37 + y * 11) as u8, (x * y) as u8, (x ^ y) as u8])
        });
        // Rotated, scaled and shifted so that parts of the crop fall outside the image.
        for (k, angle) in [0.0f32, 0.3, -0.7, 2.5].into_iter().enumerate() {
            let scale = 0.6 + 0.35 * k as f32;
            let inverse = Similarity {
                a: scale * angle.cos(),
                b: scale * angle.sin(),
                tx: -9.3 + 7.1 * k as f32,
                ty: 4.7 - 3.3 * k as f32,
            };
            let fast = warp_bilinear(&image, &inverse, 50, 40);
            for v in 0..40 {
                for u in 0..50 {
                    let [x, y] = inverse.apply([u as f32, v as f32]);
                    assert_eq!(fast.get_pixel(u, v), &sample(&image, x, y), "({u}, {v})");
                }
            }
        }
    }

    #[test]
    fn sampling_inside_and_across_the_border_agree_with_plain_bilinear() {
        let image = RgbImage::from_fn(7, 5, |x, y| {
            Rgb([(x * 37 + y * 11) as u8, (x * y) as u8, 200])
        });
        let reference = |x: f32, y: f32| -> [u8; 3] {
            let (x0, y0) = (x.floor(), y.floor());
            let (fx, fy) = (x - x0, y - y0);
            let get = |px: f32, py: f32| -> [f32; 3] {
                if px < 0.0 || py < 0.0 || px >= 7.0 || py >= 5.0 {
                    [0.0; 3]
                } else {
                    image.get_pixel(px as u32, py as u32).0.map(f32::from)
                }
            };
            let (a, b, c, d) = (
                get(x0, y0),
                get(x0 + 1.0, y0),
                get(x0, y0 + 1.0),
                get(x0 + 1.0, y0 + 1.0),
            );
            std::array::from_fn(|k| {
                let top = a[k] * (1.0 - fx) + b[k] * fx;
                let bottom = c[k] * (1.0 - fx) + d[k] * fx;
                (top * (1.0 - fy) + bottom * fy).round().clamp(0.0, 255.0) as u8
            })
        };
        for j in -8..48 {
            for i in -8..64 {
                let (x, y) = (i as f32 * 0.137 - 0.9, j as f32 * 0.121 - 0.9);
                assert_eq!(sample(&image, x, y).0, reference(x, y), "at ({x}, {y})");
            }
        }
    }
}
