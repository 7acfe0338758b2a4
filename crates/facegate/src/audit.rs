//! Audit entries for the user-level operations, built the same way by every front end (the
//! command line names the local user, the server the API key).

use facegate_gallery::NewAuditEvent;

use crate::ops::{IdentifyOutcome, VerifyOutcome};

fn event(
    actor: &str,
    action: &str,
    person: Option<&str>,
    decision: &str,
    distance: Option<f32>,
    detail: String,
) -> NewAuditEvent {
    NewAuditEvent {
        actor: actor.to_string(),
        action: action.to_string(),
        person: person.map(str::to_string),
        decision: Some(decision.to_string()),
        distance,
        detail: Some(detail),
    }
}

/// A verification: `match`, `no_match`, or `match_not_live` (a match refused by liveness).
pub fn verify(actor: &str, outcome: &VerifyOutcome) -> NewAuditEvent {
    let decision = match (outcome.is_match, outcome.accepted) {
        (true, true) => "match",
        (true, false) => "match_not_live",
        (false, _) => "no_match",
    };
    event(
        actor,
        "verify",
        Some(&outcome.person),
        decision,
        Some(outcome.distance),
        format!("model {}", outcome.model),
    )
}

/// A verification against one stored template of a person (by its id).
pub fn verify_example(
    actor: &str,
    person: &str,
    template_id: i64,
    closest: Option<(f32, bool)>,
    model: &str,
) -> NewAuditEvent {
    let decision = match closest {
        Some((_, true)) => "match",
        _ => "no_match",
    };
    event(
        actor,
        "verify",
        Some(person),
        decision,
        closest.map(|(distance, _)| distance),
        format!("against template {template_id}; model {model}"),
    )
}

/// A liveness challenge: `passed` (with who passed it) or `failed` (with why), the steps
/// asked and the closest identity distance seen.
pub fn challenge(
    actor: &str,
    target: &crate::challenge::ChallengeTarget,
    outcome: &crate::challenge::ChallengeOutcome,
) -> NewAuditEvent {
    use facegate_challenge::State;
    let steps: Vec<&str> = outcome.steps.iter().map(|s| s.name()).collect();
    let person = match (&outcome.state, target) {
        (State::Passed { identity, .. }, _) => Some(identity.clone()),
        (_, crate::challenge::ChallengeTarget::Person(name)) => Some(name.clone()),
        _ => None,
    };
    let closest = outcome
        .identity_checks
        .iter()
        .filter_map(|c| c.distance)
        .reduce(f32::min);
    let mut detail = format!(
        "steps {}; {} frames, {} identity check(s); model {}",
        steps.join(","),
        outcome.frames,
        outcome.identity_checks.len(),
        outcome.model
    );
    if let Some(reason) = &outcome.reason {
        detail.push_str(&format!("; {reason}"));
    }
    event(
        actor,
        "challenge",
        person.as_deref(),
        if outcome.passed { "passed" } else { "failed" },
        closest,
        detail,
    )
}

/// An identification: `identified` (with the person) or `unknown`, and the closest distance.
pub fn identify(actor: &str, outcome: &IdentifyOutcome) -> NewAuditEvent {
    let best = outcome.faces.first().and_then(|f| f.candidates.first());
    event(
        actor,
        "identify",
        outcome.identity.as_deref(),
        if outcome.identity.is_some() {
            "identified"
        } else {
            "unknown"
        },
        best.map(|c| c.distance),
        format!(
            "model {}, {} people searched",
            outcome.model, outcome.people_searched
        ),
    )
}

/// Templates stored for a person.
pub fn enroll(
    actor: &str,
    person: &str,
    added: usize,
    already: usize,
    model: &str,
) -> NewAuditEvent {
    event(
        actor,
        "enroll",
        Some(person),
        "added",
        None,
        format!("{added} template(s) added, {already} already enrolled; model {model}"),
    )
}

/// A verification against a name nobody has, answered as a failed match to a caller who may
/// not learn who is enrolled.
pub fn verify_unknown(actor: &str, person: &str) -> NewAuditEvent {
    event(
        actor,
        "verify",
        Some(person),
        "unknown_person",
        None,
        "no one of this name is enrolled; answered as no match".into(),
    )
}

/// Faces refused for an existing person: the new face did not match their enrolled ones, or
/// the deployment's policy lets only administrators add faces.
pub fn enroll_refused(
    actor: &str,
    person: &str,
    distance: Option<f32>,
    why: String,
) -> NewAuditEvent {
    event(actor, "enroll", Some(person), "refused", distance, why)
}

/// A person erased (`forget`) or one template removed (`remove_template`).
pub fn erase(actor: &str, action: &str, person: &str, what: String) -> NewAuditEvent {
    event(actor, action, Some(person), "erased", None, what)
}

/// A person renamed (or merged into the person who had the new name), under their old name.
pub fn rename(actor: &str, from: &str, report: &facegate_gallery::RenameReport) -> NewAuditEvent {
    let decision = if report.merged { "merged" } else { "renamed" };
    let mut what = format!(
        "to {:?}; {} template(s) moved",
        report.name, report.templates_moved
    );
    if report.duplicates_dropped > 0 {
        what.push_str(&format!(
            ", {} photo(s) the other person already had dropped",
            report.duplicates_dropped
        ));
    }
    event(actor, "rename", Some(from), decision, None, what)
}

/// Templates re-encrypted (`gallery rekey`): key ids only, never keys.
pub fn rekey(
    actor: &str,
    old_key: Option<&str>,
    new_key: Option<&str>,
    templates: usize,
) -> NewAuditEvent {
    let decision = match new_key {
        Some(_) => "encrypted",
        None => "decrypted",
    };
    event(
        actor,
        "rekey",
        None,
        decision,
        None,
        format!(
            "{templates} template(s) rewritten; key {} -> {}",
            old_key.unwrap_or("none"),
            new_key.unwrap_or("none")
        ),
    )
}

/// A verification from a video or camera: the K-of-N decision, with the closest frame's distance.
pub fn video_verify(
    actor: &str,
    outcome: &crate::video::VideoVerifyOutcome,
    source: &str,
) -> NewAuditEvent {
    let closest = outcome
        .decisions
        .iter()
        .map(|d| d.distance)
        .min_by(f32::total_cmp);
    event(
        actor,
        "verify",
        Some(&outcome.person),
        if outcome.is_match {
            "match"
        } else {
            "no_match"
        },
        closest,
        format!(
            "video {source}: {} of {} frames matched (needed {}); ended by {}",
            outcome.matching_frames, outcome.n, outcome.k, outcome.ended_by
        ),
    )
}

/// A face entering a video or camera view: identified or unknown.
pub fn video_presence(
    actor: &str,
    person: Option<&str>,
    distance: Option<f32>,
    source: &str,
    time_s: f64,
) -> NewAuditEvent {
    let decision = if person.is_some() {
        "identified"
    } else {
        "unknown"
    };
    event(
        actor,
        "identify",
        person,
        decision,
        distance,
        format!("video {source}: face entered at {time_s:.2} s"),
    )
}
