//! The JSON the API speaks. These types are what handlers serialise and what the OpenAPI
//! document describes, so the two cannot drift apart.

use facegate::gallery::{Person, Template};
use facegate::{Face, FarEstimate};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A detected face.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FaceBox {
    /// `[x1, y1, x2, y2]` in pixels of the upright image.
    #[schema(value_type = Vec<f32>, min_items = 4, max_items = 4)]
    pub bbox: [f32; 4],
    /// Detector confidence in [0, 1].
    pub score: f32,
    /// Five `[x, y]` points: eyes, nose tip, mouth corners (image-left first).
    #[schema(value_type = Vec<Vec<f32>>)]
    pub landmarks: [[f32; 2]; 5],
}

impl From<&Face> for FaceBox {
    fn from(face: &Face) -> FaceBox {
        FaceBox {
            bbox: face.bbox,
            score: face.score,
            landmarks: face.landmarks,
        }
    }
}

/// The decision threshold in force.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ThresholdInfo {
    /// `euclidean` or `cosine`.
    pub metric: String,
    /// Distances at or below this are the same person.
    pub value: f32,
    /// `default`, `calibrated` or `flag`.
    pub source: String,
    /// What the value was chosen for and on which data (e.g. the target FPIR and the number
    /// of people of a 1:N search).
    pub note: String,
}

impl From<&facegate::decide::Threshold> for ThresholdInfo {
    fn from(t: &facegate::decide::Threshold) -> ThresholdInfo {
        ThresholdInfo {
            metric: t.metric.name().to_string(),
            value: t.value,
            source: serde_json::to_value(&t.source)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            note: t.note.clone(),
        }
    }
}

/// Estimated false accept rate at a distance, from calibration data.
pub fn far(estimate: Option<FarEstimate>) -> Option<FarInfo> {
    estimate.map(|e| FarInfo {
        far: e.far,
        below_measurable: e.below_measurable,
        source: e.source,
    })
}

/// How often two different people come out this close, from the model's calibration (the
/// same object the command line prints).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FarInfo {
    /// Estimated false accept rate at this distance.
    pub far: f64,
    /// True when no calibration impostor was this close: the rate is below `far`.
    pub below_measurable: bool,
    /// The calibration data it comes from.
    pub source: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PersonSummary {
    pub name: String,
    /// When the person was created (UTC, RFC 3339).
    pub created: String,
    pub template_count: usize,
}

impl From<Person> for PersonSummary {
    fn from(p: Person) -> PersonSummary {
        PersonSummary {
            name: p.name,
            created: p.created,
            template_count: p.templates,
        }
    }
}

/// Quality figures of one face (see docs/ACCURACY.md, "Quality gate").
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QualityInfo {
    /// Distance between the eye landmarks, in image pixels.
    pub inter_eye_px: f32,
    /// Variance of the Laplacian of the 112x112 aligned face (higher = sharper).
    pub sharpness: f32,
    /// Mean grey level of the aligned face, 0-255.
    pub brightness: f32,
    pub clipped_dark: f32,
    pub clipped_bright: f32,
    pub yaw_degrees: f32,
    pub pitch_degrees: f32,
    pub roll_degrees: f32,
    pub detector_score: f32,
    pub faces_in_image: usize,
}

impl From<&facegate::quality::QualityReport> for QualityInfo {
    fn from(q: &facegate::quality::QualityReport) -> QualityInfo {
        QualityInfo {
            inter_eye_px: q.inter_eye_px,
            sharpness: q.sharpness,
            brightness: q.brightness,
            clipped_dark: q.clipped_dark,
            clipped_bright: q.clipped_bright,
            yaw_degrees: q.yaw_degrees,
            pitch_degrees: q.pitch_degrees,
            roll_degrees: q.roll_degrees,
            detector_score: q.detector_score,
            faces_in_image: q.faces_in_image,
        }
    }
}

/// The passive liveness verdict (only when the server runs with `--liveness`). A separate
/// decision: it never changes `distance` or `is_match`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LivenessInfo {
    /// Mean of the two models' "real" probabilities.
    pub score: f32,
    pub threshold: f32,
    pub live: bool,
    pub antispoof_real: f32,
    pub liveness_real: f32,
}

impl From<&facegate::liveness::LivenessScore> for LivenessInfo {
    fn from(l: &facegate::liveness::LivenessScore) -> LivenessInfo {
        LivenessInfo {
            score: l.score,
            threshold: l.threshold,
            live: l.live,
            antispoof_real: l.antispoof_real,
            liveness_real: l.liveness_real,
        }
    }
}

/// One stored face template (the embedding itself is never sent).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TemplateInfo {
    pub id: i64,
    pub model: String,
    pub created: String,
    /// The uploaded file's name, if it had one.
    pub source: String,
    /// SHA-256 of the uploaded image (the image itself is not kept).
    pub image_sha256: String,
    #[schema(value_type = Vec<f32>, min_items = 4, max_items = 4)]
    pub bbox: [f32; 4],
    pub detector_score: f32,
    /// Quality measured at enrollment (absent for templates enrolled before it was measured).
    pub quality: Option<QualityInfo>,
}

impl From<Template> for TemplateInfo {
    fn from(t: Template) -> TemplateInfo {
        TemplateInfo {
            id: t.id,
            model: t.model_id,
            created: t.created,
            source: t.source,
            image_sha256: t.image_sha256,
            bbox: t.bbox,
            detector_score: t.detector_score,
            quality: t
                .quality
                .and_then(|q| serde_json::from_value::<facegate::quality::QualityReport>(q).ok())
                .map(|q| QualityInfo::from(&q)),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PersonDetail {
    pub name: String,
    pub created: String,
    pub templates: Vec<TemplateInfo>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PeoplePage {
    pub people: Vec<PersonSummary>,
    /// Pass as `after` to get the next page; absent on the last page.
    pub next_after: Option<String>,
}

/// What adding faces did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EnrollResult {
    pub person: PersonDetail,
    /// Ids of the templates added by this request.
    pub added: Vec<i64>,
    /// SHA-256 of images this person already had: skipped.
    pub duplicates: Vec<String>,
    /// The face used from each image, in upload order.
    pub faces: Vec<FaceBox>,
    /// The quality of each face, in upload order.
    pub quality: Vec<QualityInfo>,
    /// The liveness of each face, in upload order (only with `--liveness`).
    pub liveness: Option<Vec<LivenessInfo>>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeletedPerson {
    pub name: String,
    pub templates_removed: usize,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeletedTemplate {
    pub name: String,
    pub template_id: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VerifyResult {
    pub is_match: bool,
    /// The enrolled person compared against (absent for image-to-image).
    pub person: Option<String>,
    /// Distance between the faces (closest template), in the threshold's metric. Absent for
    /// keys of the verify role, which get the decision only.
    pub distance: Option<f32>,
    pub threshold: ThresholdInfo,
    /// The embedding model (pipeline) that made the decision.
    pub model: String,
    /// The face of `image` the decision is about (the largest).
    pub face: FaceBox,
    /// The face of `reference_image`, for image-to-image.
    pub reference_face: Option<FaceBox>,
    pub faces_found: usize,
    pub templates_compared: Option<usize>,
    /// How often two different people come out this close (the model's calibration).
    pub estimated_far: Option<FarInfo>,
    pub note: Option<String>,
    /// Quality of `face`.
    pub quality: QualityInfo,
    /// Liveness of `face` (only when the server runs with `--liveness`).
    pub liveness: Option<LivenessInfo>,
    /// `is_match`, and live when liveness is checked: the answer to "let them in?".
    pub accepted: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CandidateInfo {
    pub person: String,
    pub distance: f32,
    pub is_match: bool,
    pub estimated_far: Option<FarInfo>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct IdentifyResult {
    /// The best candidate within the threshold; absent means unknown.
    pub identity: Option<String>,
    /// Ranked, closest first, at most `top_k`.
    pub candidates: Vec<CandidateInfo>,
    pub face: FaceBox,
    pub faces_found: usize,
    pub threshold: ThresholdInfo,
    pub model: String,
    pub people_searched: usize,
    pub note: Option<String>,
    /// Quality of `face`.
    pub quality: QualityInfo,
    /// Liveness of `face` (only when the server runs with `--liveness`).
    pub liveness: Option<LivenessInfo>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DetectResult {
    pub width: u32,
    pub height: u32,
    /// Highest score first.
    pub faces: Vec<FaceBox>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`
    pub status: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
/// Ready or not, and nothing about the gallery or the models: the route is public.
pub struct Readiness {
    pub ready: bool,
    /// Why the server is not ready.
    pub problem: Option<String>,
}

// Request bodies, for the API description. Handlers read them through `input::Form`, which
// also accepts the same fields as multipart/form-data with images as files.

/// `image` alone: verify against the enrolled `person`; with `reference_image` instead of
/// `person`: compare two images, no gallery.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VerifyRequest {
    pub person: Option<String>,
    /// Base64 image bytes or a `data:image/...;base64,` URL.
    pub image: String,
    pub reference_image: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct IdentifyRequest {
    pub image: String,
    /// How many ranked candidates to return (1..=100, default 5).
    pub top_k: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DetectRequest {
    pub image: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatePersonRequest {
    pub name: String,
    /// Optional photos to enroll at once, base64 each.
    pub images: Option<Vec<String>>,
    /// Use the largest face of photos that show several (otherwise they are refused).
    pub largest: Option<bool>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AddFacesRequest {
    /// One or more photos, base64 each.
    pub images: Vec<String>,
    pub largest: Option<bool>,
}

/// The same fields as multipart/form-data: images as file parts.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ImageForm {
    #[schema(value_type = String, format = Binary)]
    pub image: Vec<u8>,
    pub person: Option<String>,
    #[schema(value_type = Option<String>, format = Binary)]
    pub reference_image: Option<Vec<u8>>,
    pub name: Option<String>,
    pub top_k: Option<u32>,
}
