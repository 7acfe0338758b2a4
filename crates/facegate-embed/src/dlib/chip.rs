//! dlib's face chips: `get_face_chip_details(shape, 150, 0.25)` and `extract_image_chip`, as
//! specified in `tools/golden/dlib_format.md` §4 (bilinear, truncated to u8, black outside,
//! with dlib's half-size pyramid for large faces).

use facegate_image::{Rgb, RgbImage};

/// dlib's 5-point template on the unit square (parts 0..4 of the shape predictor).
const TEMPLATE: [[f64; 2]; 5] = [
    [0.8595674595992, 0.2134981538014],
    [0.6460604764104, 0.2289674387677],
    [0.1205750620789, 0.2137274526848],
    [0.3340850613712, 0.2290642403242],
    [0.4901123135679, 0.6277975316475],
];

/// Where to cut: a rotated square, `rect` in dlib's inclusive convention.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChipDetails {
    pub rect: [f64; 4],
    pub angle: f64,
    pub size: u32,
}

pub fn chip_details(points: &[[f32; 2]; 5], size: u32, padding: f64) -> ChipDetails {
    let s = f64::from(size);
    let chip: Vec<[f64; 2]> = TEMPLATE
        .iter()
        .map(|[x, y]| {
            [
                (padding + x) / (2.0 * padding + 1.0) * s,
                (padding + y) / (2.0 * padding + 1.0) * s,
            ]
        })
        .collect();
    let image: Vec<[f64; 2]> = points
        .iter()
        .map(|p| [f64::from(p[0]), f64::from(p[1])])
        .collect();
    let mean = |v: &[[f64; 2]]| {
        let n = v.len() as f64;
        [
            v.iter().map(|p| p[0]).sum::<f64>() / n,
            v.iter().map(|p| p[1]).sum::<f64>() / n,
        ]
    };
    let (mc, mi) = (mean(&chip), mean(&image));
    let (mut dot, mut cross, mut den) = (0.0, 0.0, 0.0);
    for (c, p) in chip.iter().zip(&image) {
        let (cx, cy) = (c[0] - mc[0], c[1] - mc[1]);
        let (px, py) = (p[0] - mi[0], p[1] - mi[1]);
        dot += cx * px + cy * py;
        cross += cx * py - cy * px;
        den += cx * cx + cy * cy;
    }
    let (a, b) = (dot / den, cross / den);
    let t = [
        mi[0] - (a * mc[0] - b * mc[1]),
        mi[1] - (b * mc[0] + a * mc[1]),
    ];
    let angle = b.atan2(a);
    let scale = (a * a + b * b).sqrt();
    let centre = [
        a * s / 2.0 - b * s / 2.0 + t[0],
        b * s / 2.0 + a * s / 2.0 + t[1],
    ];
    let h = (s * scale - 1.0) / 2.0;
    ChipDetails {
        rect: [centre[0] - h, centre[1] - h, centre[0] + h, centre[1] + h],
        angle,
        size,
    }
}

fn area(r: [f64; 4]) -> f64 {
    if r[0] <= r[2] && r[1] <= r[3] {
        (r[2] - r[0] + 1.0) * (r[3] - r[1] + 1.0)
    } else {
        0.0
    }
}

fn rect_down(r: [f64; 4]) -> [f64; 4] {
    [
        r[0] / 2.0 - 1.25,
        r[1] / 2.0 - 0.75,
        r[2] / 2.0 - 1.25,
        r[3] / 2.0 - 0.75,
    ]
}

fn centre(r: [f64; 4]) -> [f64; 2] {
    [(r[0] + r[2]) / 2.0, (r[1] + r[3]) / 2.0]
}

fn rotate(c: [f64; 2], p: [f64; 2], angle: f64) -> [f64; 2] {
    let (sin, cos) = angle.sin_cos();
    let (dx, dy) = (p[0] - c[0], p[1] - c[1]);
    [c[0] + cos * dx - sin * dy, c[1] + sin * dx + cos * dy]
}

/// Cuts the chip out of `image`.
pub fn extract_chip(image: &RgbImage, d: &ChipDetails) -> RgbImage {
    let n = f64::from(d.size) * f64::from(d.size);
    let mut q = rect_down(d.rect);
    let mut grow = 2.0;
    while area(q) > n {
        q = rect_down(q);
        grow = 2.0 * grow + 2.0;
    }
    let c = centre(d.rect);
    let corners = [
        [d.rect[0], d.rect[1]],
        [d.rect[2], d.rect[1]],
        [d.rect[0], d.rect[3]],
        [d.rect[2], d.rect[3]],
    ]
    .map(|p| rotate(c, p, d.angle));
    let (w, h) = (f64::from(image.width()), f64::from(image.height()));
    let bl = (corners.iter().map(|p| p[0]).fold(f64::MAX, f64::min) - grow).max(0.0);
    let bt = (corners.iter().map(|p| p[1]).fold(f64::MAX, f64::min) - grow).max(0.0);
    let br = (corners.iter().map(|p| p[0]).fold(f64::MIN, f64::max) + grow).min(w - 1.0);
    let bb = (corners.iter().map(|p| p[1]).fold(f64::MIN, f64::max) + grow).min(h - 1.0);
    let round = |v: f64| (v + 0.5).floor();
    let (bl, bt, br, bb) = (round(bl), round(bt), round(br), round(bb));
    let mut chip = RgbImage::new(d.size, d.size);
    if br < bl || bb < bt {
        return chip;
    }
    let mut src = facegate_image::image_crop(
        image,
        bl as u32,
        bt as u32,
        (br - bl + 1.0) as u32,
        (bb - bt + 1.0) as u32,
    );
    let mut loc = [
        d.rect[0] - bl,
        d.rect[1] - bt,
        d.rect[2] - bl,
        d.rect[3] - bt,
    ];
    let mut level = -1;
    while area(rect_down(loc)) > n {
        level += 1;
        loc = rect_down(loc);
    }
    for _ in 0..=level {
        src = pyramid_down(&src);
    }
    let c0 = centre(loc);
    let tl = rotate(c0, [loc[0], loc[1]], d.angle);
    let tr = rotate(c0, [loc[2], loc[1]], d.angle);
    let bl_ = rotate(c0, [loc[0], loc[3]], d.angle);
    let steps = f64::from(d.size) - 1.0;
    let (sw, sh) = (i64::from(src.width()), i64::from(src.height()));
    for y in 0..d.size {
        for x in 0..d.size {
            let (fx, fy) = (f64::from(x), f64::from(y));
            let sx = ((tr[0] - tl[0]) / steps * fx + (bl_[0] - tl[0]) / steps * fy) + tl[0];
            let sy = ((tr[1] - tl[1]) / steps * fx + (bl_[1] - tl[1]) / steps * fy) + tl[1];
            let (x0, y0) = (sx.floor() as i64, sy.floor() as i64);
            if x0 < 0 || y0 < 0 || x0 + 1 >= sw || y0 + 1 >= sh {
                continue;
            }
            let (ax, ay) = (sx - x0 as f64, sy - y0 as f64);
            let p = |px: i64, py: i64| src.get_pixel(px as u32, py as u32).0;
            let (p00, p10, p01, p11) = (p(x0, y0), p(x0 + 1, y0), p(x0, y0 + 1), p(x0 + 1, y0 + 1));
            let value = |k: usize| {
                let v = (1.0 - ay) * ((1.0 - ax) * f64::from(p00[k]) + ax * f64::from(p10[k]))
                    + ay * ((1.0 - ax) * f64::from(p01[k]) + ax * f64::from(p11[k]));
                v as u8
            };
            chip.put_pixel(x, y, Rgb([value(0), value(1), value(2)]));
        }
    }
    chip
}

/// dlib's `pyramid_down<2>`: a 5-tap [1 4 6 4 1] filter, then every other pixel.
fn pyramid_down(s: &RgbImage) -> RgbImage {
    let (w, h) = (s.width() as usize, s.height() as usize);
    if w <= 8 || h <= 8 {
        return RgbImage::new(0, 0);
    }
    let (ow, oh) = ((w - 3) / 2, (h - 3) / 2);
    let mut tmp = vec![[0u32; 3]; h * ow];
    for y in 0..h {
        for j in 0..ow {
            let px = |x: usize| s.get_pixel(x as u32, y as u32).0;
            let (a, b, c, d, e) = (
                px(2 * j),
                px(2 * j + 1),
                px(2 * j + 2),
                px(2 * j + 3),
                px(2 * j + 4),
            );
            for k in 0..3 {
                tmp[y * ow + j][k] = u32::from(a[k])
                    + 4 * u32::from(b[k])
                    + 6 * u32::from(c[k])
                    + 4 * u32::from(d[k])
                    + u32::from(e[k]);
            }
        }
    }
    RgbImage::from_fn(ow as u32, oh as u32, |j, i| {
        let (i, j) = (i as usize, j as usize);
        let t = |r: usize| tmp[r * ow + j];
        let (a, b, c, d, e) = (
            t(2 * i),
            t(2 * i + 1),
            t(2 * i + 2),
            t(2 * i + 3),
            t(2 * i + 4),
        );
        Rgb(std::array::from_fn(|k| {
            ((a[k] + 4 * b[k] + 6 * c[k] + 4 * d[k] + e[k]) / 256) as u8
        }))
    })
}
