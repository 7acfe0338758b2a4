//! Room around faces that fill the photo.
//!
//! MTCNN finds faces by their surroundings as much as by their features, and the alignment
//! templates reach beyond the face box: a face cut tightly from a larger photo (ID photos, face
//! datasets, another detector's crops) is missed or badly landmarked, and its aligned crop comes
//! out partly black. When no face is found, or the chosen face runs up to the border, the photo
//! is searched again on a [`Canvas`]: the photo (shrunk if large) in the middle of a plain grey
//! field, which is what a detector and an embedder trained on photos with background expect.

use facegate_detect::Face;
use facegate_image::{Rgb, RgbImage};

/// Longest side of the photo on a canvas: a face that fills a photo stays far above every
/// embedder's input size (112–160 px), and the search on the canvas stays cheap.
const MAX_PHOTO_SIDE: u32 = 640;

/// Grey added on each side of the photo, as a share of its longer side, for each canvas
/// searched in turn until one gives a face. MTCNN's first stage scans each pyramid level on a
/// grid with a 2-pixel step, so whether a face at the edge of detection is found depends on
/// where it falls against that grid; a second border moves it and finds some of the faces the
/// first misses (greyscale tight crops of LFW, docs/ACCURACY.md). A third is not tried: each
/// costs a full search of a photo that may have no face.
pub const PAD_SHARES: [f32; 2] = [0.4, 0.2];

/// Mid grey: neither the dark nor the bright end the quality gate counts as clipped.
const FILL: Rgb<u8> = Rgb([128, 128, 128]);

/// A face "touches" the border when its box, grown by this share of its size on each side,
/// leaves the image: the detector saw too little around it.
const CONTEXT_SHARE: f32 = 0.1;

/// A photo placed in the middle of a grey field: canvas = photo × `scale` + `offset`.
pub struct Canvas {
    pub image: RgbImage,
    pub scale: f32,
    pub offset: [f32; 2],
}

impl Canvas {
    pub fn around(photo: &RgbImage, pad_share: f32) -> Canvas {
        let (w, h) = photo.dimensions();
        let longest = w.max(h).max(1);
        let scale = (MAX_PHOTO_SIDE as f32 / longest as f32).min(1.0);
        let (sw, sh) = (
            ((w as f32 * scale).round() as u32).max(1),
            ((h as f32 * scale).round() as u32).max(1),
        );
        let shrunk;
        let placed = if scale < 1.0 {
            shrunk = facegate_image::resize(photo, sw, sh);
            &shrunk
        } else {
            photo
        };
        let pad = (pad_share * sw.max(sh) as f32).round() as u32;
        let mut image = RgbImage::from_pixel(sw + 2 * pad, sh + 2 * pad, FILL);
        let row = sw as usize * 3;
        let canvas_row = image.width() as usize * 3;
        let raw = image.as_mut();
        for (y, source) in placed.as_raw().chunks_exact(row).enumerate() {
            let start = (y + pad as usize) * canvas_row + pad as usize * 3;
            raw[start..start + row].copy_from_slice(source);
        }
        Canvas {
            image,
            scale: sw as f32 / w.max(1) as f32,
            offset: [pad as f32, pad as f32],
        }
    }

    /// A face found on the canvas, in the photo's coordinates.
    pub fn to_photo(&self, face: &Face) -> Face {
        let map = |[x, y]: [f32; 2]| {
            [
                (x - self.offset[0]) / self.scale,
                (y - self.offset[1]) / self.scale,
            ]
        };
        let [x1, y1] = map([face.bbox[0], face.bbox[1]]);
        let [x2, y2] = map([face.bbox[2], face.bbox[3]]);
        Face {
            bbox: [x1, y1, x2, y2],
            score: face.score,
            landmarks: face.landmarks.map(map),
        }
    }

    /// A face in the photo's coordinates, on the canvas.
    pub fn to_canvas(&self, face: &Face) -> Face {
        let map = |[x, y]: [f32; 2]| {
            [
                x * self.scale + self.offset[0],
                y * self.scale + self.offset[1],
            ]
        };
        let [x1, y1] = map([face.bbox[0], face.bbox[1]]);
        let [x2, y2] = map([face.bbox[2], face.bbox[3]]);
        Face {
            bbox: [x1, y1, x2, y2],
            score: face.score,
            landmarks: face.landmarks.map(map),
        }
    }
}

/// Whether `face`'s box, with a margin of [`CONTEXT_SHARE`] of its size, reaches past the
/// border of a `width x height` photo.
pub fn touches_border(face: &Face, width: u32, height: u32) -> bool {
    let [x1, y1, x2, y2] = face.bbox;
    let (mx, my) = (CONTEXT_SHARE * face.width(), CONTEXT_SHARE * face.height());
    x1 - mx < 0.0 || y1 - my < 0.0 || x2 + mx > width as f32 || y2 + my > height as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(bbox: [f32; 4]) -> Face {
        let [x1, y1, x2, y2] = bbox;
        Face {
            bbox,
            score: 0.99,
            landmarks: [
                [x1 + 0.3 * (x2 - x1), y1 + 0.4 * (y2 - y1)],
                [x1 + 0.7 * (x2 - x1), y1 + 0.4 * (y2 - y1)],
                [x1 + 0.5 * (x2 - x1), y1 + 0.6 * (y2 - y1)],
                [x1 + 0.35 * (x2 - x1), y1 + 0.8 * (y2 - y1)],
                [x1 + 0.65 * (x2 - x1), y1 + 0.8 * (y2 - y1)],
            ],
        }
    }

    #[test]
    fn a_small_photo_sits_unscaled_in_the_middle_of_grey() {
        let photo = RgbImage::from_pixel(150, 100, Rgb([10, 200, 30]));
        let canvas = Canvas::around(&photo, 0.4);
        assert_eq!(canvas.scale, 1.0);
        assert_eq!(canvas.offset, [60.0, 60.0]);
        assert_eq!(canvas.image.dimensions(), (270, 220));
        assert_eq!(*canvas.image.get_pixel(0, 0), FILL);
        assert_eq!(*canvas.image.get_pixel(60, 60), Rgb([10, 200, 30]));
        assert_eq!(*canvas.image.get_pixel(209, 159), Rgb([10, 200, 30]));
        assert_eq!(*canvas.image.get_pixel(210, 160), FILL);
    }

    #[test]
    fn a_large_photo_is_shrunk_and_faces_map_back_exactly() {
        let photo = RgbImage::new(2000, 1000);
        let canvas = Canvas::around(&photo, 0.4);
        assert!((canvas.scale - 0.32).abs() < 1e-6);
        assert!(canvas.image.width() <= 1152);
        let original = face([100.0, 50.0, 1900.0, 990.0]);
        let back = canvas.to_photo(&canvas.to_canvas(&original));
        for (a, b) in back.bbox.iter().zip(original.bbox) {
            assert!((a - b).abs() < 1e-3, "{a} vs {b}");
        }
        for (a, b) in back.landmarks.iter().zip(original.landmarks) {
            assert!((a[0] - b[0]).abs() < 1e-3 && (a[1] - b[1]).abs() < 1e-3);
        }
    }

    #[test]
    fn faces_with_room_around_them_do_not_touch_the_border() {
        assert!(!touches_border(&face([20.0, 20.0, 80.0, 80.0]), 100, 100));
        assert!(touches_border(&face([3.0, 20.0, 80.0, 80.0]), 100, 100));
        assert!(touches_border(&face([20.0, 20.0, 80.0, 97.0]), 100, 100));
        assert!(touches_border(&face([-5.0, -5.0, 105.0, 105.0]), 100, 100));
    }
}
