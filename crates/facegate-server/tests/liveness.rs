//! Liveness by challenge over HTTP, as a camera client answers it: ask for a challenge, send
//! frames in batches paced like a camera, read the decision. Every answer is checked against
//! the OpenAPI document. The genuine answer is cut from a real clip of a person turning their
//! head (`../shared/datasets/videos`, skipped with a message where absent, or without ffmpeg).

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use facegate::gallery::{Gallery, SqliteGallery};
use facegate_server::{Limits, Role};
use serde_json::{json, Value};
use support::{assert_documented, b64, photo, Server};

const CREATE: &str = "/v1/liveness/challenges";
const FRAMES: &str = "/v1/liveness/challenges/{id}/frames";

fn limits() -> Limits {
    Limits {
        rate_per_minute: None,
        ..Limits::default()
    }
}

fn enroll(server: &Server, admin: &str, name: &str, image: &[u8]) {
    let reply = server.post_json(
        "/v1/people",
        Some(admin),
        &json!({ "name": name, "image": b64(image) }),
    );
    assert_eq!(reply.status, 201, "{}", reply.text);
}

/// Sends `frames` (camera time in seconds, JPEG bytes) in batches of ten, never ahead of the
/// server's clock, until the challenge is decided; the last answer.
fn answer(server: &Server, key: &str, issued: &Value, frames: &[(f64, Vec<u8>)]) -> support::Reply {
    let doc = server.openapi();
    let started = Instant::now();
    let path = format!(
        "/v1/liveness/challenges/{}/frames",
        issued["id"].as_str().unwrap()
    );
    let mut last = None;
    for batch in frames.chunks(10) {
        let newest = batch.last().map_or(0.0, |f| f.0);
        let wait = newest - started.elapsed().as_secs_f64();
        if wait > 0.0 {
            std::thread::sleep(Duration::from_secs_f64(wait));
        }
        let times: Vec<String> = batch
            .iter()
            .map(|(t, _)| format!("{:.0}", t * 1000.0))
            .collect();
        let images: Vec<String> = batch.iter().map(|(_, jpeg)| b64(jpeg)).collect();
        let reply = server.post_json(
            &path,
            Some(key),
            &json!({ "nonce": issued["nonce"], "times_ms": times.join(","), "images": images }),
        );
        assert_documented(&doc, "post", FRAMES, &reply);
        assert_eq!(reply.status, 200, "{}", reply.text);
        let decided = reply.json["passed"].is_boolean();
        last = Some(reply);
        if decided {
            break;
        }
    }
    last.expect("frames were sent")
}

fn issue(server: &Server, key: &str, person: &str) -> Value {
    let body = if person.is_empty() {
        json!({})
    } else {
        json!({ "person": person })
    };
    let reply = server.post_json(CREATE, Some(key), &body);
    assert_documented(&server.openapi(), "post", CREATE, &reply);
    assert_eq!(reply.status, 201, "{}", reply.text);
    reply.json
}

#[test]
fn a_still_photo_held_to_the_camera_fails_and_bad_batches_are_refused() {
    let server = Server::start(limits());
    let admin = server.key(Role::Admin);
    let verify = server.key(Role::Verify);
    let face = photo("train", "ben_afflek", 0);
    enroll(&server, &admin, "ben", &face);

    let issued = issue(&server, &verify, "ben");
    assert_eq!(
        issued["steps"].as_array().unwrap().len(),
        facegate::challenge::DEFAULT_CHALLENGE_LENGTH
    );
    let path = format!(
        "/v1/liveness/challenges/{}/frames",
        issued["id"].as_str().unwrap()
    );
    let doc = server.openapi();
    let send = |key: &str, body: Value| {
        let reply = server.post_json(&path, Some(key), &body);
        assert_documented(&doc, "post", FRAMES, &reply);
        reply
    };
    // Wrong nonce, times that do not match the images, a frame from the future, another key.
    let frame = b64(&face);
    let wrong = send(
        &verify,
        json!({ "nonce": "nope", "times_ms": "0", "images": [frame] }),
    );
    assert_eq!(
        (wrong.status, wrong.code()),
        (400, "bad_request"),
        "{}",
        wrong.text
    );
    let mismatched = send(
        &verify,
        json!({ "nonce": issued["nonce"], "times_ms": "0,100", "images": [frame] }),
    );
    assert_eq!(mismatched.status, 400);
    let future = send(
        &verify,
        json!({ "nonce": issued["nonce"], "times_ms": "60000", "images": [frame] }),
    );
    assert_eq!(future.status, 400);
    assert!(future.text.contains("clock"), "{}", future.text);
    let other_key = server.key(Role::Verify);
    let stolen = send(
        &other_key,
        json!({ "nonce": issued["nonce"], "times_ms": "0", "images": [frame] }),
    );
    assert_eq!((stolen.status, stolen.code()), (404, "unknown_challenge"));

    // The photo, frame after frame: it never turns its head, so the challenge times out.
    let still: Vec<(f64, Vec<u8>)> = (0..70)
        .map(|i| (f64::from(i) * 0.1, face.clone()))
        .collect();
    let decided = answer(&server, &verify, &issued, &still);
    assert_eq!(decided.json["passed"], false, "{}", decided.text);
    let reason = decided.json["reason_code"].as_str().unwrap_or_default();
    assert!(
        ["step_timed_out", "no_frontal_start"].contains(&reason),
        "{}",
        decided.text
    );

    // Decided: the challenge is gone, and so is its nonce.
    let again = send(
        &verify,
        json!({ "nonce": issued["nonce"], "times_ms": "8000", "images": [frame] }),
    );
    assert_eq!((again.status, again.code()), (404, "unknown_challenge"));

    // Out of order within a challenge.
    let issued = issue(&server, &verify, "ben");
    let path = format!(
        "/v1/liveness/challenges/{}/frames",
        issued["id"].as_str().unwrap()
    );
    let reply = server.post_json(
        &path,
        Some(&verify),
        &json!({ "nonce": issued["nonce"], "times_ms": "100,0", "images": [frame, frame] }),
    );
    assert_eq!(
        (reply.status, reply.code()),
        (400, "challenge_input"),
        "{}",
        reply.text
    );

    // Audited: the decided challenge, with its reason.
    let gallery = SqliteGallery::open(&server.gallery_path).unwrap();
    let entry = gallery
        .audit_log(None, 100)
        .unwrap()
        .into_iter()
        .find(|e| e.action == "challenge")
        .expect("a challenge entry");
    assert_eq!(entry.decision.as_deref(), Some("failed"));
    assert!(entry.detail.unwrap().contains("steps "));
}

#[test]
fn an_unknown_person_is_refused_to_keys_that_may_list_people() {
    let server = Server::start(limits());
    let identify = server.key(Role::Identify);
    let reply = server.post_json(CREATE, Some(&identify), &json!({ "person": "nobody" }));
    assert_documented(&server.openapi(), "post", CREATE, &reply);
    assert_eq!((reply.status, reply.code()), (404, "unknown_person"));
    // A verify key cannot tell: it gets a challenge, which its first identity check fails.
    let verify = server.key(Role::Verify);
    let reply = server.post_json(CREATE, Some(&verify), &json!({ "person": "nobody" }));
    assert_eq!(reply.status, 201);
}

/// Frames of a shared clip at 10 per second, as JPEG files made by ffmpeg.
fn clip_frames(name: &str, dir: &Path) -> Option<Vec<(f64, Vec<u8>)>> {
    let clip = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/datasets/videos")
        .join(name);
    if !clip.exists() {
        eprintln!("skipped: {} is not here", clip.display());
        return None;
    }
    let status = std::process::Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-i"])
        .arg(&clip)
        .args(["-vf", "fps=10", "-q:v", "3"])
        .arg(dir.join("f%04d.jpg"))
        .status();
    if !status.is_ok_and(|s| s.success()) {
        assert!(
            std::env::var("FACEGATE_REQUIRE_FFMPEG").as_deref() != Ok("1"),
            "FACEGATE_REQUIRE_FFMPEG=1 but ffmpeg could not extract frames"
        );
        eprintln!("skipped: ffmpeg is needed to cut the clip into frames");
        return None;
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    Some(
        files
            .iter()
            .enumerate()
            .map(|(i, f)| (i as f64 / 10.0, std::fs::read(f).unwrap()))
            .collect(),
    )
}

#[test]
fn a_person_who_follows_the_prompts_passes() {
    let dir = tempfile::tempdir().unwrap();
    let Some(frames) = clip_frames("selfie_turn_lr_nod_real.mp4", dir.path()) else {
        return;
    };
    let server = Server::start(limits());
    let admin = server.key(Role::Admin);
    let verify = server.key(Role::Verify);
    enroll(&server, &admin, "selfie", &frames[5].1);
    let issued = issue(&server, &verify, "selfie");

    // The clip's movements cut into the order the server asked for: what a person following
    // the prompts sends.
    let decided = answer(&server, &verify, &issued, &cut(&frames, &issued));
    assert_eq!(
        decided.json["passed"], true,
        "{} for steps {}",
        decided.text, issued["steps"]
    );
    // At the start, after each of the first two steps and at the end.
    assert!(decided.json["identity_checks"].as_u64().unwrap() >= 4);
    assert_eq!(decided.json["identity"], "selfie");

    // Identify by challenge: no person named; whoever answers must be one enrolled person
    // throughout. A verify key may not; an identify key may.
    let refused = server.post_json(CREATE, Some(&verify), &json!({}));
    assert_documented(&server.openapi(), "post", CREATE, &refused);
    assert_eq!((refused.status, refused.code()), (403, "forbidden"));
    let identify = server.key(Role::Identify);
    let issued = issue(&server, &identify, "");
    assert!(issued["person"].is_null());
    let decided = answer(&server, &identify, &issued, &cut(&frames, &issued));
    assert_eq!(decided.json["passed"], true, "{}", decided.text);
    assert_eq!(decided.json["identity"], "selfie");
}

/// The clip's movements (its README's annotated times, each with the return to the front),
/// cut into the order of `issued`'s steps, after a frontal start and before a frontal end,
/// with continuous camera times.
fn cut(frames: &[(f64, Vec<u8>)], issued: &Value) -> Vec<(f64, Vec<u8>)> {
    let segment = |step: &str| match step {
        "right" => (2.1, 6.6),
        "left" => (7.3, 11.2),
        "down" => (11.3, 14.2),
        "up" => (14.3, 16.8),
        // The eyes close at about 17.75 s, the head still (bench/liveness/manifest.tsv).
        "blink" => (17.0, 18.3),
        other => panic!("{other}"),
    };
    let mut parts = vec![(0.0, 2.0)];
    parts.extend(
        issued["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| segment(s.as_str().unwrap())),
    );
    parts.push((0.0, 2.0));
    let mut out: Vec<(f64, Vec<u8>)> = Vec::new();
    let mut t = 0.0;
    for (a, b) in parts {
        for (source_t, jpeg) in frames.iter().filter(|(ft, _)| *ft >= a && *ft <= b) {
            out.push((t + (source_t - a), jpeg.clone()));
        }
        t = out.last().map_or(0.0, |f| f.0) + 0.1;
    }
    out
}
