//! Makes a tight-crop copy of a folder of people (LFW's layout: `ROOT/<person>/<photo>.jpg`):
//! each photo cut to the box of its central face plus a margin of 0–10% of the box per side
//! (drawn per photo from a hash of its path, so the set is the same on every run), saved under
//! the same relative path. The kind of input people have from ID photos, face datasets or
//! another detector: the face fills the image and touches its border.
//!
//! ```text
//! cargo run --release -p facegate --example tight_crops -- SRC OUT [--grayscale] [--uncropped] [--home DIR]
//! ```
//!
//! `--uncropped` keeps every photo whole (with `--grayscale`: the control that separates what
//! losing colour costs from what losing the context around the face costs).
//!
//! Photos where no face is found keep a central square of 45% of the image's shorter side (LFW's
//! faces sit in the middle), and are listed in `OUT/_meta/crops.tsv` with `fallback`.

use std::io::Write;
use std::path::{Path, PathBuf};

use facegate::image::RgbImage;
use facegate::models::SilentObserver;
use facegate::{Engine, EngineOptions, Face, Home};
use sha2::{Digest, Sha256};

const MAX_MARGIN: f32 = 0.10;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut positional = Vec::new();
    let mut grayscale = false;
    let mut uncropped = false;
    let mut home = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--grayscale" => grayscale = true,
            "--uncropped" => uncropped = true,
            "--home" => home = args.next().map(PathBuf::from),
            _ => positional.push(PathBuf::from(arg)),
        }
    }
    let [src, out] = positional.as_slice() else {
        return Err("usage: tight_crops SRC OUT [--grayscale] [--uncropped] [--home DIR]".into());
    };
    let home = Home::resolve(home.as_deref())?;
    let engine = Engine::load(&home, EngineOptions::default(), &SilentObserver)?;
    let photos = facegate::eval::read_people_folder(src)?;
    std::fs::create_dir_all(out.join("_meta"))?;
    let mut log = std::fs::File::create(out.join("_meta/crops.tsv"))?;
    writeln!(log, "path\tx1\ty1\tx2\ty2\tmargin\tsource")?;
    let mut fallbacks = 0;
    for (i, photo) in photos.iter().enumerate() {
        let relative = photo.path.as_path();
        let image = engine.load_image(&src.join(relative))?;
        let (w, h) = image.rgb.dimensions();
        let faces = engine.detect(&image.rgb)?;
        let margin = MAX_MARGIN * unit_hash(relative);
        let (rect, source) = match central(&faces, w, h) {
            _ if uncropped => ([0.0, 0.0, w as f32, h as f32], "whole"),
            Some(face) => {
                let [x1, y1, x2, y2] = face.bbox;
                let (mx, my) = (margin * (x2 - x1), margin * (y2 - y1));
                ([x1 - mx, y1 - my, x2 + mx, y2 + my], "face")
            }
            None => {
                fallbacks += 1;
                let side = 0.45 * w.min(h) as f32;
                let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
                let half = side / 2.0;
                ([cx - half, cy - half, cx + half, cy + half], "fallback")
            }
        };
        let crop = cut(&image.rgb, rect, grayscale);
        let target = out.join(relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        image::DynamicImage::ImageRgb8(crop).save_with_format(&target, image::ImageFormat::Jpeg)?;
        writeln!(
            log,
            "{}\t{:.1}\t{:.1}\t{:.1}\t{:.1}\t{:.3}\t{source}",
            relative.display(),
            rect[0],
            rect[1],
            rect[2],
            rect[3],
            margin
        )?;
        if (i + 1) % 500 == 0 {
            eprintln!("{} of {} photos", i + 1, photos.len());
        }
    }
    eprintln!(
        "{} photos cropped into {} ({fallbacks} without a face kept a central square)",
        photos.len(),
        out.display()
    );
    Ok(())
}

/// The face nearest the centre, by the same rule as the pipeline's `central` face choice.
fn central(faces: &[Face], w: u32, h: u32) -> Option<&Face> {
    let score = |f: &Face| {
        let [cx, cy] = f.centre();
        let (dx, dy) = (cx - w as f32 / 2.0, cy - h as f32 / 2.0);
        f.visible_area(w, h) - 2.0 * (dx * dx + dy * dy)
    };
    faces.iter().max_by(|a, b| score(a).total_cmp(&score(b)))
}

/// A number in [0, 1) fixed by the path.
fn unit_hash(path: &Path) -> f32 {
    let digest = Sha256::digest(path.to_string_lossy().as_bytes());
    u16::from_le_bytes([digest[0], digest[1]]) as f32 / 65536.0
}

/// The part of `image` inside `rect` (clamped to the image), grey if asked.
fn cut(image: &RgbImage, rect: [f32; 4], grayscale: bool) -> RgbImage {
    let (w, h) = image.dimensions();
    let x1 = rect[0].round().clamp(0.0, w as f32 - 1.0) as u32;
    let y1 = rect[1].round().clamp(0.0, h as f32 - 1.0) as u32;
    let x2 = (rect[2].round().clamp(0.0, w as f32) as u32).max(x1 + 1);
    let y2 = (rect[3].round().clamp(0.0, h as f32) as u32).max(y1 + 1);
    RgbImage::from_fn(x2 - x1, y2 - y1, |x, y| {
        let p = image.get_pixel(x1 + x, y1 + y).0;
        if grayscale {
            let g = (0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32).round();
            facegate::image::Rgb([g as u8; 3])
        } else {
            facegate::image::Rgb(p)
        }
    })
}
