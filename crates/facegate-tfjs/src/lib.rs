//! TensorFlow.js graph models (read by [`facegate_models::tfjs`]) turned into ONNX.
//!
//! [`convert()`] maps each TF op the pinned graphs use onto ONNX operators and refuses any
//! other op by name, so a new model never runs half-converted. [`repair`] holds the named
//! fixes for defects found in a pinned graph, applied only to that graph.

pub mod convert;
pub mod repair;

pub use convert::{convert, ConvertError, SUPPORTED_OPS};
pub use repair::Repair;
