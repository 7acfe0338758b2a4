//! People and their face templates.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Extension;
use axum::Json;
use facegate::ops;
use facegate::service::{EnrollMode, FaceCheck, FaceService};
use serde::Deserialize;

use super::types::{
    AddFacesRequest, CreatePersonRequest, DeletedPerson, DeletedTemplate, EnrollResult, FaceBox,
    ImageForm, LivenessInfo, PeoplePage, PersonDetail, PersonSummary, QualityInfo, TemplateInfo,
};
use crate::audit::Actor;
use crate::error::{ApiError, ErrorBody};
use crate::input::{Form, Upload};
use crate::keys::{Caller, Role};
use crate::limits::AddFacesPolicy;
use crate::state::SharedState;

const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 1000;

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    limit: Option<String>,
    after: Option<String>,
}

/// List enrolled people in name order, a page at a time.
#[utoipa::path(
    get, path = "/v1/people", tag = "people",
    params(
        ("limit" = Option<u32>, Query, description = "People per page, 1..=1000 (default 50)"),
        ("after" = Option<String>, Query, description = "The `next_after` of the previous page"),
    ),
    responses(
        (status = 200, body = PeoplePage),
        (status = 400, body = ErrorBody, description = "bad_request: malformed body, missing or unknown field"),
        (status = 401, body = ErrorBody, description = "unauthorized: missing, invalid or revoked API key"),
        (status = 403, body = ErrorBody, description = "forbidden: the key's role does not allow this route"),
        (status = 429, body = ErrorBody, description = "rate_limited (see Retry-After)"),
        (status = 500, body = ErrorBody, description = "internal, model_error, gallery_error"),
        (status = 503, body = ErrorBody, description = "timeout, gallery_unavailable (see Retry-After)"),
    ),
    security(("api_key" = []), ("api_key_header" = []))
)]
pub async fn list_people(
    State(state): State<SharedState>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<PeoplePage>, ApiError> {
    let Query(query) = query?;
    let limit = match query.limit.as_deref() {
        None => DEFAULT_PAGE,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "limit must be a whole number from 1 to {MAX_PAGE}, not {text:?}"
                ))
            })?,
    };
    let after = query.after;
    let people = state
        .with_gallery(move |g| g.people_page(after.as_deref(), limit))
        .await?;
    let next_after = (people.len() == limit)
        .then(|| people.last().map(|p| p.name.clone()))
        .flatten();
    Ok(Json(PeoplePage {
        people: people.into_iter().map(PersonSummary::from).collect(),
        next_after,
    }))
}

/// One person and their templates.
#[utoipa::path(
    get, path = "/v1/people/{name}", tag = "people",
    params(("name" = String, Path, description = "The person's name (percent-encoded)")),
    responses(
        (status = 200, body = PersonDetail),
        (status = 400, body = ErrorBody, description = "bad_request: malformed body, missing or unknown field"),
        (status = 401, body = ErrorBody, description = "unauthorized: missing, invalid or revoked API key"),
        (status = 403, body = ErrorBody, description = "forbidden: the key's role does not allow this route"),
        (status = 404, body = ErrorBody, description = "unknown_person, unknown_template"),
        (status = 429, body = ErrorBody, description = "rate_limited (see Retry-After)"),
        (status = 500, body = ErrorBody, description = "internal, model_error, gallery_error"),
        (status = 503, body = ErrorBody, description = "timeout, gallery_unavailable (see Retry-After)"),
    ),
    security(("api_key" = []), ("api_key_header" = []))
)]
pub async fn get_person(
    State(state): State<SharedState>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<PersonDetail>, ApiError> {
    let Path(name) = name?;
    let detail = state.with_gallery(move |g| person_detail(g, &name)).await?;
    Ok(Json(detail))
}

/// Create a person, optionally enrolling photos at once (all or nothing).
#[utoipa::path(
    post, path = "/v1/people", tag = "people",
    request_body(content(
        (CreatePersonRequest = "application/json"),
        (ImageForm = "multipart/form-data"),
    )),
    responses(
        (status = 201, body = EnrollResult),
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
pub async fn create_person(
    State(state): State<SharedState>,
    actor: Actor,
    mut form: Form,
) -> Result<(StatusCode, Json<EnrollResult>), ApiError> {
    form.only(&["name", "image", "images", "largest"])?;
    let name = form
        .text("name")
        .ok_or_else(|| ApiError::bad_request("the field name is required"))?
        .to_string();
    let largest = form.flag("largest")?;
    let images = form.take_images("image");
    let result = enroll(&state, actor, name, images, largest, EnrollMode::NewPerson).await?;
    Ok((StatusCode::CREATED, Json(result)))
}

/// Add one or more photos to an existing person.
#[utoipa::path(
    post, path = "/v1/people/{name}/faces", tag = "people",
    params(("name" = String, Path)),
    request_body(content(
        (AddFacesRequest = "application/json"),
        (ImageForm = "multipart/form-data"),
    )),
    responses(
        (status = 201, body = EnrollResult),
        (status = 400, body = ErrorBody, description = "bad_request: malformed body, missing or unknown field"),
        (status = 401, body = ErrorBody, description = "unauthorized: missing, invalid or revoked API key"),
        (status = 403, body = ErrorBody, description = "forbidden: the key's role does not allow this route; face_mismatch: a new face does not match the person's enrolled faces (only administrators may add such faces); add_faces_forbidden: only administrators may add faces to this person (--add-faces admin)"),
        (status = 404, body = ErrorBody, description = "unknown_person, unknown_template"),
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
pub async fn add_faces(
    State(state): State<SharedState>,
    actor: Actor,
    caller: Option<Extension<Caller>>,
    name: Result<Path<String>, PathRejection>,
    mut form: Form,
) -> Result<(StatusCode, Json<EnrollResult>), ApiError> {
    let Path(name) = name?;
    form.only(&["image", "images", "largest"])?;
    let largest = form.flag("largest")?;
    let images = form.take_images("image");
    if images.is_empty() {
        return Err(ApiError::bad_request(
            "send at least one photo as image (or images)",
        ));
    }
    // Without keys (`--insecure-no-auth`) every caller is an administrator.
    let admin = caller.is_none_or(|Extension(c)| c.role.allows(Role::Admin));
    let check = match (admin, state.limits.add_faces) {
        (true, _) => FaceCheck::None,
        (false, AddFacesPolicy::Matching) => FaceCheck::MustMatch,
        (false, AddFacesPolicy::AdminOnly) => FaceCheck::AdminOnly,
    };
    let result = enroll(
        &state,
        actor,
        name,
        images,
        largest,
        EnrollMode::AddFaces(check),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(result)))
}

/// Erase a person and every template of theirs.
#[utoipa::path(
    delete, path = "/v1/people/{name}", tag = "people",
    params(("name" = String, Path)),
    responses(
        (status = 200, body = DeletedPerson),
        (status = 400, body = ErrorBody, description = "bad_request: malformed body, missing or unknown field"),
        (status = 401, body = ErrorBody, description = "unauthorized: missing, invalid or revoked API key"),
        (status = 403, body = ErrorBody, description = "forbidden: the key's role does not allow this route"),
        (status = 404, body = ErrorBody, description = "unknown_person, unknown_template"),
        (status = 429, body = ErrorBody, description = "rate_limited (see Retry-After)"),
        (status = 500, body = ErrorBody, description = "internal, model_error, gallery_error"),
        (status = 503, body = ErrorBody, description = "timeout, gallery_unavailable (see Retry-After)"),
    ),
    security(("api_key" = []), ("api_key_header" = []))
)]
pub async fn delete_person(
    State(state): State<SharedState>,
    actor: Actor,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<DeletedPerson>, ApiError> {
    let Path(name) = name?;
    let removed = {
        let name = name.clone();
        state
            .with_gallery(move |g| facegate::service::forget(g, &actor.0, &name))
            .await?
    };
    Ok(Json(DeletedPerson {
        name,
        templates_removed: removed,
    }))
}

/// Erase one template of a person.
#[utoipa::path(
    delete, path = "/v1/people/{name}/faces/{template_id}", tag = "people",
    params(("name" = String, Path), ("template_id" = i64, Path)),
    responses(
        (status = 200, body = DeletedTemplate),
        (status = 400, body = ErrorBody, description = "bad_request: malformed body, missing or unknown field"),
        (status = 401, body = ErrorBody, description = "unauthorized: missing, invalid or revoked API key"),
        (status = 403, body = ErrorBody, description = "forbidden: the key's role does not allow this route"),
        (status = 404, body = ErrorBody, description = "unknown_person, unknown_template"),
        (status = 429, body = ErrorBody, description = "rate_limited (see Retry-After)"),
        (status = 500, body = ErrorBody, description = "internal, model_error, gallery_error"),
        (status = 503, body = ErrorBody, description = "timeout, gallery_unavailable (see Retry-After)"),
    ),
    security(("api_key" = []), ("api_key_header" = []))
)]
pub async fn delete_template(
    State(state): State<SharedState>,
    actor: Actor,
    params: Result<Path<(String, i64)>, PathRejection>,
) -> Result<Json<DeletedTemplate>, ApiError> {
    let Path((name, template_id)) = params?;
    {
        let name = name.clone();
        state
            .with_gallery(move |g| {
                facegate::service::remove_template(g, &actor.0, &name, template_id)
            })
            .await?;
    }
    Ok(Json(DeletedTemplate { name, template_id }))
}

fn person_detail(
    gallery: &dyn facegate::Gallery,
    name: &str,
) -> Result<PersonDetail, facegate::gallery::GalleryError> {
    let person = gallery.person(name)?;
    let templates = gallery.templates_info(name)?;
    Ok(PersonDetail {
        name: person.name,
        created: person.created,
        templates: templates.into_iter().map(TemplateInfo::from).collect(),
    })
}

/// Embeds every photo first, so one bad photo fails the request before anything is stored;
/// then writes in one gallery transaction. `existing`: `None` to create a new person, or the
/// check faces added to an existing person must pass.
async fn enroll(
    state: &SharedState,
    actor: Actor,
    name: String,
    images: Vec<Upload>,
    largest: bool,
    mode: EnrollMode,
) -> Result<EnrollResult, ApiError> {
    facegate::gallery::normalize_name(&name)?;
    let shared = state.clone();
    let max_pixels = state.limits.max_pixels;
    let result = state
        .infer(move |engine, gallery| {
            let service = FaceService::new(engine, gallery);
            // Before any inference: an unknown person, one who already exists, or a policy
            // refusal.
            let admitted = service.admit_enrollment(&actor.0, &name, mode)?;
            let mut prepared = Vec::with_capacity(images.len());
            for upload in &images {
                let image = upload.decode(max_pixels)?;
                prepared.push(ops::prepare_template(engine, &image, largest)?);
            }
            shared.metrics.faces_embedded.inc_by(prepared.len() as u64);
            let templates: Vec<_> = prepared.iter().map(|p| p.template.clone()).collect();
            let report = service.enroll(&actor.0, &admitted, &templates)?;
            Ok(EnrollResult {
                person: person_detail(gallery, admitted.person())?,
                added: report.added,
                duplicates: report.duplicates,
                faces: prepared.iter().map(|p| FaceBox::from(&p.face)).collect(),
                quality: prepared
                    .iter()
                    .map(|p| QualityInfo::from(&p.quality))
                    .collect(),
                liveness: prepared
                    .iter()
                    .map(|p| p.liveness.as_ref().map(LivenessInfo::from))
                    .collect(),
            })
        })
        .await;
    result.map_err(|mut err| {
        if err.code == facegate::ErrorCode::SeveralFaces.as_str() {
            err.message = format!("{}; send largest=true to use the largest face", err.message);
        }
        err
    })
}
