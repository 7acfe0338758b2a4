//! Golden parity: the TF.js graph models (MobileFaceNet, antispoof, liveness, iris), converted to
//! ONNX by facegate-tfjs, against TensorFlow running the same graphs on the same inputs.
//! Fixtures: tools/golden/gen_tfjs.py.

mod common;

use facegate_embed::mobilefacenet::{self, MobileFaceNet};
use facegate_image::{RgbImage, DEFAULT_MAX_PIXELS};
use facegate_liveness::LivenessModels;
use facegate_models::tfjs::TfjsGraph;
use facegate_models::{pins, SilentObserver};
use facegate_tfjs::Repair;

fn golden() -> serde_json::Value {
    let path = common::fixtures().join("golden/tfjs/tfjs_models.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn input(name: &str) -> RgbImage {
    let path = common::fixtures().join("golden/tfjs").join(name);
    facegate_image::load(&path, DEFAULT_MAX_PIXELS).unwrap().rgb
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// The pinned MobileFaceNet `model.json` and weights, fetched.
fn mobilefacenet_files(
    store: &facegate_models::ModelStore,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let fetch = |file| store.file(file, &SilentObserver).unwrap();
    (
        fetch(&pins::MOBILEFACENET_TFJS.topology),
        fetch(&pins::MOBILEFACENET_TFJS.weights),
    )
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn mobilefacenet_matches_tensorflow_as_shipped_and_repaired() {
    let golden = golden();
    let entry = &golden["models"]["mobilefacenet"];
    assert_eq!(entry["repairs"]["unfuse-relu-feeding-prelu"], 16);
    assert_eq!(entry["repairs"]["negate-prelu-slopes"], 33);
    let store = common::store();
    let runtime = common::runtime();

    // As shipped: the converter alone, no repairs.
    let (topology, weights) = mobilefacenet_files(&store);
    let graph = TfjsGraph::read(&topology, Some(std::slice::from_ref(&weights))).unwrap();
    let shipped = runtime
        .network(
            "mobilefacenet as shipped",
            &facegate_tfjs::convert(&graph, "shipped").unwrap(),
            1,
        )
        .unwrap();
    // Repaired: the production loader.
    let repaired = MobileFaceNet::load(&store, &runtime, 1, &SilentObserver).unwrap();

    for case in entry["cases"].as_array().unwrap() {
        let name = case["input"].as_str().unwrap();
        let x = mobilefacenet::preprocess(&input(name));
        let ours_shipped = shipped.run(&[1, 112, 112, 3], x.clone()).unwrap()[0]
            .data
            .clone();
        let ours_repaired = repaired.run_raw(1, x).unwrap().remove(0);
        let d_shipped = max_abs_diff(&ours_shipped, &floats(&case["as_shipped"]));
        let d_repaired = max_abs_diff(&ours_repaired, &floats(&case["repaired"]));
        println!("{name}: as shipped max |diff| {d_shipped:.2e}, repaired {d_repaired:.2e}");
        assert!(d_shipped < 1e-4 && d_repaired < 1e-4, "{name}");
        // The repairs matter: the two graphs disagree.
        assert!(max_abs_diff(&ours_shipped, &ours_repaired) > 0.05, "{name}");
    }
}

#[test]
fn repairs_refuse_a_graph_that_is_not_the_pinned_one() {
    let store = common::store();
    let (topology, weights) = mobilefacenet_files(&store);
    let dir = tempfile::tempdir().unwrap();
    let edited = dir.path().join("mobilefacenet.json");
    let mut text = std::fs::read_to_string(&topology).unwrap();
    text.push(' ');
    std::fs::write(&edited, text).unwrap();
    let err = mobilefacenet::build_repaired(&edited, &weights)
        .unwrap_err()
        .to_string();
    assert!(err.contains("pinned to"), "{err}");
    // Applying a repair twice finds nothing the second time for the unfusing, and would
    // flip the slopes back: the counts are what guards against a changed graph.
    let mut graph = TfjsGraph::read(&topology, Some(&[weights])).unwrap();
    assert_eq!(Repair::UnfuseReluFeedingPrelu.apply(&mut graph), 16);
    assert_eq!(Repair::UnfuseReluFeedingPrelu.apply(&mut graph), 0);
}

#[test]
fn antispoof_and_liveness_match_tensorflow() {
    let golden = golden();
    let models =
        LivenessModels::load(&common::store(), &common::runtime(), &SilentObserver).unwrap();
    for case in golden["models"]["antispoof"]["cases"].as_array().unwrap() {
        let name = case["input"].as_str().unwrap();
        let ours = models.antispoof_real(&[input(name)]).unwrap();
        let d = max_abs_diff(&ours, &floats(&case["output"]));
        println!("antispoof {name}: {ours:?}, max |diff| {d:.2e}");
        assert!(d < 1e-5, "{name}");
    }
    for case in golden["models"]["liveness"]["cases"].as_array().unwrap() {
        let name = case["input"].as_str().unwrap();
        let ours = models.liveness_softmax(&[input(name)]).unwrap();
        let d = max_abs_diff(&ours, &floats(&case["output"]));
        println!("liveness {name}: {ours:?}, max |diff| {d:.2e}");
        assert!(d < 1e-5, "{name}");
    }
}

#[test]
fn iris_landmarks_match_tensorflow() {
    let golden = golden();
    let eyes = facegate_liveness::eyes::EyeLandmarks::load(
        &common::store(),
        &common::runtime(),
        &SilentObserver,
    )
    .unwrap();
    let cases = golden["models"]["iris"]["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 5);
    for case in cases {
        let name = case["input"].as_str().unwrap();
        let ours = eyes.raw(&[input(name)]).unwrap().remove(0);
        let theirs = floats(&case["output"]);
        assert_eq!(ours.len(), facegate_liveness::eyes::OUTPUTS);
        // Outputs are pixel coordinates in the 64x64 crop (up to ~64): relative agreement.
        let d = max_abs_diff(&ours, &theirs);
        println!("iris {name}: max |diff| {d:.2e} px");
        assert!(d < 1e-3, "{name}");
    }
}
