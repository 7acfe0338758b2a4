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
use crate::commands::Context;
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
    let specs = eval::read_pairs(&args.pairs)?;
    let start = Instant::now();
    let images = eval::pair_images(&specs);
    let embeddings = embed_all(ctx, engine, &args.root, &images)?;
    let report = eval::score_pairs(
        &specs,
        &embeddings,
        engine.model_id(),
        &eval::eval_pipeline_id(engine),
    );
    Ok((specs, report, start.elapsed().as_secs_f64()))
}

pub fn run(ctx: &Context, kind: EvalKind) -> Result<ExitCode> {
    let engine = ctx.standalone_engine()?;
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
            let report = eval::score_identification(
                &entries,
                &embeddings,
                &eval::eval_pipeline_id(&engine),
                open_set_far,
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
    }
    Ok(ExitCode::SUCCESS)
}

pub fn calibrate(ctx: &Context, args: &PairsArgs, target_far: f64) -> Result<ExitCode> {
    if !(target_far > 0.0 && target_far < 1.0) {
        bail!("--target-far must be between 0 and 1 (e.g. 1e-3), got {target_far}");
    }
    let engine = ctx.standalone_engine()?;
    let (_, report, _) = run_pairs(ctx, &engine, args)?;
    let impostors = &report.impostor_distances;
    if (impostors.len() as f64) * target_far < 1.0 {
        eprintln!(
            "warning: {} impostor pairs cannot resolve a FAR of {target_far:e} (not one impostor may be accepted); the threshold falls below every impostor distance",
            impostors.len()
        );
    }
    let value = threshold_for_far(impostors, target_far)
        .context("the pairs file has no impostor (different-person) pairs")?;
    let mut sorted = impostors.clone();
    sorted.sort_by(f32::total_cmp);
    let measured_far = far_at(&sorted, value);
    let measured_tar = report
        .genuine_distances
        .iter()
        .filter(|&&d| d <= value)
        .count() as f64
        / report.genuine_distances.len().max(1) as f64;
    let source = args.pairs.display().to_string();
    let calibrated = CalibratedThreshold {
        metric: Metric::Euclidean,
        value,
        target_far,
        measured_far,
        measured_tar,
        genuine_pairs: report.genuine_pairs,
        impostor_pairs: report.impostor_pairs,
        source: source.clone(),
        pipeline: eval::eval_pipeline_id(&engine),
        impostor_cdf: eval::impostor_cdf(&report, &source),
    };
    let mut config = Config::load(ctx.home.data_dir())?;
    config
        .thresholds
        .insert(engine.model_id().to_string(), calibrated.clone());
    config.save(ctx.home.data_dir())?;
    let doc = json!({
        "model": engine.model_id(),
        "threshold": value,
        "metric": "euclidean",
        "target_far": target_far,
        "measured_far": measured_far,
        "measured_tar": measured_tar,
        "genuine_pairs": report.genuine_pairs,
        "impostor_pairs": report.impostor_pairs,
        "config": Config::path(ctx.home.data_dir()),
    });
    ctx.emit(&doc, || {
        println!(
            "calibrated {}: threshold {value:.4} (euclidean) for FAR {target_far:e}",
            engine.model_id()
        );
        println!(
            "  on {}: measured FAR {measured_far:.2e} ({} impostor pairs), TAR {measured_tar:.4} ({} genuine pairs)",
            source, report.impostor_pairs, report.genuine_pairs
        );
        println!("  stored in {}; verify and identify use it from now on", Config::path(ctx.home.data_dir()).display());
    })?;
    Ok(ExitCode::SUCCESS)
}
