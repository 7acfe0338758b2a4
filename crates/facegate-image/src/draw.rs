//! Minimal drawing for `facegate detect --draw`: box outlines and landmark dots.

use image::{Rgb, RgbImage};

/// Draws the outline of the box `[x1, y1, x2, y2]` (clipped to the image).
pub fn draw_box(image: &mut RgbImage, bbox: [f32; 4], color: Rgb<u8>, thickness: u32) {
    let (w, h) = image.dimensions();
    if w == 0 || h == 0 {
        return;
    }
    let clamp_x = |v: f32| (v.round().max(0.0) as u32).min(w - 1);
    let clamp_y = |v: f32| (v.round().max(0.0) as u32).min(h - 1);
    let (x1, y1, x2, y2) = (
        clamp_x(bbox[0]),
        clamp_y(bbox[1]),
        clamp_x(bbox[2]),
        clamp_y(bbox[3]),
    );
    for t in 0..thickness {
        for x in x1..=x2 {
            for y in [y1.saturating_add(t).min(h - 1), y2.saturating_sub(t)] {
                image.put_pixel(x, y, color);
            }
        }
        for y in y1..=y2 {
            for x in [x1.saturating_add(t).min(w - 1), x2.saturating_sub(t)] {
                image.put_pixel(x, y, color);
            }
        }
    }
}

/// Draws a filled square dot of the given radius centred on `(x, y)`.
pub fn draw_point(image: &mut RgbImage, x: f32, y: f32, radius: i32, color: Rgb<u8>) {
    let (w, h) = image.dimensions();
    let (cx, cy) = (x.round() as i64, y.round() as i64);
    for dy in -radius..=radius {
        for dx in -radius..=radius {
            let (px, py) = (cx + i64::from(dx), cy + i64::from(dy));
            if px >= 0 && py >= 0 && px < i64::from(w) && py < i64::from(h) {
                image.put_pixel(px as u32, py as u32, color);
            }
        }
    }
}
