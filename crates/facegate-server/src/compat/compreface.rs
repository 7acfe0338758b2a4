//! The CompreFace REST API (`/api/v1/...`), for clients written against it: Double Take,
//! Viseron, the CompreFace SDKs. Served with `facegate serve --compat compreface`.
//!
//! - **Keys.** CompreFace clients send a UUID in `x-api-key`, one per service (recognition,
//!   detection, verification): `facegate keys create --compat compreface --service ...` makes
//!   such keys, usable only on their service's routes (see [`crate::keys::KeyScope`]). Any
//!   facegate key of a sufficient role works too.
//! - **Subjects and examples.** A subject is a person; an example (`image_id`) is one of their
//!   templates. Image ids are UUIDs that encode the template id and a check derived from the
//!   template (see [`ImageId`]), so an id of a removed template is not taken for a later one.
//!   facegate keeps no photos, so an example's image cannot be downloaded.
//! - **Scores.** Similarities are [`facegate::decide::similarity`] with
//!   [`SIMILARITY_AT_THRESHOLD`] exactly at facegate's threshold (the 1:N one for recognize,
//!   the 1:1 one for verification), so Double Take's default match cut-off accepts exactly what
//!   facegate would. Rounded to 5 decimals, as CompreFace does.
//! - **Errors.** `{"message", "code"}` with CompreFace's codes and statuses, translated from
//!   facegate's by [`dialect`] (also for refusals made before a handler runs: keys, limits).
//! - **Parsing.** Lenient where real clients are sloppy: `?&limit=0`, `status=True`,
//!   `face_plugins=undefined`, empty parameters, trailing slashes, extra JSON fields.
//!
//! Everything runs through the application service, audited like the native API.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put, MethodRouter};
use axum::{Json, Router};
use facegate::decide::similarity;
use facegate::gallery::{Gallery, Template};
use facegate::service::{self, EnrollMode, FaceCheck, FaceService};
use facegate::{ops, ErrorCode, Face};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::DocumentedRoute;
use crate::audit::Actor;
use crate::error::{ApiError, ErrorBody};
use crate::input::{Form, Upload};
use crate::keys::{Caller, Role};
use crate::limits::AddFacesPolicy;
use crate::state::SharedState;

/// The similarity reported exactly at facegate's threshold: Double Take's default match
/// cut-off on CompreFace (`match.confidence` 60, in percent).
pub const SIMILARITY_AT_THRESHOLD: f64 = 0.60;

const BASE: &str = "/api/v1";

/// The OpenAPI tag of these routes.
pub const TAG: &str = "compat: CompreFace";

/// What the OpenAPI document says of each route (paths without the trailing slash, which is
/// accepted too).
pub const DOCUMENTED: &[DocumentedRoute] = &[
    DocumentedRoute { method: Method::GET, path: "/api/v1/recognition/subjects", summary: "List subjects (people)", answer: ("200", "{\"subjects\": [names]}") },
    DocumentedRoute { method: Method::POST, path: "/api/v1/recognition/subjects", summary: "Add a subject without faces: JSON {\"subject\"}", answer: ("201", "{\"subject\"}") },
    DocumentedRoute { method: Method::DELETE, path: "/api/v1/recognition/subjects", summary: "Delete every subject and their faces", answer: ("200", "{\"deleted\": n}") },
    DocumentedRoute { method: Method::PUT, path: "/api/v1/recognition/subjects/{subject}", summary: "Rename a subject: JSON {\"subject\": new}; onto an existing subject, merges", answer: ("200", "{\"updated\": bool}") },
    DocumentedRoute { method: Method::DELETE, path: "/api/v1/recognition/subjects/{subject}", summary: "Delete a subject and their faces", answer: ("200", "{\"subject\"}") },
    DocumentedRoute { method: Method::POST, path: "/api/v1/recognition/faces", summary: "Add an example (one face) to ?subject= (created if needed); multipart file or JSON {\"file\": base64}; det_prob_threshold", answer: ("201", "{\"image_id\", \"subject\"}") },
    DocumentedRoute { method: Method::GET, path: "/api/v1/recognition/faces", summary: "List examples: ?page=0&size=20&subject=", answer: ("200", "{\"faces\": [{image_id, subject}], page_number, page_size, total_pages, total_elements}") },
    DocumentedRoute { method: Method::DELETE, path: "/api/v1/recognition/faces", summary: "Delete every example of ?subject= (of everyone without it); subjects stay", answer: ("200", "{\"deleted\": n}") },
    DocumentedRoute { method: Method::POST, path: "/api/v1/recognition/faces/delete", summary: "Delete examples by id: a JSON list of image ids", answer: ("200", "[{image_id, subject}] of those deleted") },
    DocumentedRoute { method: Method::DELETE, path: "/api/v1/recognition/faces/{image_id}", summary: "Delete one example", answer: ("200", "{\"image_id\", \"subject\"}") },
    DocumentedRoute { method: Method::GET, path: "/api/v1/recognition/faces/{image_id}/img", summary: "An example's photo: facegate keeps none (always 501)", answer: ("501", "{\"message\", \"code\"}") },
    DocumentedRoute { method: Method::POST, path: "/api/v1/recognition/faces/{image_id}/verify", summary: "Each face of a photo against one example; limit, det_prob_threshold, face_plugins, status", answer: ("200", "{\"result\": [{box, similarity}]}") },
    DocumentedRoute { method: Method::POST, path: "/api/v1/recognition/recognize", summary: "Who each face is (largest first); limit, prediction_count, det_prob_threshold, face_plugins, status", answer: ("200", "{\"result\": [{box: {probability, x_min, y_min, x_max, y_max}, subjects: [{subject, similarity}]}]}") },
    DocumentedRoute { method: Method::POST, path: "/api/v1/detection/detect", summary: "Every face (largest first); limit, det_prob_threshold, face_plugins (landmarks), status", answer: ("200", "{\"result\": [{box}]}") },
    DocumentedRoute { method: Method::POST, path: "/api/v1/verification/verify", summary: "The one face of source_image against every face of target_image", answer: ("200", "{\"result\": [{source_image_face: {box}, face_matches: [{box, similarity}]}]}") },
];

/// Every route, with and without a trailing slash.
pub fn routes() -> Router<SharedState> {
    let mut router = Router::new();
    let table: [(&str, MethodRouter<SharedState>); 10] = [
        (
            "/recognition/subjects",
            get(list_subjects)
                .post(add_subject)
                .delete(delete_all_subjects),
        ),
        (
            "/recognition/subjects/{subject}",
            put(rename_subject).delete(delete_subject),
        ),
        (
            "/recognition/faces",
            post(add_example).get(list_examples).delete(delete_examples),
        ),
        ("/recognition/faces/delete", post(delete_examples_by_id)),
        ("/recognition/faces/{image_id}", delete(delete_example)),
        ("/recognition/faces/{image_id}/img", get(example_image)),
        ("/recognition/faces/{image_id}/verify", post(verify_example)),
        ("/recognition/recognize", post(recognize)),
        ("/detection/detect", post(detect)),
        ("/verification/verify", post(verify_images)),
    ];
    for (path, handler) in table {
        router = router
            .route(&format!("{BASE}{path}"), handler.clone())
            .route(&format!("{BASE}{path}/"), handler);
    }
    router
}

/// The role each route needs (`None`: not a CompreFace route).
pub fn required_role(method: &str, route: &str) -> Option<Role> {
    let path = route.strip_prefix(BASE)?;
    let path = path.strip_suffix('/').unwrap_or(path);
    Some(match (method, path) {
        ("GET", "/recognition/subjects" | "/recognition/faces") => Role::Identify,
        ("GET", "/recognition/faces/{image_id}/img") => Role::Identify,
        ("POST", "/recognition/recognize" | "/recognition/faces/{image_id}/verify") => {
            Role::Identify
        }
        ("POST", "/recognition/subjects" | "/recognition/faces") => Role::Enroll,
        ("POST", "/detection/detect" | "/verification/verify") => Role::Verify,
        _ => Role::Admin,
    })
}

// ---------------------------------------------------------------------------------------
// Errors

/// CompreFace's error codes (its `CommonExceptionCode` and subject codes).
mod code {
    pub const UNDEFINED: u32 = 0;
    pub const EMPTY_REQUIRED_FIELD: u32 = 5;
    pub const MODEL_NOT_FOUND: u32 = 10;
    pub const IMAGE_NOT_FOUND: u32 = 11;
    pub const INCORRECT_MODEL_TYPE: u32 = 12;
    pub const MISSING_REQUEST_HEADER: u32 = 20;
    pub const UNAVAILABLE_FILE_EXTENSION: u32 = 21;
    pub const VALIDATION_CONSTRAINT_VIOLATION: u32 = 26;
    pub const NO_FACES_FOUND: u32 = 28;
    pub const TOO_MANY_FACES: u32 = 31;
    pub const FACES_SERVICE_EXCEPTION: u32 = 41;
    pub const SUBJECT_NOT_FOUND: u32 = 42;
    pub const SUBJECT_ALREADY_EXISTS: u32 = 43;
}

fn compreface_error(status: StatusCode, code: u32, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({ "message": message.into(), "code": code })),
    )
        .into_response()
}

/// Rewrites facegate's error answers on `/api/v1` routes into CompreFace's
/// `{"message", "code"}` with CompreFace's code and status, keeping facegate's message (it says
/// what to do). Runs outside the key check, so refused keys are answered in CompreFace's
/// terms too.
pub async fn dialect(request: Request, next: Next) -> Response {
    if !request.uri().path().starts_with("/api/v1/") {
        return next.run(request).await;
    }
    let key_shape = key_shape(request.headers());
    let response = next.run(request).await;
    if response.status().is_success() {
        return response;
    }
    let retry_after = response.headers().get(header::RETRY_AFTER).cloned();
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 1 << 20).await else {
        return compreface_error(parts.status, code::UNDEFINED, "the request failed");
    };
    let Ok(ErrorBody { error }) = serde_json::from_slice::<ErrorBody>(&bytes) else {
        return Response::from_parts(parts, axum::body::Body::from(bytes));
    };
    let (status, code) = translate(parts.status, &error.code, key_shape);
    let message = match error.code.as_str() {
        "unauthorized" if key_shape == KeyShape::Missing => {
            format!("Missing header: x-api-key ({})", error.message)
        }
        _ => error.message,
    };
    let mut translated = compreface_error(status, code, message);
    if let Some(value) = retry_after {
        translated.headers_mut().insert(header::RETRY_AFTER, value);
    }
    translated
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyShape {
    Missing,
    Uuid,
    Other,
}

fn key_shape(headers: &HeaderMap) -> KeyShape {
    let presented = headers
        .get("x-api-key")
        .or_else(|| headers.get(header::AUTHORIZATION))
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().trim_start_matches("Bearer ").trim());
    match presented {
        None | Some("") => KeyShape::Missing,
        Some(key) if crate::keys::is_uuid_key(key) => KeyShape::Uuid,
        Some(_) => KeyShape::Other,
    }
}

/// facegate's error code (and status) as CompreFace's status and code.
fn translate(status: StatusCode, facegate_code: &str, key: KeyShape) -> (StatusCode, u32) {
    use code::*;
    match facegate_code {
        "unauthorized" => match key {
            KeyShape::Missing => (StatusCode::BAD_REQUEST, MISSING_REQUEST_HEADER),
            KeyShape::Uuid => (StatusCode::NOT_FOUND, MODEL_NOT_FOUND),
            // Neither a UUID nor a facegate key: CompreFace's "not a valid UUID".
            KeyShape::Other => (StatusCode::BAD_REQUEST, VALIDATION_CONSTRAINT_VIOLATION),
        },
        "forbidden" => (StatusCode::FORBIDDEN, INCORRECT_MODEL_TYPE),
        "no_face" | "face_too_small" => (StatusCode::BAD_REQUEST, NO_FACES_FOUND),
        "several_faces" => (StatusCode::BAD_REQUEST, TOO_MANY_FACES),
        "unknown_person" => (StatusCode::NOT_FOUND, SUBJECT_NOT_FOUND),
        "person_exists" => (StatusCode::BAD_REQUEST, SUBJECT_ALREADY_EXISTS),
        "unknown_template" => (StatusCode::NOT_FOUND, IMAGE_NOT_FOUND),
        "unsupported_format" | "unsupported_media_type" => {
            (StatusCode::BAD_REQUEST, UNAVAILABLE_FILE_EXTENSION)
        }
        "missing_field" => (StatusCode::BAD_REQUEST, EMPTY_REQUIRED_FIELD),
        "bad_request" | "invalid_name" | "corrupt_image" => {
            (StatusCode::BAD_REQUEST, VALIDATION_CONSTRAINT_VIOLATION)
        }
        _ if status.is_server_error()
            && status != StatusCode::SERVICE_UNAVAILABLE
            && status != StatusCode::NOT_IMPLEMENTED =>
        {
            (status, FACES_SERVICE_EXCEPTION)
        }
        _ => (status, UNDEFINED),
    }
}

fn no_face(detection_threshold: f32) -> ApiError {
    let message = if detection_threshold > 0.0 {
        format!("No face is found in the given image with a detector score of at least det_prob_threshold = {detection_threshold}")
    } else {
        "No face is found in the given image".to_string()
    };
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "no_face", message)
}

fn missing_field(what: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "missing_field", what.to_string())
}

// ---------------------------------------------------------------------------------------
// Parameters

/// Query parameters, read leniently: `?&a=1`, empty values, `undefined`/`null` (what
/// JavaScript clients send for unset options) all count as absent; the last value wins.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(raw: Option<String>) -> Params {
        let raw = raw.unwrap_or_default();
        Params(
            form_urlencoded::parse(raw.as_bytes())
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .filter(|(k, _)| !k.is_empty())
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty() && *v != "undefined" && *v != "null")
    }

    fn count(&self, name: &str, default: usize) -> Result<usize, ApiError> {
        match self.get(name) {
            None => Ok(default),
            Some(text) => text.parse::<usize>().map_err(|_| {
                ApiError::bad_request(format!(
                    "{name} must be a whole number, 0 or more, not {text:?}"
                ))
            }),
        }
    }

    fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.get(name).map(str::to_ascii_lowercase).as_deref() {
            None => Ok(false),
            Some("true" | "1" | "yes" | "on") => Ok(true),
            Some("false" | "0" | "no" | "off") => Ok(false),
            Some(other) => Err(ApiError::bad_request(format!(
                "{name} must be true or false, not {other:?}"
            ))),
        }
    }

    /// `det_prob_threshold`: the least detector score a face needs to count.
    fn detection_threshold(&self) -> Result<f32, ApiError> {
        match self.get("det_prob_threshold") {
            None => Ok(0.0),
            Some(text) => text
                .parse::<f32>()
                .ok()
                .filter(|p| (0.0..=1.0).contains(p))
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "det_prob_threshold must be a number from 0 to 1, not {text:?}"
                    ))
                }),
        }
    }

    fn subject(&self) -> Option<&str> {
        self.get("subject")
    }

    fn plugins(&self) -> Plugins {
        let requested: Vec<String> = self
            .get("face_plugins")
            .map(|list| {
                list.split(',')
                    .map(|p| p.trim().to_ascii_lowercase())
                    .filter(|p| !p.is_empty() && p != "undefined")
                    .collect()
            })
            .unwrap_or_default();
        Plugins {
            landmarks: requested.iter().any(|p| p == "landmarks"),
            unsupported: requested.into_iter().filter(|p| p != "landmarks").collect(),
        }
    }
}

/// The `face_plugins` asked for: facegate has the five landmarks; age, gender, mask, pose and
/// embeddings (`calculator`) it does not hand out. Those are named in the answer's
/// `plugins_versions` as unavailable (with `status=true`) and in a response header, never an
/// error.
struct Plugins {
    landmarks: bool,
    unsupported: Vec<String>,
}

/// The options shared by the routes that answer per face.
struct FaceOptions {
    limit: usize,
    detection_threshold: f32,
    status: bool,
    plugins: Plugins,
}

impl FaceOptions {
    fn from(params: &Params) -> Result<FaceOptions, ApiError> {
        Ok(FaceOptions {
            limit: params.count("limit", 0)?,
            detection_threshold: params.detection_threshold()?,
            status: params.flag("status")?,
            plugins: params.plugins(),
        })
    }

    /// Faces the detector is sure enough of, largest first, at most `limit` (0: all); none
    /// left is CompreFace's "no face".
    fn select<T>(&self, mut items: Vec<T>, face: impl Fn(&T) -> &Face) -> Result<Vec<T>, ApiError> {
        items.retain(|item| face(item).score >= self.detection_threshold);
        if items.is_empty() {
            return Err(no_face(self.detection_threshold));
        }
        items.sort_by(|a, b| face(b).area().total_cmp(&face(a).area()));
        if self.limit > 0 {
            items.truncate(self.limit);
        }
        Ok(items)
    }

    /// One face's `box` (and `landmarks` when asked for).
    fn describe(&self, face: &Face, (width, height): (u32, u32)) -> serde_json::Map<String, Value> {
        let [x1, y1, x2, y2] = face.bbox;
        let clamp = |v: f32, max: u32| v.round().clamp(0.0, max as f32) as i64;
        let mut fields = serde_json::Map::new();
        fields.insert(
            "box".into(),
            json!({
                "probability": round5(f64::from(face.score)),
                "x_max": clamp(x2, width),
                "y_max": clamp(y2, height),
                "x_min": clamp(x1, width),
                "y_min": clamp(y1, height),
            }),
        );
        if self.plugins.landmarks {
            let points: Vec<[i64; 2]> = face
                .landmarks
                .iter()
                .map(|[x, y]| [x.round() as i64, y.round() as i64])
                .collect();
            fields.insert("landmarks".into(), json!(points));
        }
        fields
    }

    /// The answer: `{"result": [...]}`, with `plugins_versions` and `execution_time` per face
    /// when `status=true`, as CompreFace adds them.
    fn answer(
        &self,
        mut result: Vec<serde_json::Map<String, Value>>,
        model: &str,
        started: Instant,
    ) -> Response {
        if self.status {
            let elapsed = started.elapsed().as_secs_f64() * 1000.0;
            for face in &mut result {
                face.insert("execution_time".into(), json!({ "total": elapsed.round() }));
            }
        }
        let mut body = json!({ "result": result });
        if self.status {
            let mut versions = serde_json::Map::new();
            versions.insert("detector".into(), json!("facegate mtcnn"));
            versions.insert("calculator".into(), json!(model));
            for plugin in &self.plugins.unsupported {
                versions.insert(plugin.clone(), json!("unavailable in facegate"));
            }
            body["plugins_versions"] = Value::Object(versions);
        }
        let mut response = Json(body).into_response();
        if !self.plugins.unsupported.is_empty() {
            if let Ok(value) = self.plugins.unsupported.join(",").parse() {
                response
                    .headers_mut()
                    .insert("x-facegate-unavailable-plugins", value);
            }
        }
        response
    }
}

fn round5(value: f64) -> f64 {
    (value * 1e5).round() / 1e5
}

fn image_size(image: &facegate::image::LoadedImage) -> (u32, u32) {
    (image.rgb.width(), image.rgb.height())
}

/// The image of a request: the multipart part `file` (or any file part), or JSON
/// `{"file": "<base64>"}`.
fn required_image(form: &mut Form, field: &str) -> Result<Upload, ApiError> {
    let mut images = form.take_images(field);
    if images.is_empty() && field == "file" {
        images = form.take_all_images();
    }
    match images.len() {
        0 => Err(missing_field(&format!(
            "the image is missing: send it as the multipart part {field:?}, or as JSON {{\"{field}\": \"<base64>\"}}"
        ))),
        1 => Ok(images.remove(0)),
        n => Err(ApiError::bad_request(format!(
            "{n} images were sent as {field}; send one"
        ))),
    }
}

/// A JSON body: a missing or empty one is `null`; anything not JSON is refused.
fn json_body(bytes: &Bytes) -> Result<Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(bytes)
        .map_err(|err| ApiError::bad_request(format!("the body is not valid JSON: {err}")))
}

fn subject_in(body: &Value) -> Result<String, ApiError> {
    body.get("subject")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .ok_or_else(|| missing_field("send the subject as JSON: {\"subject\": \"name\"}"))
}

// ---------------------------------------------------------------------------------------
// Image ids

/// An example's id as CompreFace clients see it: a UUID (version 8, "custom") holding the
/// template id in its last 48 bits and, in the rest, a check computed from the template's
/// photo hash and creation time. Stable for the template's life (renames keep it); an id
/// whose check does not fit the template now under that number is unknown.
struct ImageId;

impl ImageId {
    fn of(template: &Template) -> String {
        let check = Self::check(template);
        let mut bytes = [0u8; 16];
        bytes[..10].copy_from_slice(&check[..10]);
        bytes[10..].copy_from_slice(&template.id.to_be_bytes()[2..]);
        bytes[6] = (bytes[6] & 0x0f) | 0x80;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        uuid::Uuid::from_bytes(bytes).hyphenated().to_string()
    }

    /// The template id an image id names, before its check is verified.
    fn template_id(text: &str) -> Option<i64> {
        let bytes = uuid::Uuid::try_parse(text.trim()).ok()?.into_bytes();
        let mut id = [0u8; 8];
        id[2..].copy_from_slice(&bytes[10..]);
        Some(i64::from_be_bytes(id))
    }

    fn check(template: &Template) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(b"facegate compreface image id v1\0");
        hasher.update(template.id.to_be_bytes());
        hasher.update(template.image_sha256.as_bytes());
        hasher.update(b"\0");
        hasher.update(template.created.as_bytes());
        hasher.finalize().into()
    }

    /// The template an image id names, if it still exists.
    fn find(gallery: &dyn Gallery, text: &str) -> Result<Option<Template>, facegate::Error> {
        let Some(id) = Self::template_id(text) else {
            return Ok(None);
        };
        Ok(gallery
            .template_info(id)?
            .filter(|t| ImageId::of(t).eq_ignore_ascii_case(text.trim())))
    }
}

fn image_not_found(image_id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_template",
        format!("Image {image_id} not found"),
    )
}

fn example(template: &Template) -> Value {
    json!({ "image_id": ImageId::of(template), "subject": template.person })
}

// ---------------------------------------------------------------------------------------
// Subjects

async fn list_subjects(State(state): State<SharedState>) -> Result<Json<Value>, ApiError> {
    let people = state.with_gallery(|g| g.people()).await?;
    let subjects: Vec<String> = people.into_iter().map(|p| p.name).collect();
    Ok(Json(json!({ "subjects": subjects })))
}

async fn add_subject(
    State(state): State<SharedState>,
    Actor(actor): Actor,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let subject = subject_in(&json_body(&body)?)?;
    let shared = state.clone();
    let stored = state
        .with_gallery(move |gallery| {
            let service = FaceService::new(&shared.engine, gallery);
            let admitted = service.admit_enrollment(&actor, &subject, EnrollMode::NewPerson)?;
            service.enroll(&actor, &admitted, &[])?;
            Ok::<_, facegate::Error>(gallery.person(&subject)?.name)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(json!({ "subject": stored }))))
}

/// Renames a subject; onto an existing subject it merges the two, as CompreFace does.
async fn rename_subject(
    State(state): State<SharedState>,
    Actor(actor): Actor,
    Path(subject): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let to = subject_in(&json_body(&body)?)?;
    let from = subject.clone();
    let report = state
        .with_gallery(move |gallery| service::rename(gallery, &actor, &from, &to))
        .await?;
    // Renaming to the name the subject has changes nothing.
    let updated = report.merged || report.name != subject.trim();
    Ok(Json(json!({ "updated": updated })))
}

async fn delete_subject(
    State(state): State<SharedState>,
    Actor(actor): Actor,
    Path(subject): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let name = subject.clone();
    state
        .with_gallery(move |gallery| service::forget(gallery, &actor, &name))
        .await?;
    Ok(Json(json!({ "subject": subject })))
}

async fn delete_all_subjects(
    State(state): State<SharedState>,
    Actor(actor): Actor,
) -> Result<Json<Value>, ApiError> {
    let deleted = state
        .with_gallery(move |gallery| {
            let mut deleted = 0usize;
            for person in gallery.people()? {
                match service::forget(gallery, &actor, &person.name) {
                    Ok(_) => deleted += 1,
                    // Erased meanwhile by someone else: gone all the same.
                    Err(err) if err.kind() == ErrorCode::UnknownPerson => {}
                    Err(err) => return Err(err),
                }
            }
            Ok(deleted)
        })
        .await?;
    Ok(Json(json!({ "deleted": deleted })))
}

// ---------------------------------------------------------------------------------------
// Examples (templates)

/// `POST /recognition/faces?subject=`: one face (exactly one in the photo, as CompreFace
/// requires) added to the subject, who is created if needed. Adding to a subject who has
/// faces follows the server's `--add-faces` policy.
async fn add_example(
    State(state): State<SharedState>,
    Actor(actor): Actor,
    caller: Option<axum::Extension<Caller>>,
    RawQuery(query): RawQuery,
    mut form: Form,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let params = Params::parse(query);
    let subject = params
        .subject()
        .or_else(|| form.text("subject"))
        .map(str::to_string)
        .ok_or_else(|| missing_field("the query parameter subject is required"))?;
    let threshold = params.detection_threshold()?;
    let image = required_image(&mut form, "file")?;
    let is_admin = caller.is_none_or(|c| c.role.allows(Role::Admin));
    let check = match (is_admin, state.limits.add_faces) {
        (true, _) => FaceCheck::None,
        (false, AddFacesPolicy::Matching) => FaceCheck::MustMatch,
        (false, AddFacesPolicy::AdminOnly) => FaceCheck::AdminOnly,
    };
    let max_pixels = state.limits.max_pixels;
    let shared = state.clone();
    let template = state
        .infer(move |engine, gallery| {
            let service = FaceService::new(engine, gallery);
            let mode = if gallery.person(&subject).is_ok() {
                EnrollMode::AddFaces(check)
            } else {
                EnrollMode::NewPerson
            };
            let admitted = service.admit_enrollment(&actor, &subject, mode)?;
            let image = image.decode(max_pixels)?;
            let prepared = ops::prepare_template(engine, &image, false)?;
            if prepared.template.detector_score < threshold {
                return Ok(None);
            }
            shared.metrics.faces_embedded.inc();
            let report =
                service.enroll(&actor, &admitted, std::slice::from_ref(&prepared.template))?;
            let stored = gallery.person(&subject)?.name;
            // A photo the subject already has is not stored twice: its example is answered.
            let template =
                gallery
                    .templates_info(&stored)?
                    .into_iter()
                    .find(|t| match report.added.first() {
                        Some(id) => t.id == *id,
                        None => t.image_sha256 == prepared.template.image_sha256,
                    });
            Ok(Some(template))
        })
        .await?
        .ok_or_else(|| no_face(threshold))?
        .ok_or_else(|| ApiError::internal("the example was stored but cannot be read back"))?;
    Ok((StatusCode::CREATED, Json(example(&template))))
}

/// `GET /recognition/faces?page=0&size=20&subject=`: examples, paged.
async fn list_examples(
    State(state): State<SharedState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let params = Params::parse(query);
    let page = params.count("page", 0)?;
    let size = params.count("size", 20)?.clamp(1, 10_000);
    let subject = params.subject().map(str::to_string);
    let templates = state
        .with_gallery(move |gallery| match subject {
            Some(name) => match gallery.templates_info(&name) {
                Err(facegate::gallery::GalleryError::UnknownPerson { .. }) => Ok(Vec::new()),
                other => other,
            },
            None => gallery.all_templates_info(),
        })
        .await?;
    let total = templates.len();
    let faces: Vec<Value> = templates
        .iter()
        .skip(page.saturating_mul(size))
        .take(size)
        .map(example)
        .collect();
    Ok(Json(json!({
        "faces": faces,
        "page_number": page,
        "page_size": size,
        "total_pages": total.div_ceil(size),
        "total_elements": total,
    })))
}

/// `DELETE /recognition/faces?subject=`: every example of the subject (of everyone without a
/// subject); the subjects stay.
async fn delete_examples(
    State(state): State<SharedState>,
    Actor(actor): Actor,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let subject = Params::parse(query).subject().map(str::to_string);
    let deleted = state
        .with_gallery(move |gallery| {
            let templates = match subject {
                Some(name) => match gallery.templates_info(&name) {
                    Err(facegate::gallery::GalleryError::UnknownPerson { .. }) => Vec::new(),
                    other => other?,
                },
                None => gallery.all_templates_info()?,
            };
            remove_templates(gallery, &actor, &templates)
        })
        .await?;
    Ok(Json(json!({ "deleted": deleted.len() })))
}

/// Removes templates one by one (each audited); ones removed meanwhile are skipped.
fn remove_templates(
    gallery: &dyn Gallery,
    actor: &service::Actor,
    templates: &[Template],
) -> Result<Vec<Template>, facegate::Error> {
    let mut removed = Vec::new();
    for template in templates {
        match service::remove_template(gallery, actor, &template.person, template.id) {
            Ok(()) => removed.push(template.clone()),
            Err(err)
                if matches!(
                    err.kind(),
                    ErrorCode::UnknownTemplate | ErrorCode::UnknownPerson
                ) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(removed)
}

async fn delete_example(
    State(state): State<SharedState>,
    Actor(actor): Actor,
    Path(image_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = image_id.clone();
    let removed = state
        .with_gallery(move |gallery| {
            let Some(template) = ImageId::find(gallery, &id)? else {
                return Ok(None);
            };
            Ok::<_, facegate::Error>(remove_templates(gallery, &actor, &[template])?.pop())
        })
        .await?
        .ok_or_else(|| image_not_found(&image_id))?;
    Ok(Json(example(&removed)))
}

/// `POST /recognition/faces/delete` with a JSON list of image ids: those that existed,
/// removed.
async fn delete_examples_by_id(
    State(state): State<SharedState>,
    Actor(actor): Actor,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let ids: Vec<String> = match json_body(&body)? {
        Value::Array(items) => items
            .into_iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        Value::Null => Vec::new(),
        _ => {
            return Err(ApiError::bad_request(
                "send the image ids as a JSON list: [\"<image_id>\", ...]",
            ))
        }
    };
    let removed = state
        .with_gallery(move |gallery| {
            let mut found = Vec::new();
            for id in &ids {
                found.extend(ImageId::find(gallery, id)?);
            }
            remove_templates(gallery, &actor, &found)
        })
        .await?;
    Ok(Json(Value::Array(removed.iter().map(example).collect())))
}

/// facegate keeps templates, never the photos they came from.
async fn example_image(Path(image_id): Path<String>) -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "not_implemented",
        format!("facegate does not keep photos, only face templates: the image of {image_id} cannot be downloaded"),
    )
}

/// `POST /recognition/faces/{image_id}/verify`: each face of the photo against one example.
async fn verify_example(
    State(state): State<SharedState>,
    Actor(actor): Actor,
    Path(image_id): Path<String>,
    RawQuery(query): RawQuery,
    mut form: Form,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let options = FaceOptions::from(&Params::parse(query))?;
    let upload = required_image(&mut form, "file")?;
    let max_pixels = state.limits.max_pixels;
    let id = image_id.clone();
    let found = state
        .infer(move |engine, gallery| {
            let Some(listed) = ImageId::find(gallery, &id)? else {
                return Ok(None);
            };
            let image = upload.decode(max_pixels)?;
            let service = FaceService::new(engine, gallery);
            let (_, against) = service.verify_example(&actor, listed.id, &image)?;
            Ok(Some((against, image_size(&image))))
        })
        .await?;
    let (against, size) = found.ok_or_else(|| image_not_found(&image_id))?;
    let faces = options.select(against.faces, |f| &f.face)?;
    let result = faces
        .iter()
        .map(|f| {
            let mut fields = options.describe(&f.face, size);
            let score = similarity(f.distance, against.threshold.value, SIMILARITY_AT_THRESHOLD);
            fields.insert("similarity".into(), json!(round5(score)));
            fields
        })
        .collect();
    Ok(options.answer(result, &against.model, started))
}

// ---------------------------------------------------------------------------------------
// Recognition, detection, verification

/// `POST /recognition/recognize`: for each face (largest first), the closest subjects.
/// `prediction_count` subjects per face, each ranked by their closest example (CompreFace ranks
/// examples, so a subject could appear twice there; here each subject appears once).
async fn recognize(
    State(state): State<SharedState>,
    Actor(actor): Actor,
    RawQuery(query): RawQuery,
    mut form: Form,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let params = Params::parse(query);
    let options = FaceOptions::from(&params)?;
    let predictions = params.count("prediction_count", 1)?.clamp(1, 100);
    let upload = required_image(&mut form, "file")?;
    let max_pixels = state.limits.max_pixels;
    let shared = state.clone();
    let (faces, size, model) = state
        .infer(move |engine, gallery| {
            let image = upload.decode(max_pixels)?;
            let size = image_size(&image);
            let service = FaceService::new(engine, gallery).with_index(&shared.index);
            match service.identify(&actor, &image, predictions, true) {
                Ok(outcome) => {
                    let threshold = outcome.threshold.value;
                    let faces: Vec<(Face, Vec<(String, f64)>)> = outcome
                        .faces
                        .into_iter()
                        .map(|f| {
                            let subjects = f
                                .candidates
                                .into_iter()
                                .map(|c| {
                                    let score =
                                        similarity(c.distance, threshold, SIMILARITY_AT_THRESHOLD);
                                    (c.person, round5(score))
                                })
                                .collect();
                            (f.face, subjects)
                        })
                        .collect();
                    Ok((faces, size, outcome.model))
                }
                // Nobody enrolled yet: the faces, with no subjects (as CompreFace answers).
                Err(err) if err.kind() == ErrorCode::EmptyGallery => {
                    let detection = ops::detect(engine, &image)?;
                    let faces = detection
                        .faces
                        .into_iter()
                        .map(|f| (f, Vec::new()))
                        .collect();
                    Ok((faces, size, engine.model_id().to_string()))
                }
                Err(err) => Err(err),
            }
        })
        .await?;
    let faces = options.select(faces, |(face, _)| face)?;
    let result = faces
        .iter()
        .map(|(face, subjects)| {
            let mut fields = options.describe(face, size);
            let subjects: Vec<Value> = subjects
                .iter()
                .map(|(subject, score)| json!({ "subject": subject, "similarity": score }))
                .collect();
            fields.insert("subjects".into(), Value::Array(subjects));
            fields
        })
        .collect();
    Ok(options.answer(result, &model, started))
}

/// `POST /detection/detect`: every face, largest first.
async fn detect(
    State(state): State<SharedState>,
    RawQuery(query): RawQuery,
    mut form: Form,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let options = FaceOptions::from(&Params::parse(query))?;
    let upload = required_image(&mut form, "file")?;
    let max_pixels = state.limits.max_pixels;
    let (faces, size, model) = state
        .infer(move |engine, _| {
            let image = upload.decode(max_pixels)?;
            let faces = ops::detect(engine, &image)?.faces;
            Ok((faces, image_size(&image), engine.model_id().to_string()))
        })
        .await?;
    let faces = options.select(faces, |face| face)?;
    let result = faces
        .iter()
        .map(|face| options.describe(face, size))
        .collect();
    Ok(options.answer(result, &model, started))
}

/// `POST /verification/verify`: the one face of `source_image` against every face of
/// `target_image`.
async fn verify_images(
    State(state): State<SharedState>,
    RawQuery(query): RawQuery,
    mut form: Form,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let options = FaceOptions::from(&Params::parse(query))?;
    let source = required_image(&mut form, "source_image")?;
    let target = required_image(&mut form, "target_image")?;
    let max_pixels = state.limits.max_pixels;
    let (source_face, source_size, against, target_size) = state
        .infer(move |engine, _| {
            let source = source.decode(max_pixels)?;
            let target = target.decode(max_pixels)?;
            let (face, against) = ops::one_against_all(engine, &source, &target)?;
            Ok((face, image_size(&source), against, image_size(&target)))
        })
        .await?;
    let faces = options.select(against.faces, |f| &f.face)?;
    let matches: Vec<Value> = faces
        .iter()
        .map(|f| {
            let mut fields = options.describe(&f.face, target_size);
            let score = similarity(f.distance, against.threshold.value, SIMILARITY_AT_THRESHOLD);
            fields.insert("similarity".into(), json!(round5(score)));
            Value::Object(fields)
        })
        .collect();
    let mut source_fields = options.describe(&source_face, source_size);
    let source_box = source_fields.remove("box").unwrap_or(Value::Null);
    let mut entry = serde_json::Map::new();
    entry.insert("source_image_face".into(), json!({ "box": source_box }));
    if let Some(landmarks) = source_fields.remove("landmarks") {
        entry["source_image_face"]["landmarks"] = landmarks;
    }
    entry.insert("face_matches".into(), Value::Array(matches));
    Ok(options.answer(vec![entry], &against.model, started))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(id: i64, sha: &str) -> Template {
        Template {
            id,
            person: "ann".into(),
            model_id: "m".into(),
            embedding: Vec::new(),
            image_sha256: sha.into(),
            bbox: [0.0; 4],
            detector_score: 1.0,
            source: "a.jpg".into(),
            created: "2026-12-07T00:00:00Z".into(),
            quality: None,
        }
    }

    #[test]
    fn image_ids_are_uuids_that_name_their_template_and_no_other() {
        let t = template(123_456, "abc");
        let id = ImageId::of(&t);
        let parsed = uuid::Uuid::try_parse(&id).unwrap();
        assert_eq!(parsed.get_version_num(), 8, "{id}");
        assert_eq!(ImageId::template_id(&id), Some(123_456));
        assert_eq!(ImageId::of(&t), id, "stable");
        // The same number reused by another photo is another id.
        assert_ne!(ImageId::of(&template(123_456, "def")), id);
        assert_eq!(ImageId::template_id("not a uuid"), None);
    }

    #[test]
    fn sloppy_query_strings_are_read_as_clients_mean_them() {
        let p = Params::parse(Some(
            "&limit=0&status=True&face_plugins=undefined&det_prob_threshold=&subject=John%20Doe&prediction_count=3".into(),
        ));
        assert_eq!(p.count("limit", 7).unwrap(), 0);
        assert!(p.flag("status").unwrap());
        assert_eq!(p.detection_threshold().unwrap(), 0.0);
        assert_eq!(p.subject(), Some("John Doe"));
        assert_eq!(p.count("prediction_count", 1).unwrap(), 3);
        let plugins = p.plugins();
        assert!(!plugins.landmarks && plugins.unsupported.is_empty());

        let p = Params::parse(Some("face_plugins=landmarks,age, gender&limit=-1".into()));
        let plugins = p.plugins();
        assert!(plugins.landmarks);
        assert_eq!(plugins.unsupported, ["age", "gender"]);
        assert!(p.count("limit", 0).is_err());
        assert!(Params::parse(Some("det_prob_threshold=2".into()))
            .detection_threshold()
            .is_err());
        assert!(Params::parse(None).get("anything").is_none());
    }

    #[test]
    fn facegate_errors_become_compreface_codes() {
        let t = |code, key| translate(StatusCode::UNPROCESSABLE_ENTITY, code, key);
        assert_eq!(t("no_face", KeyShape::Uuid), (StatusCode::BAD_REQUEST, 28));
        assert_eq!(
            t("several_faces", KeyShape::Uuid),
            (StatusCode::BAD_REQUEST, 31)
        );
        assert_eq!(
            t("unknown_person", KeyShape::Uuid),
            (StatusCode::NOT_FOUND, 42)
        );
        assert_eq!(
            t("person_exists", KeyShape::Uuid),
            (StatusCode::BAD_REQUEST, 43)
        );
        assert_eq!(
            t("unauthorized", KeyShape::Missing),
            (StatusCode::BAD_REQUEST, 20)
        );
        assert_eq!(
            t("unauthorized", KeyShape::Other),
            (StatusCode::BAD_REQUEST, 26)
        );
        assert_eq!(
            t("unauthorized", KeyShape::Uuid),
            (StatusCode::NOT_FOUND, 10)
        );
        assert_eq!(
            translate(
                StatusCode::INTERNAL_SERVER_ERROR,
                "model_error",
                KeyShape::Uuid
            ),
            (StatusCode::INTERNAL_SERVER_ERROR, 41)
        );
        assert_eq!(
            translate(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                KeyShape::Uuid
            ),
            (StatusCode::TOO_MANY_REQUESTS, 0)
        );
    }

    #[test]
    fn every_route_needs_a_role_by_its_method() {
        assert_eq!(
            required_role("GET", "/api/v1/recognition/subjects"),
            Some(Role::Identify)
        );
        assert_eq!(
            required_role("POST", "/api/v1/recognition/subjects/"),
            Some(Role::Enroll)
        );
        assert_eq!(
            required_role("DELETE", "/api/v1/recognition/subjects"),
            Some(Role::Admin)
        );
        assert_eq!(
            required_role("PUT", "/api/v1/recognition/subjects/{subject}"),
            Some(Role::Admin)
        );
        assert_eq!(
            required_role("POST", "/api/v1/recognition/recognize"),
            Some(Role::Identify)
        );
        assert_eq!(
            required_role("POST", "/api/v1/detection/detect"),
            Some(Role::Verify)
        );
        assert_eq!(
            required_role("POST", "/api/v1/recognition/faces/delete"),
            Some(Role::Admin)
        );
        assert_eq!(required_role("POST", "/v1/verify"), None);
    }
}
