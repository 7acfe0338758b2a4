//! How far the nose has moved off the plane of the eyes and mouth: the parallax a turning
//! head shows and a flat picture cannot.
//!
//! The two eyes and the two mouth corners lie nearly in one plane; the nose tip stands out of
//! it. Any picture of a flat thing (a print, a phone, a screen) moved in front of a camera
//! maps from one frame to the next by a homography, and so does every point on it. The
//! homography that carries the four planar points of a frame back onto a reference frame
//! therefore carries a flat picture's nose exactly onto the reference nose, however the
//! picture is tilted, turned, moved or zoomed. A real head that turns moves its nose against
//! that plane: what is left over is the head's rotation. The offset is measured in the
//! reference face's own axes (along the eyes, and across them) in units of the reference's
//! distance between the eyes, so it is the same at any distance from the camera.

use facegate_face::Face;
use serde::Serialize;

/// Landmark order (see [`Face::landmarks`]): eye on the image's left, eye on the image's
/// right, nose, mouth corner on the image's left, mouth corner on the image's right.
const PLANAR: [usize; 4] = [0, 1, 3, 4];
const NOSE: usize = 2;

/// The nose's offset from where a flat picture would have put it, in inter-eye distances.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct HeadOffset {
    /// Along the eye line: positive when the nose moved toward the image's right edge.
    pub x: f32,
    /// Across it: positive when the nose moved down (the head bowed).
    pub y: f32,
}

/// The offset of `current`'s nose from `reference`'s, after undoing the homography of the
/// four planar points. `None` when the points are degenerate (collinear, coincident).
pub fn head_offset(reference: &Face, current: &Face) -> Option<HeadOffset> {
    let from: Vec<[f64; 2]> = PLANAR.iter().map(|&i| point(current, i)).collect();
    let to: Vec<[f64; 2]> = PLANAR.iter().map(|&i| point(reference, i)).collect();
    let h = homography(&from, &to)?;
    let [nx, ny] = point(current, NOSE);
    let w = h[6] * nx + h[7] * ny + 1.0;
    if w.abs() < 1e-9 {
        return None;
    }
    let mapped = [
        (h[0] * nx + h[1] * ny + h[2]) / w,
        (h[3] * nx + h[4] * ny + h[5]) / w,
    ];
    let nose = point(reference, NOSE);
    let (left_eye, right_eye) = (point(reference, 0), point(reference, 1));
    let eye = [right_eye[0] - left_eye[0], right_eye[1] - left_eye[1]];
    let iod = (eye[0] * eye[0] + eye[1] * eye[1]).sqrt();
    if iod < 1e-6 {
        return None;
    }
    let along = [eye[0] / iod, eye[1] / iod];
    let across = [-along[1], along[0]];
    let d = [mapped[0] - nose[0], mapped[1] - nose[1]];
    Some(HeadOffset {
        x: ((d[0] * along[0] + d[1] * along[1]) / iod) as f32,
        y: ((d[0] * across[0] + d[1] * across[1]) / iod) as f32,
    })
}

/// How much the face plane looks turned away from the reference: the eyes-to-mouth aspect
/// (distance between the eyes over the distance from their midpoint to the mouth's) now,
/// over the reference's. About cos(yaw) when the face plane turns sideways, 1 / cos(pitch)
/// when it tips. Landmarks of a face plane turned far (a print held at a steep angle) are
/// estimated, not seen: [`Rules`](crate::Rules) does not judge movements there.
pub fn foreshortening(reference: &Face, current: &Face) -> f32 {
    aspect(current) / aspect(reference)
}

fn aspect(face: &Face) -> f32 {
    let (l, r) = (point(face, 0), point(face, 1));
    let (ml, mr) = (point(face, 3), point(face, 4));
    let eyes = ((r[0] - l[0]).powi(2) + (r[1] - l[1]).powi(2)).sqrt();
    let mid_eyes = [(l[0] + r[0]) / 2.0, (l[1] + r[1]) / 2.0];
    let mid_mouth = [(ml[0] + mr[0]) / 2.0, (ml[1] + mr[1]) / 2.0];
    let down = ((mid_mouth[0] - mid_eyes[0]).powi(2) + (mid_mouth[1] - mid_eyes[1]).powi(2)).sqrt();
    if down < 1e-9 {
        return f32::NAN;
    }
    (eyes / down) as f32
}

/// Where the nose sits between the eyes, in inter-eye distances along the eye line (0: on
/// the eye midpoint). Unchanged by any affine motion of a flat picture; about 0 for a face
/// that looks at the camera.
pub fn nose_centering(face: &Face) -> f32 {
    let (l, r, n) = (point(face, 0), point(face, 1), point(face, NOSE));
    let eye = [r[0] - l[0], r[1] - l[1]];
    let iod2 = eye[0] * eye[0] + eye[1] * eye[1];
    if iod2 < 1e-12 {
        return f32::NAN;
    }
    let mid = [(l[0] + r[0]) / 2.0, (l[1] + r[1]) / 2.0];
    (((n[0] - mid[0]) * eye[0] + (n[1] - mid[1]) * eye[1]) / iod2) as f32
}

fn point(face: &Face, i: usize) -> [f64; 2] {
    let [x, y] = face.landmarks[i];
    [f64::from(x), f64::from(y)]
}

/// The homography (row-major, h33 = 1) that maps the four `from` points onto `to`: the 8x8
/// linear system of the direct linear transform, solved by Gaussian elimination with partial
/// pivoting. `None` when it is singular.
fn homography(from: &[[f64; 2]], to: &[[f64; 2]]) -> Option<[f64; 8]> {
    let mut a = [[0f64; 9]; 8];
    for (k, (&[x, y], &[u, v])) in from.iter().zip(to).enumerate() {
        a[2 * k] = [x, y, 1.0, 0.0, 0.0, 0.0, -u * x, -u * y, u];
        a[2 * k + 1] = [0.0, 0.0, 0.0, x, y, 1.0, -v * x, -v * y, v];
    }
    for col in 0..8 {
        let pivot = (col..8).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, pivot);
        let pivot_row = a[col];
        for (row, values) in a.iter_mut().enumerate() {
            if row != col {
                let factor = values[col] / pivot_row[col];
                if factor != 0.0 {
                    for (value, pivot_value) in values.iter_mut().zip(pivot_row).skip(col) {
                        *value -= factor * pivot_value;
                    }
                }
            }
        }
    }
    let mut h = [0f64; 8];
    for (i, value) in h.iter_mut().enumerate() {
        *value = a[i][8] / a[i][i];
    }
    Some(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(points: [[f32; 2]; 5]) -> Face {
        Face {
            bbox: [0.0, 0.0, 200.0, 200.0],
            score: 1.0,
            landmarks: points,
        }
    }

    const FRONTAL: [[f32; 2]; 5] = [
        [70.0, 90.0],
        [130.0, 90.0],
        [100.0, 125.0],
        [78.0, 150.0],
        [122.0, 150.0],
    ];

    /// A picture of the frontal face on a plane, seen through a projective map.
    fn through(h: [[f64; 3]; 3], points: [[f32; 2]; 5]) -> [[f32; 2]; 5] {
        points.map(|[x, y]| {
            let (x, y) = (f64::from(x), f64::from(y));
            let w = h[2][0] * x + h[2][1] * y + h[2][2];
            [
                ((h[0][0] * x + h[0][1] * y + h[0][2]) / w) as f32,
                ((h[1][0] * x + h[1][1] * y + h[1][2]) / w) as f32,
            ]
        })
    }

    #[test]
    fn a_flat_picture_moved_any_way_shows_no_head_movement() {
        let reference = face(FRONTAL);
        for h in [
            // Zoom and move.
            [[1.6, 0.0, 40.0], [0.0, 1.6, -12.0], [0.0, 0.0, 1.0]],
            // Rotate in the image plane by 25 degrees.
            [
                [0.906, -0.423, 60.0],
                [0.423, 0.906, -30.0],
                [0.0, 0.0, 1.0],
            ],
            // Tilt away about a vertical axis (strong perspective), and about a horizontal one.
            [[0.8, 0.0, 10.0], [0.05, 1.0, 0.0], [0.0015, 0.0, 1.0]],
            [[1.0, 0.1, 0.0], [0.0, 0.7, 20.0], [0.0, 0.0012, 1.0]],
        ] {
            let moved = face(through(h, FRONTAL));
            let offset = head_offset(&reference, &moved).unwrap();
            assert!(
                offset.x.abs() < 1e-3 && offset.y.abs() < 1e-3,
                "{h:?}: {offset:?}"
            );
            if h[2][0] == 0.0 && h[2][1] == 0.0 {
                // Affine motion leaves the nose's place between the eyes as it was.
                assert!((nose_centering(&moved) - nose_centering(&reference)).abs() < 1e-3);
            }
        }
    }

    #[test]
    fn a_nose_moved_against_the_face_plane_is_measured_in_eye_distances() {
        let reference = face(FRONTAL);
        let mut turned = FRONTAL;
        turned[2][0] += 18.0; // 0.3 eye distances toward the image's right
        let offset = head_offset(&reference, &face(turned)).unwrap();
        assert!(
            (offset.x - 0.3).abs() < 1e-4 && offset.y.abs() < 1e-4,
            "{offset:?}"
        );
        let mut bowed = FRONTAL;
        bowed[2][1] += 12.0;
        let offset = head_offset(&reference, &face(bowed)).unwrap();
        assert!(
            (offset.y - 0.2).abs() < 1e-4 && offset.x.abs() < 1e-4,
            "{offset:?}"
        );
        // The same turn seen on a zoomed, rotated picture of the reference is the same offset.
        let h = [[0.0, -1.2, 300.0], [1.2, 0.0, 10.0], [0.0, 0.0, 1.0]];
        let offset = head_offset(&reference, &face(through(h, turned))).unwrap();
        assert!((offset.x - 0.3).abs() < 1e-3, "{offset:?}");
        assert_eq!(nose_centering(&reference), 0.0);
    }

    #[test]
    fn degenerate_points_give_no_offset() {
        let line = face([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [4.0, 0.0]]);
        assert_eq!(head_offset(&line, &line), None);
    }
}
