//! Compatible APIs driven by their clients' own code against a real `facegate serve`: the
//! DeepStack face API through Python `requests`, sending what DeepStack's clients send; the
//! CompreFace API through the official CompreFace Python SDK and Double Take's requests.
//!
//! The Python comes from `FACEGATE_CLIENTS_PYTHON` (CI points it at a venv holding
//! `compreface-sdk==0.6.0`), else `python3`. Without the packages a test says so and passes,
//! unless `FACEGATE_REQUIRE_CLIENTS=1` (CI) makes that a failure.

mod support;

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use support::{create_key, facegate, photo_path, ServeProcess};

fn clients_python() -> String {
    std::env::var("FACEGATE_CLIENTS_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// Whether the clients' Python can import `module`; says why not (or fails under CI).
fn python_with(module: &str, install: &str) -> bool {
    let python = clients_python();
    let found = Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("FACEGATE_REQUIRE_CLIENTS").as_deref() != Ok("1"),
            "FACEGATE_REQUIRE_CLIENTS=1 but {python} cannot import {module} ({install})"
        );
        eprintln!(
            "skipped: {python} cannot import {module}, which this client test drives ({install})"
        );
    }
    found
}

fn python_with_requests() -> bool {
    python_with("requests", "apt-get install python3-requests")
}

/// Runs a client script; its stdout is one JSON document.
fn run_client(script: &str, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(script);
    let mut command = Command::new(clients_python());
    command.arg(script);
    for arg in args {
        command.arg(arg);
    }
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn compreface_key(gallery: &Path, service: &str) -> String {
    let (code, stdout, stderr) = facegate(
        gallery,
        &[
            "--json",
            "keys",
            "create",
            "--compat",
            "compreface",
            "--service",
            service,
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    doc["key"].as_str().unwrap().to_string()
}

#[test]
fn a_deepstack_client_registers_recognizes_and_deletes() {
    if !python_with_requests() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let gallery = dir.path().join("gallery.db");
    let (_, key) = create_key(&gallery, "admin");
    let server = ServeProcess::start(&gallery, &["--compat", "deepstack"]);
    let answers = run_client(
        "deepstack_requests.py",
        &[
            &server.base,
            &key,
            &photo_path("train", "ben_afflek", 0),
            &photo_path("val", "ben_afflek", 0),
            &photo_path("val", "madonna", 0),
        ],
    );
    let ok = |name: &str| {
        let answer = &answers[name];
        assert_eq!(answer["status"], 200, "{name}: {answer}");
        assert_eq!(answer["body"]["success"], true, "{name}: {answer}");
        answer["body"].clone()
    };
    assert_eq!(ok("register")["message"], "face added");
    assert_eq!(ok("list")["faces"], serde_json::json!(["ben"]));
    let recognized = ok("recognize");
    assert_eq!(
        recognized["predictions"][0]["userid"], "ben",
        "{recognized}"
    );
    assert_eq!(ok("recognize_other")["predictions"][0]["userid"], "unknown");
    assert_eq!(ok("detect")["predictions"].as_array().unwrap().len(), 1);
    assert!(ok("match")["similarity"].as_f64().unwrap() >= 0.67);
    ok("delete");
    assert_eq!(ok("list_after")["faces"], serde_json::json!([]));
    assert_eq!(answers["wrong_key"]["status"], 401);
    assert_eq!(answers["wrong_key"]["body"]["success"], false);
}

#[test]
fn the_compreface_sdk_and_double_take_run_their_flows_unchanged() {
    if !python_with(
        "compreface",
        "pip install compreface-sdk==0.6.0 'urllib3<2'",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let gallery = dir.path().join("gallery.db");
    let recognition = compreface_key(&gallery, "recognition");
    let detection = compreface_key(&gallery, "detection");
    let verification = compreface_key(&gallery, "verification");
    let server = ServeProcess::start(&gallery, &["--compat", "compreface,deepstack"]);
    let no_face = dir.path().join("wall.png");
    image::RgbImage::from_pixel(200, 200, image::Rgb([128, 128, 128]))
        .save(&no_face)
        .unwrap();
    let answers = run_client(
        "compreface_sdk.py",
        &[
            &server.base,
            &recognition,
            &detection,
            &verification,
            &photo_path("train", "ben_afflek", 0),
            &photo_path("train", "ben_afflek", 1),
            &photo_path("val", "ben_afflek", 0),
            &photo_path("val", "elton_john", 0),
            &photo_path("train", "jerry_seinfeld", 4),
            &no_face,
        ],
    );
    let a = |name: &str| answers[name].clone();
    assert_eq!(a("subject_add"), serde_json::json!({"subject": "ben"}));
    let image_id = a("face_add")["image_id"].as_str().unwrap().to_string();
    assert_eq!(a("face_add")["subject"], "ben");
    assert_eq!(
        a("face_add_bytes")["subject"],
        "elton",
        "{}",
        a("face_add_bytes")
    );
    assert_eq!(
        a("subjects"),
        serde_json::json!({"subjects": ["ben", "elton"]})
    );
    assert_eq!(a("faces")["total_elements"], 2, "{}", a("faces"));

    let recognized = a("recognize");
    let face = &recognized["result"][0];
    assert_eq!(face["subjects"][0]["subject"], "ben", "{recognized}");
    assert!(face["subjects"][0]["similarity"].as_f64().unwrap() >= 0.6);
    assert_eq!(
        face["landmarks"].as_array().map(Vec::len),
        Some(5),
        "{recognized}"
    );
    assert!(
        recognized["plugins_versions"].is_object(),
        "status=True: {recognized}"
    );
    assert_eq!(
        a("recognize_no_face")["code"],
        28,
        "{}",
        a("recognize_no_face")
    );
    assert!(a("verify")["result"][0]["similarity"].as_f64().unwrap() >= 0.6);
    assert_eq!(a("update"), serde_json::json!({"updated": true}));
    assert_eq!(
        a("subjects_renamed"),
        serde_json::json!({"subjects": ["Ben Affleck", "elton"]})
    );
    assert!(
        !a("detect")["result"].as_array().unwrap().is_empty(),
        "{}",
        a("detect")
    );
    let matches = &a("verification")["result"][0]["face_matches"];
    assert!(
        matches[0]["similarity"].as_f64().unwrap() >= 0.6,
        "{matches}"
    );
    assert_eq!(a("delete_face")["subject"], "elton", "{}", a("delete_face"));
    assert_eq!(a("delete_all_faces"), serde_json::json!({"deleted": 1}));
    assert_eq!(a("faces_after")["total_elements"], 0);
    assert_eq!(
        a("subject_delete"),
        serde_json::json!({"subject": "Ben Affleck"})
    );
    assert_eq!(a("subjects_delete_all"), serde_json::json!({"deleted": 1}));
    assert_eq!(a("subjects_after"), serde_json::json!({"subjects": []}));
    assert!(a("face_add").get("image_id").is_some() && !image_id.is_empty());

    let double_take = a("double_take");
    assert_eq!(
        double_take["train"],
        serde_json::json!([201, 201]),
        "{double_take}"
    );
    let seen = &double_take["recognize"][0];
    assert_eq!(
        (&seen["name"], &seen["match"]),
        (&"ben".into(), &true.into()),
        "{double_take}"
    );
    assert_eq!(
        double_take["recognize_other"][0]["match"], false,
        "{double_take}"
    );
    assert_eq!(double_take["recognize_no_face"], serde_json::json!([]));
    assert_eq!(double_take["remove"]["status"], 200);
    assert_eq!(
        double_take["remove"]["body"],
        serde_json::json!({"deleted": 2})
    );
}
