//! `facegate eval pairs` and `facegate calibrate` on a small pairs file built from the
//! 5-celebrity photos (no LFW needed).

use std::path::{Path, PathBuf};
use std::process::Command;

use facegate::models::{ModelStore, SilentObserver};

fn shared_home() -> PathBuf {
    std::env::var_os("FACEGATE_TEST_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/facegate-test-home")
        })
}

/// A private home (its own config and caches) sharing the model cache.
fn private_home(dir: &Path) -> PathBuf {
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let models = shared_home().join("models");
    ModelStore::new(&models).fetch_all(&SilentObserver).unwrap();
    std::os::unix::fs::symlink(&models, home.join("models")).unwrap();
    home
}

/// Pairs over the train split: same person (consecutive photos) and different people
/// (the same index of two people), spread over 2 folds.
fn write_pairs(dir: &Path) -> (PathBuf, PathBuf) {
    let root = ModelStore::new(shared_home().join("models"))
        .celebrity_dataset(&SilentObserver)
        .unwrap()
        .join("train");
    let mut people: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    people.sort();
    let photos = |p: &str| {
        let mut f: Vec<String> = std::fs::read_dir(root.join(p))
            .unwrap()
            .map(|e| format!("{p}/{}", e.unwrap().file_name().to_string_lossy()))
            .collect();
        f.sort();
        f
    };
    let mut lines = vec!["img_a\timg_b\tsame\tfold".to_string()];
    for (i, p) in people.iter().enumerate() {
        let f = photos(p);
        for k in 0..4 {
            lines.push(format!("{}\t{}\t1\t{}", f[k + 1], f[k + 2], k % 2));
        }
        for (j, q) in people.iter().enumerate().skip(i + 1) {
            let g = photos(q);
            lines.push(format!("{}\t{}\t0\t{}", f[j + 3], g[i + 3], (i + j) % 2));
        }
    }
    let path = dir.join("pairs.tsv");
    std::fs::write(&path, lines.join("\n")).unwrap();
    (path, root)
}

fn facegate(home: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_facegate"))
        .arg("--home")
        .arg(home)
        .args(args)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    eprintln!("$ facegate {}\n{stdout}{stderr}", args.join(" "));
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

#[test]
fn eval_pairs_reports_the_protocol_and_writes_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let home = private_home(dir.path());
    let (pairs, root) = write_pairs(dir.path());
    let report = dir.path().join("report");
    let (code, stdout, _) = facegate(
        &home,
        &[
            "eval",
            "pairs",
            "--json",
            "--pairs",
            pairs.to_str().unwrap(),
            "--root",
            root.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0);
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["pairs"], 30);
    assert_eq!(doc["genuine_pairs"], 20);
    assert_eq!(doc["folds"].as_array().unwrap().len(), 2);
    let accuracy = doc["accuracy_mean"].as_f64().unwrap();
    assert!(accuracy > 0.8, "accuracy {accuracy}");
    assert!(doc["auc"].as_f64().unwrap() > 0.9);
    assert!(doc["images"].as_u64().unwrap() > 30);
    for file in ["report.json", "report.md", "roc.png"] {
        assert!(report.join(file).exists(), "{file} missing");
    }
    let png = image::open(report.join("roc.png")).unwrap();
    assert_eq!((png.width(), png.height()), (800, 600));
    // A rerun is served from the embedding cache and gives the same numbers.
    let (_, again, _) = facegate(
        &home,
        &[
            "eval",
            "pairs",
            "--json",
            "--pairs",
            pairs.to_str().unwrap(),
            "--root",
            root.to_str().unwrap(),
        ],
    );
    let again: serde_json::Value = serde_json::from_str(&again).unwrap();
    assert_eq!(again["accuracy_mean"], doc["accuracy_mean"]);
    assert!(again["wall_seconds"].as_f64().unwrap() < doc["wall_seconds"].as_f64().unwrap());
}

#[test]
fn calibration_is_stored_and_used_by_verify() {
    let dir = tempfile::tempdir().unwrap();
    let home = private_home(dir.path());
    let (pairs, root) = write_pairs(dir.path());
    let (code, stdout, _) = facegate(
        &home,
        &[
            "calibrate",
            "--json",
            "--pairs",
            pairs.to_str().unwrap(),
            "--root",
            root.to_str().unwrap(),
            "--target-far",
            "0.1",
        ],
    );
    assert_eq!(code, 0);
    let cal: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(cal["measured_far"].as_f64().unwrap() <= 0.1);
    let threshold = cal["threshold"].as_f64().unwrap();

    let a = root.join("madonna");
    let mut photos: Vec<PathBuf> = std::fs::read_dir(&a)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    photos.sort();
    let (code, stdout, _) = facegate(
        &home,
        &[
            "compare",
            "--json",
            photos[0].to_str().unwrap(),
            photos[1].to_str().unwrap(),
        ],
    );
    assert!(code == 0 || code == 1);
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["threshold"]["source"], "calibrated");
    assert!((doc["threshold"]["value"].as_f64().unwrap() - threshold).abs() < 1e-6);
    assert!(doc["estimated_far"]["far"].as_f64().is_some(), "{doc}");
    // --threshold still overrides it.
    let (_, stdout, _) = facegate(
        &home,
        &[
            "compare",
            "--json",
            "--threshold",
            "0.5",
            photos[0].to_str().unwrap(),
            photos[1].to_str().unwrap(),
        ],
    );
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["threshold"]["source"], "flag");
}

#[test]
fn bad_pairs_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let home = private_home(dir.path());
    let bad = dir.path().join("bad.tsv");
    std::fs::write(&bad, "hello world\n").unwrap();
    let (code, _, stderr) = facegate(
        &home,
        &[
            "eval",
            "pairs",
            "--pairs",
            bad.to_str().unwrap(),
            "--root",
            "/",
        ],
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("expected a TSV header"), "{stderr}");
}
