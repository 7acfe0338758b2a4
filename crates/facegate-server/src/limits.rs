//! Back-pressure: a bounded number of inferences at a time, a short bounded queue in front of
//! them, and a per-key request rate. Memory stays bounded however many clients arrive.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    /// Failed authentications per minute per client address (and per key id) before further
    /// failures get 429 instead of 401 and keys with old argon2 hashes are no longer checked
    /// for that client (`None`: unlimited).
    pub auth_failures_per_minute: Option<NonZeroU32>,
    /// API keys checked at once; requests beyond it get 503 before any work is done.
    pub max_key_checks: usize,
    /// A connection that has not sent a whole request head within this is closed (slow
    /// headers); an idle kept-alive connection is closed after it too.
    pub header_timeout: Duration,
    /// Open connections at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Request bodies held in memory at once, all requests together: a request reserves what
    /// its `Content-Length` declares (the whole `max_body_bytes` when it declares nothing)
    /// before its body is read, and waits for room as long as `queue_wait`, then gets 503.
    pub max_body_bytes_in_flight: usize,
    /// Who may add faces to a person who already has some.
    pub add_faces: AddFacesPolicy,
    /// Also serve the DeepStack-compatible face API (`/v1/vision/face/...`).
    pub deepstack_api: bool,
    /// Also serve the CompreFace-compatible REST API (`/api/v1/...`).
    pub compreface_api: bool,
    /// Draw liveness challenges from a generator seeded with this, so that they are known in
    /// advance: for tests of the camera page only, never where liveness matters.
    pub challenge_seed: Option<u64>,
}

/// Who may add faces to a person who already has enrolled faces. Without a rule, a key that may
/// enroll could add anyone's face to someone else's name and then pass as them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AddFacesPolicy {
    /// Administrators; other keys only when every new face matches the person's enrolled faces
    /// at the 1:1 threshold (the photos of one person agree; someone else's face does not).
    #[default]
    Matching,
    /// Administrators only.
    AdminOnly,
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
            auth_failures_per_minute: NonZeroU32::new(30),
            max_key_checks: 64,
            header_timeout: Duration::from_secs(10),
            max_connections: 512,
            max_body_bytes_in_flight: 64 * 1024 * 1024,
            add_faces: AddFacesPolicy::default(),
            deepstack_api: false,
            compreface_api: false,
            challenge_seed: None,
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

/// Failed authentications, counted per client address and per key id. Within the budget a
/// failure is answered 401; beyond it 429 with Retry-After until the budget refills, and keys
/// with old argon2 hashes are not checked for that client meanwhile. A correct key is always
/// accepted (checking one costs microseconds): a flood of wrong keys from an address cannot lock
/// out the key's holder.
pub struct FailedAuthLimiter {
    by_client: DefaultKeyedRateLimiter<Option<IpAddr>>,
    by_key: DefaultKeyedRateLimiter<String>,
    /// Who is over budget, and until when.
    over_budget: Mutex<HashMap<FailureSource, Instant>>,
}

/// Where failures come from: a client address (`None` when the transport gives none) or a key id.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum FailureSource {
    Client(Option<IpAddr>),
    Key(String),
}

/// Limiters hold a little state per source; past this many they drop the ones that are full.
const TRACKED_SOURCES: usize = 10_000;

impl FailedAuthLimiter {
    pub fn new(per_minute: NonZeroU32) -> FailedAuthLimiter {
        FailedAuthLimiter {
            by_client: RateLimiter::keyed(Quota::per_minute(per_minute)),
            by_key: RateLimiter::keyed(Quota::per_minute(per_minute)),
            over_budget: Mutex::new(HashMap::new()),
        }
    }

    /// How long `client` (or the key it names) must wait before its failures are answered 401
    /// again; `None` when within budget.
    pub fn waiting(&self, client: Option<IpAddr>, key_id: Option<&str>) -> Option<Duration> {
        let now = Instant::now();
        let over = self.over_budget.lock().unwrap_or_else(|p| p.into_inner());
        let until = [
            over.get(&FailureSource::Client(client)),
            key_id.and_then(|id| over.get(&FailureSource::Key(id.to_string()))),
        ];
        until
            .into_iter()
            .flatten()
            .filter(|until| **until > now)
            .map(|until| *until - now)
            .max()
    }

    /// Counts one failure of `client` (and against `key_id`, when it names a real key); returns
    /// how long they must now wait, if either is over budget.
    pub fn record_failure(&self, client: Option<IpAddr>, key_id: Option<&str>) -> Option<Duration> {
        let clock = DefaultClock::default();
        let mut over = Vec::new();
        if let Err(not_until) = self.by_client.check_key(&client) {
            over.push((
                FailureSource::Client(client),
                not_until.wait_time_from(clock.now()),
            ));
        }
        if let Some(id) = key_id {
            if let Err(not_until) = self.by_key.check_key(&id.to_string()) {
                tracing::warn!("API key {id}: more failed attempts than the limit; someone may be guessing its secret");
                over.push((
                    FailureSource::Key(id.to_string()),
                    not_until.wait_time_from(clock.now()),
                ));
            }
        }
        if self.by_client.len() > TRACKED_SOURCES {
            self.by_client.retain_recent();
        }
        if self.by_key.len() > TRACKED_SOURCES {
            self.by_key.retain_recent();
        }
        if over.is_empty() {
            return self.waiting(client, key_id);
        }
        let now = Instant::now();
        let mut map = self.over_budget.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > TRACKED_SOURCES {
            map.retain(|_, until| *until > now);
        }
        let mut longest = Duration::ZERO;
        for (source, wait) in over {
            // A budget refills one failure at a time: wait until it holds a few again, not just
            // one, so a client at the limit is not let back for a single try each second.
            let wait = wait.max(Duration::from_secs(1)) * 5;
            map.insert(source, now + wait);
            longest = longest.max(wait);
        }
        Some(longest)
    }
}

/// Too many failed authentications: 429 with Retry-After.
pub fn too_many_failures(wait: Duration) -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_failures",
        "too many requests with wrong API keys; retry after the time in Retry-After with a valid key",
    )
    .retry_after(wait.as_secs_f64().ceil().max(1.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_beyond_the_budget_wait_and_other_clients_do_not() {
        let limiter = FailedAuthLimiter::new(NonZeroU32::new(3).unwrap());
        let (a, b): (Option<IpAddr>, Option<IpAddr>) =
            (Some([10, 0, 0, 1].into()), Some([10, 0, 0, 2].into()));
        for _ in 0..3 {
            assert_eq!(limiter.record_failure(a, None), None);
        }
        let wait = limiter.record_failure(a, None).expect("over budget");
        assert!(wait >= Duration::from_secs(5), "{wait:?}");
        assert!(limiter.waiting(a, None).is_some());
        assert_eq!(
            limiter.waiting(b, None),
            None,
            "another address is not affected"
        );
        assert_eq!(limiter.record_failure(b, None), None);
    }

    #[test]
    fn failures_against_one_key_are_counted_across_addresses() {
        let limiter = FailedAuthLimiter::new(NonZeroU32::new(2).unwrap());
        for i in 0..2u8 {
            assert_eq!(
                limiter.record_failure(Some([10, 0, 1, i].into()), Some("k1")),
                None
            );
        }
        assert!(limiter
            .record_failure(Some([10, 0, 1, 9].into()), Some("k1"))
            .is_some());
        assert!(limiter
            .waiting(Some([10, 0, 2, 1].into()), Some("k1"))
            .is_some());
        assert_eq!(
            limiter.waiting(Some([10, 0, 2, 1].into()), Some("k2")),
            None
        );
    }
}
