//! `facegate bench`: time each stage of the pipeline per image on this machine.
//! Benchmarks measure; nothing here asserts a time.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use facegate::gallery::{Gallery, SqliteGallery};
use facegate::ops;
use serde_json::json;

use crate::commands::{images_in, Context};
use crate::progress::{self, Spinner};

fn photos(ctx: &Context, dir: Option<&Path>, limit: usize) -> Result<Vec<std::path::PathBuf>> {
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => ctx
            .store()
            .celebrity_dataset(&Spinner::new(ctx.interactive()))?,
    };
    let mut photos = images_in(&dir)?;
    photos.truncate(limit);
    if photos.is_empty() {
        bail!("no photos found in {}", dir.display());
    }
    Ok(photos)
}

#[derive(Default)]
struct Samples(Vec<Duration>);

impl Samples {
    fn summary(&self) -> serde_json::Value {
        let mut ms: Vec<f64> = self.0.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        if ms.is_empty() {
            return json!(null);
        }
        let pick = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
        json!({
            "n": ms.len(),
            "median_ms": pick(0.5),
            "mean_ms": ms.iter().sum::<f64>() / ms.len() as f64,
            "p90_ms": pick(0.9),
        })
    }
}

pub fn run(ctx: &Context, dir: Option<&Path>, limit: usize) -> Result<ExitCode> {
    let photos = photos(ctx, dir, limit)?;
    // Models are fetched and built before timing the load, so "load" is a warm-cache start.
    drop(ctx.engine()?);
    let start = Instant::now();
    let engine = ctx.engine()?;
    let load = start.elapsed();

    let gallery_path =
        std::env::temp_dir().join(format!("facegate-bench-{}.db", std::process::id()));
    let gallery = SqliteGallery::open(&gallery_path)?;
    let first = engine.load_image(&photos[0])?;
    let enrolled = ops::prepare_template(&engine, &first, true)?;
    gallery.enroll("bench", engine.model_id(), &[enrolled.template])?;

    let (mut decode, mut detect, mut align, mut embed, mut verify) = (
        Samples::default(),
        Samples::default(),
        Samples::default(),
        Samples::default(),
        Samples::default(),
    );
    let mut pixels = 0u64;
    let bar = progress::bar(photos.len() as u64, ctx.interactive(), "timing");
    for photo in &photos {
        bar.inc(1);
        let t = Instant::now();
        let image = engine.load_image(photo)?;
        decode.0.push(t.elapsed());
        pixels += u64::from(image.rgb.width()) * u64::from(image.rgb.height());
        let t = Instant::now();
        let faces = engine.detect(&image.rgb)?;
        detect.0.push(t.elapsed());
        let Some(face) = faces.iter().max_by(|a, b| a.area().total_cmp(&b.area())) else {
            continue;
        };
        let t = Instant::now();
        let crops = engine.aligned_crops(&image.rgb, face);
        align.0.push(t.elapsed());
        let t = Instant::now();
        engine.embed_crops(&[crops])?;
        embed.0.push(t.elapsed());
        let t = Instant::now();
        let image = engine.load_image(photo)?;
        let _ = ops::verify(&engine, &gallery, "bench", &image, false)?;
        verify.0.push(t.elapsed());
    }
    bar.finish_and_clear();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", gallery_path.display()));
    }
    let doc = json!({
        "photos": photos.len(),
        "mean_megapixels": pixels as f64 / photos.len() as f64 / 1e6,
        "threads": ctx.global.threads,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "model_load_ms": load.as_secs_f64() * 1e3,
        "decode": decode.summary(),
        "detect": detect.summary(),
        "align": align.summary(),
        "embed": embed.summary(),
        "verify_end_to_end": verify.summary(),
    });
    ctx.emit(&doc, || {
        println!(
            "{} photos, mean {:.2} MP, {} cores; models loaded in {:.0} ms (cached)",
            photos.len(),
            doc["mean_megapixels"].as_f64().unwrap_or(0.0),
            doc["cores"],
            doc["model_load_ms"].as_f64().unwrap_or(0.0)
        );
        println!(
            "{:<22} {:>10} {:>10} {:>10}",
            "stage (per image)", "median ms", "mean ms", "p90 ms"
        );
        for key in ["decode", "detect", "align", "embed", "verify_end_to_end"] {
            let s = &doc[key];
            println!(
                "{:<22} {:>10.1} {:>10.1} {:>10.1}",
                key,
                s["median_ms"].as_f64().unwrap_or(f64::NAN),
                s["mean_ms"].as_f64().unwrap_or(f64::NAN),
                s["p90_ms"].as_f64().unwrap_or(f64::NAN)
            );
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Mean landmark positions inside the crop FaceNet was evaluated with (MTCNN box plus
/// `margin_px` at 160x160, facenet-pytorch's margin convention): the alignment template.
pub fn derive_template(ctx: &Context, dir: Option<&Path>, margin_px: f32) -> Result<ExitCode> {
    let photos = photos(ctx, dir, usize::MAX)?;
    let engine = ctx.engine()?;
    let mut sum = [[0.0f64; 2]; 5];
    let mut n = 0usize;
    for photo in &photos {
        let image = engine.load_image(photo)?;
        let faces = engine.detect(&image.rgb)?;
        let Some(face) = faces
            .iter()
            .filter(|f| f.score > 0.95)
            .max_by(|a, b| a.area().total_cmp(&b.area()))
        else {
            continue;
        };
        let (w, h) = (face.width(), face.height());
        let (mx, my) = (
            margin_px * w / (160.0 - margin_px),
            margin_px * h / (160.0 - margin_px),
        );
        let (x0, y0) = (face.bbox[0] - mx / 2.0, face.bbox[1] - my / 2.0);
        let (cw, ch) = (w + mx, h + my);
        for (k, [x, y]) in face.landmarks.iter().enumerate() {
            sum[k][0] += f64::from((x - x0) / cw * 160.0);
            sum[k][1] += f64::from((y - y0) / ch * 160.0);
        }
        n += 1;
    }
    let mean: Vec<[f64; 2]> = sum
        .iter()
        .map(|[x, y]| [x / n as f64, y / n as f64])
        .collect();
    let doc = json!({ "faces": n, "margin_px": margin_px, "template_160": mean });
    ctx.emit(&doc, || {
        println!("{n} faces; mean landmarks in a 160x160 box+{margin_px}px crop:");
        for [x, y] in &mean {
            println!("    [{x:.1}, {y:.1}],");
        }
    })?;
    Ok(ExitCode::SUCCESS)
}
