//! Measuring accuracy on labelled data: verification on a pairs file (the LFW protocol) and
//! 1:N identification on a gallery/probe/distractor split.
//!
//! Every distinct image is embedded once, in parallel, and cached on disk keyed by the image's
//! SHA-256 and the pipeline (model, detector, alignment), so a rerun is instant.
//!
//! When a photo shows several faces, the labelled person is taken to be the large face nearest
//! the centre (benchmarks such as LFW are centred on them).
//!
//! Images where no face is detected are not dropped (that would flatter the numbers): they fall
//! back to a centre crop — the middle half of the image, cut like the aligned faces — and are
//! counted and reported.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use facegate_decide::eval::{self, FoldResult, RocPoint, ScoredPair};
use facegate_decide::{euclidean, ImpostorCdf};
use facegate_detect::Face;
use rayon::prelude::*;
use rusqlite::OptionalExtension;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::quality::{QualityLevel, QualityReport};
use crate::{Engine, Error, FacePolicy};

/// One line of a pairs file.
#[derive(Clone, Debug, PartialEq)]
pub struct PairSpec {
    pub a: PathBuf,
    pub b: PathBuf,
    pub same: bool,
    pub fold: usize,
}

fn input_error(path: &Path, message: String) -> Error {
    Error::EvalInput {
        path: path.to_path_buf(),
        message,
    }
}

/// A tab-separated file whose first non-empty line names the columns.
struct Table<'t> {
    path: &'t Path,
    header: Vec<&'t str>,
    /// `(line number, cells)`.
    rows: Vec<(usize, Vec<&'t str>)>,
}

impl<'t> Table<'t> {
    fn parse(path: &'t Path, text: &'t str) -> Result<Table<'t>, Error> {
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let (_, header) = lines
            .next()
            .ok_or_else(|| input_error(path, "the file is empty".into()))?;
        Ok(Table {
            path,
            header: header.split('\t').map(str::trim).collect(),
            rows: lines
                .map(|(n, l)| (n + 1, l.split('\t').map(str::trim).collect()))
                .collect(),
        })
    }

    fn column(&self, name: &str) -> Result<usize, Error> {
        self.header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| input_error(self.path, format!("no `{name}` column in the header")))
    }

    fn cell(&self, line: usize, cells: &[&'t str], column: usize) -> Result<&'t str, Error> {
        cells
            .get(column)
            .copied()
            .ok_or_else(|| input_error(self.path, format!("line {line} has too few columns")))
    }
}

/// Reads a pairs file: a TSV with columns `img_a img_b same fold` (header line first), or
/// the original LFW `pairs.txt` (`folds n`, then per fold n matched `name i j` and n mismatched
/// `name1 i name2 j` lines, images at `name/name_%04d.jpg`).
pub fn read_pairs(path: &Path) -> Result<Vec<PairSpec>, Error> {
    let bad = |message: String| input_error(path, message);
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let table = Table::parse(path, &text)?;
    let mut pairs = Vec::new();
    if table.header.contains(&"img_a") {
        let (ia, ib, is, ifold) = (
            table.column("img_a")?,
            table.column("img_b")?,
            table.column("same")?,
            table.column("fold")?,
        );
        for (line, cells) in &table.rows {
            let get = |c: usize| table.cell(*line, cells, c);
            pairs.push(PairSpec {
                a: PathBuf::from(get(ia)?),
                b: PathBuf::from(get(ib)?),
                same: matches!(get(is)?, "1" | "true" | "True"),
                fold: get(ifold)?
                    .parse()
                    .map_err(|_| bad(format!("line {line}: fold is not a number")))?,
            });
        }
    } else {
        let counts: Vec<usize> = table
            .header
            .iter()
            .flat_map(|c| c.split_whitespace())
            .filter_map(|v| v.parse().ok())
            .collect();
        let per_half = match counts.as_slice() {
            [_, n] | [n] => *n,
            _ => return Err(bad(
                "expected a TSV header with img_a/img_b/same/fold, or LFW's `folds n` first line"
                    .into(),
            )),
        };
        let image = |name: &str, number: &str| -> Result<PathBuf, Error> {
            let number: u32 = number
                .parse()
                .map_err(|_| bad(format!("{number:?} is not an image number")))?;
            Ok(PathBuf::from(name).join(format!("{name}_{number:04}.jpg")))
        };
        for (n, (line, cells)) in table.rows.iter().enumerate() {
            let f: Vec<&str> = cells.iter().flat_map(|c| c.split_whitespace()).collect();
            let fold = n / (2 * per_half.max(1));
            let (a, b, same) = match f.as_slice() {
                [name, i, j] => (image(name, i)?, image(name, j)?, true),
                [n1, i, n2, j] => (image(n1, i)?, image(n2, j)?, false),
                _ => {
                    return Err(bad(format!(
                        "line {line} is neither `name i j` nor `name1 i name2 j`"
                    )))
                }
            };
            pairs.push(PairSpec { a, b, same, fold });
        }
    }
    if pairs.is_empty() {
        return Err(bad("no pairs in the file".into()));
    }
    Ok(pairs)
}

/// What one image contributed.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalImage {
    pub embedding: Vec<f32>,
    /// False when no face was detected and the centre-crop fallback was used.
    pub detected: bool,
    /// The face's quality figures (`None` for the centre-crop fallback).
    pub quality: Option<QualityReport>,
}

/// Embeddings on disk, keyed by image hash and pipeline.
pub struct EmbeddingCache {
    connection: Mutex<rusqlite::Connection>,
    path: PathBuf,
}

impl EmbeddingCache {
    pub fn open(path: &Path) -> Result<EmbeddingCache, Error> {
        let error = |e: rusqlite::Error| Error::EvalInput {
            path: path.to_path_buf(),
            message: format!("embedding cache: {e}"),
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::EvalInput {
                path: parent.to_path_buf(),
                message: e.to_string(),
            })?;
        }
        let connection = rusqlite::Connection::open(path).map_err(error)?;
        connection
            .busy_timeout(std::time::Duration::from_secs(10))
            .map_err(error)?;
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(error)?;
        connection
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS embeddings (
                    image_sha256 TEXT NOT NULL, pipeline TEXT NOT NULL,
                    embedding BLOB NOT NULL, detected INTEGER NOT NULL,
                    PRIMARY KEY (image_sha256, pipeline))",
            )
            .map_err(error)?;
        let has_quality: i64 = connection
            .query_row(
                "SELECT count(*) FROM pragma_table_info('embeddings') WHERE name = 'quality'",
                [],
                |r| r.get(0),
            )
            .map_err(error)?;
        if has_quality == 0 {
            // Rows cached before quality was measured are recomputed on their next use.
            connection
                .execute_batch("ALTER TABLE embeddings ADD COLUMN quality TEXT")
                .map_err(error)?;
        }
        Ok(EmbeddingCache {
            connection: Mutex::new(connection),
            path: path.to_path_buf(),
        })
    }

    fn get(&self, sha: &str, pipeline: &str) -> Option<EvalImage> {
        let connection = self.connection.lock().unwrap_or_else(|p| p.into_inner());
        connection
            .query_row(
                "SELECT embedding, detected, quality FROM embeddings WHERE image_sha256 = ?1 AND pipeline = ?2",
                [sha, pipeline],
                |r| {
                    Ok((
                        r.get::<_, Vec<u8>>(0)?,
                        r.get::<_, bool>(1)?,
                        r.get::<_, Option<String>>(2)?,
                    ))
                },
            )
            .optional()
            .ok()
            .flatten()
            .and_then(|(blob, detected, quality)| {
                let quality: Option<QualityReport> =
                    quality.and_then(|q| serde_json::from_str(&q).ok());
                if detected && quality.is_none() {
                    return None;
                }
                Some(EvalImage {
                    embedding: blob
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect(),
                    detected,
                    quality,
                })
            })
    }

    fn put(&self, sha: &str, pipeline: &str, image: &EvalImage) -> Result<(), Error> {
        let connection = self.connection.lock().unwrap_or_else(|p| p.into_inner());
        let blob: Vec<u8> = image
            .embedding
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        connection
            .execute(
                "INSERT OR REPLACE INTO embeddings (image_sha256, pipeline, embedding, detected, quality)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                rusqlite::params![
                    sha,
                    pipeline,
                    blob,
                    image.detected,
                    image
                        .quality
                        .as_ref()
                        .and_then(|q| serde_json::to_string(q).ok())
                ],
            )
            .map_err(|e| Error::EvalInput {
                path: self.path.clone(),
                message: format!("embedding cache: {e}"),
            })?;
        Ok(())
    }
}

/// Embeds every image (in parallel), using and filling the cache. `progress` is called once
/// per image.
pub fn embed_images(
    engine: &Engine,
    cache: &EmbeddingCache,
    root: &Path,
    images: &[PathBuf],
    progress: &(dyn Fn() + Sync),
) -> Result<HashMap<PathBuf, EvalImage>, Error> {
    let pipeline = eval_pipeline_id(engine);
    let results: Result<Vec<(PathBuf, EvalImage)>, Error> = images
        .par_iter()
        .map(|relative| {
            let path = root.join(relative);
            let bytes =
                std::fs::read(&path).map_err(|source| facegate_image::ImageError::Read {
                    path: path.clone(),
                    source,
                })?;
            let sha = format!("{:x}", Sha256::digest(&bytes));
            let image = match cache.get(&sha, &pipeline) {
                Some(hit) => hit,
                None => {
                    let computed = embed_one(engine, &bytes, &path)?;
                    cache.put(&sha, &pipeline, &computed)?;
                    computed
                }
            };
            progress();
            Ok((relative.clone(), image))
        })
        .collect();
    Ok(results?.into_iter().collect())
}

/// The engine's pipeline plus the evaluation's face choice: what the cached embeddings depend on.
pub fn eval_pipeline_id(engine: &Engine) -> String {
    format!("{}+central-face-v2", engine.pipeline_id())
}

fn embed_one(engine: &Engine, bytes: &[u8], path: &Path) -> Result<EvalImage, Error> {
    let image = engine.decode_image(bytes, &path.display().to_string())?;
    // Benchmark photos are centred on the labelled person.
    match engine.embed_faces(&image, FacePolicy::Central) {
        Ok((mut faces, found)) => {
            let face = faces.remove(0);
            Ok(EvalImage {
                quality: Some(QualityReport::measure(&image.rgb, &face.face, found)),
                embedding: face.embedding,
                detected: true,
            })
        }
        Err(Error::NoFace { .. } | Error::FaceTooSmall { .. }) => {
            // The centre half of the image, with landmarks where an upright face in that box
            // would have them (the FaceNet template, which frames a face plus margin).
            let (w, h) = (image.rgb.width() as f32, image.rgb.height() as f32);
            let (x0, y0, side) = (w * 0.25, h * 0.25, w.min(h) * 0.5);
            let landmarks = facegate_align::TEMPLATE_160
                .map(|[x, y]| [x0 + x / 160.0 * side, y0 + y / 160.0 * side]);
            let centre = Face {
                bbox: [x0, y0, x0 + side, y0 + side],
                score: 0.0,
                landmarks,
            };
            let mut embeddings = engine.embed_at(&image.rgb, &[centre])?;
            Ok(EvalImage {
                embedding: embeddings.remove(0),
                detected: false,
                quality: None,
            })
        }
        Err(other) => Err(other),
    }
}

/// TAR at one FAR, with how many impostor pairs back it.
#[derive(Clone, Debug, Serialize)]
pub struct TarAtFar {
    pub far: f64,
    pub tar: Option<f64>,
    pub threshold: Option<f32>,
    /// Impostor pairs accepted at this FAR: under ~10 the figure is noisy.
    pub impostors_at_far: f64,
    /// Whether the impostor pairs can resolve this FAR at all (at least one accepted).
    pub resolvable: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct PairsReport {
    /// Model id, e.g. `facenet-keras-1.1`.
    pub model: String,
    pub pipeline: String,
    pub pairs: usize,
    pub genuine_pairs: usize,
    pub impostor_pairs: usize,
    pub folds: Vec<FoldResult>,
    pub accuracy_mean: f64,
    pub accuracy_std: f64,
    pub auc: f64,
    pub eer: f64,
    pub eer_threshold: f32,
    /// Best-accuracy threshold on all pairs (for reference; the protocol uses per-fold ones).
    pub best_threshold: f32,
    pub best_threshold_accuracy: f64,
    pub tar_at_far: Vec<TarAtFar>,
    pub images: usize,
    pub images_without_face: usize,
    pub no_face_policy: String,
    /// Downsampled ROC curve (for plotting).
    pub roc: Vec<RocPoint>,
    /// How errors fall as the worst-quality pairs are set aside.
    pub quality: QualityEffect,
    /// For `calibrate` and FAR estimates.
    #[serde(skip)]
    pub impostor_distances: Vec<f32>,
    #[serde(skip)]
    pub genuine_distances: Vec<f32>,
}

pub const NO_FACE_POLICY: &str =
    "no face detected: the centre half of the image is cropped and embedded instead (counted in images_without_face)";

/// Distances of every pair, then the protocol's numbers.
pub fn score_pairs(
    specs: &[PairSpec],
    embeddings: &HashMap<PathBuf, EvalImage>,
    model: &str,
    pipeline: &str,
) -> PairsReport {
    let pairs: Vec<ScoredPair> = specs
        .iter()
        .map(|p| ScoredPair {
            distance: euclidean(&embeddings[&p.a].embedding, &embeddings[&p.b].embedding),
            same: p.same,
            fold: p.fold,
        })
        .collect();
    let folds = eval::k_fold(&pairs);
    let accuracies: Vec<f64> = folds.iter().map(|f| f.accuracy).collect();
    let (accuracy_mean, accuracy_std) = eval::mean_std(&accuracies);
    let curve = eval::roc(&pairs);
    let (eer, eer_threshold) = eval::eer(&curve);
    let (best_threshold, best_threshold_accuracy) = eval::best_threshold(&pairs);
    let impostor_distances: Vec<f32> = pairs
        .iter()
        .filter(|p| !p.same)
        .map(|p| p.distance)
        .collect();
    let genuine_distances: Vec<f32> = pairs
        .iter()
        .filter(|p| p.same)
        .map(|p| p.distance)
        .collect();
    let impostors = impostor_distances.len();
    let tar_at_far: Vec<TarAtFar> = [1e-1, 1e-2, 1e-3, 1e-4]
        .into_iter()
        .map(|far| {
            let at = eval::tar_at_far(&curve, far);
            let impostors_at_far = far * impostors as f64;
            TarAtFar {
                far,
                tar: at.map(|a| a.0),
                threshold: at.map(|a| a.1),
                impostors_at_far,
                resolvable: impostors_at_far >= 1.0,
            }
        })
        .collect();
    let distinct: BTreeSet<&PathBuf> = specs.iter().flat_map(|p| [&p.a, &p.b]).collect();
    let quality = quality_effect(specs, embeddings, &pairs, &tar_at_far);
    PairsReport {
        model: model.to_string(),
        pipeline: pipeline.to_string(),
        pairs: pairs.len(),
        genuine_pairs: genuine_distances.len(),
        impostor_pairs: impostors,
        folds,
        accuracy_mean,
        accuracy_std,
        auc: eval::auc(&curve),
        eer,
        eer_threshold,
        best_threshold,
        best_threshold_accuracy,
        tar_at_far,
        images: distinct.len(),
        images_without_face: distinct
            .iter()
            .filter(|p| !embeddings[**p].detected)
            .count(),
        no_face_policy: NO_FACE_POLICY.to_string(),
        roc: downsample(&curve, 400),
        quality,
        impostor_distances,
        genuine_distances,
    }
}

/// Error versus reject: what setting aside low-quality pairs does to the errors at a fixed
/// threshold (the one for FAR 1e-3 on all pairs), factor by factor, and for each gate level.
#[derive(Clone, Debug, Serialize)]
pub struct QualityEffect {
    pub threshold: f32,
    /// Per factor: pairs ranked by their worse image on that factor, the worst fraction set
    /// aside.
    pub curves: Vec<RejectCurve>,
    /// The gate levels applied to both images of every pair.
    pub levels: Vec<LevelEffect>,
    /// Percentiles (1, 5, 10, 50) of each factor over the evaluated images with a face.
    pub percentiles: Vec<FactorPercentiles>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RejectCurve {
    pub factor: &'static str,
    pub points: Vec<RejectPoint>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RejectPoint {
    /// Fraction of pairs set aside.
    pub rejected: f64,
    pub pairs: usize,
    /// False non-match rate among the remaining genuine pairs.
    pub fnmr: f64,
    /// False match rate among the remaining impostor pairs.
    pub fmr: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct LevelEffect {
    pub level: &'static str,
    /// Images (with a face) failing the level.
    pub images_failing: usize,
    /// How many images fail each rule (an image may fail several).
    pub failures_by_rule: std::collections::BTreeMap<&'static str, usize>,
    pub point: RejectPoint,
}

#[derive(Clone, Debug, Serialize)]
pub struct FactorPercentiles {
    pub factor: &'static str,
    pub p1: f32,
    pub p5: f32,
    pub p10: f32,
    pub p50: f32,
}

/// A quality factor: its name, its value, and whether larger values are better.
type Factor = (&'static str, fn(&QualityReport) -> f32, bool);

const FACTORS: [Factor; 6] = [
    ("inter_eye_px", |q| q.inter_eye_px, true),
    ("sharpness", |q| q.sharpness, true),
    ("abs_yaw_degrees", |q| q.yaw_degrees.abs(), false),
    ("abs_pitch_degrees", |q| q.pitch_degrees.abs(), false),
    (
        "brightness_off_128",
        |q| (q.brightness - 128.0).abs(),
        false,
    ),
    ("detector_score", |q| q.detector_score, true),
];

/// The factor's value oriented so that larger is better.
fn goodness(factor: &Factor, q: &QualityReport) -> f32 {
    let v = (factor.1)(q);
    if factor.2 {
        v
    } else {
        -v
    }
}

fn quality_effect(
    specs: &[PairSpec],
    embeddings: &HashMap<PathBuf, EvalImage>,
    pairs: &[ScoredPair],
    tar_at_far: &[TarAtFar],
) -> QualityEffect {
    let threshold = tar_at_far
        .iter()
        .find(|t| t.far == 1e-3)
        .and_then(|t| t.threshold)
        .unwrap_or(1.0);
    let point = |kept: &[usize], total: usize| {
        let (mut genuine, mut impostor, mut false_non, mut false_match) = (0, 0, 0, 0);
        for &i in kept {
            let p = &pairs[i];
            if p.same {
                genuine += 1;
                false_non += usize::from(p.distance > threshold);
            } else {
                impostor += 1;
                false_match += usize::from(p.distance <= threshold);
            }
        }
        RejectPoint {
            rejected: 1.0 - kept.len() as f64 / total.max(1) as f64,
            pairs: kept.len(),
            fnmr: false_non as f64 / genuine.max(1) as f64,
            fmr: false_match as f64 / impostor.max(1) as f64,
        }
    };
    let quality = |path: &PathBuf| embeddings[path].quality.as_ref();
    let curves = FACTORS
        .iter()
        .map(|factor| {
            // A pair is as good as its worse image; no face at all is the worst.
            let score = |spec: &PairSpec| {
                let v = |p| quality(p).map_or(f32::NEG_INFINITY, |q| goodness(factor, q));
                v(&spec.a).min(v(&spec.b))
            };
            let mut order: Vec<usize> = (0..specs.len()).collect();
            order.sort_by(|&a, &b| score(&specs[a]).total_cmp(&score(&specs[b])));
            let points = [0.0, 0.01, 0.02, 0.05, 0.10, 0.20]
                .into_iter()
                .map(|fraction| {
                    let skip = (fraction * specs.len() as f64).round() as usize;
                    point(&order[skip..], specs.len())
                })
                .collect();
            RejectCurve {
                factor: factor.0,
                points,
            }
        })
        .collect();
    let levels = [QualityLevel::Standard, QualityLevel::Strict]
        .into_iter()
        .map(|level| {
            let rules = level.rules();
            let fails = |p: &PathBuf| match (quality(p), &rules) {
                (Some(q), Some(r)) => !q.failures(r).is_empty(),
                (None, _) => true,
                (Some(_), None) => false,
            };
            let kept: Vec<usize> = (0..specs.len())
                .filter(|&i| !fails(&specs[i].a) && !fails(&specs[i].b))
                .collect();
            let distinct: BTreeSet<&PathBuf> = specs.iter().flat_map(|p| [&p.a, &p.b]).collect();
            let mut failures_by_rule = std::collections::BTreeMap::new();
            if let Some(rules) = &rules {
                for q in distinct.iter().filter_map(|p| quality(p)) {
                    for (rule, _) in q.failed_rules(rules) {
                        *failures_by_rule.entry(rule).or_insert(0) += 1;
                    }
                }
            }
            LevelEffect {
                failures_by_rule,
                level: level.name(),
                images_failing: distinct
                    .iter()
                    .filter(|p| quality(p).is_some() && fails(p))
                    .count(),
                point: point(&kept, specs.len()),
            }
        })
        .collect();
    let distinct: BTreeSet<&PathBuf> = specs.iter().flat_map(|p| [&p.a, &p.b]).collect();
    let percentiles = FACTORS
        .iter()
        .map(|factor| {
            // Worst first: p5 is the value 5% of the images are worse than.
            let mut v: Vec<(f32, f32)> = distinct
                .iter()
                .filter_map(|p| quality(p))
                .map(|q| (goodness(factor, q), (factor.1)(q)))
                .collect();
            v.sort_by(|a, b| a.0.total_cmp(&b.0));
            let at = |p: f64| {
                v.get(((v.len() as f64 - 1.0) * p).round() as usize)
                    .map_or(f32::NAN, |x| x.1)
            };
            FactorPercentiles {
                factor: factor.0,
                p1: at(0.01),
                p5: at(0.05),
                p10: at(0.10),
                p50: at(0.50),
            }
        })
        .collect();
    QualityEffect {
        threshold,
        curves,
        levels,
        percentiles,
    }
}

fn downsample(curve: &[RocPoint], max: usize) -> Vec<RocPoint> {
    if curve.len() <= max {
        return curve.to_vec();
    }
    let step = curve.len() as f64 / max as f64;
    let mut out: Vec<RocPoint> = (0..max)
        .map(|i| curve[(i as f64 * step) as usize])
        .collect();
    if let Some(last) = curve.last() {
        out.push(*last);
    }
    out
}

/// The distinct images a pairs file needs.
pub fn pair_images(specs: &[PairSpec]) -> Vec<PathBuf> {
    let set: BTreeSet<&PathBuf> = specs.iter().flat_map(|p| [&p.a, &p.b]).collect();
    set.into_iter().cloned().collect()
}

/// The impostor distance distribution of a pairs run, for FAR estimates.
pub fn impostor_cdf(report: &PairsReport, source: &str) -> ImpostorCdf {
    ImpostorCdf::from_distances(&report.impostor_distances, 200, source)
}

/// Role of an image in an identification split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Gallery,
    Probe,
    Distractor,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SplitEntry {
    pub path: PathBuf,
    pub identity: String,
    pub role: Role,
}

/// Reads a TSV with columns `path identity role` (role: gallery, probe or distractor).
pub fn read_split(path: &Path) -> Result<Vec<SplitEntry>, Error> {
    let bad = |message: String| input_error(path, message);
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let table = Table::parse(path, &text)?;
    let (ip, ii, ir) = (
        table.column("path")?,
        table.column("identity")?,
        table.column("role")?,
    );
    let mut entries = Vec::new();
    for (line, cells) in &table.rows {
        let get = |c: usize| table.cell(*line, cells, c);
        let role = match get(ir)? {
            "gallery" => Role::Gallery,
            "probe" => Role::Probe,
            "distractor" => Role::Distractor,
            other => return Err(bad(format!("line {line}: unknown role {other:?}"))),
        };
        entries.push(SplitEntry {
            path: PathBuf::from(get(ip)?),
            identity: get(ii)?.to_string(),
            role,
        });
    }
    Ok(entries)
}

#[derive(Clone, Debug, Serialize)]
pub struct IdentifyReport {
    pub pipeline: String,
    pub gallery_images: usize,
    pub gallery_identities: usize,
    /// Probes whose identity is in the gallery (closed set).
    pub mated_probes: usize,
    /// Probes and distractors whose identity is not (open set impostors).
    pub non_mated_searches: usize,
    pub rank1: f64,
    pub rank5: f64,
    /// Open set: the threshold that lets through this fraction of non-mated searches...
    pub open_set_far: f64,
    pub open_set_threshold: Option<f32>,
    /// ...and the detection-and-identification rate there: mated probes found at rank 1
    /// within the threshold.
    pub open_set_dir: Option<f64>,
    pub images: usize,
    pub images_without_face: usize,
    pub no_face_policy: String,
}

/// Closed-set rank-1/rank-5 and open-set DIR at `open_set_far`.
pub fn score_identification(
    entries: &[SplitEntry],
    embeddings: &HashMap<PathBuf, EvalImage>,
    pipeline: &str,
    open_set_far: f64,
) -> IdentifyReport {
    let gallery: Vec<&SplitEntry> = entries.iter().filter(|e| e.role == Role::Gallery).collect();
    let identities: BTreeSet<&str> = gallery.iter().map(|e| e.identity.as_str()).collect();
    let searches: Vec<&SplitEntry> = entries.iter().filter(|e| e.role != Role::Gallery).collect();
    let results: Vec<(bool, Option<usize>, f32)> = searches
        .par_iter()
        .map(|probe| {
            let q = &embeddings[&probe.path].embedding;
            // Closest template per identity.
            let mut best: HashMap<&str, f32> = HashMap::new();
            for g in &gallery {
                let d = euclidean(q, &embeddings[&g.path].embedding);
                let e = best.entry(g.identity.as_str()).or_insert(f32::INFINITY);
                if d < *e {
                    *e = d;
                }
            }
            let mut ranked: Vec<(&str, f32)> = best.into_iter().collect();
            ranked.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(b.0)));
            let mated = identities.contains(probe.identity.as_str());
            let rank = ranked.iter().position(|(id, _)| *id == probe.identity);
            (mated, rank, ranked.first().map_or(f32::INFINITY, |r| r.1))
        })
        .collect();
    let mated: Vec<&(bool, Option<usize>, f32)> = results.iter().filter(|r| r.0).collect();
    let non_mated: Vec<f32> = results.iter().filter(|r| !r.0).map(|r| r.2).collect();
    let rate = |k: usize| {
        mated
            .iter()
            .filter(|r| r.1.is_some_and(|rank| rank < k))
            .count() as f64
            / mated.len().max(1) as f64
    };
    let threshold = eval::threshold_for_far(&non_mated, open_set_far);
    let dir = threshold.map(|t| {
        mated.iter().filter(|r| r.1 == Some(0) && r.2 <= t).count() as f64
            / mated.len().max(1) as f64
    });
    IdentifyReport {
        pipeline: pipeline.to_string(),
        gallery_images: gallery.len(),
        gallery_identities: identities.len(),
        mated_probes: mated.len(),
        non_mated_searches: non_mated.len(),
        rank1: rate(1),
        rank5: rate(5),
        open_set_far,
        open_set_threshold: threshold,
        open_set_dir: dir,
        images: entries.len(),
        images_without_face: entries
            .iter()
            .filter(|e| !embeddings[&e.path].detected)
            .count(),
        no_face_policy: NO_FACE_POLICY.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_pairs_formats() {
        let dir = tempfile::tempdir().unwrap();
        let tsv = dir.path().join("pairs.tsv");
        std::fs::write(&tsv, "img_a\timg_b\tsame\tfold\na/a_0001.jpg\ta/a_0002.jpg\t1\t0\na/a_0001.jpg\tb/b_0001.jpg\t0\t1\n").unwrap();
        let p = read_pairs(&tsv).unwrap();
        assert_eq!(p.len(), 2);
        assert!(p[0].same && !p[1].same);
        assert_eq!(p[1].fold, 1);
        let txt = dir.path().join("pairs.txt");
        std::fs::write(
            &txt,
            "2\t1\nAl\t1\t2\nAl\t1\tBo\t3\nCy\t1\t4\nCy\t2\tDe\t1\n",
        )
        .unwrap();
        let p = read_pairs(&txt).unwrap();
        assert_eq!(p.len(), 4);
        assert_eq!(p[0].a, PathBuf::from("Al/Al_0001.jpg"));
        assert_eq!(p[1].b, PathBuf::from("Bo/Bo_0003.jpg"));
        assert_eq!(
            p.iter().map(|x| x.fold).collect::<Vec<_>>(),
            vec![0, 0, 1, 1]
        );
        assert!(read_pairs(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn reads_identification_splits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("split.tsv");
        std::fs::write(&path, "path\tidentity\trole\na/1.jpg\ta\tgallery\na/2.jpg\ta\tprobe\nb/1.jpg\tb\tdistractor\n").unwrap();
        let entries = read_split(&path).unwrap();
        assert_eq!(
            entries.iter().map(|e| e.role).collect::<Vec<_>>(),
            vec![Role::Gallery, Role::Probe, Role::Distractor]
        );
        std::fs::write(&path, "path\tidentity\trole\na/1.jpg\ta\tjudge\n").unwrap();
        let err = read_split(&path).unwrap_err().to_string();
        assert!(err.contains("line 2: unknown role"), "{err}");
    }
}
