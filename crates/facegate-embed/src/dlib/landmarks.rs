//! dlib's 5-point shape predictor (an ensemble of regression trees, Kazemi & Sullivan 2014),
//! as specified in `tools/golden/dlib_format.md` §3: eye corners and the base of the nose,
//! the points dlib cuts its face chips from.

use facegate_image::RgbImage;
use facegate_models::dlib_dat::ShapePredictorModel;

pub struct ShapePredictor {
    model: ShapePredictorModel,
}

impl ShapePredictor {
    pub fn new(model: ShapePredictorModel) -> ShapePredictor {
        ShapePredictor { model }
    }

    /// The five points (whole pixels, as dlib rounds them) inside the dlib-style rectangle
    /// `[left, top, right, bottom]` (right and bottom inclusive).
    pub fn predict(&self, image: &RgbImage, rect: [i64; 4]) -> [[f32; 2]; 5] {
        let m = &self.model;
        let (w, h) = (i64::from(image.width()), i64::from(image.height()));
        let [l, t, r, b] = rect.map(|v| v as f64);
        let to_image = |u: f32, v: f32| (l + f64::from(u) * (r - l), t + f64::from(v) * (b - t));
        let round = |v: f64| (v + 0.5).floor() as i64;
        let intensity = |x: i64, y: i64| -> f32 {
            if x < 0 || y < 0 || x >= w || y >= h {
                return 0.0;
            }
            let p = image.get_pixel(x as u32, y as u32).0;
            ((u32::from(p[0]) + u32::from(p[1]) + u32::from(p[2])) / 3) as f32
        };
        let mut shape = m.initial_shape.clone();
        let mut features = Vec::new();
        for (level, forest) in m.forests.iter().enumerate() {
            let a = similarity_2x2(&m.initial_shape, &shape);
            features.clear();
            for (&k, d) in m.anchor_idx[level].iter().zip(&m.deltas[level]) {
                let qx = (a[0] * d[0] + a[1] * d[1]) + shape[2 * k];
                let qy = (a[2] * d[0] + a[3] * d[1]) + shape[2 * k + 1];
                let (x, y) = to_image(qx, qy);
                features.push(intensity(round(x), round(y)));
            }
            for tree in forest {
                let mut i = 0;
                while i < tree.splits.len() {
                    let (i1, i2, threshold) = tree.splits[i];
                    i = if features[i1] - features[i2] > threshold {
                        2 * i + 1
                    } else {
                        2 * i + 2
                    };
                }
                for (s, d) in shape.iter_mut().zip(&tree.leaves[i - tree.splits.len()]) {
                    *s += d;
                }
            }
        }
        std::array::from_fn(|k| {
            let (x, y) = to_image(shape[2 * k], shape[2 * k + 1]);
            [round(x) as f32, round(y) as f32]
        })
    }
}

/// The 2x2 part `[a, -b; b, a]` of the least-squares similarity from `from` to `to`
/// (flat x, y lists), computed in f64 and returned as f32 (row-major).
fn similarity_2x2(from: &[f32], to: &[f32]) -> [f32; 4] {
    let n = (from.len() / 2) as f64;
    let mean = |p: &[f32]| {
        let (sx, sy) = p.chunks(2).fold((0.0, 0.0), |(x, y), c| {
            (x + f64::from(c[0]), y + f64::from(c[1]))
        });
        (sx / n, sy / n)
    };
    let (fx, fy) = mean(from);
    let (tx, ty) = mean(to);
    let (mut dot, mut cross, mut den) = (0.0, 0.0, 0.0);
    for (f, t) in from.chunks(2).zip(to.chunks(2)) {
        let (dfx, dfy) = (f64::from(f[0]) - fx, f64::from(f[1]) - fy);
        let (dtx, dty) = (f64::from(t[0]) - tx, f64::from(t[1]) - ty);
        dot += dfx * dtx + dfy * dty;
        cross += dfx * dty - dfy * dtx;
        den += dfx * dfx + dfy * dfy;
    }
    let (a, b) = if den > 0.0 {
        (dot / den, cross / den)
    } else {
        (1.0, 0.0)
    };
    [a as f32, -b as f32, b as f32, a as f32]
}

/// A dlib-style (HOG detector convention) square rectangle for a face found by MTCNN,
/// placed from its landmarks and box. The coefficients are fitted on 2029 faces where both
/// detectors ran (`tools/golden/derive_dlib_chip_template.py` data): centre offset from the
/// eye/mouth midpoint and side from the box width and eye-to-mouth distance.
pub fn rect_from_mtcnn(bbox: [f32; 4], landmarks: &[[f32; 2]; 5]) -> [i64; 4] {
    let eyes = [
        (landmarks[0][0] + landmarks[1][0]) / 2.0,
        (landmarks[0][1] + landmarks[1][1]) / 2.0,
    ];
    let mouth = [
        (landmarks[3][0] + landmarks[4][0]) / 2.0,
        (landmarks[3][1] + landmarks[4][1]) / 2.0,
    ];
    let d = ((mouth[0] - eyes[0]).powi(2) + (mouth[1] - eyes[1]).powi(2)).sqrt();
    let mid = [(eyes[0] + mouth[0]) / 2.0, (eyes[1] + mouth[1]) / 2.0];
    let (cx, cy) = (mid[0] - 0.1095 * d, mid[1] - 0.0638 * d);
    let side = (0.7984 * (bbox[2] - bbox[0]) + 0.6578 * d).max(4.0);
    let left = (cx - (side - 1.0) / 2.0).round() as i64;
    let top = (cy - (side - 1.0) / 2.0).round() as i64;
    let s = side.round() as i64;
    [left, top, left + s - 1, top + s - 1]
}
