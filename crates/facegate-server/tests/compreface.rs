//! The CompreFace-compatible REST API (`--compat compreface`), driven the way CompreFace's
//! clients drive it: UUID keys in `x-api-key`, multipart `file` parts or base64 JSON, sloppy
//! query strings, CompreFace's answer and error shapes. Decisions must be the native API's.

mod support;

use std::time::Duration;

use facegate::gallery::{Gallery, SqliteGallery};
use facegate_server::{CompreFaceService, KeyScope, Limits, Role};
use serde_json::{json, Value};
use support::{b64, photo, png, two_people_photo, Server};

fn limits() -> Limits {
    Limits {
        compreface_api: true,
        rate_per_minute: None,
        ..Limits::default()
    }
}

fn compreface_key(server: &Server, service: CompreFaceService, role: Role) -> String {
    server
        .keys
        .create_scoped(role, KeyScope::CompreFace(service), "test")
        .unwrap()
        .key
}

struct Answer {
    status: u16,
    json: Value,
    unavailable_plugins: Option<String>,
}

/// One request as CompreFace clients send it: the key in `x-api-key`.
fn call(server: &Server, method: &str, path: &str, key: Option<&str>, body: Body) -> Answer {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .allow_non_standard_methods(true)
        .build()
        .into();
    let url = format!("{}{path}", server.base);
    let mut request = ureq::http::Request::builder().method(method).uri(url);
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    let request = match body {
        Body::None => request.body(Vec::new()),
        Body::Json(value) => request
            .header("Content-Type", "application/json")
            .body(serde_json::to_vec(&value).unwrap()),
        Body::Files(files) => {
            let boundary = "compreface-test-boundary-5c1e";
            let mut bytes = Vec::new();
            for (field, content) in files {
                bytes.extend_from_slice(
                    format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"image.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n").as_bytes(),
                );
                bytes.extend_from_slice(&content);
                bytes.extend_from_slice(b"\r\n");
            }
            bytes.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
            request
                .header(
                    "Content-Type",
                    format!("multipart/form-data; boundary={boundary}"),
                )
                .body(bytes)
        }
    }
    .unwrap();
    let mut response = agent.run(request).expect("HTTP request failed");
    let unavailable_plugins = response
        .headers()
        .get("x-facegate-unavailable-plugins")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = response.body_mut().read_to_string().unwrap();
    Answer {
        status: response.status().as_u16(),
        json: serde_json::from_str(&text).unwrap_or(Value::Null),
        unavailable_plugins,
    }
}

enum Body {
    None,
    Json(Value),
    Files(Vec<(&'static str, Vec<u8>)>),
}

fn file(bytes: Vec<u8>) -> Body {
    Body::Files(vec![("file", bytes)])
}

fn error_code(answer: &Answer) -> (u16, i64) {
    (answer.status, answer.json["code"].as_i64().unwrap_or(-1))
}

fn area(face: &Value) -> i64 {
    let b = &face["box"];
    (b["x_max"].as_i64().unwrap() - b["x_min"].as_i64().unwrap())
        * (b["y_max"].as_i64().unwrap() - b["y_min"].as_i64().unwrap())
}

#[test]
fn the_recognition_service_keeps_subjects_and_examples_as_compreface_does() {
    let server = Server::start(limits());
    let key = compreface_key(&server, CompreFaceService::Recognition, Role::Admin);
    assert!(uuid_shaped(&key), "{key}");
    let k = Some(key.as_str());

    // Subjects without faces, then a duplicate.
    let created = call(
        &server,
        "POST",
        "/api/v1/recognition/subjects",
        k,
        Body::Json(json!({"subject": "ben", "extra": 1})),
    );
    assert_eq!(
        (created.status, &created.json),
        (201, &json!({"subject": "ben"}))
    );
    let again = call(
        &server,
        "POST",
        "/api/v1/recognition/subjects",
        k,
        Body::Json(json!({"subject": "ben"})),
    );
    assert_eq!(error_code(&again), (400, 43), "{}", again.json);
    assert!(again.json["message"].is_string());

    // Examples: multipart to an existing subject, base64 JSON to a new one (created on the way).
    let added = call(
        &server,
        "POST",
        "/api/v1/recognition/faces?subject=ben&det_prob_threshold=0.8",
        k,
        file(photo("train", "ben_afflek", 0)),
    );
    assert_eq!(added.status, 201, "{}", added.json);
    assert_eq!(added.json["subject"], "ben");
    let ben_image = added.json["image_id"].as_str().unwrap().to_string();
    assert!(uuid_shaped(&ben_image), "{ben_image}");
    let added = call(
        &server,
        "POST",
        "/api/v1/recognition/faces/?subject=madonna",
        k,
        Body::Json(json!({"file": b64(&photo("train", "madonna", 0))})),
    );
    assert_eq!(added.status, 201, "{}", added.json);
    let madonna_image = added.json["image_id"].as_str().unwrap().to_string();
    // The same photo again: the same example, not a second one.
    let same = call(
        &server,
        "POST",
        "/api/v1/recognition/faces?subject=madonna",
        k,
        file(photo("train", "madonna", 0)),
    );
    assert_eq!(
        (same.status, same.json["image_id"].as_str()),
        (201, Some(madonna_image.as_str()))
    );
    // No face, and two faces where one is needed.
    let none = call(
        &server,
        "POST",
        "/api/v1/recognition/faces?subject=ben",
        k,
        file(png(200, 200, false)),
    );
    assert_eq!(error_code(&none), (400, 28), "{}", none.json);
    let two = call(
        &server,
        "POST",
        "/api/v1/recognition/faces?subject=ben",
        k,
        file(two_people_photo()),
    );
    assert_eq!(error_code(&two), (400, 31), "{}", two.json);

    let subjects = call(
        &server,
        "GET",
        "/api/v1/recognition/subjects/",
        k,
        Body::None,
    );
    assert_eq!(subjects.json, json!({"subjects": ["ben", "madonna"]}));
    let page = call(
        &server,
        "GET",
        "/api/v1/recognition/faces?page=1&size=1",
        k,
        Body::None,
    );
    assert_eq!(page.status, 200, "{}", page.json);
    assert_eq!(
        (
            &page.json["total_elements"],
            &page.json["total_pages"],
            &page.json["page_number"]
        ),
        (&json!(2), &json!(2), &json!(1))
    );
    assert_eq!(
        page.json["faces"],
        json!([{"image_id": madonna_image, "subject": "madonna"}])
    );

    // Recognize, with the query string the official SDK builds and the plugins Double Take
    // sends when none are set: the enrolled person above Double Take's 0.60, another below it.
    let path = "/api/v1/recognition/recognize?&limit=0&prediction_count=1&det_prob_threshold=0.8&status=True&face_plugins=undefined";
    let known = call(
        &server,
        "POST",
        path,
        k,
        file(photo("val", "ben_afflek", 0)),
    );
    assert_eq!(known.status, 200, "{}", known.json);
    let best = &known.json["result"][0]["subjects"][0];
    assert_eq!(best["subject"], "ben", "{}", known.json);
    assert!(
        best["similarity"].as_f64().unwrap() >= 0.6,
        "{}",
        known.json
    );
    assert!(
        known.json["result"][0]["box"]["probability"]
            .as_f64()
            .unwrap()
            > 0.8
    );
    assert!(known.json["plugins_versions"].is_object(), "status=true");
    let stranger = call(
        &server,
        "POST",
        "/api/v1/recognition/recognize",
        k,
        file(photo("val", "elton_john", 0)),
    );
    let best = stranger.json["result"][0]["subjects"][0]["similarity"]
        .as_f64()
        .unwrap();
    assert!(best < 0.6, "{}", stranger.json);
    assert!(
        stranger.json.get("plugins_versions").is_none(),
        "only with status=true"
    );
    let blank = call(
        &server,
        "POST",
        "/api/v1/recognition/recognize",
        k,
        file(png(200, 200, false)),
    );
    assert_eq!(error_code(&blank), (400, 28), "{}", blank.json);
    // Every face, largest first; `limit` keeps the largest.
    let both = call(
        &server,
        "POST",
        "/api/v1/recognition/recognize?limit=0",
        k,
        file(two_people_photo()),
    );
    let faces = both.json["result"].as_array().unwrap();
    assert_eq!(faces.len(), 2, "{}", both.json);
    assert!(area(&faces[0]) >= area(&faces[1]));
    let one = call(
        &server,
        "POST",
        "/api/v1/recognition/recognize?limit=1",
        k,
        file(two_people_photo()),
    );
    assert_eq!(one.json["result"].as_array().unwrap().len(), 1);
    assert_eq!(area(&one.json["result"][0]), area(&faces[0]));

    // Verify against one example.
    let path = format!("/api/v1/recognition/faces/{ben_image}/verify");
    let verified = call(
        &server,
        "POST",
        &path,
        k,
        file(photo("val", "ben_afflek", 0)),
    );
    assert_eq!(verified.status, 200, "{}", verified.json);
    assert!(verified.json["result"][0]["similarity"].as_f64().unwrap() >= 0.6);
    let against_madonna = format!("/api/v1/recognition/faces/{madonna_image}/verify");
    let other = call(
        &server,
        "POST",
        &against_madonna,
        k,
        file(photo("val", "ben_afflek", 0)),
    );
    assert!(
        other.json["result"][0]["similarity"].as_f64().unwrap() < 0.6,
        "{}",
        other.json
    );
    let unknown = call(
        &server,
        "POST",
        "/api/v1/recognition/faces/00000000-0000-8000-8000-000000000001/verify",
        k,
        file(photo("val", "ben_afflek", 0)),
    );
    assert_eq!(error_code(&unknown), (404, 11), "{}", unknown.json);

    // Rename keeps the examples and their ids; renaming onto an existing subject merges.
    let renamed = call(
        &server,
        "PUT",
        "/api/v1/recognition/subjects/ben",
        k,
        Body::Json(json!({"subject": "Ben Affleck"})),
    );
    assert_eq!(
        (renamed.status, &renamed.json),
        (200, &json!({"updated": true})),
        "{}",
        renamed.json
    );
    let listed = call(
        &server,
        "GET",
        "/api/v1/recognition/faces?subject=Ben%20Affleck",
        k,
        Body::None,
    );
    assert_eq!(
        listed.json["faces"],
        json!([{"image_id": ben_image, "subject": "Ben Affleck"}])
    );
    let missing = call(
        &server,
        "PUT",
        "/api/v1/recognition/subjects/nobody",
        k,
        Body::Json(json!({"subject": "x"})),
    );
    assert_eq!(error_code(&missing), (404, 42), "{}", missing.json);

    // Deleting examples: by id (then it is gone), by a list of ids, by subject.
    let path = format!("/api/v1/recognition/faces/{ben_image}");
    let removed = call(&server, "DELETE", &path, k, Body::None);
    assert_eq!(
        removed.json,
        json!({"image_id": ben_image, "subject": "Ben Affleck"})
    );
    assert_eq!(
        error_code(&call(&server, "DELETE", &path, k, Body::None)),
        (404, 11)
    );
    let added = call(
        &server,
        "POST",
        "/api/v1/recognition/faces?subject=madonna",
        k,
        file(photo("train", "madonna", 1)),
    );
    let second = added.json["image_id"].as_str().unwrap().to_string();
    let by_list = call(
        &server,
        "POST",
        "/api/v1/recognition/faces/delete",
        k,
        Body::Json(json!([second, "not-an-id"])),
    );
    assert_eq!(
        by_list.json,
        json!([{"image_id": second, "subject": "madonna"}])
    );
    let by_subject = call(
        &server,
        "DELETE",
        "/api/v1/recognition/faces?subject=madonna",
        k,
        Body::None,
    );
    assert_eq!(by_subject.json, json!({"deleted": 1}));
    let nobody = call(
        &server,
        "DELETE",
        "/api/v1/recognition/faces?subject=nobody",
        k,
        Body::None,
    );
    assert_eq!(nobody.json, json!({"deleted": 0}));
    let gallery = SqliteGallery::open(&server.gallery_path).unwrap();
    assert_eq!(gallery.counts().unwrap().templates, 0);
    assert_eq!(
        gallery.people().unwrap().len(),
        2,
        "subjects stay when their examples go"
    );

    // Subjects: one, a missing one, all.
    let gone = call(
        &server,
        "DELETE",
        "/api/v1/recognition/subjects/Ben%20Affleck",
        k,
        Body::None,
    );
    assert_eq!(gone.json, json!({"subject": "Ben Affleck"}));
    let missing = call(
        &server,
        "DELETE",
        "/api/v1/recognition/subjects/Ben%20Affleck",
        k,
        Body::None,
    );
    assert_eq!(error_code(&missing), (404, 42));
    let all = call(
        &server,
        "DELETE",
        "/api/v1/recognition/subjects",
        k,
        Body::None,
    );
    assert_eq!(all.json, json!({"deleted": 1}));

    // Everything was audited under the key's id.
    let actions: Vec<String> = gallery
        .audit_log(None, 1000)
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    for action in [
        "enroll",
        "identify",
        "verify",
        "rename",
        "remove_template",
        "forget",
    ] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} in {actions:?}"
        );
    }
}

#[test]
fn detection_and_verification_services_answer_per_face() {
    let server = Server::start(limits());
    let detection = compreface_key(&server, CompreFaceService::Detection, Role::Verify);
    let verification = compreface_key(&server, CompreFaceService::Verification, Role::Verify);

    let path = "/api/v1/detection/detect?face_plugins=landmarks,age,gender&status=true";
    let detected = call(
        &server,
        "POST",
        path,
        Some(&detection),
        file(two_people_photo()),
    );
    assert_eq!(detected.status, 200, "{}", detected.json);
    let faces = detected.json["result"].as_array().unwrap();
    assert_eq!(faces.len(), 2);
    assert_eq!(faces[0]["landmarks"].as_array().unwrap().len(), 5);
    assert_eq!(detected.unavailable_plugins.as_deref(), Some("age,gender"));
    assert_eq!(
        detected.json["plugins_versions"]["age"],
        "unavailable in facegate"
    );

    let verified = call(
        &server,
        "POST",
        "/api/v1/verification/verify",
        Some(&verification),
        Body::Files(vec![
            ("source_image", photo("train", "jerry_seinfeld", 0)),
            ("target_image", two_people_photo()),
        ]),
    );
    assert_eq!(verified.status, 200, "{}", verified.json);
    let result = &verified.json["result"][0];
    assert!(result["source_image_face"]["box"]["x_max"].is_i64());
    let matches = result["face_matches"].as_array().unwrap();
    assert_eq!(matches.len(), 2, "{}", verified.json);
    let best = matches
        .iter()
        .map(|m| m["similarity"].as_f64().unwrap())
        .fold(0.0, f64::max);
    assert!(
        best >= 0.6,
        "Jerry is in the target photo: {}",
        verified.json
    );

    // The source must show one face.
    let several = call(
        &server,
        "POST",
        "/api/v1/verification/verify",
        Some(&verification),
        Body::Files(vec![
            ("source_image", two_people_photo()),
            ("target_image", photo("train", "jerry_seinfeld", 0)),
        ]),
    );
    assert_eq!(error_code(&several), (400, 31), "{}", several.json);
}

#[test]
fn keys_are_checked_and_scoped_as_compreface_clients_expect() {
    let server = Server::start(limits());
    let detection = compreface_key(&server, CompreFaceService::Detection, Role::Verify);
    let recognition = compreface_key(&server, CompreFaceService::Recognition, Role::Admin);
    let route = "/api/v1/recognition/subjects";

    let none = call(&server, "GET", route, None, Body::None);
    assert_eq!(error_code(&none), (400, 20), "{}", none.json);
    assert!(none.json["message"].as_str().unwrap().contains("x-api-key"));
    let malformed = call(&server, "GET", route, Some("not-a-key"), Body::None);
    assert_eq!(error_code(&malformed), (400, 26), "{}", malformed.json);
    let unknown = call(
        &server,
        "GET",
        route,
        Some("6f1d2a4e-0c4b-4a55-9d7e-3b7c2a1f9e10"),
        Body::None,
    );
    assert_eq!(error_code(&unknown), (404, 10), "{}", unknown.json);
    // Upper case is the same UUID.
    let upper = call(
        &server,
        "GET",
        route,
        Some(&recognition.to_uppercase()),
        Body::None,
    );
    assert_eq!(upper.status, 200, "{}", upper.json);

    // A key is for its own service only: not another's routes, not the native API.
    let other_service = call(&server, "GET", route, Some(&detection), Body::None);
    assert_eq!(
        error_code(&other_service),
        (403, 12),
        "{}",
        other_service.json
    );
    let native = server.get("/v1/people", Some(&recognition));
    assert_eq!(
        (native.status, native.code()),
        (403, "forbidden"),
        "{}",
        native.text
    );
    let own = call(
        &server,
        "POST",
        "/api/v1/detection/detect",
        Some(&detection),
        file(photo("val", "madonna", 0)),
    );
    assert_eq!(own.status, 200, "{}", own.json);

    // A facegate key of a sufficient role works on every CompreFace route; a lesser one does not.
    let admin = server.key(Role::Admin);
    assert_eq!(
        call(&server, "GET", route, Some(&admin), Body::None).status,
        200
    );
    let verify = server.key(Role::Verify);
    let refused = call(&server, "GET", route, Some(&verify), Body::None);
    assert_eq!(refused.status, 403, "{}", refused.json);

    // Revoked: refused at once.
    let id = server
        .keys
        .list()
        .unwrap()
        .into_iter()
        .find(|k| k.scope == Some(KeyScope::CompreFace(CompreFaceService::Recognition)))
        .unwrap()
        .id;
    server.keys.revoke(&id).unwrap();
    let revoked = call(&server, "GET", route, Some(&recognition), Body::None);
    assert_eq!(error_code(&revoked), (404, 10), "{}", revoked.json);
}

#[test]
fn the_compreface_api_is_served_only_when_asked_for() {
    let server = Server::start(Limits::default());
    let key = compreface_key(&server, CompreFaceService::Recognition, Role::Admin);
    let answer = call(
        &server,
        "GET",
        "/api/v1/recognition/subjects",
        Some(&key),
        Body::None,
    );
    assert_eq!(answer.status, 404);
    assert!(server.openapi()["paths"]
        .get("/api/v1/recognition/recognize")
        .is_none());
}

#[test]
fn the_openapi_document_describes_the_compreface_routes_when_served() {
    let server = Server::start(limits());
    let doc = server.openapi();
    for (path, method) in [
        ("/api/v1/recognition/recognize", "post"),
        ("/api/v1/recognition/subjects", "get"),
        ("/api/v1/recognition/subjects/{subject}", "put"),
        ("/api/v1/recognition/faces", "delete"),
        ("/api/v1/detection/detect", "post"),
        ("/api/v1/verification/verify", "post"),
    ] {
        let operation = &doc["paths"][path][method];
        assert_eq!(
            operation["tags"][0], "compat: CompreFace",
            "{path} {method}"
        );
        assert!(operation["description"].as_str().unwrap().contains("role"));
    }
    assert!(
        doc["paths"]["/v1/verify"]["post"].is_object(),
        "the native API is still there"
    );
}

fn uuid_shaped(text: &str) -> bool {
    let groups: Vec<usize> = text.split('-').map(str::len).collect();
    groups == [8, 4, 4, 4, 12] && text.chars().all(|c| c == '-' || c.is_ascii_hexdigit())
}
