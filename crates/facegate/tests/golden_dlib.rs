//! Golden parity: our ONNX port of dlib's face-recognition ResNet against dlib 20.0.1 on the
//! same 150x150 chips. Fixtures: tools/golden/gen_dlib.py.

mod common;

use facegate_embed::DlibResnet;
use facegate_image::DEFAULT_MAX_PIXELS;
use facegate_models::SilentObserver;

#[test]
fn dlib_descriptors_match_dlib() {
    let dir = common::fixtures().join("golden/dlib");
    let golden: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("dlib_resnet.json")).unwrap()).unwrap();
    let net = DlibResnet::load(&common::store(), &common::runtime(), 0, &SilentObserver)
        .expect("load dlib ResNet");
    let cases = golden["cases"].as_array().unwrap();
    assert!(cases.len() >= 5);
    for case in cases {
        let name = case["input"].as_str().unwrap();
        let chip = facegate_image::load(&dir.join(name), DEFAULT_MAX_PIXELS).unwrap();
        let ours = net.descriptors(&[chip.rgb]).unwrap().remove(0);
        let expected: Vec<f32> = case["descriptor"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let cos = common::cosine(&ours, &expected);
        let max_abs = ours
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        println!("{name}: cosine {cos:.8}, max |diff| {max_abs:.2e}");
        assert!(cos >= 0.9999, "{name}: cosine {cos}");
        assert!(max_abs < 1e-3, "{name}: max |diff| {max_abs}");
    }
}
