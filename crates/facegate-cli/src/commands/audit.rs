//! The audit log: `audit`, `audit verify`, `audit restart-chain`.

use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use facegate::gallery::audit_chain::{self, ChainProblem};
use facegate::gallery::GalleryLocation;
use facegate::Error;
use serde_json::json;

use crate::progress::Spinner;

use crate::context::Context;
use facegate::service::Actor;

/// `facegate audit`: the log, oldest first.
pub(crate) fn audit_log(ctx: &Context, after: Option<i64>, limit: usize) -> Result<ExitCode> {
    let location = ctx.gallery_location();
    let events = if location.exists() {
        let (gallery, _) = ctx.open_gallery_unchecked(&location)?;
        gallery.audit_log(after, limit).map_err(Error::from)?
    } else {
        Vec::new()
    };
    let doc = json!({ "gallery": ctx.gallery_location().to_string(), "events": events });
    ctx.emit(&doc, || {
        if events.is_empty() {
            println!("the audit log is empty ({})", ctx.gallery_location());
        }
        for e in &events {
            let distance = e
                .distance
                .map(|d| format!(" distance {d:.3}"))
                .unwrap_or_default();
            println!(
                "#{} {} {} {} {} {}{}{}",
                e.id,
                e.at,
                e.actor,
                e.action,
                e.person.as_deref().unwrap_or("-"),
                e.decision.as_deref().unwrap_or("-"),
                distance,
                e.detail
                    .as_deref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            );
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `facegate audit verify`: every entry's MAC recomputed; exit 1 when anything does not fit.
pub(crate) fn audit_verify(ctx: &Context, head: Option<&str>) -> Result<ExitCode> {
    let anchor = match head {
        Some(text) => Some(audit_chain::parse_head(text).with_context(|| {
            format!("--head {text:?}: expected ID:MAC, the id and the 64 hex digits printed by an earlier `facegate audit verify`")
        })?),
        None => None,
    };
    let location = ctx.gallery_location();
    if !location.exists() {
        bail!("there is no gallery at {location}, so no audit log to verify");
    }
    let (gallery, key) = ctx.open_gallery_unchecked(&location)?;
    let spinner = Spinner::new(ctx.interactive());
    let report = audit_chain::verify(gallery.as_ref(), &key, anchor.as_ref(), &mut |_| {})
        .map_err(Error::from)?;
    spinner.finish();
    let doc = json!({ "gallery": location.to_string(), "report": report });
    ctx.emit(&doc, || print_chain_report(&location, &report))?;
    Ok(if report.intact {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub(crate) fn print_chain_report(
    location: &GalleryLocation,
    report: &facegate::gallery::ChainReport,
) {
    let verdict = if report.intact {
        "intact"
    } else {
        "NOT INTACT"
    };
    println!(
        "audit log of {location}: {verdict}; {} entries, {} verified with audit key {}",
        report.entries, report.verified, report.key_id
    );
    if report.unsealed_before_chain > 0 {
        println!(
            "  {} older entries were written before the log was sealed: nothing vouches for them",
            report.unsealed_before_chain
        );
    }
    if report.sealed_by_earlier_keys > 0 {
        println!(
            "  {} entries before the chain restart at #{} were sealed by an earlier key",
            report.sealed_by_earlier_keys,
            report.restarts.last().copied().unwrap_or_default()
        );
    }
    for problem in &report.problems {
        let text = match problem {
            ChainProblem::Broken { id } => format!(
                "#{id} does not match its MAC: it was changed, or an entry before it was removed or inserted"
            ),
            ChainProblem::Unsealed { id } => {
                format!("#{id} carries no MAC: written without the audit key, or by hand")
            }
            ChainProblem::OtherKey { id, key_id } => {
                format!("#{id} was sealed with another audit key ({key_id})")
            }
            ChainProblem::Missing { first, last } if first == last => {
                format!("#{first} is missing: it was removed")
            }
            ChainProblem::Missing { first, last } => {
                format!("#{first} to #{last} are missing: they were removed")
            }
        };
        println!("  problem: {text}");
    }
    if report.more_problems > 0 {
        println!("  ... and {} more problems", report.more_problems);
    }
    match report.anchor_found {
        Some(true) => println!("  the recorded head is still in the log"),
        Some(false) => println!(
            "  problem: the recorded head is not in the log (or its MAC changed): entries were removed"
        ),
        None => {}
    }
    if let Some(head) = &report.head {
        println!(
            "head: {}:{} (keep it elsewhere; `--head` checks later that nothing up to it was removed)",
            head.id, head.mac
        );
    }
}

/// `facegate audit restart-chain`: a new chain under the current audit key.
pub(crate) fn audit_restart(ctx: &Context, yes: bool) -> Result<ExitCode> {
    if !yes {
        bail!("restarting the audit chain makes the entries sealed by the previous key unverifiable with this one; run again with --yes if the previous key is lost");
    }
    let location = ctx.gallery_location();
    let (gallery, key) = ctx.open_gallery_unchecked(&location)?;
    let previous_key =
        facegate::service::restart_audit_chain(gallery.as_ref(), &Actor::local_user(), &key)?
            .unwrap_or_else(|| "none".to_string());
    let doc = json!({ "gallery": location.to_string(), "key_id": key.id(), "previous_key_id": previous_key });
    ctx.emit(&doc, || {
        println!(
            "the audit log of {location} continues under audit key {} (previously {previous_key})",
            key.id()
        )
    })?;
    Ok(ExitCode::SUCCESS)
}
