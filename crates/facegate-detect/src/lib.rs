//! Face detection for facegate.
//!
//! [`Detector`] is the seam the pipeline uses; [`mtcnn::Mtcnn`] is the implementation:
//! the P-Net/R-Net/O-Net cascade with weights from `facenet-pytorch==2.6.0`, run on ONNX Runtime.

pub mod mtcnn;
mod nms;
mod resample;

use facegate_image::RgbImage;
use serde::{Deserialize, Serialize};

pub use mtcnn::{Mtcnn, MtcnnConfig};

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

#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error(transparent)]
    Model(#[from] facegate_models::ModelError),
    #[error(transparent)]
    Runtime(#[from] facegate_nn::RuntimeError),
}

/// Finds faces in an image.
pub trait Detector: Send + Sync {
    /// Every face found, highest score first.
    fn detect(&self, image: &RgbImage) -> Result<Vec<Face>, DetectError>;
    /// Like [`Detector::detect`], searching only for faces of at least `min_face_size` pixels
    /// (never below [`Detector::min_face_size`]): larger minimums are faster.
    fn detect_down_to(
        &self,
        image: &RgbImage,
        min_face_size: u32,
    ) -> Result<Vec<Face>, DetectError> {
        let _ = min_face_size;
        self.detect(image)
    }
    /// The faces a caller that keeps only the largest one needs: like
    /// [`Detector::detect_down_to`], but the search may stop before the smallest sizes once
    /// they can no longer hold the largest face. Faces much smaller than the largest (for
    /// MTCNN, under a third of its size) may be missing. The largest face is the one
    /// `detect_down_to` finds, box and landmarks alike (checked on 3,000 LFW photos), with
    /// one exception by design: MTCNN's last NMS lets a higher-scored box that lies inside a
    /// larger one remove it, and a skipped small box can no longer do that.
    fn detect_largest_first(
        &self,
        image: &RgbImage,
        min_face_size: u32,
    ) -> Result<Vec<Face>, DetectError> {
        self.detect_down_to(image, min_face_size)
    }
    /// The smallest face side, in pixels, the detector searches for.
    fn min_face_size(&self) -> u32;
    /// A stable identifier, e.g. `mtcnn-facenet-pytorch-2.6.0`.
    fn id(&self) -> &str;
}
