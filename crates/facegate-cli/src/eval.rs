//! `facegate eval pairs|identify` and `facegate calibrate`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use facegate::config::{CalibratedThreshold, Config};
use facegate::decide::eval::{far_at, threshold_for_far};
use facegate::decide::Metric;
use facegate::eval::{self, EmbeddingCache, PairSpec, PairsReport};
use facegate::Engine;
use serde_json::json;

use crate::cli::{EvalKind, PairsArgs};
use crate::context::Context;
use crate::progress;
use crate::report;

fn cache(ctx: &Context) -> Result<EmbeddingCache> {
    Ok(EmbeddingCache::open(
        &ctx.home.data_dir().join("cache").join("eval-embeddings.db"),
    )?)
}

fn embed_all(
    ctx: &Context,
    engine: &Engine,
    root: &Path,
    images: &[PathBuf],
) -> Result<std::collections::HashMap<PathBuf, eval::EvalImage>> {
    let cache = cache(ctx)?;
    let bar = progress::bar(images.len() as u64, ctx.interactive(), "embedding");
    let embeddings = eval::embed_images(engine, &cache, root, images, &|| bar.inc(1))?;
    bar.finish_and_clear();
    Ok(embeddings)
}

fn run_pairs(
    ctx: &Context,
    engine: &Engine,
    args: &PairsArgs,
) -> Result<(Vec<PairSpec>, PairsReport, f64)> {
    let file = eval::read_pairs_file(&args.pairs)?;
    eval::check_pair_images(&args.pairs, &args.root, &file.pairs)?;
    if let Some(note) = &file.folds_note {
        eprintln!("note: {note}");
    }
    let specs = file.pairs;
    let start = Instant::now();
    let images = eval::pair_images(&specs);
    let embeddings = embed_all(ctx, engine, &args.root, &images)?;
    let mut report = eval::score_pairs(
        &specs,
        &embeddings,
        engine.model_id(),
        &eval::eval_pipeline_id(engine),
    );
    report.folds_note = file.folds_note;
    report.at_decision_threshold = Some(report.at_threshold(&engine.threshold()));
    Ok((specs, report, start.elapsed().as_secs_f64()))
}

pub fn run(ctx: &Context, kind: EvalKind) -> Result<ExitCode> {
    let engine = match kind {
        // The challenge's blink step reads eyes.
        EvalKind::Liveness { .. } | EvalKind::Blinks { .. } => {
            ctx.engine_with(facegate::EngineOptions {
                eyes: true,
                ..ctx.standalone_engine_options()
            })?
        }
        _ => ctx.standalone_engine()?,
    };
    match kind {
        EvalKind::Pairs { pairs, report: dir } => {
            let (_, report, seconds) = run_pairs(ctx, &engine, &pairs)?;
            let mut doc = serde_json::to_value(&report)?;
            doc["pairs_file"] = json!(pairs.pairs);
            doc["wall_seconds"] = json!(seconds);
            if let Some(dir) = &dir {
                report::write_pairs(dir, &report, &doc, &pairs.pairs, seconds)?;
            }
            ctx.emit(&doc, || {
                println!("{}", report::pairs_markdown(&report, &pairs.pairs, seconds));
                if let Some(dir) = &dir {
                    println!("report written to {}", dir.display());
                }
            })?;
        }
        EvalKind::Identify {
            split,
            root,
            open_set_far,
            report: dir,
        } => {
            let entries = eval::read_split(&split)?;
            if entries.is_empty() {
                bail!("{} lists no images", split.display());
            }
            let start = Instant::now();
            let images: Vec<PathBuf> = entries.iter().map(|e| e.path.clone()).collect();
            let embeddings = embed_all(ctx, &engine, &root, &images)?;
            let people = entries
                .iter()
                .filter(|e| e.role == eval::Role::Gallery)
                .map(|e| e.identity.as_str())
                .collect::<std::collections::BTreeSet<_>>()
                .len();
            let threshold = engine.identification_threshold(people);
            let report = eval::score_identification(
                &entries,
                &embeddings,
                &eval::eval_pipeline_id(&engine),
                open_set_far,
                Some((threshold.value, engine.target_fpir())),
            );
            let seconds = start.elapsed().as_secs_f64();
            let mut doc = serde_json::to_value(&report)?;
            doc["split_file"] = json!(split);
            doc["wall_seconds"] = json!(seconds);
            if let Some(dir) = &dir {
                report::write_identify(dir, &report, &doc, &split, seconds)?;
            }
            ctx.emit(&doc, || {
                println!("{}", report::identify_markdown(&report, &split, seconds))
            })?;
        }
        EvalKind::Liveness {
            manifest,
            trials,
            seed,
            fps,
        } => liveness(ctx, &engine, &manifest, trials, seed, fps)?,
        EvalKind::Blinks {
            manifest,
            fps,
            tolerance,
        } => blinks(ctx, &engine, &manifest, fps, tolerance)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn liveness(
    ctx: &Context,
    engine: &Engine,
    manifest: &Path,
    trials: usize,
    seed: u64,
    fps: f64,
) -> Result<()> {
    use facegate::challenge_eval;
    check_fps(fps)?;
    let presentations = challenge_eval::read_manifest(manifest)?;
    let start = Instant::now();
    let bar = progress::bar(
        presentations.len() as u64,
        ctx.interactive(),
        "presentations",
    );
    let rules = facegate::liveness_challenge::Rules::default();
    let report = challenge_eval::evaluate(
        engine,
        &presentations,
        trials,
        seed,
        fps,
        &rules,
        &mut |p| {
            bar.set_message(p.clip.display().to_string());
            bar.inc(1);
        },
    )?;
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    let doc = manifest_report(&report, manifest, seconds)?;
    ctx.emit(&doc, || {
        println!(
            "liveness by challenge on {} ({:.0} s)",
            manifest.display(),
            seconds
        );
        for (kind, apcer) in &report.apcer_by_type {
            println!("  APCER {kind}: {:.2}%", apcer * 100.0);
        }
        println!("  APCER (worst type): {:.2}%", report.apcer_max * 100.0);
        println!("  BPCER: {:.2}%", report.bpcer * 100.0);
        println!(
            "  non-response rate: {:.2}%",
            report.non_response_rate * 100.0
        );
        if let Some(t) = report.genuine_median_seconds_to_pass {
            println!("  genuine median time to pass: {t:.1} s");
        }
        println!();
        println!("| clip | label | attack type | trials | accepted | failures |");
        println!("|---|---|---|---|---|---|");
        for c in &report.clips {
            let failures: Vec<String> =
                c.failures.iter().map(|(r, n)| format!("{r} {n}")).collect();
            println!(
                "| {} | {} | {} | {} | {} | {} |",
                c.clip,
                c.label,
                c.attack_type.as_deref().unwrap_or("-"),
                c.trials,
                c.accepted,
                failures.join(", ")
            );
        }
    })?;
    Ok(())
}

/// Clips are analysed at most at 60 frames per second.
fn check_fps(fps: f64) -> Result<()> {
    if !(fps > 0.0 && fps <= 60.0) {
        bail!("--fps must be above 0 and at most 60, not {fps}");
    }
    Ok(())
}

/// An evaluation's JSON document with the manifest it ran on and how long it took.
fn manifest_report<T: serde::Serialize>(
    report: &T,
    manifest: &Path,
    seconds: f64,
) -> Result<serde_json::Value> {
    let mut doc = serde_json::to_value(report)?;
    doc["manifest"] = json!(manifest);
    doc["wall_seconds"] = json!(seconds);
    Ok(doc)
}

fn blinks(ctx: &Context, engine: &Engine, manifest: &Path, fps: f64, tolerance: f64) -> Result<()> {
    use facegate::challenge_eval;
    check_fps(fps)?;
    if !(tolerance > 0.0 && tolerance.is_finite()) {
        bail!("--tolerance must be a positive number of seconds, not {tolerance}");
    }
    let clips = challenge_eval::read_blink_manifest(manifest)?;
    let start = Instant::now();
    let bar = progress::bar(clips.len() as u64, ctx.interactive(), "clips");
    let rules = facegate::liveness_challenge::BlinkRules::default();
    let report =
        challenge_eval::evaluate_blinks(engine, &clips, fps, &rules, tolerance, &mut |c| {
            bar.set_message(c.clip.display().to_string());
            bar.inc(1);
        })?;
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    let doc = manifest_report(&report, manifest, seconds)?;
    ctx.emit(&doc, || {
        println!(
            "blinks on {} at {fps} frames/s ({:.0} s): precision {:.1}% ({} of {} detected), recall {:.1}% ({} of {} annotated), within {tolerance} s",
            manifest.display(),
            seconds,
            report.precision * 100.0,
            report.matched,
            report.detected,
            report.recall * 100.0,
            report.matched,
            report.annotated,
        );
        println!();
        println!("| clip | annotated | detected (s, depth) | matched |");
        println!("|---|---|---|---|");
        for c in &report.clips {
            let annotated: Vec<String> = c.annotated.iter().map(|t| format!("{t:.2}")).collect();
            let detected: Vec<String> = c
                .detected
                .iter()
                .map(|b| format!("{:.2} ({:.2})", b.at, b.depth))
                .collect();
            println!(
                "| {} | {} | {} | {} |",
                c.clip,
                annotated.join(", "),
                detected.join(", "),
                c.matched
            );
        }
    })?;
    Ok(())
}

/// What `facegate calibrate` measures on.
pub enum CalibrationInput {
    /// A pairs file, as `eval pairs` reads it.
    Pairs(PairsArgs),
    /// Every pair of photos of a folder of people (one subfolder per person).
    AllPairs(PathBuf),
}

/// The distances a calibration rests on.
struct Measured {
    value: f32,
    measured_far: f64,
    measured_tar: f64,
    genuine_pairs: usize,
    impostor_pairs: usize,
    source: String,
    impostor_cdf: facegate::decide::ImpostorCdf,
    /// `(FAR, threshold, TAR, resolved)` at the usual operating points.
    operating_points: Vec<(f64, f32, f64, bool)>,
}

fn measure_pairs(
    ctx: &Context,
    engine: &Engine,
    args: &PairsArgs,
    target_far: f64,
) -> Result<Measured> {
    let (_, report, _) = run_pairs(ctx, engine, args)?;
    let impostors = &report.impostor_distances;
    if (impostors.len() as f64) * target_far < 1.0 {
        eprintln!(
            "warning: {} impostor pairs cannot resolve a FAR of {target_far:e} (not one impostor may be accepted); the threshold falls below every impostor distance",
            impostors.len()
        );
    }
    let mut sorted = impostors.clone();
    sorted.sort_by(f32::total_cmp);
    let tar = |value: f32| {
        report
            .genuine_distances
            .iter()
            .filter(|&&d| d <= value)
            .count() as f64
            / report.genuine_distances.len().max(1) as f64
    };
    let value = threshold_for_far(impostors, target_far)
        .context("the pairs file has no impostor (different-person) pairs")?;
    let source = args.pairs.display().to_string();
    let operating_points = OPERATING_POINTS
        .iter()
        .filter_map(|&far| {
            let t = threshold_for_far(impostors, far)?;
            Some((far, t, tar(t), far * impostors.len() as f64 >= 1.0))
        })
        .collect();
    Ok(Measured {
        value,
        measured_far: far_at(&sorted, value),
        measured_tar: tar(value),
        genuine_pairs: report.genuine_pairs,
        impostor_pairs: report.impostor_pairs,
        impostor_cdf: eval::impostor_cdf(&report, &source),
        source,
        operating_points,
    })
}

const OPERATING_POINTS: [f64; 6] = [1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7];

fn measure_all_pairs(
    ctx: &Context,
    engine: &Engine,
    dir: &Path,
    target_far: f64,
) -> Result<Measured> {
    let entries = eval::read_people_folder(dir)?;
    let images: Vec<PathBuf> = entries.iter().map(|e| e.path.clone()).collect();
    let embeddings = embed_all(ctx, engine, dir, &images)?;
    let items: Vec<(&str, &[f32])> = entries
        .iter()
        .map(|e| {
            (
                e.identity.as_str(),
                embeddings[&e.path].embedding.as_slice(),
            )
        })
        .collect();
    if ctx.interactive() {
        eprintln!("comparing every pair of {} photos", items.len());
    }
    let all = eval::AllPairs::measure(&items);
    if all.genuine_pairs() == 0 {
        bail!(
            "{} has one photo per person: the TAR needs at least one person with two photos",
            dir.display()
        );
    }
    let source = format!(
        "every pair of {} ({} photos of {} people)",
        dir.display(),
        all.images,
        all.identities
    );
    let cdf = all.impostor_cdf(&source);
    let at = |far: f64| cdf.distance_at_far(far).context("no impostor pairs");
    let target = at(target_far)?;
    if !target.measured {
        eprintln!(
            "warning: {} impostor pairs cannot resolve a FAR of {target_far:e}; the threshold is the smallest impostor distance",
            all.impostor_pairs()
        );
    }
    let operating_points = OPERATING_POINTS
        .iter()
        .filter_map(|&far| {
            let t = cdf.distance_at_far(far)?;
            Some((far, t.distance, all.tar_at(t.distance), t.measured))
        })
        .collect();
    Ok(Measured {
        value: target.distance,
        measured_far: all.far_at(target.distance),
        measured_tar: all.tar_at(target.distance),
        genuine_pairs: all.genuine_pairs() as usize,
        impostor_pairs: all.impostor_pairs() as usize,
        impostor_cdf: cdf,
        source,
        operating_points,
    })
}

pub fn calibrate(
    ctx: &Context,
    input: &CalibrationInput,
    target_far: f64,
    target_fpir: Option<f64>,
) -> Result<ExitCode> {
    if !(target_far > 0.0 && target_far < 1.0) {
        bail!("--target-far must be between 0 and 1 (e.g. 1e-3), got {target_far}");
    }
    let engine = ctx.standalone_engine()?;
    let m = match input {
        CalibrationInput::Pairs(args) => measure_pairs(ctx, &engine, args, target_far)?,
        CalibrationInput::AllPairs(dir) => measure_all_pairs(ctx, &engine, dir, target_far)?,
    };
    let calibrated = CalibratedThreshold {
        metric: Metric::Euclidean,
        value: m.value,
        target_far,
        measured_far: m.measured_far,
        measured_tar: m.measured_tar,
        genuine_pairs: m.genuine_pairs,
        impostor_pairs: m.impostor_pairs,
        source: m.source.clone(),
        pipeline: eval::eval_pipeline_id(&engine),
        impostor_cdf: m.impostor_cdf,
        target_fpir,
    };
    let mut config = Config::load(ctx.home.data_dir())?;
    config
        .thresholds
        .insert(engine.model_id().to_string(), calibrated.clone());
    config.save(ctx.home.data_dir())?;
    let points: Vec<serde_json::Value> = m
        .operating_points
        .iter()
        .map(|(far, t, tar, measured)| {
            json!({"far": far, "threshold": t, "tar": tar, "measured": measured})
        })
        .collect();
    let doc = json!({
        "model": engine.model_id(),
        "threshold": m.value,
        "metric": "euclidean",
        "target_far": target_far,
        "target_fpir": target_fpir,
        "measured_far": m.measured_far,
        "measured_tar": m.measured_tar,
        "genuine_pairs": m.genuine_pairs,
        "impostor_pairs": m.impostor_pairs,
        "source": m.source,
        "operating_points": points,
        "config": Config::path(ctx.home.data_dir()),
    });
    ctx.emit(&doc, || {
        println!(
            "calibrated {}: threshold {:.4} (euclidean) for FAR {target_far:e}",
            engine.model_id(),
            m.value
        );
        println!(
            "  on {}: measured FAR {:.2e} ({} impostor pairs), TAR {:.4} ({} genuine pairs)",
            m.source, m.measured_far, m.impostor_pairs, m.measured_tar, m.genuine_pairs
        );
        for (far, t, tar, measured) in &m.operating_points {
            println!(
                "  FAR {far:.0e}: threshold {t:.4}, TAR {tar:.4}{}",
                if *measured {
                    ""
                } else {
                    " (not resolved: too few impostor pairs)"
                }
            );
        }
        if let Some(fpir) = target_fpir {
            println!("  1:N: identify keeps the false positive identification rate at {fpir:e}");
        }
        println!(
            "  stored in {}; verify and identify use it from now on",
            Config::path(ctx.home.data_dir()).display()
        );
    })?;
    Ok(ExitCode::SUCCESS)
}
