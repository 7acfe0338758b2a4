//! Video input: where frames come from ([`FrameSource`]), which frames are good enough to
//! enroll from ([`quality`]), and which faces in consecutive frames are the same person
//! ([`track`]).
//!
//! Decoding is done by the `ffmpeg` program, piping raw RGB frames ([`ffmpeg::FfmpegSource`]):
//! one code path for files, network streams (RTSP, HTTP, ...) and, through its V4L2 input,
//! local cameras ([`camera`]). Linking the libav* libraries instead would tie builds to one
//! FFmpeg version's headers and to a C toolchain; the program is one package away on every
//! platform, and its errors are text we can pass on.

#[cfg(feature = "camera")]
pub mod camera;
pub mod ffmpeg;
pub mod quality;
pub mod track;

use std::time::Duration;

use facegate_image::RgbImage;

/// One decoded frame.
#[derive(Clone, Debug)]
pub struct Frame {
    /// Position in the sampled sequence (0, 1, 2, ...).
    pub index: u64,
    /// Time since the start of the video (files) or of the capture (live sources).
    pub timestamp: Duration,
    pub image: RgbImage,
}

/// A sequence of frames.
pub trait FrameSource: Send {
    /// The next frame; `None` at the end of a file (live sources end only on error or stop).
    fn next_frame(&mut self) -> Result<Option<Frame>, VideoError>;

    /// Frames skipped so far because processing fell behind a live source.
    fn dropped(&self) -> u64 {
        0
    }

    /// A name for messages.
    fn describe(&self) -> String;
}

#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    #[error("the `ffmpeg` program is needed to read video but was not found ({0}); install it (Debian/Ubuntu: `apt-get install ffmpeg`)")]
    FfmpegMissing(String),
    #[error("could not open {source_name}: {message}")]
    Open {
        source_name: String,
        message: String,
    },
    #[error("reading {source_name} failed: {message}")]
    Read {
        source_name: String,
        message: String,
    },
    #[error("no camera {requested}; {}", available_cameras(.available))]
    NoSuchCamera {
        requested: String,
        available: Vec<String>,
    },
    #[error("the camera {device} is busy (another program is using it); close that program and try again")]
    CameraBusy { device: String },
}

fn available_cameras(list: &[String]) -> String {
    if list.is_empty() {
        "this machine has no video capture devices (/dev/video*)".to_string()
    } else {
        format!("the cameras here are: {}", list.join(", "))
    }
}
