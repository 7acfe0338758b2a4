//! The scale-out gallery: PostgreSQL with the pgvector extension (and Citus, see
//! `docs/POSTGRES.md`).
//!
//! Many facegate processes can share one database. 1:N search runs inside the database
//! (`ORDER BY embedding <=> probe LIMIT k`, with an HNSW index for large galleries), so no
//! process holds the whole gallery in memory. Every query keeps to what Citus can push down to
//! its workers: tables are keyed by the person's name, so a person's templates live together
//! on one shard, and nothing depends on session settings the workers would not see.

mod audit;
mod bulk;
mod keys;
mod migrations;
mod options;
mod vector_index;

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgvector::Vector;
use postgres::error::SqlState;
use postgres::{Client, Transaction};
use r2d2_postgres::PostgresConnectionManager;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::api_keys::{KeyRecord, KeyStore};
use crate::audit_chain::{self, AuditKey, IdAllocation};
use crate::seal::Sealing;
use crate::{
    check_finite, lookup_name, normalize_name, require_normalized, validate_name, AuditEvent,
    EnrollOptions, EnrollReport, Gallery, GalleryCounts, GalleryError, Nearest, NearestPeople,
    NewAuditEvent, NewTemplate, Person, RenameReport, Template, TemplateKey,
};

use self::{audit::*, options::tls_connector, vector_index::*};
pub use migrations::SCHEMA_VERSION;
pub(crate) use options::redact;
pub use options::{PostgresOptions, SearchMode};

type Pool = r2d2::Pool<PostgresConnectionManager<MakeRustlsConnect>>;

/// How long a request waits for a pooled connection (the server may be down or saturated).
const CONNECTION_WAIT: Duration = Duration::from_secs(3);

/// Retries of an operation that failed for a transient reason (a dropped connection, a
/// restarting server, a serialization failure).
const RETRIES: u32 = 4;

/// How long compaction waits for transactions older than itself (which may still see deleted
/// rows, so `VACUUM FULL` would keep them).
const OLD_TRANSACTIONS_WAIT: Duration = Duration::from_secs(60);

pub struct PostgresGallery {
    options: PostgresOptions,
    /// Dropped on a thread of its own (see `Drop`).
    pool: std::mem::ManuallyDrop<Pool>,
    /// Template and people counts at a revision: `search=auto` and reports need them, and
    /// counting a million rows per query would cost more than the search.
    counted: Mutex<Option<(u64, GalleryCounts)>>,
    /// The key for encrypted templates, when one was given.
    key: Option<Arc<TemplateKey>>,
    /// The key that seals audit entries; without one they are appended unsealed.
    audit_key: Option<Arc<AuditKey>>,
}

impl PostgresGallery {
    /// Connects, creating the pgvector extension and facegate's tables if needed.
    pub fn open(url: &str) -> Result<PostgresGallery, GalleryError> {
        PostgresGallery::open_with(PostgresOptions::parse(url)?)
    }

    pub fn open_with(options: PostgresOptions) -> Result<PostgresGallery, GalleryError> {
        let timeout_ms = options.statement_timeout.as_millis();
        let mut config = options.config.clone();
        // Session settings travel with the connection; Citus forwards statement_timeout.
        let mut settings = config.get_options().unwrap_or("").to_string();
        settings.push_str(&format!(" -c statement_timeout={timeout_ms}"));
        settings.push_str(&format!(" -c hnsw.ef_search={}", options.ef_search));
        config.options(settings.trim());
        let manager = PostgresConnectionManager::new(config, tls_connector(&options)?);
        let pool = r2d2::Pool::builder()
            .max_size(options.pool_size)
            .min_idle(Some(1))
            .connection_timeout(CONNECTION_WAIT)
            .build(manager)
            .map_err(|e| GalleryError::Unreachable {
                target: options.display.clone(),
                reason: e.to_string(),
            })?;
        let gallery = PostgresGallery {
            options,
            pool: std::mem::ManuallyDrop::new(pool),
            counted: Mutex::new(None),
            key: None,
            audit_key: None,
        };
        gallery.with(|client| gallery.migrate(client))?;
        Ok(gallery)
    }

    pub fn options(&self) -> &PostgresOptions {
        &self.options
    }

    /// The same gallery, reading and writing templates with `key` (see [`crate::seal`]).
    /// Encrypted templates cannot be searched inside the database: identify then loads them
    /// into the process, as for SQLite.
    pub fn with_key(mut self, key: Option<Arc<TemplateKey>>) -> PostgresGallery {
        self.key = key;
        self
    }

    /// The same gallery, sealing the audit entries it appends with `key`.
    pub fn with_audit_key(mut self, key: Option<Arc<AuditKey>>) -> PostgresGallery {
        self.audit_key = key;
        self
    }

    fn sealing(&self, bound: &Bound) -> Result<Sealing<'_>, GalleryError> {
        Sealing::resolve(bound.key_id.as_deref(), self.key.as_deref(), || {
            Ok(bound.model.is_some())
        })
    }

    /// Inside a writing transaction (after [`Self::lock_and_bind`] locked the meta row): the
    /// sealing to write with; an empty, unencrypted gallery given a key records it.
    fn sealing_for_write(&self, tx: &mut Transaction<'_>) -> Result<Sealing<'_>, GalleryError> {
        let bound = self.bound_model(tx)?;
        let sealing = self.sealing(&bound)?;
        tx.execute(
            "UPDATE facegate_meta SET value = $1 WHERE key = 'key_id'",
            &[&sealing.key_id().unwrap_or("")],
        )
        .map_err(self.error())?;
        Ok(sealing)
    }

    /// Runs `work` on a pooled connection (retried on transient errors), for other parts of
    /// facegate that keep their tables in the same database (API keys).
    pub fn run<T>(
        &self,
        mut work: impl FnMut(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, GalleryError> {
        self.with(|c| work(c).map_err(self.error()))
    }

    fn error(&self) -> impl Fn(postgres::Error) -> GalleryError + '_ {
        move |source| GalleryError::Postgres {
            target: self.options.display.clone(),
            source,
        }
    }

    /// Runs `work` on a pooled connection, again on a fresh one when it failed for a
    /// transient reason. `work` must be safe to repeat: each attempt is its own transaction.
    fn with<T>(
        &self,
        mut work: impl FnMut(&mut Client) -> Result<T, GalleryError>,
    ) -> Result<T, GalleryError> {
        let mut attempt = 0;
        loop {
            // The pool already waited for a connection: no second wait on top of it.
            let mut client = self.pool.get().map_err(|e| GalleryError::Unreachable {
                target: self.options.display.clone(),
                reason: e.to_string(),
            })?;
            let result = work(&mut client);
            match result {
                Err(err) if err.is_transient() && attempt < RETRIES => {
                    attempt += 1;
                    tracing::debug!("PostgreSQL gallery: retrying after a transient error: {err}");
                    std::thread::sleep(Duration::from_millis(100 << attempt));
                }
                other => return other,
            }
        }
    }

    /// The gallery's model (`None` while it has no templates) and template dimension.
    fn bound_model(
        &self,
        client: &mut impl postgres::GenericClient,
    ) -> Result<Bound, GalleryError> {
        let row = client
            .query_one(
                "SELECT (SELECT value FROM facegate_meta WHERE key = 'model_id'),
                        (SELECT value FROM facegate_meta WHERE key = 'dimension'),
                        (SELECT value FROM facegate_meta WHERE key = 'revision'),
                        EXISTS (SELECT 1 FROM facegate_templates),
                        (SELECT value FROM facegate_meta WHERE key = 'key_id')",
                &[],
            )
            .map_err(self.error())?;
        let model: String = row.get(0);
        let dimension: String = row.get(1);
        let revision: String = row.get(2);
        let populated: bool = row.get(3);
        let key_id: Option<String> = row.get(4);
        Ok(Bound {
            model: (populated && !model.is_empty()).then_some(model),
            dimension: dimension.parse().unwrap_or(0),
            revision: revision.parse().unwrap_or(0),
            key_id: key_id.filter(|id| !id.is_empty()),
        })
    }

    fn check_model(
        &self,
        client: &mut impl postgres::GenericClient,
        requested: &str,
    ) -> Result<Bound, GalleryError> {
        let bound = self.bound_model(client)?;
        match &bound.model {
            Some(model) if model != requested => Err(GalleryError::ModelMismatch {
                gallery_model: model.clone(),
                requested: requested.to_string(),
            }),
            _ => Ok(bound),
        }
    }

    /// Inside a writing transaction: locks the gallery's model row (writers queue here, as
    /// they do on SQLite's write lock) and binds an empty gallery to `model_id`, building its
    /// vector index for `dimension`-long embeddings.
    fn lock_and_bind(
        &self,
        tx: &mut Transaction<'_>,
        model_id: &str,
        dimension: Option<usize>,
    ) -> Result<(), GalleryError> {
        let e = self.error();
        tx.execute(
            "SELECT value FROM facegate_meta WHERE key = 'model_id' FOR UPDATE",
            &[],
        )
        .map_err(&e)?;
        let bound = self.check_model(tx, model_id)?;
        let Some(dimension) = dimension else {
            return Ok(());
        };
        if bound.model.is_some() {
            if dimension != bound.dimension {
                return Err(GalleryError::DimensionMismatch {
                    dimension,
                    expected: bound.dimension,
                });
            }
            return Ok(());
        }
        // Empty gallery: (re)bind, with a vector index for the dimension.
        tx.execute(
            "UPDATE facegate_meta SET value = $1 WHERE key = 'model_id'",
            &[&model_id],
        )
        .map_err(&e)?;
        tx.execute(
            "UPDATE facegate_meta SET value = $1 WHERE key = 'dimension'",
            &[&dimension.to_string()],
        )
        .map_err(&e)?;
        // Old indexes stay (dropping one would wait for every reader of the table); an index
        // of another dimension holds none of the new rows.
        tx.batch_execute(&create_vector_index(dimension))
            .map_err(&e)?;
        Ok(())
    }

    fn bump_revision(&self, tx: &mut Transaction<'_>) -> Result<(), GalleryError> {
        tx.execute(
            "UPDATE facegate_meta SET value = (value::bigint + 1)::text WHERE key = 'revision'",
            &[],
        )
        .map_err(self.error())?;
        Ok(())
    }

    fn insert_template(
        &self,
        tx: &mut Transaction<'_>,
        person: &str,
        model_id: &str,
        t: &NewTemplate,
        created: Option<&str>,
        sealing: &Sealing<'_>,
    ) -> Result<Option<i64>, GalleryError> {
        check_finite(&t.embedding)?;
        let (vector, sealed) = match sealing {
            Sealing::Plain => (Some(Vector::from(t.embedding.clone())), None),
            Sealing::Sealed(_) => (None, Some(sealing.encode(&t.embedding, person, model_id)?)),
        };
        let rows = tx
            .query(
                "INSERT INTO facegate_templates (person, model_id, embedding, image_sha256,
                     box_x1, box_y1, box_x2, box_y2, detector_score, source, created, quality, sealed)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, coalesce($11::text::timestamptz, now()), $12, $13)
                 ON CONFLICT (person, image_sha256) DO NOTHING
                 RETURNING id",
                &[
                    &person,
                    &model_id,
                    &vector,
                    &t.image_sha256,
                    &t.bbox[0],
                    &t.bbox[1],
                    &t.bbox[2],
                    &t.bbox[3],
                    &t.detector_score,
                    &t.source,
                    &created,
                    &t.quality.as_ref().map(|q| q.to_string()),
                    &sealed,
                ],
            )
            .map_err(self.error())?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    fn find_person(
        &self,
        client: &mut impl postgres::GenericClient,
        name: &str,
    ) -> Result<Person, GalleryError> {
        let row = client
            .query_opt(
                &format!(
                    "SELECT p.name, {CREATED_P}, count(t.id) FROM facegate_people p
                     LEFT JOIN facegate_templates t ON t.person = p.name
                     WHERE p.name = $1 GROUP BY p.name, p.created"
                ),
                &[&name],
            )
            .map_err(self.error())?;
        row.map(|r| person_from_row(&r))
            .ok_or_else(|| GalleryError::UnknownPerson {
                name: name.to_string(),
            })
    }

    /// Templates of one person (or all), their embeddings decoded with `sealing` for
    /// `dimension`-long embeddings (left empty without one).
    fn query_templates(
        &self,
        client: &mut impl postgres::GenericClient,
        person: Option<&str>,
        sealing: Option<(&Sealing<'_>, usize)>,
    ) -> Result<Vec<Template>, GalleryError> {
        self.query_templates_where(client, person, None, sealing)
    }

    /// [`Self::query_templates`], optionally only the template with id `template`.
    fn query_templates_where(
        &self,
        client: &mut impl postgres::GenericClient,
        person: Option<&str>,
        template: Option<i64>,
        sealing: Option<(&Sealing<'_>, usize)>,
    ) -> Result<Vec<Template>, GalleryError> {
        let rows = client
            .query(
                &format!(
                    "SELECT id, person, model_id, embedding, image_sha256,
                            box_x1, box_y1, box_x2, box_y2, detector_score, source, {CREATED_T}, quality,
                            sealed
                     FROM facegate_templates t
                     WHERE ($1::text IS NULL OR person = $1) AND ($2::bigint IS NULL OR id = $2)
                     ORDER BY id"
                ),
                &[&person, &template],
            )
            .map_err(self.error())?;
        rows.iter()
            .map(|row| {
                let mut template = template_from_row(row);
                if let Some((sealing, dimension)) = sealing {
                    template.embedding = decode_row(sealing, row, 3, 13, dimension, &template)?;
                }
                Ok(template)
            })
            .collect()
    }

    /// People and template counts, recounted only after a write.
    fn counts_at(&self, client: &mut Client, revision: u64) -> Result<GalleryCounts, GalleryError> {
        if let Some((at, counts)) = *self.counted.lock().unwrap_or_else(|p| p.into_inner()) {
            if at == revision {
                return Ok(counts);
            }
        }
        let row = client
            .query_one(
                "SELECT (SELECT count(*) FROM facegate_people), (SELECT count(*) FROM facegate_templates)",
                &[],
            )
            .map_err(self.error())?;
        let counts = GalleryCounts {
            people: row.get::<_, i64>(0) as usize,
            templates: row.get::<_, i64>(1) as usize,
        };
        *self.counted.lock().unwrap_or_else(|p| p.into_inner()) = Some((revision, counts));
        Ok(counts)
    }
}

impl Drop for PostgresGallery {
    fn drop(&mut self) {
        // SAFETY: the pool is taken exactly once, here, and `self` is not used afterwards.
        let pool = unsafe { std::mem::ManuallyDrop::take(&mut self.pool) };
        // Closing a `postgres` connection blocks on its own small runtime, which panics on a
        // thread that drives an async runtime (a server's worker dropping its state).
        let closing = std::thread::spawn(move || drop(pool));
        let _ = closing.join();
    }
}

struct Bound {
    model: Option<String>,
    dimension: usize,
    revision: u64,
    /// The key the templates are encrypted with (none: unencrypted).
    key_id: Option<String>,
}

const CREATED_P: &str = "to_char(p.created AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')";

const CREATED_T: &str = "to_char(t.created AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')";

fn person_from_row(r: &postgres::Row) -> Person {
    Person {
        name: r.get(0),
        created: r.get(1),
        templates: r.get::<_, i64>(2) as usize,
    }
}

/// The embedding of a row: the `vector` column at `vector_at`, or the sealed bytes at
/// `sealed_at`, whichever `sealing` says the gallery uses.
fn decode_row(
    sealing: &Sealing<'_>,
    row: &postgres::Row,
    vector_at: usize,
    sealed_at: usize,
    dimension: usize,
    template: &Template,
) -> Result<Vec<f32>, GalleryError> {
    let tampered = || GalleryError::TemplateTampered {
        person: template.person.clone(),
        id: template.id,
    };
    match sealing {
        Sealing::Plain => row
            .get::<_, Option<Vector>>(vector_at)
            .map(|v| v.to_vec())
            .ok_or_else(tampered),
        Sealing::Sealed(_) => {
            let blob: Option<&[u8]> = row.get(sealed_at);
            let blob = blob.ok_or_else(tampered)?;
            sealing.decode(
                blob,
                dimension,
                &template.person,
                &template.model_id,
                template.id,
            )
        }
    }
}

/// A template's row without its embedding (see [`decode_row`]).
fn template_from_row(r: &postgres::Row) -> Template {
    Template {
        id: r.get(0),
        person: r.get(1),
        model_id: r.get(2),
        embedding: Vec::new(),
        image_sha256: r.get(4),
        bbox: [r.get(5), r.get(6), r.get(7), r.get(8)],
        detector_score: r.get(9),
        source: r.get(10),
        created: r.get(11),
        quality: r
            .get::<_, Option<String>>(12)
            .and_then(|text| serde_json::from_str(&text).ok()),
    }
}

/// A search hit; an error for a row without a vector (encrypted rows must not be here).
fn nearest_from_row(r: &postgres::Row) -> Result<Nearest, GalleryError> {
    let (person, template_id): (String, i64) = (r.get(0), r.get(1));
    match r.get::<_, Option<Vector>>(2) {
        Some(embedding) => Ok(Nearest {
            person,
            template_id,
            embedding: embedding.to_vec(),
        }),
        None => Err(GalleryError::TemplateTampered {
            person,
            id: template_id,
        }),
    }
}

/// Whether retrying on a fresh connection may succeed.
pub(crate) fn is_transient(err: &postgres::Error) -> bool {
    if err.is_closed() {
        return true;
    }
    match err.code() {
        Some(code) => {
            code.code().starts_with("08")
                || [
                    SqlState::ADMIN_SHUTDOWN,
                    SqlState::CRASH_SHUTDOWN,
                    SqlState::CANNOT_CONNECT_NOW,
                    SqlState::T_R_SERIALIZATION_FAILURE,
                    SqlState::T_R_DEADLOCK_DETECTED,
                ]
                .contains(code)
        }
        // No SQLSTATE: the connection itself failed (I/O, refused).
        None => err.as_db_error().is_none(),
    }
}

impl Gallery for PostgresGallery {
    fn compact(&self) -> Result<usize, GalleryError> {
        self.with(|c| {
            let e = self.error();
            // VACUUM FULL copies deleted rows that an older transaction may still see (anywhere
            // on the server): first let the transactions older than this call finish.
            let started = Instant::now();
            let older_open = |c: &mut Client| -> Result<usize, postgres::Error> {
                let row = c.query_one(
                    "SELECT count(*) FROM pg_stat_activity
                     WHERE pid <> pg_backend_pid() AND backend_xmin IS NOT NULL
                       AND xact_start < statement_timestamp() - $1::float8 * interval '1 second'",
                    &[&started.elapsed().as_secs_f64()],
                )?;
                Ok(row.get::<_, i64>(0) as usize)
            };
            let mut still_open = older_open(c).map_err(&e)?;
            while still_open > 0 && started.elapsed() < OLD_TRANSACTIONS_WAIT {
                std::thread::sleep(Duration::from_millis(200));
                still_open = older_open(c).map_err(&e)?;
            }
            if still_open > 0 {
                tracing::warn!("{still_open} older transaction(s) still open: rows they can see stay in the files until the next compaction");
            }
            // VACUUM refuses to run inside a transaction: one statement at a time. FULL writes
            // new files and drops the old ones (plain VACUUM leaves deleted bytes in place).
            c.batch_execute("SET statement_timeout = 0").map_err(&e)?;
            let result = c
                .batch_execute("VACUUM FULL facegate_templates")
                .and_then(|()| c.batch_execute("VACUUM FULL facegate_people"));
            c.batch_execute("RESET statement_timeout").map_err(&e)?;
            result.map_err(&e)?;
            // Flushes the new files; needs a privileged role, and is only a speed-up otherwise.
            if let Err(err) = c.batch_execute("CHECKPOINT") {
                tracing::debug!("PostgreSQL gallery: CHECKPOINT after VACUUM FULL refused: {err}");
            }
            Ok(still_open)
        })
    }

    fn key_id(&self) -> Result<Option<String>, GalleryError> {
        self.with(|c| Ok(self.bound_model(c)?.key_id))
    }

    fn rekey_with(
        &self,
        new_key: Option<&TemplateKey>,
        audit: Option<&dyn Fn(usize) -> NewAuditEvent>,
    ) -> Result<usize, GalleryError> {
        self.with(|c| {
            let e = self.error();
            let mut tx = c.transaction().map_err(&e)?;
            tx.batch_execute(
                "SET LOCAL statement_timeout = 0;
                 SELECT value FROM facegate_meta WHERE key = 'model_id' FOR UPDATE;",
            )
            .map_err(&e)?;
            let bound = self.bound_model(&mut tx)?;
            let old = self.sealing(&bound)?;
            let new = match new_key {
                Some(key) => Sealing::Sealed(key),
                None => Sealing::Plain,
            };
            let rows = tx
                .query(
                    &format!(
                        "SELECT id, person, model_id, embedding, image_sha256,
                                box_x1, box_y1, box_x2, box_y2, detector_score, source, {CREATED_T},
                                quality, sealed
                         FROM facegate_templates t ORDER BY id FOR UPDATE"
                    ),
                    &[],
                )
                .map_err(&e)?;
            for row in &rows {
                let template = template_from_row(row);
                let embedding = decode_row(&old, row, 3, 13, bound.dimension, &template)?;
                let (vector, sealed) = match &new {
                    Sealing::Plain => (Some(Vector::from(embedding)), None),
                    Sealing::Sealed(_) => (
                        None,
                        Some(new.encode(&embedding, &template.person, &template.model_id)?),
                    ),
                };
                tx.execute(
                    "UPDATE facegate_templates SET embedding = $1, sealed = $2
                     WHERE person = $3 AND id = $4",
                    &[&vector, &sealed, &template.person, &template.id],
                )
                .map_err(&e)?;
            }
            tx.execute(
                "UPDATE facegate_meta SET value = $1 WHERE key = 'key_id'",
                &[&new.key_id().unwrap_or("")],
            )
            .map_err(&e)?;
            if let Some(audit) = audit {
                insert_audit(&mut tx, self.audit_key.as_deref(), &audit(rows.len())).map_err(&e)?;
            }
            tx.commit().map_err(&e)?;
            Ok(rows.len())
        })
    }

    fn append_audit(&self, e: &NewAuditEvent) -> Result<(), GalleryError> {
        self.with(|c| {
            let mut tx = c.transaction().map_err(self.error())?;
            insert_audit(&mut tx, self.audit_key.as_deref(), e).map_err(self.error())?;
            tx.commit().map_err(self.error())
        })
    }

    fn audit_log(&self, after: Option<i64>, limit: usize) -> Result<Vec<AuditEvent>, GalleryError> {
        self.with(|c| {
            let rows = c
                .query(
                    &format!(
                        "SELECT {AUDIT_COLUMNS} FROM facegate_audit WHERE id > $1 ORDER BY id LIMIT $2"
                    ),
                    &[&after.unwrap_or(0), &(limit as i64)],
                )
                .map_err(self.error())?;
            Ok(rows.iter().map(audit_row).collect())
        })
    }

    fn audit_newest_sealed(&self) -> Result<Option<AuditEvent>, GalleryError> {
        self.with(|c| newest_sealed(c).map_err(self.error()))
    }

    fn audit_id_allocation(&self) -> Result<IdAllocation, GalleryError> {
        Ok(IdAllocation::MayHaveGaps)
    }

    fn model_id(&self) -> Result<Option<String>, GalleryError> {
        self.with(|c| Ok(self.bound_model(c)?.model))
    }

    fn enroll_with(
        &self,
        name: &str,
        model_id: &str,
        templates: &[NewTemplate],
        options: &EnrollOptions<'_>,
    ) -> Result<EnrollReport, GalleryError> {
        let name = normalize_name(name)?;
        let name = name.as_str();
        if let Some(first) = templates.first() {
            for t in templates {
                if t.embedding.len() != first.embedding.len() {
                    return Err(GalleryError::DimensionMismatch {
                        dimension: t.embedding.len(),
                        expected: first.embedding.len(),
                    });
                }
            }
        }
        self.with(|c| {
            let e = self.error();
            let mut tx = c.transaction().map_err(&e)?;
            self.lock_and_bind(&mut tx, model_id, templates.first().map(|t| t.embedding.len()))?;
            let sealing = self.sealing_for_write(&mut tx)?;
            let mut report = EnrollReport {
                created_person: tx
                    .execute(
                        "INSERT INTO facegate_people (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
                        &[&name],
                    )
                    .map_err(&e)?
                    == 1,
                ..EnrollReport::default()
            };
            if options.new_person && !report.created_person {
                return Err(GalleryError::PersonExists {
                    name: name.to_string(),
                });
            }
            for t in templates {
                match self.insert_template(&mut tx, name, model_id, t, None, &sealing)? {
                    Some(id) => report.added.push(id),
                    None => report.duplicates.push(t.image_sha256.clone()),
                }
            }
            if report.added.is_empty() {
                // Nothing stored: do not leave an empty person (or a rebound model) behind.
                tx.rollback().map_err(&e)?;
                report.created_person = false;
                if let Some(audit) = options.audit {
                    // Nothing changed; the attempt is still recorded.
                    let mut tx = c.transaction().map_err(&e)?;
                    insert_audit(&mut tx, self.audit_key.as_deref(), &audit(&report))
                        .map_err(&e)?;
                    tx.commit().map_err(&e)?;
                }
                return Ok(report);
            }
            self.bump_revision(&mut tx)?;
            if let Some(audit) = options.audit {
                insert_audit(&mut tx, self.audit_key.as_deref(), &audit(&report)).map_err(&e)?;
            }
            tx.commit().map_err(&e)?;
            Ok(report)
        })
    }

    fn templates_of(&self, name: &str, model_id: &str) -> Result<Vec<Template>, GalleryError> {
        let name = lookup_name(name);
        let name = name.as_ref();
        self.with(|c| {
            let bound = self.check_model(c, model_id)?;
            let sealing = self.sealing(&bound)?;
            self.find_person(c, name)?;
            self.query_templates(c, Some(name), Some((&sealing, bound.dimension)))
        })
    }

    fn all_templates(&self, model_id: &str) -> Result<Vec<Template>, GalleryError> {
        self.with(|c| {
            let bound = self.check_model(c, model_id)?;
            let sealing = self.sealing(&bound)?;
            self.query_templates(c, None, Some((&sealing, bound.dimension)))
        })
    }

    fn people(&self) -> Result<Vec<Person>, GalleryError> {
        let mut all = Vec::new();
        loop {
            let page = self.people_page(all.last().map(|p: &Person| p.name.as_str()), 10_000)?;
            let done = page.len() < 10_000;
            all.extend(page);
            if done {
                return Ok(all);
            }
        }
    }

    fn people_page(&self, after: Option<&str>, limit: usize) -> Result<Vec<Person>, GalleryError> {
        self.with(|c| {
            // Byte order (COLLATE "C"), as SQLite sorts: pages and listings come out the same
            // whatever the database's locale.
            let rows = c
                .query(
                    &format!(
                        "SELECT p.name, {CREATED_P}, count(t.id) FROM facegate_people p
                         LEFT JOIN facegate_templates t ON t.person = p.name
                         WHERE $1::text IS NULL OR p.name COLLATE \"C\" > $1::text COLLATE \"C\"
                         GROUP BY p.name, p.created
                         ORDER BY p.name COLLATE \"C\" LIMIT $2"
                    ),
                    &[&after, &(limit as i64)],
                )
                .map_err(self.error())?;
            Ok(rows.iter().map(person_from_row).collect())
        })
    }

    fn person(&self, name: &str) -> Result<Person, GalleryError> {
        let name = lookup_name(name);
        let name = name.as_ref();
        self.with(|c| self.find_person(c, name))
    }

    fn create_person(&self, name: &str) -> Result<Person, GalleryError> {
        let name = normalize_name(name)?;
        let name = name.as_str();
        self.with(|c| {
            let e = self.error();
            let mut tx = c.transaction().map_err(&e)?;
            let inserted = tx
                .execute(
                    "INSERT INTO facegate_people (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
                    &[&name],
                )
                .map_err(&e)?;
            if inserted == 0 {
                return Err(GalleryError::PersonExists {
                    name: name.to_string(),
                });
            }
            self.bump_revision(&mut tx)?;
            tx.commit().map_err(&e)?;
            self.find_person(c, name)
        })
    }

    fn templates_info(&self, name: &str) -> Result<Vec<Template>, GalleryError> {
        let name = lookup_name(name);
        let name = name.as_ref();
        self.with(|c| {
            self.find_person(c, name)?;
            self.query_templates(c, Some(name), None)
        })
    }

    fn template_info(&self, id: i64) -> Result<Option<Template>, GalleryError> {
        self.with(|c| Ok(self.query_templates_where(c, None, Some(id), None)?.pop()))
    }

    fn all_templates_info(&self) -> Result<Vec<Template>, GalleryError> {
        self.with(|c| self.query_templates(c, None, None))
    }

    fn rename_person_with(
        &self,
        from: &str,
        to: &str,
        audit: Option<&dyn Fn(&RenameReport) -> NewAuditEvent>,
    ) -> Result<RenameReport, GalleryError> {
        let from = lookup_name(from);
        let from = from.as_ref();
        let to = normalize_name(to)?;
        self.with(|c| {
            let e = self.error();
            let mut tx = c.transaction().map_err(&e)?;
            // Writers that bind the model or re-seal hold this row: renames wait for them.
            tx.batch_execute("SELECT value FROM facegate_meta WHERE key = 'model_id' FOR UPDATE")
                .map_err(&e)?;
            let found = tx
                .query_opt(
                    "SELECT 1 FROM facegate_people WHERE name = $1 FOR UPDATE",
                    &[&from],
                )
                .map_err(&e)?;
            if found.is_none() {
                return Err(GalleryError::UnknownPerson {
                    name: from.to_string(),
                });
            }
            let mut report = RenameReport {
                name: to.clone(),
                ..RenameReport::default()
            };
            if from == to {
                return Ok(report);
            }
            let inserted = tx
                .execute(
                    "INSERT INTO facegate_people (name, created)
                     SELECT $2, created FROM facegate_people WHERE name = $1
                     ON CONFLICT (name) DO NOTHING",
                    &[&from, &to],
                )
                .map_err(&e)?;
            report.merged = inserted == 0;
            let bound = self.bound_model(&mut tx)?;
            let sealing = self.sealing(&bound)?;
            let rows = tx
                .query(
                    &format!(
                        "SELECT id, person, model_id, embedding, image_sha256,
                                box_x1, box_y1, box_x2, box_y2, detector_score, source, {CREATED_T},
                                quality, sealed
                         FROM facegate_templates t WHERE person = $1 ORDER BY id FOR UPDATE"
                    ),
                    &[&from],
                )
                .map_err(&e)?;
            for row in &rows {
                let template = template_from_row(row);
                if report.merged {
                    let duplicate: bool = tx
                        .query_one(
                            "SELECT EXISTS(SELECT 1 FROM facegate_templates
                             WHERE person = $1 AND image_sha256 = $2)",
                            &[&to, &template.image_sha256],
                        )
                        .map_err(&e)?
                        .get(0);
                    if duplicate {
                        tx.execute(
                            "DELETE FROM facegate_templates WHERE person = $1 AND id = $2",
                            &[&from, &template.id],
                        )
                        .map_err(&e)?;
                        report.duplicates_dropped += 1;
                        continue;
                    }
                }
                let sealed = match &sealing {
                    Sealing::Plain => None,
                    Sealing::Sealed(_) => {
                        let embedding =
                            decode_row(&sealing, row, 3, 13, bound.dimension, &template)?;
                        Some(sealing.encode(&embedding, &to, &template.model_id)?)
                    }
                };
                tx.execute(
                    "UPDATE facegate_templates SET person = $1, sealed = COALESCE($2, sealed)
                     WHERE person = $3 AND id = $4",
                    &[&to, &sealed, &from, &template.id],
                )
                .map_err(&e)?;
                report.templates_moved += 1;
            }
            tx.execute("DELETE FROM facegate_people WHERE name = $1", &[&from])
                .map_err(&e)?;
            self.bump_revision(&mut tx)?;
            if let Some(audit) = audit {
                insert_audit(&mut tx, self.audit_key.as_deref(), &audit(&report)).map_err(&e)?;
            }
            tx.commit().map_err(&e)?;
            Ok(report)
        })
    }

    fn remove_template_with(
        &self,
        name: &str,
        id: i64,
        audit: Option<&NewAuditEvent>,
    ) -> Result<(), GalleryError> {
        let name = lookup_name(name);
        let name = name.as_ref();
        self.with(|c| {
            let e = self.error();
            let mut tx = c.transaction().map_err(&e)?;
            self.find_person(&mut tx, name)?;
            let removed = tx
                .execute(
                    "DELETE FROM facegate_templates WHERE person = $1 AND id = $2",
                    &[&name, &id],
                )
                .map_err(&e)?;
            if removed == 0 {
                return Err(GalleryError::UnknownTemplate {
                    name: name.to_string(),
                    id,
                });
            }
            self.bump_revision(&mut tx)?;
            if let Some(audit) = audit {
                insert_audit(&mut tx, self.audit_key.as_deref(), audit).map_err(&e)?;
            }
            tx.commit().map_err(&e)
        })
    }

    fn counts(&self) -> Result<GalleryCounts, GalleryError> {
        self.with(|c| {
            let revision = self.bound_model(c)?.revision;
            self.counts_at(c, revision)
        })
    }

    fn scan_embeddings(
        &self,
        model_id: &str,
        visit: &mut dyn FnMut(i64, &str, &[f32]),
    ) -> Result<(), GalleryError> {
        // Streamed row by row (a million templates never sit in memory twice). Not retried:
        // `visit` may already have seen rows.
        let mut client = self.pool.get().map_err(|e| GalleryError::Unreachable {
            target: self.options.display.clone(),
            reason: e.to_string(),
        })?;
        let bound = self.check_model(&mut *client, model_id)?;
        let sealing = self.sealing(&bound)?;
        let e = self.error();
        let params: [&str; 0] = [];
        let mut rows = client
            .query_raw(
                "SELECT id, person, embedding, sealed FROM facegate_templates ORDER BY id",
                params,
            )
            .map_err(&e)?;
        while let Some(row) =
            postgres::fallible_iterator::FallibleIterator::next(&mut rows).map_err(&e)?
        {
            let (id, person): (i64, &str) = (row.get(0), row.get(1));
            match &sealing {
                Sealing::Plain => match row.get::<_, Option<Vector>>(2) {
                    Some(embedding) => visit(id, person, embedding.as_slice()),
                    None => {
                        return Err(GalleryError::TemplateTampered {
                            person: person.to_string(),
                            id,
                        })
                    }
                },
                Sealing::Sealed(_) => {
                    let blob: Option<&[u8]> = row.get(3);
                    let embedding = sealing.decode(
                        blob.unwrap_or_default(),
                        bound.dimension,
                        person,
                        model_id,
                        id,
                    )?;
                    visit(id, person, &embedding);
                }
            }
        }
        Ok(())
    }

    fn revision(&self) -> Result<u64, GalleryError> {
        self.with(|c| Ok(self.bound_model(c)?.revision))
    }

    fn forget_with(
        &self,
        name: &str,
        audit: Option<&dyn Fn(usize) -> NewAuditEvent>,
    ) -> Result<usize, GalleryError> {
        let name = lookup_name(name);
        let name = name.as_ref();
        self.with(|c| {
            let e = self.error();
            let mut tx = c.transaction().map_err(&e)?;
            let removed = tx
                .execute("DELETE FROM facegate_templates WHERE person = $1", &[&name])
                .map_err(&e)?;
            let people = tx
                .execute("DELETE FROM facegate_people WHERE name = $1", &[&name])
                .map_err(&e)?;
            if people == 0 {
                return Err(GalleryError::UnknownPerson {
                    name: name.to_string(),
                });
            }
            self.bump_revision(&mut tx)?;
            if let Some(audit) = audit {
                insert_audit(&mut tx, self.audit_key.as_deref(), &audit(removed as usize))
                    .map_err(&e)?;
            }
            tx.commit().map_err(&e)?;
            Ok(removed as usize)
        })
    }

    fn import_person(
        &self,
        person: &Person,
        model_id: &str,
        templates: &[Template],
    ) -> Result<usize, GalleryError> {
        validate_name(&person.name)?;
        self.with(|c| {
            let e = self.error();
            let mut tx = c.transaction().map_err(&e)?;
            if !templates.is_empty() {
                self.lock_and_bind(
                    &mut tx,
                    model_id,
                    templates.first().map(|t| t.embedding.len()),
                )?;
            }
            let sealing = self.sealing_for_write(&mut tx)?;
            tx.execute(
                "INSERT INTO facegate_people (name, created) VALUES ($1, $2::text::timestamptz)
                 ON CONFLICT (name) DO NOTHING",
                &[&person.name, &person.created],
            )
            .map_err(&e)?;
            let mut added = 0;
            for t in templates {
                let new = t.to_new();
                if self
                    .insert_template(
                        &mut tx,
                        &person.name,
                        model_id,
                        &new,
                        Some(&t.created),
                        &sealing,
                    )?
                    .is_some()
                {
                    added += 1;
                }
            }
            self.bump_revision(&mut tx)?;
            tx.commit().map_err(&e)?;
            Ok(added)
        })
    }

    fn searches_in_place(&self) -> bool {
        // Encrypted embeddings are not in the vector column; they are searched in process.
        self.key.is_none()
    }

    fn nearest(
        &self,
        model_id: &str,
        probe: &[f32],
        people: usize,
    ) -> Result<Option<NearestPeople>, GalleryError> {
        check_finite(probe)?;
        if !self.searches_in_place() {
            return Ok(None);
        }
        let probe = Vector::from(probe.to_vec());
        self.with(|c| {
            let bound = self.check_model(c, model_id)?;
            // An encrypted gallery opened without its key: say so rather than find nothing.
            self.sealing(&bound)?;
            if bound.model.is_none() {
                return Err(GalleryError::Empty);
            }
            if probe.as_slice().len() != bound.dimension {
                return Err(GalleryError::DimensionMismatch {
                    dimension: probe.as_slice().len(),
                    expected: bound.dimension,
                });
            }
            let counts = self.counts_at(c, bound.revision)?;
            let use_index = match self.options.search {
                SearchMode::Exact => false,
                SearchMode::Index => true,
                SearchMode::Auto => counts.templates >= AUTO_EXACT_BELOW,
            };
            let hits = match use_index {
                true => match self.search_index(c, &probe, bound.dimension, people)? {
                    Some(hits) => hits,
                    None => self.search_exact(c, &probe, people)?,
                },
                false => self.search_exact(c, &probe, people)?,
            };
            Ok(Some(NearestPeople {
                hits,
                people_searched: counts.people,
                templates_searched: counts.templates,
                exact: !use_index,
            }))
        })
    }
}
