//! Verify (1:1), identify (1:N), detect.

use axum::extract::State;
use axum::Json;
use facegate::ops;
use facegate::service::{FaceService, Verification};

use super::types::{
    far, CandidateInfo, DetectRequest, DetectResult, FaceBox, IdentifyRequest, IdentifyResult,
    ImageForm, LivenessInfo, QualityInfo, ThresholdInfo, VerifyRequest, VerifyResult,
};
use crate::audit::Actor;
use crate::error::{ApiError, ErrorBody};
use crate::input::{Form, Upload};
use crate::state::SharedState;

const MAX_TOP_K: usize = 100;

fn required_image(form: &mut Form) -> Result<Upload, ApiError> {
    form.take_one_image("image")?
        .ok_or_else(|| ApiError::bad_request("the field image (the photo to check) is required"))
}

/// Is the person in `image` the enrolled `person`? Or, with `reference_image`, are the two
/// images the same person?
#[utoipa::path(
    post, path = "/v1/verify", tag = "recognition",
    request_body(content(
        (VerifyRequest = "application/json"),
        (ImageForm = "multipart/form-data"),
    )),
    responses(
        (status = 200, body = VerifyResult, description = "The decision, match or not"),
        (status = 400, body = ErrorBody, description = "bad_request: malformed body, missing or unknown field"),
        (status = 401, body = ErrorBody, description = "unauthorized: missing, invalid or revoked API key"),
        (status = 403, body = ErrorBody, description = "forbidden: the key's role does not allow this route"),
        (status = 404, body = ErrorBody, description = "unknown_person (keys that may list people; a verify-role key gets a failed match instead)"),
        (status = 409, body = ErrorBody, description = "person_exists, empty_gallery, model_mismatch"),
        (status = 413, body = ErrorBody, description = "payload_too_large (body), image_too_large (pixels)"),
        (status = 415, body = ErrorBody, description = "unsupported_media_type (not JSON or multipart), unsupported_format (image)"),
        (status = 422, body = ErrorBody, description = "no_face, several_faces, face_too_small, poor_quality, not_live, corrupt_image, invalid_name"),
        (status = 429, body = ErrorBody, description = "rate_limited (see Retry-After)"),
        (status = 500, body = ErrorBody, description = "internal, model_error, gallery_error"),
        (status = 503, body = ErrorBody, description = "overloaded, timeout, gallery_unavailable (see Retry-After)"),
    ),
    security(("api_key" = []), ("api_key_header" = []))
)]
pub async fn verify(
    State(state): State<SharedState>,
    actor: Actor,
    mut form: Form,
) -> Result<Json<VerifyResult>, ApiError> {
    // Keys that may not list people get a decision, not a measurement (no distances to climb
    // on), and cannot tell a name nobody has from a failed match. Without keys
    // (`--insecure-no-auth`) every caller is an administrator.
    let decision_only = !actor.0.sees_people();
    form.only(&["person", "image", "reference_image"])?;
    let image = required_image(&mut form)?;
    let reference = form.take_one_image("reference_image")?;
    let person = form.text("person").map(str::to_string);
    let shared = state.clone();
    let max_pixels = state.limits.max_pixels;
    let result = match (person, reference) {
        (Some(person), None) => {
            state
                .infer(move |engine, gallery| {
                    let image = image.decode(max_pixels)?;
                    let service = FaceService::new(engine, gallery);
                    let verification = service.verify(&actor.0, &person, &image, false)?;
                    shared.metrics.faces_embedded.inc();
                    Ok(match verification {
                        Verification::NoSuchPerson { person, face } => VerifyResult {
                            is_match: false,
                            person: Some(person),
                            distance: None,
                            threshold: ThresholdInfo::from(&engine.threshold()),
                            model: engine.model_id().to_string(),
                            face: FaceBox::from(&face.face),
                            reference_face: None,
                            faces_found: face.faces_found,
                            templates_compared: None,
                            estimated_far: None,
                            note: None,
                            quality: QualityInfo::from(&face.quality),
                            liveness: face.liveness.as_ref().map(LivenessInfo::from),
                            accepted: false,
                        },
                        Verification::Compared(outcome) => VerifyResult {
                            is_match: outcome.is_match,
                            person: Some(outcome.person),
                            distance: (!decision_only).then_some(outcome.distance),
                            threshold: ThresholdInfo::from(&outcome.threshold),
                            model: outcome.model,
                            face: FaceBox::from(&outcome.face),
                            reference_face: None,
                            faces_found: outcome.faces_found,
                            templates_compared: (!decision_only)
                                .then_some(outcome.templates_compared),
                            estimated_far: far(outcome.estimated_far).filter(|_| !decision_only),
                            note: outcome.note,
                            quality: QualityInfo::from(&outcome.quality),
                            liveness: outcome.liveness.as_ref().map(LivenessInfo::from),
                            accepted: outcome.accepted,
                        },
                    })
                })
                .await?
        }
        (None, Some(reference)) => {
            state
                .infer(move |engine, _| {
                    let a = image.decode(max_pixels)?;
                    let b = reference.decode(max_pixels)?;
                    let outcome = ops::compare(engine, &a, &b)?;
                    shared.metrics.faces_embedded.inc_by(2);
                    Ok(VerifyResult {
                        accepted: outcome.accepted,
                        quality: QualityInfo::from(&outcome.quality_a),
                        liveness: outcome.liveness.as_ref().map(LivenessInfo::from),
                        is_match: outcome.is_match,
                        person: None,
                        distance: (!decision_only).then_some(outcome.distance),
                        threshold: ThresholdInfo::from(&outcome.threshold),
                        model: outcome.model,
                        face: FaceBox::from(&outcome.face_a),
                        reference_face: Some(FaceBox::from(&outcome.face_b)),
                        faces_found: outcome.faces_found_a,
                        templates_compared: None,
                        estimated_far: far(outcome.estimated_far).filter(|_| !decision_only),
                        note: outcome.note,
                    })
                })
                .await?
        }
        _ => {
            return Err(ApiError::bad_request(
                "send either person (verify against the gallery) or reference_image (compare two images), not both or neither",
            ))
        }
    };
    Ok(Json(result))
}

/// Who in the gallery is the person in `image`?
#[utoipa::path(
    post, path = "/v1/identify", tag = "recognition",
    request_body(content(
        (IdentifyRequest = "application/json"),
        (ImageForm = "multipart/form-data"),
    )),
    responses(
        (status = 200, body = IdentifyResult, description = "Ranked candidates; identity absent means unknown"),
        (status = 400, body = ErrorBody, description = "bad_request: malformed body, missing or unknown field"),
        (status = 401, body = ErrorBody, description = "unauthorized: missing, invalid or revoked API key"),
        (status = 403, body = ErrorBody, description = "forbidden: the key's role does not allow this route"),
        (status = 409, body = ErrorBody, description = "person_exists, empty_gallery, model_mismatch"),
        (status = 413, body = ErrorBody, description = "payload_too_large (body), image_too_large (pixels)"),
        (status = 415, body = ErrorBody, description = "unsupported_media_type (not JSON or multipart), unsupported_format (image)"),
        (status = 422, body = ErrorBody, description = "no_face, several_faces, face_too_small, poor_quality, not_live, corrupt_image, invalid_name"),
        (status = 429, body = ErrorBody, description = "rate_limited (see Retry-After)"),
        (status = 500, body = ErrorBody, description = "internal, model_error, gallery_error"),
        (status = 503, body = ErrorBody, description = "overloaded, timeout, gallery_unavailable (see Retry-After)"),
    ),
    security(("api_key" = []), ("api_key_header" = []))
)]
pub async fn identify(
    State(state): State<SharedState>,
    actor: Actor,
    mut form: Form,
) -> Result<Json<IdentifyResult>, ApiError> {
    form.only(&["image", "top_k"])?;
    let image = required_image(&mut form)?;
    let top_k = form.number("top_k", 5, MAX_TOP_K)?;
    let shared = state.clone();
    let max_pixels = state.limits.max_pixels;
    let result = state
        .infer(move |engine, gallery| {
            let image = image.decode(max_pixels)?;
            let service = FaceService::new(engine, gallery).with_index(&shared.index);
            let mut outcome = service.identify(&actor.0, &image, top_k, false)?;
            shared.metrics.faces_embedded.inc();
            let face = outcome.faces.remove(0);
            Ok(IdentifyResult {
                identity: outcome.identity,
                candidates: face
                    .candidates
                    .into_iter()
                    .map(|c| CandidateInfo {
                        person: c.person,
                        distance: c.distance,
                        is_match: c.is_match,
                        estimated_far: far(c.estimated_far),
                    })
                    .collect(),
                face: FaceBox::from(&face.face),
                faces_found: outcome.faces_found,
                threshold: ThresholdInfo::from(&outcome.threshold),
                model: outcome.model,
                people_searched: outcome.people_searched,
                note: outcome.note,
                quality: QualityInfo::from(&face.quality),
                liveness: face.liveness.as_ref().map(LivenessInfo::from),
            })
        })
        .await?;
    Ok(Json(result))
}

/// Every face in `image`: box, score, five landmarks. An image without faces gives an empty list.
#[utoipa::path(
    post, path = "/v1/detect", tag = "recognition",
    request_body(content(
        (DetectRequest = "application/json"),
        (ImageForm = "multipart/form-data"),
    )),
    responses(
        (status = 200, body = DetectResult),
        (status = 400, body = ErrorBody, description = "bad_request: malformed body, missing or unknown field"),
        (status = 401, body = ErrorBody, description = "unauthorized: missing, invalid or revoked API key"),
        (status = 403, body = ErrorBody, description = "forbidden: the key's role does not allow this route"),
        (status = 413, body = ErrorBody, description = "payload_too_large (body), image_too_large (pixels)"),
        (status = 415, body = ErrorBody, description = "unsupported_media_type (not JSON or multipart), unsupported_format (image)"),
        (status = 422, body = ErrorBody, description = "no_face, several_faces, face_too_small, poor_quality, not_live, corrupt_image, invalid_name"),
        (status = 429, body = ErrorBody, description = "rate_limited (see Retry-After)"),
        (status = 500, body = ErrorBody, description = "internal, model_error, gallery_error"),
        (status = 503, body = ErrorBody, description = "overloaded, timeout, gallery_unavailable (see Retry-After)"),
    ),
    security(("api_key" = []), ("api_key_header" = []))
)]
pub async fn detect(
    State(state): State<SharedState>,
    mut form: Form,
) -> Result<Json<DetectResult>, ApiError> {
    form.only(&["image"])?;
    let image = required_image(&mut form)?;
    let max_pixels = state.limits.max_pixels;
    let result = state
        .infer(move |engine, _| {
            let image = image.decode(max_pixels)?;
            let detection = ops::detect(engine, &image)?;
            Ok(DetectResult {
                width: image.rgb.width(),
                height: image.rgb.height(),
                faces: detection.faces.iter().map(FaceBox::from).collect(),
            })
        })
        .await?;
    Ok(Json(result))
}
