//! Gallery backends for the contract tests: a SQLite file in a temporary directory, and a
//! fresh database on the PostgreSQL server named by `FACEGATE_TEST_POSTGRES` (a URL, as
//! printed by `scripts/postgres-up.sh`). Without that variable the PostgreSQL tests say so and
//! pass, unless `FACEGATE_REQUIRE_POSTGRES=1` (CI sets it) makes them fail.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};
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
    Database { admin_url: String, name: String },
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Cleanup::Database { admin_url, name } = self {
            if let Ok(mut admin) = postgres::Client::connect(admin_url, postgres::NoTls) {
                let _ =
                    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        }
    }
}

pub fn sqlite() -> Backend {
    let dir = tempfile::tempdir().expect("temporary directory");
    Backend {
        name: "sqlite",
        location: GalleryLocation::Sqlite(dir.path().join("gallery.db")),
        _cleanup: Cleanup::Directory(dir),
    }
}

/// The server's URL, or `None` (after saying why) when PostgreSQL tests cannot run here.
pub fn postgres_url() -> Option<String> {
    match std::env::var("FACEGATE_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("FACEGATE_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "FACEGATE_REQUIRE_POSTGRES=1 but FACEGATE_TEST_POSTGRES is not set; start a server with scripts/postgres-up.sh"
            );
            eprintln!("skipped: set FACEGATE_TEST_POSTGRES (scripts/postgres-up.sh prints the URL) to run the PostgreSQL gallery tests");
            None
        }
    }
}

/// A fresh, empty database on the test server, dropped at the end of the test.
pub fn postgres() -> Option<Backend> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let admin_url = postgres_url()?;
    let name = format!(
        "facegate_test_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    );
    let mut admin = postgres::Client::connect(&admin_url, postgres::NoTls)
        .expect("connect to the PostgreSQL test server");
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .expect("create a test database");
    let url = database_url(&admin_url, &name);
    Some(Backend {
        name: "postgres",
        location: GalleryLocation::Postgres(url),
        _cleanup: Cleanup::Database { admin_url, name },
    })
}

/// `postgres://u@h:p/postgres?x` -> `postgres://u@h:p/NAME?x`.
pub fn database_url(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let root = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    format!("{root}/{name}{query}")
}
