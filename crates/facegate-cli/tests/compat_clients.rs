//! Compatible APIs driven by their clients' own code against a real `facegate serve`: the
//! DeepStack face API through Python `requests`, sending what DeepStack's clients send.
//! Without python3 and `requests` the test says so and passes, unless
//! `FACEGATE_REQUIRE_CLIENTS=1` (CI) makes that a failure.

mod support;

use std::process::Command;

use serde_json::Value;
use support::{create_key, photo_path, ServeProcess};

fn python_with_requests() -> bool {
    let found = Command::new("python3")
        .args(["-c", "import requests"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("FACEGATE_REQUIRE_CLIENTS").as_deref() != Ok("1"),
            "FACEGATE_REQUIRE_CLIENTS=1 but python3 with requests is missing (apt-get install python3-requests)"
        );
        eprintln!(
            "skipped: python3 with requests is needed to drive the DeepStack API as its clients do"
        );
    }
    found
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
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/deepstack_requests.py"
    );
    let output = Command::new("python3")
        .arg(script)
        .arg(&server.base)
        .arg(&key)
        .arg(photo_path("train", "ben_afflek", 0))
        .arg(photo_path("val", "ben_afflek", 0))
        .arg(photo_path("val", "madonna", 0))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answers: Value = serde_json::from_slice(&output.stdout).unwrap();
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
