//! Video input as a user runs it: short real videos are built from the 5-celebrity photos with
//! the `ffmpeg` program, then enrolled from, verified against and identified in. Without
//! `ffmpeg` these tests say so and pass, unless `FACEGATE_REQUIRE_FFMPEG=1` (CI sets it).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::{facegate, photo_path};

fn have_ffmpeg() -> bool {
    let found = Command::new("ffmpeg").arg("-version").output().is_ok()
        && Command::new("ffprobe").arg("-version").output().is_ok();
    if !found {
        assert!(
            std::env::var("FACEGATE_REQUIRE_FFMPEG").as_deref() != Ok("1"),
            "FACEGATE_REQUIRE_FFMPEG=1 but ffmpeg/ffprobe are not installed"
        );
        eprintln!("skipped: the video tests need the ffmpeg program (apt-get install ffmpeg)");
    }
    found
}

/// A segment of a test video: a photo (optionally blurred) or black, shown for `seconds`.
enum Shot {
    Photo(PathBuf, f32),
    Blurred(PathBuf, f32),
    Black(f32),
    /// Two photos side by side: a frame with two faces.
    Pair(PathBuf, PathBuf, f32),
}

/// Builds a 640x480, 10 fps MP4 from the shots.
fn video(dir: &Path, name: &str, shots: &[Shot]) -> PathBuf {
    let mut inputs: Vec<String> = Vec::new();
    let mut filters = Vec::new();
    let mut extra: Vec<(PathBuf, f32)> = Vec::new();
    for (i, shot) in shots.iter().enumerate() {
        let fit = "scale=640:480:force_original_aspect_ratio=decrease,pad=640:480:(ow-iw)/2:(oh-ih)/2,setsar=1,fps=10,format=yuv420p";
        let (args, filter, seconds) = match shot {
            Shot::Photo(path, s) => (
                vec![
                    "-loop".into(),
                    "1".into(),
                    "-i".into(),
                    path.display().to_string(),
                ],
                fit.to_string(),
                *s,
            ),
            Shot::Blurred(path, s) => (
                vec![
                    "-loop".into(),
                    "1".into(),
                    "-i".into(),
                    path.display().to_string(),
                ],
                format!("{fit},boxblur=6:2"),
                *s,
            ),
            Shot::Pair(left, right, s) => {
                // Two inputs for this shot: its own index and one more after the last shot.
                let half = "scale=320:480:force_original_aspect_ratio=decrease,pad=320:480:(ow-iw)/2:(oh-ih)/2,setsar=1";
                let other = shots.len() + extra.len();
                extra.push((right.clone(), *s));
                (
                    vec!["-loop".into(), "1".into(), "-i".into(), left.display().to_string()],
                    format!("{half}[l{i}];[{other}:v]{half}[r{i}];[l{i}][r{i}]hstack,fps=10,format=yuv420p"),
                    *s,
                )
            }
            Shot::Black(s) => (
                vec![
                    "-f".into(),
                    "lavfi".into(),
                    "-i".into(),
                    "color=black:s=640x480:r=10".into(),
                ],
                "setsar=1,fps=10,format=yuv420p".to_string(),
                *s,
            ),
        };
        inputs.push("-t".into());
        inputs.push(seconds.to_string());
        inputs.extend(args);
        filters.push(format!("[{i}:v]{filter}[v{i}]"));
    }
    for (path, seconds) in &extra {
        inputs.extend([
            "-t".to_string(),
            seconds.to_string(),
            "-loop".into(),
            "1".into(),
            "-i".into(),
            path.display().to_string(),
        ]);
    }
    let joined: String = (0..shots.len()).map(|i| format!("[v{i}]")).collect();
    let graph = format!(
        "{};{joined}concat=n={}:v=1:a=0[out]",
        filters.join(";"),
        shots.len()
    );
    let out = dir.join(name);
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args(&inputs)
        .args([
            "-filter_complex",
            &graph,
            "-map",
            "[out]",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
        ])
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "ffmpeg could not build {name}");
    out
}

fn json_lines(out: &str) -> Vec<Value> {
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn enroll_verify_and_identify_from_video() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let gallery = dir.path().join("gallery.db");
    let ben = |n| photo_path("val", "ben_afflek", n);
    let madonna = |n| photo_path("val", "madonna", n);
    let a = video(
        dir.path(),
        "a.mp4",
        &[
            Shot::Photo(ben(0), 1.5),
            Shot::Photo(ben(1), 1.5),
            Shot::Photo(ben(2), 1.5),
        ],
    );
    let b = video(
        dir.path(),
        "b.mp4",
        &[Shot::Photo(madonna(0), 1.5), Shot::Photo(madonna(2), 1.5)],
    );
    let mixed = video(
        dir.path(),
        "mixed.mp4",
        &[
            Shot::Photo(ben(3), 2.0),
            Shot::Black(1.5),
            Shot::Photo(madonna(2), 2.0),
            Shot::Black(1.0),
        ],
    );

    // Enroll from A's clip: the best, distinct frames.
    let (code, out, err) = facegate(
        &gallery,
        &["--json", "enroll", "ben", "--video", a.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}{out}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    let used = doc["frames_used"].as_array().unwrap();
    assert!((1..=3).contains(&used.len()), "{out}");
    let times: Vec<f64> = used.iter().map(|f| f["time_s"].as_f64().unwrap()).collect();
    assert!(
        times.windows(2).all(|w| w[1] - w[0] >= 0.5),
        "frames from different moments: {times:?}"
    );
    assert!(doc["frames"].as_array().unwrap().len() >= 20);
    // Madonna from photos, for the identify part.
    for n in [0, 1] {
        let photo = photo_path("train", "madonna", n);
        let (code, _, err) = facegate(&gallery, &["enroll", "madonna", photo.to_str().unwrap()]);
        assert_eq!(code, 0, "{err}");
    }

    // K of N: A's clip matches ben, B's does not.
    let (code, out, err) = facegate(
        &gallery,
        &["--json", "verify", "ben", "--video", a.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}{out}");
    let verdict: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(verdict["ended_by"], "matched");
    assert!(verdict["matching_frames"].as_u64().unwrap() >= 3);
    let (code, out, err) = facegate(
        &gallery,
        &["--json", "verify", "ben", "--video", b.to_str().unwrap()],
    );
    assert_eq!(code, 1, "{err}{out}");
    let verdict: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(verdict["is_match"], false);
    assert_eq!(verdict["ended_by"], "end of video");
    // A time limit shorter than the wait for a match: no match.
    let (code, out, _) = facegate(
        &gallery,
        &[
            "--json",
            "verify",
            "madonna",
            "--video",
            mixed.to_str().unwrap(),
            "--timeout",
            "1s",
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["ended_by"],
        "timeout"
    );

    // Identify on the mixed clip: ben enters (and leaves) before madonna enters.
    let identify = |detect_every: &str, embed_every: &str| -> String {
        let (code, out, err) = facegate(
            &gallery,
            &[
                "--json",
                "identify",
                "--video",
                mixed.to_str().unwrap(),
                "--detect-every",
                detect_every,
                "--embed-every",
                embed_every,
            ],
        );
        assert_eq!(code, 0, "{err}{out}");
        out
    };
    let out = identify("1", "1");
    let events = json_lines(&out);
    // Following faces between whole-frame searches finds the same people, in the same
    // order, searching fewer frames whole.
    let people = |events: &[Value]| -> Vec<String> {
        events
            .iter()
            .filter(|e| e["event"] == "enter")
            .map(|e| e["person"].to_string())
            .collect()
    };
    let followed_out = identify("5", "10");
    let followed = json_lines(&followed_out);
    assert_eq!(people(&followed), people(&events), "{followed_out}");
    let end = |events: &[Value]| events.last().cloned().unwrap_or_default();
    assert_eq!(
        end(&events)["searched_whole"],
        end(&events)["frames"],
        "{out}"
    );
    // (Frames without a face are always searched whole: the clip has 13 black ones.)
    assert!(
        end(&followed)["searched_whole"].as_u64().unwrap()
            < end(&followed)["frames"].as_u64().unwrap(),
        "{followed_out}"
    );
    let position = |kind: &str, who: &str| {
        events
            .iter()
            .position(|e| e["event"] == kind && e["person"] == who)
            .unwrap_or_else(|| panic!("no {kind} event for {who}: {out}"))
    };
    assert!(
        position("enter", "ben") < position("enter", "madonna"),
        "{out}"
    );
    assert!(
        position("leave", "ben") < position("enter", "madonna"),
        "{out}"
    );
    let enters = events.iter().filter(|e| e["event"] == "enter").count();
    assert_eq!(enters, 2, "one event per appearance, not per frame: {out}");
    let end = events.last().unwrap();
    assert_eq!(end["event"], "end");
    assert!(end["frames"].as_u64().unwrap() >= 25);

    // Video decisions are audited like photo ones: who, which person, the decision.
    let (code, out, _) = facegate(&gallery, &["--json", "audit"]);
    assert_eq!(code, 0);
    let log: Value = serde_json::from_str(&out).unwrap();
    let summary: Vec<String> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| format!("{} {} {}", e["action"], e["person"], e["decision"]))
        .collect();
    let expected = [
        r#""enroll" "ben" "added""#,
        r#""enroll" "madonna" "added""#,
        r#""enroll" "madonna" "added""#,
        r#""verify" "ben" "match""#,
        r#""verify" "ben" "no_match""#,
        r#""verify" "madonna" "no_match""#,
        r#""identify" "ben" "identified""#,
        r#""identify" "madonna" "identified""#,
        // The same clip identified again, following faces between whole-frame searches.
        r#""identify" "ben" "identified""#,
        r#""identify" "madonna" "identified""#,
    ];
    assert_eq!(summary, expected, "{out}");
    assert!(out.contains("video "), "the detail names the source: {out}");
}

#[test]
fn blurred_and_crowded_frames_are_not_enrolled() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let gallery = dir.path().join("gallery.db");
    let sharp = photo_path("val", "ben_afflek", 0);
    let clip = video(
        dir.path(),
        "clip.mp4",
        &[
            Shot::Blurred(sharp.clone(), 1.5),
            Shot::Pair(sharp.clone(), photo_path("val", "madonna", 0), 1.0),
            Shot::Photo(sharp, 1.0),
        ],
    );
    let (code, out, err) = facegate(
        &gallery,
        &["--json", "enroll", "ben", "--video", clip.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}{out}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    let frames = doc["frames"].as_array().unwrap();
    let reason_at = |t: f64| {
        frames
            .iter()
            .find(|f| (f["time_s"].as_f64().unwrap() - t).abs() < 0.11)
            .map(|f| f["reason"].as_str().unwrap().to_string())
            .unwrap_or_default()
    };
    assert!(reason_at(0.6).contains("blurred"), "{}", reason_at(0.6));
    assert!(reason_at(2.0).contains("2 faces"), "{}", reason_at(2.0));
    for used in doc["frames_used"].as_array().unwrap() {
        let t = used["time_s"].as_f64().unwrap();
        assert!(t >= 2.5, "a blurred or crowded frame was used: {t}");
    }
    // Only blurred frames: nothing enrolled, and the reasons are given.
    let blurred = video(
        dir.path(),
        "blurred.mp4",
        &[Shot::Blurred(photo_path("val", "madonna", 0), 1.0)],
    );
    let (code, _, err) = facegate(
        &gallery,
        &["enroll", "madonna", "--video", blurred.to_str().unwrap()],
    );
    assert_eq!(code, 2);
    assert!(err.contains("blurred"), "{err}");
}

#[test]
fn missing_cameras_and_unreadable_videos_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let gallery = dir.path().join("gallery.db");
    let (code, _, err) = facegate(&gallery, &["verify", "x", "--camera", "/dev/video99"]);
    assert_eq!(code, 2);
    assert!(err.contains("no camera /dev/video99"), "{err}");
    if !have_ffmpeg() {
        return;
    }
    let bogus = dir.path().join("not-a-video.mp4");
    std::fs::write(&bogus, b"definitely not a video").unwrap();
    let (code, _, err) = facegate(&gallery, &["identify", "--video", bogus.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("could not open"), "{err}");
}

#[test]
fn live_sources_drop_frames_instead_of_falling_behind_and_ctrl_c_stops_cleanly() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let gallery = dir.path().join("gallery.db");
    let photo = photo_path("val", "ben_afflek", 0);
    let (code, _, err) = facegate(
        &gallery,
        &[
            "enroll",
            "ben",
            photo_path("train", "ben_afflek", 0).to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let clip = video(dir.path(), "long.mp4", &[Shot::Photo(photo.clone(), 4.0)]);
    // 50 frames a second asked for, far more than detection and embedding keep up with here.
    let (code, out, err) = facegate(
        &gallery,
        &[
            "--json",
            "identify",
            "--video",
            clip.to_str().unwrap(),
            "--realtime",
            "--fps",
            "50",
        ],
    );
    assert_eq!(code, 0, "{err}{out}");
    let events = json_lines(&out);
    let end = events.last().unwrap();
    assert_eq!(end["event"], "end", "{out}");
    assert!(end["dropped"].as_u64().unwrap() > 0, "{out}");
    assert!(end["frames"].as_u64().unwrap() < 200, "{out}");

    // Ctrl-C (SIGINT) in the middle of a live run: a clean stop with a final report.
    let long = video(dir.path(), "longer.mp4", &[Shot::Photo(photo, 30.0)]);
    let child = Command::new(env!("CARGO_BIN_EXE_facegate"))
        .arg("--home")
        .arg(support::home())
        .arg("--gallery")
        .arg(&gallery)
        .args([
            "--json",
            "identify",
            "--video",
            long.to_str().unwrap(),
            "--realtime",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(4));
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{out}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let events = json_lines(&out);
    let end = events.last().unwrap();
    assert_eq!(end["reason"], "stopped", "{out}");
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "leave" && e["person"] == "ben"),
        "{out}"
    );
}

#[test]
fn bench_video_compares_whole_frame_search_with_following_faces() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let clip = video(
        dir.path(),
        "two.mp4",
        &[
            Shot::Photo(photo_path("val", "ben_afflek", 0), 2.0),
            Shot::Black(0.5),
            Shot::Pair(
                photo_path("val", "madonna", 0),
                photo_path("val", "elton_john", 1),
                2.0,
            ),
        ],
    );
    let (code, out, err) = facegate(
        &dir.path().join("none.db"),
        &[
            "--json",
            "bench-video",
            clip.to_str().unwrap(),
            "--detect-every",
            "4",
        ],
    );
    assert_eq!(code, 0, "{err}{out}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    let clip = &doc["clips"][0];
    // The clip's own rate (10 frames/s) read by ffprobe: every frame analysed.
    assert!(
        (clip["frames_per_second_in"].as_f64().unwrap() - 10.0).abs() < 0.01,
        "{clip}"
    );
    // No gallery given: the people the clip shows (at least the three photographed) are
    // enrolled from it, and the every-frame run identifies each of them.
    let people = clip["enrolled_from_clip"]["people"].as_array().unwrap();
    assert!(people.len() >= 3, "{clip}");
    let every = &clip["every_frame"];
    assert_eq!(every["whole_frame_share"], 1.0);
    assert_eq!(clip["identified"], people.len(), "{clip}");
    let runs = clip["followed"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{clip}");
    let (run, followed) = (&runs[0], &runs[0]["run"]);
    assert_eq!(run["detect_every"], 4);
    assert_eq!(every["frames"], followed["frames"]);
    let share = followed["whole_frame_share"].as_f64().unwrap();
    assert!(share > 0.0 && share < 0.6, "{clip}");
    // Following faces identifies the same people.
    assert_eq!(
        run["identified_by_both"].as_array().unwrap().len(),
        people.len(),
        "{clip}"
    );
    assert_eq!(run["missed_when_followed"], serde_json::json!([]), "{clip}");
    assert_eq!(run["only_when_followed"], serde_json::json!([]), "{clip}");
    assert!(followed["peak_rss_mib"].as_f64().unwrap() > 0.0);
    assert!(followed["median_ms_to_decision"].as_f64().unwrap() > 0.0);
    let (code, _, err) = facegate(
        &dir.path().join("none.db"),
        &["bench-video", "missing.mp4", "--detect-every", "0"],
    );
    assert_eq!(code, 2, "{err}");
}
