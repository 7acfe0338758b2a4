//! Any bytes as a photo through the detection entry point: decode, MTCNN, alignment, quality
//! and embedding, as `facegate detect`/`enroll` run them. A clear error or faces, never a panic.
//! Needs the models in the test cache (`cargo test` fills it) or FACEGATE_FUZZ_HOME.
#![no_main]

use facegate::quality::{QualityLevel, QualityReport};
use libfuzzer_sys::fuzz_target;

#[path = "support.rs"]
mod support;

fuzz_target!(|data: &[u8]| {
    let engine = support::engine();
    let Ok(image) = engine.decode_image(data, "fuzz") else {
        return;
    };
    let Ok(faces) = engine.detect(&image.rgb) else {
        return;
    };
    for face in faces.iter().take(4) {
        let report = QualityReport::measure(&image.rgb, face, faces.len());
        let _ = engine.judge_quality(&image, report, QualityLevel::Standard);
    }
    if let Ok(embeddings) = engine.embed_at(&image.rgb, &faces[..faces.len().min(4)]) {
        for e in embeddings {
            assert!(e.iter().all(|v| v.is_finite()), "a non-finite embedding");
        }
    }
});
