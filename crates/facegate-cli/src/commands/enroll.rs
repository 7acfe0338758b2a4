//! `enroll` (photos and folders of one person) and `enroll-all` (a folder per person).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use facegate::gallery::{Gallery, GalleryError, NewTemplate};
use facegate::{ops, Engine, Error};
use serde::Serialize;
use serde_json::json;

use crate::progress::{self};

use super::{liveness_line, quality_line};
use crate::context::{enroll_audited, images_in, Context};

#[derive(Serialize)]
struct EnrolledPhoto {
    source: String,
    template_id: Option<i64>,
    face: facegate::Face,
    faces_found: usize,
    quality: facegate::quality::QualityReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    liveness: Option<facegate::liveness::LivenessScore>,
}

#[derive(Serialize)]
struct SkippedPhoto {
    source: String,
    code: String,
    reason: String,
    /// The measured quality, when the photo failed the quality gate.
    #[serde(skip_serializing_if = "Option::is_none")]
    quality: Option<facegate::quality::QualityReport>,
}

impl SkippedPhoto {
    fn from_error(source: String, err: &Error) -> SkippedPhoto {
        SkippedPhoto {
            source,
            code: err.code().to_string(),
            reason: err.to_string(),
            quality: match err {
                Error::PoorQuality { report, .. } => Some((**report).clone()),
                _ => None,
            },
        }
    }
}

pub(crate) fn enroll(
    ctx: &Context,
    name: &str,
    inputs: &[PathBuf],
    largest: bool,
) -> Result<ExitCode> {
    facegate::gallery::normalize_name(name).map_err(Error::from)?;
    // Explicit files must all work; files found in folders may be skipped with a reason.
    let mut photos: Vec<(PathBuf, bool)> = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let found = images_in(input)?;
            if found.is_empty() {
                bail!(
                    "no images (.jpg .jpeg .png .webp .bmp) found in the folder {}",
                    input.display()
                );
            }
            photos.extend(found.into_iter().map(|p| (p, false)));
        } else {
            photos.push((input.clone(), true));
        }
    }
    let engine = ctx.bulk_engine(photos.len())?;
    let bar = progress::bar(
        photos.len() as u64,
        ctx.interactive() && photos.len() > 1,
        "enrolling",
    );
    let paths: Vec<PathBuf> = photos.iter().map(|(p, _)| p.clone()).collect();
    let results = prepare_all(&engine, &paths, largest, &bar);
    let mut prepared: Vec<(ops::PreparedTemplate, String)> = Vec::new();
    let mut skipped = Vec::new();
    for ((path, explicit), result) in photos.iter().zip(results) {
        match result {
            Ok(p) => {
                if prepared
                    .iter()
                    .any(|(q, _)| q.template.image_sha256 == p.template.image_sha256)
                {
                    skipped.push(SkippedPhoto {
                        source: path.display().to_string(),
                        code: "duplicate_input".into(),
                        reason: "the same photo was given twice".into(),
                        quality: None,
                    });
                } else {
                    prepared.push((p, path.display().to_string()));
                }
            }
            Err(err) if *explicit => {
                bar.finish_and_clear();
                return Err(
                    anyhow::Error::new(err).context(format!("nothing was enrolled for {name:?}"))
                );
            }
            Err(err) => skipped.push(SkippedPhoto::from_error(path.display().to_string(), &err)),
        }
    }
    bar.finish_and_clear();
    if prepared.is_empty() {
        let reasons: Vec<String> = skipped
            .iter()
            .map(|s| format!("  {}: {}", s.source, s.reason))
            .collect();
        bail!(
            "nothing was enrolled for {name:?}: every photo was skipped\n{}",
            reasons.join("\n")
        );
    }
    let templates: Vec<NewTemplate> = prepared.iter().map(|(p, _)| p.template.clone()).collect();
    let gallery = ctx.gallery_for_write()?;
    let report = enroll_audited(&engine, gallery.as_ref(), name, &templates)?;
    let mut added = report.added.iter();
    let mut enrolled = Vec::new();
    let mut already = Vec::new();
    for (p, source) in &prepared {
        if report.duplicates.contains(&p.template.image_sha256) {
            already.push(source.clone());
        } else {
            enrolled.push(EnrolledPhoto {
                source: source.clone(),
                template_id: added.next().copied(),
                face: p.face.clone(),
                faces_found: p.faces_found,
                quality: p.quality.clone(),
                liveness: p.liveness.clone(),
            });
        }
    }
    let doc = json!({
        "person": name,
        "created_person": report.created_person,
        "model": engine.model_id(),
        "gallery": ctx.gallery_location().to_string(),
        "enrolled": enrolled,
        "already_enrolled": already,
        "skipped": skipped,
    });
    ctx.emit(&doc, || {
        let verb = if report.created_person {
            "enrolled"
        } else {
            "added to"
        };
        println!("{verb} {name:?}: {} new template(s)", enrolled.len());
        for e in &enrolled {
            let note = if e.faces_found > 1 {
                format!(" (largest of {} faces)", e.faces_found)
            } else {
                String::new()
            };
            println!("  + {}{note}", e.source);
            println!("    {}", quality_line(&e.quality));
            if let Some(l) = &e.liveness {
                println!("    {}", liveness_line(l));
            }
        }
        for a in &already {
            println!("  = {a}: already enrolled for {name:?}, skipped");
        }
        for s in &skipped {
            println!("  - {}: skipped: {}", s.source, s.reason);
        }
        println!(
            "summary: {} enrolled, {} already enrolled, {} skipped",
            enrolled.len(),
            already.len(),
            skipped.len()
        );
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Decodes, detects and embeds photos on every core; results come back in input order.
pub fn prepare_all(
    engine: &Engine,
    photos: &[PathBuf],
    largest: bool,
    bar: &indicatif::ProgressBar,
) -> Vec<Result<ops::PreparedTemplate, Error>> {
    use rayon::prelude::*;
    photos
        .par_iter()
        .with_max_len(1)
        .map(|path| {
            let result = engine
                .load_image(path)
                .and_then(|image| ops::prepare_template(engine, &image, largest));
            bar.inc(1);
            result
        })
        .collect()
}

#[derive(Serialize)]
struct PersonEnrolled {
    person: String,
    added: usize,
    already_enrolled: usize,
}

/// SHA-256 of the photos already enrolled for `name` (none when the person is new).
pub(crate) fn enrolled_hashes(
    gallery: &dyn Gallery,
    name: &str,
    model_id: &str,
) -> Result<std::collections::HashSet<String>> {
    match gallery.templates_of(name, model_id) {
        Ok(templates) => Ok(templates.into_iter().map(|t| t.image_sha256).collect()),
        Err(GalleryError::UnknownPerson { .. }) => Ok(Default::default()),
        Err(other) => Err(Error::from(other).into()),
    }
}

/// `enroll-all DIR`: every subfolder of DIR is a person, named after the folder.
pub(crate) fn enroll_all(ctx: &Context, dir: &Path, largest: bool) -> Result<ExitCode> {
    let mut people: Vec<(String, Vec<PathBuf>)> = Vec::new();
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("could not list {}", dir.display()))?;
    let mut folders: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    folders.sort();
    for folder in folders {
        let name = folder
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        facegate::gallery::normalize_name(&name).map_err(Error::from)?;
        let photos = images_in(&folder)?;
        if !photos.is_empty() {
            people.push((name, photos));
        }
    }
    if people.is_empty() {
        bail!(
            "no subfolders with images found in {}; enroll-all expects DIR/<person name>/<photos>",
            dir.display()
        );
    }
    let all: Vec<PathBuf> = people.iter().flat_map(|(_, p)| p.clone()).collect();
    let started = std::time::Instant::now();
    let engine = ctx.bulk_engine(all.len())?;
    let loaded = started.elapsed();
    let gallery = ctx.gallery_for_write()?;
    let bar = progress::bar(all.len() as u64, ctx.interactive(), "enrolling");
    let mut report = Vec::new();
    let mut skipped = Vec::new();
    // People are processed in batches (enough photos to keep every core busy) and each person
    // is written as soon as their photos are ready, in one transaction: if the process dies,
    // everyone written so far stays enrolled, nobody is half-enrolled, and a re-run skips the
    // photos already enrolled without decoding them again.
    let batch_photos = 8 * std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut pending = people.iter().peekable();
    while pending.peek().is_some() {
        let mut batch: Vec<(&String, Vec<PathBuf>, usize)> = Vec::new();
        let mut size = 0;
        while let Some((name, photos)) = pending.next_if(|_| size < batch_photos) {
            let known = enrolled_hashes(gallery.as_ref(), name, engine.model_id())?;
            let mut todo = Vec::new();
            let mut already = 0;
            for photo in photos {
                match std::fs::read(photo) {
                    Ok(bytes) if known.contains(&facegate::image::sha256_hex(&bytes)) => {
                        already += 1;
                        bar.inc(1);
                    }
                    // Unreadable files are reported by the normal path below.
                    _ => todo.push(photo.clone()),
                }
            }
            size += todo.len();
            batch.push((name, todo, already));
        }
        let paths: Vec<PathBuf> = batch.iter().flat_map(|(_, p, _)| p.clone()).collect();
        let mut results = prepare_all(&engine, &paths, largest, &bar).into_iter();
        for (name, photos, already) in batch {
            let mut templates: Vec<NewTemplate> = Vec::new();
            for path in &photos {
                match results.next() {
                    // The same photo twice in one folder is kept once.
                    Some(Ok(p))
                        if !templates
                            .iter()
                            .any(|t| t.image_sha256 == p.template.image_sha256) =>
                    {
                        templates.push(p.template);
                    }
                    Some(Ok(_)) | None => {}
                    Some(Err(err)) => {
                        skipped.push(SkippedPhoto::from_error(path.display().to_string(), &err))
                    }
                }
            }
            if templates.is_empty() {
                if already > 0 {
                    report.push(PersonEnrolled {
                        person: name.clone(),
                        added: 0,
                        already_enrolled: already,
                    });
                }
                continue;
            }
            let done = enroll_audited(&engine, gallery.as_ref(), name, &templates)?;
            report.push(PersonEnrolled {
                person: name.clone(),
                added: done.added.len(),
                already_enrolled: already + done.duplicates.len(),
            });
        }
    }
    bar.finish_and_clear();
    let added: usize = report.iter().map(|r| r.added).sum();
    let processing = started.elapsed() - loaded;
    let doc = json!({
        "model": engine.model_id(),
        "gallery": ctx.gallery_location().to_string(),
        "photos": all.len(),
        "model_load_seconds": loaded.as_secs_f64(),
        "processing_seconds": processing.as_secs_f64(),
        "photos_per_second": all.len() as f64 / processing.as_secs_f64().max(1e-9),
        "templates_added": added,
        "people": report,
        "skipped": skipped,
    });
    ctx.emit(&doc, || {
        for s in &skipped {
            println!("  - {}: skipped: {}", s.source, s.reason);
        }
        println!(
            "summary: {} photos, {} people, {} new template(s), {} skipped; {:.1} photos/s",
            all.len(),
            report.len(),
            added,
            skipped.len(),
            all.len() as f64 / processing.as_secs_f64().max(1e-9)
        );
    })?;
    Ok(ExitCode::SUCCESS)
}
