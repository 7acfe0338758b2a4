//! One function per command, grouped by family; each prints its result (text or JSON) and
//! returns the exit code. `run` dispatches.

mod admin;
mod audit;
mod enroll;
mod people;
mod recognize;

use std::process::ExitCode;

use anyhow::Result;
use facegate::Home;

use crate::cli::{AuditAction, Cli, Command};

use self::{admin::*, audit::*, enroll::*, people::*, recognize::*};
use crate::context::Context;

pub fn run(cli: Cli) -> Result<ExitCode> {
    let home = Home::resolve(cli.global.home.as_deref())?;
    let ctx = Context {
        global: cli.global,
        home,
        resolved_model: std::sync::OnceLock::new(),
        opened_gallery: std::sync::Mutex::new(None),
    };
    match cli.command {
        Command::Enroll {
            name,
            inputs,
            largest,
            live,
            frames,
        } => {
            if live.given() {
                crate::live::enroll(&ctx, &name, &live, frames)
            } else {
                enroll(&ctx, &name, &inputs, largest)
            }
        }
        Command::Verify {
            name,
            image,
            all_faces,
            live,
            k,
            n,
            challenge,
            challenge_length,
            challenge_steps,
        } => match (image, challenge_steps) {
            (Some(image), None) if !live.given() && !challenge => {
                verify(&ctx, &name, &image, all_faces)
            }
            (_, Some(steps)) => crate::live::challenge(
                &ctx,
                facegate::challenge::ChallengeTarget::Person(name),
                &live,
                steps.0,
            ),
            _ if challenge => {
                let steps = facegate::liveness_challenge::Step::random(
                    &mut rand::rng(),
                    usize::from(challenge_length),
                    &facegate::liveness_challenge::ALL,
                );
                crate::live::challenge(
                    &ctx,
                    facegate::challenge::ChallengeTarget::Person(name),
                    &live,
                    steps,
                )
            }
            _ => crate::live::verify(&ctx, &name, &live, k, n),
        },
        Command::Identify {
            image,
            live,
            top,
            all_faces,
            detect_every,
            embed_every,
            challenge,
            challenge_length,
            challenge_steps,
        } => {
            let steps = match (challenge_steps, challenge) {
                (Some(steps), _) => Some(steps.0),
                (None, true) => Some(facegate::liveness_challenge::Step::random(
                    &mut rand::rng(),
                    usize::from(challenge_length),
                    &facegate::liveness_challenge::ALL,
                )),
                (None, false) => None,
            };
            match (image, steps) {
                (_, Some(steps)) => crate::live::challenge(
                    &ctx,
                    facegate::challenge::ChallengeTarget::Anyone,
                    &live,
                    steps,
                ),
                (Some(image), None) if !live.given() => identify(&ctx, &image, top, all_faces),
                _ => crate::live::identify(&ctx, &live, detect_every, embed_every),
            }
        }
        Command::EnrollAll { dir, largest } => enroll_all(&ctx, &dir, largest),
        Command::Compare { a, b } => compare(&ctx, &a, &b),
        Command::Detect { image, draw } => detect(&ctx, &image, draw.as_deref()),
        Command::Embed { image, all_faces } => embed(&ctx, &image, all_faces),
        Command::List { name: None } => list(&ctx),
        Command::List { name: Some(name) } => list_person(&ctx, &name),
        Command::Forget { name } => forget(&ctx, &name),
        Command::Audit {
            action: None,
            after,
            limit,
        } => audit_log(&ctx, after, limit),
        Command::Audit {
            action: Some(AuditAction::Verify { head }),
            ..
        } => audit_verify(&ctx, head.as_deref()),
        Command::Audit {
            action: Some(AuditAction::RestartChain { yes }),
            ..
        } => audit_restart(&ctx, yes),
        Command::Models { action } => models(&ctx, action),
        Command::Eval { kind } => crate::eval::run(&ctx, kind),
        Command::Calibrate {
            pairs,
            root,
            all_pairs,
            target_far,
            target_fpir,
        } => {
            let input = match (pairs, root, all_pairs) {
                (_, _, Some(dir)) => crate::eval::CalibrationInput::AllPairs(dir),
                (Some(pairs), Some(root), None) => {
                    crate::eval::CalibrationInput::Pairs(crate::cli::PairsArgs { pairs, root })
                }
                _ => anyhow::bail!("calibrate needs --pairs FILE --root DIR, or --all-pairs DIR"),
            };
            crate::eval::calibrate(&ctx, &input, target_far, target_fpir)
        }
        Command::Serve(args) => crate::serve::serve(&ctx, &args),
        Command::Keys { action } => crate::serve::keys(&ctx, action),
        Command::Gallery { action } => gallery(&ctx, action),
        Command::Demo => crate::demo::run(&ctx),
        Command::Bench { dir, limit } => crate::bench::run(&ctx, dir.as_deref(), limit),
        Command::BenchVideo {
            clips,
            fps,
            detect_every,
            embed_every,
            min_face_sizes,
        } => crate::bench::video(
            &ctx,
            &clips,
            fps,
            detect_every,
            embed_every,
            &min_face_sizes,
        ),
        Command::BenchSearch {
            templates,
            queries,
            dimension,
            sqlite,
            postgres,
            real_embeddings,
        } => crate::bench::search(
            &ctx,
            templates,
            queries,
            dimension,
            sqlite,
            postgres.as_deref(),
            real_embeddings.as_deref(),
        ),
        Command::DeriveTemplate { dir, margin_px } => {
            crate::bench::derive_template(&ctx, dir.as_deref(), margin_px)
        }
    }
}

/// One line about a face's quality, for people.
pub(crate) fn quality_line(q: &facegate::quality::QualityReport) -> String {
    format!(
        "quality: {:.0} px between the eyes, sharpness {:.0}, brightness {:.0}, yaw {:+.0}°, pitch {:+.0}°, roll {:+.0}°, detector {:.3}",
        q.inter_eye_px, q.sharpness, q.brightness, q.yaw_degrees, q.pitch_degrees, q.roll_degrees, q.detector_score
    )
}

pub(crate) fn liveness_line(l: &facegate::liveness::LivenessScore) -> String {
    format!(
        "liveness: {} (score {:.2}, threshold {:.2}; antispoof {:.2}, liveness model {:.2}) — a passive check, not a certified presentation-attack detector",
        if l.live { "LIVE" } else { "NOT LIVE" },
        l.score,
        l.threshold,
        l.antispoof_real,
        l.liveness_real
    )
}

pub(crate) fn threshold_text(t: &facegate::decide::Threshold) -> String {
    let source = match t.source {
        facegate::decide::ThresholdSource::Default => "default",
        facegate::decide::ThresholdSource::Calibrated => "calibrated",
        facegate::decide::ThresholdSource::Flag => "--threshold",
    };
    format!("{:.3} {} ({source}: {})", t.value, t.metric.name(), t.note)
}
