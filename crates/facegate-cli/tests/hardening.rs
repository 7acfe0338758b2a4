//! Crash safety and concurrency of the galleries (SQLite, and PostgreSQL when
//! `FACEGATE_TEST_POSTGRES` names a server), through the real binary: kill -9 in the middle of
//! a folder enrollment, several enrolling processes and readers at once, and a write that runs
//! out of space.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use facegate::models::{ModelStore, SilentObserver};
use support::home;

mod support;

/// The 5-celebrity training photos: one folder per person.
fn people_dir() -> PathBuf {
    ModelStore::new(home().join("models"))
        .celebrity_dataset(&SilentObserver)
        .expect("extract the example photos")
        .join("train")
}

/// A gallery to attack: a SQLite file, or a scratch PostgreSQL database.
enum Target {
    Sqlite(PathBuf),
    Postgres(facegate_testing::ScratchDatabase),
}

impl Target {
    fn arg(&self) -> &std::ffi::OsStr {
        match self {
            Target::Sqlite(path) => path.as_os_str(),
            Target::Postgres(db) => std::ffi::OsStr::new(db.url()),
        }
    }

    /// `(person, templates)`, sorted, after checking integrity (SQLite's own check; on
    /// PostgreSQL, that no template lacks its person).
    fn contents(&self) -> Vec<(String, i64)> {
        match self {
            Target::Sqlite(path) => contents(path),
            Target::Postgres(db) => {
                use facegate::gallery::Gallery as _;
                let g = facegate::gallery::PostgresGallery::open(db.url()).unwrap();
                let orphans: i64 = g
                    .run(|c| {
                        c.query_one(
                            "SELECT count(*) FROM facegate_templates t WHERE NOT EXISTS
                             (SELECT 1 FROM facegate_people p WHERE p.name = t.person)",
                            &[],
                        )
                        .map(|r| r.get(0))
                    })
                    .unwrap();
                assert_eq!(orphans, 0);
                g.people()
                    .unwrap()
                    .into_iter()
                    .map(|p| (p.name, p.templates as i64))
                    .collect()
            }
        }
    }
}

/// SQLite in `dir`, and PostgreSQL when a test server is configured.
fn targets(dir: &Path) -> Vec<(&'static str, Target)> {
    let mut targets = vec![("sqlite", Target::Sqlite(dir.join("gallery.db")))];
    if let Some(db) = facegate_testing::ScratchDatabase::from_env().unwrap() {
        targets.push(("postgres", Target::Postgres(db)));
    }
    targets
}

fn facegate(gallery: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_facegate"));
    command
        .arg("--home")
        .arg(home())
        .arg("--gallery")
        .arg(gallery)
        .args(["--quality", "off"]);
    command
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

/// `(person, templates)` in the gallery, sorted, after checking the file's integrity.
fn contents(gallery: &Path) -> Vec<(String, i64)> {
    if !gallery.exists() {
        return Vec::new();
    }
    let c = rusqlite::Connection::open(gallery).unwrap();
    let check: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok", "{}", gallery.display());
    let created: bool = c
        .query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE name = 'people'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    if !created {
        // Killed while creating the gallery, before its schema: nobody is in it (facegate
        // creates the schema on the next open).
        return Vec::new();
    }
    let mut statement = c
        .prepare(
            "SELECT p.name, count(t.id) FROM people p LEFT JOIN templates t ON t.person_id = p.id
             GROUP BY p.name ORDER BY p.name",
        )
        .unwrap();
    statement
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn kill_9_during_enroll_all_never_leaves_a_half_enrolled_person() {
    let dir = tempfile::tempdir().unwrap();
    let people = people_dir();
    // The complete result, from an uninterrupted run.
    let reference = dir.path().join("reference.db");
    let out = facegate(&reference)
        .args(["--json", "enroll-all"])
        .arg(&people)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let complete = contents(&reference);
    assert_eq!(complete.len(), 5);
    for (backend, gallery) in targets(dir.path()) {
        kill_9_during_enroll_all(backend, &gallery, &people, &complete);
    }
}

fn kill_9_during_enroll_all(
    backend: &str,
    gallery: &Target,
    people: &Path,
    complete: &[(String, i64)],
) {
    // Kill at spread-out moments (a fixed sequence, so a failure can be reproduced).
    for delay_ms in [300u64, 900, 1700, 2600, 3400, 4600] {
        let mut child = facegate(gallery.arg())
            .args(["--json", "enroll-all"])
            .arg(people)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        for (person, templates) in gallery.contents() {
            let expected = complete.iter().find(|(p, _)| *p == person).unwrap().1;
            assert_eq!(
                templates, expected,
                "{backend}: {person} is half enrolled after a kill at {delay_ms} ms"
            );
        }
    }
    // Re-running completes the enrollment; what was already there is skipped, not redone.
    let before = gallery.contents();
    let out = facegate(gallery.arg())
        .args(["--json", "enroll-all"])
        .arg(people)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = json(&out.stdout);
    let already: i64 = doc["people"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["already_enrolled"].as_i64().unwrap())
        .sum();
    let had: i64 = before.iter().map(|(_, n)| n).sum();
    assert_eq!(already, had, "{backend}: {doc}");
    assert_eq!(gallery.contents(), complete, "{backend}");
}

#[test]
fn concurrent_enrollments_and_readers_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, gallery) in targets(dir.path()) {
        concurrent_enrollments_and_readers(backend, &gallery);
    }
}

fn concurrent_enrollments_and_readers(backend: &str, gallery: &Target) {
    let people = people_dir();
    let mut folders: Vec<PathBuf> = std::fs::read_dir(&people)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    folders.sort();
    // One writer per person, all at once, plus readers listing and identifying meanwhile.
    let writers: Vec<_> = folders
        .iter()
        .map(|folder| {
            let name = folder.file_name().unwrap().to_string_lossy().into_owned();
            facegate(gallery.arg())
                .args(["--json", "enroll", &name])
                .arg(folder)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let started = Instant::now();
    let mut reads = 0;
    while started.elapsed() < Duration::from_secs(4) {
        let out = facegate(gallery.arg())
            .args(["--json", "list"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(!text.contains("locked"), "{backend}: a reader saw: {text}");
        assert!(out.status.success() || text.contains("empty"), "{text}");
        reads += 1;
    }
    let mut enrolled = 0;
    for writer in writers {
        let out = writer.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{backend}: a writer failed: {text}");
        assert!(!text.contains("locked"), "{text}");
        enrolled += json(&out.stdout)["enrolled"].as_array().unwrap().len() as i64;
    }
    let stored = gallery.contents();
    assert_eq!(stored.len(), 5, "{backend}: {stored:?}");
    assert_eq!(stored.iter().map(|(_, n)| n).sum::<i64>(), enrolled);
    assert!(reads > 0);
}

#[test]
fn a_full_disk_during_enroll_is_a_clear_error_and_the_gallery_is_intact() {
    let dir = tempfile::tempdir().unwrap();
    let gallery = dir.path().join("gallery.db");
    let people = people_dir();
    let ben = people.join("ben_afflek");
    let out = facegate(&gallery)
        .args(["enroll", "ben"])
        .arg(&ben)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = contents(&gallery);
    // No file may grow past 4 KiB: every write to the gallery fails as on a full disk (EFBIG;
    // SIGXFSZ is ignored so the write returns an error instead of killing the process).
    let script = format!(
        "trap '' XFSZ; ulimit -f 4; exec \"$0\" --home '{}' --gallery '{}' --quality off --json enroll madonna '{}'",
        home().display(),
        gallery.display(),
        people.join("madonna").display()
    );
    let out = Command::new("bash")
        .args(["-c", &script, env!("CARGO_BIN_EXE_facegate")])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let error = json(&out.stdout);
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("full") || message.contains("space"),
        "the error should say the disk is full: {message}"
    );
    assert_eq!(contents(&gallery), before, "the gallery changed");
    // With space again, the same enrollment works.
    let out = facegate(&gallery)
        .args(["enroll", "madonna"])
        .arg(people.join("madonna"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(contents(&gallery).len(), 2);
}
