//! What every command shares: the resolved home, gallery and keys ([`Context`]), exit codes,
//! the local user as the audit log names them, and finding images in folders.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use facegate::align::AlignMode;
use facegate::gallery::audit_chain::{self};
use facegate::gallery::{AuditKey, Gallery, GalleryLocation, NewTemplate, TemplateKey};
use facegate::models::ModelStore;
use facegate::quality::QualityLevel;
use facegate::service::{Actor, EnrollMode, FaceService};
use facegate::{Engine, EngineOptions, Error, Home, ModelChoice};
use serde::Serialize;

use crate::cli::{AlignArg, Global};
use crate::progress::Spinner;

pub use facegate::eval::IMAGE_EXTENSIONS;

/// What every command needs: resolved paths and output mode.
pub struct Context {
    pub global: Global,
    pub home: Home,
    /// The model in force, resolved once (see [`Context::model`]).
    pub resolved_model: std::sync::OnceLock<ModelChoice>,
    /// The gallery at `--gallery`, opened once per command and shared by whatever needs it.
    pub opened_gallery: std::sync::Mutex<Option<Arc<dyn Gallery>>>,
}

impl Context {
    /// Progress drawing only makes sense for a person at a terminal.
    pub fn interactive(&self) -> bool {
        !self.global.json && std::io::stderr().is_terminal()
    }

    pub fn store(&self) -> ModelStore {
        ModelStore::new(self.home.models_dir())
    }

    /// `--model`; else the model the existing gallery was made with (a gallery keeps working
    /// when facegate's default changes); else the default.
    pub fn model(&self) -> ModelChoice {
        self.resolved_model
            .get_or_init(|| {
                if let Some(given) = &self.global.model {
                    return given.clone();
                }
                self.gallery_for_read()
                    .ok()
                    .flatten()
                    .and_then(|g| g.model_id().ok().flatten())
                    .and_then(|id| ModelChoice::from_model_id(&id))
                    .unwrap_or_default()
            })
            .clone()
    }

    /// The engine options for commands that do not use the gallery (evaluation, benchmarks,
    /// the demo): `--model` or the default.
    pub fn standalone_engine(&self) -> Result<Engine> {
        self.engine_with(self.standalone_engine_options())
    }

    /// The options of [`Context::standalone_engine`].
    pub fn standalone_engine_options(&self) -> EngineOptions {
        EngineOptions {
            model: self.global.model.clone().unwrap_or_default(),
            ..self.options_with(ModelChoice::default())
        }
    }

    pub fn engine_options(&self) -> EngineOptions {
        self.options_with(self.model())
    }

    fn options_with(&self, model: ModelChoice) -> EngineOptions {
        EngineOptions {
            model,
            enroll_quality: self.global.quality.unwrap_or(QualityLevel::Standard),
            verify_quality: self.global.quality.unwrap_or(QualityLevel::Off),
            liveness: self.global.liveness,
            // Loaded by the commands that run liveness challenges.
            eyes: false,
            onnxruntime_library: None,
            flip: self.global.flip,
            align: match self.global.align {
                AlignArg::Similarity => AlignMode::Similarity,
                AlignArg::Box => AlignMode::Box {
                    margin: self.global.margin,
                },
            },
            max_pixels: self.global.max_pixels,
            min_face_size: self.global.min_face_size,
            threads: self.global.threads,
            parallel: 0,
            threshold: self.global.threshold,
            security: self.global.security,
            target_fpir: self.global.target_fpir,
        }
    }

    /// Loads the models, fetching them first if needed (with a spinner).
    pub fn engine(&self) -> Result<Engine> {
        self.engine_with(self.engine_options())
    }

    pub fn engine_with(&self, options: EngineOptions) -> Result<Engine> {
        let spinner = Spinner::new(self.interactive());
        let engine = Engine::load(&self.home, options, &spinner).map_err(anyhow::Error::new)?;
        spinner.finish();
        Ok(engine)
    }

    /// The gallery: `--gallery` (a SQLite path or a `postgres://` URL), else `<home>/gallery.db`.
    pub fn gallery_location(&self) -> GalleryLocation {
        match &self.global.gallery {
            Some(given) => GalleryLocation::from_path(given),
            None => GalleryLocation::Sqlite(self.home.default_gallery()),
        }
    }

    /// The engine for many photos: one embedding replica per core, photos side by side.
    pub fn bulk_engine(&self, photos: usize) -> Result<Engine> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        self.engine_with(EngineOptions {
            parallel: if photos > 1 { cores } else { 0 },
            ..self.engine_options()
        })
    }

    /// The key for encrypted templates: `--key-file` / `FACEGATE_KEY_FILE`, or `FACEGATE_KEY`.
    pub fn template_key(&self) -> Result<Option<Arc<TemplateKey>>> {
        let key = match &self.global.key_file {
            Some(path) => Some(TemplateKey::from_file(path).map_err(Error::from)?),
            None => TemplateKey::from_env().map_err(Error::from)?,
        };
        Ok(key.map(Arc::new))
    }

    /// The key that seals the audit log: `--audit-key-file` / `FACEGATE_AUDIT_KEY_FILE`, else
    /// `audit.key` in the data folder; created where it is missing.
    pub fn audit_key(&self) -> Result<Arc<AuditKey>> {
        let path = match &self.global.audit_key_file {
            Some(path) => path.clone(),
            None => self.home.default_audit_key(),
        };
        Ok(Arc::new(
            AuditKey::load_or_create(&path).map_err(Error::from)?,
        ))
    }

    /// Opens a gallery with this process's template and audit keys, refusing an audit key
    /// that would break the log's chain.
    pub fn open_gallery(&self, location: &GalleryLocation) -> Result<Arc<dyn Gallery>> {
        let (gallery, audit_key) = self.open_gallery_unchecked(location)?;
        audit_chain::check_key(gallery.as_ref(), &audit_key).map_err(Error::from)?;
        Ok(gallery)
    }

    /// [`Self::open_gallery`] whatever audit key sealed the log (to read or verify it).
    pub fn open_gallery_unchecked(
        &self,
        location: &GalleryLocation,
    ) -> Result<(Arc<dyn Gallery>, Arc<AuditKey>)> {
        let key = self.template_key()?;
        let audit_key = self.audit_key()?;
        let gallery = location
            .open_with_keys(key, Some(audit_key.clone()))
            .map_err(Error::from)?;
        Ok((gallery, audit_key))
    }

    /// The gallery for writing, created if missing.
    pub fn gallery_for_write(&self) -> Result<Arc<dyn Gallery>> {
        let mut opened = self
            .opened_gallery
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(gallery) = opened.as_ref() {
            return Ok(gallery.clone());
        }
        let gallery = self.open_gallery(&self.gallery_location())?;
        *opened = Some(gallery.clone());
        Ok(gallery)
    }

    /// The gallery for reading; `None` when a SQLite gallery does not exist yet (nothing is
    /// created).
    pub fn gallery_for_read(&self) -> Result<Option<Arc<dyn Gallery>>> {
        let location = self.gallery_location();
        if !location.exists() {
            return Ok(None);
        }
        Ok(Some(self.gallery_for_write()?))
    }

    /// Prints `value` as JSON, or runs `text` to print for people.
    pub fn emit<T: Serialize>(&self, value: &T, text: impl FnOnce()) -> Result<()> {
        if self.global.json {
            println!("{}", serde_json::to_string_pretty(value)?);
        } else {
            text();
        }
        Ok(())
    }
}

pub fn exit(success: bool) -> ExitCode {
    if success {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Image files under `dir`, recursively, sorted.
pub fn images_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let entries = std::fs::read_dir(&current)
            .with_context(|| format!("could not list {}", current.display()))?;
        for entry in entries {
            let path = entry
                .with_context(|| format!("could not list {}", current.display()))?
                .path();
            if path.is_dir() {
                pending.push(path);
            } else if path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
            {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Stores the templates for the local user (a new person, or more faces for one) with the
/// audit entry saying so, in one transaction.
pub(crate) fn enroll_audited(
    engine: &Engine,
    gallery: &dyn Gallery,
    name: &str,
    templates: &[NewTemplate],
) -> Result<facegate::gallery::EnrollReport> {
    let service = FaceService::new(engine, gallery);
    let actor = Actor::local_user();
    let admitted = service.admit_enrollment(&actor, name, EnrollMode::CreateOrAdd)?;
    Ok(service.enroll(&actor, &admitted, templates)?)
}
