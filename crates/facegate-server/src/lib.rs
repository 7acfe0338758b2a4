//! facegate's HTTP service: the JSON API (people, verify, identify, detect), API keys with
//! roles, limits and back-pressure, Prometheus metrics, an OpenAPI document, and a web page
//! that enrolls and verifies from the browser's camera.
//!
//! | concern | module |
//! |---|---|
//! | routes, handlers, OpenAPI | [`api`] |
//! | who may call what | `auth`, [`keys`] |
//! | timeout, metrics, access log | `access`, `metrics` |
//! | body, concurrency and rate limits | [`limits`], `input` |
//! | error shape | [`error`] |
//! | the camera page | `web` |

mod access;
pub mod api;
mod audit;
mod auth;
mod compat;
mod connections;
pub mod error;
mod input;
pub mod keys;
pub mod limits;
mod metrics;
pub mod state;
mod web;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

pub use auth::required_role;
use connections::ConnectionLimit;
pub use error::{ApiError, ErrorBody};
pub use keys::{ApiKeys, Caller, CompreFaceService, CreatedKey, KeyError, KeyInfo, KeyScope, Role};
pub use limits::{AddFacesPolicy, Limits};
pub use state::{AppState, SharedState};

/// The whole service as one router: API, OpenAPI document, web page, middleware.
pub fn router(state: SharedState) -> Router {
    let (api, mut openapi) = api::routes();
    if state.limits.deepstack_api {
        compat::document(
            &mut openapi,
            compat::deepstack::TAG,
            compat::deepstack::DOCUMENTED,
            "DeepStack's face API (`--compat deepstack`): multipart forms; the key as the form field `api_key` (or facegate's headers).",
            "`{\"success\": false, \"error\"}` with facegate's status codes.",
        );
    }
    if state.limits.compreface_api {
        compat::document(
            &mut openapi,
            compat::compreface::TAG,
            compat::compreface::DOCUMENTED,
            "CompreFace's REST API (`--compat compreface`): the key in `x-api-key` (a UUID from `facegate keys create --compat compreface --service ...`, or a facegate key).",
            "`{\"message\", \"code\"}` with CompreFace's codes: 20 missing key, 26 malformed key or parameter, 10 unknown key (404), 12 key of another service (403), 28 no face, 31 more than one face, 42 unknown subject (404), 43 subject exists, 11 unknown image id (404).",
        );
    }
    let openapi_json: Arc<str> = openapi
        .to_pretty_json()
        .unwrap_or_else(|err| format!("{{\"error\": \"{err}\"}}"))
        .into();
    let body_limit = state.limits.max_body_bytes;
    let api = if state.limits.deepstack_api {
        api.merge(compat::deepstack::routes())
    } else {
        api
    };
    let compreface = state.limits.compreface_api;
    let api = if compreface {
        api.merge(compat::compreface::routes())
    } else {
        api
    };
    api.route(
        "/openapi.json",
        get(move || {
            let json = openapi_json.clone();
            async move {
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    json.to_string(),
                )
            }
        }),
    )
    .merge(web::routes())
    .fallback(|| async {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such route; the API is described at /openapi.json",
        )
    })
    .method_not_allowed_fallback(|| async {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this route does not take that method; see /openapi.json",
        )
        .into_response()
    })
    .layer(from_fn_with_state(state.clone(), auth::authorize))
    .layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| async move {
            if compreface {
                compat::compreface::dialect(request, next).await
            } else {
                next.run(request).await
            }
        },
    ))
    .layer(from_fn_with_state(state.clone(), access::observe))
    .layer(DefaultBodyLimit::max(body_limit))
    .with_state(state)
}

#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    /// PEM certificate chain and private key: serve HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// How long in-flight requests may take to finish after a shutdown signal.
    pub shutdown_grace: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("could not listen on {addr}: {source}. Is another server using the port? Choose another with --listen")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("could not load the TLS certificate {cert} / key {key}: {source}. Both must be PEM files (the key unencrypted)")]
    Tls {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the server stopped unexpectedly: {0}")]
    Runtime(String),
}

/// Serves until SIGINT or SIGTERM, then lets in-flight requests finish (up to the grace
/// period). `on_listening` gets the bound address (useful with port 0).
pub async fn serve(
    state: SharedState,
    options: ServeOptions,
    on_listening: impl FnOnce(SocketAddr),
) -> Result<(), ServeError> {
    let header_timeout = state.limits.header_timeout;
    let connection_limit = ConnectionLimit::new(state.limits.max_connections, header_timeout);
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let handle = axum_server::Handle::new();
    let addr = options.listen;
    let mut server = axum_server::bind(addr).handle(handle.clone());
    // Slow or silent clients: a request head must arrive within the timeout, and a kept-alive
    // connection with no next request is closed after it too (a client that sends nothing at
    // all is closed by `ConnectionLimit`).
    server
        .http_builder()
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout);
    let task = match &options.tls {
        Some((cert, key)) => {
            // Several providers may be compiled in; ring is the one this crate asks for.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                .await
                .map_err(|source| ServeError::Tls {
                    cert: cert.clone(),
                    key: key.clone(),
                    source,
                })?;
            let tls = axum_server::tls_rustls::RustlsAcceptor::new(config)
                .handshake_timeout(header_timeout)
                .acceptor(connection_limit);
            tokio::spawn(server.acceptor(tls).serve(app))
        }
        None => tokio::spawn(server.acceptor(connection_limit).serve(app)),
    };
    if let Some(bound) = handle.listening().await {
        on_listening(bound);
        let signal_handle = handle.clone();
        let grace = options.shutdown_grace;
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("shutting down: finishing in-flight requests (up to {grace:?})");
            signal_handle.graceful_shutdown(Some(grace));
        });
    }
    task.await
        .map_err(|err| ServeError::Runtime(err.to_string()))?
        .map_err(|source| ServeError::Bind { addr, source })
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(err) => {
                    tracing::warn!("cannot listen for SIGTERM: {err}");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {},
            _ = terminate.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
