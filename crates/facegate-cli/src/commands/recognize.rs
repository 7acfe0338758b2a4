//! The decisions and the looks at one photo: `verify`, `identify`, `compare`, `detect`, `embed`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use facegate::gallery::GalleryError;
use facegate::image::{draw_box, draw_point, Rgb};
use facegate::service::{Actor, FaceService, Verification};
use facegate::{ops, Error, FacePolicy};
use serde_json::json;

use super::{liveness_line, quality_line, threshold_text};
use crate::context::{exit, Context};

pub(crate) fn verify(ctx: &Context, name: &str, image: &Path, all_faces: bool) -> Result<ExitCode> {
    let engine = ctx.engine()?;
    let image = engine.load_image(image)?;
    let gallery = ctx.gallery_for_read()?.ok_or_else(|| {
        Error::from(GalleryError::UnknownPerson {
            name: name.to_string(),
        })
    })?;
    let service = FaceService::new(&engine, gallery.as_ref());
    let outcome = match service.verify(&Actor::local_user(), name, &image, all_faces)? {
        Verification::Compared(outcome) => outcome,
        // Only for actors who may not see who is enrolled; the local user sees everyone.
        Verification::NoSuchPerson { person, .. } => {
            return Err(Error::from(GalleryError::UnknownPerson { name: person }).into())
        }
    };
    ctx.emit(&outcome, || {
        let verdict = match (outcome.is_match, outcome.accepted) {
            (true, true) => "MATCH",
            (true, false) => "MATCH, BUT NOT LIVE",
            (false, _) => "NO MATCH",
        };
        let relation = if outcome.is_match { "<=" } else { ">" };
        println!(
            "{verdict}: {} vs {name:?}: distance {:.3} {relation} threshold {:.3}",
            image.source_name, outcome.distance, outcome.threshold.value
        );
        println!(
            "  euclidean {:.3}, cosine {:.3}; closest of {} template(s); model {}",
            outcome.distances.euclidean,
            outcome.distances.cosine,
            outcome.templates_compared,
            outcome.model
        );
        println!("  threshold: {}", threshold_text(&outcome.threshold));
        println!("  {}", quality_line(&outcome.quality));
        if let Some(l) = &outcome.liveness {
            println!("  {}", liveness_line(l));
        }
        if all_faces && outcome.faces.len() > 1 {
            for f in &outcome.faces {
                println!(
                    "  face at {:?}: distance {:.3} {}",
                    f.face.bbox.map(|v| v.round()),
                    f.distance,
                    if f.is_match { "match" } else { "no match" }
                );
            }
        }
        if let Some(note) = &outcome.note {
            println!("  note: {note}");
        }
    })?;
    // Exit 0 only when accepted: a match that fails a requested liveness check is refused.
    Ok(exit(outcome.accepted))
}

pub(crate) fn identify(
    ctx: &Context,
    image: &Path,
    top: usize,
    all_faces: bool,
) -> Result<ExitCode> {
    let engine = ctx.engine()?;
    let image = engine.load_image(image)?;
    let gallery = ctx
        .gallery_for_read()?
        .ok_or_else(|| Error::from(GalleryError::Empty))?;
    let service = FaceService::new(&engine, gallery.as_ref());
    let outcome = service.identify(&Actor::local_user(), &image, top, all_faces)?;
    ctx.emit(&outcome, || {
        for (i, face) in outcome.faces.iter().enumerate() {
            if outcome.faces.len() > 1 {
                println!("face {} at {:?}:", i + 1, face.face.bbox.map(|v| v.round()));
            }
            match &face.identity {
                Some(who) => println!("identified: {who}"),
                None => println!(
                    "unknown: nobody in the gallery is within the threshold ({:.3})",
                    outcome.threshold.value
                ),
            }
            println!("  {}", quality_line(&face.quality));
            if let Some(l) = &face.liveness {
                println!("  {}", liveness_line(l));
            }
            println!("  rank  distance  person");
            for (rank, c) in face.candidates.iter().enumerate() {
                let mark = if c.is_match { "  <= threshold" } else { "" };
                println!("  {:>4}  {:>8.3}  {}{mark}", rank + 1, c.distance, c.person);
            }
        }
        println!(
            "  searched {} people ({} templates); threshold {}",
            outcome.people_searched,
            outcome.templates_searched,
            threshold_text(&outcome.threshold)
        );
        if let Some(note) = &outcome.note {
            println!("  note: {note}");
        }
    })?;
    Ok(exit(outcome.identity.is_some()))
}

pub(crate) fn compare(ctx: &Context, a: &Path, b: &Path) -> Result<ExitCode> {
    let engine = ctx.engine()?;
    let image_a = engine.load_image(a)?;
    let image_b = engine.load_image(b)?;
    let outcome = ops::compare(&engine, &image_a, &image_b)?;
    ctx.emit(&outcome, || {
        let verdict = if outcome.is_match {
            "SAME PERSON"
        } else {
            "DIFFERENT PEOPLE"
        };
        println!(
            "{verdict}: distance {:.3} (threshold {:.3})",
            outcome.distance, outcome.threshold.value
        );
        println!(
            "  euclidean {:.3}, cosine {:.3}; model {}",
            outcome.distances.euclidean, outcome.distances.cosine, outcome.model
        );
        println!("  threshold: {}", threshold_text(&outcome.threshold));
        if let Some(l) = &outcome.liveness {
            println!("  first image: {}", liveness_line(l));
        }
        if let Some(note) = &outcome.note {
            println!("  note: {note}");
        }
    })?;
    // Exit 0 only when accepted: a match that fails a requested liveness check is refused.
    Ok(exit(outcome.accepted))
}

pub(crate) fn detect(ctx: &Context, path: &Path, draw: Option<&Path>) -> Result<ExitCode> {
    let engine = ctx.engine()?;
    let image = engine.load_image(path)?;
    let detection = ops::detect(&engine, &image)?;
    let faces = &detection.faces;
    if let Some(out) = draw {
        let mut canvas = image.rgb.clone();
        let thickness = (canvas.width().max(canvas.height()) / 300).max(2);
        for face in faces {
            draw_box(&mut canvas, face.bbox, Rgb([0, 220, 0]), thickness);
            for [x, y] in face.landmarks {
                draw_point(&mut canvas, x, y, thickness as i32, Rgb([255, 40, 40]));
            }
        }
        canvas
            .save(out)
            .with_context(|| format!("could not write {}", out.display()))?;
    }
    let quality = &detection.quality;
    let doc = json!({
        "image": image.source_name,
        "width": image.rgb.width(),
        "height": image.rgb.height(),
        "detector": engine.detector_id(),
        "faces": faces,
        "quality": quality,
        "drawn": draw,
    });
    ctx.emit(&doc, || {
        if faces.is_empty() {
            println!(
                "no face found in {} (faces down to {} px were searched for)",
                image.source_name, detection.min_face_size
            );
        }
        for (i, f) in faces.iter().enumerate() {
            println!(
                "face {}: box [{:.0}, {:.0}, {:.0}, {:.0}] ({:.0}x{:.0} px), score {:.3}",
                i + 1,
                f.bbox[0],
                f.bbox[1],
                f.bbox[2],
                f.bbox[3],
                f.width(),
                f.height(),
                f.score
            );
            let names = ["left eye", "right eye", "nose", "mouth left", "mouth right"];
            let points: Vec<String> = f
                .landmarks
                .iter()
                .zip(names)
                .map(|([x, y], n)| format!("{n} ({x:.0}, {y:.0})"))
                .collect();
            println!("  {}", points.join(", "));
            println!("  {}", quality_line(&quality[i]));
        }
        if let Some(out) = draw {
            println!("drawn: {}", out.display());
        }
    })?;
    Ok(exit(!faces.is_empty()))
}

pub(crate) fn embed(ctx: &Context, path: &Path, all_faces: bool) -> Result<ExitCode> {
    let engine = ctx.engine()?;
    let image = engine.load_image(path)?;
    let policy = if all_faces {
        FacePolicy::All
    } else {
        FacePolicy::Largest
    };
    let (faces, found) = engine.embed_faces(&image, policy)?;
    let doc = json!({
        "image": image.source_name,
        "model": engine.model_id(),
        "dimension": faces.first().map_or(0, |f| f.embedding.len()),
        "faces_found": found,
        "faces": faces.iter().map(|f| json!({"face": f.face, "embedding": f.embedding})).collect::<Vec<_>>(),
    });
    ctx.emit(&doc, || {
        for f in &faces {
            let values: Vec<String> = f.embedding.iter().map(|v| format!("{v:.6}")).collect();
            println!("{}", values.join(" "));
        }
    })?;
    Ok(ExitCode::SUCCESS)
}
