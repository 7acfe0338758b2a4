//! Restart safety: PostgreSQL stops and starts while a gallery is open; requests made while it
//! is down fail with a transient error, and the next ones succeed on fresh connections.
//! Needs the server of `scripts/postgres-up.sh` (it is restarted with the scripts), so it runs
//! only when `FACEGATE_TEST_POSTGRES_RESTART=1` (CI sets it).

mod support;

use std::path::PathBuf;
use std::process::Command;

use facegate_gallery::{GalleryError, NewTemplate};

fn script(name: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../scripts")
        .join(name);
    let status = Command::new("bash")
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run the PostgreSQL script");
    assert!(status.success(), "{} failed", path.display());
}

fn template(sha: &str) -> NewTemplate {
    NewTemplate {
        embedding: vec![0.6, 0.8],
        image_sha256: sha.into(),
        bbox: [0.0; 4],
        detector_score: 1.0,
        source: "test".into(),
        quality: None,
    }
}

#[test]
fn the_gallery_reconnects_after_postgres_restarts() {
    if std::env::var("FACEGATE_TEST_POSTGRES_RESTART").as_deref() != Ok("1") {
        eprintln!("skipped: set FACEGATE_TEST_POSTGRES_RESTART=1 (with a server from scripts/postgres-up.sh) to test restarts");
        return;
    }
    let Some(backend) = support::postgres() else {
        return;
    };
    let gallery = backend.open();
    gallery.enroll("before", "m1", &[template("a")]).unwrap();

    script("postgres-down.sh");
    let err = gallery.people().unwrap_err();
    assert!(err.is_transient(), "while down: {err}");
    let err = gallery
        .enroll("during", "m1", &[template("b")])
        .unwrap_err();
    assert!(err.is_transient(), "while down: {err}");

    script("postgres-up.sh");
    // Pooled connections died with the server; the gallery replaces them by itself.
    let names: Vec<String> = gallery
        .people()
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["before"]);
    gallery.enroll("after", "m1", &[template("c")]).unwrap();
    assert_eq!(gallery.counts().unwrap().templates, 2);
    assert!(matches!(
        gallery.person("during"),
        Err(GalleryError::UnknownPerson { .. })
    ));
    let found = gallery.nearest("m1", &[0.6, 0.8], 2).unwrap().unwrap();
    assert_eq!(found.hits.len(), 2);
}
