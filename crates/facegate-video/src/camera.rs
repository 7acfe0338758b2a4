//! Local cameras (Linux V4L2 devices), captured through ffmpeg's `v4l2` input.
//!
//! Discovery reads `/sys/class/video4linux` (device node and the driver's name for it); the
//! capture itself is the same [`FfmpegSource`] the video-file tests exercise, so only the
//! lines below are specific to cameras.

use std::path::{Path, PathBuf};

use crate::ffmpeg::{FfmpegInput, FfmpegSource};
use crate::VideoError;

/// A video capture device.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Camera {
    /// `/dev/videoN`.
    pub device: String,
    /// The driver's name for it (`Integrated Camera`, ...).
    pub name: String,
}

/// The video devices listed under `sysfs` (normally `/sys/class/video4linux`), in number order.
pub fn list_in(sysfs: &Path, dev: &Path) -> Vec<Camera> {
    let Ok(entries) = std::fs::read_dir(sysfs) else {
        return Vec::new();
    };
    let mut cameras: Vec<(u32, Camera)> = entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let node = entry.file_name().to_string_lossy().into_owned();
            let number: u32 = node.strip_prefix("video")?.parse().ok()?;
            let name = std::fs::read_to_string(entry.path().join("name"))
                .map(|n| n.trim().to_string())
                .unwrap_or_default();
            Some((
                number,
                Camera {
                    device: dev.join(&node).display().to_string(),
                    name,
                },
            ))
        })
        .collect();
    cameras.sort_by_key(|(n, _)| *n);
    cameras.into_iter().map(|(_, c)| c).collect()
}

/// The cameras of this machine.
pub fn list() -> Vec<Camera> {
    list_in(Path::new("/sys/class/video4linux"), Path::new("/dev"))
}

/// Which device `requested` means (`None`: the first camera; `2` or `/dev/video2`), checked
/// against `cameras`.
pub fn resolve(requested: Option<&str>, cameras: &[Camera]) -> Result<String, VideoError> {
    let missing = |requested: String| VideoError::NoSuchCamera {
        requested,
        available: cameras
            .iter()
            .map(|c| {
                if c.name.is_empty() {
                    c.device.clone()
                } else {
                    format!("{} ({})", c.device, c.name)
                }
            })
            .collect(),
    };
    let wanted = match requested {
        None => {
            return cameras
                .first()
                .map(|c| c.device.clone())
                .ok_or_else(|| missing("(default)".into()))
        }
        Some(text) if text.chars().all(|c| c.is_ascii_digit()) => format!("/dev/video{text}"),
        Some(text) => text.to_string(),
    };
    if cameras.iter().any(|c| c.device == wanted) {
        Ok(wanted)
    } else {
        Err(missing(wanted))
    }
}

/// Opens a camera for live capture at `fps` frames per second.
pub fn open(requested: Option<&str>, fps: f64) -> Result<FfmpegSource, VideoError> {
    let device = resolve(requested, &list())?;
    let input = FfmpegInput {
        input: device.clone(),
        format: Some("v4l2".into()),
        fps,
        max_side: 1280,
        live: true,
        realtime: false,
    };
    FfmpegSource::open(&input).map_err(|err| match err {
        VideoError::Open { message, .. } if message.contains("busy") => {
            VideoError::CameraBusy { device }
        }
        other => other,
    })
}

/// Where sysfs would list a camera (for tests building a fake tree).
pub fn sysfs_entry(root: &Path, number: u32) -> PathBuf {
    root.join(format!("video{number}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_are_listed_in_number_order_and_resolved() {
        let root = tempfile::tempdir().unwrap();
        for (n, name) in [(10, "USB Camera"), (2, "Integrated Camera")] {
            let dir = sysfs_entry(root.path(), n);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("name"), format!("{name}\n")).unwrap();
        }
        std::fs::create_dir_all(root.path().join("not-a-camera")).unwrap();
        let cameras = list_in(root.path(), Path::new("/dev"));
        assert_eq!(
            cameras,
            [
                Camera {
                    device: "/dev/video2".into(),
                    name: "Integrated Camera".into()
                },
                Camera {
                    device: "/dev/video10".into(),
                    name: "USB Camera".into()
                },
            ]
        );
        assert_eq!(resolve(None, &cameras).unwrap(), "/dev/video2");
        assert_eq!(resolve(Some("10"), &cameras).unwrap(), "/dev/video10");
        let err = resolve(Some("/dev/video7"), &cameras)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no camera /dev/video7"), "{err}");
        assert!(
            err.contains("/dev/video2 (Integrated Camera), /dev/video10 (USB Camera)"),
            "{err}"
        );
        let none = resolve(None, &[]).unwrap_err().to_string();
        assert!(none.contains("no video capture devices"), "{none}");
    }
}
