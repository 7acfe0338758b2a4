//! Hostile and odd inputs, made by the tests themselves: broken and truncated files,
//! decompression bombs, unusual colour formats, animations, non-images.

use image::{ImageEncoder, Rgb, RgbImage};

/// A PNG that declares `width x height` pixels with next to no image data: a decompression
/// bomb must be refused from its header, before any pixel buffer is allocated.
pub fn png_header_only(width: u32, height: u32) -> Vec<u8> {
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &ihdr));
    // A tiny zlib stream as the only image data: decoding it all would need 10 GB.
    png.extend(chunk(
        b"IDAT",
        &[0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01],
    ));
    png.extend(chunk(b"IEND", &[]));
    png
}

/// A real JPEG whose frame header is rewritten to declare `width x height`.
pub fn jpeg_declaring(width: u16, height: u16) -> Vec<u8> {
    let mut jpeg = jpeg(&noise(16, 16, 3));
    let sof = jpeg
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("a baseline JPEG has an SOF0 marker");
    // Marker, length (2), precision (1), then height and width.
    jpeg[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    jpeg[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    jpeg
}

pub fn jpeg(image: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode_image(image)
        .unwrap();
    out
}

pub fn png(image: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
    out
}

/// 16 bits per channel.
pub fn png16(image: &RgbImage) -> Vec<u8> {
    let wide: Vec<u8> = image
        .as_raw()
        .iter()
        .flat_map(|&v| (u16::from(v) * 257).to_be_bytes())
        .collect();
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(
            &wide,
            image.width(),
            image.height(),
            image::ExtendedColorType::Rgb16,
        )
        .unwrap();
    out
}

pub fn webp(image: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::webp::WebPEncoder::new_lossless(&mut out)
        .write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
    out
}

/// An animated WebP: the frames' lossless bitstreams wrapped in ANIM/ANMF chunks.
pub fn animated_webp(frames: &[RgbImage]) -> Vec<u8> {
    let (w, h) = frames[0].dimensions();
    let mut body = b"WEBP".to_vec();
    let mut vp8x = vec![0x02 | 0x10, 0, 0, 0]; // animation + alpha flags
    vp8x.extend(&(w - 1).to_le_bytes()[..3]);
    vp8x.extend(&(h - 1).to_le_bytes()[..3]);
    body.extend(riff_chunk(b"VP8X", &vp8x));
    body.extend(riff_chunk(b"ANIM", &[0, 0, 0, 0, 0, 0]));
    for frame in frames {
        let still = webp(frame);
        // The still file is RIFF....WEBP then its VP8L chunk.
        let bitstream = &still[12..];
        let mut anmf = vec![0u8; 6]; // x, y offsets (24-bit each, /2)
        anmf.extend(&(w - 1).to_le_bytes()[..3]);
        anmf.extend(&(h - 1).to_le_bytes()[..3]);
        anmf.extend(&100u32.to_le_bytes()[..3]); // duration (ms)
        anmf.push(0);
        anmf.extend(bitstream);
        body.extend(riff_chunk(b"ANMF", &anmf));
    }
    let mut out = b"RIFF".to_vec();
    out.extend((body.len() as u32).to_le_bytes());
    out.extend(body);
    out
}

/// A two-frame animated GIF (facegate reads no GIF at all: it must say so).
pub fn animated_gif() -> Vec<u8> {
    let mut gif = b"GIF89a".to_vec();
    gif.extend([1, 0, 1, 0, 0x80, 0, 0]); // 1x1, global colour table of 2
    gif.extend([0, 0, 0, 255, 255, 255]);
    gif.extend(b"!\xFF\x0BNETSCAPE2.0\x03\x01\x00\x00\x00");
    for colour in [0u8, 1] {
        gif.extend([0x21, 0xF9, 4, 0, 10, 0, 0, 0]);
        gif.extend([0x2C, 0, 0, 0, 0, 1, 0, 1, 0, 0]);
        gif.extend([2, 2, 0x44 | colour, 0x01, 0]);
    }
    gif.push(0x3B);
    gif
}

/// Deterministic noise (xorshift), `channels` 3.
pub fn noise(width: u32, height: u32, seed: u64) -> RgbImage {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    RgbImage::from_fn(width, height, |_, _| {
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 56) as u8
        };
        Rgb([next(), next(), next()])
    })
}

/// A JPEG with four-component (CMYK) data.
pub fn cmyk_jpeg(image: &RgbImage) -> Vec<u8> {
    let mut cmyk = Vec::with_capacity((image.width() * image.height() * 4) as usize);
    for p in image.pixels() {
        let [r, g, b] = p.0;
        let k = 255 - r.max(g).max(b);
        let scale = |c: u8| {
            if k == 255 {
                0
            } else {
                ((255 - c - k) as u32 * 255 / (255 - k) as u32) as u8
            }
        };
        // jpeg-encoder marks the file as Adobe CMYK; readers then invert the stored values
        // (Photoshop's convention), so plain ink amounts are written here.
        cmyk.extend([scale(r), scale(g), scale(b), k]);
    }
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, 90)
        .encode(
            &cmyk,
            image.width() as u16,
            image.height() as u16,
            jpeg_encoder::ColorType::Cmyk,
        )
        .unwrap();
    out
}

fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    let mut typed = kind.to_vec();
    typed.extend(data);
    out.extend(&typed);
    out.extend(crc32(&typed).to_be_bytes());
    out
}

fn riff_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = kind.to_vec();
    out.extend((data.len() as u32).to_le_bytes());
    out.extend(data);
    if data.len() % 2 == 1 {
        out.push(0);
    }
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
