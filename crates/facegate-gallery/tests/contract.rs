//! The gallery contract: every backend must pass the same tests with the same answers.

mod support;

use std::collections::HashSet;
use std::sync::Arc;

use facegate_gallery::audit_chain::{self, ChainHead, ChainProblem};
use facegate_gallery::{
    migrate, AuditKey, ChainReport, EnrollOptions, EnrollReport, Gallery, GalleryCounts,
    GalleryError, GalleryLocation, NewAuditEvent, NewTemplate, Person, TemplateIndex, TemplateKey,
};
use support::Backend;

macro_rules! contract {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $test() { super::$test(super::support::sqlite()) } )*
        }
        mod postgres {
            $( #[test] fn $test() {
                if let Some(backend) = super::support::postgres() { super::$test(backend) }
            } )*
        }
    };
}

contract!(
    enroll_read_forget_round_trip,
    other_models_are_refused,
    unknown_people_and_duplicate_only_enrolls,
    people_are_created_paged_and_templates_removed,
    a_failure_midway_leaves_nothing,
    concurrent_enrolls_all_land,
    hostile_names_are_stored_exactly,
    search_ranks_people_like_the_exact_index,
    templates_are_copied_with_their_dates,
    migration_round_trip_keeps_everything,
    quality_is_stored_with_each_template,
    the_audit_log_is_append_only,
    encrypted_templates_need_their_key_and_survive_rekeys,
    forget_then_compact_leaves_nothing_in_the_files,
    changes_and_their_audit_entries_commit_together,
    the_audit_log_is_sealed_and_edits_show,
    concurrent_writers_extend_one_audit_chain,
    people_are_renamed_and_merged_with_their_templates,
);

fn template(seed: f32, sha: &str) -> NewTemplate {
    NewTemplate {
        embedding: unit(&[seed, 1.0 - seed, 0.5]),
        image_sha256: sha.to_string(),
        bbox: [1.0, 2.0, 3.0, 4.0],
        detector_score: 0.99,
        source: format!("{sha}.jpg"),
        quality: None,
    }
}

fn unit(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / norm).collect()
}

/// Deterministic pseudo-random unit vectors (xorshift), no extra dependency.
fn random_unit(state: &mut u64, dimension: usize) -> Vec<f32> {
    let v: Vec<f32> = (0..dimension)
        .map(|_| {
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
            (*state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect();
    unit(&v)
}

fn enroll_read_forget_round_trip(b: Backend) {
    let g = b.open();
    let report = g
        .enroll("alice", "m1", &[template(0.1, "a"), template(0.2, "b")])
        .unwrap();
    assert_eq!(report.added.len(), 2, "{}", b.name);
    assert!(report.created_person);
    let again = g
        .enroll("alice", "m1", &[template(0.1, "a"), template(0.3, "c")])
        .unwrap();
    assert_eq!(again.added.len(), 1);
    assert!(!again.created_person);
    assert_eq!(again.duplicates, vec!["a".to_string()]);
    let t = g.templates_of("alice", "m1").unwrap();
    assert_eq!(t.len(), 3);
    assert_eq!(t[0].embedding, template(0.1, "a").embedding);
    assert_eq!(t[0].source, "a.jpg");
    assert_eq!(t[0].bbox, [1.0, 2.0, 3.0, 4.0]);
    assert_eq!(t[0].created.len(), "2026-01-01T00:00:00Z".len());
    assert_eq!(g.people().unwrap()[0].templates, 3);
    assert_eq!(g.model_id().unwrap().as_deref(), Some("m1"));
    let before = g.revision().unwrap();
    assert_eq!(g.forget("alice").unwrap(), 3);
    assert!(g.revision().unwrap() > before, "writes change the revision");
    assert!(g.people().unwrap().is_empty());
    assert!(matches!(
        g.templates_of("alice", "m1"),
        Err(GalleryError::UnknownPerson { .. })
    ));
    assert_eq!(g.model_id().unwrap(), None, "an empty gallery has no model");
    // ... and takes another model (of another dimension) again.
    let other = NewTemplate {
        embedding: unit(&[1.0, 2.0, 3.0, 4.0]),
        ..template(0.0, "z")
    };
    g.enroll("zed", "m2", &[other]).unwrap();
    assert_eq!(g.model_id().unwrap().as_deref(), Some("m2"));
}

fn quality_is_stored_with_each_template(b: Backend) {
    let g = b.open();
    let quality =
        serde_json::json!({"inter_eye_px": 41.5, "yaw_degrees": -3.0, "faces_in_image": 1});
    let measured = NewTemplate {
        quality: Some(quality.clone()),
        ..template(0.1, "q")
    };
    g.enroll("qa", "m1", &[measured, template(0.2, "none")])
        .unwrap();
    let t = g.templates_of("qa", "m1").unwrap();
    assert_eq!(t[0].quality.as_ref(), Some(&quality), "{}", b.name);
    assert_eq!(t[1].quality, None, "{}", b.name);
    // Copies keep it.
    assert_eq!(t[0].to_new().quality, Some(quality));
}

fn the_audit_log_is_append_only(b: Backend) {
    use facegate_gallery::NewAuditEvent;
    let g = b.open();
    for (action, decision, distance) in [
        ("enroll", "added", None),
        ("verify", "match", Some(0.42f32)),
        ("forget", "erased", None),
    ] {
        g.append_audit(&NewAuditEvent {
            actor: "local:tester".into(),
            action: action.into(),
            person: Some("Zoë 'quoted'".into()),
            decision: Some(decision.into()),
            distance,
            detail: None,
        })
        .unwrap();
    }
    let log = g.audit_log(None, 10).unwrap();
    assert_eq!(log.len(), 3, "{}", b.name);
    assert_eq!(log[1].action, "verify");
    assert_eq!(log[1].distance, Some(0.42));
    assert_eq!(log[0].person.as_deref(), Some("Zoë 'quoted'"));
    assert_eq!(log[0].at.len(), "2026-01-01T00:00:00Z".len());
    let page = g.audit_log(Some(log[0].id), 1).unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].id, log[1].id);
    // The database itself refuses to change or remove entries.
    match &b.location {
        facegate_gallery::GalleryLocation::Sqlite(path) => {
            let c = rusqlite::Connection::open(path).unwrap();
            for sql in [
                "UPDATE audit SET decision = 'no_match'",
                "DELETE FROM audit",
            ] {
                let err = c.execute(sql, []).unwrap_err().to_string();
                assert!(err.contains("append-only"), "{err}");
            }
        }
        facegate_gallery::GalleryLocation::Postgres(url) => {
            let mut c = ::postgres::Client::connect(url, ::postgres::NoTls).unwrap();
            for sql in [
                "UPDATE facegate_audit SET decision = 'no_match'",
                "DELETE FROM facegate_audit",
            ] {
                let err = c.execute(sql, &[]).unwrap_err();
                let text = err
                    .as_db_error()
                    .map(|e| e.message().to_string())
                    .unwrap_or_default();
                assert!(text.contains("append-only"), "{err}");
            }
        }
    }
    assert_eq!(g.audit_log(None, 10).unwrap(), log, "{}", b.name);
}

fn audit_key(byte: u8) -> Arc<AuditKey> {
    Arc::new(AuditKey::from_bytes(&[byte; 32]))
}

fn verified(g: &dyn Gallery, key: &AuditKey, anchor: Option<&ChainHead>) -> ChainReport {
    audit_chain::verify(g, key, anchor, &mut |_| {}).unwrap()
}

/// Runs SQL on the gallery's database behind facegate's back, as someone who can write the
/// file (SQLite) or owns the table (PostgreSQL) could.
fn tamper(b: &Backend, sql: &str) -> Result<(), String> {
    match &b.location {
        GalleryLocation::Sqlite(path) => {
            let c = rusqlite::Connection::open(path).unwrap();
            c.execute_batch(sql).map_err(|e| e.to_string())
        }
        GalleryLocation::Postgres(url) => {
            let mut c = ::postgres::Client::connect(url, ::postgres::NoTls).unwrap();
            c.batch_execute(sql).map_err(|e| {
                e.as_db_error()
                    .map(|d| d.message().to_string())
                    .unwrap_or_else(|| e.to_string())
            })
        }
    }
}

fn the_audit_log_is_sealed_and_edits_show(b: Backend) {
    let key = audit_key(1);
    let g = b.location.open_with_keys(None, Some(key.clone())).unwrap();
    for i in 0..4 {
        g.append_audit(&entry("verify", "alice", format!("entry {i}")))
            .unwrap();
    }
    let audit = |_: &EnrollReport| entry("enroll", "bob", "1 template".into());
    let options = EnrollOptions {
        audit: Some(&audit),
        ..Default::default()
    };
    g.enroll_with("bob", "m1", &[template(0.3, "b")], &options)
        .unwrap();
    let report = verified(g.as_ref(), &key, None);
    assert!(report.intact, "{}: {report:?}", b.name);
    assert_eq!(report.verified, 5);
    let head = report.head.clone().unwrap();
    let log = g.audit_log(None, 10).unwrap();
    assert_eq!(head.id, log[4].id);
    assert!(log.iter().all(|e| e.key_id.as_deref() == Some(key.id())));

    // Another key neither verifies the chain nor may write to it.
    assert!(!verified(g.as_ref(), &audit_key(2), None).intact);
    let other = b.location.open_with_keys(None, Some(audit_key(2))).unwrap();
    match audit_chain::check_key(other.as_ref(), &audit_key(2)) {
        Err(GalleryError::AuditKeyMismatch { log_key, .. }) => assert_eq!(log_key, key.id()),
        other => panic!("{}: {other:?}", b.name),
    }
    audit_chain::check_key(g.as_ref(), &key).unwrap();

    // Someone with write access removes the guards and edits the second entry.
    let second = log[1].id;
    match &b.location {
        GalleryLocation::Sqlite(_) => {
            tamper(
                &b,
                "DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;",
            )
            .unwrap();
        }
        GalleryLocation::Postgres(_) => {
            let refused = tamper(&b, "TRUNCATE facegate_audit").unwrap_err();
            assert!(refused.contains("append-only"), "{refused}");
            tamper(&b, "ALTER TABLE facegate_audit DISABLE TRIGGER USER").unwrap();
        }
    }
    let table = match b.location {
        GalleryLocation::Sqlite(_) => "audit",
        GalleryLocation::Postgres(_) => "facegate_audit",
    };
    tamper(
        &b,
        &format!("UPDATE {table} SET decision = 'no_match' WHERE id = {second}"),
    )
    .unwrap();
    let report = verified(g.as_ref(), &key, None);
    assert_eq!(
        report.problems,
        vec![ChainProblem::Broken { id: second }],
        "{}",
        b.name
    );
    assert!(!report.intact);

    // The newest entry removed: the rest is still a chain, but the recorded head is gone, and
    // SQLite's never-reused ids show the hole.
    tamper(&b, &format!("DELETE FROM {table} WHERE id = {}", head.id)).unwrap();
    let report = verified(g.as_ref(), &key, Some(&head));
    assert_eq!(report.anchor_found, Some(false), "{}", b.name);
    assert!(!report.intact);
    if let GalleryLocation::Sqlite(_) = b.location {
        assert!(report.problems.contains(&ChainProblem::Missing {
            first: head.id,
            last: head.id
        }));
    }

    // A row inserted by hand carries no valid MAC.
    tamper(
        &b,
        &format!(
            "INSERT INTO {table} (id, at, actor, action) VALUES (1000, '2026-01-01T00:00:00Z', 'local:x', 'verify')"
        ),
    )
    .unwrap();
    let report = verified(g.as_ref(), &key, None);
    assert!(
        report
            .problems
            .contains(&ChainProblem::Unsealed { id: 1000 }),
        "{}: {report:?}",
        b.name
    );
}

fn concurrent_writers_extend_one_audit_chain(b: Backend) {
    let key = audit_key(3);
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let g = b.location.open_with_keys(None, Some(key.clone())).unwrap();
            std::thread::spawn(move || {
                for i in 0..15 {
                    g.append_audit(&entry("verify", "alice", format!("writer {w} entry {i}")))
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let report = verified(b.open().as_ref(), &key, None);
    assert!(report.intact, "{}: {report:?}", b.name);
    assert_eq!(report.verified, 60);
}

/// The files holding the gallery's data: the SQLite file and its journals, or the PostgreSQL
/// database's directory (when the server is local and readable; `None` otherwise).
fn database_files(b: &Backend) -> Option<Vec<std::path::PathBuf>> {
    let dir = match &b.location {
        facegate_gallery::GalleryLocation::Sqlite(path) => path.parent()?.to_path_buf(),
        facegate_gallery::GalleryLocation::Postgres(url) => {
            let db = facegate_gallery::PostgresGallery::open(url).ok()?;
            let (data, oid): (String, u32) = db
                .run(|c| {
                    // Also flushes what is in memory, so the files are up to date.
                    c.batch_execute("CHECKPOINT")?;
                    let row = c.query_one(
                        "SELECT current_setting('data_directory'), oid FROM pg_database
                         WHERE datname = current_database()",
                        &[],
                    )?;
                    Ok((row.get(0), row.get(1)))
                })
                .ok()?;
            std::path::Path::new(&data)
                .join("base")
                .join(oid.to_string())
        }
    };
    let files: Vec<_> = std::fs::read_dir(&dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    Some(files)
}

fn forget_then_compact_leaves_nothing_in_the_files(b: Backend) {
    let g = b.open();
    let marker: Vec<f32> = unit(&(0..64).map(|i| 0.321 + i as f32 * 7e-3).collect::<Vec<_>>());
    let secret = NewTemplate {
        embedding: marker.clone(),
        ..template(0.0, "secret")
    };
    let mut state = 7u64;
    let others: Vec<NewTemplate> = (0..50)
        .map(|i| NewTemplate {
            embedding: random_unit(&mut state, 64),
            ..template(0.0, &format!("o{i}"))
        })
        .collect();
    g.enroll("keeper", "m1", &others[..25]).unwrap();
    g.enroll("ann", "m1", std::slice::from_ref(&secret))
        .unwrap();
    g.enroll("zoe", "m1", &others[25..]).unwrap();
    let needle: Vec<u8> = marker.iter().flat_map(|v| v.to_le_bytes()).collect();
    let holds_marker = || -> Option<bool> {
        let files = database_files(&b)?;
        Some(files.iter().any(|f| {
            std::fs::read(f).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
        }))
    };
    match holds_marker() {
        Some(true) => {}
        Some(false) => panic!("{}: the test must see the stored bytes first", b.name),
        None => {
            eprintln!(
                "{}: the database files are not readable here; skipped",
                b.name
            );
            return;
        }
    }
    g.forget("ann").unwrap();
    assert_eq!(
        g.compact().unwrap(),
        0,
        "{}: no transaction stayed open",
        b.name
    );
    assert_eq!(
        holds_marker(),
        Some(false),
        "{}: erased bytes remain",
        b.name
    );
    assert_eq!(g.counts().unwrap().templates, 50);
    let probe = &others[30].embedding;
    let found = TemplateIndex::load(g.as_ref(), "m1")
        .unwrap()
        .search(probe, 1);
    assert_eq!(found[0].person, "zoe", "{}: the rest is intact", b.name);
}

fn new_key() -> Arc<TemplateKey> {
    Arc::new(TemplateKey::from_hex(&TemplateKey::generate_hex().unwrap()).unwrap())
}

/// Every embedding, read through the index builder's path, by template id.
fn scanned(g: &dyn Gallery) -> Result<Vec<(i64, String, Vec<f32>)>, GalleryError> {
    let mut seen = Vec::new();
    g.scan_embeddings("m1", &mut |id, person, e| {
        seen.push((id, person.to_string(), e.to_vec()))
    })?;
    Ok(seen)
}

fn entry(action: &str, person: &str, detail: String) -> NewAuditEvent {
    NewAuditEvent {
        actor: "test".into(),
        action: action.into(),
        person: Some(person.into()),
        decision: Some("done".into()),
        distance: None,
        detail: Some(detail),
    }
}

fn changes_and_their_audit_entries_commit_together(b: Backend) {
    let g = b.open();
    let audited = |r: &EnrollReport| entry("enroll", "ann", format!("{} added", r.added.len()));
    let options = EnrollOptions {
        new_person: true,
        audit: Some(&audited),
    };
    let report = g
        .enroll_with(
            "ann",
            "m1",
            &[template(0.1, "a"), template(0.2, "b")],
            &options,
        )
        .unwrap();
    assert_eq!(report.added.len(), 2);
    // A new person who exists already: refused, nothing written, nothing logged.
    let again = g.enroll_with("ann", "m1", &[template(0.3, "c")], &options);
    expect_error(&b, again.map(drop), "PersonExists");
    // A failure midway: no change, and no entry claiming one.
    let broken = NewTemplate {
        embedding: vec![f32::NAN, 0.0, 1.0],
        ..template(0.0, "nan")
    };
    let failed = g.enroll_with(
        "bob",
        "m1",
        &[template(0.4, "d"), broken],
        &EnrollOptions {
            audit: Some(&|_: &EnrollReport| entry("enroll", "bob", "added".into())),
            ..EnrollOptions::default()
        },
    );
    assert!(failed.is_err());
    g.remove_template_with(
        "ann",
        report.added[0],
        Some(&entry("remove_template", "ann", "one".into())),
    )
    .unwrap();
    let removed = g
        .forget_with(
            "ann",
            Some(&|n| entry("forget", "ann", format!("{n} erased"))),
        )
        .unwrap();
    assert_eq!(removed, 1);
    let log: Vec<(String, String)> = g
        .audit_log(None, 100)
        .unwrap()
        .into_iter()
        .map(|e| (e.action, e.detail.unwrap_or_default()))
        .collect();
    let expected = [
        ("enroll", "2 added"),
        ("remove_template", "one"),
        ("forget", "1 erased"),
    ]
    .map(|(a, d)| (a.to_string(), d.to_string()));
    assert_eq!(log, expected, "{}", b.name);
    assert_eq!(g.counts().unwrap(), GalleryCounts::default());
    if b.name == "postgres" {
        // The other way round: an entry the database refuses (PostgreSQL text cannot hold
        // NUL) undoes the change it describes.
        g.enroll("carl", "m1", &[template(0.5, "e")]).unwrap();
        let bad = |_: &EnrollReport| NewAuditEvent {
            actor: "nul\0byte".into(),
            ..entry("enroll", "carl", String::new())
        };
        let result = g.enroll_with(
            "carl",
            "m1",
            &[template(0.6, "f")],
            &EnrollOptions {
                audit: Some(&bad),
                ..EnrollOptions::default()
            },
        );
        assert!(result.is_err(), "PostgreSQL must refuse a NUL in text");
        assert_eq!(
            g.person("carl").unwrap().templates,
            1,
            "the enroll was undone"
        );
    }
}

/// `result` failed with the error variant named `variant`.
fn expect_error(b: &Backend, result: Result<(), GalleryError>, variant: &str) {
    let shown = format!("{result:?}");
    assert!(
        shown.starts_with(&format!("Err({variant}")),
        "{}: expected {variant}, got {shown}",
        b.name
    );
}

fn encrypted_templates_need_their_key_and_survive_rekeys(b: Backend) {
    let (first, second) = (new_key(), new_key());
    let g = b.location.open_with_key(Some(first.clone())).unwrap();
    let alice = [template(0.1, "a"), template(0.2, "b")];
    g.enroll("alice", "m1", &alice).unwrap();
    g.enroll("bob", "m1", &[template(0.7, "c")]).unwrap();
    assert_eq!(
        g.key_id().unwrap().as_deref(),
        Some(first.id()),
        "{}",
        b.name
    );
    let read: Vec<Vec<f32>> = g
        .templates_of("alice", "m1")
        .unwrap()
        .into_iter()
        .map(|t| t.embedding)
        .collect();
    assert_eq!(
        read,
        [alice[0].embedding.clone(), alice[1].embedding.clone()]
    );
    let expected = scanned(g.as_ref()).unwrap();
    assert_eq!(expected.len(), 3);
    assert!(
        !g.searches_in_place(),
        "{}: encrypted templates are searched in process",
        b.name
    );
    let index = TemplateIndex::load(g.as_ref(), "m1").unwrap();
    assert_eq!(index.search(&alice[1].embedding, 1)[0].person, "alice");

    // Without the key: names, counts and template listings, never embeddings.
    let keyless = b.open();
    assert_eq!(keyless.counts().unwrap().templates, 3);
    assert_eq!(keyless.people().unwrap().len(), 2);
    let listed = keyless.templates_info("alice").unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|t| t.embedding.is_empty()));
    let missing = |r: Result<(), GalleryError>| expect_error(&b, r, "KeyMissing");
    missing(keyless.templates_of("alice", "m1").map(drop));
    missing(keyless.all_templates("m1").map(drop));
    missing(scanned(keyless.as_ref()).map(drop));
    missing(
        keyless
            .enroll("carol", "m1", &[template(0.4, "d")])
            .map(drop),
    );
    if keyless.searches_in_place() {
        missing(keyless.nearest("m1", &alice[0].embedding, 1).map(drop));
    }

    // A wrong key is refused before anything is read or written.
    let wrong = b.location.open_with_key(Some(second.clone())).unwrap();
    let refused = |r: Result<(), GalleryError>| expect_error(&b, r, "WrongKey");
    refused(wrong.templates_of("bob", "m1").map(drop));
    refused(scanned(wrong.as_ref()).map(drop));
    refused(wrong.enroll("carol", "m1", &[template(0.4, "d")]).map(drop));
    assert_eq!(g.counts().unwrap().people, 2, "nothing was written");

    // Rotation: same embeddings under the new key; the old key no longer opens them.
    assert_eq!(g.rekey(Some(&second)).unwrap(), 3);
    assert_eq!(wrong.key_id().unwrap().as_deref(), Some(second.id()));
    assert_eq!(scanned(wrong.as_ref()).unwrap(), expected);
    refused(scanned(g.as_ref()).map(drop));
    let copy = support::sqlite();
    let target = copy.location.open_with_key(Some(second.clone())).unwrap();
    let report = migrate::copy(wrong.as_ref(), target.as_ref(), &mut |_| {}).unwrap();
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(target.key_id().unwrap().as_deref(), Some(second.id()));
    let copied: Vec<Vec<f32>> = scanned(target.as_ref())
        .unwrap()
        .into_iter()
        .map(|(_, _, e)| e)
        .collect();
    let originals: Vec<Vec<f32>> = expected.iter().map(|(_, _, e)| e.clone()).collect();
    assert_eq!(copied, originals, "migration decrypts and re-encrypts");

    // Back to unencrypted: readable without a key; a key now would be a mistake.
    assert_eq!(wrong.rekey(None).unwrap(), 3);
    assert_eq!(keyless.key_id().unwrap(), None);
    assert_eq!(scanned(keyless.as_ref()).unwrap(), expected);
    expect_error(
        &b,
        wrong.templates_of("bob", "m1").map(drop),
        "NotEncrypted",
    );
    if keyless.searches_in_place() {
        let found = keyless
            .nearest("m1", &alice[1].embedding, 1)
            .unwrap()
            .unwrap();
        assert_eq!(found.hits[0].person, "alice");
    }
}

fn other_models_are_refused(b: Backend) {
    let g = b.open();
    g.enroll("alice", "m1", &[template(0.1, "a")]).unwrap();
    let err = g.enroll("bob", "m2", &[template(0.1, "b")]).unwrap_err();
    assert!(matches!(err, GalleryError::ModelMismatch { .. }), "{err}");
    assert!(matches!(
        g.all_templates("m2"),
        Err(GalleryError::ModelMismatch { .. })
    ));
    assert!(matches!(
        g.templates_of("alice", "m2"),
        Err(GalleryError::ModelMismatch { .. })
    ));
    let longer = NewTemplate {
        embedding: unit(&[1.0, 2.0, 3.0, 4.0]),
        ..template(0.0, "c")
    };
    assert!(matches!(
        g.enroll("carol", "m1", &[longer]),
        Err(GalleryError::DimensionMismatch { .. })
    ));
    assert_eq!(g.people().unwrap().len(), 1, "bob and carol must not exist");
}

fn unknown_people_and_duplicate_only_enrolls(b: Backend) {
    let g = b.open();
    assert!(matches!(
        g.templates_of("zed", "m1"),
        Err(GalleryError::UnknownPerson { .. })
    ));
    assert!(matches!(
        g.forget("zed"),
        Err(GalleryError::UnknownPerson { .. })
    ));
    let report = g.enroll("carol", "m1", &[]).unwrap();
    assert!(report.added.is_empty() && !report.created_person);
    assert!(g.people().unwrap().is_empty());
    assert!(matches!(
        g.enroll("", "m1", &[template(0.1, "a")]),
        Err(GalleryError::InvalidName { .. })
    ));
}

fn people_are_created_paged_and_templates_removed(b: Backend) {
    let g = b.open();
    for name in ["dave", "alice", "Carol", "bob", "ærin"] {
        g.create_person(name).unwrap();
    }
    assert!(matches!(
        g.create_person("bob"),
        Err(GalleryError::PersonExists { .. })
    ));
    let names = |page: Vec<Person>| page.into_iter().map(|p| p.name).collect::<Vec<_>>();
    // Byte order on every backend.
    assert_eq!(
        names(g.people_page(None, 3).unwrap()),
        ["Carol", "alice", "bob"]
    );
    assert_eq!(
        names(g.people_page(Some("bob"), 3).unwrap()),
        ["dave", "ærin"]
    );
    let report = g
        .enroll("bob", "m1", &[template(0.1, "a"), template(0.2, "b")])
        .unwrap();
    assert!(!report.created_person);
    assert_eq!(g.person("bob").unwrap().templates, 2);
    assert_eq!(
        g.counts().unwrap(),
        GalleryCounts {
            people: 5,
            templates: 2
        }
    );
    assert!(matches!(
        g.remove_template("alice", report.added[0]),
        Err(GalleryError::UnknownTemplate { .. })
    ));
    g.remove_template("bob", report.added[0]).unwrap();
    let left = g.templates_info("bob").unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, report.added[1]);
    g.remove_template("bob", report.added[1]).unwrap();
    assert_eq!(g.model_id().unwrap(), None);
    assert_eq!(g.counts().unwrap().templates, 0);
    assert!(matches!(
        g.person("zed"),
        Err(GalleryError::UnknownPerson { .. })
    ));
}

fn a_failure_midway_leaves_nothing(b: Backend) {
    let g = b.open();
    g.enroll("keeper", "m1", &[template(0.5, "k")]).unwrap();
    let revision = g.revision().unwrap();
    let broken = NewTemplate {
        embedding: vec![f32::NAN, 0.0, 0.0],
        ..template(0.0, "nan")
    };
    // The first template is written before the second fails inside the transaction.
    let err = g
        .enroll("ann", "m1", &[template(0.1, "a"), broken.clone()])
        .unwrap_err();
    assert!(
        matches!(err, GalleryError::InvalidEmbedding { .. }),
        "{}: {err}",
        b.name
    );
    assert!(matches!(
        g.person("ann"),
        Err(GalleryError::UnknownPerson { .. })
    ));
    let err = g
        .enroll("keeper", "m1", &[template(0.2, "b"), broken])
        .unwrap_err();
    assert!(matches!(err, GalleryError::InvalidEmbedding { .. }));
    assert_eq!(g.person("keeper").unwrap().templates, 1);
    assert_eq!(
        g.revision().unwrap(),
        revision,
        "a failed enroll changes nothing"
    );
}

fn concurrent_enrolls_all_land(b: Backend) {
    let b = Arc::new(b);
    // A first template binds the model, so the threads race on writes, not on binding.
    b.open()
        .enroll("seed", "m1", &[template(0.5, "s")])
        .unwrap();
    let threads: Vec<_> = (0..6)
        .map(|thread| {
            let b = b.clone();
            std::thread::spawn(move || {
                // Each thread has its own handle, like separate processes.
                let g = b.open();
                for person in 0..5 {
                    let name = format!("t{thread}-p{person}");
                    let templates = [
                        template(0.1, &format!("{name}-a")),
                        template(0.2, &format!("{name}-b")),
                    ];
                    let report = g.enroll(&name, "m1", &templates).unwrap();
                    assert_eq!(report.added.len(), 2);
                    // Everyone also adds to one shared person.
                    g.enroll("shared", "m1", &[template(0.3, &name)]).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("an enrolling thread failed");
    }
    let g = b.open();
    assert_eq!(
        g.counts().unwrap(),
        GalleryCounts {
            people: 1 + 30 + 1,
            templates: 1 + 60 + 30
        }
    );
    assert_eq!(g.person("shared").unwrap().templates, 30);
    let ids: HashSet<i64> = g
        .all_templates("m1")
        .unwrap()
        .iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(ids.len(), 91, "template ids are unique");
}

fn hostile_names_are_stored_exactly(b: Backend) {
    let g = b.open();
    let name = "x'); DROP TABLE people; -- 😀 / ../.. %s $1";
    g.enroll(name, "m1", &[template(0.1, "a")]).unwrap();
    assert_eq!(g.people().unwrap()[0].name, name);
    assert_eq!(g.templates_of(name, "m1").unwrap().len(), 1);
    assert_eq!(g.forget(name).unwrap(), 1);
}

/// 1:N: the backend's own search (PostgreSQL) or the in-process index (SQLite) must rank
/// people the same as the exact in-process index.
fn search_ranks_people_like_the_exact_index(b: Backend) {
    let g = b.open_with("search=exact");
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut batch = Vec::new();
    for person in 0..150 {
        let base = random_unit(&mut state, 64);
        let templates: Vec<NewTemplate> = (0..1 + person % 3)
            .map(|k| {
                let noise = random_unit(&mut state, 64);
                let v: Vec<f32> = base.iter().zip(&noise).map(|(a, n)| a + 0.3 * n).collect();
                NewTemplate {
                    embedding: unit(&v),
                    ..template(0.0, &format!("p{person}-{k}"))
                }
            })
            .collect();
        batch.push((format!("person {person:03}"), templates));
    }
    for (name, templates) in &batch {
        g.enroll(name, "m1", templates).unwrap();
    }
    let exact = TemplateIndex::load(g.as_ref(), "m1").unwrap();
    assert_eq!(exact.len(), 300);
    let approximate = b.open_with("search=index");
    let (mut same_top1, queries) = (0, 40);
    for q in 0..queries {
        let probe = random_unit(&mut state, 64);
        let expected: Vec<(String, i64)> = exact
            .search(&probe, 5)
            .into_iter()
            .map(|h| (h.person, h.template_id))
            .collect();
        match g.nearest("m1", &probe, 5).unwrap() {
            Some(found) => {
                assert!(found.exact);
                assert_eq!(found.templates_searched, 300);
                assert_eq!(found.people_searched, 150);
                let got: Vec<(String, i64)> = found
                    .hits
                    .into_iter()
                    .map(|h| (h.person, h.template_id))
                    .collect();
                assert_eq!(got, expected, "query {q}: exact search differs");
                let indexed = approximate.nearest("m1", &probe, 5).unwrap().unwrap();
                assert!(!indexed.exact);
                assert_eq!(indexed.hits.len(), 5);
                if indexed.hits[0].person == expected[0].0 {
                    same_top1 += 1;
                }
            }
            None => assert!(!g.searches_in_place(), "{}", b.name),
        }
    }
    if g.searches_in_place() {
        let recall = same_top1 as f64 / queries as f64;
        eprintln!(
            "{}: HNSW recall@1 against exact search, 300 random 64-d templates: {recall:.3}",
            b.name
        );
        assert!(recall >= 0.9, "HNSW recall@1 {recall}");
    }
}

fn templates_are_copied_with_their_dates(b: Backend) {
    let source = support::sqlite();
    let from = source.open();
    from.enroll("alice", "m1", &[template(0.1, "a"), template(0.2, "b")])
        .unwrap();
    let to = b.open();
    to.enroll("alice", "m1", &[template(0.1, "a")]).unwrap();
    let person = from.person("alice").unwrap();
    let templates = from.templates_of("alice", "m1").unwrap();
    let dated: Vec<_> = templates
        .iter()
        .map(|t| facegate_gallery::Template {
            created: "2020-02-03T04:05:06Z".into(),
            ..t.clone()
        })
        .collect();
    assert_eq!(
        to.import_person(&person, "m1", &dated).unwrap(),
        1,
        "one is a duplicate"
    );
    let copied = to.templates_of("alice", "m1").unwrap();
    assert_eq!(copied.len(), 2);
    assert_eq!(copied[1].created, "2020-02-03T04:05:06Z");
    assert_eq!(copied[1].embedding, templates[1].embedding);
    assert!(matches!(
        to.import_person(&person, "m2", &dated),
        Err(GalleryError::ModelMismatch { .. })
    ));
}

/// `facegate gallery migrate`: SQLite -> backend -> SQLite keeps every person and template,
/// and running it again copies nothing twice.
fn migration_round_trip_keeps_everything(b: Backend) {
    let source = support::sqlite();
    let from = source.open();
    for person in 0..7 {
        let templates: Vec<NewTemplate> = (0..=person % 3)
            .map(|k| template(0.1 * k as f32, &format!("{person}-{k}")))
            .collect();
        from.enroll(&format!("person {person}"), "m1", &templates)
            .unwrap();
    }
    from.create_person("no photos yet").unwrap();
    let to = b.open();
    let mut seen = 0;
    let report =
        facegate_gallery::migrate::copy(from.as_ref(), to.as_ref(), &mut |n| seen = n).unwrap();
    assert!(report.is_complete(), "{report:?}");
    assert_eq!((report.people_copied, seen), (8, 8));
    assert_eq!(report.templates_copied, 13);
    assert_eq!(to.counts().unwrap(), from.counts().unwrap());
    let again = facegate_gallery::migrate::copy(from.as_ref(), to.as_ref(), &mut |_| {}).unwrap();
    assert!(again.is_complete());
    assert_eq!(
        (again.templates_copied, again.templates_already_there),
        (0, 13)
    );
    // And back, into an empty SQLite gallery.
    let back_dir = support::sqlite();
    let back = back_dir.open();
    let report = facegate_gallery::migrate::copy(to.as_ref(), back.as_ref(), &mut |_| {}).unwrap();
    assert!(report.is_complete(), "{report:?}");
    let names = |g: &dyn facegate_gallery::Gallery| {
        g.people()
            .unwrap()
            .into_iter()
            .map(|p| (p.name, p.templates))
            .collect::<Vec<_>>()
    };
    assert_eq!(names(back.as_ref()), names(from.as_ref()));
    let original = from.templates_of("person 5", "m1").unwrap();
    let returned = back.templates_of("person 5", "m1").unwrap();
    assert_eq!(
        original
            .iter()
            .map(|t| (&t.embedding, &t.image_sha256, &t.created))
            .collect::<Vec<_>>(),
        returned
            .iter()
            .map(|t| (&t.embedding, &t.image_sha256, &t.created))
            .collect::<Vec<_>>()
    );
    // A target holding another model's templates is refused before anything is copied.
    let other_dir = support::sqlite();
    let other = other_dir.open();
    other.enroll("x", "m2", &[template(0.5, "x")]).unwrap();
    assert!(matches!(
        facegate_gallery::migrate::copy(from.as_ref(), other.as_ref(), &mut |_| {}),
        Err(GalleryError::ModelMismatch { .. })
    ));
}

/// PostgreSQL's bulk path (COPY, index rebuilt once) stores what `enroll` would.
#[test]
fn postgres_bulk_load_matches_enroll() {
    let Some(b) = support::postgres() else {
        return;
    };
    let db = facegate_gallery::PostgresGallery::open(b.url()).unwrap();
    use facegate_gallery::Gallery as _;
    db.enroll("existing", "m1", &[template(0.1, "e")]).unwrap();
    let tricky = r"back\slash \t not a tab";
    let batch = vec![
        (
            "existing".to_string(),
            vec![template(0.1, "e"), template(0.2, "f")],
        ),
        (
            tricky.to_string(),
            vec![NewTemplate {
                source: "a\ttab\nand newline.jpg".into(),
                ..template(0.3, "g")
            }],
        ),
    ];
    assert_eq!(db.enroll_batch("m1", &batch, true).unwrap(), 2);
    assert!(db.build_vector_index().unwrap());
    assert!(!db.build_vector_index().unwrap(), "built once");
    assert_eq!(db.person("existing").unwrap().templates, 2);
    let t = db.templates_of(tricky, "m1").unwrap();
    assert_eq!(t[0].embedding, template(0.3, "g").embedding);
    assert_eq!(t[0].source, "a\ttab\nand newline.jpg");
    assert!(
        db.explain_search(3)
            .unwrap()
            .contains("facegate_templates_embedding")
            || db.counts().unwrap().templates < 1000
    );
    assert!(matches!(
        db.enroll_batch("m2", &batch, false),
        Err(GalleryError::ModelMismatch { .. })
    ));
}

/// Rebinding an emptied gallery to a model of another dimension while a long transaction
/// elsewhere (a backup, a report) can still see the old rows: building the new vector index
/// must not trip over them (found by the contract tests running side by side).
#[test]
fn postgres_rebinds_while_old_rows_are_still_visible_elsewhere() {
    let Some(b) = support::postgres() else {
        return;
    };
    let url = b.url();
    let g = b.open_with("search=index");
    g.enroll("alice", "m1", &[template(0.1, "a")]).unwrap();
    let mut reader = ::postgres::Client::connect(url, ::postgres::NoTls).unwrap();
    let mut snapshot = reader
        .build_transaction()
        .isolation_level(::postgres::IsolationLevel::RepeatableRead)
        .start()
        .unwrap();
    snapshot
        .query_one("SELECT count(*) FROM facegate_templates", &[])
        .unwrap();
    g.forget("alice").unwrap();
    let four = NewTemplate {
        embedding: unit(&[1.0, 2.0, 3.0, 4.0]),
        ..template(0.0, "z")
    };
    g.enroll("zed", "m2", std::slice::from_ref(&four)).unwrap();
    snapshot.commit().unwrap();
    let found = g.nearest("m2", &four.embedding, 1).unwrap().unwrap();
    assert_eq!(found.hits[0].person, "zed");
    assert!(!found.exact, "searched through the new index");
}

#[test]
fn postgres_bulk_load_encrypts_too() {
    let Some(b) = support::postgres() else {
        return;
    };
    let url = b.url();
    let key = new_key();
    let db = facegate_gallery::PostgresGallery::open(url)
        .unwrap()
        .with_key(Some(key.clone()));
    let batch = vec![(
        r"back\slash".to_string(),
        vec![template(0.1, "a"), template(0.2, "b")],
    )];
    assert_eq!(db.enroll_batch("m1", &batch, true).unwrap(), 2);
    assert_eq!(db.key_id().unwrap().as_deref(), Some(key.id()));
    let read: Vec<Vec<f32>> = db
        .templates_of(r"back\slash", "m1")
        .unwrap()
        .into_iter()
        .map(|t| t.embedding)
        .collect();
    assert_eq!(
        read,
        [template(0.1, "a").embedding, template(0.2, "b").embedding]
    );
    let plain_vectors: i64 = db
        .run(|c| {
            c.query_one(
                "SELECT count(*) FROM facegate_templates WHERE embedding IS NOT NULL",
                &[],
            )
            .map(|r| r.get(0))
        })
        .unwrap();
    assert_eq!(plain_vectors, 0, "no embedding stored in the clear");
}

/// A gallery written before quality was measured (no `quality` column) opens, reads its old
/// templates without quality, and takes new ones with it.
#[test]
fn an_sqlite_gallery_from_before_quality_is_upgraded_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created TEXT NOT NULL);
             CREATE TABLE templates (
                 id INTEGER PRIMARY KEY,
                 person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
                 model_id TEXT NOT NULL, dimension INTEGER NOT NULL, embedding BLOB NOT NULL,
                 image_sha256 TEXT NOT NULL,
                 box_x1 REAL NOT NULL, box_y1 REAL NOT NULL, box_x2 REAL NOT NULL, box_y2 REAL NOT NULL,
                 detector_score REAL NOT NULL, source TEXT NOT NULL, created TEXT NOT NULL,
                 UNIQUE (person_id, image_sha256));
             INSERT INTO meta VALUES ('model_id', 'm1');
             INSERT INTO people VALUES (1, 'old', '2025-01-01T00:00:00Z');",
        )
        .unwrap();
        let blob: Vec<u8> = [0.6f32, 0.8].iter().flat_map(|v| v.to_le_bytes()).collect();
        c.execute(
            "INSERT INTO templates VALUES (1, 1, 'm1', 2, ?1, 'sha', 0, 0, 1, 1, 0.9, 'x.jpg', '2025-01-01T00:00:00Z')",
            [blob],
        )
        .unwrap();
    }
    let g = facegate_gallery::SqliteGallery::open(&path).unwrap();
    use facegate_gallery::Gallery as _;
    let old = g.templates_of("old", "m1").unwrap();
    assert_eq!(old.len(), 1);
    assert_eq!(old[0].quality, None);
    assert_eq!(old[0].embedding, [0.6, 0.8]);
    let new = NewTemplate {
        embedding: vec![0.8, 0.6],
        quality: Some(serde_json::json!({"inter_eye_px": 30.0})),
        ..template(0.0, "new")
    };
    g.enroll("old", "m1", &[new]).unwrap();
    assert!(g.templates_of("old", "m1").unwrap()[1].quality.is_some());
    drop(g);
    // Opening again does not try to add the column twice.
    facegate_gallery::SqliteGallery::open(&path).unwrap();
}

/// A gallery whose audit log was written before entries were sealed keeps its entries (as
/// unsealed history) and seals what comes after.
#[test]
fn an_sqlite_audit_log_from_before_sealing_is_upgraded_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE audit (id INTEGER PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL,
                 action TEXT NOT NULL, person TEXT, decision TEXT, distance REAL, detail TEXT);
             CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
                 BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
             INSERT INTO audit VALUES (1, '2025-01-01T00:00:00Z', 'local:old', 'enroll', 'old', 'added', NULL, NULL);
             INSERT INTO audit VALUES (2, '2025-01-02T00:00:00Z', 'local:old', 'verify', 'old', 'match', 0.5, NULL);",
        )
        .unwrap();
    }
    let key = audit_key(4);
    let g = facegate_gallery::SqliteGallery::open(&path)
        .unwrap()
        .with_audit_key(Some(key.clone()));
    g.append_audit(&entry("verify", "old", "after the upgrade".into()))
        .unwrap();
    let log = g.audit_log(None, 10).unwrap();
    assert_eq!(log.len(), 3);
    assert_eq!(log[1].distance, Some(0.5));
    assert_eq!((log[0].mac.is_none(), log[2].mac.is_some()), (true, true));
    let report = verified(&g, &key, None);
    assert!(report.intact, "{report:?}");
    assert_eq!((report.unsealed_before_chain, report.verified), (2, 1));
    drop(g);
    // Opening again changes nothing, and the guard is back.
    facegate_gallery::SqliteGallery::open(&path).unwrap();
    let c = rusqlite::Connection::open(&path).unwrap();
    assert!(c.execute("DELETE FROM audit", []).is_err());
}

fn people_are_renamed_and_merged_with_their_templates(b: Backend) {
    for key in [None, Some(new_key())] {
        let g = b.location.open_with_key(key.clone()).unwrap();
        let label = format!("{} (encrypted: {})", b.name, key.is_some());
        g.enroll("ann", "m1", &[template(0.1, "a"), template(0.2, "b")])
            .unwrap();
        g.enroll("bea", "m1", &[template(0.3, "b"), template(0.4, "c")])
            .unwrap();
        let ann_ids: Vec<i64> = g
            .templates_info("ann")
            .unwrap()
            .iter()
            .map(|t| t.id)
            .collect();

        // One template by id, and every template listed, without embeddings.
        let one = g.template_info(ann_ids[0]).unwrap().unwrap();
        assert_eq!(
            (one.person.as_str(), one.source.as_str()),
            ("ann", "a.jpg"),
            "{label}"
        );
        assert!(one.embedding.is_empty());
        assert_eq!(g.template_info(i64::MAX).unwrap(), None, "{label}");
        let all = g.all_templates_info().unwrap();
        assert_eq!(all.len(), 4, "{label}");
        assert!(all.windows(2).all(|w| w[0].id < w[1].id));

        // A plain rename keeps the templates (readable under the new name) and their ids.
        let audited =
            |r: &facegate_gallery::RenameReport| entry("rename", &r.name, format!("{r:?}"));
        let report = g
            .rename_person_with("ann", "Ann Lee", Some(&audited))
            .unwrap();
        assert!(!report.merged, "{label}");
        assert_eq!(report.templates_moved, 2);
        assert!(matches!(
            g.person("ann"),
            Err(GalleryError::UnknownPerson { .. })
        ));
        let moved = g.templates_of("Ann Lee", "m1").unwrap();
        assert_eq!(
            moved.iter().map(|t| t.id).collect::<Vec<_>>(),
            ann_ids,
            "{label}"
        );
        assert_eq!(moved[0].embedding, template(0.1, "a").embedding, "{label}");
        assert_eq!(
            g.audit_log(None, 100)
                .unwrap()
                .last()
                .map(|e| e.action.as_str()),
            Some("rename")
        );

        // Renaming onto someone who exists merges; the photo both had is kept once.
        let report = g.rename_person_with("Ann Lee", "bea", None).unwrap();
        assert!(report.merged, "{label}");
        assert_eq!((report.templates_moved, report.duplicates_dropped), (1, 1));
        let bea = g.templates_of("bea", "m1").unwrap();
        let mut shas: Vec<&str> = bea.iter().map(|t| t.image_sha256.as_str()).collect();
        shas.sort();
        assert_eq!(shas, ["a", "b", "c"], "{label}");
        assert_eq!(g.people().unwrap().len(), 1);
        let index = TemplateIndex::load(g.as_ref(), "m1").unwrap();
        assert_eq!(
            index.search(&template(0.1, "a").embedding, 1)[0].person,
            "bea"
        );

        // Unknown people and invalid names are refused; renaming to the same name changes nothing.
        assert!(matches!(
            g.rename_person_with("nobody", "x", None),
            Err(GalleryError::UnknownPerson { .. })
        ));
        assert!(matches!(
            g.rename_person_with("bea", " bad ", None),
            Err(GalleryError::InvalidName { .. })
        ));
        assert_eq!(
            g.rename_person_with("bea", "bea", None)
                .unwrap()
                .templates_moved,
            0
        );
        g.forget("bea").unwrap();
    }
}
