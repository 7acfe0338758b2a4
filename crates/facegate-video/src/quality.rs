//! How usable a face in a frame is for enrollment: size, sharpness, pose, exposure.

use facegate_face::Face;
use facegate_image::stats::{grey_level, laplacian_variance, mean_std};
use facegate_image::RgbImage;
use serde::Serialize;

/// Measurements of one face in one frame.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct FaceQuality {
    /// The shorter side of the face box, in pixels.
    pub size_px: f32,
    /// Variance of the Laplacian of the face's grey levels: low means blurred.
    pub sharpness: f32,
    /// 1 = looking straight at the camera, 0 = profile (from the nose's place between the eyes
    /// and the tilt of the eye line).
    pub frontal: f32,
    /// Mean grey level of the face, 0-255.
    pub brightness: f32,
    /// Standard deviation of the face's grey levels.
    pub contrast: f32,
}

/// Thresholds a face must meet to be enrolled from video.
#[derive(Clone, Copy, Debug)]
pub struct FrameQualityRules {
    pub min_size_px: f32,
    pub min_sharpness: f32,
    pub min_frontal: f32,
    pub brightness: (f32, f32),
    pub min_contrast: f32,
}

impl Default for FrameQualityRules {
    fn default() -> Self {
        FrameQualityRules {
            min_size_px: 60.0,
            // Measured on the 5-celebrity photos: sharp faces score 100-2000; a 3 px Gaussian
            // blur of the same faces scores under 40.
            min_sharpness: 60.0,
            min_frontal: 0.5,
            brightness: (40.0, 220.0),
            min_contrast: 15.0,
        }
    }
}

impl FaceQuality {
    pub fn measure(image: &RgbImage, face: &Face) -> FaceQuality {
        let grey = face_grey(image, face);
        let (mean, std) = mean_std(&grey.pixels);
        FaceQuality {
            size_px: face.width().min(face.height()),
            sharpness: laplacian_variance(grey.width, grey.height, &grey.pixels),
            frontal: frontal(face),
            brightness: mean,
            contrast: std,
        }
    }

    /// Why this face is not good enough, or `None` if it is.
    pub fn rejection(&self, rules: &FrameQualityRules) -> Option<String> {
        if self.size_px < rules.min_size_px {
            return Some(format!(
                "face too small ({:.0} px, at least {:.0})",
                self.size_px, rules.min_size_px
            ));
        }
        if self.sharpness < rules.min_sharpness {
            return Some(format!(
                "blurred (sharpness {:.0}, at least {:.0})",
                self.sharpness, rules.min_sharpness
            ));
        }
        if self.frontal < rules.min_frontal {
            return Some(format!(
                "not facing the camera (frontal {:.2}, at least {:.2})",
                self.frontal, rules.min_frontal
            ));
        }
        if self.brightness < rules.brightness.0 {
            return Some(format!("too dark (brightness {:.0})", self.brightness));
        }
        if self.brightness > rules.brightness.1 {
            return Some(format!("overexposed (brightness {:.0})", self.brightness));
        }
        if self.contrast < rules.min_contrast {
            return Some(format!("washed out (contrast {:.0})", self.contrast));
        }
        None
    }

    /// One number to rank acceptable frames: sharper, larger, more frontal is better.
    pub fn score(&self) -> f32 {
        self.sharpness.ln_1p() + self.size_px.ln_1p() + 2.0 * self.frontal
    }
}

struct Grey {
    width: usize,
    height: usize,
    pixels: Vec<f32>,
}

/// The face box (clipped to the image), in grey levels, resampled to at most 128 px wide so
/// sharpness is comparable between near and far faces.
fn face_grey(image: &RgbImage, face: &Face) -> Grey {
    let (iw, ih) = (image.width() as f32, image.height() as f32);
    let x1 = face.bbox[0].clamp(0.0, iw - 1.0);
    let y1 = face.bbox[1].clamp(0.0, ih - 1.0);
    let x2 = face.bbox[2].clamp(x1 + 1.0, iw);
    let y2 = face.bbox[3].clamp(y1 + 1.0, ih);
    let step = ((x2 - x1) / 128.0).max(1.0);
    let width = ((x2 - x1) / step) as usize;
    let height = ((y2 - y1) / step) as usize;
    let mut pixels = Vec::with_capacity(width * height);
    for y in 0..height {
        for x in 0..width {
            let px = (x1 + x as f32 * step) as u32;
            let py = (y1 + y as f32 * step) as u32;
            let [r, g, b] = image
                .get_pixel(px.min(image.width() - 1), py.min(image.height() - 1))
                .0;
            pixels.push(grey_level([r, g, b]));
        }
    }
    Grey {
        width,
        height,
        pixels,
    }
}

/// 1 when the nose is midway between the eyes and the eyes are level; falls towards 0 as the
/// head turns (nose towards one eye) or rolls.
pub fn frontal(face: &Face) -> f32 {
    let [left_eye, right_eye, nose, _, _] = face.landmarks;
    let eye_dx = right_eye[0] - left_eye[0];
    let eye_dy = right_eye[1] - left_eye[1];
    let eye_distance = (eye_dx * eye_dx + eye_dy * eye_dy).sqrt();
    if eye_distance < 1.0 {
        return 0.0;
    }
    // Position of the nose along the eye line: 0.5 = centred.
    let along = ((nose[0] - left_eye[0]) * eye_dx + (nose[1] - left_eye[1]) * eye_dy)
        / (eye_distance * eye_distance);
    let yaw = (1.0 - (along - 0.5).abs() * 2.0).clamp(0.0, 1.0);
    let roll = (1.0 - (eye_dy / eye_distance).abs() * 2.0).clamp(0.0, 1.0);
    yaw.min(roll)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(landmarks: [[f32; 2]; 5]) -> Face {
        Face {
            bbox: [0.0, 0.0, 100.0, 100.0],
            score: 1.0,
            landmarks,
        }
    }

    #[test]
    fn frontal_faces_score_high_and_turned_ones_low() {
        let straight = face([
            [30.0, 40.0],
            [70.0, 40.0],
            [50.0, 60.0],
            [35.0, 80.0],
            [65.0, 80.0],
        ]);
        let turned = face([
            [30.0, 40.0],
            [70.0, 40.0],
            [68.0, 60.0],
            [35.0, 80.0],
            [65.0, 80.0],
        ]);
        assert!(frontal(&straight) > 0.95);
        assert!(frontal(&turned) < 0.2);
    }

    #[test]
    fn blur_lowers_sharpness() {
        let mut image = RgbImage::new(100, 100);
        for (x, y, p) in image.enumerate_pixels_mut() {
            let v = if (x / 4 + y / 4) % 2 == 0 { 230 } else { 20 };
            *p = facegate_image::Rgb([v, v, v]);
        }
        let f = face([
            [30.0, 40.0],
            [70.0, 40.0],
            [50.0, 60.0],
            [35.0, 80.0],
            [65.0, 80.0],
        ]);
        let sharp = FaceQuality::measure(&image, &f);
        let blurred = FaceQuality::measure(&image::imageops::blur(&image, 3.0), &f);
        assert!(
            sharp.sharpness > 10.0 * blurred.sharpness,
            "{sharp:?} {blurred:?}"
        );
        assert!(blurred.rejection(&FrameQualityRules::default()).is_some());
    }
}
