//! Health, readiness and metrics.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::types::{Health, Readiness};
use crate::error::{ApiError, ErrorBody};
use crate::state::SharedState;

/// The process is up (no key needed).
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".to_string(),
    })
}

/// Models are loaded and the gallery answers (no key needed). 503 when not ready.
#[utoipa::path(
    get, path = "/readyz", tag = "health",
    responses((status = 200, body = Readiness), (status = 503, body = Readiness))
)]
pub async fn readyz(State(state): State<SharedState>) -> (StatusCode, Json<Readiness>) {
    match state.with_gallery(|g| g.counts()).await {
        Ok(_) => (
            StatusCode::OK,
            Json(Readiness {
                ready: true,
                problem: None,
            }),
        ),
        Err(err) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Readiness {
                ready: false,
                problem: Some(format!("the gallery is not reachable ({})", err.code)),
            }),
        ),
    }
}

/// Prometheus metrics (OpenMetrics text): requests and latency per route, faces embedded,
/// inference slots, gallery size.
#[utoipa::path(
    get, path = "/metrics", tag = "health",
    responses(
        (status = 200, content_type = "application/openmetrics-text", body = String),
        (status = 401, body = ErrorBody, description = "unauthorized"),
        (status = 429, body = ErrorBody, description = "rate_limited"),
    ),
    security(("api_key" = []), ("api_key_header" = []))
)]
pub async fn metrics(State(state): State<SharedState>) -> Result<Response, ApiError> {
    if let Ok(counts) = state.with_gallery(|g| g.counts()).await {
        state.metrics.gallery_people.set(counts.people as i64);
        state.metrics.gallery_templates.set(counts.templates as i64);
    }
    let text = state
        .metrics
        .encode()
        .map_err(|err| ApiError::internal(format!("could not encode the metrics: {err}")))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}
