use std::path::Path;

use facegate_align::AlignMode;
use facegate_decide::{ImpostorCdf, Threshold, ThresholdSource};
use facegate_detect::{Detector, Face, Mtcnn, MtcnnConfig};
use facegate_embed::{Embedder, FaceNet};
use facegate_image::{LoadedImage, RgbImage};
use facegate_models::{pins, FetchObserver, ModelStore};
use facegate_nn::Runtime;
use serde::Serialize;

use crate::config::{CalibratedThreshold, Config};
use crate::{Error, Home};

/// How a photo's faces are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FacePolicy {
    /// Exactly one face, else [`Error::SeveralFaces`] (enrollment).
    Single,
    /// The largest visible face (verification; enrollment with `--largest`).
    Largest,
    /// The largest face, penalised by its distance from the image centre (as davidsandberg/
    /// facenet aligns LFW): for benchmark images centred on the labelled person.
    Central,
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
    calibrated: Option<CalibratedThreshold>,
}

/// How likely a distance this small is between two different people.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FarEstimate {
    /// Estimated false accept rate at this distance.
    pub far: f64,
    /// True when no calibration impostor was this close: the FAR is below `far` (1 / pairs).
    pub below_measurable: bool,
    /// The calibration data it comes from.
    pub source: String,
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
        let mut engine = Engine::from_parts(Box::new(detector), Box::new(embedder), options);
        engine.calibrated = Config::load(home.data_dir())?
            .thresholds
            .remove(engine.model_id());
        Ok(engine)
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
            calibrated: None,
        }
    }

    /// Identifies everything that changes embeddings: model, detector and alignment.
    pub fn pipeline_id(&self) -> String {
        format!(
            "{}+{}+{}",
            self.model_id(),
            self.detector_id(),
            self.options.align.id()
        )
    }

    /// The calibration stored for this model, if any.
    pub fn calibration(&self) -> Option<&CalibratedThreshold> {
        self.calibrated.as_ref()
    }

    /// The estimated false accept rate of accepting at `distance` (Euclidean), from this
    /// model's calibration data, or the impostor distances shipped with its default.
    pub fn estimated_far(&self, distance: f32) -> Option<FarEstimate> {
        let cdf: ImpostorCdf = match &self.calibrated {
            Some(c) => c.impostor_cdf.clone(),
            None => facegate_decide::default_impostor_cdf(self.model_id())?,
        };
        Some(match cdf.far_at(distance) {
            Some(far) => FarEstimate {
                far,
                below_measurable: false,
                source: cdf.source.clone(),
            },
            None => FarEstimate {
                far: cdf.floor(),
                below_measurable: true,
                source: cdf.source.clone(),
            },
        })
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
        if let Some(c) = &self.calibrated {
            threshold = Threshold {
                metric: c.metric,
                value: c.value,
                source: ThresholdSource::Calibrated,
                note: format!(
                    "calibrated for FAR {:.0e} on {} ({} impostor pairs; measured FAR {:.2e}, TAR {:.4})",
                    c.target_far, c.source, c.impostor_pairs, c.measured_far, c.measured_tar
                ),
            };
        }
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
        let size = self.embedder.input_size();
        match self.embedder.alignment_template() {
            Some(template) => {
                facegate_align::align_to(image, face, self.options.align, &template, size)
            }
            None => facegate_align::align(image, face, self.options.align, size),
        }
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
            FacePolicy::Single | FacePolicy::Largest => {
                let (w, h) = image.rgb.dimensions();
                faces
                    .into_iter()
                    .max_by(|a, b| a.visible_area(w, h).total_cmp(&b.visible_area(w, h)))
                    .into_iter()
                    .collect()
            }
            FacePolicy::Central => {
                let (w, h) = image.rgb.dimensions();
                let score = |f: &Face| {
                    let [cx, cy] = f.centre();
                    let (dx, dy) = (cx - w as f32 / 2.0, cy - h as f32 / 2.0);
                    f.visible_area(w, h) - 2.0 * (dx * dx + dy * dy)
                };
                faces
                    .into_iter()
                    .max_by(|a, b| score(a).total_cmp(&score(b)))
                    .into_iter()
                    .collect()
            }
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
