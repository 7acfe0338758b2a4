//! Same photos, same answers: identify and verify give the same results on the SQLite and the
//! PostgreSQL gallery (exact search), and the PostgreSQL HNSW index's recall@1 against exact
//! search is measured on real face embeddings. PostgreSQL comes from `FACEGATE_TEST_POSTGRES`
//! (see `scripts/postgres-up.sh`); without it this test says so and passes, unless
//! `FACEGATE_REQUIRE_POSTGRES=1`.

mod common;

use std::sync::Arc;

use facegate::gallery::{Gallery, GalleryLocation};
use facegate::{ops, Engine, EngineOptions, FacePolicy, Home};
use facegate_models::SilentObserver;

#[test]
fn sqlite_and_postgres_give_the_same_answers_on_real_photos() {
    let Some(db) = facegate_testing::ScratchDatabase::from_env().expect("a test database") else {
        return;
    };
    // Every photo, whatever its quality: this compares backends, not photos.
    let options = EngineOptions {
        enroll_quality: facegate::quality::QualityLevel::Off,
        ..EngineOptions::default()
    };
    let engine =
        Engine::load(&Home::at(&common::home()), options, &SilentObserver).expect("load models");
    let dir = tempfile::tempdir().unwrap();
    let sqlite = GalleryLocation::Sqlite(dir.path().join("g.db"))
        .open()
        .unwrap();
    let exact = GalleryLocation::Postgres(format!("{}?search=exact", db.url()))
        .open()
        .unwrap();
    let indexed = GalleryLocation::Postgres(format!("{}?search=index", db.url()))
        .open()
        .unwrap();

    // Enroll the training photos (one template each) into both galleries.
    let photos = common::celebrity_photos();
    let (train, val): (Vec<_>, Vec<_>) = photos
        .iter()
        .partition(|(_, path)| path.components().any(|c| c.as_os_str() == "train"));
    let mut enrolled = 0;
    for (person, path) in &train {
        let image = engine.load_image(path).unwrap();
        let Ok(prepared) = ops::prepare_template(&engine, &image, true) else {
            continue;
        };
        for gallery in [&sqlite, &exact] {
            gallery
                .enroll(
                    person,
                    engine.model_id(),
                    std::slice::from_ref(&prepared.template),
                )
                .unwrap();
        }
        enrolled += 1;
    }
    assert!(enrolled >= 90, "{enrolled} training photos enrolled");
    assert_eq!(sqlite.counts().unwrap(), exact.counts().unwrap());

    let (mut compared, mut index_agrees) = (0, 0);
    for (person, path) in &val {
        let image = engine.load_image(path).unwrap();
        let a = ops::identify(&engine, sqlite.as_ref(), &image, 5, false).unwrap();
        let b = ops::identify(&engine, exact.as_ref(), &image, 5, false).unwrap();
        let ranking = |o: &ops::IdentifyOutcome| {
            o.faces[0]
                .candidates
                .iter()
                .map(|c| (c.person.clone(), c.best_template_id, c.distance))
                .collect::<Vec<_>>()
        };
        // Template ids are each backend's own; compare people and distances.
        let strip =
            |r: Vec<(String, i64, f32)>| r.into_iter().map(|(p, _, d)| (p, d)).collect::<Vec<_>>();
        assert_eq!(strip(ranking(&a)), strip(ranking(&b)), "{}", path.display());
        assert_eq!(a.identity, b.identity);
        assert_eq!(
            (a.people_searched, a.templates_searched),
            (b.people_searched, b.templates_searched)
        );
        let va = ops::verify(&engine, sqlite.as_ref(), person, &image, false).unwrap();
        let vb = ops::verify(&engine, exact.as_ref(), person, &image, false).unwrap();
        assert_eq!((va.is_match, va.distance), (vb.is_match, vb.distance));
        // The HNSW index, on the same probe embedding.
        let (faces, _) = engine.embed_faces(&image, FacePolicy::Largest).unwrap();
        let found = indexed
            .nearest(engine.model_id(), &faces[0].embedding, 1)
            .unwrap()
            .unwrap();
        assert!(!found.exact);
        index_agrees += usize::from(found.hits[0].person == b.faces[0].candidates[0].person);
        compared += 1;
    }
    let recall = index_agrees as f64 / compared as f64;
    println!(
        "{compared} probes against {enrolled} real templates: identical rankings from SQLite and PostgreSQL (exact); HNSW recall@1 vs exact {recall:.3}"
    );
    assert!(compared >= 20);
    assert!(recall >= 0.95, "HNSW recall@1 {recall}");
    let _keep: Arc<dyn Gallery> = indexed;
}
