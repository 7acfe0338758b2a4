//! The outermost layer: per-request timeout, metrics and the access log.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, ErrorCode};
use crate::state::SharedState;

/// Times the request out, counts it, and logs route, status and time (never bodies, keys,
/// images or embeddings).
pub async fn observe(State(state): State<SharedState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let response =
        match tokio::time::timeout(state.limits.request_timeout, next.run(request)).await {
            Ok(response) => response,
            Err(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                format!(
                    "the request took longer than the server's limit of {} s; retry, or send a smaller image",
                    state.limits.request_timeout.as_secs_f32()
                ),
            )
            .retry_after(1)
            .into_response(),
        };
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    state
        .metrics
        .record(&route, method.as_str(), status, elapsed);
    let code = response.extensions().get::<ErrorCode>().map(|c| c.0);
    tracing::info!(
        target: "facegate::access",
        %method,
        route,
        status,
        ms = format_args!("{:.1}", elapsed.as_secs_f64() * 1000.0),
        code,
        "request"
    );
    response
}
