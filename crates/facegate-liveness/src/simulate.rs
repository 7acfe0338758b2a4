//! A measurable stand-in for presentation attacks, for tests and evaluation only.
//!
//! No re-photographed prints or screens are available here, so these functions make the
//! artefacts such captures carry from a genuine photo: a screen replay (resolution loss, the
//! moiré of a pixel grid sampled by a camera, a display's gamma and colour cast, a bezel) and
//! a halftone print (a dot screen, paper white, lost saturation). They are a proxy: a real
//! attack can look quite different, and the README says so.

use facegate_image::{Rgb, RgbImage};

/// The photo as if shown on a screen and photographed: the same size as the input.
pub fn screen_replay(photo: &RgbImage) -> RgbImage {
    let (w, h) = photo.dimensions();
    // The screen shows the photo at lower resolution than the camera captures it.
    let soft = resize(&resize(photo, (w * 2 / 5).max(1), (h * 2 / 5).max(1)), w, h);
    // A bezel of 6% on each side, the picture inside it shrunk to fit.
    let border_x = w * 6 / 100;
    let border_y = h * 6 / 100;
    let inner = resize(&soft, w - 2 * border_x, h - 2 * border_y);
    RgbImage::from_fn(w, h, |x, y| {
        if x < border_x || y < border_y || x >= w - border_x || y >= h - border_y {
            return Rgb([18, 18, 22]);
        }
        let p = inner.get_pixel(x - border_x, y - border_y).0;
        let (fx, fy) = (x as f32, y as f32);
        // A slightly rotated grating near the sampling frequency aliases into moiré bands;
        // the sub-pixel stripes tint columns red, green, blue in turn.
        let moire = 0.18 * (2.9 * (fx * 0.996 + fy * 0.087)).sin() * (2.7 * fy).sin();
        let stripe = [0.92, 1.0, 1.06][(x % 3) as usize];
        let mut out = [0u8; 3];
        for c in 0..3 {
            let v = f32::from(p[c]) / 255.0;
            // A display's gamma and limited contrast, with a blue cast.
            let v = v.powf(0.8) * 0.82 + 0.08;
            let cast = [0.94, 1.0, 1.1][c];
            let channel_stripe = if c == (x % 3) as usize { stripe } else { 1.0 };
            out[c] = ((v * cast * channel_stripe * (1.0 + moire)) * 255.0).clamp(0.0, 255.0) as u8;
        }
        Rgb(out)
    })
}

/// The photo as if printed with a halftone screen and photographed.
pub fn halftone_print(photo: &RgbImage) -> RgbImage {
    let period = 4.0f32;
    let angles = [15f32.to_radians(), 75f32.to_radians(), 0.0];
    RgbImage::from_fn(photo.width(), photo.height(), |x, y| {
        let p = photo.get_pixel(x, y).0;
        let mean = (f32::from(p[0]) + f32::from(p[1]) + f32::from(p[2])) / 3.0;
        let mut out = [0u8; 3];
        for c in 0..3 {
            // Ink covers less saturation than the original had.
            let v = (0.7 * f32::from(p[c]) + 0.3 * mean) / 255.0;
            let (s, co) = angles[c].sin_cos();
            let (u, w) = (
                x as f32 * co + y as f32 * s,
                -(x as f32) * s + y as f32 * co,
            );
            // Distance to the centre of this cell's dot, 0 (centre) to ~0.7 (corner).
            let du = (u / period).fract() - 0.5;
            let dw = (w / period).fract() - 0.5;
            let dot = (du * du + dw * dw).sqrt();
            // Darker tone, larger dot: ink where the dot radius exceeds this distance.
            let radius = (1.0 - v).sqrt() * 0.62;
            let inked = dot < radius;
            let paper = 238.0;
            out[c] = if inked {
                (paper * 0.18) as u8
            } else {
                paper as u8
            };
        }
        Rgb(out)
    })
}

/// Bilinear resize (pixel centres aligned).
fn resize(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (w, h) = image.dimensions();
    let sx = w as f32 / width as f32;
    let sy = h as f32 / height as f32;
    RgbImage::from_fn(width, height, |x, y| {
        let fx = ((x as f32 + 0.5) * sx - 0.5).clamp(0.0, (w - 1) as f32);
        let fy = ((y as f32 + 0.5) * sy - 0.5).clamp(0.0, (h - 1) as f32);
        let (x0, y0) = (fx.floor() as u32, fy.floor() as u32);
        let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
        let (tx, ty) = (fx - x0 as f32, fy - y0 as f32);
        let mut out = [0u8; 3];
        for (c, v) in out.iter_mut().enumerate() {
            let at = |x, y| f32::from(image.get_pixel(x, y).0[c]);
            let top = at(x0, y0) * (1.0 - tx) + at(x1, y0) * tx;
            let bottom = at(x0, y1) * (1.0 - tx) + at(x1, y1) * tx;
            *v = (top * (1.0 - ty) + bottom * ty).round() as u8;
        }
        Rgb(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulations_keep_the_size_and_change_the_pixels() {
        let photo = RgbImage::from_fn(60, 40, |x, y| Rgb([(x * 4) as u8, (y * 6) as u8, 90]));
        for attack in [screen_replay(&photo), halftone_print(&photo)] {
            assert_eq!(attack.dimensions(), photo.dimensions());
            assert_ne!(attack, photo);
        }
        // The bezel is dark.
        assert_eq!(screen_replay(&photo).get_pixel(0, 0), &Rgb([18, 18, 22]));
    }
}
