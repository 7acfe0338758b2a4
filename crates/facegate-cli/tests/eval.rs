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

    // What the threshold decisions use does on these pairs: the five people look nothing
    // alike, so no impostor pair is accepted; most genuine pairs are.
    let at = &doc["at_decision_threshold"];
    assert_eq!(at["impostors_accepted"], 0, "{at}");
    let genuine = at["genuine_accepted"].as_u64().unwrap();
    assert!((15..=20).contains(&genuine), "{at}");
    assert_eq!(at["tar"].as_f64().unwrap(), genuine as f64 / 20.0);
    assert!(
        at["threshold_note"].as_str().unwrap().contains("LFW"),
        "{at}"
    );
    // A threshold given on the command line is the one reported: at 2.0 everything matches.
    let (_, loose, _) = facegate(
        &home,
        &[
            "--threshold",
            "2.0",
            "eval",
            "pairs",
            "--json",
            "--pairs",
            pairs.to_str().unwrap(),
            "--root",
            root.to_str().unwrap(),
        ],
    );
    let loose: serde_json::Value = serde_json::from_str(&loose).unwrap();
    let at = &loose["at_decision_threshold"];
    assert_eq!(
        (at["threshold"].as_f64(), at["far"].as_f64()),
        (Some(2.0), Some(1.0)),
        "{at}"
    );
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

#[test]
fn calibration_on_every_pair_of_a_folder_of_people() {
    let dir = tempfile::tempdir().unwrap();
    let home = private_home(dir.path());
    let (_, root) = write_pairs(dir.path());
    let (code, stdout, stderr) = facegate(
        &home,
        &[
            "calibrate",
            "--json",
            "--all-pairs",
            root.to_str().unwrap(),
            "--target-far",
            "0.01",
            "--target-fpir",
            "0.05",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let cal: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    // Every pair of the photos: n(n-1)/2 of them, split into same-person and different-people.
    let photos: usize = std::fs::read_dir(&root)
        .unwrap()
        .map(|p| std::fs::read_dir(p.unwrap().path()).unwrap().count())
        .sum();
    let (genuine, impostor) = (
        cal["genuine_pairs"].as_u64().unwrap() as usize,
        cal["impostor_pairs"].as_u64().unwrap() as usize,
    );
    assert_eq!(genuine + impostor, photos * (photos - 1) / 2);
    assert!(genuine > 0 && impostor > genuine);
    let far = cal["measured_far"].as_f64().unwrap();
    assert!(far <= 0.0101, "{far}");
    assert_eq!(cal["target_fpir"], 0.05);
    // Operating points: thresholds grow with the FAR; those the data cannot resolve say so.
    let points = cal["operating_points"].as_array().unwrap();
    let thresholds: Vec<f64> = points
        .iter()
        .map(|p| p["threshold"].as_f64().unwrap())
        .collect();
    assert!(
        thresholds.windows(2).all(|w| w[0] >= w[1]),
        "{thresholds:?}"
    );
    let unresolved = points
        .iter()
        .find(|p| p["far"].as_f64().unwrap() < 1.0 / impostor as f64)
        .unwrap();
    assert_eq!(unresolved["measured"], false);

    // The stored target FPIR is what identify keeps to.
    let madonna = root.join("madonna");
    let mut photos: Vec<PathBuf> = std::fs::read_dir(&madonna)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    photos.sort();
    let (code, _, stderr) = facegate(&home, &["enroll", "madonna", photos[0].to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let (_, stdout, _) = facegate(&home, &["identify", "--json", photos[1].to_str().unwrap()]);
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["target_fpir"], 0.05);
    assert_eq!(doc["threshold"]["source"], "calibrated");
}

#[test]
fn pairs_without_a_fold_column_get_folds_and_bad_lines_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let home = private_home(dir.path());
    let (pairs, root) = write_pairs(dir.path());
    let text = std::fs::read_to_string(&pairs).unwrap();
    let no_folds: Vec<String> = text
        .lines()
        .map(|l| l.rsplit_once('\t').unwrap().0.to_string())
        .collect();
    let plain = dir.path().join("plain.tsv");
    std::fs::write(&plain, no_folds.join("\n")).unwrap();
    let (code, stdout, stderr) = facegate(
        &home,
        &[
            "eval",
            "pairs",
            "--json",
            "--pairs",
            plain.to_str().unwrap(),
            "--root",
            root.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(
        doc["folds_note"]
            .as_str()
            .unwrap()
            .contains("folds assigned"),
        "{doc}"
    );
    assert_eq!(doc["folds"].as_array().unwrap().len(), 10);
    assert!(stderr.contains("no fold column"));

    // A path that does not exist: refused before any work, naming the pair.
    let mut broken = no_folds.clone();
    broken.push("nobody/x.jpg\tmadonna/y.jpg\t0".to_string());
    std::fs::write(&plain, broken.join("\n")).unwrap();
    let (code, _, stderr) = facegate(
        &home,
        &[
            "eval",
            "pairs",
            "--pairs",
            plain.to_str().unwrap(),
            "--root",
            root.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("nobody/x.jpg"), "{stderr}");
}
