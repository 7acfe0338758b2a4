//! The DeepStack (and CodeProject.AI) face API, for clients written against it: Double Take,
//! HASS-Deepstack-face, Blue Iris. Served with `facegate serve --compat deepstack`.
//!
//! Every route is a multipart (or JSON) POST; the key may come as DeepStack's form field
//! `api_key` as well as facegate's headers. Answers are DeepStack's shapes: `{"success": true,
//! ...}`, or `{"success": false, "error": "..."}` with the status facegate would use. Decisions
//! go through the same application service as the native API and are audited the same way.
//!
//! Scores: DeepStack clients cut off on a confidence (recognize's default `min_confidence` is
//! 0.67). Confidences are [`facegate::decide::similarity`] anchored so that 0.67 is exactly
//! facegate's threshold (the 1:N one for recognize, the 1:1 one for match).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use facegate::decide::similarity;
use facegate::service::{EnrollMode, FaceCheck, FaceService};
use facegate::{ops, ErrorCode};
use serde_json::{json, Value};

use super::DocumentedRoute;
use crate::auth::{authenticate, permit, required_role};
use crate::error::ApiError;
use crate::input::{Form, Upload};
use crate::keys::{Caller, Role};
use crate::limits::AddFacesPolicy;
use crate::state::SharedState;

/// DeepStack's confidence cut-offs: recognize's default, which lands on facegate's threshold,
/// and detect's default (a detector score).
const RECOGNIZE_CUT_OFF: f64 = 0.67;
const DETECT_CUT_OFF: f64 = 0.55;

/// The OpenAPI tag of these routes.
pub const TAG: &str = "compat: DeepStack";

/// What the OpenAPI document says of each route (with or without the trailing slash).
pub const DOCUMENTED: &[DocumentedRoute] = &[
    DocumentedRoute {
        method: Method::POST,
        path: "/v1/vision/face",
        summary: "Every face: image, min_confidence (0.55)",
        answer: (
            "200",
            "{success, predictions: [{confidence, x_min, y_min, x_max, y_max}], count}",
        ),
    },
    DocumentedRoute {
        method: Method::POST,
        path: "/v1/vision/face/recognize",
        summary: "Who each face is: image, min_confidence (0.67; below it userid \"unknown\")",
        answer: (
            "200",
            "{success, predictions: [{userid, confidence, x_min, y_min, x_max, y_max}], count}",
        ),
    },
    DocumentedRoute {
        method: Method::POST,
        path: "/v1/vision/face/register",
        summary: "Add faces to userid: one or more images under any field names",
        answer: ("200", "{success, message: \"face added\"}"),
    },
    DocumentedRoute {
        method: Method::POST,
        path: "/v1/vision/face/match",
        summary: "How alike the largest faces of image1 and image2 are",
        answer: ("200", "{success, similarity}"),
    },
    DocumentedRoute {
        method: Method::POST,
        path: "/v1/vision/face/list",
        summary: "The registered user ids",
        answer: ("200", "{success, faces: [userids]}"),
    },
    DocumentedRoute {
        method: Method::POST,
        path: "/v1/vision/face/delete",
        summary: "Erase userid and their faces",
        answer: ("200", "{success}"),
    },
];

/// The routes, each with and without the trailing slash DeepStack registers.
pub fn routes() -> Router<SharedState> {
    let mut router = Router::new();
    for (path, handler) in [
        ("/v1/vision/face", post(detect)),
        ("/v1/vision/face/recognize", post(recognize)),
        ("/v1/vision/face/register", post(register)),
        ("/v1/vision/face/match", post(match_faces)),
        ("/v1/vision/face/list", post(list)),
        ("/v1/vision/face/delete", post(delete)),
    ] {
        router = router
            .route(path, handler.clone())
            .route(&format!("{path}/"), handler);
    }
    router
}

/// An answer in DeepStack's error shape.
struct DeepStackError(ApiError);

impl From<ApiError> for DeepStackError {
    fn from(err: ApiError) -> DeepStackError {
        DeepStackError(err)
    }
}

impl IntoResponse for DeepStackError {
    fn into_response(self) -> Response {
        let status = self.0.status;
        let message = if status == StatusCode::UNAUTHORIZED {
            // What DeepStack says, so clients that look for it recognise it; then why.
            format!("Incorrect api key: {}", self.0.message)
        } else {
            self.0.message
        };
        let mut response = (
            status,
            Json(json!({ "success": false, "error": message, "duration": 0 })),
        )
            .into_response();
        if let Some(seconds) = self.0.retry_after {
            if let Ok(value) = seconds.to_string().parse() {
                response
                    .headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, value);
            }
        }
        response
    }
}

type Answer = Result<Json<Value>, DeepStackError>;

/// The caller: the one the middleware found from a key header (or the no-auth anonymous
/// administrator), else the key in the form's `api_key`, checked here as the middleware would.
async fn caller(
    state: &SharedState,
    from_header: Option<Extension<Caller>>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    form: &Form,
    route: &str,
) -> Result<Caller, DeepStackError> {
    if let Some(Extension(caller)) = from_header {
        return Ok(caller);
    }
    let presented = form
        .text("api_key")
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send an API key as the form field api_key (create one with `facegate keys create`)",
            )
        })?;
    let client = connect.map(|Extension(ConnectInfo(addr))| addr.ip());
    let caller = authenticate(state, presented, client).await?;
    let required = required_role(&axum::http::Method::POST, route).unwrap_or(Role::Admin);
    permit(state, &caller, required, &axum::http::Method::POST, route)?;
    Ok(caller)
}

fn service_actor(caller: &Caller) -> facegate::service::Actor {
    facegate::service::Actor::api_key(&caller.key_id, caller.role.allows(Role::Identify))
}

/// A cut-off in [0, 1] from the form, or the default.
fn cut_off(form: &Form, default: f64) -> Result<f64, ApiError> {
    match form.text("min_confidence").map(str::trim) {
        None | Some("") => Ok(default),
        Some(text) => text
            .parse::<f64>()
            .ok()
            .filter(|v| (0.0..=1.0).contains(v))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "min_confidence must be a number from 0 to 1, not {text:?}"
                ))
            }),
    }
}

fn required_image(form: &mut Form, field: &str) -> Result<Upload, ApiError> {
    form.take_images(field)
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::bad_request(format!("the field {field} (an image) is required")))
}

fn box_of(face: &facegate::Face) -> [i64; 4] {
    face.bbox.map(|v| v.round() as i64)
}

/// `POST /v1/vision/face`: every face, with the detector's confidence.
async fn detect(
    State(state): State<SharedState>,
    from_header: Option<Extension<Caller>>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    mut form: Form,
) -> Answer {
    caller(&state, from_header, connect, &form, "/v1/vision/face").await?;
    let min = cut_off(&form, DETECT_CUT_OFF)?;
    let image = required_image(&mut form, "image")?;
    let max_pixels = state.limits.max_pixels;
    let faces = state
        .infer(move |engine, _| {
            let image = image.decode(max_pixels)?;
            Ok(ops::detect(engine, &image)?.faces)
        })
        .await?;
    let predictions: Vec<Value> = faces
        .iter()
        .filter(|f| f64::from(f.score) >= min)
        .map(|f| {
            let [x_min, y_min, x_max, y_max] = box_of(f);
            json!({ "confidence": f.score, "x_min": x_min, "y_min": y_min, "x_max": x_max, "y_max": y_max })
        })
        .collect();
    Ok(Json(
        json!({ "success": true, "predictions": predictions, "count": predictions.len(), "duration": 0 }),
    ))
}

/// `POST /v1/vision/face/recognize`: who each face is, `unknown` below the cut-off.
async fn recognize(
    State(state): State<SharedState>,
    from_header: Option<Extension<Caller>>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    mut form: Form,
) -> Answer {
    let caller = caller(
        &state,
        from_header,
        connect,
        &form,
        "/v1/vision/face/recognize",
    )
    .await?;
    let min = cut_off(&form, RECOGNIZE_CUT_OFF)?;
    let image = required_image(&mut form, "image")?;
    let max_pixels = state.limits.max_pixels;
    let shared = state.clone();
    let actor = service_actor(&caller);
    let result = state
        .infer(move |engine, gallery| {
            let image = image.decode(max_pixels)?;
            let service = FaceService::new(engine, gallery).with_index(&shared.index);
            match service.identify(&actor, &image, 1, true) {
                Ok(outcome) => Ok(Some(outcome)),
                // DeepStack answers an image without faces with no predictions.
                Err(err) if err.kind() == ErrorCode::NoFace => Ok(None),
                Err(err) if err.kind() == ErrorCode::EmptyGallery => Ok(None),
                Err(err) => Err(err),
            }
        })
        .await?;
    let predictions: Vec<Value> = result
        .iter()
        .flat_map(|outcome| {
            outcome.faces.iter().map(move |face| {
                let [x_min, y_min, x_max, y_max] = box_of(&face.face);
                let best = face.candidates.first().map(|c| {
                    let confidence =
                        similarity(c.distance, outcome.threshold.value, RECOGNIZE_CUT_OFF);
                    (c.person.clone(), confidence)
                });
                let (userid, confidence) = match best {
                    Some((person, confidence)) if confidence >= min => (person, confidence),
                    _ => ("unknown".to_string(), 0.0),
                };
                json!({
                    "userid": userid, "confidence": confidence,
                    "x_min": x_min, "y_min": y_min, "x_max": x_max, "y_max": y_max,
                })
            })
        })
        .collect();
    Ok(Json(
        json!({ "success": true, "predictions": predictions, "count": predictions.len(), "duration": 0 }),
    ))
}

/// `POST /v1/vision/face/register`: `userid` and one or more images (any field name). The
/// faces are added to the person's templates (DeepStack replaced one averaged embedding);
/// adding faces to someone who has some follows the server's `--add-faces` policy.
async fn register(
    State(state): State<SharedState>,
    from_header: Option<Extension<Caller>>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    mut form: Form,
) -> Answer {
    let caller = caller(
        &state,
        from_header,
        connect,
        &form,
        "/v1/vision/face/register",
    )
    .await?;
    let userid = form
        .text("userid")
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| ApiError::bad_request("the field userid is required"))?
        .to_string();
    let images = form.take_all_images();
    if images.is_empty() {
        return Err(ApiError::bad_request("send at least one image with userid").into());
    }
    if images.len() > state.limits.max_images {
        return Err(ApiError::bad_request(format!(
            "{} images were sent; at most {} per request",
            images.len(),
            state.limits.max_images
        ))
        .into());
    }
    let check = match (caller.role.allows(Role::Admin), state.limits.add_faces) {
        (true, _) => FaceCheck::None,
        (false, AddFacesPolicy::Matching) => FaceCheck::MustMatch,
        (false, AddFacesPolicy::AdminOnly) => FaceCheck::AdminOnly,
    };
    let max_pixels = state.limits.max_pixels;
    let actor = service_actor(&caller);
    let shared = state.clone();
    state
        .infer(move |engine, gallery| {
            let service = FaceService::new(engine, gallery);
            let mode = if gallery.person(&userid).is_ok() {
                EnrollMode::AddFaces(check)
            } else {
                EnrollMode::NewPerson
            };
            let admitted = service.admit_enrollment(&actor, &userid, mode)?;
            let mut templates = Vec::with_capacity(images.len());
            for upload in &images {
                let image = upload.decode(max_pixels)?;
                templates.push(ops::prepare_template(engine, &image, true)?.template);
            }
            shared.metrics.faces_embedded.inc_by(templates.len() as u64);
            service.enroll(&actor, &admitted, &templates)?;
            Ok(())
        })
        .await?;
    Ok(Json(
        json!({ "success": true, "message": "face added", "duration": 0 }),
    ))
}

/// `POST /v1/vision/face/match`: how alike the largest faces of `image1` and `image2` are.
async fn match_faces(
    State(state): State<SharedState>,
    from_header: Option<Extension<Caller>>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    mut form: Form,
) -> Answer {
    caller(&state, from_header, connect, &form, "/v1/vision/face/match").await?;
    let a = required_image(&mut form, "image1")?;
    let b = required_image(&mut form, "image2")?;
    let max_pixels = state.limits.max_pixels;
    let outcome = state
        .infer(move |engine, _| {
            let a = a.decode(max_pixels)?;
            let b = b.decode(max_pixels)?;
            ops::compare(engine, &a, &b)
        })
        .await?;
    let confidence = similarity(outcome.distance, outcome.threshold.value, RECOGNIZE_CUT_OFF);
    Ok(Json(
        json!({ "success": true, "similarity": confidence, "duration": 0 }),
    ))
}

/// `POST /v1/vision/face/list`: the registered user ids.
async fn list(
    State(state): State<SharedState>,
    from_header: Option<Extension<Caller>>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    form: Form,
) -> Answer {
    caller(&state, from_header, connect, &form, "/v1/vision/face/list").await?;
    let people = state.with_gallery(|g| g.people()).await?;
    let faces: Vec<String> = people.into_iter().map(|p| p.name).collect();
    Ok(Json(
        json!({ "success": true, "faces": faces, "duration": 0 }),
    ))
}

/// `POST /v1/vision/face/delete`: erases `userid` and all their templates (audited). Deleting
/// a user nobody has succeeds, as in DeepStack.
async fn delete(
    State(state): State<SharedState>,
    from_header: Option<Extension<Caller>>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    form: Form,
) -> Answer {
    let caller = caller(
        &state,
        from_header,
        connect,
        &form,
        "/v1/vision/face/delete",
    )
    .await?;
    let userid = form
        .text("userid")
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| ApiError::bad_request("the field userid is required"))?
        .to_string();
    let actor = service_actor(&caller);
    let erased = state
        .with_gallery(
            move |g| match facegate::service::forget(g, &actor, &userid) {
                Err(err) if err.kind() == ErrorCode::UnknownPerson => Ok(0),
                other => other,
            },
        )
        .await?;
    Ok(Json(
        json!({ "success": true, "templates_removed": erased, "duration": 0 }),
    ))
}
