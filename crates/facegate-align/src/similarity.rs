//! Least-squares 2-D similarity transform between point sets (Umeyama 1991, without
//! reflection), in closed form.

/// `dst = [[a, -b], [b, a]] * src + [tx, ty]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Similarity {
    pub a: f32,
    pub b: f32,
    pub tx: f32,
    pub ty: f32,
}

impl Similarity {
    /// The transform minimising the squared distance from `src` mapped to `dst`.
    pub fn estimate(src: &[[f32; 2]], dst: &[[f32; 2]]) -> Similarity {
        let n = src.len().min(dst.len()) as f64;
        let mean = |pts: &[[f32; 2]]| {
            let (sx, sy) = pts.iter().fold((0.0, 0.0), |(x, y), p| {
                (x + f64::from(p[0]), y + f64::from(p[1]))
            });
            (sx / n, sy / n)
        };
        let (sx, sy) = mean(src);
        let (dx, dy) = mean(dst);
        let (mut dot, mut cross, mut norm) = (0.0f64, 0.0f64, 0.0f64);
        for (p, q) in src.iter().zip(dst) {
            let (px, py) = (f64::from(p[0]) - sx, f64::from(p[1]) - sy);
            let (qx, qy) = (f64::from(q[0]) - dx, f64::from(q[1]) - dy);
            dot += px * qx + py * qy;
            cross += px * qy - py * qx;
            norm += px * px + py * py;
        }
        if norm <= f64::EPSILON {
            // Degenerate landmarks (all one point): translate only.
            return Similarity {
                a: 1.0,
                b: 0.0,
                tx: (dx - sx) as f32,
                ty: (dy - sy) as f32,
            };
        }
        let (a, b) = (dot / norm, cross / norm);
        Similarity {
            a: a as f32,
            b: b as f32,
            tx: (dx - (a * sx - b * sy)) as f32,
            ty: (dy - (b * sx + a * sy)) as f32,
        }
    }

    pub fn apply(&self, p: [f32; 2]) -> [f32; 2] {
        [
            self.a * p[0] - self.b * p[1] + self.tx,
            self.b * p[0] + self.a * p[1] + self.ty,
        ]
    }

    /// The inverse transform (maps output pixels back into the source image).
    pub fn inverse(&self) -> Similarity {
        let det = self.a * self.a + self.b * self.b;
        let (a, b) = (self.a / det, -self.b / det);
        Similarity {
            a,
            b,
            tx: -(a * self.tx - b * self.ty),
            ty: -(b * self.tx + a * self.ty),
        }
    }

    /// Uniform scale factor.
    pub fn scale(&self) -> f32 {
        (self.a * self.a + self.b * self.b).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_a_known_transform_exactly() {
        let truth = Similarity {
            a: 0.8,
            b: 0.3,
            tx: 12.0,
            ty: -4.0,
        };
        let src = [
            [10.0, 10.0],
            [40.0, 12.0],
            [25.0, 30.0],
            [12.0, 45.0],
            [38.0, 44.0],
        ];
        let dst: Vec<[f32; 2]> = src.iter().map(|&p| truth.apply(p)).collect();
        let est = Similarity::estimate(&src, &dst);
        for (x, y) in [
            (est.a, truth.a),
            (est.b, truth.b),
            (est.tx, truth.tx),
            (est.ty, truth.ty),
        ] {
            assert!((x - y).abs() < 1e-4, "{est:?} vs {truth:?}");
        }
        let back = est.inverse().apply(est.apply([3.0, 7.0]));
        assert!((back[0] - 3.0).abs() < 1e-4 && (back[1] - 7.0).abs() < 1e-4);
    }

    #[test]
    fn degenerate_points_do_not_divide_by_zero() {
        let est = Similarity::estimate(&[[5.0, 5.0]; 5], &[[1.0, 2.0]; 5]);
        assert_eq!(est.apply([5.0, 5.0]), [1.0, 2.0]);
    }
}
