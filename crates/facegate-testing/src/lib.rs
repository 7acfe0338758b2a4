//! What facegate's test suites share: the test home (models and the example photos, fetched
//! by facegate's own code on first use) and throwaway PostgreSQL databases. Tests only.

use std::path::PathBuf;

use facegate_models::{ModelStore, SilentObserver};
use postgres::Client;

/// `FACEGATE_TEST_HOME`, or `target/facegate-test-home` in the workspace: one model cache for
/// every test run.
pub fn home() -> PathBuf {
    std::env::var_os("FACEGATE_TEST_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/facegate-test-home")
        })
}

/// The 5-celebrity example set (`train/` and `val/`, a folder per person), extracted on first
/// use.
pub fn photos_dir() -> PathBuf {
    ModelStore::new(home().join("models"))
        .celebrity_dataset(&SilentObserver)
        .expect("extract the example photos")
}

/// The `n`-th photo (sorted by name) of `person` in `split` (`train` or `val`).
pub fn photo_path(split: &str, person: &str, n: usize) -> PathBuf {
    let dir = photos_dir().join(split).join(person);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    files.sort();
    files[n].clone()
}

/// The bytes of [`photo_path`].
pub fn photo(split: &str, person: &str, n: usize) -> Vec<u8> {
    let path = photo_path(split, person, n);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A throwaway database on the PostgreSQL server named by `FACEGATE_TEST_POSTGRES` (a URL, as
/// `scripts/postgres-up.sh` prints it), dropped when this value goes.
pub struct ScratchDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl ScratchDatabase {
    /// `Ok(None)` (after saying so on stderr) when `FACEGATE_TEST_POSTGRES` is not set, so
    /// PostgreSQL tests skip on machines without a server; an error instead when
    /// `FACEGATE_REQUIRE_POSTGRES=1` (CI), so they cannot skip silently there.
    pub fn from_env() -> Result<Option<ScratchDatabase>, String> {
        let admin_url = match std::env::var("FACEGATE_TEST_POSTGRES") {
            Ok(url) if !url.is_empty() => url,
            _ if std::env::var("FACEGATE_REQUIRE_POSTGRES").as_deref() == Ok("1") => {
                return Err("FACEGATE_REQUIRE_POSTGRES=1 but FACEGATE_TEST_POSTGRES is not set; start a server with scripts/postgres-up.sh".into())
            }
            _ => {
                eprintln!("skipped: set FACEGATE_TEST_POSTGRES (scripts/postgres-up.sh prints the URL) to run the PostgreSQL tests");
                return Ok(None);
            }
        };
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = format!(
            "facegate_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos())
        );
        let failed = |source: postgres::Error| format!("the test PostgreSQL server: {source}");
        let mut admin = Client::connect(&admin_url, postgres::NoTls).map_err(failed)?;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .map_err(failed)?;
        let url = database_url(&admin_url, &name);
        Ok(Some(ScratchDatabase {
            admin_url,
            name,
            url,
        }))
    }

    /// The database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL of the server's admin database (the one in `FACEGATE_TEST_POSTGRES`).
    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Its own thread, like the pool's: this may run on an async runtime's thread.
        let dropping = std::thread::spawn(move || {
            if let Ok(mut admin) = Client::connect(&admin_url, postgres::NoTls) {
                let _ =
                    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        });
        let _ = dropping.join();
    }
}

/// `postgres://u@h:p/postgres?x` -> `postgres://u@h:p/NAME?x`.
fn database_url(url: &str, name: &str) -> String {
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
