//! `facegate serve` and `facegate keys`.

use std::io::Write as _;
use std::num::NonZeroU32;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use facegate::EngineOptions;
use facegate_server::{
    AddFacesPolicy, ApiKeys, AppState, CompreFaceService, KeyScope, Limits, Role, ServeOptions,
};
use serde_json::json;

use crate::cli::{
    AddFacesArg, CompatArg, CompreFaceServiceArg, KeyCompatArg, KeysAction, RoleArg, ServeArgs,
};
use crate::context::Context;

pub fn serve(ctx: &Context, args: &ServeArgs) -> Result<ExitCode> {
    let defaults = Limits::default();
    let limits = Limits {
        max_body_bytes: args.max_body_bytes,
        request_timeout: seconds(args.request_timeout, "--request-timeout")?,
        max_inflight: args.max_inflight.unwrap_or(defaults.max_inflight).max(1),
        max_queued: args.max_queued.unwrap_or(defaults.max_queued),
        queue_wait: Duration::from_millis(args.queue_wait_ms),
        rate_per_minute: NonZeroU32::new(args.rate_limit),
        max_images: args.max_images.max(1),
        max_pixels: ctx.global.max_pixels,
        auth_failures_per_minute: NonZeroU32::new(args.auth_failure_limit),
        max_key_checks: args.max_key_checks.max(1),
        header_timeout: seconds(args.header_timeout, "--header-timeout")?,
        max_connections: args.max_connections.max(1),
        max_body_bytes_in_flight: args.max_body_bytes_in_flight.max(1),
        add_faces: match args.add_faces {
            AddFacesArg::Matching => AddFacesPolicy::Matching,
            AddFacesArg::Admin => AddFacesPolicy::AdminOnly,
        },
        deepstack_api: args.compat.contains(&CompatArg::Deepstack),
        compreface_api: args.compat.contains(&CompatArg::Compreface),
        challenge_seed: args.insecure_challenge_seed,
    };
    // One embedding replica per inference slot, so concurrent requests embed side by side.
    // The eye landmark network judges the liveness challenge's blinks.
    let engine = Arc::new(ctx.engine_with(EngineOptions {
        parallel: limits.max_inflight,
        eyes: true,
        ..ctx.engine_options()
    })?);
    let gallery = ctx.gallery_for_write()?;
    // A missing or wrong template key would fail every request: refuse to start instead.
    let key = ctx.template_key()?;
    facegate::gallery::seal::check_key(gallery.as_ref(), key.as_deref())
        .map_err(facegate::Error::from)?;
    if !args.listen.ip().is_loopback() && args.tls_cert.is_none() {
        tracing::warn!(
            "listening on {} without TLS: API keys, photos and answers cross the network in the clear; serve HTTPS (--tls-cert/--tls-key) or put a TLS proxy in front",
            args.listen
        );
    }
    if args.insecure_challenge_seed.is_some() {
        tracing::warn!("--insecure-challenge-seed: liveness challenges are predictable; a recording made for them passes. For tests only.");
    }
    let keys = if args.insecure_no_auth {
        for _ in 0..3 {
            tracing::warn!("--insecure-no-auth: ANYONE who can reach this port can enroll, verify and delete people. Use it for local demos only.");
        }
        None
    } else {
        let store = ApiKeys::open(&ctx.gallery_location())?;
        if store.list()?.iter().all(|k| k.revoked.is_some()) {
            tracing::warn!(
                "no API keys exist yet, so every API request will be refused; create one with `facegate keys create --role admin`"
            );
        }
        Some(Arc::new(store))
    };
    let options = ServeOptions {
        listen: args.listen,
        tls: args.tls_cert.clone().zip(args.tls_key.clone()),
        shutdown_grace: seconds(args.shutdown_grace, "--shutdown-grace")?,
    };
    let scheme = if options.tls.is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!(
        model = engine.pipeline_id(),
        gallery = %ctx.gallery_location(),
        ?limits,
        "models loaded"
    );
    let state = AppState::new(engine, gallery, keys, limits);
    let json = ctx.global.json;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")?;
    runtime.block_on(facegate_server::serve(state, options, |addr| {
        let url = format!("{scheme}://{addr}");
        if json {
            println!("{}", json!({ "listening": url }));
        } else {
            println!("facegate listening on {url} (page at {url}/, API description at {url}/openapi.json)");
        }
        let _ = std::io::stdout().flush();
    }))?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

fn seconds(value: f64, flag: &str) -> Result<Duration> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| format!("{flag} must be a positive number of seconds, not {value}"))
}

pub fn keys(ctx: &Context, action: KeysAction) -> Result<ExitCode> {
    // Creating the gallery here is fine: keys live in it.
    ctx.gallery_for_write()?;
    let store = ApiKeys::open(&ctx.gallery_location())?;
    match action {
        KeysAction::Create {
            role,
            compat,
            service,
            label,
        } => {
            let role = role.map(|role| match role {
                RoleArg::Verify => Role::Verify,
                RoleArg::Identify => Role::Identify,
                RoleArg::Enroll => Role::Enroll,
                RoleArg::Admin => Role::Admin,
            });
            let created = match (compat, service) {
                (Some(KeyCompatArg::Compreface), Some(service)) => {
                    let service = match service {
                        CompreFaceServiceArg::Recognition => CompreFaceService::Recognition,
                        CompreFaceServiceArg::Detection => CompreFaceService::Detection,
                        CompreFaceServiceArg::Verification => CompreFaceService::Verification,
                    };
                    let default_role = match service {
                        CompreFaceService::Recognition => Role::Admin,
                        CompreFaceService::Detection | CompreFaceService::Verification => {
                            Role::Verify
                        }
                    };
                    let scope = KeyScope::CompreFace(service);
                    store.create_scoped(role.unwrap_or(default_role), scope, &label)?
                }
                (Some(_), None) => anyhow::bail!("--compat compreface needs --service"),
                (None, _) => {
                    let role = role.context("--role is required (or --compat)")?;
                    store.create(role, &label)?
                }
            };
            let scope = created
                .info
                .scope
                .map(|scope| match scope {
                    KeyScope::CompreFace(service) => {
                        format!(" for CompreFace's {} service", service.name())
                    }
                    KeyScope::Unknown => String::new(),
                })
                .unwrap_or_default();
            ctx.emit(&created, || {
                println!(
                    "created {} key {}{scope} {}\ncopy it now, it is not shown again:\n\n{}\n",
                    created.info.role.name(),
                    created.info.id,
                    if label.is_empty() {
                        String::new()
                    } else {
                        format!("({label})")
                    },
                    created.key
                );
            })?;
        }
        KeysAction::List => {
            let keys = store.list()?;
            ctx.emit(&json!({ "keys": keys }), || {
                if keys.is_empty() {
                    println!(
                        "no API keys yet; create one with `facegate keys create --role admin`"
                    );
                }
                for k in &keys {
                    let state = k
                        .revoked
                        .as_deref()
                        .map_or("active".to_string(), |at| format!("revoked {at}"));
                    let role = match k.scope {
                        Some(KeyScope::CompreFace(service)) => {
                            format!("{} (compreface {})", k.role.name(), service.name())
                        }
                        Some(KeyScope::Unknown) => format!("{} (unknown scope)", k.role.name()),
                        None => k.role.name().to_string(),
                    };
                    println!(
                        "{}\t{}\t{}\tcreated {}\t{}",
                        k.id, role, state, k.created, k.label
                    );
                }
            })?;
        }
        KeysAction::Revoke { id } => {
            let info = store.revoke(&id)?;
            ctx.emit(&info, || {
                println!("revoked key {} ({})", info.id, info.role.name())
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
