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
use facegate_decide::{euclidean, Distances, ImpostorCdf, Threshold};
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

/// A pairs file as read: the pairs, and how their folds were assigned when the file had none.
#[derive(Clone, Debug, PartialEq)]
pub struct PairsFile {
    pub pairs: Vec<PairSpec>,
    /// `None` when the file gave the folds; else how facegate assigned them.
    pub folds_note: Option<String>,
}

/// Folds assigned to a pairs file without a `fold` column.
pub const ASSIGNED_FOLDS: usize = 10;

/// Reads a pairs file: a TSV with columns `img_a img_b same` and optionally `fold` (header
/// line first), or the original LFW `pairs.txt` (`folds n`, then per fold n matched `name i j`
/// and n mismatched `name1 i name2 j` lines, images at `name/name_%04d.jpg`).
///
/// Refused with the offending line named: labels other than 0/1 (or true/false), a pair listed
/// twice (in either order), an image compared with itself; and files with no genuine or no
/// impostor pair. Without a `fold` column, folds are assigned (see [`assign_folds`]).
pub fn read_pairs(path: &Path) -> Result<Vec<PairSpec>, Error> {
    Ok(read_pairs_file(path)?.pairs)
}

/// [`read_pairs`], also saying how the folds were assigned.
pub fn read_pairs_file(path: &Path) -> Result<PairsFile, Error> {
    let bad = |message: String| input_error(path, message);
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let table = Table::parse(path, &text)?;
    let mut pairs = Vec::new();
    let mut lines = Vec::new();
    let mut folds_note = None;
    if table.header.contains(&"img_a") {
        let (ia, ib, is) = (
            table.column("img_a")?,
            table.column("img_b")?,
            table.column("same")?,
        );
        let ifold = table.header.iter().position(|h| *h == "fold");
        for (line, cells) in &table.rows {
            let get = |c: usize| table.cell(*line, cells, c);
            let same = match get(is)? {
                "1" | "true" | "True" => true,
                "0" | "false" | "False" => false,
                other => {
                    return Err(bad(format!(
                        "line {line}: `same` is {other:?}; it must be 1 (same person) or 0 (different people)"
                    )))
                }
            };
            let fold = match ifold {
                Some(c) => get(c)?
                    .parse()
                    .map_err(|_| bad(format!("line {line}: fold is not a number")))?,
                None => 0,
            };
            pairs.push(PairSpec {
                a: PathBuf::from(get(ia)?),
                b: PathBuf::from(get(ib)?),
                same,
                fold,
            });
            lines.push(*line);
        }
        if ifold.is_none() && !pairs.is_empty() {
            folds_note = Some(assign_folds(&mut pairs, ASSIGNED_FOLDS));
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
                "expected a TSV header with img_a/img_b/same[/fold], or LFW's `folds n` first line"
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
            lines.push(*line);
        }
    }
    if pairs.is_empty() {
        return Err(bad("no pairs in the file".into()));
    }
    let mut seen: HashMap<(&Path, &Path), usize> = HashMap::new();
    for (pair, &line) in pairs.iter().zip(&lines) {
        if pair.a == pair.b {
            return Err(bad(format!(
                "line {line}: {} is compared with itself",
                pair.a.display()
            )));
        }
        let key = if pair.a <= pair.b {
            (pair.a.as_path(), pair.b.as_path())
        } else {
            (pair.b.as_path(), pair.a.as_path())
        };
        if let Some(first) = seen.insert(key, line) {
            return Err(bad(format!(
                "line {line}: the pair {} / {} is already listed on line {first}",
                pair.a.display(),
                pair.b.display()
            )));
        }
    }
    if !pairs.iter().any(|p| p.same) {
        return Err(bad(
            "no same-person pair (same = 1): the TAR and accuracy need at least one".into(),
        ));
    }
    if !pairs.iter().any(|p| !p.same) {
        return Err(bad(
            "no different-person pair (same = 0): the FAR needs at least one; a file of one identity only cannot measure it".into(),
        ));
    }
    Ok(PairsFile { pairs, folds_note })
}

/// Checks that every image of `pairs` exists under `root`, naming the first that does not.
pub fn check_pair_images(path: &Path, root: &Path, pairs: &[PairSpec]) -> Result<(), Error> {
    for (n, pair) in pairs.iter().enumerate() {
        for image in [&pair.a, &pair.b] {
            if !root.join(image).is_file() {
                return Err(input_error(
                    path,
                    format!(
                        "pair {} ({} / {}): no image at {}",
                        n + 1,
                        pair.a.display(),
                        pair.b.display(),
                        root.join(image).display()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The person an image path names: its folder (`name/photo.jpg`, as LFW lays them out), else
/// the file name without a trailing `_NNNN` number.
fn identity_of(path: &Path) -> String {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => parent.display().to_string(),
        None => {
            let stem = path
                .file_stem()
                .map_or_else(String::new, |s| s.to_string_lossy().to_string());
            match stem.rsplit_once('_') {
                Some((name, number)) if number.chars().all(|c| c.is_ascii_digit()) => {
                    name.to_string()
                }
                _ => stem,
            }
        }
    }
}

/// Assigns `folds` folds to pairs given without them, identity-disjoint where it can: people
/// linked by any pair stay in one fold (so no fold's threshold is chosen on the people it is
/// tested on). When one group of linked people holds more than a fold's share of the pairs,
/// disjoint folds cannot be balanced, and pairs are dealt round-robin instead. Returns what
/// was done, in words.
pub fn assign_folds(pairs: &mut [PairSpec], folds: usize) -> String {
    let folds = folds.max(2);
    let mut ids: HashMap<String, usize> = HashMap::new();
    let mut ends = Vec::with_capacity(pairs.len());
    for p in pairs.iter() {
        let mut id = |path: &Path| {
            let name = identity_of(path);
            let next = ids.len();
            *ids.entry(name).or_insert(next)
        };
        ends.push((id(&p.a), id(&p.b)));
    }
    // Union-find over identities.
    let mut parent: Vec<usize> = (0..ids.len()).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for &(a, b) in &ends {
        let (ra, rb) = (root(&mut parent, a), root(&mut parent, b));
        if ra != rb {
            parent[ra] = rb;
        }
    }
    let mut groups: HashMap<usize, Vec<usize>> = HashMap::new();
    for (i, &(a, _)) in ends.iter().enumerate() {
        groups.entry(root(&mut parent, a)).or_default().push(i);
    }
    let largest = groups.values().map(Vec::len).max().unwrap_or(0);
    if groups.len() >= folds && largest * folds <= pairs.len() + folds {
        let mut ordered: Vec<Vec<usize>> = groups.into_values().collect();
        // Largest groups first, each to the fold with the fewest pairs; ties by first pair.
        ordered.sort_by(|a, b| b.len().cmp(&a.len()).then(a[0].cmp(&b[0])));
        let mut sizes = vec![0usize; folds];
        for group in &ordered {
            let fold = (0..folds).min_by_key(|&f| (sizes[f], f)).unwrap_or(0);
            sizes[fold] += group.len();
            for &i in group {
                pairs[i].fold = fold;
            }
        }
        format!(
            "the file has no fold column: {folds} folds assigned, identity-disjoint ({} groups of linked people; identities read from the image folders)",
            ordered.len()
        )
    } else {
        // Genuine and impostor pairs dealt separately, so every fold holds both.
        let (mut genuine, mut impostor) = (0usize, 0usize);
        for p in pairs.iter_mut() {
            let counter = if p.same { &mut genuine } else { &mut impostor };
            p.fold = *counter % folds;
            *counter += 1;
        }
        format!(
            "the file has no fold column: {folds} folds assigned round-robin, NOT identity-disjoint (the people are too linked by the pairs to split apart; the largest group holds {largest} of {} pairs), so the accuracy may be slightly optimistic",
            pairs.len()
        )
    }
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
        // Embeddings of people's photos: readable by the owner only, as the gallery is.
        facegate_gallery::private::prepare_database(path).map_err(|e| Error::EvalInput {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
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

    /// The cached embeddings of `dimension` values, from the pipeline that has the most of
    /// them, sorted by photo hash: real face embeddings for benchmarks.
    pub fn embeddings_of_dimension(&self, dimension: usize) -> Result<Vec<Vec<f32>>, Error> {
        let error = |e: rusqlite::Error| Error::EvalInput {
            path: self.path.clone(),
            message: format!("embedding cache: {e}"),
        };
        let connection = self.connection.lock().unwrap_or_else(|p| p.into_inner());
        let bytes = (dimension * 4) as i64;
        let pipeline: Option<String> = connection
            .query_row(
                "SELECT pipeline FROM embeddings WHERE length(embedding) = ?1
                 GROUP BY pipeline ORDER BY count(*) DESC, pipeline LIMIT 1",
                [bytes],
                |r| r.get(0),
            )
            .optional()
            .map_err(error)?;
        let Some(pipeline) = pipeline else {
            return Ok(Vec::new());
        };
        let mut statement = connection
            .prepare(
                "SELECT embedding FROM embeddings WHERE pipeline = ?1 AND length(embedding) = ?2
                 ORDER BY image_sha256",
            )
            .map_err(error)?;
        let rows = statement
            .query_map(rusqlite::params![pipeline, bytes], |r| {
                r.get::<_, Vec<u8>>(0)
            })
            .map_err(error)?;
        let mut out = Vec::new();
        for blob in rows {
            let blob = blob.map_err(error)?;
            out.push(
                blob.chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
            );
        }
        Ok(out)
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
    format!("{}+central-face-v5", engine.pipeline_id())
}

fn embed_one(engine: &Engine, bytes: &[u8], path: &Path) -> Result<EvalImage, Error> {
    let image = engine.decode_image(bytes, &path.display().to_string())?;
    // Benchmark photos are centred on the labelled person.
    match engine.embed_faces(&image, FacePolicy::Central) {
        Ok((mut faces, found)) => {
            // The figures measured where the face was aligned (on the grey canvas for a face
            // that fills the photo), as enrollment judges them.
            let face = faces.remove(0);
            debug_assert_eq!(face.quality.faces_in_image, found);
            Ok(EvalImage {
                quality: Some(face.quality),
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
    /// How the folds were assigned when the pairs file had none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub folds_note: Option<String>,
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
    /// What the threshold decisions use (shipped, calibrated or `--threshold`) does on these
    /// pairs: the rates a user of these photos gets, beside the rate it was chosen for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_decision_threshold: Option<AtThreshold>,
    /// For `calibrate` and FAR estimates.
    #[serde(skip)]
    pub impostor_distances: Vec<f32>,
    #[serde(skip)]
    pub genuine_distances: Vec<f32>,
}

/// One threshold's decisions on every pair of a pairs file.
#[derive(Clone, Debug, Serialize)]
pub struct AtThreshold {
    pub threshold: f32,
    pub metric: String,
    /// Where the threshold comes from and what it was chosen for.
    pub threshold_note: String,
    pub genuine_accepted: usize,
    pub impostors_accepted: usize,
    /// Genuine pairs accepted, as a share.
    pub tar: f64,
    /// Impostor pairs accepted, as a share: the false accept rate on these photos.
    pub far: f64,
}

impl PairsReport {
    /// How `threshold` decides these pairs (the distances are between unit embeddings, so the
    /// cosine distance is half the squared Euclidean one).
    pub fn at_threshold(&self, threshold: &Threshold) -> AtThreshold {
        let accepted = |distances: &[f32]| {
            distances
                .iter()
                .filter(|&&d| {
                    threshold.is_match(&Distances {
                        euclidean: d,
                        cosine: d * d / 2.0,
                    })
                })
                .count()
        };
        let genuine_accepted = accepted(&self.genuine_distances);
        let impostors_accepted = accepted(&self.impostor_distances);
        let share = |n: usize, of: usize| n as f64 / of.max(1) as f64;
        AtThreshold {
            threshold: threshold.value,
            metric: threshold.metric.name().to_string(),
            threshold_note: threshold.note.clone(),
            genuine_accepted,
            impostors_accepted,
            tar: share(genuine_accepted, self.genuine_distances.len()),
            far: share(impostors_accepted, self.impostor_distances.len()),
        }
    }
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
        folds_note: None,
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
        at_decision_threshold: None,
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

/// The photos of a folder of people: every image file (searched recursively) under each
/// subfolder of `dir`, the subfolder's name being the person; paths relative to `dir`, sorted.
pub fn read_people_folder(dir: &Path) -> Result<Vec<SplitEntry>, Error> {
    let bad = |message: String| input_error(dir, message);
    let mut entries = Vec::new();
    let mut people = std::fs::read_dir(dir)
        .map_err(|e| bad(e.to_string()))?
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name())
        .collect::<Vec<_>>();
    people.sort();
    for person in people {
        let identity = person.to_string_lossy().to_string();
        if identity.starts_with('.') || identity.starts_with('_') {
            // Hidden and metadata folders (e.g. LFW's `_meta`) are not people.
            continue;
        }
        let mut stack = vec![PathBuf::from(&person)];
        while let Some(relative) = stack.pop() {
            let listing = std::fs::read_dir(dir.join(&relative)).map_err(|e| bad(e.to_string()))?;
            for item in listing.filter_map(Result::ok) {
                let path = relative.join(item.file_name());
                if item.path().is_dir() {
                    stack.push(path);
                } else if path
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
                {
                    entries.push(SplitEntry {
                        path,
                        identity: identity.clone(),
                        role: Role::Gallery,
                    });
                }
            }
        }
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    let identities: BTreeSet<&str> = entries.iter().map(|e| e.identity.as_str()).collect();
    if identities.len() < 2 {
        return Err(bad(format!(
            "found photos of {} person(s); calibration needs at least two people, one subfolder each",
            identities.len()
        )));
    }
    Ok(entries)
}

/// Image file extensions facegate reads.
pub const IMAGE_EXTENSIONS: [&str; 5] = ["jpg", "jpeg", "png", "webp", "bmp"];

/// Histograms of the distances of every pair of a labelled set: same person (genuine) and
/// different people (impostor), in [`AllPairs::BINS`] bins over the Euclidean range [0, 2].
#[derive(Clone, Debug)]
pub struct AllPairs {
    pub genuine: Vec<u64>,
    pub impostor: Vec<u64>,
    pub images: usize,
    pub identities: usize,
}

impl AllPairs {
    /// Bins over [0, 2]: 2/65536 ≈ 3e-5 wide, far finer than thresholds are ever given.
    pub const BINS: usize = 65_536;
    pub const BIN_WIDTH: f32 = 2.0 / Self::BINS as f32;

    /// Compares every pair exactly (n² / 2 dot products, in parallel; 13,233 LFW images are
    /// 87.5 million pairs).
    pub fn measure(items: &[(&str, &[f32])]) -> AllPairs {
        let bins = Self::BINS;
        let empty = || (vec![0u64; bins], vec![0u64; bins]);
        let (genuine, impostor) = (0..items.len())
            .into_par_iter()
            .fold(empty, |(mut genuine, mut impostor), i| {
                let (identity, a) = items[i];
                for &(other, b) in &items[i + 1..] {
                    let d = euclidean(a, b);
                    let bin = ((d / Self::BIN_WIDTH) as usize).min(bins - 1);
                    if identity == other {
                        genuine[bin] += 1;
                    } else {
                        impostor[bin] += 1;
                    }
                }
                (genuine, impostor)
            })
            .reduce(empty, |(mut g, mut i), (g2, i2)| {
                g.iter_mut().zip(g2).for_each(|(a, b)| *a += b);
                i.iter_mut().zip(i2).for_each(|(a, b)| *a += b);
                (g, i)
            });
        let identities: BTreeSet<&str> = items.iter().map(|(id, _)| *id).collect();
        AllPairs {
            genuine,
            impostor,
            images: items.len(),
            identities: identities.len(),
        }
    }

    pub fn genuine_pairs(&self) -> u64 {
        self.genuine.iter().sum()
    }

    pub fn impostor_pairs(&self) -> u64 {
        self.impostor.iter().sum()
    }

    pub fn impostor_cdf(&self, source: &str) -> ImpostorCdf {
        ImpostorCdf::from_histogram(&self.impostor, Self::BIN_WIDTH, source)
    }

    /// The share of genuine pairs at or below `distance` (interpolated within its bin).
    pub fn tar_at(&self, distance: f32) -> f64 {
        share_at(&self.genuine, distance)
    }

    /// The share of impostor pairs at or below `distance` (interpolated within its bin).
    pub fn far_at(&self, distance: f32) -> f64 {
        share_at(&self.impostor, distance)
    }
}

fn share_at(counts: &[u64], distance: f32) -> f64 {
    let total: u64 = counts.iter().sum();
    if total == 0 || distance < 0.0 {
        return 0.0;
    }
    let position = distance / AllPairs::BIN_WIDTH;
    let bin = position as usize;
    if bin >= counts.len() {
        return 1.0;
    }
    let below: u64 = counts[..bin].iter().sum();
    let within = counts[bin] as f64 * f64::from(position - bin as f32);
    (below as f64 + within) / total as f64
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
    /// The threshold `identify` would use for a gallery of this many people (its target FPIR
    /// and the impostor curve), and what it gives here.
    pub identify_threshold: Option<IdentifyAtThreshold>,
    pub images: usize,
    pub images_without_face: usize,
    pub no_face_policy: String,
}

/// What a 1:N threshold gives on a split.
#[derive(Clone, Debug, Serialize)]
pub struct IdentifyAtThreshold {
    pub threshold: f32,
    /// The FPIR the threshold was chosen for.
    pub target_fpir: f64,
    /// Non-mated searches that returned someone.
    pub fpir: f64,
    /// Mated probes not returned as their person within the threshold.
    pub fnir: f64,
    /// `1 − fnir`: mated probes found at rank 1 within the threshold.
    pub dir: f64,
}

/// Closed-set rank-1/rank-5, open-set DIR at `open_set_far`, and FPIR/FNIR at
/// `identify_threshold` (`(threshold, target FPIR)`) when given.
pub fn score_identification(
    entries: &[SplitEntry],
    embeddings: &HashMap<PathBuf, EvalImage>,
    pipeline: &str,
    open_set_far: f64,
    identify_threshold: Option<(f32, f64)>,
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
    let identify_threshold = identify_threshold.map(|(t, target_fpir)| {
        let found = mated.iter().filter(|r| r.1 == Some(0) && r.2 <= t).count() as f64
            / mated.len().max(1) as f64;
        IdentifyAtThreshold {
            threshold: t,
            target_fpir,
            fpir: non_mated.iter().filter(|&&d| d <= t).count() as f64
                / non_mated.len().max(1) as f64,
            fnir: 1.0 - found,
            dir: found,
        }
    });
    IdentifyReport {
        identify_threshold,
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
    fn pairs_without_folds_get_identity_disjoint_folds() {
        let dir = tempfile::tempdir().unwrap();
        let tsv = dir.path().join("pairs.tsv");
        // 20 people, each with one genuine pair and one impostor pair to a partner: 10 linked
        // groups of two people.
        let mut text = String::from("img_a\timg_b\tsame\n");
        for i in 0..20 {
            let partner = i ^ 1;
            text += &format!("p{i}/a.jpg\tp{i}/b.jpg\t1\n");
            if i < partner {
                text += &format!("p{i}/a.jpg\tp{partner}/a.jpg\t0\n");
            }
        }
        std::fs::write(&tsv, text).unwrap();
        let file = read_pairs_file(&tsv).unwrap();
        assert!(file
            .folds_note
            .as_deref()
            .unwrap()
            .contains("identity-disjoint"));
        let folds: BTreeSet<usize> = file.pairs.iter().map(|p| p.fold).collect();
        assert_eq!(folds.len(), ASSIGNED_FOLDS);
        // No person appears in two folds.
        let mut fold_of: HashMap<String, usize> = HashMap::new();
        for p in &file.pairs {
            for path in [&p.a, &p.b] {
                let who = identity_of(path);
                assert_eq!(*fold_of.entry(who).or_insert(p.fold), p.fold, "{p:?}");
            }
        }
        // One tightly linked group: round-robin, and said so.
        let mut text = String::from("img_a\timg_b\tsame\n");
        for i in 0..12 {
            text += &format!("a_{i:04}.jpg\ta_{:04}.jpg\t1\n", i + 100);
            text += &format!("a_{i:04}.jpg\tb_{i:04}.jpg\t0\n");
        }
        std::fs::write(&tsv, text).unwrap();
        let file = read_pairs_file(&tsv).unwrap();
        assert!(file
            .folds_note
            .as_deref()
            .unwrap()
            .contains("NOT identity-disjoint"));
        for fold in 0..ASSIGNED_FOLDS {
            let in_fold: Vec<&PairSpec> = file.pairs.iter().filter(|p| p.fold == fold).collect();
            assert!(in_fold.iter().any(|p| p.same) && in_fold.iter().any(|p| !p.same));
        }
        // A file with folds keeps them and says nothing.
        std::fs::write(
            &tsv,
            "img_a\timg_b\tsame\tfold\na/1.jpg\ta/2.jpg\t1\t3\na/1.jpg\tb/1.jpg\t0\t4\n",
        )
        .unwrap();
        let file = read_pairs_file(&tsv).unwrap();
        assert_eq!(file.folds_note, None);
        assert_eq!(file.pairs[1].fold, 4);
    }

    #[test]
    fn bad_pairs_files_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let tsv = dir.path().join("pairs.tsv");
        let check = |text: &str, expected: &str| {
            std::fs::write(&tsv, text).unwrap();
            let err = read_pairs(&tsv).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        };
        let head = "img_a\timg_b\tsame\n";
        check(
            &format!("{head}a/1.jpg\ta/2.jpg\tyes\na/1.jpg\tb/1.jpg\t0\n"),
            "line 2: `same` is \"yes\"",
        );
        check(
            &format!("{head}a/1.jpg\ta/2.jpg\t1\na/1.jpg\tb/1.jpg\t0\na/2.jpg\ta/1.jpg\t1\n"),
            "line 4: the pair a/2.jpg / a/1.jpg is already listed on line 2",
        );
        check(
            &format!("{head}a/1.jpg\ta/1.jpg\t1\na/1.jpg\tb/1.jpg\t0\n"),
            "line 2: a/1.jpg is compared with itself",
        );
        check(
            &format!("{head}a/1.jpg\ta/2.jpg\t1\na/1.jpg\ta/3.jpg\t1\n"),
            "no different-person pair",
        );
        check(
            &format!("{head}a/1.jpg\tb/2.jpg\t0\n"),
            "no same-person pair",
        );
        check(
            &format!("{head}a/1.jpg\ta/2.jpg\n"),
            "line 2 has too few columns",
        );
        // Images that do not exist are named with their pair.
        std::fs::create_dir_all(dir.path().join("a")).unwrap();
        std::fs::write(dir.path().join("a/1.jpg"), b"x").unwrap();
        let pairs = vec![PairSpec {
            a: "a/1.jpg".into(),
            b: "a/9.jpg".into(),
            same: true,
            fold: 0,
        }];
        let err = check_pair_images(&tsv, dir.path(), &pairs)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("pair 1 (a/1.jpg / a/9.jpg): no image at"),
            "{err}"
        );
    }

    #[test]
    fn all_pairs_counts_every_pair_once() {
        let unit = |angle: f32| vec![angle.cos(), angle.sin()];
        let (a0, a1, b0) = (unit(0.0), unit(0.1), unit(1.0));
        let items: Vec<(&str, &[f32])> = vec![("a", &a0), ("a", &a1), ("b", &b0)];
        let all = AllPairs::measure(&items);
        assert_eq!(all.genuine_pairs(), 1);
        assert_eq!(all.impostor_pairs(), 2);
        assert_eq!(all.identities, 2);
        let genuine = euclidean(&a0, &a1);
        assert!(all.tar_at(genuine + 1e-3) == 1.0 && all.tar_at(genuine - 1e-3) == 0.0);
        let closest_impostor = euclidean(&a1, &b0);
        assert!((all.far_at(closest_impostor + 1e-3) - 0.5).abs() < 1e-9);
        let cdf = all.impostor_cdf("t");
        assert_eq!(cdf.pairs, 2);
        // FAR 0.5 holds from the closest impostor up to (not including) the other one.
        let other_impostor = euclidean(&a0, &b0);
        let at = cdf.distance_at_far(0.5).unwrap();
        assert!(
            at.distance >= closest_impostor && at.distance < other_impostor,
            "{at:?}"
        );
    }

    #[test]
    fn people_folders_are_read_as_identities() {
        let dir = tempfile::tempdir().unwrap();
        for (person, file) in [
            ("Ann", "1.jpg"),
            ("Ann", "x/2.PNG"),
            ("Bo", "1.jpg"),
            ("_meta", "m.jpg"),
        ] {
            let path = dir.path().join(person).join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"x").unwrap();
        }
        std::fs::write(dir.path().join("Bo/notes.txt"), b"x").unwrap();
        let entries = read_people_folder(dir.path()).unwrap();
        let got: Vec<(String, String)> = entries
            .iter()
            .map(|e| (e.path.display().to_string(), e.identity.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("Ann/1.jpg".to_string(), "Ann".to_string()),
                ("Ann/x/2.PNG".to_string(), "Ann".to_string()),
                ("Bo/1.jpg".to_string(), "Bo".to_string()),
            ]
        );
        std::fs::remove_dir_all(dir.path().join("Bo")).unwrap();
        let err = read_people_folder(dir.path()).unwrap_err().to_string();
        assert!(err.contains("at least two people"), "{err}");
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
