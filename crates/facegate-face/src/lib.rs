//! The types every stage of facegate shares, below any model: a detected [`Face`] (box,
//! detector score, five landmarks) and the standard five-point geometry of aligned crops.
//! A crate that only needs to name a face depends on this, not on a detector.

use serde::{Deserialize, Serialize};

/// The standard five-point template of 112x112 ArcFace-style crops (eye, eye, nose, mouth,
/// mouth; image left first), as InsightFace defines it. Networks trained on such crops use it,
/// and the quality gate measures faces in this frame.
pub const ARCFACE_112: [[f32; 2]; 5] = [
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041],
];

/// Intersection over union of two `[x1, y1, x2, y2]` boxes (0 when they do not overlap).
pub fn box_iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let area = |r: [f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union <= 0.0 {
        0.0
    } else {
        inter / union
    }
}

/// One detected face, in pixel coordinates of the (upright) input image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Face {
    /// `[x1, y1, x2, y2]`.
    pub bbox: [f32; 4],
    /// Detector confidence in [0, 1].
    pub score: f32,
    /// Five points `[x, y]`, in the order: eye on the image's left, eye on the image's right,
    /// nose tip, mouth corner on the image's left, mouth corner on the image's right.
    pub landmarks: [[f32; 2]; 5],
}

impl Face {
    /// The same face in an image `sx` times wider and `sy` times taller.
    pub fn scaled(&self, sx: f32, sy: f32) -> Face {
        let [x1, y1, x2, y2] = self.bbox;
        Face {
            bbox: [x1 * sx, y1 * sy, x2 * sx, y2 * sy],
            score: self.score,
            landmarks: self.landmarks.map(|[x, y]| [x * sx, y * sy]),
        }
    }

    pub fn width(&self) -> f32 {
        self.bbox[2] - self.bbox[0]
    }

    pub fn height(&self) -> f32 {
        self.bbox[3] - self.bbox[1]
    }

    pub fn area(&self) -> f32 {
        self.width().max(0.0) * self.height().max(0.0)
    }

    /// Intersection over union of this face's box and `other`'s.
    pub fn iou(&self, other: &Face) -> f32 {
        box_iou(self.bbox, other.bbox)
    }

    /// Area of the part of the box inside a `width x height` image: a face cut by the border
    /// can have a huge box but show little.
    pub fn visible_area(&self, width: u32, height: u32) -> f32 {
        let [x1, y1, x2, y2] = self.bbox;
        let w = x2.min(width as f32) - x1.max(0.0);
        let h = y2.min(height as f32) - y1.max(0.0);
        w.max(0.0) * h.max(0.0)
    }

    /// Centre of the box.
    pub fn centre(&self) -> [f32; 2] {
        [
            (self.bbox[0] + self.bbox[2]) / 2.0,
            (self.bbox[1] + self.bbox[3]) / 2.0,
        ]
    }
}

/// The face with the largest visible area in a `width x height` image among those at least
/// `min_side` pixels on their shorter side: the face a verify uses. Its own definition, so
/// that the largest-first search and its callers agree on what "largest" means.
pub fn largest_visible(faces: &[Face], width: u32, height: u32, min_side: f32) -> Option<&Face> {
    faces
        .iter()
        .filter(|f| f.width().min(f.height()) >= min_side)
        .max_by(|a, b| {
            a.visible_area(width, height)
                .total_cmp(&b.visible_area(width, height))
        })
}
