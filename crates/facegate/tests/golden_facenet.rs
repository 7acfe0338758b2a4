//! Golden parity: our ONNX FaceNet against Keras (TensorFlow 2.15) on the same input tensors.
//! Fixtures: tools/golden/gen_facenet.py.

mod common;

use facegate_embed::facenet::{prewhiten, FaceNet};
use facegate_image::DEFAULT_MAX_PIXELS;
use facegate_models::SilentObserver;

#[test]
fn facenet_embeddings_match_keras() {
    let dir = common::fixtures().join("golden/facenet");
    let golden: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("facenet_keras.json")).unwrap()).unwrap();
    let runtime = common::runtime();
    let facenet =
        FaceNet::load(&common::store(), &runtime, 0, &SilentObserver).expect("load FaceNet");
    let cases = golden["cases"].as_array().unwrap();
    assert!(cases.len() >= 6);
    for case in cases {
        let name = case["input"].as_str().unwrap();
        let image = facegate_image::load(&dir.join(name), DEFAULT_MAX_PIXELS).unwrap();
        let ours = facenet.run_raw(1, prewhiten(&image.rgb)).unwrap().remove(0);
        let expected: Vec<f32> = case["embedding_raw"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let cos = common::cosine(&ours, &expected);
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        let max_abs = ours
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        println!("{name}: cosine {cos:.8}, max |diff| {max_abs:.2e}");
        assert!(cos >= 0.9999, "{name}: cosine {cos} < 0.9999");
        assert!(
            (norm(&ours) / norm(&expected) - 1.0).abs() < 1e-3,
            "{name}: norms differ"
        );
    }
}
