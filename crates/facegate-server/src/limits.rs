//! Back-pressure: a bounded number of inferences at a time, a short bounded queue in front of
//! them, and a per-key request rate. Memory stays bounded however many clients arrive.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::Semaphore;

use crate::error::ApiError;
use crate::metrics::Metrics;

/// The server's limits; every one is a command-line option of `facegate serve`.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest request body accepted (all images of a request together).
    pub max_body_bytes: usize,
    /// A request not answered within this gets a `timeout` error.
    pub request_timeout: Duration,
    /// Inferences (decode + detect + embed) running at once.
    pub max_inflight: usize,
    /// Requests that may wait for an inference slot; more are refused at once.
    pub max_queued: usize,
    /// How long a request may wait for a slot before it is refused with 503.
    pub queue_wait: Duration,
    /// Requests per minute per API key (`None`: unlimited).
    pub rate_per_minute: Option<NonZeroU32>,
    /// Most images in one request.
    pub max_images: usize,
    /// Most pixels in one decoded image (decompression-bomb guard).
    pub max_pixels: u64,
}

impl Default for Limits {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Limits {
            max_body_bytes: 10 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            max_inflight: cores,
            max_queued: 4 * cores,
            queue_wait: Duration::from_secs(2),
            rate_per_minute: NonZeroU32::new(600),
            max_images: 20,
            max_pixels: facegate::image::DEFAULT_MAX_PIXELS,
        }
    }
}

/// Admission to the inference workers.
pub struct InferenceGate {
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_queued: usize,
    queue_wait: Duration,
}

impl InferenceGate {
    pub fn new(limits: &Limits) -> InferenceGate {
        InferenceGate {
            slots: Arc::new(Semaphore::new(limits.max_inflight.max(1))),
            waiting: AtomicUsize::new(0),
            max_queued: limits.max_queued,
            queue_wait: limits.queue_wait,
        }
    }

    /// Runs CPU-heavy `work` on a blocking thread once a slot is free. The slot is held until
    /// `work` ends, even when the client or the request timeout has given up: that is what
    /// keeps the number of inferences bounded.
    pub async fn run<T: Send + 'static>(
        &self,
        metrics: &Metrics,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let queued = self.waiting.fetch_add(1, Ordering::SeqCst);
                let waited = if queued >= self.max_queued {
                    None
                } else {
                    tokio::time::timeout(self.queue_wait, self.slots.clone().acquire_owned())
                        .await
                        .ok()
                        .and_then(Result::ok)
                };
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                match waited {
                    Some(permit) => permit,
                    None => {
                        metrics.inference_rejected.inc();
                        return Err(overloaded());
                    }
                }
            }
        };
        metrics.inference_in_flight.inc();
        let in_flight = metrics.inference_in_flight.clone();
        tokio::task::spawn_blocking(move || {
            let result = work();
            in_flight.dec();
            drop(permit);
            result
        })
        .await
        .map_err(|err| ApiError::internal(format!("an inference worker failed: {err}")))
    }
}

fn overloaded() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "overloaded",
        "the server is busy with other requests; retry after the time in Retry-After",
    )
    .retry_after(1)
}

/// Requests per minute per key.
pub struct KeyRateLimiter {
    limiter: DefaultKeyedRateLimiter<String>,
}

impl KeyRateLimiter {
    pub fn new(per_minute: NonZeroU32) -> KeyRateLimiter {
        KeyRateLimiter {
            limiter: RateLimiter::keyed(Quota::per_minute(per_minute)),
        }
    }

    pub fn check(&self, key_id: &str) -> Result<(), ApiError> {
        self.limiter.check_key(&key_id.to_string()).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "this API key has sent more requests than its per-minute limit; retry after the time in Retry-After",
            )
            .retry_after(wait.as_secs_f64().ceil() as u64)
        })
    }
}
