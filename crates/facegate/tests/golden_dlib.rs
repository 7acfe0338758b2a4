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

mod shape_and_chips {
    use super::common;
    use facegate_embed::dlib::chip::{chip_details, extract_chip};
    use facegate_embed::dlib::landmarks::ShapePredictor;
    use facegate_image::{RgbImage, DEFAULT_MAX_PIXELS};
    use facegate_models::{dlib_dat, pins, SilentObserver};

    fn predictor() -> ShapePredictor {
        let path = common::store()
            .file(&pins::DLIB_SHAPE_PREDICTOR_5, &SilentObserver)
            .unwrap();
        ShapePredictor::new(dlib_dat::read_shape_predictor(&path).unwrap())
    }

    fn golden() -> serde_json::Value {
        let path = common::fixtures().join("golden/dlib/dlib_shape5.json");
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    fn rect(v: &serde_json::Value) -> [i64; 4] {
        let r: Vec<i64> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_i64().unwrap())
            .collect();
        [r[0], r[1], r[2], r[3]]
    }

    fn points(v: &serde_json::Value) -> Vec<[f32; 2]> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|p| [p[0].as_f64().unwrap() as f32, p[1].as_f64().unwrap() as f32])
            .collect()
    }

    /// On PNG inputs (decoded identically everywhere) landmarks, chip geometry and chip pixels
    /// are exactly dlib's, including the image-pyramid path for large faces.
    #[test]
    fn landmarks_and_chips_match_dlib_exactly_on_pngs() {
        let dir = common::fixtures().join("golden/dlib");
        let sp = predictor();
        for case in golden()["pngs"].as_array().unwrap() {
            let base = facegate_image::load(
                &dir.join(case["input"].as_str().unwrap()),
                DEFAULT_MAX_PIXELS,
            )
            .unwrap()
            .rgb;
            let k = case["upscale"].as_u64().unwrap() as u32;
            let image = RgbImage::from_fn(base.width() * k, base.height() * k, |x, y| {
                *base.get_pixel(x / k, y / k)
            });
            let ours = sp.predict(&image, rect(&case["detector_rect"]));
            assert_eq!(ours.to_vec(), points(&case["landmarks"]), "{case}");
            let details = chip_details(&ours, 150, 0.25);
            let expected: Vec<f64> = case["chip_details"]["rect"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            for (a, b) in details.rect.iter().zip(&expected) {
                assert!(
                    (a - b).abs() < 1e-9,
                    "rect {:?} vs {expected:?}",
                    details.rect
                );
            }
            assert!(
                (details.angle - case["chip_details"]["angle"].as_f64().unwrap()).abs() < 1e-12
            );
            let chip = extract_chip(&image, &details);
            let want = facegate_image::load(
                &dir.join(case["chip"].as_str().unwrap()),
                DEFAULT_MAX_PIXELS,
            )
            .unwrap()
            .rgb;
            let differing = chip
                .pixels()
                .zip(want.pixels())
                .filter(|(a, b)| a != b)
                .count();
            assert_eq!(differing, 0, "{}: {differing} pixels differ", case["chip"]);
        }
    }

    /// On JPEG photos the decoders (PIL's libjpeg-turbo vs the image crate) may differ by a few
    /// levels, which can move a landmark by a pixel.
    #[test]
    fn landmarks_match_dlib_on_photos_within_a_pixel() {
        let root = common::store().celebrity_dataset(&SilentObserver).unwrap();
        let sp = predictor();
        let mut exact = 0;
        let cases = golden()["photos"].as_array().unwrap().clone();
        for case in &cases {
            let image = facegate_image::load(
                &root.join(case["path"].as_str().unwrap()),
                DEFAULT_MAX_PIXELS,
            )
            .unwrap()
            .rgb;
            let ours = sp.predict(&image, rect(&case["detector_rect"]));
            let theirs = points(&case["landmarks"]);
            let worst = ours
                .iter()
                .zip(&theirs)
                .map(|(a, b)| (a[0] - b[0]).abs().max((a[1] - b[1]).abs()))
                .fold(0.0, f32::max);
            assert!(worst <= 1.0, "{}: off by {worst} px", case["path"]);
            exact += usize::from(worst == 0.0);
        }
        println!("{exact}/{} photos with identical landmarks", cases.len());
    }
}
