use std::path::{Path, PathBuf};

use crate::Error;

/// Where facegate keeps its models and its default gallery.
///
/// With an explicit home (`--home` / `FACEGATE_HOME`) both live under it; otherwise models go
/// to the platform's cache directory and the gallery to its data directory.
#[derive(Clone, Debug)]
pub struct Home {
    models: PathBuf,
    data: PathBuf,
}

impl Home {
    pub fn at(root: &Path) -> Home {
        Home {
            models: root.join("models"),
            data: root.to_path_buf(),
        }
    }

    pub fn platform_default() -> Result<Home, Error> {
        let cache = dirs::cache_dir().ok_or(Error::NoHome)?;
        let data = dirs::data_dir().ok_or(Error::NoHome)?;
        Ok(Home {
            models: cache.join("facegate").join("models"),
            data: data.join("facegate"),
        })
    }

    pub fn resolve(explicit: Option<&Path>) -> Result<Home, Error> {
        match explicit {
            Some(root) => Ok(Home::at(root)),
            None => Home::platform_default(),
        }
    }

    pub fn models_dir(&self) -> &Path {
        &self.models
    }

    pub fn default_gallery(&self) -> PathBuf {
        self.data.join("gallery.db")
    }

    /// Where the key that seals the audit log is kept unless another file is named (created
    /// on first use, readable by its owner only).
    pub fn default_audit_key(&self) -> PathBuf {
        self.data.join("audit.key")
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }
}
