//! The DeepStack-compatible face API (`--compat deepstack`), driven the way DeepStack's clients
//! drive it: multipart forms with the key as the `api_key` field, trailing slashes, DeepStack's
//! answer shapes. Decisions must be the native API's.

mod support;

use facegate::gallery::{Gallery, SqliteGallery};
use facegate_server::{Limits, Role};
use serde_json::Value;
use support::{photo, png, two_people_photo, Part, Server};

fn limits() -> Limits {
    Limits {
        deepstack_api: true,
        rate_per_minute: None,
        ..Limits::default()
    }
}

/// A DeepStack-style call: the key and text fields as form fields, then the images.
fn call(
    server: &Server,
    path: &str,
    key: &str,
    texts: &[(&str, &str)],
    images: Vec<(&str, Vec<u8>)>,
) -> (u16, Value) {
    let mut parts = vec![Part::Text("api_key", key)];
    for (name, value) in texts {
        parts.push(Part::Text(name, value));
    }
    for (name, bytes) in images {
        parts.push(Part::File(name, "upload.jpg", bytes));
    }
    let reply = server.post_multipart(path, None, parts);
    (reply.status, reply.json)
}

#[test]
fn register_recognize_match_list_and_delete_answer_as_deepstack_does() {
    let server = Server::start(limits());
    let admin = server.key(Role::Admin);
    let identify = server.key(Role::Identify);
    let verify = server.key(Role::Verify);

    // Register: one user, two images under two field names.
    let (status, reply) = call(
        &server,
        "/v1/vision/face/register",
        &admin,
        &[("userid", "ben")],
        vec![
            ("image", photo("train", "ben_afflek", 0)),
            ("image2", photo("train", "ben_afflek", 3)),
        ],
    );
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["success"], true);
    assert_eq!(reply["message"], "face added");
    let gallery = SqliteGallery::open(&server.gallery_path).unwrap();
    assert_eq!(gallery.person("ben").unwrap().templates, 2);

    // List, with the trailing slash DeepStack registers.
    let (status, reply) = call(&server, "/v1/vision/face/list/", &identify, &[], vec![]);
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["faces"], serde_json::json!(["ben"]));

    // Recognize: the enrolled person by name, above the default cut-off; someone else unknown.
    let (status, reply) = call(
        &server,
        "/v1/vision/face/recognize",
        &identify,
        &[],
        vec![("image", photo("val", "ben_afflek", 0))],
    );
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["success"], true);
    let prediction = &reply["predictions"][0];
    assert_eq!(prediction["userid"], "ben", "{reply}");
    let confidence = prediction["confidence"].as_f64().unwrap();
    assert!((0.67..=1.0).contains(&confidence), "{reply}");
    assert!(prediction["x_max"].as_i64().unwrap() > prediction["x_min"].as_i64().unwrap());
    let (_, reply) = call(
        &server,
        "/v1/vision/face/recognize",
        &identify,
        &[],
        vec![("image", photo("val", "madonna", 0))],
    );
    assert_eq!(reply["predictions"][0]["userid"], "unknown", "{reply}");
    assert_eq!(reply["predictions"][0]["confidence"], 0.0);
    // A stricter cut-off than any confidence: unknown too.
    let (_, reply) = call(
        &server,
        "/v1/vision/face/recognize",
        &identify,
        &[("min_confidence", "1")],
        vec![("image", photo("val", "ben_afflek", 0))],
    );
    assert_eq!(reply["predictions"][0]["userid"], "unknown", "{reply}");
    // No face: no predictions, as DeepStack answers.
    let (status, reply) = call(
        &server,
        "/v1/vision/face/recognize",
        &identify,
        &[],
        vec![("image", png(64, 64, false))],
    );
    assert_eq!(
        (status, &reply["predictions"]),
        (200, &serde_json::json!([])),
        "{reply}"
    );

    // The same decision as the native API, which names ben too.
    let native = server.post_multipart(
        "/v1/identify",
        Some(&identify),
        vec![Part::File(
            "image",
            "probe.jpg",
            photo("val", "ben_afflek", 0),
        )],
    );
    assert_eq!(native.json["identity"], "ben", "{}", native.text);

    // Detect: both faces of a two-person photo, with the detector's confidence.
    let (status, reply) = call(
        &server,
        "/v1/vision/face/",
        &verify,
        &[],
        vec![("image", two_people_photo())],
    );
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["predictions"].as_array().unwrap().len(), 2, "{reply}");
    assert!(reply["predictions"][0]["confidence"].as_f64().unwrap() > 0.55);

    // Match: the same person above the cut-off, two people below it.
    let (_, same) = call(
        &server,
        "/v1/vision/face/match",
        &verify,
        &[],
        vec![
            ("image1", photo("train", "ben_afflek", 1)),
            ("image2", photo("val", "ben_afflek", 1)),
        ],
    );
    let (_, different) = call(
        &server,
        "/v1/vision/face/match",
        &verify,
        &[],
        vec![
            ("image1", photo("train", "ben_afflek", 1)),
            ("image2", photo("val", "madonna", 1)),
        ],
    );
    let (same, different) = (
        same["similarity"].as_f64().unwrap(),
        different["similarity"].as_f64().unwrap(),
    );
    assert!(same >= 0.67 && different < 0.67, "{same} {different}");

    // Decisions are audited under the key, as for the native API.
    let log = gallery.audit_log(None, 100).unwrap();
    assert!(log
        .iter()
        .any(|e| e.action == "identify" && e.actor.starts_with("key:")));
    assert!(log
        .iter()
        .any(|e| e.action == "enroll" && e.person.as_deref() == Some("ben")));

    // Delete: admin only; the user is gone.
    let (status, reply) = call(
        &server,
        "/v1/vision/face/delete",
        &identify,
        &[("userid", "ben")],
        vec![],
    );
    assert_eq!(
        (status, &reply["success"]),
        (403, &Value::Bool(false)),
        "{reply}"
    );
    let (status, reply) = call(
        &server,
        "/v1/vision/face/delete",
        &admin,
        &[("userid", "ben")],
        vec![],
    );
    assert_eq!(
        (status, &reply["success"]),
        (200, &Value::Bool(true)),
        "{reply}"
    );
    let (_, reply) = call(&server, "/v1/vision/face/list", &identify, &[], vec![]);
    assert_eq!(reply["faces"], serde_json::json!([]));
}

#[test]
fn bad_keys_and_bad_input_get_deepstack_errors_and_change_nothing() {
    let server = Server::start(limits());
    let identify = server.key(Role::Identify);
    // No key, a wrong key: 401 in DeepStack's shape.
    let reply = server.post_multipart(
        "/v1/vision/face/list",
        None,
        vec![Part::Text("userid", "x")],
    );
    assert_eq!(reply.status, 401, "{}", reply.text);
    assert_eq!(reply.json["success"], false);
    let (status, reply) = call(
        &server,
        "/v1/vision/face/list",
        "fgk_0000000000000000_wrong",
        &[],
        vec![],
    );
    assert_eq!(status, 401);
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .starts_with("Incorrect api key"),
        "{reply}"
    );
    // A key in the header works as for the native API.
    let reply = server.post_multipart("/v1/vision/face/list", Some(&identify), vec![]);
    assert_eq!(reply.status, 200, "{}", reply.text);
    // An identify key may not register.
    let (status, reply) = call(
        &server,
        "/v1/vision/face/register",
        &identify,
        &[("userid", "ben")],
        vec![("image", photo("train", "ben_afflek", 0))],
    );
    assert_eq!(
        (status, &reply["success"]),
        (403, &Value::Bool(false)),
        "{reply}"
    );
    // Register without a face, or without a userid: an error, nothing stored.
    let admin = server.key(Role::Admin);
    let (status, reply) = call(
        &server,
        "/v1/vision/face/register",
        &admin,
        &[("userid", "ghost")],
        vec![("image", png(64, 64, false))],
    );
    assert_eq!(
        (status, &reply["success"]),
        (422, &Value::Bool(false)),
        "{reply}"
    );
    let (status, _) = call(
        &server,
        "/v1/vision/face/register",
        &admin,
        &[],
        vec![("image", photo("train", "ben_afflek", 0))],
    );
    assert_eq!(status, 400);
    let (status, reply) = call(
        &server,
        "/v1/vision/face/recognize",
        &identify,
        &[("min_confidence", "high")],
        vec![("image", photo("val", "ben_afflek", 0))],
    );
    assert_eq!(
        (status, &reply["success"]),
        (400, &Value::Bool(false)),
        "{reply}"
    );
    let gallery = SqliteGallery::open(&server.gallery_path).unwrap();
    assert!(gallery.people().unwrap().is_empty());
}

#[test]
fn the_deepstack_api_is_served_only_when_asked_for() {
    let server = Server::start(Limits::default());
    let admin = server.key(Role::Admin);
    let (status, _) = call(&server, "/v1/vision/face/list", &admin, &[], vec![]);
    assert_eq!(status, 404);
}
