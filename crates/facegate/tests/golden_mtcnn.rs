//! Golden parity: our MTCNN against facenet-pytorch 2.6.0 (PyTorch 2.2) — each network on the
//! same input tensor, and the whole cascade on real photos. Also: the faster ways of running
//! the cascade (split levels, largest-first search) give the same faces as the plain one.
//! Fixtures: tools/golden/gen_mtcnn.py.

mod common;

use facegate_detect::mtcnn::Search;
use facegate_detect::{Detector, Face, Mtcnn, MtcnnConfig};
use facegate_image::{RgbImage, DEFAULT_MAX_PIXELS};
use facegate_models::SilentObserver;

fn golden() -> serde_json::Value {
    let path = common::fixtures().join("golden/mtcnn/facenet_pytorch_mtcnn.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn load_mtcnn() -> Mtcnn {
    Mtcnn::load(
        &common::store(),
        &common::runtime(),
        MtcnnConfig::default(),
        &SilentObserver,
    )
    .expect("load MTCNN")
}

#[test]
fn each_network_matches_pytorch_on_the_same_input() {
    let golden = golden();
    let mtcnn = load_mtcnn();
    let dir = common::fixtures().join("golden/mtcnn");
    for (index, key) in ["pnet", "rnet", "onet"].into_iter().enumerate() {
        let spec = &golden["networks"][key];
        let image = facegate_image::load(
            &dir.join(spec["input"].as_str().unwrap()),
            DEFAULT_MAX_PIXELS,
        )
        .unwrap();
        let (w, h) = (image.rgb.width() as usize, image.rgb.height() as usize);
        let mut input = vec![0.0f32; 3 * w * h];
        for (i, p) in image.rgb.pixels().enumerate() {
            for c in 0..3 {
                input[c * w * h + i] = (f32::from(p.0[c]) - 127.5) * 0.0078125;
            }
        }
        let mut outputs = mtcnn.networks()[index].run(&[1, 3, h, w], input).unwrap();
        if key == "pnet" {
            // Our P-Net leaves the softmax over its two logit channels to the caller.
            let logits = &mut outputs[1];
            let plane = logits.shape[2] * logits.shape[3];
            let face = facegate_detect::mtcnn::pnet::face_probability(&logits.data, plane);
            logits.data = face
                .iter()
                .map(|p| 1.0 - p)
                .chain(face.iter().copied())
                .collect();
        }
        let expected = spec["outputs"].as_array().unwrap();
        assert_eq!(outputs.len(), expected.len(), "{key}: output count");
        for (ours, theirs) in outputs.iter().zip(expected) {
            let shape: Vec<usize> = theirs["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect();
            assert_eq!(ours.shape, shape, "{key} {}: shape", theirs["name"]);
            let values = floats(&theirs["values"]);
            let max_abs = ours
                .data
                .iter()
                .zip(&values)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            println!("{key} {}: max |diff| {max_abs:.2e}", theirs["name"]);
            assert!(
                max_abs < 1e-4,
                "{key} {}: max |diff| {max_abs}",
                theirs["name"]
            );
        }
    }
}

#[test]
fn cascade_finds_the_same_faces_as_facenet_pytorch() {
    let golden = golden();
    let mtcnn = load_mtcnn();
    let package_root = common::store()
        .celebrity_dataset(&SilentObserver)
        .unwrap()
        .join("../../..")
        .canonicalize()
        .unwrap();
    let mut compared = 0;
    for entry in golden["images"].as_array().unwrap() {
        let path = package_root.join(entry["path"].as_str().unwrap());
        let image = facegate_image::load(&path, DEFAULT_MAX_PIXELS).unwrap();
        let ours = mtcnn.detect(&image.rgb).unwrap();
        let theirs = entry["faces"].as_array().unwrap();
        assert_eq!(
            ours.len(),
            theirs.len(),
            "{}: face count (ours {:?})",
            path.display(),
            ours.iter().map(|f| (f.bbox, f.score)).collect::<Vec<_>>()
        );
        for face in theirs {
            let bbox: [f32; 4] = floats(&face["box"]).try_into().unwrap();
            let best = ours
                .iter()
                .max_by(|a, b| common::iou(a.bbox, bbox).total_cmp(&common::iou(b.bbox, bbox)))
                .unwrap();
            let iou = common::iou(best.bbox, bbox);
            assert!(
                iou >= 0.9,
                "{}: best IoU {iou}: theirs {bbox:?}, ours {:?}",
                path.display(),
                ours.iter().map(|f| (f.bbox, f.score)).collect::<Vec<_>>()
            );
            let width = bbox[2] - bbox[0];
            for (k, point) in face["landmarks"].as_array().unwrap().iter().enumerate() {
                let p = floats(point);
                let d = ((best.landmarks[k][0] - p[0]).powi(2)
                    + (best.landmarks[k][1] - p[1]).powi(2))
                .sqrt();
                assert!(
                    d <= 0.03 * width,
                    "{}: landmark {k} off by {d:.2} px (box width {width:.0})",
                    path.display()
                );
            }
            assert!((best.score - face["prob"].as_f64().unwrap() as f32).abs() < 0.02);
            compared += 1;
        }
    }
    assert!(compared >= 27, "compared {compared} faces");
}

#[test]
fn large_levels_split_in_two_give_exactly_the_same_candidates_and_faces() {
    let split = load_mtcnn();
    let whole = Mtcnn::load(
        &common::store(),
        &common::runtime(),
        MtcnnConfig {
            split_large_levels: false,
            ..MtcnnConfig::default()
        },
        &SilentObserver,
    )
    .expect("load MTCNN");
    let mut faces = 0;
    for (_, path) in common::celebrity_photos().iter().take(40) {
        let image = facegate_image::load(path, DEFAULT_MAX_PIXELS).unwrap();
        let a = split.proposals_of(&image.rgb).unwrap();
        let b = whole.proposals_of(&image.rgb).unwrap();
        assert_eq!(a, b, "{}: P-Net candidates", path.display());
        let a = split.detect(&image.rgb).unwrap();
        let b = whole.detect(&image.rgb).unwrap();
        assert_eq!(a, b, "{}", path.display());
        faces += a.len();
    }
    assert!(faces >= 40, "{faces} faces");
}

/// The face a caller keeping the largest one takes (as the engine picks it).
fn largest(faces: &[Face], image: &RgbImage) -> Option<Face> {
    let (w, h) = image.dimensions();
    facegate_detect::largest_visible(faces, w, h, 20.0).cloned()
}

#[test]
fn largest_first_search_finds_the_same_largest_face_and_usually_stops_early() {
    let mtcnn = load_mtcnn();
    let photos = common::celebrity_photos();
    let mut stopped_early = 0;
    for (_, path) in &photos {
        let image = facegate_image::load(path, DEFAULT_MAX_PIXELS).unwrap().rgb;
        let every = mtcnn.detect(&image).unwrap();
        let (faces, search) = mtcnn.detect_largest_first_traced(&image, 20).unwrap();
        assert_eq!(
            largest(&faces, &image),
            largest(&every, &image),
            "{}: the largest face",
            path.display()
        );
        match search {
            Search::StoppedEarly => stopped_early += 1,
            Search::WholePyramid => assert_eq!(faces, every, "{}", path.display()),
        }
    }
    // Most are portraits, a few of them too small to skip any level (78 of 118 stop early).
    assert!(
        stopped_early * 2 >= photos.len(),
        "stopped early on {stopped_early} of {} photos",
        photos.len()
    );
}

#[test]
fn largest_first_search_skips_small_faces_only_beside_a_large_one() {
    let mtcnn = load_mtcnn();
    // The photo with the largest face, at twice its size (a larger photo has more skippable
    // levels), and a copy shrunk until its face is about 24 px wide.
    let (portrait, big) = common::celebrity_photos()
        .iter()
        .filter_map(|(_, path)| {
            let image = facegate_image::load(path, DEFAULT_MAX_PIXELS).unwrap().rgb;
            let face = largest(&mtcnn.detect(&image).unwrap(), &image)?;
            Some((image, face))
        })
        .max_by(|a, b| a.1.width().total_cmp(&b.1.width()))
        .unwrap();
    let (w, h) = portrait.dimensions();
    let portrait = facegate_image::resize(&portrait, 2 * w, 2 * h);
    let shrink = 24.0 / big.width();
    let small = facegate_image::resize(
        &portrait,
        (w as f32 * shrink) as u32,
        (h as f32 * shrink) as u32,
    );
    let mut both = portrait.clone();
    image::imageops::replace(&mut both, &small, 0, 0);
    let every = mtcnn.detect(&both).unwrap();
    let small_faces = every
        .iter()
        .filter(|f| f.width() < big.width() / 2.0)
        .count();
    assert!(small_faces >= 1, "the small face: {every:?}");
    let (faces, search) = mtcnn.detect_largest_first_traced(&both, 20).unwrap();
    assert_eq!(search, Search::StoppedEarly);
    assert_eq!(largest(&faces, &both), largest(&every, &both));
    assert!(faces.len() < every.len(), "{faces:?} vs {every:?}");

    // Only the small face, on a grey canvas as large: every level runs, and the faces are
    // exactly the whole cascade's.
    let (w, h) = both.dimensions();
    let mut canvas = RgbImage::from_pixel(w, h, image::Rgb([128, 128, 128]));
    image::imageops::replace(&mut canvas, &small, i64::from(w / 3), i64::from(h / 3));
    let every = mtcnn.detect(&canvas).unwrap();
    assert!(!every.is_empty(), "the small face");
    let (faces, search) = mtcnn.detect_largest_first_traced(&canvas, 20).unwrap();
    assert_eq!(search, Search::WholePyramid);
    assert_eq!(faces, every);
}
