//! `enroll`, `verify` and `identify` from a video file, a stream or a camera.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use facegate::gallery::GalleryError;
use facegate::video::{
    self, EnrollFromVideo, IdentifyFromVideo, PresenceEvent, StopFlag, VerifyFromVideo,
};
use facegate::video_input::ffmpeg::{FfmpegInput, FfmpegSource};
use facegate::video_input::FrameSource;
use facegate::{EngineOptions, Error};
use serde_json::json;

use crate::cli::VideoArgs;
use crate::context::{enroll_audited, exit, Context};
use facegate::challenge::ChallengeTarget;
use facegate::liveness_challenge::{Rules, State as ChallengeState, Step};
use facegate::service::{Actor, FaceService};

/// Opens what the flags name.
fn open(args: &VideoArgs) -> Result<Box<dyn FrameSource>> {
    let fps = if args.fps > 0.0 { args.fps } else { 5.0 };
    if let Some(video) = &args.video {
        let file = FfmpegInput::file(video, fps);
        let input = FfmpegInput {
            live: file.live || args.realtime,
            realtime: args.realtime,
            ..file
        };
        return Ok(Box::new(FfmpegSource::open(&input).map_err(Error::from)?));
    }
    #[cfg(feature = "camera")]
    if let Some(device) = &args.camera {
        let device = (!device.is_empty()).then_some(device.as_str());
        return Ok(Box::new(
            facegate::video_input::camera::open(device, fps).map_err(Error::from)?,
        ));
    }
    anyhow::bail!("give --video FILE|URL or --camera [DEVICE]")
}

/// Ctrl-C sets the flag; the loops stop between frames and report what they have.
fn stop_on_ctrl_c() -> StopFlag {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    if let Err(err) = ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed)) {
        tracing::debug!("Ctrl-C handler not installed: {err}");
    }
    stop
}

pub fn enroll(ctx: &Context, name: &str, args: &VideoArgs, frames: usize) -> Result<ExitCode> {
    let mut source = open(args)?;
    let engine = ctx.engine()?;
    let settings = EnrollFromVideo {
        count: frames.max(1),
        max_frames: args
            .timeout
            .map_or(EnrollFromVideo::default().max_frames, |t| {
                (t.as_secs_f64() * args.fps).ceil().max(1.0) as u64
            }),
        ..EnrollFromVideo::default()
    };
    let stop = stop_on_ctrl_c();
    let selection = video::select_enrollment_frames(&engine, source.as_mut(), &settings, &stop)?;
    if selection.chosen.is_empty() {
        let mut reasons: Vec<(String, usize)> = Vec::new();
        for f in &selection.frames {
            match reasons.iter_mut().find(|(r, _)| *r == f.reason) {
                Some((_, n)) => *n += 1,
                None => reasons.push((f.reason.clone(), 1)),
            }
        }
        let summary: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} x {r}")).collect();
        anyhow::bail!(
            "nothing was enrolled for {name:?}: none of the {} frames read from {} was usable ({})",
            selection.frames.len(),
            source.describe(),
            summary.join("; ")
        );
    }
    let templates: Vec<_> = selection
        .chosen
        .iter()
        .map(|c| c.template.clone())
        .collect();
    let gallery = ctx.gallery_for_write()?;
    let report = enroll_audited(&engine, gallery.as_ref(), name, &templates)?;
    let doc = json!({
        "person": name,
        "created_person": report.created_person,
        "source": source.describe(),
        "templates_added": report.added,
        "frames_used": selection.chosen.iter().map(|c| json!({
            "frame": c.frame, "time_s": c.time_s, "bbox": c.face.bbox, "quality": c.quality,
        })).collect::<Vec<_>>(),
        "frames": selection.frames,
        "frames_dropped": selection.dropped,
        "model": engine.model_id(),
    });
    ctx.emit(&doc, || {
        println!(
            "enrolled {name:?} from {}: {} template(s) from {} frames read",
            source.describe(),
            report.added.len(),
            selection.frames.len()
        );
        for c in &selection.chosen {
            println!(
                "  + frame {} at {:.2}s: face {:.0} px, sharpness {:.0}, frontal {:.2}",
                c.frame, c.time_s, c.quality.size_px, c.quality.sharpness, c.quality.frontal
            );
        }
        let rejected: Vec<_> = selection.frames.iter().filter(|f| !f.used).collect();
        for f in rejected.iter().take(12) {
            println!("  - frame {} at {:.2}s: {}", f.frame, f.time_s, f.reason);
        }
        if rejected.len() > 12 {
            println!(
                "  ... and {} more frames not used (--json lists all)",
                rejected.len() - 12
            );
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

pub fn verify(ctx: &Context, name: &str, args: &VideoArgs, k: usize, n: usize) -> Result<ExitCode> {
    // The source first: a missing camera or file is the error to report.
    let mut source = open(args)?;
    let engine = ctx.engine()?;
    let gallery = ctx.gallery_for_read()?.ok_or_else(|| {
        Error::from(GalleryError::UnknownPerson {
            name: name.to_string(),
        })
    })?;
    let settings = VerifyFromVideo {
        k,
        n,
        timeout: args.timeout.unwrap_or(if args.camera.is_some() {
            Duration::from_secs(10)
        } else {
            Duration::MAX
        }),
    };
    let stop = stop_on_ctrl_c();
    let service = FaceService::new(&engine, gallery.as_ref());
    let outcome = service.verify_video(
        &Actor::local_user(),
        name,
        source.as_mut(),
        &settings,
        &stop,
    )?;
    ctx.emit(&outcome, || {
        let verdict = if outcome.is_match { "MATCH" } else { "NO MATCH" };
        println!(
            "{verdict}: {} vs {name:?}: {} of the last {} frames of one face matched (needed {}); {}",
            source.describe(),
            outcome.matching_frames,
            outcome.n,
            outcome.k,
            outcome.ended_by
        );
        println!(
            "  {} frames read, {} with faces, {} dropped",
            outcome.frames_read, outcome.frames_with_faces, outcome.dropped
        );
    })?;
    Ok(exit(outcome.is_match))
}

/// Challenges are judged on at least this many frames per second: a held movement needs a
/// few frames, and frames further apart than `Rules::max_frame_gap` fail the challenge.
const CHALLENGE_MIN_FPS: f64 = 10.0;

/// `verify NAME` / `identify` with `--camera --challenge` or `--video FILE --challenge-steps
/// ...`: liveness by challenge, prompting on the terminal.
pub fn challenge(
    ctx: &Context,
    target: ChallengeTarget,
    args: &VideoArgs,
    steps: Vec<Step>,
) -> Result<ExitCode> {
    if !args.given() {
        anyhow::bail!("a challenge needs frames: give --camera [DEVICE] or --video FILE|URL");
    }
    let args = VideoArgs {
        fps: args.fps.max(CHALLENGE_MIN_FPS),
        ..args.clone()
    };
    let mut source = open(&args)?;
    // The eye landmark network judges blinks.
    let engine = ctx.engine_with(EngineOptions {
        eyes: true,
        ..ctx.engine_options()
    })?;
    let gallery = ctx.gallery_for_read()?.ok_or_else(|| {
        Error::from(match &target {
            ChallengeTarget::Person(name) => GalleryError::UnknownPerson { name: name.clone() },
            ChallengeTarget::Anyone => GalleryError::Empty,
        })
    })?;
    let stop = stop_on_ctrl_c();
    let service = FaceService::new(&engine, gallery.as_ref());
    // A camera faces the user: the image's left is the user's right.
    let camera = args.camera.is_some();
    let json = ctx.global.json;
    // One prompt per phase (a step's clock restarting is not a new request).
    let mut prompted: Option<(&'static str, usize)> = None;
    let outcome = service.challenge(
        &Actor::local_user(),
        &target,
        source.as_mut(),
        steps,
        Rules::default(),
        &stop,
        &mut |state| {
            let phase = match state {
                ChallengeState::Step { step, .. } => ("step", *step),
                ChallengeState::Starting => ("starting", 0),
                ChallengeState::Ending { .. } => ("ending", 0),
                ChallengeState::Passed { .. } | ChallengeState::Failed(_) => ("done", 0),
            };
            if !json && prompted != Some(phase) {
                prompted = Some(phase);
                prompt(state, camera);
            }
        },
    )?;
    ctx.emit(&outcome, || {
        match &outcome.state {
            ChallengeState::Passed {
                identity, seconds, identity_checks,
            } => println!(
                "PASSED: {identity:?} answered the challenge ({}) from {} in {seconds:.1} s, identity checked {identity_checks} times",
                step_list(&outcome.steps),
                source.describe()
            ),
            _ => println!(
                "FAILED: challenge ({}) on {}: {}",
                step_list(&outcome.steps),
                source.describe(),
                outcome.reason.as_deref().unwrap_or("not finished")
            ),
        }
        println!(
            "  {} frames read, {} dropped",
            outcome.frames, outcome.frames_dropped
        );
    })?;
    Ok(exit(outcome.passed))
}

fn step_list(steps: &[Step]) -> String {
    steps.iter().map(|s| s.name()).collect::<Vec<_>>().join(",")
}

/// What the person in front of the camera is asked to do now.
fn prompt(state: &ChallengeState, camera: bool) {
    let direction = |step: Step| match (step, camera) {
        (Step::Left, true) => "turn your head to YOUR RIGHT  -->".to_string(),
        (Step::Right, true) => "turn your head to YOUR LEFT  <--".to_string(),
        (Step::Left, false) => "turn: nose toward the image's left".to_string(),
        (Step::Right, false) => "turn: nose toward the image's right".to_string(),
        (Step::Up, _) => "look UP  ^".to_string(),
        (Step::Down, _) => "look DOWN  v".to_string(),
        (Step::Blink, _) => "BLINK both eyes once  (-)(-)".to_string(),
    };
    match state {
        ChallengeState::Starting => eprintln!("look straight at the camera"),
        ChallengeState::Step { step, asked, .. } if *asked == Step::Blink => {
            eprintln!(
                "step {}: {}, looking at the camera",
                step + 1,
                direction(*asked)
            )
        }
        ChallengeState::Step { step, asked, .. } => {
            eprintln!(
                "step {}: {}, then back to the front",
                step + 1,
                direction(*asked)
            )
        }
        ChallengeState::Ending { .. } => eprintln!("look straight at the camera"),
        ChallengeState::Passed { .. } | ChallengeState::Failed(_) => {}
    }
}

pub fn identify(
    ctx: &Context,
    args: &VideoArgs,
    detect_every: Option<u64>,
    embed_every: Option<u64>,
) -> Result<ExitCode> {
    let mut source = open(args)?;
    let engine = ctx.engine()?;
    let gallery = ctx
        .gallery_for_read()?
        .ok_or_else(|| Error::from(GalleryError::Empty))?;
    let following = IdentifyFromVideo::following(args.fps);
    let settings = IdentifyFromVideo {
        duration: args.timeout,
        detect_every: detect_every.unwrap_or(following.detect_every),
        embed_every: embed_every.unwrap_or(following.embed_every),
        ..following
    };
    let stop = stop_on_ctrl_c();
    let mut anyone = false;
    let json = ctx.global.json;
    let service = FaceService::new(&engine, gallery.as_ref());
    service.identify_video(
        &Actor::local_user(),
        source.as_mut(),
        &settings,
        &stop,
        &mut |event| {
            if let PresenceEvent::Enter { person, .. } = &event {
                anyone |= person.is_some();
            }
            if json {
                // One line per event, flushed, for piping into other programs.
                if let Ok(line) = serde_json::to_string(&event) {
                    println!("{line}");
                }
            } else {
                match &event {
                    PresenceEvent::Enter {
                        track,
                        person,
                        distance,
                        time_s,
                        ..
                    } => println!(
                        "{time_s:>8.2}s  enter  face {track}: {}",
                        match (person, distance) {
                            (Some(p), Some(d)) => format!("{p} (distance {d:.3})"),
                            _ => "unknown".to_string(),
                        }
                    ),
                    PresenceEvent::Leave {
                        track,
                        person,
                        frames,
                        last_s,
                        ..
                    } => println!(
                        "{last_s:>8.2}s  leave  face {track}: {} ({frames} frames)",
                        person.as_deref().unwrap_or("unknown")
                    ),
                    PresenceEvent::End {
                        frames,
                        dropped,
                        reason,
                        searched_whole,
                    } => {
                        println!("end ({reason}): {frames} frames analysed ({searched_whole} searched whole), {dropped} dropped")
                    }
                }
            }
        },
    )?;
    Ok(exit(anyone))
}
