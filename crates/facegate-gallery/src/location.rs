//! Where a gallery lives: a SQLite file path or a PostgreSQL URL.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::{AuditKey, Gallery, GalleryError, PostgresGallery, SqliteGallery, TemplateKey};

/// A gallery's address as users write it (`--gallery`, `FACEGATE_GALLERY`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GalleryLocation {
    Sqlite(PathBuf),
    /// A `postgres://` or `postgresql://` URL (kept whole: it may carry a password).
    Postgres(String),
}

impl GalleryLocation {
    pub fn parse(text: &str) -> GalleryLocation {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            GalleryLocation::Postgres(text.to_string())
        } else {
            GalleryLocation::Sqlite(PathBuf::from(text))
        }
    }

    pub fn from_path(path: &Path) -> GalleryLocation {
        match path.to_str() {
            Some(text) => GalleryLocation::parse(text),
            None => GalleryLocation::Sqlite(path.to_path_buf()),
        }
    }

    /// Opens (creating if needed) an unencrypted gallery (or an encrypted one, to list names).
    pub fn open(&self) -> Result<Arc<dyn Gallery>, GalleryError> {
        self.open_with_key(None)
    }

    /// Opens (creating if needed) the gallery, its templates read and written with `key`.
    pub fn open_with_key(
        &self,
        key: Option<Arc<TemplateKey>>,
    ) -> Result<Arc<dyn Gallery>, GalleryError> {
        self.open_with_keys(key, None)
    }

    /// Opens (creating if needed) the gallery, its templates read and written with `key` and
    /// its audit entries sealed with `audit_key`.
    pub fn open_with_keys(
        &self,
        key: Option<Arc<TemplateKey>>,
        audit_key: Option<Arc<AuditKey>>,
    ) -> Result<Arc<dyn Gallery>, GalleryError> {
        Ok(match self {
            GalleryLocation::Sqlite(path) => Arc::new(
                SqliteGallery::open(path)?
                    .with_key(key)
                    .with_audit_key(audit_key),
            ),
            GalleryLocation::Postgres(url) => Arc::new(
                PostgresGallery::open(url)?
                    .with_key(key)
                    .with_audit_key(audit_key),
            ),
        })
    }

    /// Whether there is something to read: a SQLite file that does not exist yet is an empty
    /// gallery nobody needs to create. A database is assumed to exist.
    pub fn exists(&self) -> bool {
        match self {
            GalleryLocation::Sqlite(path) => path.exists(),
            GalleryLocation::Postgres(_) => true,
        }
    }

    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            GalleryLocation::Sqlite(path) => Some(path),
            GalleryLocation::Postgres(_) => None,
        }
    }
}

/// Shown to people: passwords in URLs are replaced with `***`.
impl fmt::Display for GalleryLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GalleryLocation::Sqlite(path) => write!(f, "{}", path.display()),
            GalleryLocation::Postgres(url) => write!(f, "{}", crate::postgres::redact(url)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_paths_are_told_apart() {
        assert_eq!(
            GalleryLocation::parse("postgresql://a:b@h/d").to_string(),
            "postgresql://a:***@h/d"
        );
        assert!(matches!(
            GalleryLocation::parse("./postgres/gallery.db"),
            GalleryLocation::Sqlite(_)
        ));
    }
}
