//! Face detection for facegate.
//!
//! [`Detector`] is the seam the pipeline uses; [`mtcnn::Mtcnn`] is the implementation:
//! the P-Net/R-Net/O-Net cascade with weights from `facenet-pytorch==2.6.0`, run on ONNX Runtime.

pub mod mtcnn;
mod nms;
mod resample;

use facegate_image::RgbImage;

pub use facegate_face::{largest_visible, Face};
pub use mtcnn::{Mtcnn, MtcnnConfig};

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
