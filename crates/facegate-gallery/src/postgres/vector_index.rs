//! 1:N inside the database: exact scans, the HNSW index per dimension, and the plans that
//! show which one a search uses.

use super::*;

/// Below this many templates, `search=auto` scans exactly instead of using the HNSW index.
pub(super) const AUTO_EXACT_BELOW: usize = 20_000;

impl PostgresGallery {
    pub(super) fn search_exact(
        &self,
        client: &mut Client,
        probe: &Vector,
        people: usize,
    ) -> Result<Vec<Nearest>, GalleryError> {
        // Each person's closest template, then the closest people. The function form of the
        // distance is never served by the index, so this is always a full, exact scan.
        let rows = client
            .query(
                "SELECT person, id, embedding FROM (
                     SELECT DISTINCT ON (person) person, id, embedding,
                            cosine_distance(embedding, $1::vector) AS distance
                     FROM facegate_templates
                     ORDER BY person, distance, id) best
                 ORDER BY distance, person COLLATE \"C\"
                 LIMIT $2",
                &[probe, &(people as i64)],
            )
            .map_err(self.error())?;
        rows.iter().map(nearest_from_row).collect()
    }

    /// Through the HNSW index: the closest templates, folded to people. `None` when the index
    /// ran out before `people` distinct people were found (the caller then scans exactly).
    pub(super) fn search_index(
        &self,
        client: &mut Client,
        probe: &Vector,
        dimension: usize,
        people: usize,
    ) -> Result<Option<Vec<Nearest>>, GalleryError> {
        let wanted = (people * 4).max(10).min(self.options.ef_search as usize);
        let rows = client
            .query(
                &format!(
                    "SELECT person, id, embedding FROM facegate_templates
                     WHERE {}
                     ORDER BY embedding::vector({dimension}) <=> $1::vector({dimension})
                     LIMIT $2",
                    indexed_rows(dimension)
                ),
                &[probe, &(wanted as i64)],
            )
            .map_err(self.error())?;
        let mut found: Vec<Nearest> = Vec::with_capacity(people);
        for row in &rows {
            let hit = nearest_from_row(row)?;
            if !found.iter().any(|f| f.person == hit.person) {
                found.push(hit);
            }
            if found.len() == people {
                return Ok(Some(found));
            }
        }
        // Fewer rows than asked for means the whole gallery was seen.
        Ok((rows.len() < wanted).then_some(found))
    }

    /// Builds the HNSW index if it is missing (after [`PostgresGallery::enroll_batch`] with
    /// `defer_index`). Returns whether it had to be built.
    pub fn build_vector_index(&self) -> Result<bool, GalleryError> {
        self.with(|c| {
            let e = self.error();
            let mut tx = c.transaction().map_err(&e)?;
            tx.execute(
                "SELECT value FROM facegate_meta WHERE key = 'model_id' FOR UPDATE",
                &[],
            )
            .map_err(&e)?;
            let bound = self.bound_model(&mut tx)?;
            let exists: bool = tx
                .query_one(
                    "SELECT to_regclass($1) IS NOT NULL",
                    &[&index_name(bound.dimension)],
                )
                .map_err(&e)?
                .get(0);
            if exists || bound.model.is_none() {
                return Ok(false);
            }
            // The build is fast only while the whole graph fits in maintenance_work_mem (past
            // that pgvector inserts on disk, far slower: docs/PERFORMANCE.md). It
            // is a cap, not an allocation.
            let rows: i64 = tx
                .query_one("SELECT count(*) FROM facegate_templates", &[])
                .map_err(&e)?
                .get(0);
            let bytes = rows as f64 * (4.0 * bound.dimension as f64 + 1024.0) * 1.25;
            let megabytes = (bytes / 1_048_576.0).clamp(64.0, 16_384.0) as u64;
            tx.batch_execute(&format!(
                "SET LOCAL statement_timeout = 0;
                 SET LOCAL maintenance_work_mem = '{megabytes}MB';
                 {}",
                create_vector_index(bound.dimension)
            ))
            .map_err(&e)?;
            tx.commit().map_err(&e)?;
            Ok(true)
        })
    }

    /// Whether a 1:N search of this dimension would use the vector index (read from the query
    /// plan; PostgreSQL scans instead while the table is small).
    pub fn search_uses_vector_index(&self, dimension: usize) -> Result<bool, GalleryError> {
        Ok(self
            .explain_search(dimension)?
            .contains(&index_name(dimension)))
    }

    /// The query plan of an index search, for tests and `EXPLAIN`-minded operators.
    pub fn explain_search(&self, dimension: usize) -> Result<String, GalleryError> {
        self.with(|c| {
            let probe = Vector::from(vec![0.0f32; dimension]);
            let rows = c
                .query(
                    &format!(
                        "EXPLAIN SELECT person, id, embedding FROM facegate_templates
                         WHERE {}
                         ORDER BY embedding::vector({dimension}) <=> $1::vector({dimension})
                         LIMIT 10",
                        indexed_rows(dimension)
                    ),
                    &[&probe],
                )
                .map_err(self.error())?;
            Ok(rows
                .iter()
                .map(|r| r.get::<_, String>(0))
                .collect::<Vec<_>>()
                .join("\n"))
        })
    }
}

/// The rows the vector index holds: those of the gallery's dimension. A partial index,
/// because building it evaluates the cast on every row still visible to some transaction —
/// including the just-deleted rows of a previous model, which the cast would refuse.
pub(super) fn indexed_rows(dimension: usize) -> String {
    format!("vector_dims(embedding) = {dimension}")
}

/// One vector index per dimension a gallery was ever bound to (see `lock_and_bind`).
pub(super) fn index_name(dimension: usize) -> String {
    format!("facegate_templates_embedding_{dimension}")
}

/// The HNSW index for `dimension`-long embeddings, unless it exists (an expression index,
/// because the column holds vectors of any length; searches order by the same expression so
/// the planner uses it).
pub(super) fn create_vector_index(dimension: usize) -> String {
    format!(
        "CREATE INDEX IF NOT EXISTS {} ON facegate_templates
             USING hnsw ((embedding::vector({dimension})) vector_cosine_ops)
             WHERE {};",
        index_name(dimension),
        indexed_rows(dimension)
    )
}
