//! Loading many templates at once (`COPY`), for benchmarks and migrations.

use super::*;

impl PostgresGallery {
    /// Enrolls many people in one transaction (bulk imports, benchmarks): all or nothing, the
    /// rows streamed with `COPY`. Photos a person already has are skipped. Returns templates
    /// added. With `defer_index`, the vector index is dropped (searches scan exactly until
    /// [`PostgresGallery::build_vector_index`] builds it once, which is much faster than
    /// growing it row by row during a big import).
    pub fn enroll_batch(
        &self,
        model_id: &str,
        batch: &[(String, Vec<NewTemplate>)],
        defer_index: bool,
    ) -> Result<usize, GalleryError> {
        use std::io::Write as _;
        let mut dimension = None;
        for (name, templates) in batch {
            require_normalized(name)?;
            for t in templates {
                check_finite(&t.embedding)?;
                let expected = *dimension.get_or_insert(t.embedding.len());
                if t.embedding.len() != expected {
                    return Err(GalleryError::DimensionMismatch {
                        dimension: t.embedding.len(),
                        expected,
                    });
                }
            }
        }
        let Some(dimension) = dimension else {
            return Ok(0);
        };
        self.with(|c| {
            let e = self.error();
            let mut tx = c.transaction().map_err(&e)?;
            // A bulk load (and an index build) may take longer than one request should.
            tx.batch_execute("SET LOCAL statement_timeout = 0")
                .map_err(&e)?;
            self.lock_and_bind(&mut tx, model_id, Some(dimension))?;
            let sealing = self.sealing_for_write(&mut tx)?;
            if defer_index {
                tx.batch_execute(&format!("DROP INDEX IF EXISTS {}", index_name(dimension)))
                    .map_err(&e)?;
            }
            tx.batch_execute(
                "CREATE TEMP TABLE facegate_load (
                     person text, embedding vector, image_sha256 text,
                     box_x1 real, box_y1 real, box_x2 real, box_y2 real,
                     detector_score real, source text, sealed bytea) ON COMMIT DROP",
            )
            .map_err(&e)?;
            let mut writer = tx.copy_in("COPY facegate_load FROM STDIN").map_err(&e)?;
            let io = |err: std::io::Error| GalleryError::PostgresSetup {
                target: self.options.display.clone(),
                message: format!("streaming rows to the server failed: {err}"),
            };
            let mut line = String::new();
            for (name, templates) in batch {
                for t in templates {
                    line.clear();
                    // `\N` is COPY's NULL; bytea goes as `\x` and hex, its backslash escaped.
                    let (vector, sealed) = match &sealing {
                        Sealing::Plain => {
                            let values: Vec<String> =
                                t.embedding.iter().map(f32::to_string).collect();
                            (format!("[{}]", values.join(",")), "\\N".to_string())
                        }
                        Sealing::Sealed(_) => {
                            let blob = sealing.encode(&t.embedding, name, model_id)?;
                            let hex: String = blob.iter().map(|b| format!("{b:02x}")).collect();
                            ("\\N".to_string(), format!("\\\\x{hex}"))
                        }
                    };
                    line.push_str(&format!(
                        "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                        copy_text(name),
                        vector,
                        copy_text(&t.image_sha256),
                        t.bbox[0],
                        t.bbox[1],
                        t.bbox[2],
                        t.bbox[3],
                        t.detector_score,
                        copy_text(&t.source),
                        sealed
                    ));
                    writer.write_all(line.as_bytes()).map_err(io)?;
                }
            }
            writer.finish().map_err(&e)?;
            tx.execute(
                "INSERT INTO facegate_people (name) SELECT DISTINCT person FROM facegate_load
                 ON CONFLICT (name) DO NOTHING",
                &[],
            )
            .map_err(&e)?;
            let added = tx
                .execute(
                    "INSERT INTO facegate_templates (person, model_id, embedding, image_sha256,
                         box_x1, box_y1, box_x2, box_y2, detector_score, source, sealed)
                     SELECT person, $1, embedding, image_sha256, box_x1, box_y1, box_x2, box_y2,
                            detector_score, source, sealed FROM facegate_load
                     ON CONFLICT (person, image_sha256) DO NOTHING",
                    &[&model_id],
                )
                .map_err(&e)?;
            self.bump_revision(&mut tx)?;
            tx.commit().map_err(&e)?;
            Ok(added as usize)
        })
    }
}

/// A value in `COPY ... FROM STDIN` text format.
pub(super) fn copy_text(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for ch in value.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            other => out.push(other),
        }
    }
    out
}
