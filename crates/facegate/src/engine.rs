use std::path::Path;

use facegate_align::AlignMode;
use facegate_decide::{Threshold, ThresholdSource};
use facegate_detect::{Detector, Face, Mtcnn, MtcnnConfig};
use facegate_embed::{Embedder, FaceNet};
use facegate_image::{LoadedImage, RgbImage};
use facegate_models::{pins, FetchObserver, ModelStore};
use facegate_nn::Runtime;
use serde::Serialize;

use crate::{Error, Home};

/// How a photo's faces are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FacePolicy {
    /// Exactly one face, else [`Error::SeveralFaces`] (enrollment).
    Single,
    /// The largest face (verification; enrollment with `--largest`).
    Largest,
    /// Every face.
    All,
}

#[derive(Clone, Debug)]
pub struct EngineOptions {
    pub align: AlignMode,
    pub max_pixels: u64,
    /// Faces narrower than this are refused (MTCNN searches down to 20 px regardless).
    pub min_face_size: u32,
    /// ONNX Runtime threads per network (0 = its default).
    pub threads: usize,
    /// Overrides the model's default threshold (Euclidean on unit embeddings).
    pub threshold: Option<f32>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            align: AlignMode::Similarity,
            max_pixels: facegate_image::DEFAULT_MAX_PIXELS,
            min_face_size: 20,
            threads: 0,
            threshold: None,
        }
    }
}

/// One face of a photo with its embedding.
#[derive(Clone, Debug, Serialize)]
pub struct EmbeddedFace {
    pub face: Face,
    #[serde(skip)]
    pub embedding: Vec<f32>,
}

/// The loaded pipeline: detector, aligner settings, embedder.
pub struct Engine {
    detector: Box<dyn Detector>,
    embedder: Box<dyn Embedder>,
    options: EngineOptions,
}

impl Engine {
    /// Loads the models from `home`, fetching and building them on first use.
    pub fn load(
        home: &Home,
        options: EngineOptions,
        observer: &dyn FetchObserver,
    ) -> Result<Engine, Error> {
        let store = ModelStore::new(home.models_dir());
        let library = store.file(&pins::ONNXRUNTIME_LIBRARY, observer)?;
        let runtime = Runtime::load(&library)?;
        let config = MtcnnConfig {
            threads: options.threads,
            ..MtcnnConfig::default()
        };
        let detector = Mtcnn::load(&store, &runtime, config, observer)?;
        let embedder = FaceNet::load(&store, &runtime, options.threads, observer)?;
        Ok(Engine::from_parts(
            Box::new(detector),
            Box::new(embedder),
            options,
        ))
    }

    /// An engine from any detector and embedder.
    pub fn from_parts(
        detector: Box<dyn Detector>,
        embedder: Box<dyn Embedder>,
        options: EngineOptions,
    ) -> Engine {
        Engine {
            detector,
            embedder,
            options,
        }
    }

    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    pub fn model_id(&self) -> &str {
        self.embedder.model_id()
    }

    pub fn detector_id(&self) -> &str {
        self.detector.id()
    }

    /// The decision threshold in force and where it came from.
    pub fn threshold(&self) -> Threshold {
        let mut threshold =
            facegate_decide::default_threshold(self.model_id()).unwrap_or(Threshold {
                metric: facegate_decide::Metric::Euclidean,
                value: 1.0,
                source: ThresholdSource::Default,
                note: "no default is known for this model".to_string(),
            });
        if let Some(value) = self.options.threshold {
            threshold.value = value;
            threshold.source = ThresholdSource::Flag;
            threshold.note = "given with --threshold".to_string();
        }
        threshold
    }

    pub fn load_image(&self, path: &Path) -> Result<LoadedImage, Error> {
        Ok(facegate_image::load(path, self.options.max_pixels)?)
    }

    pub fn decode_image(&self, bytes: &[u8], name: &str) -> Result<LoadedImage, Error> {
        Ok(facegate_image::decode(
            bytes,
            name,
            self.options.max_pixels,
        )?)
    }

    /// Every face, highest score first.
    pub fn detect(&self, image: &RgbImage) -> Result<Vec<Face>, Error> {
        Ok(self.detector.detect(image)?)
    }

    /// The aligned crop the embedder sees.
    pub fn align(&self, image: &RgbImage, face: &Face) -> RgbImage {
        facegate_align::align(image, face, self.options.align, self.embedder.input_size())
    }

    /// Detects, selects faces by `policy`, aligns and embeds them. Also returns how many faces
    /// the detector found in total.
    pub fn embed_faces(
        &self,
        image: &LoadedImage,
        policy: FacePolicy,
    ) -> Result<(Vec<EmbeddedFace>, usize), Error> {
        let mut faces = self.detect(&image.rgb)?;
        let found = faces.len();
        if faces.is_empty() {
            return Err(Error::NoFace {
                source_name: image.source_name.clone(),
                min_face_size: self.options.min_face_size.max(20),
            });
        }
        let min = self.options.min_face_size as f32;
        let widest = faces
            .iter()
            .map(|f| f.width().min(f.height()))
            .fold(0.0, f32::max);
        faces.retain(|f| f.width().min(f.height()) >= min);
        if faces.is_empty() {
            return Err(Error::FaceTooSmall {
                source_name: image.source_name.clone(),
                size_px: widest.round() as u32,
                min_face_size: self.options.min_face_size,
            });
        }
        let selected: Vec<Face> = match policy {
            FacePolicy::All => faces,
            FacePolicy::Single if faces.len() > 1 => {
                return Err(Error::SeveralFaces {
                    source_name: image.source_name.clone(),
                    count: faces.len(),
                })
            }
            FacePolicy::Single | FacePolicy::Largest => faces
                .into_iter()
                .max_by(|a, b| a.area().total_cmp(&b.area()))
                .into_iter()
                .collect(),
        };
        let crops: Vec<RgbImage> = selected.iter().map(|f| self.align(&image.rgb, f)).collect();
        let embeddings = self.embedder.embed(&crops)?;
        let embedded = selected
            .into_iter()
            .zip(embeddings)
            .map(|(face, embedding)| EmbeddedFace { face, embedding })
            .collect();
        Ok((embedded, found))
    }

    /// Embeds an already aligned face crop of the embedder's input size.
    pub fn embed_aligned(&self, crops: &[RgbImage]) -> Result<Vec<Vec<f32>>, Error> {
        Ok(self.embedder.embed(crops)?)
    }
}
