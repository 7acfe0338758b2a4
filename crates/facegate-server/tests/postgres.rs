//! The server on a PostgreSQL gallery: the same API, keys shared by every server on the
//! database, and a database restart answered with 503 then recovered from. Needs
//! `FACEGATE_TEST_POSTGRES` (see `scripts/postgres-up.sh`); the restart part also
//! `FACEGATE_TEST_POSTGRES_RESTART=1`.

mod support;

use std::path::PathBuf;

use facegate::gallery::GalleryLocation;
use facegate_server::{ApiKeys, Limits, Role};
use serde_json::json;
use support::{b64, photo, Server};

/// A fresh database on the test server, and the gallery location for it.
fn database() -> Option<(facegate_testing::ScratchDatabase, GalleryLocation)> {
    let db = facegate_testing::ScratchDatabase::from_env().expect("a test database")?;
    let location = GalleryLocation::Postgres(db.url().to_string());
    Some((db, location))
}

fn script(name: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../scripts")
        .join(name);
    let status = std::process::Command::new("bash")
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "{} failed", path.display());
}

#[test]
fn the_api_works_on_postgres_and_survives_a_database_restart() {
    let Some((_db, location)) = database() else {
        return;
    };
    let server = Server::start_at(
        Limits {
            rate_per_minute: None,
            ..Limits::default()
        },
        &location,
    );
    let admin = server.key(Role::Admin);
    let key = Some(admin.as_str());

    let created = server.post_json(
        "/v1/people",
        key,
        &json!({ "name": "ben", "images": [b64(&photo("train", "ben_afflek", 0)), b64(&photo("train", "ben_afflek", 1))] }),
    );
    assert_eq!(created.status, 201, "{}", created.text);
    let other = server.post_json(
        "/v1/people",
        key,
        &json!({ "name": "madonna", "images": [b64(&photo("train", "madonna", 0))] }),
    );
    assert_eq!(other.status, 201, "{}", other.text);

    let verify = server.post_json(
        "/v1/verify",
        key,
        &json!({ "person": "ben", "image": b64(&photo("val", "ben_afflek", 0)) }),
    );
    assert_eq!(verify.status, 200, "{}", verify.text);
    assert_eq!(verify.json["is_match"], true, "{}", verify.text);
    let identify = server.post_json(
        "/v1/identify",
        key,
        &json!({ "image": b64(&photo("val", "madonna", 0)) }),
    );
    assert_eq!(identify.status, 200, "{}", identify.text);
    assert_eq!(identify.json["identity"], "madonna", "{}", identify.text);
    assert_eq!(identify.json["people_searched"], 2);

    let people = server.get("/v1/people", key);
    assert_eq!(people.json["people"].as_array().unwrap().len(), 2);
    let template = server.get("/v1/people/ben", key).json["templates"][0]["id"]
        .as_i64()
        .unwrap();
    let removed = server.delete(&format!("/v1/people/ben/faces/{template}"), key);
    assert_eq!(removed.status, 200, "{}", removed.text);
    assert_eq!(
        server.get("/v1/people/ben", key).json["templates"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Keys live in the database: a key made by another server (or `facegate keys`) works
    // here, and revoking it there locks it out here.
    let elsewhere = ApiKeys::open(&location).unwrap();
    let shared = elsewhere.create(Role::Identify, "other server").unwrap();
    assert_eq!(server.get("/v1/people", Some(&shared.key)).status, 200);
    elsewhere.revoke(&shared.info.id).unwrap();
    assert_eq!(server.get("/v1/people", Some(&shared.key)).status, 401);

    if std::env::var("FACEGATE_TEST_POSTGRES_RESTART").as_deref() == Ok("1") {
        script("postgres-down.sh");
        let down = server.get("/v1/people", key);
        assert_eq!(
            (down.status, down.code()),
            (503, "gallery_unavailable"),
            "{}",
            down.text
        );
        assert!(down.retry_after.is_some());
        assert_eq!(server.get("/readyz", None).status, 503);
        script("postgres-up.sh");
        assert_eq!(server.get("/readyz", None).status, 200);
        let again = server.post_json(
            "/v1/identify",
            key,
            &json!({ "image": b64(&photo("val", "madonna", 0)) }),
        );
        assert_eq!(again.status, 200, "{}", again.text);
        assert_eq!(again.json["identity"], "madonna");
    }

    let forgot = server.delete("/v1/people/ben", key);
    assert_eq!(forgot.status, 200, "{}", forgot.text);
    assert_eq!(server.get("/v1/people/ben", key).status, 404);
}
