//! Every route of the HTTP API against a real server on a loopback port, with real photos:
//! success, each error code, auth, limits, real erase; every response is checked against the
//! served OpenAPI document.

mod support;

use std::num::NonZeroU32;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use facegate::gallery::{Gallery, SqliteGallery};
use facegate_server::{required_role, Limits, Role};
use serde_json::{json, Value};
use support::{assert_documented, b64, photo, png, two_people_photo, Part, Server};

fn open_limits() -> Limits {
    Limits {
        rate_per_minute: None,
        ..Limits::default()
    }
}

#[test]
fn openapi_document_lists_every_route_and_each_is_served() {
    let server = Server::start(open_limits());
    let admin = server.key(Role::Admin);
    let doc = server.openapi();
    assert_eq!(doc["openapi"], "3.1.0");
    let expected = [
        ("get", "/v1/people"),
        ("post", "/v1/people"),
        ("get", "/v1/people/{name}"),
        ("delete", "/v1/people/{name}"),
        ("post", "/v1/people/{name}/faces"),
        ("delete", "/v1/people/{name}/faces/{template_id}"),
        ("post", "/v1/verify"),
        ("post", "/v1/identify"),
        ("post", "/v1/detect"),
        ("post", "/v1/liveness/challenges"),
        ("post", "/v1/liveness/challenges/{id}/frames"),
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/metrics"),
    ];
    let mut documented = Vec::new();
    for (route, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.push((method.clone(), route.clone()));
        }
    }
    documented.sort();
    let mut expected_owned: Vec<(String, String)> = expected
        .iter()
        .map(|(m, r)| (m.to_string(), r.to_string()))
        .collect();
    expected_owned.sort();
    assert_eq!(documented, expected_owned);

    for (method, route) in &documented {
        // Each documented operation is really served: it never falls through to the 404/405
        // fallbacks, and its auth rule is explicit (only health is public).
        let path = route
            .replace("{name}", "nobody")
            .replace("{template_id}", "1")
            .replace("{id}", "none");
        let reply = match method.as_str() {
            "get" => server.get(&path, Some(&admin)),
            "delete" => server.delete(&path, Some(&admin)),
            _ => server.post_json(&path, Some(&admin), &json!({})),
        };
        assert!(
            !matches!(reply.code(), "not_found" | "method_not_allowed"),
            "{method} {route} is documented but not served: {}",
            reply.text
        );
        let http_method = axum::http::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let public = route == "/healthz" || route == "/readyz";
        assert_eq!(
            required_role(&http_method, route).is_none(),
            public,
            "{method} {route}"
        );
        let secured = doc["paths"][route][method]["security"].is_array();
        assert_eq!(
            secured, !public,
            "{method} {route} security in the document"
        );
    }
    let unknown = server.get("/v2/nothing", Some(&admin));
    assert_eq!((unknown.status, unknown.code()), (404, "not_found"));
    let wrong_method = server.delete("/v1/verify", Some(&admin));
    assert_eq!(wrong_method.status, 405);
}

#[test]
fn people_lifecycle_and_delete_really_erases() {
    let server = Server::start(open_limits());
    let admin = server.key(Role::Admin);
    let doc = server.openapi();
    let key = Some(admin.as_str());

    // Create with a photo (JSON, base64).
    let created = server.post_json(
        "/v1/people",
        key,
        &json!({ "name": "Ben A.", "images": [b64(&photo("train", "ben_afflek", 0))] }),
    );
    assert_eq!(created.status, 201, "{}", created.text);
    assert_documented(&doc, "post", "/v1/people", &created);
    assert_eq!(
        created.json["person"]["templates"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(created.json["faces"].as_array().unwrap().len(), 1);

    let again = server.post_json("/v1/people", key, &json!({ "name": "Ben A." }));
    assert_eq!((again.status, again.code()), (409, "person_exists"));
    assert_documented(&doc, "post", "/v1/people", &again);

    // Add two more (multipart), one of them a duplicate of the first.
    let added = server.post_multipart(
        "/v1/people/Ben%20A./faces",
        key,
        vec![
            Part::File("image", "b1.jpg", photo("train", "ben_afflek", 1)),
            Part::File("image", "b0.jpg", photo("train", "ben_afflek", 0)),
        ],
    );
    assert_eq!(added.status, 201, "{}", added.text);
    assert_documented(&doc, "post", "/v1/people/{name}/faces", &added);
    assert_eq!(added.json["added"].as_array().unwrap().len(), 1);
    assert_eq!(added.json["duplicates"].as_array().unwrap().len(), 1);

    // An empty person, then paging in name order.
    for name in ["Zed", "Amy"] {
        let reply = server.post_json("/v1/people", key, &json!({ "name": name }));
        assert_eq!(reply.status, 201, "{}", reply.text);
    }
    let page = server.get("/v1/people?limit=2", key);
    assert_eq!(page.status, 200);
    assert_documented(&doc, "get", "/v1/people", &page);
    let names: Vec<&str> = page.json["people"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Amy", "Ben A."]);
    assert_eq!(page.json["next_after"], "Ben A.");
    let rest = server.get("/v1/people?limit=2&after=Ben%20A.", key);
    assert_eq!(rest.json["people"][0]["name"], "Zed");
    assert!(rest.json["next_after"].is_null());
    let bad_page = server.get("/v1/people?limit=0", key);
    assert_eq!((bad_page.status, bad_page.code()), (400, "bad_request"));
    assert_documented(&doc, "get", "/v1/people", &bad_page);

    let person = server.get("/v1/people/Ben%20A.", key);
    assert_eq!(person.status, 200);
    assert_documented(&doc, "get", "/v1/people/{name}", &person);
    let templates = person.json["templates"].as_array().unwrap().clone();
    assert_eq!(templates.len(), 2);

    // The stored embeddings, to look for in the files after the erase.
    let gallery = SqliteGallery::open(&server.gallery_path).unwrap();
    let model = gallery.model_id().unwrap().unwrap();
    let stored = gallery.templates_of("Ben A.", &model).unwrap();
    let needles: Vec<Vec<u8>> = stored
        .iter()
        .map(|t| {
            t.embedding[..16]
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect()
        })
        .collect();
    assert!(needles.iter().all(|n| server.gallery_files_contain(n)));

    // Remove one template, then the person.
    let first_id = templates[0]["id"].as_i64().unwrap();
    let removed = server.delete(&format!("/v1/people/Ben%20A./faces/{first_id}"), key);
    assert_eq!(removed.status, 200, "{}", removed.text);
    assert_documented(
        &doc,
        "delete",
        "/v1/people/{name}/faces/{template_id}",
        &removed,
    );
    let gone = server.delete(&format!("/v1/people/Ben%20A./faces/{first_id}"), key);
    assert_eq!((gone.status, gone.code()), (404, "unknown_template"));
    assert_documented(
        &doc,
        "delete",
        "/v1/people/{name}/faces/{template_id}",
        &gone,
    );
    assert!(!server.gallery_files_contain(&needles[0]));

    let deleted = server.delete("/v1/people/Ben%20A.", key);
    assert_eq!(deleted.status, 200);
    assert_documented(&doc, "delete", "/v1/people/{name}", &deleted);
    assert_eq!(deleted.json["templates_removed"], 1);
    for needle in &needles {
        assert!(
            !server.gallery_files_contain(needle),
            "a deleted embedding is still in the gallery files"
        );
    }
    let missing = server.get("/v1/people/Ben%20A.", key);
    assert_eq!((missing.status, missing.code()), (404, "unknown_person"));
    assert_documented(&doc, "get", "/v1/people/{name}", &missing);
    let verify_gone = server.post_json(
        "/v1/verify",
        key,
        &json!({ "person": "Ben A.", "image": b64(&photo("val", "ben_afflek", 0)) }),
    );
    assert_eq!(
        (verify_gone.status, verify_gone.code()),
        (404, "unknown_person")
    );
    let delete_missing = server.delete("/v1/people/Ben%20A.", key);
    assert_eq!(
        (delete_missing.status, delete_missing.code()),
        (404, "unknown_person")
    );

    // Names are stored exactly, whatever they contain.
    let hostile = "R'); DROP TABLE people;-- / ..";
    let reply = server.post_json("/v1/people", key, &json!({ "name": hostile }));
    assert_eq!(reply.status, 201, "{}", reply.text);
    let fetched = server.get(
        "/v1/people/R'%29%3B%20DROP%20TABLE%20people%3B--%20%2F%20..",
        key,
    );
    assert_eq!(fetched.json["name"], hostile, "{}", fetched.text);
    let invalid = server.post_json("/v1/people", key, &json!({ "name": " padded" }));
    assert_eq!((invalid.status, invalid.code()), (422, "invalid_name"));
    assert_documented(&doc, "post", "/v1/people", &invalid);
}

#[test]
fn enrollment_photos_are_checked_before_anything_is_stored() {
    let server = Server::start(open_limits());
    let admin = server.key(Role::Admin);
    let doc = server.openapi();
    let key = Some(admin.as_str());
    // One good photo and one without a face: nothing is stored, the person is not created.
    let reply = server.post_multipart(
        "/v1/people",
        key,
        vec![
            Part::Text("name", "ann"),
            Part::File("image", "good.jpg", photo("train", "madonna", 0)),
            Part::File("image", "grey.png", png(160, 160, false)),
        ],
    );
    assert_eq!(
        (reply.status, reply.code()),
        (422, "no_face"),
        "{}",
        reply.text
    );
    assert_documented(&doc, "post", "/v1/people", &reply);
    assert!(reply.json["error"]["message"]
        .as_str()
        .unwrap()
        .contains("grey.png"));
    assert_eq!(server.get("/v1/people", key).json["people"], json!([]));

    let several = server.post_multipart(
        "/v1/people",
        key,
        vec![
            Part::Text("name", "jerry"),
            Part::File("image", "two.jpg", two_people_photo()),
        ],
    );
    assert_eq!((several.status, several.code()), (422, "several_faces"));
    assert!(several.json["error"]["message"]
        .as_str()
        .unwrap()
        .contains("largest=true"));
    let largest = server.post_multipart(
        "/v1/people",
        key,
        vec![
            Part::Text("name", "jerry"),
            Part::Text("largest", "true"),
            Part::File("image", "two.jpg", two_people_photo()),
        ],
    );
    assert_eq!(largest.status, 201, "{}", largest.text);

    let unknown = server.post_json(
        "/v1/people/nobody/faces",
        key,
        &json!({ "images": [b64(&photo("train", "madonna", 0))] }),
    );
    assert_eq!((unknown.status, unknown.code()), (404, "unknown_person"));
    assert_documented(&doc, "post", "/v1/people/{name}/faces", &unknown);
    let none = server.post_json("/v1/people/jerry/faces", key, &json!({ "images": [] }));
    assert_eq!((none.status, none.code()), (400, "bad_request"));
}

#[test]
fn verify_identify_detect_and_their_errors() {
    let server = Server::start(open_limits());
    let admin = server.key(Role::Admin);
    let doc = server.openapi();
    let key = Some(admin.as_str());

    let empty = server.post_json(
        "/v1/identify",
        key,
        &json!({ "image": b64(&photo("val", "ben_afflek", 0)) }),
    );
    assert_eq!((empty.status, empty.code()), (409, "empty_gallery"));
    assert_documented(&doc, "post", "/v1/identify", &empty);

    for (name, person) in [
        ("ben", "ben_afflek"),
        ("madonna", "madonna"),
        ("elton", "elton_john"),
    ] {
        let reply = server.post_json(
            "/v1/people",
            key,
            &json!({ "name": name, "images": [b64(&photo("train", person, 0)), b64(&photo("train", person, 1))], "largest": true }),
        );
        assert_eq!(reply.status, 201, "{}", reply.text);
    }

    // 1:1, JSON and multipart.
    let same = server.post_json(
        "/v1/verify",
        key,
        &json!({ "person": "ben", "image": format!("data:image/jpeg;base64,{}", b64(&photo("val", "ben_afflek", 0))) }),
    );
    assert_eq!(same.status, 200, "{}", same.text);
    assert_documented(&doc, "post", "/v1/verify", &same);
    assert_eq!(same.json["is_match"], true);
    assert_eq!(
        same.json["model"],
        "fusion(mobilefacenet-human-3.0.4+dlib-resnet-v1)"
    );
    assert!(
        same.json["distance"].as_f64().unwrap()
            <= same.json["threshold"]["value"].as_f64().unwrap()
    );
    // The same shape as the command line's `estimated_far`.
    assert!(
        same.json["estimated_far"]["far"].is_number(),
        "{}",
        same.text
    );
    assert!(same.json["estimated_far"]["below_measurable"].is_boolean());
    let other = server.post_multipart(
        "/v1/verify",
        key,
        vec![
            Part::Text("person", "ben"),
            Part::File("image", "m.jpg", photo("val", "madonna", 0)),
        ],
    );
    assert_eq!(other.status, 200, "{}", other.text);
    assert_eq!(other.json["is_match"], false);

    // Image against image, no gallery.
    let pair = server.post_json(
        "/v1/verify",
        key,
        &json!({ "image": b64(&photo("val", "elton_john", 0)), "reference_image": b64(&photo("val", "elton_john", 1)) }),
    );
    assert_eq!(pair.status, 200, "{}", pair.text);
    assert_documented(&doc, "post", "/v1/verify", &pair);
    assert_eq!(pair.json["is_match"], true);
    assert!(pair.json["person"].is_null() && pair.json["reference_face"].is_object());

    // 1:N.
    let who = server.post_multipart(
        "/v1/identify",
        key,
        vec![
            Part::File("image", "e.jpg", photo("val", "elton_john", 2)),
            Part::Text("top_k", "2"),
        ],
    );
    assert_eq!(who.status, 200, "{}", who.text);
    assert_documented(&doc, "post", "/v1/identify", &who);
    assert_eq!(who.json["identity"], "elton", "{}", who.text);
    assert_eq!(who.json["candidates"].as_array().unwrap().len(), 2);
    let stranger = server.post_json(
        "/v1/identify",
        key,
        &json!({ "image": b64(&photo("val", "mindy_kaling", 0)) }),
    );
    assert_eq!(stranger.status, 200);
    assert!(stranger.json["identity"].is_null(), "{}", stranger.text);

    // Detect.
    let faces = server.post_json(
        "/v1/detect",
        key,
        &json!({ "image": b64(&two_people_photo()) }),
    );
    assert_eq!(faces.status, 200);
    assert_documented(&doc, "post", "/v1/detect", &faces);
    assert_eq!(faces.json["faces"].as_array().unwrap().len(), 2);
    let nobody = server.post_json(
        "/v1/detect",
        key,
        &json!({ "image": b64(&png(120, 90, false)) }),
    );
    assert_eq!(nobody.status, 200);
    assert_eq!(nobody.json["faces"], json!([]));
    assert_eq!(
        (
            nobody.json["width"].as_u64(),
            nobody.json["height"].as_u64()
        ),
        (Some(120), Some(90))
    );

    // Errors, each with its code and status.
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "/v1/verify",
            json!({ "person": "ben", "image": b64(&png(160, 160, false)) }),
            422,
            "no_face",
        ),
        (
            "/v1/verify",
            json!({ "person": "ben", "image": b64(b"\xff\xd8\xff\xe0 not really a jpeg") }),
            422,
            "corrupt_image",
        ),
        (
            "/v1/verify",
            json!({ "person": "ben", "image": b64(b"just some text, not an image at all") }),
            415,
            "unsupported_format",
        ),
        (
            "/v1/verify",
            json!({ "person": "nobody", "image": b64(&photo("val", "ben_afflek", 0)) }),
            404,
            "unknown_person",
        ),
        ("/v1/verify", json!({ "person": "ben" }), 400, "bad_request"),
        (
            "/v1/verify",
            json!({ "image": b64(&photo("val", "ben_afflek", 0)) }),
            400,
            "bad_request",
        ),
        (
            "/v1/verify",
            json!({ "person": "ben", "image": "%%%" }),
            400,
            "bad_request",
        ),
        (
            "/v1/verify",
            json!({ "persn": "ben", "image": b64(&photo("val", "ben_afflek", 0)) }),
            400,
            "bad_request",
        ),
        (
            "/v1/identify",
            json!({ "image": b64(&photo("val", "ben_afflek", 0)), "top_k": 0 }),
            400,
            "bad_request",
        ),
        (
            "/v1/identify",
            json!({ "image": b64(&png(100, 100, false)) }),
            422,
            "no_face",
        ),
        (
            "/v1/detect",
            json!({ "image": b64(b"GIF89a") }),
            415,
            "unsupported_format",
        ),
    ];
    for (route, body, status, code) in cases {
        let reply = server.post_json(route, key, &body);
        assert_eq!(
            (reply.status, reply.code()),
            (status, code),
            "{route} {}",
            reply.text
        );
        assert_documented(&doc, "post", route, &reply);
        assert!(!reply.json["error"]["message"].as_str().unwrap().is_empty());
    }
    let not_json = server.post_raw("/v1/verify", key, "text/plain", b"hello".to_vec());
    assert_eq!(
        (not_json.status, not_json.code()),
        (415, "unsupported_media_type")
    );
    assert_documented(&doc, "post", "/v1/verify", &not_json);
    let broken_json = server.post_raw(
        "/v1/verify",
        key,
        "application/json",
        b"{\"person\":".to_vec(),
    );
    assert_eq!(
        (broken_json.status, broken_json.code()),
        (400, "bad_request")
    );
}

#[test]
fn keys_and_roles_guard_every_route() {
    let server = Server::start(open_limits());
    let doc = server.openapi();
    let verify_key = server.key(Role::Verify);
    let identify_key = server.key(Role::Identify);
    let enroll_key = server.key(Role::Enroll);
    let admin_key = server.key(Role::Admin);
    let metrics_key = server.key(Role::Admin);
    let photo_json = json!({ "image": b64(&photo("train", "ben_afflek", 0)) });

    // Public: health, readiness, page, API description.
    assert_eq!(server.get("/healthz", None).status, 200);
    let ready = server.get("/readyz", None);
    assert_eq!(ready.status, 200);
    assert_documented(&doc, "get", "/readyz", &ready);
    assert_eq!(ready.json["ready"], true);
    let mut fields: Vec<&String> = ready.json.as_object().unwrap().keys().collect();
    fields.sort();
    assert_eq!(
        fields,
        ["problem", "ready"],
        "readiness says nothing about the gallery or models"
    );
    let page = server.get("/", None);
    assert_eq!(page.status, 200);
    assert!(page.content_type.starts_with("text/html"));
    assert!(page.text.contains("/assets/app.js"));
    let script = server.get("/assets/app.js", None);
    assert!(script.status == 200 && script.text.contains("getUserMedia"));
    assert_eq!(server.get("/assets/nothing.js", None).status, 404);

    // No key, a malformed key, a made-up key.
    for key in [None, Some("nonsense"), Some("fgk_0000000000000000_abcdef")] {
        let reply = server.post_json("/v1/detect", key, &photo_json);
        assert_eq!(
            (reply.status, reply.code()),
            (401, "unauthorized"),
            "{key:?}"
        );
        assert_documented(&doc, "post", "/v1/verify", &reply);
    }
    assert_eq!(server.get("/metrics", None).status, 401);
    assert_eq!(server.get("/v1/people", None).status, 401);

    // verify: may detect, may not list, identify, read metrics, enroll or delete.
    assert_eq!(
        server
            .post_json("/v1/detect", Some(&verify_key), &photo_json)
            .status,
        200
    );
    assert_eq!(server.get("/v1/people", Some(&verify_key)).status, 403);
    assert_eq!(server.get("/v1/people/x", Some(&verify_key)).status, 403);
    assert_eq!(server.get("/metrics", Some(&verify_key)).status, 403);
    assert_eq!(
        server
            .post_json("/v1/identify", Some(&verify_key), &photo_json)
            .status,
        403
    );
    // identify: may identify and list.
    assert_eq!(server.get("/v1/people", Some(&identify_key)).status, 200);
    let identified = server.post_json("/v1/identify", Some(&identify_key), &photo_json);
    assert_ne!(identified.status, 403, "{}", identified.text);
    assert_eq!(server.get("/metrics", Some(&identify_key)).status, 403);
    let refused = server.post_json("/v1/people", Some(&verify_key), &json!({ "name": "x" }));
    assert_eq!((refused.status, refused.code()), (403, "forbidden"));
    assert_documented(&doc, "post", "/v1/people", &refused);

    // enroll: may create, may not delete.
    let made = server.post_json("/v1/people", Some(&enroll_key), &json!({ "name": "x" }));
    assert_eq!(made.status, 201);
    let no_delete = server.delete("/v1/people/x", Some(&enroll_key));
    assert_eq!((no_delete.status, no_delete.code()), (403, "forbidden"));
    assert_documented(&doc, "delete", "/v1/people/{name}", &no_delete);
    assert_eq!(server.delete("/v1/people/x", Some(&verify_key)).status, 403);

    // admin: may delete. X-API-Key works too.
    let by_header = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent()
        .delete(format!("{}/v1/people/x", server.base))
        .header("X-API-Key", &admin_key)
        .call()
        .unwrap();
    assert_eq!(by_header.status().as_u16(), 200);

    // A revoked key stops working at once, even though the server has seen it before.
    let admin_id = admin_key.split('_').nth(1).unwrap();
    assert_eq!(server.get("/v1/people", Some(&admin_key)).status, 200);
    server.keys.revoke(admin_id).unwrap();
    let revoked = server.get("/v1/people", Some(&admin_key));
    assert_eq!((revoked.status, revoked.code()), (401, "unauthorized"));
    assert!(revoked.json["error"]["message"]
        .as_str()
        .unwrap()
        .contains("revoked"));

    // Metrics: request counts per route and status, latency histograms, faces, gallery size.
    let metrics = server.get("/metrics", Some(&metrics_key));
    assert_eq!(metrics.status, 200);
    assert!(metrics
        .content_type
        .starts_with("application/openmetrics-text"));
    for expected in [
        "facegate_http_requests_total{route=\"/v1/detect\",method=\"POST\",status=\"200\"} 1",
        "facegate_http_requests_total{route=\"/v1/people\",method=\"POST\",status=\"403\"} 1",
        "facegate_http_request_duration_seconds_bucket{le=\"+Inf\",route=\"/v1/detect\",method=\"POST\"}",
        "facegate_gallery_people 0",
        "facegate_faces_embedded_total",
    ] {
        assert!(metrics.text.contains(expected), "metrics lack {expected}:\n{}", metrics.text);
    }
    // Keys never appear in metrics.
    assert!(!metrics.text.contains(&verify_key));
}

#[test]
fn body_and_pixel_limits() {
    let server = Server::start(Limits {
        max_body_bytes: 100_000,
        max_pixels: 30_000,
        max_images: 2,
        ..open_limits()
    });
    let admin = server.key(Role::Admin);
    let doc = server.openapi();
    let key = Some(admin.as_str());
    let big = png(400, 400, true);
    assert!(big.len() > 100_000);
    let too_big_json = server.post_json("/v1/detect", key, &json!({ "image": b64(&big) }));
    assert_eq!(
        (too_big_json.status, too_big_json.code()),
        (413, "payload_too_large")
    );
    assert_documented(&doc, "post", "/v1/detect", &too_big_json);
    let too_big_form =
        server.post_multipart("/v1/detect", key, vec![Part::File("image", "big.png", big)]);
    assert_eq!(
        (too_big_form.status, too_big_form.code()),
        (413, "payload_too_large")
    );

    // Small on the wire, too many pixels once decoded (a 250x250 photo is 62,500 px).
    let many_pixels = server.post_json(
        "/v1/verify",
        key,
        &json!({ "image": b64(&photo("train", "ben_afflek", 0)), "reference_image": b64(&photo("train", "ben_afflek", 1)) }),
    );
    assert_eq!(
        (many_pixels.status, many_pixels.code()),
        (413, "image_too_large"),
        "{}",
        many_pixels.text
    );
    assert_documented(&doc, "post", "/v1/verify", &many_pixels);

    let three = server.post_json(
        "/v1/people",
        key,
        &json!({ "name": "a", "images": [b64(&png(10, 10, false)), b64(&png(10, 10, false)), b64(&png(10, 10, false))] }),
    );
    assert_eq!((three.status, three.code()), (400, "bad_request"));
    assert!(three.json["error"]["message"]
        .as_str()
        .unwrap()
        .contains("at most 2"));
}

#[test]
fn overload_gets_503_with_retry_after_and_memory_stays_bounded() {
    // One inference at a time and no queue: concurrent requests beyond it are refused at once.
    let server = Arc::new(Server::start(Limits {
        max_inflight: 1,
        max_queued: 0,
        queue_wait: Duration::ZERO,
        ..open_limits()
    }));
    let admin = server.key(Role::Admin);
    let doc = server.openapi();
    let body = json!({ "image": b64(&photo("val", "ben_afflek", 0)), "reference_image": b64(&photo("val", "ben_afflek", 1)) });
    let clients = 6;
    let barrier = Arc::new(Barrier::new(clients));
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let (server, admin, body, barrier) =
                (server.clone(), admin.clone(), body.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                server.post_json("/v1/verify", Some(&admin), &body)
            })
        })
        .collect();
    let replies: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let ok = replies.iter().filter(|r| r.status == 200).count();
    let refused: Vec<_> = replies.iter().filter(|r| r.status == 503).collect();
    assert!(ok >= 1, "at least the first request is served");
    assert!(
        !refused.is_empty(),
        "{clients} simultaneous requests on 1 slot: some must be refused"
    );
    assert_eq!(ok + refused.len(), clients);
    for reply in refused {
        assert_eq!(reply.code(), "overloaded");
        assert_eq!(reply.retry_after.as_deref(), Some("1"));
        assert_documented(&doc, "post", "/v1/verify", reply);
    }
    let metrics = server.get("/metrics", Some(&admin)).text;
    assert!(
        metrics.contains("facegate_inference_rejected_total"),
        "{metrics}"
    );
    assert!(!metrics.contains("facegate_inference_rejected_total 0\n"));
    assert!(metrics.contains("facegate_inference_in_flight 0"));
}

#[test]
fn rate_limit_and_request_timeout() {
    let limited = Server::start(Limits {
        rate_per_minute: NonZeroU32::new(3),
        ..Limits::default()
    });
    let key = limited.key(Role::Identify);
    let other = limited.key(Role::Identify);
    for _ in 0..3 {
        assert_eq!(limited.get("/v1/people", Some(&key)).status, 200);
    }
    let refused = limited.get("/v1/people", Some(&key));
    assert_eq!((refused.status, refused.code()), (429, "rate_limited"));
    let wait: u64 = refused.retry_after.as_deref().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    // Per key: another key is unaffected.
    assert_eq!(limited.get("/v1/people", Some(&other)).status, 200);

    let slow = Server::start(Limits {
        request_timeout: Duration::from_millis(5),
        ..open_limits()
    });
    let admin = slow.key(Role::Admin);
    let reply = slow.post_json(
        "/v1/verify",
        Some(&admin),
        &json!({ "image": b64(&photo("val", "ben_afflek", 0)), "reference_image": b64(&photo("val", "ben_afflek", 1)) }),
    );
    assert_eq!(
        (reply.status, reply.code()),
        (503, "timeout"),
        "{}",
        reply.text
    );
    assert_documented(&slow.openapi(), "post", "/v1/verify", &reply);
}

#[test]
fn insecure_mode_needs_no_key() {
    let server = Server::start_with(open_limits(), false);
    let reply = server.post_json("/v1/people", None, &json!({ "name": "demo" }));
    assert_eq!(reply.status, 201, "{}", reply.text);
    let gallery = SqliteGallery::open(&server.gallery_path).unwrap();
    assert_eq!(gallery.people().unwrap().len(), 1);
}

/// A gallery whose storage is gone (a dead disk, a dropped database connection).
struct UnreachableGallery;

fn gone() -> facegate::gallery::GalleryError {
    facegate::gallery::GalleryError::Io {
        path: "/gallery".into(),
        source: std::io::Error::other("storage unreachable"),
    }
}

impl Gallery for UnreachableGallery {
    fn model_id(&self) -> Result<Option<String>, facegate::gallery::GalleryError> {
        Err(gone())
    }
    fn key_id(&self) -> Result<Option<String>, facegate::gallery::GalleryError> {
        Err(gone())
    }
    fn compact(&self) -> Result<usize, facegate::gallery::GalleryError> {
        Err(gone())
    }
    fn rekey_with(
        &self,
        _: Option<&facegate::gallery::TemplateKey>,
        _: Option<&dyn Fn(usize) -> facegate::gallery::NewAuditEvent>,
    ) -> Result<usize, facegate::gallery::GalleryError> {
        Err(gone())
    }
    fn enroll_with(
        &self,
        _: &str,
        _: &str,
        _: &[facegate::gallery::NewTemplate],
        _: &facegate::gallery::EnrollOptions<'_>,
    ) -> Result<facegate::gallery::EnrollReport, facegate::gallery::GalleryError> {
        Err(gone())
    }
    fn templates_of(
        &self,
        _: &str,
        _: &str,
    ) -> Result<Vec<facegate::gallery::Template>, facegate::gallery::GalleryError> {
        Err(gone())
    }
    fn all_templates(
        &self,
        _: &str,
    ) -> Result<Vec<facegate::gallery::Template>, facegate::gallery::GalleryError> {
        Err(gone())
    }
    fn people(&self) -> Result<Vec<facegate::gallery::Person>, facegate::gallery::GalleryError> {
        Err(gone())
    }
    fn people_page(
        &self,
        _: Option<&str>,
        _: usize,
    ) -> Result<Vec<facegate::gallery::Person>, facegate::gallery::GalleryError> {
        Err(gone())
    }
    fn person(
        &self,
        _: &str,
    ) -> Result<facegate::gallery::Person, facegate::gallery::GalleryError> {
        Err(gone())
    }
    fn create_person(
        &self,
        _: &str,
    ) -> Result<facegate::gallery::Person, facegate::gallery::GalleryError> {
        Err(gone())
    }
    fn templates_info(
        &self,
        _: &str,
    ) -> Result<Vec<facegate::gallery::Template>, facegate::gallery::GalleryError> {
        Err(gone())
    }
    fn remove_template_with(
        &self,
        _: &str,
        _: i64,
        _: Option<&facegate::gallery::NewAuditEvent>,
    ) -> Result<(), facegate::gallery::GalleryError> {
        Err(gone())
    }
    fn template_info(
        &self,
        _: i64,
    ) -> Result<Option<facegate::gallery::Template>, facegate::gallery::GalleryError> {
        Err(gone())
    }
    fn all_templates_info(
        &self,
    ) -> Result<Vec<facegate::gallery::Template>, facegate::gallery::GalleryError> {
        Err(gone())
    }
    fn rename_person_with(
        &self,
        _: &str,
        _: &str,
        _: Option<&dyn Fn(&facegate::gallery::RenameReport) -> facegate::gallery::NewAuditEvent>,
    ) -> Result<facegate::gallery::RenameReport, facegate::gallery::GalleryError> {
        Err(gone())
    }
    fn counts(&self) -> Result<facegate::gallery::GalleryCounts, facegate::gallery::GalleryError> {
        Err(gone())
    }
    fn revision(&self) -> Result<u64, facegate::gallery::GalleryError> {
        Err(gone())
    }
    fn forget_with(
        &self,
        _: &str,
        _: Option<&dyn Fn(usize) -> facegate::gallery::NewAuditEvent>,
    ) -> Result<usize, facegate::gallery::GalleryError> {
        Err(gone())
    }
    fn append_audit(
        &self,
        _: &facegate::gallery::NewAuditEvent,
    ) -> Result<(), facegate::gallery::GalleryError> {
        Err(gone())
    }
    fn audit_log(
        &self,
        _: Option<i64>,
        _: usize,
    ) -> Result<Vec<facegate::gallery::AuditEvent>, facegate::gallery::GalleryError> {
        Err(gone())
    }
    fn audit_newest_sealed(
        &self,
    ) -> Result<Option<facegate::gallery::AuditEvent>, facegate::gallery::GalleryError> {
        Err(gone())
    }
    fn audit_id_allocation(
        &self,
    ) -> Result<facegate::gallery::audit_chain::IdAllocation, facegate::gallery::GalleryError> {
        Err(gone())
    }
    fn import_person(
        &self,
        _: &facegate::gallery::Person,
        _: &str,
        _: &[facegate::gallery::Template],
    ) -> Result<usize, facegate::gallery::GalleryError> {
        Err(gone())
    }
}

#[test]
fn an_unreachable_gallery_makes_the_server_not_ready_and_errors_cleanly() {
    let server = Server::start_with_gallery(open_limits(), Arc::new(UnreachableGallery));
    let doc = server.openapi();
    assert_eq!(
        server.get("/healthz", None).status,
        200,
        "alive, though not ready"
    );
    let ready = server.get("/readyz", None);
    assert_eq!(ready.status, 503);
    assert_documented(&doc, "get", "/readyz", &ready);
    assert_eq!(ready.json["ready"], false);
    assert!(ready.json["problem"].as_str().unwrap().contains("gallery"));
    // Internal details (paths, causes) stay in the server's log.
    assert!(!ready.text.contains("storage unreachable") && !ready.text.contains("/gallery"));
    let verify = server.post_json(
        "/v1/verify",
        None,
        &json!({ "person": "ben", "image": b64(&photo("val", "ben_afflek", 0)) }),
    );
    assert_eq!(
        (verify.status, verify.code()),
        (500, "gallery_error"),
        "{}",
        verify.text
    );
    assert!(
        !verify.text.contains("storage unreachable"),
        "{}",
        verify.text
    );
    assert_documented(&doc, "post", "/v1/verify", &verify);
    let list = server.get("/v1/people", None);
    assert_eq!((list.status, list.code()), (500, "gallery_error"));
}

/// `facegate --liveness serve`: every verify and enrollment answer carries a separate
/// liveness verdict (documented in the OpenAPI schema), the distance is unchanged, and
/// `accepted` needs both the match and a live face. Quality is always reported.
#[test]
fn liveness_and_quality_are_reported_by_the_api() {
    let plain = Server::start_with(Limits::default(), false);
    let server = Server::start_with_engine(Limits::default(), support::liveness_engine());
    let doc = server.openapi();
    let enroll = |s: &Server, n: usize| {
        s.post_json(
            "/v1/people",
            None,
            &json!({ "name": "ben", "images": [b64(&photo("train", "ben_afflek", n))] }),
        )
    };
    // This photo scores 0.39 (measured): refused with its own code, nothing stored.
    let refused = enroll(&server, 0);
    assert_eq!(
        (refused.status, refused.code()),
        (422, "not_live"),
        "{}",
        refused.text
    );
    assert_documented(&doc, "post", "/v1/people", &refused);
    assert_eq!(server.get("/v1/people/ben", None).status, 404);
    let created = enroll(&server, 1);
    assert_eq!(created.status, 201, "{}", created.text);
    assert_documented(&doc, "post", "/v1/people", &created);
    assert_eq!(
        created.json["liveness"][0]["live"], true,
        "{}",
        created.text
    );
    assert!(created.json["quality"][0]["inter_eye_px"].as_f64().unwrap() > 15.0);
    let stored = server.get("/v1/people/ben", None);
    assert!(stored.json["templates"][0]["quality"]["yaw_degrees"].is_number());
    assert_documented(&doc, "get", "/v1/people/{name}", &stored);
    assert_eq!(enroll(&plain, 1).status, 201);

    let probe = json!({ "person": "ben", "image": b64(&photo("val", "ben_afflek", 0)) });
    let checked = server.post_json("/v1/verify", None, &probe);
    assert_eq!(checked.status, 200, "{}", checked.text);
    assert_documented(&doc, "post", "/v1/verify", &checked);
    let without = plain.post_json("/v1/verify", None, &probe);
    assert!(without.json["liveness"].is_null());
    assert_eq!(without.json["accepted"], without.json["is_match"]);
    assert_eq!(checked.json["distance"], without.json["distance"]);
    let live = checked.json["liveness"]["live"].as_bool().unwrap();
    assert_eq!(
        checked.json["accepted"].as_bool().unwrap(),
        checked.json["is_match"].as_bool().unwrap() && live
    );
    assert!(checked.json["quality"]["sharpness"].as_f64().unwrap() > 0.0);

    let who = server.post_json(
        "/v1/identify",
        None,
        &json!({ "image": b64(&photo("val", "ben_afflek", 0)) }),
    );
    assert_eq!(who.status, 200, "{}", who.text);
    assert_documented(&doc, "post", "/v1/identify", &who);
    assert!(who.json["liveness"]["score"].is_number());
}

/// Every enrollment, erasure and decision made through the API is in the gallery's audit log
/// under the API key's id — with names and distances, never images or embeddings.
#[test]
fn the_api_writes_the_audit_log_under_the_key_id() {
    let server = Server::start(Limits::default());
    let created = server.keys.create(Role::Admin, "auditor").unwrap();
    let key = Some(created.key.as_str());
    let enrolled = server.post_json(
        "/v1/people",
        key,
        &json!({ "name": "ben", "images": [b64(&photo("train", "ben_afflek", 1))] }),
    );
    assert_eq!(enrolled.status, 201, "{}", enrolled.text);
    let verified = server.post_json(
        "/v1/verify",
        key,
        &json!({ "person": "ben", "image": b64(&photo("val", "ben_afflek", 0)) }),
    );
    assert_eq!(verified.status, 200, "{}", verified.text);
    let identified = server.post_json(
        "/v1/identify",
        key,
        &json!({ "image": b64(&photo("val", "madonna", 0)) }),
    );
    assert_eq!(identified.status, 200, "{}", identified.text);
    let erased = server.delete("/v1/people/ben", key);
    assert_eq!(erased.status, 200, "{}", erased.text);
    let gallery = SqliteGallery::open(&server.gallery_path).unwrap();
    let log = gallery.audit_log(None, 100).unwrap();
    let actions: Vec<(&str, &str)> = log
        .iter()
        .map(|e| (e.action.as_str(), e.decision.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(
        actions,
        [
            ("enroll", "added"),
            ("verify", "match"),
            ("identify", "unknown"),
            ("forget", "erased")
        ]
    );
    for e in &log {
        assert_eq!(e.actor, format!("key:{}", created.info.id));
    }
    assert_eq!(
        log[1].distance,
        verified.json["distance"].as_f64().map(|d| d as f32)
    );
}

/// The takeover the second security review found: an enroll key added Madonna's photo to ben,
/// and Madonna then verified as ben. A face added to someone who has faces must now be theirs,
/// unless an administrator adds it; every refusal is audited.
#[test]
fn an_enroll_key_cannot_add_someone_elses_face_to_a_person() {
    let server = Server::start(open_limits());
    let admin = server.key(Role::Admin);
    let enroll = server.key(Role::Enroll);
    let created = server.post_json(
        "/v1/people",
        Some(&enroll),
        &json!({ "name": "ben", "images": [b64(&photo("train", "ben_afflek", 0))] }),
    );
    assert_eq!(created.status, 201, "{}", created.text);
    let add = |key: &str, person: &str, n: usize| {
        server.post_json(
            "/v1/people/ben/faces",
            Some(key),
            &json!({ "images": [b64(&photo("train", person, n))] }),
        )
    };
    let takeover = add(&enroll, "madonna", 0);
    assert_eq!(
        (takeover.status, takeover.code()),
        (403, "face_mismatch"),
        "{}",
        takeover.text
    );
    let madonna_as_ben = server.post_json(
        "/v1/verify",
        Some(&admin),
        &json!({ "person": "ben", "image": b64(&photo("train", "madonna", 0)) }),
    );
    assert_eq!(
        madonna_as_ben.json["accepted"], false,
        "{}",
        madonna_as_ben.text
    );
    let own = add(&enroll, "ben_afflek", 1);
    assert_eq!(own.status, 201, "ben's own photo is added: {}", own.text);
    assert!(
        add(&admin, "madonna", 1).status == 201,
        "an administrator may add any face"
    );

    let gallery = SqliteGallery::open(&server.gallery_path).unwrap();
    let log = gallery.audit_log(None, 100).unwrap();
    let refused: Vec<_> = log
        .iter()
        .filter(|e| e.decision.as_deref() == Some("refused"))
        .collect();
    assert_eq!(refused.len(), 1, "{log:?}");
    assert_eq!(refused[0].person.as_deref(), Some("ben"));
    assert!(refused[0].distance.is_some());
    let matched = log.iter().filter(|e| {
        e.detail
            .as_deref()
            .is_some_and(|d| d.contains("policy matching: every new face matched"))
    });
    assert_eq!(matched.count(), 1, "{log:?}");

    // A deployment that lets only administrators add faces.
    let strict = Server::start(Limits {
        add_faces: facegate_server::AddFacesPolicy::AdminOnly,
        ..open_limits()
    });
    let (admin, enroll) = (strict.key(Role::Admin), strict.key(Role::Enroll));
    let created = strict.post_json(
        "/v1/people",
        Some(&enroll),
        &json!({ "name": "ben", "images": [b64(&photo("train", "ben_afflek", 0))] }),
    );
    assert_eq!(created.status, 201, "{}", created.text);
    let body = json!({ "images": [b64(&photo("train", "ben_afflek", 1))] });
    let refused = strict.post_json("/v1/people/ben/faces", Some(&enroll), &body);
    assert_eq!(
        (refused.status, refused.code()),
        (403, "add_faces_forbidden")
    );
    let by_admin = strict.post_json("/v1/people/ben/faces", Some(&admin), &body);
    assert_eq!(by_admin.status, 201, "{}", by_admin.text);
}

/// Names could be enumerated by a verify key: an unknown name was 404 `unknown_person`, a known
/// name with a photo of no one 422 `no_face`, and distances came back exact. Now a verify key
/// gets the same answers for both (and no distances); keys that may list people still get 404.
#[test]
fn a_verify_key_cannot_tell_who_is_enrolled_or_measure_distances() {
    let server = Server::start(open_limits());
    let admin = server.key(Role::Admin);
    let verify = server.key(Role::Verify);
    let created = server.post_json(
        "/v1/people",
        Some(&admin),
        &json!({ "name": "ben", "images": [b64(&photo("train", "ben_afflek", 0))] }),
    );
    assert_eq!(created.status, 201, "{}", created.text);
    let ask = |key: &str, person: &str, image: Vec<u8>| {
        server.post_json(
            "/v1/verify",
            Some(key),
            &json!({ "person": person, "image": b64(&image) }),
        )
    };
    let madonna = || photo("train", "madonna", 0);
    let known = ask(&verify, "ben", madonna());
    let unknown = ask(&verify, "nobody", madonna());
    for reply in [&known, &unknown] {
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.json["accepted"], false);
        assert_eq!(reply.json["is_match"], false);
        assert!(reply.json["distance"].is_null(), "{}", reply.text);
        assert!(reply.json["estimated_far"].is_null(), "{}", reply.text);
        assert!(reply.json["templates_compared"].is_null(), "{}", reply.text);
    }
    let shape = |v: &Value| {
        let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    assert_eq!(shape(&known.json), shape(&unknown.json));
    let noise = png(320, 240, true);
    let (known, unknown) = (
        ask(&verify, "ben", noise.clone()),
        ask(&verify, "nobody", noise),
    );
    assert_eq!(
        (known.status, known.code()),
        (unknown.status, unknown.code())
    );
    assert_eq!(known.code(), "no_face");
    // The right face still verifies, as a decision.
    let own = ask(&verify, "ben", photo("train", "ben_afflek", 1));
    assert_eq!(own.json["accepted"], true, "{}", own.text);
    assert!(own.json["distance"].is_null());
    // An administrator gets the measurement and the 404.
    let measured = ask(&admin, "ben", madonna());
    assert!(
        measured.json["distance"].as_f64().is_some(),
        "{}",
        measured.text
    );
    let missing = ask(&admin, "nobody", madonna());
    assert_eq!((missing.status, missing.code()), (404, "unknown_person"));
}

/// Bodies were read before anything admitted them: 20 clients sending 10 MB each added 210 MB.
/// Now a body is read only once the server's budget for bodies in flight has room for what it
/// declares; a request that finds none within the queue wait gets 503, and the room comes back
/// when the earlier request ends.
#[test]
fn request_bodies_wait_for_room_in_the_servers_body_budget() {
    use std::io::Write;
    let server = Server::start_with(
        Limits {
            max_body_bytes: 1 << 20,
            max_body_bytes_in_flight: 1 << 20,
            queue_wait: Duration::from_millis(300),
            ..open_limits()
        },
        false,
    );
    let addr = server.base.trim_start_matches("http://").to_string();
    // A client that declares 800 kB and sends them slowly.
    let mut slow = std::net::TcpStream::connect(&addr).unwrap();
    slow.write_all(
        b"POST /v1/detect HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 800000\r\n\r\n{\"image\": \"",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let body = json!({ "image": "A".repeat(400_000) });
    let refused = server.post_json("/v1/detect", None, &body);
    assert_eq!(
        (refused.status, refused.code()),
        (503, "overloaded"),
        "{}",
        refused.text
    );
    assert!(refused.retry_after.is_some());
    drop(slow);
    std::thread::sleep(Duration::from_millis(500));
    let admitted = server.post_json("/v1/detect", None, &body);
    assert_ne!(
        admitted.status, 503,
        "the room came back: {}",
        admitted.text
    );
}
