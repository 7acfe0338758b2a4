//! `facegate gallery info|migrate` and the `--gallery postgres://...` flag, as a user runs
//! them. The PostgreSQL half needs `FACEGATE_TEST_POSTGRES` (see `scripts/postgres-up.sh`).

mod support;

use std::path::Path;

use serde_json::Value;
use support::{facegate, photo_path};

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// Enrolls two people, checks verify, then migrates `from` -> `to` and verifies against `to`.
fn enroll_verify_migrate(from: &Path, to: &str) {
    let ben = photo_path("train", "ben_afflek", 0);
    let elton = photo_path("train", "elton_john", 1);
    for (name, photo) in [("ben", &ben), ("elton", &elton)] {
        let (code, _, err) = facegate(from, &["enroll", name, photo.to_str().unwrap()]);
        assert_eq!(code, 0, "{err}");
    }
    let probe = photo_path("val", "ben_afflek", 0);
    let (code, _, err) = facegate(from, &["verify", "ben", probe.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");

    let (code, out, err) = facegate(from, &["--json", "gallery", "migrate", "--to", to]);
    assert_eq!(code, 0, "{err}{out}");
    let report = json(&out);
    assert_eq!(report["complete"], true, "{out}");
    assert_eq!(report["report"]["templates_copied"], 2);
    // Again: nothing copied twice.
    let (code, out, _) = facegate(from, &["--json", "gallery", "migrate", "--to", to]);
    assert_eq!(code, 0);
    assert_eq!(json(&out)["report"]["templates_already_there"], 2);

    let target = Path::new(to.strip_prefix("sqlite:").unwrap_or(to));
    let (code, out, err) = facegate(target, &["--json", "gallery", "info"]);
    assert_eq!(code, 0, "{err}");
    let info = json(&out);
    assert_eq!(
        (info["people"].as_u64(), info["templates"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(
        info["model"],
        "fusion(mobilefacenet-human-3.0.4+dlib-resnet-v1)"
    );
    let (code, out, err) = facegate(target, &["--json", "identify", probe.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}{out}");
    assert_eq!(json(&out)["identity"], "ben");
    let (code, _, _) = facegate(target, &["forget", "elton"]);
    assert_eq!(code, 0);
    let (_, out, _) = facegate(target, &["--json", "list"]);
    assert_eq!(json(&out)["people"].as_array().unwrap().len(), 1);
}

#[test]
fn a_sqlite_gallery_migrates_to_another_file() {
    let dir = tempfile::tempdir().unwrap();
    let from = dir.path().join("a.db");
    let to = format!("sqlite:{}", dir.path().join("b.db").display());
    enroll_verify_migrate(&from, &to);
    // The same gallery twice is refused.
    let (code, _, err) = facegate(
        &from,
        &["gallery", "migrate", "--to", from.to_str().unwrap()],
    );
    assert_eq!(code, 2);
    assert!(err.contains("same gallery"), "{err}");
}

#[test]
fn the_cli_runs_on_postgres_and_migrates_both_ways() {
    let Some(db) = facegate_testing::ScratchDatabase::from_env().expect("a test database") else {
        return;
    };
    let url = db.url().to_string();

    let dir = tempfile::tempdir().unwrap();
    let sqlite = dir.path().join("a.db");
    // SQLite -> PostgreSQL, then use the PostgreSQL gallery with every command.
    enroll_verify_migrate(&sqlite, &url);
    // PostgreSQL -> SQLite.
    let back = dir.path().join("back.db");
    let (code, out, err) = facegate(
        Path::new(&url),
        &[
            "--json",
            "gallery",
            "migrate",
            "--to",
            &format!("sqlite:{}", back.display()),
        ],
    );
    assert_eq!(code, 0, "{err}{out}");
    assert_eq!(json(&out)["report"]["templates_copied"], 1);
    let (_, out, _) = facegate(Path::new(&url), &["--json", "gallery", "info"]);
    assert_eq!(json(&out)["backend"], "postgres");
    assert_eq!(
        json(&out)["schema_version"],
        facegate::gallery::postgres::SCHEMA_VERSION
    );
    // An unreachable server is a clear error, exit 2.
    let (code, _, err) = facegate(Path::new("postgres://nobody@127.0.0.1:1/none"), &["list"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("could not reach the PostgreSQL gallery"),
        "{err}"
    );
}
