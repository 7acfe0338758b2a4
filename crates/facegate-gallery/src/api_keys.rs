//! API key records, stored beside the people they guard: the `api_keys` table of the SQLite
//! file, or `facegate_api_keys` in the PostgreSQL database every server shares.
//!
//! This is storage only: ids, roles, labels and the hashes of the secrets. What a role may do
//! and how a presented secret is checked belong to the server.

use std::sync::Arc;

use crate::{GalleryError, GalleryLocation, PostgresGallery, SqliteGallery};

/// One stored key, hash included (never the secret: nothing stores it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRecord {
    pub id: String,
    pub role: String,
    pub label: String,
    /// UTC, `YYYY-MM-DDTHH:MM:SSZ`.
    pub created: String,
    pub revoked: Option<String>,
    pub hash: String,
}

/// Where API key records live.
pub trait KeyStore: Send + Sync {
    /// Stores a new key (its creation time is now).
    fn insert_key(&self, id: &str, role: &str, label: &str, hash: &str)
        -> Result<(), GalleryError>;

    /// Every key, revoked ones included, oldest first.
    fn keys(&self) -> Result<Vec<KeyRecord>, GalleryError>;

    /// The key with this id.
    fn key(&self, id: &str) -> Result<Option<KeyRecord>, GalleryError>;

    /// Marks a key revoked now; whether it went from active to revoked.
    fn revoke_key(&self, id: &str) -> Result<bool, GalleryError>;

    /// Replaces the stored hash of a key's secret (a legacy hash upgraded on use).
    fn set_key_hash(&self, id: &str, hash: &str) -> Result<(), GalleryError>;
}

impl GalleryLocation {
    /// The API key records in this gallery's database (created if needed).
    pub fn open_key_store(&self) -> Result<Arc<dyn KeyStore>, GalleryError> {
        Ok(match self {
            GalleryLocation::Sqlite(path) => Arc::new(SqliteGallery::open(path)?),
            GalleryLocation::Postgres(url) => Arc::new(PostgresGallery::open(url)?),
        })
    }
}
