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
    RgbImage::from_fn(width, height, |u, v| {
        if steps <= 2 {
            let [x, y] = inverse.apply([u as f32, v as f32]);
            return sample(image, x, y);
        }
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
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let (x0, y0) = (x0 as i64, y0 as i64);
    let pixel = |px: i64, py: i64| -> [f32; 3] {
        if px < 0 || py < 0 || px >= w || py >= h {
            [0.0; 3]
        } else {
            image.get_pixel(px as u32, py as u32).0.map(f32::from)
        }
    };
    let (p00, p10, p01, p11) = (
        pixel(x0, y0),
        pixel(x0 + 1, y0),
        pixel(x0, y0 + 1),
        pixel(x0 + 1, y0 + 1),
    );
    Rgb(std::array::from_fn(|c| {
        let top = p00[c] * (1.0 - fx) + p10[c] * fx;
        let bottom = p01[c] * (1.0 - fx) + p11[c] * fx;
        (top * (1.0 - fy) + bottom * fy).round().clamp(0.0, 255.0) as u8
    }))
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
