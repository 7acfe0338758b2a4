//! Image input for facegate.
//!
//! [`load`] and [`decode`] turn a file or bytes into an upright RGB image: the format is
//! sniffed from the content (JPEG, PNG, WebP, BMP), the pixel count is checked against a limit
//! *before* any pixel buffer is allocated (decompression bombs), the EXIF orientation is
//! applied, grayscale is expanded and transparency is flattened onto white.

mod draw;
pub mod stats;

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageDecoder, ImageReader, Limits};
use sha2::{Digest, Sha256};

pub use draw::{draw_box, draw_point};
pub use image::{Rgb, RgbImage};

/// Images larger than this are refused unless the caller raises the limit.
pub const DEFAULT_MAX_PIXELS: u64 = 50_000_000;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("could not read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{source_name} is empty (0 bytes)")]
    Empty { source_name: String },
    #[error("{source_name} is not an image facegate can read (supported: JPEG, PNG, WebP, BMP)")]
    UnsupportedFormat { source_name: String },
    #[error("{source_name} is {width}x{height} = {pixels} pixels, over the limit of {limit}; resize it, or raise the limit with --max-pixels")]
    TooLarge {
        source_name: String,
        width: u32,
        height: u32,
        pixels: u64,
        limit: u64,
    },
    #[error("{source_name} could not be decoded; the file is damaged or truncated ({message})")]
    Corrupt {
        source_name: String,
        message: String,
    },
}

/// A decoded, upright RGB image and where it came from.
#[derive(Clone, Debug)]
pub struct LoadedImage {
    pub rgb: RgbImage,
    /// SHA-256 of the encoded bytes: identifies the same photo enrolled twice.
    pub sha256: String,
    /// A name for messages (the path, or a caller-supplied label).
    pub source_name: String,
}

/// Lower-case hex SHA-256 of a photo's encoded bytes: how facegate recognises the same photo.
pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// Reads and decodes an image file.
pub fn load(path: &Path, max_pixels: u64) -> Result<LoadedImage, ImageError> {
    let bytes = std::fs::read(path).map_err(|source| ImageError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    decode(&bytes, &path.display().to_string(), max_pixels)
}

/// Decodes encoded image bytes; `source_name` is used in messages.
pub fn decode(bytes: &[u8], source_name: &str, max_pixels: u64) -> Result<LoadedImage, ImageError> {
    let name = || source_name.to_string();
    if bytes.is_empty() {
        return Err(ImageError::Empty {
            source_name: name(),
        });
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ImageError::Corrupt {
            source_name: name(),
            message: e.to_string(),
        })?;
    match reader.format() {
        None => {
            return Err(ImageError::UnsupportedFormat {
                source_name: name(),
            })
        }
        // The JPEG decoder fills a cut-off file with grey instead of failing: check the end.
        Some(image::ImageFormat::Jpeg) if !jpeg_is_complete(bytes) => {
            return Err(ImageError::Corrupt {
                source_name: name(),
                message: "the JPEG data ends before its end-of-image marker".into(),
            })
        }
        Some(_) => {}
    }
    let corrupt = |e: image::ImageError| match e {
        image::ImageError::Unsupported(_) => ImageError::UnsupportedFormat {
            source_name: name(),
        },
        other => ImageError::Corrupt {
            source_name: name(),
            message: other.to_string(),
        },
    };
    let mut reader = reader;
    let mut limits = Limits::default();
    // Decoders may allocate more than the final RGBA buffer; leave headroom but stay bounded.
    limits.max_alloc = Some(max_pixels.saturating_mul(16).max(64 << 20));
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(corrupt)?;
    let (width, height) = decoder.dimensions();
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels {
        return Err(ImageError::TooLarge {
            source_name: name(),
            width,
            height,
            pixels,
            limit: max_pixels,
        });
    }
    if pixels == 0 {
        return Err(ImageError::Corrupt {
            source_name: name(),
            message: "the image has no pixels".into(),
        });
    }
    let orientation = decoder.orientation().map_err(corrupt)?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(corrupt)?;
    image.apply_orientation(orientation);
    Ok(LoadedImage {
        rgb: to_rgb(image),
        sha256: sha256_hex(bytes),
        source_name: name(),
    })
}

/// Whether a JPEG's compressed data reaches its end-of-image marker. Walks the marker
/// segments (skipping APP segments wholesale, so an embedded EXIF thumbnail's own markers are
/// not mistaken for the image's) to the first start-of-scan, then looks for `FF D9` after it.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let mut i = 2; // after SOI
    while i + 4 <= bytes.len() {
        if bytes[i] != 0xFF {
            return false;
        }
        let marker = bytes[i + 1];
        if marker == 0xFF {
            i += 1; // fill byte
            continue;
        }
        if marker == 0xD8 || (0xD0..=0xD7).contains(&marker) || marker == 0x01 {
            i += 2;
            continue;
        }
        let length = usize::from(u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]));
        if marker == 0xDA {
            let scan = i + 2 + length;
            return bytes
                .get(scan..)
                .is_some_and(|rest| rest.windows(2).any(|w| w == [0xFF, 0xD9]));
        }
        i += 2 + length;
    }
    false
}

/// A copy of the `width x height` region at `(x, y)` (clipped to the image).
pub fn image_crop(image: &RgbImage, x: u32, y: u32, width: u32, height: u32) -> RgbImage {
    image::imageops::crop_imm(image, x, y, width, height).to_image()
}

/// The image resized to `width x height` (bilinear; for shrinking large photos before
/// detection).
pub fn resize(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    image::imageops::resize(image, width, height, image::imageops::FilterType::Triangle)
}

/// The image mirrored left-right.
pub fn flip_horizontal(image: &RgbImage) -> RgbImage {
    image::imageops::flip_horizontal(image)
}

/// RGB with transparency composited onto white (a transparent pixel's colour is arbitrary).
fn to_rgb(image: DynamicImage) -> RgbImage {
    if !image.color().has_alpha() {
        return image.to_rgb8();
    }
    let rgba = image.to_rgba8();
    RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let p = rgba.get_pixel(x, y).0;
        let alpha = f32::from(p[3]) / 255.0;
        let blend = |c: u8| (f32::from(c) * alpha + 255.0 * (1.0 - alpha)).round() as u8;
        Rgb([blend(p[0]), blend(p[1]), blend(p[2])])
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, ImageFormat, Luma, Rgba, RgbaImage};

    fn encode(image: DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    #[test]
    fn grayscale_png_becomes_rgb() {
        let gray = GrayImage::from_pixel(4, 3, Luma([80]));
        let loaded = decode(
            &encode(gray.into(), ImageFormat::Png),
            "g.png",
            DEFAULT_MAX_PIXELS,
        )
        .unwrap();
        assert_eq!(loaded.rgb.dimensions(), (4, 3));
        assert_eq!(loaded.rgb.get_pixel(0, 0), &Rgb([80, 80, 80]));
    }

    #[test]
    fn transparency_is_flattened_onto_white() {
        let rgba = RgbaImage::from_pixel(2, 2, Rgba([0, 0, 0, 0]));
        let loaded = decode(
            &encode(rgba.into(), ImageFormat::Png),
            "a.png",
            DEFAULT_MAX_PIXELS,
        )
        .unwrap();
        assert_eq!(loaded.rgb.get_pixel(1, 1), &Rgb([255, 255, 255]));
    }

    #[test]
    fn refuses_images_over_the_pixel_limit_before_decoding() {
        let big = RgbImage::new(300, 200);
        let err = decode(&encode(big.into(), ImageFormat::Png), "big.png", 10_000).unwrap_err();
        assert!(
            matches!(err, ImageError::TooLarge { pixels: 60_000, .. }),
            "{err}"
        );
    }

    #[test]
    fn empty_text_and_truncated_inputs_are_clear_errors() {
        assert!(matches!(
            decode(b"", "e.jpg", DEFAULT_MAX_PIXELS),
            Err(ImageError::Empty { .. })
        ));
        assert!(matches!(
            decode(b"hello, I am text", "t.jpg", DEFAULT_MAX_PIXELS),
            Err(ImageError::UnsupportedFormat { .. })
        ));
        let png = encode(RgbImage::new(64, 64).into(), ImageFormat::Png);
        let err = decode(&png[..png.len() / 2], "cut.png", DEFAULT_MAX_PIXELS).unwrap_err();
        assert!(matches!(err, ImageError::Corrupt { .. }), "{err}");
    }

    #[test]
    fn truncated_jpeg_is_refused() {
        let jpeg = encode(
            RgbImage::from_fn(64, 64, |x, y| Rgb([x as u8 * 4, y as u8 * 4, 9])).into(),
            ImageFormat::Jpeg,
        );
        assert!(decode(&jpeg, "whole.jpg", DEFAULT_MAX_PIXELS).is_ok());
        let err = decode(&jpeg[..jpeg.len() - 40], "cut.jpg", DEFAULT_MAX_PIXELS).unwrap_err();
        assert!(matches!(err, ImageError::Corrupt { .. }), "{err}");
    }

    #[test]
    fn same_bytes_same_hash() {
        let png = encode(RgbImage::new(2, 2).into(), ImageFormat::Png);
        let a = decode(&png, "a", DEFAULT_MAX_PIXELS).unwrap();
        let b = decode(&png, "b", DEFAULT_MAX_PIXELS).unwrap();
        assert_eq!(a.sha256, b.sha256);
        assert_eq!(a.sha256.len(), 64);
    }
}
