//! What every handler shares.

use std::sync::Arc;

use facegate::{Engine, Gallery};

use crate::error::ApiError;
use crate::keys::ApiKeys;
use crate::limits::{FailedAuthLimiter, InferenceGate, KeyRateLimiter, Limits};
use crate::metrics::Metrics;

pub type SharedState = Arc<AppState>;

pub struct AppState {
    pub engine: Arc<Engine>,
    pub gallery: Arc<dyn Gallery>,
    /// `None` only with `--insecure-no-auth`.
    pub keys: Option<Arc<ApiKeys>>,
    pub limits: Limits,
    pub gate: InferenceGate,
    pub rate: Option<KeyRateLimiter>,
    pub failures: Option<FailedAuthLimiter>,
    /// Admission to API key checks (see [`Limits::max_key_checks`]).
    pub key_checks: Arc<tokio::sync::Semaphore>,
    /// Request bodies in memory, in KiB (see [`Limits::max_body_bytes_in_flight`]).
    pub body_budget: Arc<tokio::sync::Semaphore>,
    pub metrics: Metrics,
    /// The 1:N search index, rebuilt when the gallery changes.
    pub index: facegate::ops::IndexCache,
    /// Liveness challenges issued and not yet decided.
    pub challenges: crate::api::liveness::Challenges,
}

impl AppState {
    pub fn new(
        engine: Arc<Engine>,
        gallery: Arc<dyn Gallery>,
        keys: Option<Arc<ApiKeys>>,
        limits: Limits,
    ) -> SharedState {
        Arc::new(AppState {
            gate: InferenceGate::new(&limits),
            rate: limits.rate_per_minute.map(KeyRateLimiter::new),
            failures: limits.auth_failures_per_minute.map(FailedAuthLimiter::new),
            key_checks: Arc::new(tokio::sync::Semaphore::new(limits.max_key_checks.max(1))),
            body_budget: Arc::new(tokio::sync::Semaphore::new(
                limits.max_body_bytes_in_flight.div_ceil(1024).max(1),
            )),
            engine,
            gallery,
            keys,
            limits,
            metrics: Metrics::default(),
            index: Default::default(),
            challenges: Default::default(),
        })
    }

    /// Runs model and gallery work off the async threads, within the inference limits.
    pub async fn infer<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&Engine, &dyn Gallery) -> Result<T, facegate::Error> + Send + 'static,
    ) -> Result<T, ApiError> {
        let state = Arc::clone(self);
        self.gate
            .run(&self.metrics, move || {
                work(&state.engine, state.gallery.as_ref())
            })
            .await?
            .map_err(ApiError::from)
    }

    /// Gallery-only work (no models): off the async threads, outside the inference limits.
    pub async fn with_gallery<T: Send + 'static, E: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&dyn Gallery) -> Result<T, E> + Send + 'static,
    ) -> Result<T, ApiError>
    where
        ApiError: From<E>,
    {
        let state = Arc::clone(self);
        tokio::task::spawn_blocking(move || work(state.gallery.as_ref()))
            .await
            .map_err(|err| ApiError::internal(format!("a gallery worker failed: {err}")))?
            .map_err(ApiError::from)
    }
}
