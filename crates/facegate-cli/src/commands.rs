//! One function per command. Each prints its result (text or JSON) and returns the exit code.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use facegate::align::AlignMode;
use facegate::gallery::audit_chain::{self, ChainProblem};
use facegate::gallery::{
    AuditKey, Gallery, GalleryError, GalleryLocation, NewTemplate, TemplateKey,
};
use facegate::image::{draw_box, draw_point, Rgb};
use facegate::models::{pins, ModelStore};
use facegate::quality::QualityLevel;
use facegate::service::{Actor, EnrollMode, FaceService, Verification};
use facegate::{ops, Engine, EngineOptions, Error, FacePolicy, Home, ModelChoice};
use serde::Serialize;
use serde_json::json;

use crate::cli::{AlignArg, AuditAction, Cli, Command, GalleryAction, Global, ModelsAction};
use crate::progress::{self, Spinner};

pub use facegate::eval::IMAGE_EXTENSIONS;

/// What every command needs: resolved paths and output mode.
pub struct Context {
    pub global: Global,
    pub home: Home,
    /// The model in force, resolved once (see [`Context::model`]).
    pub resolved_model: std::sync::OnceLock<ModelChoice>,
}

impl Context {
    /// Progress drawing only makes sense for a person at a terminal.
    pub fn interactive(&self) -> bool {
        !self.global.json && std::io::stderr().is_terminal()
    }

    pub fn store(&self) -> ModelStore {
        ModelStore::new(self.home.models_dir())
    }

    /// `--model`; else the model the existing gallery was made with (a gallery keeps working
    /// when facegate's default changes); else the default.
    pub fn model(&self) -> ModelChoice {
        self.resolved_model
            .get_or_init(|| {
                if let Some(given) = &self.global.model {
                    return given.clone();
                }
                self.gallery_for_read()
                    .ok()
                    .flatten()
                    .and_then(|g| g.model_id().ok().flatten())
                    .and_then(|id| ModelChoice::from_model_id(&id))
                    .unwrap_or_default()
            })
            .clone()
    }

    /// The engine options for commands that do not use the gallery (evaluation, benchmarks,
    /// the demo): `--model` or the default.
    pub fn standalone_engine(&self) -> Result<Engine> {
        self.engine_with(EngineOptions {
            model: self.global.model.clone().unwrap_or_default(),
            ..self.options_with(ModelChoice::default())
        })
    }

    pub fn engine_options(&self) -> EngineOptions {
        self.options_with(self.model())
    }

    fn options_with(&self, model: ModelChoice) -> EngineOptions {
        EngineOptions {
            model,
            enroll_quality: self.global.quality.unwrap_or(QualityLevel::Standard),
            verify_quality: self.global.quality.unwrap_or(QualityLevel::Off),
            liveness: self.global.liveness,
            flip: self.global.flip,
            align: match self.global.align {
                AlignArg::Similarity => AlignMode::Similarity,
                AlignArg::Box => AlignMode::Box {
                    margin: self.global.margin,
                },
            },
            max_pixels: self.global.max_pixels,
            min_face_size: self.global.min_face_size,
            threads: self.global.threads,
            parallel: 0,
            threshold: self.global.threshold,
            security: self.global.security,
            target_fpir: self.global.target_fpir,
        }
    }

    /// Loads the models, fetching them first if needed (with a spinner).
    pub fn engine(&self) -> Result<Engine> {
        self.engine_with(self.engine_options())
    }

    pub fn engine_with(&self, options: EngineOptions) -> Result<Engine> {
        let spinner = Spinner::new(self.interactive());
        let engine = Engine::load(&self.home, options, &spinner).map_err(anyhow::Error::new)?;
        spinner.finish();
        Ok(engine)
    }

    /// The gallery: `--gallery` (a SQLite path or a `postgres://` URL), else `<home>/gallery.db`.
    pub fn gallery_location(&self) -> GalleryLocation {
        match &self.global.gallery {
            Some(given) => GalleryLocation::from_path(given),
            None => GalleryLocation::Sqlite(self.home.default_gallery()),
        }
    }

    /// The engine for many photos: one embedding replica per core, photos side by side.
    pub fn bulk_engine(&self, photos: usize) -> Result<Engine> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        self.engine_with(EngineOptions {
            parallel: if photos > 1 { cores } else { 0 },
            ..self.engine_options()
        })
    }

    /// The key for encrypted templates: `--key-file` / `FACEGATE_KEY_FILE`, or `FACEGATE_KEY`.
    pub fn template_key(&self) -> Result<Option<Arc<TemplateKey>>> {
        let key = match &self.global.key_file {
            Some(path) => Some(TemplateKey::from_file(path).map_err(Error::from)?),
            None => TemplateKey::from_env().map_err(Error::from)?,
        };
        Ok(key.map(Arc::new))
    }

    /// The key that seals the audit log: `--audit-key-file` / `FACEGATE_AUDIT_KEY_FILE`, else
    /// `audit.key` in the data folder; created where it is missing.
    pub fn audit_key(&self) -> Result<Arc<AuditKey>> {
        let path = match &self.global.audit_key_file {
            Some(path) => path.clone(),
            None => self.home.default_audit_key(),
        };
        Ok(Arc::new(
            AuditKey::load_or_create(&path).map_err(Error::from)?,
        ))
    }

    /// Opens a gallery with this process's template and audit keys, refusing an audit key
    /// that would break the log's chain.
    pub fn open_gallery(&self, location: &GalleryLocation) -> Result<Arc<dyn Gallery>> {
        let (gallery, audit_key) = self.open_gallery_unchecked(location)?;
        audit_chain::check_key(gallery.as_ref(), &audit_key).map_err(Error::from)?;
        Ok(gallery)
    }

    /// [`Self::open_gallery`] whatever audit key sealed the log (to read or verify it).
    fn open_gallery_unchecked(
        &self,
        location: &GalleryLocation,
    ) -> Result<(Arc<dyn Gallery>, Arc<AuditKey>)> {
        let key = self.template_key()?;
        let audit_key = self.audit_key()?;
        let gallery = location
            .open_with_keys(key, Some(audit_key.clone()))
            .map_err(Error::from)?;
        Ok((gallery, audit_key))
    }

    /// The gallery for writing, created if missing.
    pub fn gallery_for_write(&self) -> Result<Arc<dyn Gallery>> {
        self.open_gallery(&self.gallery_location())
    }

    /// The gallery for reading; `None` when a SQLite gallery does not exist yet (nothing is
    /// created).
    pub fn gallery_for_read(&self) -> Result<Option<Arc<dyn Gallery>>> {
        let location = self.gallery_location();
        if !location.exists() {
            return Ok(None);
        }
        Ok(Some(self.open_gallery(&location)?))
    }

    /// Prints `value` as JSON, or runs `text` to print for people.
    pub fn emit<T: Serialize>(&self, value: &T, text: impl FnOnce()) -> Result<()> {
        if self.global.json {
            println!("{}", serde_json::to_string_pretty(value)?);
        } else {
            text();
        }
        Ok(())
    }
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    let home = Home::resolve(cli.global.home.as_deref())?;
    let ctx = Context {
        global: cli.global,
        home,
        resolved_model: std::sync::OnceLock::new(),
    };
    match cli.command {
        Command::Enroll {
            name,
            inputs,
            largest,
            live,
            frames,
        } => {
            if live.given() {
                crate::live::enroll(&ctx, &name, &live, frames)
            } else {
                enroll(&ctx, &name, &inputs, largest)
            }
        }
        Command::Verify {
            name,
            image,
            all_faces,
            live,
            k,
            n,
        } => match image {
            Some(image) if !live.given() => verify(&ctx, &name, &image, all_faces),
            _ => crate::live::verify(&ctx, &name, &live, k, n),
        },
        Command::Identify {
            image,
            live,
            top,
            all_faces,
        } => match image {
            Some(image) if !live.given() => identify(&ctx, &image, top, all_faces),
            _ => crate::live::identify(&ctx, &live),
        },
        Command::EnrollAll { dir, largest } => enroll_all(&ctx, &dir, largest),
        Command::Compare { a, b } => compare(&ctx, &a, &b),
        Command::Detect { image, draw } => detect(&ctx, &image, draw.as_deref()),
        Command::Embed { image, all_faces } => embed(&ctx, &image, all_faces),
        Command::List { name: None } => list(&ctx),
        Command::List { name: Some(name) } => list_person(&ctx, &name),
        Command::Forget { name } => forget(&ctx, &name),
        Command::Audit {
            action: None,
            after,
            limit,
        } => audit_log(&ctx, after, limit),
        Command::Audit {
            action: Some(AuditAction::Verify { head }),
            ..
        } => audit_verify(&ctx, head.as_deref()),
        Command::Audit {
            action: Some(AuditAction::RestartChain { yes }),
            ..
        } => audit_restart(&ctx, yes),
        Command::Models { action } => models(&ctx, action),
        Command::Eval { kind } => crate::eval::run(&ctx, kind),
        Command::Calibrate {
            pairs,
            root,
            all_pairs,
            target_far,
            target_fpir,
        } => {
            let input = match (pairs, root, all_pairs) {
                (_, _, Some(dir)) => crate::eval::CalibrationInput::AllPairs(dir),
                (Some(pairs), Some(root), None) => {
                    crate::eval::CalibrationInput::Pairs(crate::cli::PairsArgs { pairs, root })
                }
                _ => anyhow::bail!("calibrate needs --pairs FILE --root DIR, or --all-pairs DIR"),
            };
            crate::eval::calibrate(&ctx, &input, target_far, target_fpir)
        }
        Command::Serve(args) => crate::serve::serve(&ctx, &args),
        Command::Keys { action } => crate::serve::keys(&ctx, action),
        Command::Gallery { action } => gallery(&ctx, action),
        Command::Demo => crate::demo::run(&ctx),
        Command::Bench { dir, limit } => crate::bench::run(&ctx, dir.as_deref(), limit),
        Command::BenchSearch {
            templates,
            queries,
            dimension,
            sqlite,
            postgres,
            real_embeddings,
        } => crate::bench::search(
            &ctx,
            templates,
            queries,
            dimension,
            sqlite,
            postgres.as_deref(),
            real_embeddings.as_deref(),
        ),
        Command::DeriveTemplate { dir, margin_px } => {
            crate::bench::derive_template(&ctx, dir.as_deref(), margin_px)
        }
    }
}

pub fn exit(success: bool) -> ExitCode {
    if success {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Image files under `dir`, recursively, sorted.
pub fn images_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let entries = std::fs::read_dir(&current)
            .with_context(|| format!("could not list {}", current.display()))?;
        for entry in entries {
            let path = entry
                .with_context(|| format!("could not list {}", current.display()))?
                .path();
            if path.is_dir() {
                pending.push(path);
            } else if path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
            {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

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

/// One line about a face's quality, for people.
fn quality_line(q: &facegate::quality::QualityReport) -> String {
    format!(
        "quality: {:.0} px between the eyes, sharpness {:.0}, brightness {:.0}, yaw {:+.0}°, pitch {:+.0}°, roll {:+.0}°, detector {:.3}",
        q.inter_eye_px, q.sharpness, q.brightness, q.yaw_degrees, q.pitch_degrees, q.roll_degrees, q.detector_score
    )
}

fn liveness_line(l: &facegate::liveness::LivenessScore) -> String {
    format!(
        "liveness: {} (score {:.2}, threshold {:.2}; antispoof {:.2}, liveness model {:.2}) — a passive check, not a certified presentation-attack detector",
        if l.live { "LIVE" } else { "NOT LIVE" },
        l.score,
        l.threshold,
        l.antispoof_real,
        l.liveness_real
    )
}

fn enroll(ctx: &Context, name: &str, inputs: &[PathBuf], largest: bool) -> Result<ExitCode> {
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
fn enrolled_hashes(
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
fn enroll_all(ctx: &Context, dir: &Path, largest: bool) -> Result<ExitCode> {
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

fn threshold_text(t: &facegate::decide::Threshold) -> String {
    let source = match t.source {
        facegate::decide::ThresholdSource::Default => "default",
        facegate::decide::ThresholdSource::Calibrated => "calibrated",
        facegate::decide::ThresholdSource::Flag => "--threshold",
    };
    format!("{:.3} {} ({source}: {})", t.value, t.metric.name(), t.note)
}

fn verify(ctx: &Context, name: &str, image: &Path, all_faces: bool) -> Result<ExitCode> {
    let engine = ctx.engine()?;
    let image = engine.load_image(image)?;
    let gallery = ctx.gallery_for_read()?.ok_or_else(|| {
        Error::from(GalleryError::UnknownPerson {
            name: name.to_string(),
        })
    })?;
    let service = FaceService::new(&engine, gallery.as_ref());
    let outcome = match service.verify(&Actor::local_user(), name, &image, all_faces)? {
        Verification::Compared(outcome) => outcome,
        // Only for actors who may not see who is enrolled; the local user sees everyone.
        Verification::NoSuchPerson { person, .. } => {
            return Err(Error::from(GalleryError::UnknownPerson { name: person }).into())
        }
    };
    ctx.emit(&outcome, || {
        let verdict = match (outcome.is_match, outcome.accepted) {
            (true, true) => "MATCH",
            (true, false) => "MATCH, BUT NOT LIVE",
            (false, _) => "NO MATCH",
        };
        let relation = if outcome.is_match { "<=" } else { ">" };
        println!(
            "{verdict}: {} vs {name:?}: distance {:.3} {relation} threshold {:.3}",
            image.source_name, outcome.distance, outcome.threshold.value
        );
        println!(
            "  euclidean {:.3}, cosine {:.3}; closest of {} template(s); model {}",
            outcome.distances.euclidean,
            outcome.distances.cosine,
            outcome.templates_compared,
            outcome.model
        );
        println!("  threshold: {}", threshold_text(&outcome.threshold));
        println!("  {}", quality_line(&outcome.quality));
        if let Some(l) = &outcome.liveness {
            println!("  {}", liveness_line(l));
        }
        if all_faces && outcome.faces.len() > 1 {
            for f in &outcome.faces {
                println!(
                    "  face at {:?}: distance {:.3} {}",
                    f.face.bbox.map(|v| v.round()),
                    f.distance,
                    if f.is_match { "match" } else { "no match" }
                );
            }
        }
        if let Some(note) = &outcome.note {
            println!("  note: {note}");
        }
    })?;
    // Exit 0 only when accepted: a match that fails a requested liveness check is refused.
    Ok(exit(outcome.accepted))
}

fn identify(ctx: &Context, image: &Path, top: usize, all_faces: bool) -> Result<ExitCode> {
    let engine = ctx.engine()?;
    let image = engine.load_image(image)?;
    let gallery = ctx
        .gallery_for_read()?
        .ok_or_else(|| Error::from(GalleryError::Empty))?;
    let service = FaceService::new(&engine, gallery.as_ref());
    let outcome = service.identify(&Actor::local_user(), &image, top, all_faces)?;
    ctx.emit(&outcome, || {
        for (i, face) in outcome.faces.iter().enumerate() {
            if outcome.faces.len() > 1 {
                println!("face {} at {:?}:", i + 1, face.face.bbox.map(|v| v.round()));
            }
            match &face.identity {
                Some(who) => println!("identified: {who}"),
                None => println!(
                    "unknown: nobody in the gallery is within the threshold ({:.3})",
                    outcome.threshold.value
                ),
            }
            println!("  {}", quality_line(&face.quality));
            if let Some(l) = &face.liveness {
                println!("  {}", liveness_line(l));
            }
            println!("  rank  distance  person");
            for (rank, c) in face.candidates.iter().enumerate() {
                let mark = if c.is_match { "  <= threshold" } else { "" };
                println!("  {:>4}  {:>8.3}  {}{mark}", rank + 1, c.distance, c.person);
            }
        }
        println!(
            "  searched {} people ({} templates); threshold {}",
            outcome.people_searched,
            outcome.templates_searched,
            threshold_text(&outcome.threshold)
        );
        if let Some(note) = &outcome.note {
            println!("  note: {note}");
        }
    })?;
    Ok(exit(outcome.identity.is_some()))
}

fn compare(ctx: &Context, a: &Path, b: &Path) -> Result<ExitCode> {
    let engine = ctx.engine()?;
    let image_a = engine.load_image(a)?;
    let image_b = engine.load_image(b)?;
    let outcome = ops::compare(&engine, &image_a, &image_b)?;
    ctx.emit(&outcome, || {
        let verdict = if outcome.is_match {
            "SAME PERSON"
        } else {
            "DIFFERENT PEOPLE"
        };
        println!(
            "{verdict}: distance {:.3} (threshold {:.3})",
            outcome.distance, outcome.threshold.value
        );
        println!(
            "  euclidean {:.3}, cosine {:.3}; model {}",
            outcome.distances.euclidean, outcome.distances.cosine, outcome.model
        );
        println!("  threshold: {}", threshold_text(&outcome.threshold));
        if let Some(l) = &outcome.liveness {
            println!("  first image: {}", liveness_line(l));
        }
        if let Some(note) = &outcome.note {
            println!("  note: {note}");
        }
    })?;
    // Exit 0 only when accepted: a match that fails a requested liveness check is refused.
    Ok(exit(outcome.accepted))
}

fn detect(ctx: &Context, path: &Path, draw: Option<&Path>) -> Result<ExitCode> {
    let engine = ctx.engine()?;
    let image = engine.load_image(path)?;
    let faces = engine.detect_photo(&image.rgb)?;
    if let Some(out) = draw {
        let mut canvas = image.rgb.clone();
        let thickness = (canvas.width().max(canvas.height()) / 300).max(2);
        for face in &faces {
            draw_box(&mut canvas, face.bbox, Rgb([0, 220, 0]), thickness);
            for [x, y] in face.landmarks {
                draw_point(&mut canvas, x, y, thickness as i32, Rgb([255, 40, 40]));
            }
        }
        canvas
            .save(out)
            .with_context(|| format!("could not write {}", out.display()))?;
    }
    let quality: Vec<facegate::quality::QualityReport> = faces
        .iter()
        .map(|f| facegate::quality::QualityReport::measure(&image.rgb, f, faces.len()))
        .collect();
    let doc = json!({
        "image": image.source_name,
        "width": image.rgb.width(),
        "height": image.rgb.height(),
        "detector": engine.detector_id(),
        "faces": faces,
        "quality": quality,
        "drawn": draw,
    });
    ctx.emit(&doc, || {
        if faces.is_empty() {
            println!(
                "no face found in {} (faces down to 20 px were searched for)",
                image.source_name
            );
        }
        for (i, f) in faces.iter().enumerate() {
            println!(
                "face {}: box [{:.0}, {:.0}, {:.0}, {:.0}] ({:.0}x{:.0} px), score {:.3}",
                i + 1,
                f.bbox[0],
                f.bbox[1],
                f.bbox[2],
                f.bbox[3],
                f.width(),
                f.height(),
                f.score
            );
            let names = ["left eye", "right eye", "nose", "mouth left", "mouth right"];
            let points: Vec<String> = f
                .landmarks
                .iter()
                .zip(names)
                .map(|([x, y], n)| format!("{n} ({x:.0}, {y:.0})"))
                .collect();
            println!("  {}", points.join(", "));
            println!("  {}", quality_line(&quality[i]));
        }
        if let Some(out) = draw {
            println!("drawn: {}", out.display());
        }
    })?;
    Ok(exit(!faces.is_empty()))
}

fn embed(ctx: &Context, path: &Path, all_faces: bool) -> Result<ExitCode> {
    let engine = ctx.engine()?;
    let image = engine.load_image(path)?;
    let policy = if all_faces {
        FacePolicy::All
    } else {
        FacePolicy::Largest
    };
    let (faces, found) = engine.embed_faces(&image, policy)?;
    let doc = json!({
        "image": image.source_name,
        "model": engine.model_id(),
        "dimension": faces.first().map_or(0, |f| f.embedding.len()),
        "faces_found": found,
        "faces": faces.iter().map(|f| json!({"face": f.face, "embedding": f.embedding})).collect::<Vec<_>>(),
    });
    ctx.emit(&doc, || {
        for f in &faces {
            let values: Vec<String> = f.embedding.iter().map(|v| format!("{v:.6}")).collect();
            println!("{}", values.join(" "));
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Who runs this command, for the audit log.
pub(crate) fn local_actor() -> String {
    Actor::local_user().name().to_string()
}

/// Appends to the gallery's audit log; a decision that cannot be recorded is an error.
pub(crate) fn record(gallery: &dyn Gallery, event: facegate::gallery::NewAuditEvent) -> Result<()> {
    gallery.append_audit(&event).map_err(Error::from)?;
    Ok(())
}

/// Stores the templates for the local user (a new person, or more faces for one) with the
/// audit entry saying so, in one transaction.
pub(crate) fn enroll_audited(
    engine: &Engine,
    gallery: &dyn Gallery,
    name: &str,
    templates: &[NewTemplate],
) -> Result<facegate::gallery::EnrollReport> {
    let service = FaceService::new(engine, gallery);
    let actor = Actor::local_user();
    let admitted = service.admit_enrollment(&actor, name, EnrollMode::CreateOrAdd)?;
    Ok(service.enroll(&actor, &admitted, templates)?)
}

/// `facegate audit`: the log, oldest first.
fn audit_log(ctx: &Context, after: Option<i64>, limit: usize) -> Result<ExitCode> {
    let location = ctx.gallery_location();
    let events = if location.exists() {
        let (gallery, _) = ctx.open_gallery_unchecked(&location)?;
        gallery.audit_log(after, limit).map_err(Error::from)?
    } else {
        Vec::new()
    };
    let doc = json!({ "gallery": ctx.gallery_location().to_string(), "events": events });
    ctx.emit(&doc, || {
        if events.is_empty() {
            println!("the audit log is empty ({})", ctx.gallery_location());
        }
        for e in &events {
            let distance = e
                .distance
                .map(|d| format!(" distance {d:.3}"))
                .unwrap_or_default();
            println!(
                "#{} {} {} {} {} {}{}{}",
                e.id,
                e.at,
                e.actor,
                e.action,
                e.person.as_deref().unwrap_or("-"),
                e.decision.as_deref().unwrap_or("-"),
                distance,
                e.detail
                    .as_deref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            );
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `facegate audit verify`: every entry's MAC recomputed; exit 1 when anything does not fit.
fn audit_verify(ctx: &Context, head: Option<&str>) -> Result<ExitCode> {
    let anchor = match head {
        Some(text) => Some(audit_chain::parse_head(text).with_context(|| {
            format!("--head {text:?}: expected ID:MAC, the id and the 64 hex digits printed by an earlier `facegate audit verify`")
        })?),
        None => None,
    };
    let location = ctx.gallery_location();
    if !location.exists() {
        bail!("there is no gallery at {location}, so no audit log to verify");
    }
    let (gallery, key) = ctx.open_gallery_unchecked(&location)?;
    let spinner = Spinner::new(ctx.interactive());
    let report = audit_chain::verify(gallery.as_ref(), &key, anchor.as_ref(), &mut |_| {})
        .map_err(Error::from)?;
    spinner.finish();
    let doc = json!({ "gallery": location.to_string(), "report": report });
    ctx.emit(&doc, || print_chain_report(&location, &report))?;
    Ok(if report.intact {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_chain_report(location: &GalleryLocation, report: &facegate::gallery::ChainReport) {
    let verdict = if report.intact {
        "intact"
    } else {
        "NOT INTACT"
    };
    println!(
        "audit log of {location}: {verdict}; {} entries, {} verified with audit key {}",
        report.entries, report.verified, report.key_id
    );
    if report.unsealed_before_chain > 0 {
        println!(
            "  {} older entries were written before the log was sealed: nothing vouches for them",
            report.unsealed_before_chain
        );
    }
    if report.sealed_by_earlier_keys > 0 {
        println!(
            "  {} entries before the chain restart at #{} were sealed by an earlier key",
            report.sealed_by_earlier_keys,
            report.restarts.last().copied().unwrap_or_default()
        );
    }
    for problem in &report.problems {
        let text = match problem {
            ChainProblem::Broken { id } => format!(
                "#{id} does not match its MAC: it was changed, or an entry before it was removed or inserted"
            ),
            ChainProblem::Unsealed { id } => {
                format!("#{id} carries no MAC: written without the audit key, or by hand")
            }
            ChainProblem::OtherKey { id, key_id } => {
                format!("#{id} was sealed with another audit key ({key_id})")
            }
            ChainProblem::Missing { first, last } if first == last => {
                format!("#{first} is missing: it was removed")
            }
            ChainProblem::Missing { first, last } => {
                format!("#{first} to #{last} are missing: they were removed")
            }
        };
        println!("  problem: {text}");
    }
    if report.more_problems > 0 {
        println!("  ... and {} more problems", report.more_problems);
    }
    match report.anchor_found {
        Some(true) => println!("  the recorded head is still in the log"),
        Some(false) => println!(
            "  problem: the recorded head is not in the log (or its MAC changed): entries were removed"
        ),
        None => {}
    }
    if let Some(head) = &report.head {
        println!(
            "head: {}:{} (keep it elsewhere; `--head` checks later that nothing up to it was removed)",
            head.id, head.mac
        );
    }
}

/// `facegate audit restart-chain`: a new chain under the current audit key.
fn audit_restart(ctx: &Context, yes: bool) -> Result<ExitCode> {
    if !yes {
        bail!("restarting the audit chain makes the entries sealed by the previous key unverifiable with this one; run again with --yes if the previous key is lost");
    }
    let location = ctx.gallery_location();
    let (gallery, key) = ctx.open_gallery_unchecked(&location)?;
    let previous = gallery.audit_newest_sealed().map_err(Error::from)?;
    let previous_key = previous
        .and_then(|e| e.key_id)
        .unwrap_or_else(|| "none".to_string());
    let event = facegate::gallery::NewAuditEvent {
        actor: local_actor(),
        action: audit_chain::RESTART_ACTION.to_string(),
        person: None,
        decision: Some("restarted".to_string()),
        distance: None,
        detail: Some(format!(
            "new chain under audit key {}; the previous entry was sealed with key {previous_key}",
            key.id()
        )),
    };
    record(gallery.as_ref(), event)?;
    let doc = json!({ "gallery": location.to_string(), "key_id": key.id(), "previous_key_id": previous_key });
    ctx.emit(&doc, || {
        println!(
            "the audit log of {location} continues under audit key {} (previously {previous_key})",
            key.id()
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

/// One person's templates (never the embeddings), with the quality measured at enrollment.
fn list_person(ctx: &Context, name: &str) -> Result<ExitCode> {
    let unknown = || {
        Error::from(GalleryError::UnknownPerson {
            name: name.to_string(),
        })
    };
    let gallery = ctx.gallery_for_read()?.ok_or_else(unknown)?;
    let model = gallery
        .model_id()
        .map_err(Error::from)?
        .ok_or_else(unknown)?;
    let templates = gallery.templates_of(name, &model).map_err(Error::from)?;
    let doc = json!({
        "gallery": ctx.gallery_location().to_string(),
        "person": name,
        "model": model,
        "templates": templates,
    });
    ctx.emit(&doc, || {
        println!("{name}: {} template(s), model {model}", templates.len());
        for t in &templates {
            println!("  #{} {} (enrolled {})", t.id, t.source, t.created);
            match t
                .quality
                .clone()
                .and_then(|q| serde_json::from_value::<facegate::quality::QualityReport>(q).ok())
            {
                Some(q) => println!("    {}", quality_line(&q)),
                None => println!("    quality: not measured (enrolled by an older facegate)"),
            }
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

fn list(ctx: &Context) -> Result<ExitCode> {
    let (people, model) = match ctx.gallery_for_read()? {
        Some(g) => (
            g.people().map_err(Error::from)?,
            g.model_id().map_err(Error::from)?,
        ),
        None => (Vec::new(), None),
    };
    let doc =
        json!({ "gallery": ctx.gallery_location().to_string(), "model": model, "people": people });
    ctx.emit(&doc, || {
        if people.is_empty() {
            println!("nobody is enrolled yet ({})", ctx.gallery_location());
        }
        for p in &people {
            println!(
                "{}\t{} template(s)\tsince {}",
                p.name, p.templates, p.created
            );
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

fn forget(ctx: &Context, name: &str) -> Result<ExitCode> {
    let gallery = ctx.gallery_for_read()?.ok_or_else(|| {
        Error::from(GalleryError::UnknownPerson {
            name: name.to_string(),
        })
    })?;
    let removed = facegate::service::forget(gallery.as_ref(), &Actor::local_user(), name)?;
    let doc = json!({ "person": name, "templates_removed": removed });
    ctx.emit(&doc, || {
        println!("forgot {name:?}: {removed} template(s) erased")
    })?;
    Ok(ExitCode::SUCCESS)
}

fn models(ctx: &Context, action: ModelsAction) -> Result<ExitCode> {
    let store = ctx.store();
    match action {
        ModelsAction::Fetch { force } => {
            if force {
                store.clear_derived()?;
            }
            let spinner = Spinner::new(ctx.interactive());
            store.fetch_all(&spinner)?;
            store.celebrity_dataset(&spinner)?;
            // Loading every model builds (and caches) every ONNX graph.
            let options = EngineOptions {
                model: ModelChoice::all(),
                liveness: true,
                ..ctx.engine_options()
            };
            Engine::load(&ctx.home, options, &spinner)?;
            spinner.finish();
            print_models(ctx, &store)
        }
        ModelsAction::List => print_models(ctx, &store),
        ModelsAction::Import { file } => {
            let package = store.import(&file)?;
            let doc = json!({ "imported": package.requirement(), "file": file });
            ctx.emit(&doc, || {
                println!("imported {} from {}", package.requirement(), file.display());
                println!(
                    "run `facegate models fetch` to extract and build it (no download needed now)"
                );
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_models(ctx: &Context, store: &ModelStore) -> Result<ExitCode> {
    let manifest = store.manifest_entries();
    let files: Vec<serde_json::Value> = pins::all_files()
        .into_iter()
        .map(|f| {
            let path = store.file_path(f);
            let state = if !path.exists() {
                "missing"
            } else if facegate::models::sha256_file(&path).ok().as_deref() == Some(f.sha256) {
                "verified"
            } else {
                "damaged (will be restored on next use)"
            };
            json!({
                "file": f.member,
                "package": f.package.requirement(),
                "license": f.package.license,
                "sha256": f.sha256,
                "path": path,
                "state": state,
            })
        })
        .collect();
    let built: Vec<&facegate::models::ManifestEntry> =
        manifest.iter().filter(|e| e.kind == "built").collect();
    let doc = json!({ "models_dir": store.root(), "files": files, "built": built });
    ctx.emit(&doc, || {
        println!("models in {}", store.root().display());
        for f in &files {
            println!(
                "  {:<45} {:<32} {}  [{}]",
                f["file"].as_str().unwrap_or_default(),
                f["package"].as_str().unwrap_or_default(),
                f["state"].as_str().unwrap_or_default(),
                f["license"].as_str().unwrap_or_default()
            );
        }
        for b in &built {
            println!(
                "  built {:<39} from {}  ({} MB)",
                b.path,
                b.source_package,
                b.bytes / 1_000_000
            );
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Writes a new file only its owner can read; refuses to overwrite one.
fn write_private_file(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| {
        format!(
            "could not create {} (it must not exist yet)",
            path.display()
        )
    })?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("could not write {}", path.display()))
}

/// `sqlite:PATH`, a plain path, or a PostgreSQL URL.
fn parse_location(text: &str) -> GalleryLocation {
    match text.strip_prefix("sqlite:") {
        Some(path) => GalleryLocation::Sqlite(PathBuf::from(path)),
        None => GalleryLocation::parse(text),
    }
}

fn gallery(ctx: &Context, action: GalleryAction) -> Result<ExitCode> {
    match action {
        GalleryAction::Info => {
            let location = ctx.gallery_location();
            let (backend, schema) = match &location {
                GalleryLocation::Sqlite(_) => ("sqlite", None),
                GalleryLocation::Postgres(url) => {
                    let db = facegate::gallery::PostgresGallery::open(url).map_err(Error::from)?;
                    ("postgres", Some(db.schema_version().map_err(Error::from)?))
                }
            };
            let (model, counts, key_id) = match ctx.gallery_for_read()? {
                Some(g) => (
                    g.model_id().map_err(Error::from)?,
                    g.counts().map_err(Error::from)?,
                    g.key_id().map_err(Error::from)?,
                ),
                None => (None, Default::default(), None),
            };
            let doc = json!({
                "gallery": location.to_string(),
                "backend": backend,
                "schema_version": schema,
                "model": model,
                "people": counts.people,
                "templates": counts.templates,
                "encrypted": key_id.is_some(),
                "key_id": key_id,
            });
            ctx.emit(&doc, || {
                println!("gallery   {location} ({backend})");
                if let Some(v) = schema {
                    println!("schema    version {v}");
                }
                println!("model     {}", model.as_deref().unwrap_or("none yet"));
                println!("people    {}", counts.people);
                println!("templates {}", counts.templates);
                match &key_id {
                    Some(id) => println!("encrypted yes (AES-256-GCM, key id {id})"),
                    None => println!("encrypted no"),
                }
            })?;
            Ok(ExitCode::SUCCESS)
        }
        GalleryAction::Vacuum => {
            let location = ctx.gallery_location();
            let Some(gallery) = ctx.gallery_for_read()? else {
                bail!("the gallery {location} does not exist");
            };
            let started = std::time::Instant::now();
            let still_open = gallery.compact().map_err(Error::from)?;
            let seconds = started.elapsed().as_secs_f64();
            let doc = json!({
                "gallery": location.to_string(),
                "seconds": seconds,
                "complete": still_open == 0,
                "older_transactions_open": still_open,
            });
            ctx.emit(&doc, || {
                if still_open == 0 {
                    println!("rewrote {location} in {seconds:.1} s: erased templates are gone from its files");
                } else {
                    println!("rewrote {location} in {seconds:.1} s, but {still_open} older transaction(s) were still open: rows they could see may remain; run it again when they have finished");
                }
            })?;
            Ok(if still_open == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        GalleryAction::Keygen { output } => {
            let hex = TemplateKey::generate_hex().map_err(Error::from)?;
            let id = TemplateKey::from_hex(&hex)
                .map_err(Error::from)?
                .id()
                .to_string();
            match output {
                Some(path) => {
                    write_private_file(&path, &format!("{hex}\n"))?;
                    let doc = json!({ "key_file": path.display().to_string(), "key_id": id });
                    ctx.emit(&doc, || {
                        println!("wrote a new key (id {id}) to {}", path.display());
                        println!(
                            "keep a copy somewhere safe: without it the templates cannot be read"
                        );
                    })?;
                }
                None => {
                    let doc = json!({ "key": hex, "key_id": id });
                    ctx.emit(&doc, || println!("{hex}"))?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        GalleryAction::Rekey {
            new_key_file,
            decrypt,
        } => {
            let new_key = match (&new_key_file, decrypt) {
                (Some(path), false) => Some(TemplateKey::from_file(path).map_err(Error::from)?),
                _ => None,
            };
            let location = ctx.gallery_location();
            if !location.exists() {
                bail!("the gallery {location} does not exist");
            }
            let gallery = ctx.gallery_for_write()?;
            let old_id = gallery.key_id().map_err(Error::from)?;
            let new_id = new_key.as_ref().map(|k| k.id().to_string());
            let actor = local_actor();
            let audit = |rewritten: usize| {
                facegate::audit::rekey(&actor, old_id.as_deref(), new_id.as_deref(), rewritten)
            };
            let rewritten = gallery
                .rekey_with(new_key.as_ref(), Some(&audit))
                .map_err(Error::from)?;
            let show = |id: &Option<String>| id.clone().unwrap_or_else(|| "none".into());
            let doc = json!({
                "gallery": location.to_string(),
                "templates": rewritten,
                "old_key_id": old_id,
                "new_key_id": new_id,
            });
            ctx.emit(&doc, || {
                println!(
                    "rewrote {rewritten} templates: key {} -> {}",
                    show(&old_id),
                    show(&new_id)
                );
                if new_id.is_none() {
                    println!("the templates are now stored UNENCRYPTED");
                } else {
                    println!("from now on use the new key (--key-file / FACEGATE_KEY)");
                }
            })?;
            Ok(ExitCode::SUCCESS)
        }
        GalleryAction::Migrate { from, to } => {
            let from = from.map_or_else(|| ctx.gallery_location(), |f| parse_location(&f));
            let to = parse_location(&to);
            if from == to {
                bail!("--from and --to are the same gallery ({from})");
            }
            if !from.exists() {
                bail!("the source gallery {from} does not exist");
            }
            // Both ends with this process's key (to change keys, `gallery rekey` first or after).
            let source = ctx.open_gallery(&from)?;
            let target = ctx.open_gallery(&to)?;
            let people = source.counts().map_err(Error::from)?.people;
            let bar = progress::bar(people as u64, ctx.interactive(), "copying people");
            let report =
                facegate::gallery::migrate::copy(source.as_ref(), target.as_ref(), &mut |n| {
                    bar.set_position(n as u64)
                })
                .map_err(Error::from)?;
            bar.finish_and_clear();
            let complete = report.is_complete();
            let doc = json!({
                "from": from.to_string(),
                "to": to.to_string(),
                "complete": complete,
                "report": report,
            });
            ctx.emit(&doc, || {
                println!(
                    "copied {} people and {} templates from {from} to {to} ({} templates were already there)",
                    report.people_copied, report.templates_copied, report.templates_already_there
                );
                println!(
                    "source: {} people, {} templates; target now: {} people, {} templates",
                    report.source.people,
                    report.source.templates,
                    report.target_after.people,
                    report.target_after.templates
                );
                if complete {
                    println!("count check passed: every person and template is in the target");
                } else {
                    println!(
                        "COUNT CHECK FAILED: {} people are missing or short in the target: {}",
                        report.missing_people.len(),
                        report.missing_people.iter().take(10).cloned().collect::<Vec<_>>().join(", ")
                    );
                }
            })?;
            Ok(if complete {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            })
        }
    }
}
