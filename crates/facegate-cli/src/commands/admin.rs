//! Looking after the installation: `models`, `gallery` (info, migrate, keys, rekey, vacuum).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use facegate::gallery::{GalleryLocation, TemplateKey};
use facegate::models::{pins, ModelStore};
use facegate::{Engine, EngineOptions, Error, ModelChoice};
use serde_json::json;

use crate::cli::{GalleryAction, ModelsAction};
use crate::progress::{self, Spinner};

use crate::context::Context;
use facegate::service::{Actor, Rekeyed};

pub(crate) fn models(ctx: &Context, action: ModelsAction) -> Result<ExitCode> {
    let store = ctx.store();
    match action {
        ModelsAction::Fetch { force } => {
            if force {
                store.clear_derived()?;
            }
            let spinner = Spinner::new(ctx.interactive());
            store.fetch_all(&spinner)?;
            store.celebrity_dataset(&spinner)?;
            // Loading every model builds (and caches) every ONNX graph.
            let options = EngineOptions {
                model: ModelChoice::all(),
                liveness: true,
                ..ctx.engine_options()
            };
            Engine::load(&ctx.home, options, &spinner)?;
            spinner.finish();
            print_models(ctx, &store)
        }
        ModelsAction::List => print_models(ctx, &store),
        ModelsAction::Import { file } => {
            let package = store.import(&file)?;
            let doc = json!({ "imported": package.requirement(), "file": file });
            ctx.emit(&doc, || {
                println!("imported {} from {}", package.requirement(), file.display());
                println!(
                    "run `facegate models fetch` to extract and build it (no download needed now)"
                );
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub(crate) fn print_models(ctx: &Context, store: &ModelStore) -> Result<ExitCode> {
    let manifest = store.manifest_entries();
    let files: Vec<serde_json::Value> = pins::all_files()
        .into_iter()
        .map(|f| {
            let path = store.file_path(f);
            let state = if !path.exists() {
                "missing"
            } else if facegate::models::sha256_file(&path).ok().as_deref() == Some(f.sha256) {
                "verified"
            } else {
                "damaged (will be restored on next use)"
            };
            json!({
                "file": f.member,
                "package": f.package.requirement(),
                "license": f.package.license,
                "sha256": f.sha256,
                "path": path,
                "state": state,
            })
        })
        .collect();
    let built: Vec<&facegate::models::ManifestEntry> =
        manifest.iter().filter(|e| e.kind == "built").collect();
    let doc = json!({ "models_dir": store.root(), "files": files, "built": built });
    ctx.emit(&doc, || {
        println!("models in {}", store.root().display());
        for f in &files {
            println!(
                "  {:<45} {:<32} {}  [{}]",
                f["file"].as_str().unwrap_or_default(),
                f["package"].as_str().unwrap_or_default(),
                f["state"].as_str().unwrap_or_default(),
                f["license"].as_str().unwrap_or_default()
            );
        }
        for b in &built {
            println!(
                "  built {:<39} from {}  ({} MB)",
                b.path,
                b.source_package,
                b.bytes / 1_000_000
            );
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Writes a new file only its owner can read; refuses to overwrite one.
pub(crate) fn write_private_file(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| {
        format!(
            "could not create {} (it must not exist yet)",
            path.display()
        )
    })?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("could not write {}", path.display()))
}

/// `sqlite:PATH`, a plain path, or a PostgreSQL URL.
pub(crate) fn parse_location(text: &str) -> GalleryLocation {
    match text.strip_prefix("sqlite:") {
        Some(path) => GalleryLocation::Sqlite(PathBuf::from(path)),
        None => GalleryLocation::parse(text),
    }
}

pub(crate) fn gallery(ctx: &Context, action: GalleryAction) -> Result<ExitCode> {
    match action {
        GalleryAction::Info => {
            let location = ctx.gallery_location();
            let (backend, schema) = match &location {
                GalleryLocation::Sqlite(_) => ("sqlite", None),
                GalleryLocation::Postgres(url) => {
                    let db = facegate::gallery::PostgresGallery::open(url).map_err(Error::from)?;
                    ("postgres", Some(db.schema_version().map_err(Error::from)?))
                }
            };
            let (model, counts, key_id) = match ctx.gallery_for_read()? {
                Some(g) => (
                    g.model_id().map_err(Error::from)?,
                    g.counts().map_err(Error::from)?,
                    g.key_id().map_err(Error::from)?,
                ),
                None => (None, Default::default(), None),
            };
            let doc = json!({
                "gallery": location.to_string(),
                "backend": backend,
                "schema_version": schema,
                "model": model,
                "people": counts.people,
                "templates": counts.templates,
                "encrypted": key_id.is_some(),
                "key_id": key_id,
            });
            ctx.emit(&doc, || {
                println!("gallery   {location} ({backend})");
                if let Some(v) = schema {
                    println!("schema    version {v}");
                }
                println!("model     {}", model.as_deref().unwrap_or("none yet"));
                println!("people    {}", counts.people);
                println!("templates {}", counts.templates);
                match &key_id {
                    Some(id) => println!("encrypted yes (AES-256-GCM, key id {id})"),
                    None => println!("encrypted no"),
                }
            })?;
            Ok(ExitCode::SUCCESS)
        }
        GalleryAction::Vacuum => {
            let location = ctx.gallery_location();
            let Some(gallery) = ctx.gallery_for_read()? else {
                bail!("the gallery {location} does not exist");
            };
            let started = std::time::Instant::now();
            let still_open = gallery.compact().map_err(Error::from)?;
            let seconds = started.elapsed().as_secs_f64();
            let doc = json!({
                "gallery": location.to_string(),
                "seconds": seconds,
                "complete": still_open == 0,
                "older_transactions_open": still_open,
            });
            ctx.emit(&doc, || {
                if still_open == 0 {
                    println!("rewrote {location} in {seconds:.1} s: erased templates are gone from its files");
                } else {
                    println!("rewrote {location} in {seconds:.1} s, but {still_open} older transaction(s) were still open: rows they could see may remain; run it again when they have finished");
                }
            })?;
            Ok(if still_open == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        GalleryAction::Keygen { output } => {
            let hex = TemplateKey::generate_hex().map_err(Error::from)?;
            let id = TemplateKey::from_hex(&hex)
                .map_err(Error::from)?
                .id()
                .to_string();
            match output {
                Some(path) => {
                    write_private_file(&path, &format!("{hex}\n"))?;
                    let doc = json!({ "key_file": path.display().to_string(), "key_id": id });
                    ctx.emit(&doc, || {
                        println!("wrote a new key (id {id}) to {}", path.display());
                        println!(
                            "keep a copy somewhere safe: without it the templates cannot be read"
                        );
                    })?;
                }
                None => {
                    let doc = json!({ "key": hex, "key_id": id });
                    ctx.emit(&doc, || println!("{hex}"))?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        GalleryAction::Rekey {
            new_key_file,
            decrypt,
        } => {
            let new_key = match (&new_key_file, decrypt) {
                (Some(path), false) => Some(TemplateKey::from_file(path).map_err(Error::from)?),
                _ => None,
            };
            let location = ctx.gallery_location();
            if !location.exists() {
                bail!("the gallery {location} does not exist");
            }
            let gallery = ctx.gallery_for_write()?;
            let Rekeyed {
                templates: rewritten,
                old_key_id: old_id,
                new_key_id: new_id,
            } = facegate::service::rekey(gallery.as_ref(), &Actor::local_user(), new_key.as_ref())?;
            let show = |id: &Option<String>| id.clone().unwrap_or_else(|| "none".into());
            let doc = json!({
                "gallery": location.to_string(),
                "templates": rewritten,
                "old_key_id": old_id,
                "new_key_id": new_id,
            });
            ctx.emit(&doc, || {
                println!(
                    "rewrote {rewritten} templates: key {} -> {}",
                    show(&old_id),
                    show(&new_id)
                );
                if new_id.is_none() {
                    println!("the templates are now stored UNENCRYPTED");
                } else {
                    println!("from now on use the new key (--key-file / FACEGATE_KEY)");
                }
            })?;
            Ok(ExitCode::SUCCESS)
        }
        GalleryAction::Migrate { from, to } => {
            let from = from.map_or_else(|| ctx.gallery_location(), |f| parse_location(&f));
            let to = parse_location(&to);
            if from == to {
                bail!("--from and --to are the same gallery ({from})");
            }
            if !from.exists() {
                bail!("the source gallery {from} does not exist");
            }
            // Both ends with this process's key (to change keys, `gallery rekey` first or after).
            let source = ctx.open_gallery(&from)?;
            let target = ctx.open_gallery(&to)?;
            let people = source.counts().map_err(Error::from)?.people;
            let bar = progress::bar(people as u64, ctx.interactive(), "copying people");
            let report =
                facegate::gallery::migrate::copy(source.as_ref(), target.as_ref(), &mut |n| {
                    bar.set_position(n as u64)
                })
                .map_err(Error::from)?;
            bar.finish_and_clear();
            let complete = report.is_complete();
            let doc = json!({
                "from": from.to_string(),
                "to": to.to_string(),
                "complete": complete,
                "report": report,
            });
            ctx.emit(&doc, || {
                println!(
                    "copied {} people and {} templates from {from} to {to} ({} templates were already there)",
                    report.people_copied, report.templates_copied, report.templates_already_there
                );
                println!(
                    "source: {} people, {} templates; target now: {} people, {} templates",
                    report.source.people,
                    report.source.templates,
                    report.target_after.people,
                    report.target_after.templates
                );
                if complete {
                    println!("count check passed: every person and template is in the target");
                } else {
                    println!(
                        "COUNT CHECK FAILED: {} people are missing or short in the target: {}",
                        report.missing_people.len(),
                        report.missing_people.iter().take(10).cloned().collect::<Vec<_>>().join(", ")
                    );
                }
            })?;
            Ok(if complete {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            })
        }
    }
}
