//! Face alignment: cut a detected face out of the photo as the square crop the embedding
//! network expects.
//!
//! * [`AlignMode::Similarity`] (default): the similarity transform (rotation, uniform scale,
//!   translation) that best maps the five detected landmarks onto a fixed template, then a
//!   bilinear warp. Faces come out upright and at the same scale whatever their roll.
//! * [`AlignMode::Box`]: the original prototype's crop — the detector's box grown by a margin,
//!   resized to the output size (no rotation).

mod similarity;
mod warp;

use facegate_face::Face;
use facegate_image::RgbImage;
use serde::{Deserialize, Serialize};

pub use similarity::Similarity;
pub use warp::warp_similarity;

/// How faces are cut out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum AlignMode {
    /// 5-point similarity transform onto [`TEMPLATE_160`].
    #[default]
    Similarity,
    /// Detector box grown by `margin` (a fraction of the box's width/height on each side).
    Box { margin: f32 },
}

impl AlignMode {
    /// A short stable name, stored with templates (`similarity`, `box-0.00`).
    pub fn id(&self) -> String {
        match self {
            AlignMode::Similarity => "similarity".to_string(),
            AlignMode::Box { margin } => format!("box-{margin:.2}"),
        }
    }
}

/// Where the five landmarks land in a 160x160 aligned face (eye, eye, nose, mouth, mouth;
/// image left first).
///
/// Derived, not guessed: `facegate derive-template` measures the mean MTCNN landmark
/// positions of the 115 clear faces of the 5-celebrity set inside the crop FaceNet
/// (davidsandberg/facenet 20170512) was evaluated with — the MTCNN box plus a 32 px margin at
/// 160x160. It printed eyes (53.8, 66.7) / (110.9, 65.5), nose (84.5, 92.2), mouth corners
/// (57.7, 112.8) / (108.9, 111.5); the template is that, made left-right symmetric about
/// x = 80 (the set's faces lean slightly to one side). Similarity-aligned faces therefore sit
/// in the frame the network knows, only upright.
pub const TEMPLATE_160: [[f32; 2]; 5] = [
    [51.45, 66.1],
    [108.55, 66.1],
    [80.0, 92.2],
    [54.4, 112.15],
    [105.6, 112.15],
];

/// Cuts `face` out of `image` as a `size x size` RGB crop, with the FaceNet template.
pub fn align(image: &RgbImage, face: &Face, mode: AlignMode, size: u32) -> RgbImage {
    let scale = size as f32 / 160.0;
    let template = TEMPLATE_160.map(|[x, y]| [x * scale, y * scale]);
    align_to(image, face, mode, &template, size)
}

/// Cuts `face` out of `image` as a `size x size` RGB crop; in similarity mode the landmarks
/// go to `template` (coordinates in the output crop).
pub fn align_to(
    image: &RgbImage,
    face: &Face,
    mode: AlignMode,
    template: &[[f32; 2]; 5],
    size: u32,
) -> RgbImage {
    match mode {
        AlignMode::Similarity => {
            let transform = Similarity::estimate(&face.landmarks, template);
            warp::warp_similarity(image, &transform, size, size)
        }
        AlignMode::Box { margin } => {
            let [x1, y1, x2, y2] = face.bbox;
            let (mx, my) = ((x2 - x1) * margin, (y2 - y1) * margin);
            warp::crop_resize(image, [x1 - mx, y1 - my, x2 + mx, y2 + my], size, size)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use facegate_image::Rgb;

    fn face_at(landmarks: [[f32; 2]; 5]) -> Face {
        Face {
            bbox: [0.0, 0.0, 10.0, 10.0],
            score: 1.0,
            landmarks,
        }
    }

    #[test]
    fn landmarks_already_on_the_template_give_an_identity_warp() {
        let image = RgbImage::from_fn(160, 160, |x, y| Rgb([x as u8, y as u8, 7]));
        let out = align(&image, &face_at(TEMPLATE_160), AlignMode::Similarity, 160);
        for (x, y) in [(10, 20), (80, 80), (150, 3)] {
            assert_eq!(out.get_pixel(x, y), image.get_pixel(x, y));
        }
    }

    #[test]
    fn box_mode_resizes_the_box_region() {
        let image = RgbImage::from_fn(100, 100, |x, _| {
            if x < 50 {
                Rgb([0, 0, 0])
            } else {
                Rgb([255, 255, 255])
            }
        });
        let face = Face {
            bbox: [50.0, 0.0, 100.0, 100.0],
            score: 1.0,
            landmarks: [[0.0; 2]; 5],
        };
        let out = align(&image, &face, AlignMode::Box { margin: 0.0 }, 20);
        assert_eq!(out.dimensions(), (20, 20));
        assert_eq!(out.get_pixel(10, 10), &Rgb([255, 255, 255]));
    }
}
