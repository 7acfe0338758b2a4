//! Gallery backends for the contract tests: a SQLite file in a temporary directory, and a
//! fresh database on the PostgreSQL server named by `FACEGATE_TEST_POSTGRES` (a URL, as
//! printed by `scripts/postgres-up.sh`). Without that variable the PostgreSQL tests say so and
//! pass, unless `FACEGATE_REQUIRE_POSTGRES=1` (CI sets it) makes them fail.

#![allow(dead_code)]

use std::sync::Arc;

use facegate_gallery::{Gallery, GalleryLocation};

pub struct Backend {
    pub name: &'static str,
    pub location: GalleryLocation,
    _cleanup: Cleanup,
}

impl Backend {
    /// A new handle on the same gallery (another process would open its own).
    pub fn open(&self) -> Arc<dyn Gallery> {
        self.location.open().expect("open the gallery")
    }

    /// The database URL (PostgreSQL backends only).
    pub fn url(&self) -> &str {
        match &self.location {
            GalleryLocation::Postgres(url) => url,
            other => panic!("{other} is not a PostgreSQL gallery"),
        }
    }

    /// The same gallery with extra URL settings (PostgreSQL only).
    pub fn open_with(&self, settings: &str) -> Arc<dyn Gallery> {
        match &self.location {
            GalleryLocation::Postgres(url) => {
                GalleryLocation::Postgres(format!("{url}?{settings}"))
                    .open()
                    .expect("open the gallery")
            }
            other => other.open().expect("open the gallery"),
        }
    }
}

enum Cleanup {
    Directory(#[allow(dead_code)] tempfile::TempDir),
    Database(#[allow(dead_code)] facegate_testing::ScratchDatabase),
}

pub fn sqlite() -> Backend {
    let dir = tempfile::tempdir().expect("temporary directory");
    Backend {
        name: "sqlite",
        location: GalleryLocation::Sqlite(dir.path().join("gallery.db")),
        _cleanup: Cleanup::Directory(dir),
    }
}

/// A fresh, empty database on the test server (see [`facegate_testing::ScratchDatabase`]),
/// dropped at the end of the test.
pub fn postgres() -> Option<Backend> {
    let database = facegate_testing::ScratchDatabase::from_env().expect("a test database")?;
    Some(Backend {
        name: "postgres",
        location: GalleryLocation::Postgres(database.url().to_string()),
        _cleanup: Cleanup::Database(database),
    })
}
