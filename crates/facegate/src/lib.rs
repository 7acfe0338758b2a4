//! facegate: one-shot face verification.
//!
//! The pipeline, crate by crate:
//!
//! | step | crate | seam |
//! |---|---|---|
//! | decode, EXIF, limits | `facegate-image` | [`image::load`] |
//! | find faces | `facegate-detect` (MTCNN) | [`Detector`] |
//! | cut and align | `facegate-align` | [`align::align`] |
//! | embed | `facegate-embed` (FaceNet, dlib, MobileFaceNet) | [`Embedder`] |
//! | liveness (optional) | `facegate-liveness` | [`liveness::LivenessModels`] |
//! | store | `facegate-gallery` (SQLite) | [`Gallery`] |
//! | decide | `facegate-decide` | [`decide::Threshold`] |
//!
//! [`Engine`] wires them together; [`ops`] holds the user-level operations (enroll, verify,
//! identify, compare) that the CLI and the server share.

pub mod audit;
pub mod challenge;
pub mod challenge_eval;
pub mod config;
mod context;
mod engine;
mod error;
pub mod eval;
mod home;
pub mod ops;
pub mod quality;
pub mod service;
pub mod video;

pub use engine::{
    EmbeddedFace, Engine, EngineOptions, FacePolicy, FarEstimate, ModelChoice, ModelKind,
    DEFAULT_TARGET_FPIR,
};
pub use error::{Error, ErrorCode};
pub use home::Home;

pub use facegate_align as align;
pub use facegate_challenge as liveness_challenge;
pub use facegate_decide as decide;
pub use facegate_detect as detect;
pub use facegate_embed as embed;
pub use facegate_face as face;
pub use facegate_gallery as gallery;
pub use facegate_image as image;
pub use facegate_liveness as liveness;
pub use facegate_models as models;
pub use facegate_nn as nn;
pub use facegate_video as video_input;

pub use facegate_detect::{Detector, Face};
pub use facegate_embed::Embedder;
pub use facegate_gallery::{Gallery, SqliteGallery};
