//! MTCNN (Zhang et al. 2016): a cascade of three small networks over an image pyramid.
//!
//! The cascade follows facenet-pytorch's `detect_face` step for step (same pyramid, same
//! "area" resampling, same box arithmetic and NMS), so the faces it finds match that reference;
//! the golden tests check it.

mod layers;
pub mod onet;
pub mod pnet;
pub mod rnet;

use std::path::Path;

use facegate_image::RgbImage;
use facegate_models::pins::{self, PinnedFile};
use facegate_models::torch_pt::StateDict;
use facegate_models::{FetchObserver, ModelError, ModelStore};
use facegate_nn::{InputShapes, Network, Runtime, TensorOutput};
use rayon::prelude::*;

use crate::nms::{nms, Overlap};
use crate::resample::Planar;
use crate::{DetectError, Detector, Face};

/// Bump when the emitted graphs change, so cached ONNX files are rebuilt.
const GRAPH_REVISION: u32 = 3;

/// The largest image the cascade runs on. Bigger photos are shrunk to this first and the faces
/// scaled back: the pyramid's memory and time grow with the pixels (docs/PERFORMANCE.md,
/// "Design measurements"), and in such photos faces smaller than the minimum times the shrink
/// factor are too small to verify anyway.
pub const MAX_DETECTION_PIXELS: u64 = 4_000_000;

/// The cascade's settings; the defaults are MTCNN's published ones.
#[derive(Clone, Debug)]
pub struct MtcnnConfig {
    /// Smallest face side searched for, in pixels.
    pub min_face_size: u32,
    /// Ratio between pyramid levels.
    pub scale_factor: f64,
    /// Score thresholds of P-Net, R-Net and O-Net.
    pub thresholds: [f32; 3],
    /// ONNX Runtime intra-op threads per network replica (0 = one).
    pub threads: usize,
    /// Network replicas: pyramid levels and candidate batches run this many at a time
    /// (0 = one per core).
    pub parallel: usize,
    /// Run each large pyramid level as two strips side by side (same candidates, sooner).
    pub split_large_levels: bool,
}

impl Default for MtcnnConfig {
    fn default() -> Self {
        MtcnnConfig {
            min_face_size: 20,
            scale_factor: 0.709,
            thresholds: [0.6, 0.7, 0.7],
            threads: 0,
            parallel: 0,
            split_large_levels: true,
        }
    }
}

pub struct Mtcnn {
    pnet: Network,
    rnet: Network,
    onet: Network,
    config: MtcnnConfig,
}

/// A box moving through the cascade.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    bbox: [f32; 4],
    score: f32,
    regression: [f32; 4],
}

impl Mtcnn {
    /// Loads (building and caching on first use) the three networks.
    pub fn load(
        store: &ModelStore,
        runtime: &Runtime,
        config: MtcnnConfig,
        observer: &dyn FetchObserver,
    ) -> Result<Mtcnn, DetectError> {
        // One single-threaded replica per core: these networks are too small for ONNX Runtime
        // to split one run well (docs/PERFORMANCE.md, "Design measurements").
        let replicas = match config.parallel {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let threads = config.threads.max(1);
        let load =
            |net: &str, file: &PinnedFile, build: fn(&StateDict) -> Result<Vec<u8>, ModelError>| {
                let artifact = format!(
                    "mtcnn-{net}-{}-{}-r{GRAPH_REVISION}.onnx",
                    file.package.name, file.package.version
                );
                let path = store.built(&artifact, &[file], observer, |inputs| {
                    build(&StateDict::open(&inputs[0])?)
                })?;
                let onnx = read(&path)?;
                Ok::<_, DetectError>(runtime.network_pool(
                    &format!("mtcnn {net}"),
                    &onnx,
                    threads,
                    replicas,
                    InputShapes::Varying,
                )?)
            };
        Ok(Mtcnn {
            pnet: load("pnet", &pins::MTCNN_PNET, pnet::build)?,
            rnet: load("rnet", &pins::MTCNN_RNET, rnet::build)?,
            onet: load("onet", &pins::MTCNN_ONET, onet::build)?,
            config,
        })
    }

    pub fn config(&self) -> &MtcnnConfig {
        &self.config
    }

    /// The raw networks, for parity tests against the reference implementation.
    pub fn networks(&self) -> [&Network; 3] {
        [&self.pnet, &self.rnet, &self.onet]
    }

    /// The first stage's candidates (box after P-Net's regression, score), before R-Net: for
    /// tests and diagnostics of the pyramid.
    pub fn proposals_of(&self, image: &RgbImage) -> Result<Vec<([f32; 4], f32)>, DetectError> {
        let planar = Planar::from_rgb(image);
        let proposals = self.proposals(&planar, self.config.min_face_size)?;
        Ok(proposals.into_iter().map(|c| (c.bbox, c.score)).collect())
    }

    /// Pyramid scales for an image of this size.
    fn scales(&self, height: usize, width: usize, min_face_size: u32) -> Vec<f64> {
        let m = 12.0 / f64::from(min_face_size.max(1));
        let mut min_side = height.min(width) as f64 * m;
        let mut scale = m;
        let mut scales = Vec::new();
        while min_side >= 12.0 {
            scales.push(scale);
            scale *= self.config.scale_factor;
            min_side *= self.config.scale_factor;
        }
        scales
    }

    /// P-Net over one pyramid level: candidate boxes after the level's own NMS.
    fn level(&self, image: &Planar, scale: f64) -> Result<Vec<Candidate>, DetectError> {
        let h = (image.height as f64 * scale + 1.0) as usize;
        let w = (image.width as f64 * scale + 1.0) as usize;
        let level = image.resize_with(h, w, scaled);
        let output_rows = pnet_output_size(h);
        let found = if self.config.split_large_levels && h >= SPLIT_LEVEL_ROWS && output_rows >= 2 {
            // A large level is the longest task of the pyramid: its two halves go to two cores.
            let middle = output_rows / 2;
            let (top, bottom) = rayon::join(
                || self.level_rows(level.rows(0..pnet_input_rows(middle)), 0, scale),
                || self.level_rows(level.rows(2 * middle..h), 2 * middle, scale),
            );
            let mut found = top?;
            found.extend(bottom?);
            found
        } else {
            self.level_rows(level, 0, scale)?
        };
        Ok(suppress(found, 0.5, Overlap::Union))
    }

    /// P-Net over `strip`, the rows of a level from `first_row` (even) on: the candidates of
    /// the output rows the strip fully contains, exactly as the whole level would give them
    /// (P-Net sees a 12-row window every 2 rows, and pools pairs of rows from the strip's top).
    fn level_rows(
        &self,
        strip: Planar,
        first_row: usize,
        scale: f64,
    ) -> Result<Vec<Candidate>, DetectError> {
        let (h, w) = (strip.height, strip.width);
        let input = strip.data;
        let outputs = self.pnet.run(&[1, 3, h, w], input)?;
        let (regression, logits) = (&outputs[0], &outputs[1]);
        let (oh, ow) = (logits.shape[2], logits.shape[3]);
        let plane = oh * ow;
        let probability = pnet::face_probability(&logits.data, plane);
        let first_output_row = first_row / 2;
        let mut found = Vec::new();
        for y in 0..oh {
            for x in 0..ow {
                let score = probability[y * ow + x];
                if score < self.config.thresholds[0] {
                    continue;
                }
                // In float32, as the reference computes it: `63 / 0.6` must floor to 104.
                let scale32 = scale as f32;
                let cell = |offset: usize, v: usize| ((2 * v + offset) as f32 / scale32).floor();
                let row = first_output_row + y;
                found.push(Candidate {
                    bbox: [cell(1, x), cell(1, row), cell(12, x), cell(12, row)],
                    score,
                    regression: std::array::from_fn(|c| regression.data[c * plane + y * ow + x]),
                });
            }
        }
        Ok(found)
    }

    fn proposals(&self, image: &Planar, min_face_size: u32) -> Result<Vec<Candidate>, DetectError> {
        let scales = self.scales(image.height, image.width, min_face_size);
        Ok(proposals_of_levels(&self.levels(image, &scales)?))
    }

    /// P-Net over the levels at `scales`, side by side (largest first, so the big one starts
    /// early): each level's candidates after its own NMS, in the order of `scales`.
    fn levels(&self, image: &Planar, scales: &[f64]) -> Result<Vec<Vec<Candidate>>, DetectError> {
        scales
            .par_iter()
            .with_max_len(1)
            .map(|&scale| self.level(image, scale))
            .collect()
    }

    /// R-Net and O-Net on the candidates of these levels (given in pyramid order).
    fn cascade(&self, image: &Planar, levels: &[Vec<Candidate>]) -> Result<Vec<Face>, DetectError> {
        let refined = self.refine(image, proposals_of_levels(levels))?;
        self.finish(image, refined)
    }

    /// The whole cascade down to `min_face_size`.
    fn detect_planar(&self, image: &Planar, min_face_size: u32) -> Result<Vec<Face>, DetectError> {
        let scales = self.scales(image.height, image.width, min_face_size);
        self.cascade(image, &self.levels(image, &scales)?)
    }

    /// The cascade for a caller that keeps only the largest face. A first pass runs the levels
    /// that find faces of at least [`FIRST_PASS_FRACTION`] of the shorter side (a small part
    /// of the pyramid's cost: the finest levels are the largest). A finer level is then run
    /// only if the largest face found so far is less than [`LARGEST_MARGIN`] times the size
    /// that level looks for: the cascade runs again on every level run so far, and this
    /// repeats until the largest face is large enough or every level has run (and then the
    /// faces are exactly [`Detector::detect_down_to`]'s).
    pub fn detect_largest_first_traced(
        &self,
        image: &RgbImage,
        min_face_size: u32,
    ) -> Result<(Vec<Face>, Search), DetectError> {
        let min_face_size = min_face_size.max(self.config.min_face_size);
        on_detection_image(image, |image| {
            rayon::scope(|_| {
                let planar = Planar::from_rgb(image);
                let scales = self.scales(planar.height, planar.width, min_face_size);
                let first_pass_face = planar.height.min(planar.width) as f64 * FIRST_PASS_FRACTION;
                // Levels finer than `first_run` (scales are finest first) have not run yet.
                let mut first_run = scales
                    .iter()
                    .take_while(|&&scale| level_face_size(scale) < first_pass_face)
                    .count();
                let mut levels = self.levels(&planar, &scales[first_run..])?;
                let (width, height) = (planar.width as u32, planar.height as u32);
                loop {
                    let faces = self.cascade(&planar, &levels)?;
                    if first_run == 0 {
                        return Ok((faces, Search::WholePyramid));
                    }
                    // A face's size here is its shorter side, or less when the border cuts it:
                    // callers choose by visible area, and a skipped face must not win there.
                    let largest = faces
                        .iter()
                        .filter(|f| f.width().min(f.height()) >= min_face_size as f32)
                        .map(|f| {
                            f.width()
                                .min(f.height())
                                .min(f.visible_area(width, height).sqrt())
                        })
                        .fold(0.0, f32::max);
                    let needed = scales[..first_run]
                        .iter()
                        .filter(|&&scale| LARGEST_MARGIN * level_face_size(scale) > largest as f64)
                        .count();
                    if needed == 0 {
                        return Ok((faces, Search::StoppedEarly));
                    }
                    // The levels just finer than those run, in pyramid order before them.
                    let start = first_run - needed;
                    let mut finer = self.levels(&planar, &scales[start..first_run])?;
                    finer.extend(levels);
                    levels = finer;
                    first_run = start;
                }
            })
        })
    }

    fn refine(
        &self,
        image: &Planar,
        candidates: Vec<Candidate>,
    ) -> Result<Vec<Candidate>, DetectError> {
        let (candidates, outputs) = crop_and_run(&self.rnet, image, candidates, 24)?;
        if candidates.is_empty() {
            return Ok(candidates);
        }
        let (regression, probability) = (&outputs[0], &outputs[1]);
        let passed: Vec<Candidate> = candidates
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let score = probability.data[i * 2 + 1];
                (score > self.config.thresholds[1]).then(|| Candidate {
                    bbox: c.bbox,
                    score,
                    regression: std::array::from_fn(|k| regression.data[i * 4 + k]),
                })
            })
            .collect();
        let mut kept = suppress(passed, 0.7, Overlap::Union);
        for c in &mut kept {
            c.bbox = square(apply_regression(c.bbox, c.regression));
        }
        Ok(kept)
    }

    fn finish(&self, image: &Planar, candidates: Vec<Candidate>) -> Result<Vec<Face>, DetectError> {
        let (candidates, outputs) = crop_and_run(&self.onet, image, candidates, 48)?;
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let (regression, points, probability) = (&outputs[0], &outputs[1], &outputs[2]);
        let mut faces = Vec::new();
        for (i, c) in candidates.iter().enumerate() {
            let score = probability.data[i * 2 + 1];
            if score <= self.config.thresholds[2] {
                continue;
            }
            let (w, h) = (c.bbox[2] - c.bbox[0] + 1.0, c.bbox[3] - c.bbox[1] + 1.0);
            let p = &points.data[i * 10..i * 10 + 10];
            let landmarks = std::array::from_fn(|k| {
                [w * p[k] + c.bbox[0] - 1.0, h * p[5 + k] + c.bbox[1] - 1.0]
            });
            let reg = std::array::from_fn(|k| regression.data[i * 4 + k]);
            faces.push(Face {
                bbox: apply_regression(c.bbox, reg),
                score,
                landmarks,
            });
        }
        let boxes: Vec<[f32; 4]> = faces.iter().map(|f| f.bbox).collect();
        let scores: Vec<f32> = faces.iter().map(|f| f.score).collect();
        let keep = nms(&boxes, &scores, 0.7, Overlap::Min);
        Ok(keep.into_iter().map(|i| faces[i].clone()).collect())
    }
}

impl Detector for Mtcnn {
    fn detect(&self, image: &RgbImage) -> Result<Vec<Face>, DetectError> {
        self.detect_down_to(image, self.config.min_face_size)
    }

    fn detect_down_to(
        &self,
        image: &RgbImage,
        min_face_size: u32,
    ) -> Result<Vec<Face>, DetectError> {
        let min_face_size = min_face_size.max(self.config.min_face_size);
        let (faces, ()) = on_detection_image(image, |image| {
            // The whole cascade is one job on the rayon pool: each stage's parallel part then
            // starts on a worker that is already running, where from another thread every
            // stage would wake a worker and put the caller to sleep until the stage ends.
            let faces =
                rayon::scope(|_| self.detect_planar(&Planar::from_rgb(image), min_face_size))?;
            Ok((faces, ()))
        })?;
        Ok(faces)
    }

    fn detect_largest_first(
        &self,
        image: &RgbImage,
        min_face_size: u32,
    ) -> Result<Vec<Face>, DetectError> {
        Ok(self.detect_largest_first_traced(image, min_face_size)?.0)
    }

    fn min_face_size(&self) -> u32 {
        self.config.min_face_size
    }

    fn id(&self) -> &str {
        "mtcnn-facenet-pytorch-2.6.0"
    }
}

fn read(path: &Path) -> Result<Vec<u8>, ModelError> {
    std::fs::read(path).map_err(|source| ModelError::Io {
        action: "could not read",
        path: path.to_path_buf(),
        source,
    })
}

/// How [`Mtcnn::detect_largest_first_traced`] searched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Search {
    /// A face large enough was found before the finest levels, which were not run.
    StoppedEarly,
    /// Every level was run: the faces are exactly [`Detector::detect_down_to`]'s.
    WholePyramid,
}

/// The largest-first search's first pass looks for faces at least this part of the image's
/// shorter side: a camera frame's or portrait's face is larger, and the pass costs a few
/// percent of the whole pyramid (its largest level is at most 96 px on the shorter side).
const FIRST_PASS_FRACTION: f64 = 1.0 / 8.0;

/// How much larger than a level's faces the largest face found must be for that level to be
/// skipped. The cascade's box regressions can grow a box well past its level's window: on
/// 3,000 LFW and 93 other photos a face's shorter side reached at most 2.6 times its window
/// (99.9% within 2.2), so a skipped level's face cannot come out larger. A margin of 2 was
/// not enough: a face from a 28 px level came out 49 px wide and replaced, through NMS, the
/// coarser candidate of the same face (a box 1-2 px off).
const LARGEST_MARGIN: f64 = 3.0;

/// The face size a pyramid level finds: P-Net's 12-pixel window at that scale.
fn level_face_size(scale: f64) -> f64 {
    12.0 / scale
}

/// Runs `detect` on the image, or on a shrunk copy of a huge one with the faces scaled back:
/// the pyramid's memory grows with the pixels (see [`MAX_DETECTION_PIXELS`]).
fn on_detection_image<T>(
    image: &RgbImage,
    detect: impl FnOnce(&RgbImage) -> Result<(Vec<Face>, T), DetectError>,
) -> Result<(Vec<Face>, T), DetectError> {
    let pixels = u64::from(image.width()) * u64::from(image.height());
    if pixels <= MAX_DETECTION_PIXELS {
        return detect(image);
    }
    let shrink = (MAX_DETECTION_PIXELS as f64 / pixels as f64).sqrt();
    let width = ((f64::from(image.width()) * shrink).floor() as u32).max(1);
    let height = ((f64::from(image.height()) * shrink).floor() as u32).max(1);
    let small = facegate_image::resize(image, width, height);
    let (sx, sy) = (
        image.width() as f32 / width as f32,
        image.height() as f32 / height as f32,
    );
    let (faces, trace) = detect(&small)?;
    Ok((faces.into_iter().map(|f| f.scaled(sx, sy)).collect(), trace))
}

/// The candidates of all levels (in pyramid order) after the cross-level NMS, moved by P-Net's
/// regression and squared: R-Net's input.
fn proposals_of_levels(levels: &[Vec<Candidate>]) -> Vec<Candidate> {
    let all: Vec<Candidate> = levels.iter().flatten().copied().collect();
    let mut kept = suppress(all, 0.7, Overlap::Union);
    for c in &mut kept {
        // P-Net's regression is relative to the box size without MTCNN's +1.
        let (w, h) = (c.bbox[2] - c.bbox[0], c.bbox[3] - c.bbox[1]);
        c.bbox = [
            c.bbox[0] + c.regression[0] * w,
            c.bbox[1] + c.regression[1] * h,
            c.bbox[2] + c.regression[2] * w,
            c.bbox[3] + c.regression[3] * h,
        ];
        c.bbox = square(c.bbox);
    }
    kept
}

/// Cuts each candidate out of the image (clipped to it, as facenet-pytorch does), resampled to
/// `size x size` and normalised, and runs the network on the crops. The candidates are split
/// into one contiguous part per network replica; each part is cut and run on its own core, and
/// the outputs are joined back in candidate order. Candidates entirely outside the image are
/// dropped.
fn crop_and_run(
    network: &Network,
    image: &Planar,
    candidates: Vec<Candidate>,
    size: usize,
) -> Result<(Vec<Candidate>, Vec<TensorOutput>), DetectError> {
    let inside: Vec<(Candidate, [usize; 4])> = candidates
        .into_iter()
        .filter_map(|c| Some((c, window(image, &c)?)))
        .collect();
    if inside.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let n = inside.len();
    let chunk = n.div_ceil(network.replicas().min(n).max(1));
    let parts: Vec<Vec<TensorOutput>> = inside
        .par_chunks(chunk)
        .map(|part| {
            let crop = 3 * size * size;
            let mut batch = vec![0.0; part.len() * crop];
            for ((_, window), out) in part.iter().zip(batch.chunks_exact_mut(crop)) {
                image.crop_resize_into(*window, size, size, out, scaled);
            }
            network.run(&[part.len(), 3, size, size], batch)
        })
        .collect::<Result<_, _>>()?;
    let mut joined: Vec<TensorOutput> = parts[0]
        .iter()
        .map(|t| TensorOutput {
            shape: t.shape.clone(),
            data: Vec::with_capacity(t.data.len() / parts[0][0].shape[0] * n),
        })
        .collect();
    for part in &parts {
        for (out, piece) in joined.iter_mut().zip(part) {
            out.data.extend_from_slice(&piece.data);
        }
    }
    for out in &mut joined {
        out.shape[0] = n;
    }
    Ok((inside.into_iter().map(|(c, _)| c).collect(), joined))
}

/// The candidate's pixel window `[y0, y1, x0, x1)` clipped to the image, with facenet-pytorch's
/// integer arithmetic; `None` when nothing of it is inside.
fn window(image: &Planar, c: &Candidate) -> Option<[usize; 4]> {
    let (w, h) = (image.width as i64, image.height as i64);
    let x = (c.bbox[0].trunc() as i64).max(1);
    let y = (c.bbox[1].trunc() as i64).max(1);
    let ex = (c.bbox[2].trunc() as i64).min(w);
    let ey = (c.bbox[3].trunc() as i64).min(h);
    (ey > y - 1 && ex > x - 1)
        .then(|| [(y - 1) as usize, ey as usize, (x - 1) as usize, ex as usize])
}

/// Levels at least this tall are run as two strips side by side.
const SPLIT_LEVEL_ROWS: usize = 96;

/// P-Net's output rows for `input_rows` rows: 3x3 conv, 2x2 pool (ceil), two 3x3 convs.
fn pnet_output_size(input_rows: usize) -> usize {
    (input_rows.saturating_sub(2)).div_ceil(2).saturating_sub(4)
}

/// The input rows P-Net needs for `output_rows` rows: each output row sees 12 input rows, and
/// the next starts 2 rows lower.
fn pnet_input_rows(output_rows: usize) -> usize {
    2 * output_rows + 10
}

/// MTCNN's input scaling: pixels to roughly [-1, 1].
fn scaled(pixel: f32) -> f32 {
    (pixel - 127.5) * 0.0078125
}

fn suppress(candidates: Vec<Candidate>, threshold: f32, overlap: Overlap) -> Vec<Candidate> {
    let boxes: Vec<[f32; 4]> = candidates.iter().map(|c| c.bbox).collect();
    let scores: Vec<f32> = candidates.iter().map(|c| c.score).collect();
    nms(&boxes, &scores, threshold, overlap)
        .into_iter()
        .map(|i| candidates[i])
        .collect()
}

/// Box regression with MTCNN's `+1` pixel convention.
fn apply_regression(b: [f32; 4], r: [f32; 4]) -> [f32; 4] {
    let (w, h) = (b[2] - b[0] + 1.0, b[3] - b[1] + 1.0);
    [
        b[0] + r[0] * w,
        b[1] + r[1] * h,
        b[2] + r[2] * w,
        b[3] + r[3] * h,
    ]
}

/// The square with the box's centre and its longer side.
fn square(b: [f32; 4]) -> [f32; 4] {
    let (w, h) = (b[2] - b[0], b[3] - b[1]);
    let side = w.max(h);
    let x1 = b[0] + w * 0.5 - side * 0.5;
    let y1 = b[1] + h * 0.5 - side * 0.5;
    [x1, y1, x1 + side, y1 + side]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pnet_rows_arithmetic() {
        // 12 input rows give one output; each 2 more rows give one more.
        assert_eq!(pnet_output_size(12), 1);
        assert_eq!(pnet_output_size(13), 2);
        assert_eq!(pnet_output_size(151), 71);
        assert_eq!(pnet_input_rows(1), 12);
        for out in 1..100 {
            assert_eq!(pnet_output_size(pnet_input_rows(out)), out);
        }
    }

    #[test]
    fn square_keeps_centre_and_longer_side() {
        assert_eq!(square([0.0, 0.0, 10.0, 20.0]), [-5.0, 0.0, 15.0, 20.0]);
    }

    #[test]
    fn regression_uses_plus_one_sizes() {
        assert_eq!(
            apply_regression([0.0, 0.0, 9.0, 9.0], [0.1, 0.0, -0.1, 0.5]),
            [1.0, 0.0, 8.0, 14.0]
        );
    }
}
