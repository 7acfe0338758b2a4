use std::path::Path;

use facegate_align::AlignMode;
use facegate_decide::{ImpostorCdf, SecurityLevel, Threshold, ThresholdSource};
use facegate_detect::{Detector, Face, Mtcnn, MtcnnConfig};
use facegate_embed::{DlibResnet, Embedder, FaceNet, MobileFaceNet};
use facegate_image::{LoadedImage, RgbImage};
use facegate_models::{pins, FetchObserver, ModelStore};
use facegate_nn::{Runtime, Threads};
use serde::Serialize;

use crate::config::{CalibratedThreshold, Config};
use crate::context::{touches_border, Canvas, PAD_SHARES};
use crate::quality::{QualityLevel, QualityReport};
use crate::{Error, Home};
use facegate_liveness::eyes::{EyeLandmarks, EyeOpenness};
use facegate_liveness::{LivenessModels, LivenessScore};

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

/// One embedding network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    /// FaceNet (Keras, Inception-ResNet-v1, 128-d).
    Facenet,
    /// dlib's ResNet (128-d).
    Dlib,
    /// MobileFaceNet (192-d, from a TF.js graph, repaired).
    Mobilefacenet,
}

impl ModelKind {
    pub const ALL: [ModelKind; 3] = [
        ModelKind::Facenet,
        ModelKind::Dlib,
        ModelKind::Mobilefacenet,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            ModelKind::Facenet => "facenet",
            ModelKind::Dlib => "dlib",
            ModelKind::Mobilefacenet => "mobilefacenet",
        }
    }

    /// The id stored with this model's templates.
    pub fn model_id(&self) -> &'static str {
        match self {
            ModelKind::Facenet => facegate_embed::facenet::MODEL_ID,
            ModelKind::Dlib => facegate_embed::dlib::MODEL_ID,
            ModelKind::Mobilefacenet => facegate_embed::mobilefacenet::MODEL_ID,
        }
    }
}

/// Which embedding model(s) to run: one, or several fused (see [`Engine::model_id`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelChoice(Vec<ModelKind>);

/// The default: MobileFaceNet and dlib's ResNet, fused. Measured on LFW (docs/ACCURACY.md) it
/// is the most accurate configuration that costs no more per face than FaceNet alone (the
/// previous default): 99.40% vs 99.15% verification, rank-1 98.2% vs 97.1%, open-set DIR
/// 91.7% vs 77.7%.
impl Default for ModelChoice {
    fn default() -> Self {
        ModelChoice(vec![ModelKind::Mobilefacenet, ModelKind::Dlib])
    }
}

impl ModelChoice {
    pub fn single(kind: ModelKind) -> ModelChoice {
        ModelChoice(vec![kind])
    }

    /// Every model, fused.
    pub fn all() -> ModelChoice {
        ModelChoice(ModelKind::ALL.to_vec())
    }

    pub fn kinds(&self) -> &[ModelKind] {
        &self.0
    }

    /// The choice that produces templates with this model id (see [`Engine::model_id`]), so
    /// a gallery keeps working with the model it was made with.
    pub fn from_model_id(id: &str) -> Option<ModelChoice> {
        let by_id = |id: &str| ModelKind::ALL.into_iter().find(|k| k.model_id() == id);
        if let Some(kind) = by_id(id) {
            return Some(ModelChoice::single(kind));
        }
        let inner = id.strip_prefix("fusion(")?.strip_suffix(')')?;
        let kinds = inner.split('+').map(by_id).collect::<Option<Vec<_>>>()?;
        (kinds.len() > 1).then_some(ModelChoice(kinds))
    }

    /// Parses `facenet`, `dlib`, `mobilefacenet`, `fusion` (FaceNet + dlib, the first fusion
    /// facegate shipped) or several names joined by `+` (e.g. `mobilefacenet+dlib`).
    pub fn parse(text: &str) -> Result<ModelChoice, String> {
        if text == "fusion" {
            return Ok(ModelChoice(vec![ModelKind::Facenet, ModelKind::Dlib]));
        }
        let mut kinds = Vec::new();
        for part in text.split('+') {
            let kind = ModelKind::ALL
                .into_iter()
                .find(|k| k.name() == part.trim())
                .ok_or_else(|| {
                    format!(
                        "unknown model `{part}`: choose facenet, dlib, mobilefacenet, fusion, or names joined by + (e.g. mobilefacenet+dlib)"
                    )
                })?;
            if kinds.contains(&kind) {
                return Err(format!("model `{part}` is named twice in `{text}`"));
            }
            kinds.push(kind);
        }
        Ok(ModelChoice(kinds))
    }
}

impl std::fmt::Display for ModelChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.0.iter().map(ModelKind::name).collect();
        f.write_str(&names.join("+"))
    }
}

#[derive(Clone, Debug)]
pub struct EngineOptions {
    pub model: ModelChoice,
    /// Also embed the mirrored face and average (test-time augmentation).
    pub flip: bool,
    pub align: AlignMode,
    pub max_pixels: u64,
    /// Faces narrower than this are refused, and MTCNN does not search for smaller ones
    /// (it searches down to 20 px at least, as the reference does). Larger values detect faster.
    pub min_face_size: u32,
    /// ONNX Runtime threads per network (0 = its default).
    pub threads: usize,
    /// Photos processed at once (embedding network replicas): 0 or 1 for the lowest latency
    /// of one request, the core count for bulk throughput.
    pub parallel: usize,
    /// Overrides the model's default threshold (Euclidean on unit embeddings).
    pub threshold: Option<f32>,
    /// A named target FAR instead of the calibrated one (`None`: the calibration's own target).
    pub security: Option<SecurityLevel>,
    /// 1:N: the share of searches for people who are not enrolled that may still return
    /// someone. The identification threshold follows from it and the number of people
    /// searched (see [`Engine::identification_threshold`]); `None`: the calibration's own
    /// target, else [`DEFAULT_TARGET_FPIR`].
    pub target_fpir: Option<f64>,
    /// The quality gate for enrollment photos.
    pub enroll_quality: QualityLevel,
    /// The quality gate for verification probes (off by default: a poor probe is reported,
    /// and its distance speaks for itself).
    pub verify_quality: QualityLevel,
    /// Load the passive liveness models and score every decided face.
    pub liveness: bool,
    /// Load the eye landmark network, so liveness challenges can ask for blinks.
    pub eyes: bool,
    /// The ONNX Runtime shared library to load instead of fetching the pinned one (the
    /// Python package passes the library of the installed `onnxruntime` wheel). It must be
    /// the pinned version.
    pub onnxruntime_library: Option<std::path::PathBuf>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            model: ModelChoice::default(),
            flip: false,
            align: AlignMode::Similarity,
            max_pixels: facegate_image::DEFAULT_MAX_PIXELS,
            min_face_size: 20,
            threads: 0,
            parallel: 0,
            threshold: None,
            security: None,
            target_fpir: None,
            enroll_quality: QualityLevel::Standard,
            verify_quality: QualityLevel::Off,
            liveness: false,
            eyes: false,
            onnxruntime_library: None,
        }
    }
}

/// The false positive identification rate 1:N searches keep to unless told otherwise: one in
/// a hundred searches for someone who is not enrolled returns a name.
pub const DEFAULT_TARGET_FPIR: f64 = 1e-2;

/// One face of a photo with its embedding.
#[derive(Clone, Debug, Serialize)]
pub struct EmbeddedFace {
    pub face: Face,
    #[serde(skip)]
    pub embedding: Vec<f32>,
    /// Measured while the face was being aligned; [`Engine::judge_quality`] applies the rules.
    #[serde(skip)]
    pub quality: QualityReport,
}

/// The loaded pipeline: detector, aligner settings, embedder(s).
pub struct Engine {
    detector: Box<dyn Detector>,
    embedders: Vec<Box<dyn Embedder>>,
    model_id: String,
    options: EngineOptions,
    calibrated: Option<CalibratedThreshold>,
    liveness: Option<LivenessModels>,
    eyes: Option<EyeLandmarks>,
    /// The 1:1 threshold, resolved on first use: the options and calibration do not change
    /// after loading.
    threshold: std::sync::OnceLock<Threshold>,
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
        let library = match &options.onnxruntime_library {
            Some(path) => path.clone(),
            None => store.file(&pins::ONNXRUNTIME_LIBRARY, observer)?,
        };
        let runtime = Runtime::load(&library)?;
        let config = MtcnnConfig {
            threads: options.threads,
            ..MtcnnConfig::default()
        };
        let detector = Mtcnn::load(&store, &runtime, config, observer)?;
        let threads = Threads::shared(options.threads, options.parallel);
        let embedders = options
            .model
            .kinds()
            .iter()
            .map(|kind| -> Result<Box<dyn Embedder>, Error> {
                Ok(match kind {
                    ModelKind::Facenet => {
                        Box::new(FaceNet::load(&store, &runtime, threads, observer)?)
                    }
                    ModelKind::Dlib => {
                        Box::new(DlibResnet::load(&store, &runtime, threads, observer)?)
                    }
                    ModelKind::Mobilefacenet => {
                        Box::new(MobileFaceNet::load(&store, &runtime, threads, observer)?)
                    }
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let liveness = if options.liveness {
            Some(LivenessModels::load(&store, &runtime, observer)?)
        } else {
            None
        };
        let eyes = if options.eyes {
            Some(EyeLandmarks::load(&store, &runtime, observer)?)
        } else {
            None
        };
        let mut engine = Engine::from_parts(Box::new(detector), embedders, options);
        engine.liveness = liveness;
        engine.eyes = eyes;
        engine.calibrated = Config::load(home.data_dir())?
            .thresholds
            .remove(engine.model_id());
        Ok(engine)
    }

    /// An engine from any detector and embedders (several embedders are fused).
    pub fn from_parts(
        detector: Box<dyn Detector>,
        embedders: Vec<Box<dyn Embedder>>,
        options: EngineOptions,
    ) -> Engine {
        let model_id = match embedders.as_slice() {
            [one] => one.model_id().to_string(),
            many => format!(
                "fusion({})",
                many.iter()
                    .map(|e| e.model_id())
                    .collect::<Vec<_>>()
                    .join("+")
            ),
        };
        Engine {
            detector,
            embedders,
            model_id,
            options,
            calibrated: None,
            liveness: None,
            eyes: None,
            threshold: std::sync::OnceLock::new(),
        }
    }

    /// Scores a face's liveness, when the engine was loaded with `liveness` on.
    pub fn liveness(&self, image: &RgbImage, face: &Face) -> Result<Option<LivenessScore>, Error> {
        match &self.liveness {
            Some(models) => Ok(Some(models.check(image, face)?)),
            None => Ok(None),
        }
    }

    /// Whether the engine can tell how open eyes are (loaded with `eyes` on).
    pub fn sees_eyes(&self) -> bool {
        self.eyes.is_some()
    }

    /// How open `face`'s eyes are in `image`; `None` without the eye network, or when the
    /// face's eye landmarks are degenerate.
    pub fn eye_openness(
        &self,
        image: &RgbImage,
        face: &Face,
    ) -> Result<Option<EyeOpenness>, Error> {
        match &self.eyes {
            Some(eyes) => Ok(eyes.openness(image, face)?),
            None => Ok(None),
        }
    }

    /// Applies `level`'s rules to an already measured report (see [`EmbeddedFace::quality`]).
    pub fn judge_quality(
        &self,
        image: &LoadedImage,
        report: QualityReport,
        level: QualityLevel,
    ) -> Result<QualityReport, Error> {
        if let Some(rules) = level.rules() {
            let reasons = report.failures(&rules);
            if !reasons.is_empty() {
                return Err(Error::PoorQuality {
                    source_name: image.source_name.clone(),
                    level: level.name(),
                    reasons,
                    report: Box::new(report),
                });
            }
        }
        Ok(report)
    }

    /// Identifies everything that changes embeddings: model, detector and alignment.
    pub fn pipeline_id(&self) -> String {
        let mut id = format!(
            "{}+{}+{}",
            self.model_id(),
            self.detector_id(),
            self.options.align.id()
        );
        if self.options.align == AlignMode::Similarity {
            for own in self.embedders.iter().filter_map(|e| e.alignment_id()) {
                id.push('+');
                id.push_str(own);
            }
        }
        if self.options.flip {
            id.push_str("+flip");
        }
        // A larger search minimum changes the pyramid, so the boxes (and embeddings) differ.
        if self.options.min_face_size > self.detector.min_face_size() {
            id.push_str(&format!("+min{}", self.options.min_face_size));
        }
        id
    }

    /// The calibration stored for this model, if any.
    pub fn calibration(&self) -> Option<&CalibratedThreshold> {
        self.calibrated.as_ref()
    }

    /// This model's impostor distance curve: one's own calibration, or the one shipped.
    pub fn impostor_cdf(&self) -> Option<&ImpostorCdf> {
        match &self.calibrated {
            Some(c) => Some(&c.impostor_cdf),
            None => facegate_decide::default_impostor_cdf(self.model_id()),
        }
    }

    /// The estimated false accept rate of accepting at `distance` (Euclidean), from this
    /// model's calibration data, or the impostor distances shipped with its default.
    pub fn estimated_far(&self, distance: f32) -> Option<FarEstimate> {
        let cdf = self.impostor_cdf()?;
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
        &self.model_id
    }

    pub fn detector_id(&self) -> &str {
        self.detector.id()
    }

    /// The decision threshold in force and where it came from.
    pub fn threshold(&self) -> Threshold {
        self.threshold
            .get_or_init(|| self.resolve_threshold())
            .clone()
    }

    fn resolve_threshold(&self) -> Threshold {
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
        if let Some(level) = self
            .options
            .security
            .filter(|_| self.options.threshold.is_none())
        {
            if let Some(cdf) = self.impostor_cdf() {
                if let Some(at) = cdf.distance_at_far(level.target_far()) {
                    threshold.value = at.distance;
                    threshold.note = format!(
                        "security {}: FAR {:.0e} on {} ({} impostor pairs{}); {}",
                        level.name(),
                        level.target_far(),
                        cdf.source,
                        cdf.pairs,
                        if at.measured {
                            ""
                        } else {
                            "; too few to resolve this rate, so the smallest impostor distance is used"
                        },
                        facegate_decide::OTHER_POPULATIONS
                    );
                }
            }
        }
        if let Some(value) = self.options.threshold {
            threshold.value = value;
            threshold.source = ThresholdSource::Flag;
            threshold.note = "given with --threshold".to_string();
        }
        threshold
    }

    /// The target false positive identification rate in force: the option, else the one
    /// stored by `calibrate --target-fpir`, else [`DEFAULT_TARGET_FPIR`].
    pub fn target_fpir(&self) -> f64 {
        self.options
            .target_fpir
            .or_else(|| self.calibrated.as_ref().and_then(|c| c.target_fpir))
            .unwrap_or(DEFAULT_TARGET_FPIR)
    }

    /// The 1:N threshold for a search through `people` people: the distance at which the
    /// chance that a person who is not enrolled is matched to someone stays at the target
    /// FPIR (per comparison `FAR = 1 − (1 − FPIR)^(1/people)`, read off the impostor curve),
    /// and never looser than the 1:1 threshold. A threshold given with `--threshold` is used
    /// as it is.
    pub fn identification_threshold(&self, people: usize) -> Threshold {
        let verify = self.threshold();
        if verify.source == ThresholdSource::Flag {
            return verify;
        }
        let fpir = self.target_fpir();
        let far = facegate_decide::far_for_fpir(fpir, people);
        let Some((cdf, at)) = self
            .impostor_cdf()
            .and_then(|cdf| cdf.distance_at_far(far).map(|at| (cdf, at)))
        else {
            return verify;
        };
        if at.distance >= verify.value {
            let mut t = verify;
            t.note = format!(
                "{}; for {people} people this also keeps FPIR at or below {fpir:.0e}",
                t.note
            );
            return t;
        }
        Threshold {
            metric: verify.metric,
            value: at.distance,
            source: verify.source,
            note: format!(
                "1:N for FPIR {fpir:.0e} among {people} people: FAR {far:.1e} per comparison on {} ({} impostor pairs{}); {}",
                cdf.source,
                cdf.pairs,
                if at.measured {
                    ""
                } else {
                    "; too few to resolve this rate, so the smallest impostor distance is used and the FPIR is not known"
                },
                facegate_decide::OTHER_POPULATIONS
            ),
        }
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
        Ok(self
            .detector
            .detect_down_to(image, self.options.min_face_size)?)
    }

    /// Every face of at least `min_face_size` pixels (never below the engine's minimum),
    /// highest score first: larger minimums search fewer scales.
    pub fn detect_down_to(&self, image: &RgbImage, min_face_size: u32) -> Result<Vec<Face>, Error> {
        let min = min_face_size.max(self.options.min_face_size);
        Ok(self.detector.detect_down_to(image, min)?)
    }

    /// The faces a verify needs, highest score first: the largest face [`Engine::detect`]
    /// finds, and the others unless they are much smaller (see
    /// [`Detector::detect_largest_first`]).
    pub fn detect_largest_first(&self, image: &RgbImage) -> Result<Vec<Face>, Error> {
        Ok(self
            .detector
            .detect_largest_first(image, self.options.min_face_size)?)
    }

    /// The aligned crops the embedders see, one per embedder.
    pub fn aligned_crops(&self, image: &RgbImage, face: &Face) -> Vec<RgbImage> {
        self.embedders
            .iter()
            .map(|e| {
                if self.options.align == AlignMode::Similarity {
                    if let Some(crop) = e.align(image, face) {
                        return crop;
                    }
                }
                let size = e.input_size();
                match e.alignment_template() {
                    Some(template) => {
                        facegate_align::align_to(image, face, self.options.align, &template, size)
                    }
                    None => facegate_align::align(image, face, self.options.align, size),
                }
            })
            .collect()
    }

    /// Embeds aligned crops (`crops[face][embedder]`). With several embedders the unit
    /// embeddings are concatenated and scaled by `1/sqrt(k)`: the result is a unit vector whose
    /// cosine similarity is the mean of the models' cosine similarities (equal-weight score
    /// fusion), so every distance and threshold works unchanged.
    pub fn embed_crops(&self, crops: &[Vec<RgbImage>]) -> Result<Vec<Vec<f32>>, Error> {
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); crops.len()];
        let weight = 1.0 / (self.embedders.len() as f32).sqrt();
        for (i, embedder) in self.embedders.iter().enumerate() {
            let mut batch: Vec<RgbImage> = crops.iter().map(|c| c[i].clone()).collect();
            if self.options.flip {
                // Test-time augmentation: the mirrored face too, embeddings averaged.
                let mirrored: Vec<RgbImage> =
                    batch.iter().map(facegate_image::flip_horizontal).collect();
                batch.extend(mirrored);
            }
            let mut embeddings = embedder.embed(&batch)?;
            if self.options.flip {
                let mirrored = embeddings.split_off(crops.len());
                for (e, m) in embeddings.iter_mut().zip(mirrored) {
                    for (a, b) in e.iter_mut().zip(m) {
                        *a += b;
                    }
                    facegate_embed::l2_normalize(e);
                }
            }
            for (face, embedding) in out.iter_mut().zip(embeddings) {
                face.extend(embedding.iter().map(|v| v * weight));
            }
        }
        Ok(out)
    }

    /// Aligns and embeds the given faces of an image.
    pub fn embed_at(&self, image: &RgbImage, faces: &[Face]) -> Result<Vec<Vec<f32>>, Error> {
        let crops: Vec<Vec<RgbImage>> =
            faces.iter().map(|f| self.aligned_crops(image, f)).collect();
        self.embed_crops(&crops)
    }

    /// Every face in a photo, highest score first, searching again with room around the
    /// photo when no face is found or the largest one touches the border (see
    /// [`crate::context`]). Boxes and landmarks are in the photo's coordinates. For photos;
    /// video frames use [`Engine::detect`], where an empty frame is the common case.
    pub fn detect_photo(&self, image: &RgbImage) -> Result<Vec<Face>, Error> {
        Ok(self.detect_with_context(image, FacePolicy::All)?.0)
    }

    /// The detection a face policy needs, in the photo's coordinates, with the canvas it was
    /// found on when the photo alone gave the detector too little context.
    fn detect_with_context(
        &self,
        image: &RgbImage,
        policy: FacePolicy,
    ) -> Result<(Vec<Face>, Option<Canvas>), Error> {
        let search = |image: &RgbImage, min_face_size: u32| -> Result<Vec<Face>, Error> {
            Ok(match policy {
                // Only the largest face is used: faces too small to be it need not be searched
                // for, and the finest pyramid levels are most of MTCNN's work.
                FacePolicy::Largest => self.detector.detect_largest_first(image, min_face_size)?,
                FacePolicy::Single | FacePolicy::Central | FacePolicy::All => {
                    self.detector.detect_down_to(image, min_face_size)?
                }
            })
        };
        let faces = search(image, self.options.min_face_size)?;
        let (w, h) = image.dimensions();
        let min = self.options.min_face_size as f32;
        let needs_room = match facegate_detect::largest_visible(&faces, w, h, min) {
            Some(face) => touches_border(face, w, h),
            None => true,
        };
        if !needs_room {
            return Ok((faces, None));
        }
        for pad_share in PAD_SHARES {
            let canvas = Canvas::around(image, pad_share);
            let min_on_canvas = ((min * canvas.scale).floor() as u32).max(1);
            let on_canvas = search(&canvas.image, min_on_canvas)?;
            if !on_canvas.is_empty() {
                let faces = on_canvas.iter().map(|f| canvas.to_photo(f)).collect();
                return Ok((faces, Some(canvas)));
            }
        }
        Ok((faces, None))
    }

    /// [`Engine::embed_faces`] up to the embedding.
    fn detect_select_and_crop(
        &self,
        image: &LoadedImage,
        policy: FacePolicy,
    ) -> Result<SelectedFaces, Error> {
        let (mut faces, canvas) = self.detect_with_context(&image.rgb, policy)?;
        if faces.is_empty() && self.options.min_face_size > self.detector.min_face_size() {
            // Only smaller faces, if any: search again to say "too small" rather than "none".
            faces = self.detector.detect(&image.rgb)?;
        }
        let found = faces.len();
        if faces.is_empty() {
            return Err(Error::NoFace {
                source_name: image.source_name.clone(),
                min_face_size: self.detector.min_face_size(),
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
                facegate_detect::largest_visible(&faces, w, h, min)
                    .cloned()
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
        // Faces found on a canvas are cut from it: grey, not black, where the photo ends.
        let (source, on_source): (&RgbImage, Vec<Face>) = match &canvas {
            Some(canvas) => (
                &canvas.image,
                selected.iter().map(|f| canvas.to_canvas(f)).collect(),
            ),
            None => (&image.rgb, selected.clone()),
        };
        let pixels_per_photo_pixel = canvas.as_ref().map_or(1.0, |c| c.scale);
        // The quality figures need their own aligned crop; cutting it on the other core while
        // the embedders' crops are cut takes it off a verify's critical path.
        let (crops, qualities): (Vec<Vec<RgbImage>>, Vec<QualityReport>) = rayon::join(
            || {
                on_source
                    .iter()
                    .map(|f| self.aligned_crops(source, f))
                    .collect()
            },
            || {
                on_source
                    .iter()
                    .map(|f| {
                        let mut quality = QualityReport::measure(source, f, found);
                        quality.inter_eye_px /= pixels_per_photo_pixel;
                        quality
                    })
                    .collect()
            },
        );
        Ok(SelectedFaces {
            faces: selected,
            found,
            crops,
            qualities,
        })
    }

    /// Detects, selects faces by `policy`, aligns and embeds them. Also returns how many faces
    /// the detector found in total (with [`FacePolicy::Largest`], faces under a third of the
    /// size of the largest may not be searched for, and so not counted).
    pub fn embed_faces(
        &self,
        image: &LoadedImage,
        policy: FacePolicy,
    ) -> Result<(Vec<EmbeddedFace>, usize), Error> {
        // Detection, selection and cropping run as one job on the rayon pool, so their
        // parallel parts start on a worker that is already running rather than each handing
        // off from this thread.
        // The embedding runs here: ONNX Runtime has its own threads for it.
        let selected = rayon::scope(|_| self.detect_select_and_crop(image, policy))?;
        let embeddings = self.embed_crops(&selected.crops)?;
        let embedded = selected
            .faces
            .into_iter()
            .zip(embeddings)
            .zip(selected.qualities)
            .map(|((face, embedding), quality)| EmbeddedFace {
                face,
                embedding,
                quality,
            })
            .collect();
        Ok((embedded, selected.found))
    }
}

/// The faces a policy selected in a photo, before embedding.
struct SelectedFaces {
    faces: Vec<Face>,
    /// How many faces the detector found in all.
    found: usize,
    /// Per face, one aligned crop per embedder.
    crops: Vec<Vec<RgbImage>>,
    qualities: Vec<QualityReport>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_choices_parse_and_round_trip_through_model_ids() {
        let fusion = ModelChoice::parse("fusion").unwrap();
        assert_eq!(fusion.kinds(), [ModelKind::Facenet, ModelKind::Dlib]);
        let three = ModelChoice::parse("mobilefacenet+facenet+dlib").unwrap();
        assert_eq!(three.to_string(), "mobilefacenet+facenet+dlib");
        assert!(ModelChoice::parse("facenet+facenet").is_err());
        let err = ModelChoice::parse("arcface").unwrap_err();
        assert!(err.contains("unknown model `arcface`"), "{err}");
        for kind in ModelKind::ALL {
            assert_eq!(
                ModelChoice::from_model_id(kind.model_id()),
                Some(ModelChoice::single(kind))
            );
        }
        let id = "fusion(mobilefacenet-human-3.0.4+dlib-resnet-v1)";
        assert_eq!(
            ModelChoice::from_model_id(id),
            Some(ModelChoice::parse("mobilefacenet+dlib").unwrap())
        );
        assert_eq!(ModelChoice::from_model_id("synthetic"), None);
    }
}
