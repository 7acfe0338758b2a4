//! Liveness by challenge over HTTP: the server draws a random challenge, the client sends the
//! camera's frames in batches, the server judges them (`facegate_challenge`) and decides.
//!
//! A challenge lives in the server's memory: answered by the key that asked for it, with its
//! nonce, within its expiry, once. A finished or expired challenge is gone: its id, nonce and
//! frames are worth nothing afterwards. Frame times come from the client (its camera clock) and
//! are checked against the server's: a batch cannot claim more time than has passed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use base64::Engine as _;
use facegate::challenge::{ChallengeOutcome, ChallengeTarget, IdentityCheck, IdentityReference};
use facegate::liveness_challenge::{ChallengeRun, Rules, State as RunState, Step};
use facegate::service::FaceService;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::audit::Actor;
use crate::error::{ApiError, ErrorBody};
use crate::input::Form;
use crate::keys::Caller;
use crate::state::SharedState;

/// Steps in a challenge: as many as everywhere else (3, from the 4 movements and the blink).
const STEPS: usize = facegate::challenge::DEFAULT_CHALLENGE_LENGTH;
/// Challenges waiting for frames at once, all callers together.
const MAX_OPEN: usize = 1000;
/// How far a frame's time may run ahead of the server's clock since the challenge was issued.
const CLOCK_SLACK: f64 = 2.0;

/// A challenge issued and not yet decided.
struct Pending {
    nonce: String,
    key_id: String,
    target: ChallengeTarget,
    run: ChallengeRun,
    reference: IdentityReference<'static>,
    issued: Instant,
    expires: Instant,
    frames: u64,
    checks: Vec<IdentityCheck>,
}

/// The server's open challenges.
#[derive(Default)]
pub struct Challenges {
    open: Mutex<HashMap<String, Pending>>,
    /// With `Limits::challenge_seed`: the seeded generator steps are drawn from.
    seeded: Mutex<Option<rand::rngs::StdRng>>,
}

impl Challenges {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A challenge's steps from `choices`: random, or from the seeded generator when the
    /// server has a seed.
    fn steps(&self, seed: Option<u64>, choices: &[Step]) -> Vec<Step> {
        use rand::SeedableRng;
        match seed {
            None => Step::random(&mut rand::rng(), STEPS, choices),
            Some(seed) => {
                let mut seeded = self.seeded.lock().unwrap_or_else(|p| p.into_inner());
                let rng = seeded.get_or_insert_with(|| rand::rngs::StdRng::seed_from_u64(seed));
                Step::random(rng, STEPS, choices)
            }
        }
    }
}

/// Ask for a challenge: `{"person": "alice"}` to verify a person, or `{}` to identify
/// whoever answers it (needs the identify role).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChallengeRequest {
    /// The enrolled person the challenge verifies; absent: identify (1:N), the same enrolled
    /// person throughout.
    pub person: Option<String>,
}

/// A challenge to answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChallengeIssued {
    pub id: String,
    /// Send it back with every batch of frames.
    pub nonce: String,
    /// The person verified (absent: identify).
    pub person: Option<String>,
    /// In order: `left`, `right`, `up`, `down` (named as seen in the camera's image: "left" =
    /// the nose moves toward the image's left edge; in a mirrored preview, the user's left)
    /// and `blink` (both eyes, once, looking at the camera).
    pub steps: Vec<String>,
    /// Time for each movement once the head is back at the front.
    pub step_seconds: f64,
    /// Time to show a frontal face at the start, between movements and at the end.
    pub settle_seconds: f64,
    /// The challenge is gone after this long.
    pub expires_in_seconds: f64,
    /// Send at least this many frames per second.
    pub min_frames_per_second: f64,
}

/// Frames for a challenge: multipart parts `images` (JPEG or PNG) or JSON base64 `images`,
/// with `times_ms` (their camera times in milliseconds, comma-separated, increasing) and the
/// challenge's `nonce`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FramesRequest {
    pub nonce: String,
    /// Milliseconds, one per image, e.g. `"0,100,200"`.
    pub times_ms: String,
    /// Base64 image bytes or `data:` URLs.
    pub images: Vec<String>,
}

/// Where a challenge stands after a batch.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChallengeProgress {
    pub id: String,
    /// `starting` (look at the camera), `step`, `ending` (back to the front), `passed`,
    /// `failed`.
    pub state: String,
    /// With `step`: which one (1-based) and what it asks.
    pub step: Option<usize>,
    pub asked: Option<String>,
    pub steps: Vec<String>,
    /// Set once decided.
    pub passed: Option<bool>,
    /// Why it failed, for people, and as a stable code (`wrong_move`, `step_timed_out`,
    /// `second_face`, `face_lost`, `not_the_person`, ...).
    pub reason: Option<String>,
    pub reason_code: Option<String>,
    pub frames: u64,
    pub identity_checks: usize,
    /// Who passed (the person verified, or whoever was identified).
    pub identity: Option<String>,
}

fn step_names(steps: &[Step]) -> Vec<String> {
    steps.iter().map(|s| s.name().to_string()).collect()
}

fn progress(id: &str, p: &Pending) -> ChallengeProgress {
    let steps = step_names(p.run.steps());
    let (state, step, asked, passed, reason, reason_code) = match p.run.state() {
        RunState::Starting => ("starting", None, None, None, None, None),
        RunState::Step { step, asked, .. } => (
            "step",
            Some(step + 1),
            Some(asked.name().to_string()),
            None,
            None,
            None,
        ),
        RunState::Ending { .. } => ("ending", None, None, None, None, None),
        RunState::Passed { .. } => ("passed", None, None, Some(true), None, None),
        RunState::Failed(failure) => (
            "failed",
            None,
            None,
            Some(false),
            Some(failure.to_string()),
            serde_json::to_value(failure)
                .ok()
                .and_then(|v| v["reason"].as_str().map(str::to_string)),
        ),
    };
    ChallengeProgress {
        id: id.to_string(),
        state: state.to_string(),
        step,
        asked,
        steps,
        passed,
        reason,
        reason_code,
        frames: p.frames,
        identity_checks: p.checks.len(),
        identity: match p.run.state() {
            RunState::Passed { identity, .. } => Some(identity.clone()),
            _ => None,
        },
    }
}

fn unknown_challenge() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_challenge",
        "no open challenge has this id (it was answered, expired, or belongs to another key); ask for a new one",
    )
}

fn random_token() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>())
}

/// Issue a liveness challenge: random head movements and blinks, answered with frames from
/// the camera (`POST /v1/liveness/challenges/{id}/frames`), verifying a named person or
/// identifying whoever answers.
#[utoipa::path(
    post, path = "/v1/liveness/challenges", tag = "liveness",
    request_body(content((ChallengeRequest = "application/json"))),
    responses(
        (status = 201, body = ChallengeIssued, description = "The challenge to answer"),
        (status = 400, body = ErrorBody, description = "bad_request: malformed body, missing or unknown field"),
        (status = 401, body = ErrorBody, description = "unauthorized: missing, invalid or revoked API key"),
        (status = 403, body = ErrorBody, description = "forbidden: the key's role does not allow this route, or identifying (no person) needs the identify role"),
        (status = 404, body = ErrorBody, description = "unknown_person (keys that may list people; others get the challenge, which then fails)"),
        (status = 409, body = ErrorBody, description = "empty_gallery, model_mismatch"),
        (status = 429, body = ErrorBody, description = "rate_limited (see Retry-After)"),
        (status = 503, body = ErrorBody, description = "overloaded: too many open challenges, gallery_unavailable (see Retry-After)"),
    ),
    security(("api_key" = []), ("api_key_header" = []))
)]
pub async fn create_challenge(
    State(state): State<SharedState>,
    actor: Actor,
    caller: Option<Extension<Caller>>,
    form: Form,
) -> Result<(StatusCode, Json<ChallengeIssued>), ApiError> {
    form.only(&["person"])?;
    let person = form
        .text("person")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_string);
    let key_id = caller
        .as_ref()
        .map_or_else(|| "anonymous".to_string(), |Extension(c)| c.key_id.clone());
    let sees_people = actor.0.sees_people();
    if person.is_none() && !sees_people {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "a challenge without a person identifies whoever answers it, which needs the role identify or higher; name the person to verify",
        ));
    }
    let engine = state.engine.clone();
    let shared = state.clone();
    let lookup = person.clone();
    let reference = state
        .with_gallery(
            move |gallery| -> Result<IdentityReference<'static>, facegate::Error> {
                let Some(lookup) = lookup else {
                    // Identify: the server's own index, or the gallery that searches itself.
                    return Ok(match shared.index.get(gallery, engine.model_id())? {
                        Some(index) => IdentityReference::Index(index),
                        None => IdentityReference::SharedGallery(shared.gallery.clone()),
                    });
                };
                match gallery.person(&lookup) {
                    Ok(found) => Ok(IdentityReference::Person {
                        templates: gallery.templates_of(&found.name, engine.model_id())?,
                        name: found.name,
                    }),
                    // A key that may not learn who is enrolled gets a challenge all the same; it
                    // fails at the first identity check.
                    Err(facegate::gallery::GalleryError::UnknownPerson { .. }) if !sees_people => {
                        Ok(IdentityReference::Person {
                            name: lookup,
                            templates: Vec::new(),
                        })
                    }
                    Err(err) => Err(err.into()),
                }
            },
        )
        .await?;
    let expected = reference.expected();
    let rules = Rules::default();
    let steps = state.challenges.steps(
        state.limits.challenge_seed,
        facegate::challenge::askable_steps(&state.engine),
    );
    let lifetime = rules.settle_timeout * 2.0
        + steps.len() as f64 * (rules.step_timeout + rules.settle_timeout)
        + 10.0;
    let now = Instant::now();
    let id = random_token();
    let nonce = random_token();
    let issued = ChallengeIssued {
        id: id.clone(),
        nonce: nonce.clone(),
        person: person.clone(),
        steps: step_names(&steps),
        step_seconds: rules.step_timeout,
        settle_seconds: rules.settle_timeout,
        expires_in_seconds: lifetime,
        min_frames_per_second: (1.0 / rules.max_frame_gap).ceil(),
    };
    let pending = Pending {
        nonce,
        key_id,
        target: match &person {
            Some(name) => ChallengeTarget::Person(name.clone()),
            None => ChallengeTarget::Anyone,
        },
        run: ChallengeRun::new(steps, rules, expected),
        reference,
        issued: now,
        expires: now + Duration::from_secs_f64(lifetime),
        frames: 0,
        checks: Vec::new(),
    };
    {
        let mut open = state.challenges.lock();
        open.retain(|_, p| p.expires > now);
        if open.len() >= MAX_OPEN {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "too many liveness challenges are open; retry after the time in Retry-After",
            )
            .retry_after(5));
        }
        open.insert(id, pending);
    }
    Ok((StatusCode::CREATED, Json(issued)))
}

/// Frames answering a challenge, in time order, in as many batches as the client likes
/// (each within the server's image limit). Every batch says where the challenge stands; the
/// batch that decides it gets `passed` or `failed` with the reason, and the challenge is gone.
#[utoipa::path(
    post, path = "/v1/liveness/challenges/{id}/frames", tag = "liveness",
    params(("id" = String, Path)),
    request_body(content(
        (FramesRequest = "application/json"),
        (FramesRequest = "multipart/form-data"),
    )),
    responses(
        (status = 200, body = ChallengeProgress, description = "Where the challenge stands"),
        (status = 400, body = ErrorBody, description = "bad_request: wrong nonce, times that do not match the images or run ahead of the server's clock; challenge_input: frames out of order"),
        (status = 401, body = ErrorBody, description = "unauthorized: missing, invalid or revoked API key"),
        (status = 403, body = ErrorBody, description = "forbidden: the key's role does not allow this route"),
        (status = 404, body = ErrorBody, description = "unknown_challenge: answered, expired, another key's, or a batch of it is being judged"),
        (status = 409, body = ErrorBody, description = "empty_gallery, model_mismatch"),
        (status = 413, body = ErrorBody, description = "payload_too_large (body), image_too_large (pixels)"),
        (status = 415, body = ErrorBody, description = "unsupported_media_type, unsupported_format"),
        (status = 422, body = ErrorBody, description = "corrupt_image"),
        (status = 429, body = ErrorBody, description = "rate_limited (see Retry-After)"),
        (status = 500, body = ErrorBody, description = "internal, model_error, gallery_error"),
        (status = 503, body = ErrorBody, description = "overloaded, timeout (see Retry-After)"),
    ),
    security(("api_key" = []), ("api_key_header" = []))
)]
pub async fn challenge_frames(
    State(state): State<SharedState>,
    actor: Actor,
    caller: Option<Extension<Caller>>,
    Path(id): Path<String>,
    mut form: Form,
) -> Result<Json<ChallengeProgress>, ApiError> {
    form.only(&["nonce", "times_ms", "images", "image"])?;
    let key_id = caller.map_or_else(|| "anonymous".to_string(), |Extension(c)| c.key_id);
    let nonce = form.text("nonce").unwrap_or_default().to_string();
    let times: Vec<f64> = form
        .text("times_ms")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| t.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0))
        .collect::<Option<Vec<f64>>>()
        .ok_or_else(|| {
            ApiError::bad_request("times_ms must be milliseconds, 0 or more, separated by commas")
        })?;
    let images = form.take_images("image");
    if images.is_empty() || images.len() != times.len() {
        return Err(ApiError::bad_request(format!(
            "send one time in times_ms per image: {} images, {} times",
            images.len(),
            times.len()
        )));
    }
    // Take the challenge out while its batch is judged: one batch at a time (a second batch
    // meanwhile finds no open challenge). Frames judged before a bad one stay judged.
    let mut pending = {
        let mut open = state.challenges.lock();
        let now = Instant::now();
        match open.get(&id) {
            Some(p) if p.key_id != key_id => return Err(unknown_challenge()),
            Some(p) if p.expires <= now => {
                open.remove(&id);
                return Err(unknown_challenge());
            }
            Some(p) if !bool::from(subtle_eq(p.nonce.as_bytes(), nonce.as_bytes())) => {
                return Err(ApiError::bad_request(
                    "the nonce is not this challenge's: send the one it was issued with",
                ))
            }
            Some(_) => open.remove(&id).ok_or_else(unknown_challenge)?,
            None => {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "unknown_challenge",
                    "no open challenge has this id (it was answered, expired, belongs to another key, or a batch of it is being judged); ask for a new one",
                ))
            }
        }
    };
    let elapsed = pending.issued.elapsed().as_secs_f64();
    if let Some(ahead) = times.iter().find(|t| **t / 1000.0 > elapsed + CLOCK_SLACK) {
        let message = format!(
            "a frame at {ahead} ms is later than the {:.0} ms since the challenge was issued: frame times must come from the camera's clock",
            elapsed * 1000.0
        );
        state.challenges.lock().insert(id, pending);
        return Err(ApiError::bad_request(message));
    }
    let max_pixels = state.limits.max_pixels;
    let shared = state.clone();
    let id_for_work = id.clone();
    let result = state
        .infer(move |engine, gallery| {
            let outcome = judge_batch(engine, &mut pending, &images, &times, max_pixels);
            let decided = pending.run.state().is_final();
            if decided {
                let outcome = ChallengeOutcome {
                    steps: pending.run.steps().to_vec(),
                    passed: matches!(pending.run.state(), RunState::Passed { .. }),
                    state: pending.run.state().clone(),
                    reason: match pending.run.state() {
                        RunState::Failed(f) => Some(f.to_string()),
                        _ => None,
                    },
                    frames: pending.frames,
                    frames_dropped: 0,
                    identity_checks: pending.checks.clone(),
                    model: engine.model_id().to_string(),
                };
                FaceService::new(engine, gallery).challenge_decided(
                    &actor.0,
                    &pending.target,
                    &outcome,
                )?;
            }
            let answer = progress(&id_for_work, &pending);
            Ok((outcome, decided, pending, answer))
        })
        .await?;
    let (outcome, decided, pending, answer) = result;
    if !decided {
        shared.challenges.lock().insert(id, pending);
    }
    outcome?;
    Ok(Json(answer))
}

/// Feeds one batch to the run: each frame detected, identity checked when the run asks.
fn judge_batch(
    engine: &facegate::Engine,
    pending: &mut Pending,
    images: &[crate::input::Upload],
    times: &[f64],
    max_pixels: u64,
) -> Result<(), ApiError> {
    for (upload, t_ms) in images.iter().zip(times) {
        if pending.run.state().is_final() {
            break;
        }
        let image = upload.decode(max_pixels)?;
        let faces = engine.detect(&image.rgb)?;
        let eyes = facegate::challenge::read_eyes(engine, &image.rgb, &faces)?;
        let t = t_ms / 1000.0;
        let verdict = pending
            .run
            .observe_with_eyes(t, &faces, &eyes)
            .map_err(facegate::Error::from)?;
        pending.frames += 1;
        if verdict.needs_identity {
            if let Some(face) = &verdict.tracked {
                let check = match engine
                    .embed_at(&image.rgb, std::slice::from_ref(face))?
                    .pop()
                {
                    Some(embedding) => pending.reference.check(engine, &embedding, t)?,
                    None => IdentityCheck {
                        time_s: t,
                        person: None,
                        distance: None,
                        threshold: engine.threshold().value,
                    },
                };
                pending
                    .run
                    .identity(check.person.as_deref())
                    .map_err(facegate::Error::from)?;
                pending.checks.push(check);
            }
        }
    }
    Ok(())
}

fn subtle_eq(a: &[u8], b: &[u8]) -> subtle::Choice {
    use subtle::ConstantTimeEq;
    a.ct_eq(b)
}
