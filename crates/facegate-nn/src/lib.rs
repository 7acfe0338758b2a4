//! Neural networks for facegate, in two halves:
//!
//! * [`graph`]: a small builder that writes a network's architecture as Rust code and emits it as
//!   an ONNX model, with the weights (read from the original model files) as initializers;
//! * [`runtime`]: loads ONNX Runtime (dynamically, from the pinned `onnxruntime` wheel) and runs
//!   those models.
//!
//! The architectures themselves live next to the code that uses them (`facegate-detect` for
//! MTCNN, `facegate-embed` for FaceNet), one file per network.

pub mod graph;
pub mod onnx_proto;
pub mod runtime;

pub use graph::{GraphBuilder, Value};
pub use runtime::{InputShapes, Network, Runtime, RuntimeError, TensorOutput, Threads};
