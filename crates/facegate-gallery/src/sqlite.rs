//! The embedded gallery: one SQLite file (WAL mode), `people` and `templates` tables.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::api_keys::{KeyRecord, KeyStore};
use crate::audit_chain::{self, AuditKey, IdAllocation};
use crate::seal::Sealing;
use crate::{
    check_finite, lookup_name, normalize_name, require_normalized, validate_name, AuditEvent,
    EnrollOptions, EnrollReport, Gallery, GalleryCounts, GalleryError, NewAuditEvent, NewTemplate,
    Person, RenameReport, Template, TemplateKey,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS people (
    id      INTEGER PRIMARY KEY,
    name    TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS templates (
    id             INTEGER PRIMARY KEY,
    person_id      INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    model_id       TEXT NOT NULL,
    dimension      INTEGER NOT NULL,
    embedding      BLOB NOT NULL,
    image_sha256   TEXT NOT NULL,
    box_x1 REAL NOT NULL, box_y1 REAL NOT NULL, box_x2 REAL NOT NULL, box_y2 REAL NOT NULL,
    detector_score REAL NOT NULL,
    source         TEXT NOT NULL,
    created        TEXT NOT NULL,
    quality        TEXT,
    UNIQUE (person_id, image_sha256)
);
CREATE INDEX IF NOT EXISTS templates_person ON templates(person_id);
";

/// Versioned changes after [`SCHEMA`], applied once each in order (`PRAGMA user_version` holds
/// the last applied).
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "
-- The audit log with never-reused ids and each entry's MAC (see `audit_chain`). A log made
-- before this version is copied over unsealed.
CREATE TABLE IF NOT EXISTS audit (
    id       INTEGER PRIMARY KEY,
    at       TEXT NOT NULL,
    actor    TEXT NOT NULL,
    action   TEXT NOT NULL,
    person   TEXT,
    decision TEXT,
    distance REAL,
    detail   TEXT
);
DROP TRIGGER IF EXISTS audit_no_update;
DROP TRIGGER IF EXISTS audit_no_delete;
ALTER TABLE audit RENAME TO audit_unsealed;
CREATE TABLE audit (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at       TEXT NOT NULL,
    actor    TEXT NOT NULL,
    action   TEXT NOT NULL,
    person   TEXT,
    decision TEXT,
    distance REAL,
    detail   TEXT,
    mac      TEXT,
    key_id   TEXT
);
INSERT INTO audit (id, at, actor, action, person, decision, distance, detail)
    SELECT id, at, actor, action, person, decision, distance, detail FROM audit_unsealed ORDER BY id;
DROP TABLE audit_unsealed;
",
    ),
    (
        2,
        "
-- API key records (see `api_keys`); older versions of the server created the same table.
CREATE TABLE IF NOT EXISTS api_keys (
    id      TEXT PRIMARY KEY,
    role    TEXT NOT NULL,
    label   TEXT NOT NULL,
    hash    TEXT NOT NULL,
    created TEXT NOT NULL,
    revoked TEXT
);
",
    ),
];

/// Created on every open: the log refuses edits through SQL. Whoever can write the file can
/// drop these; the MAC chain is what shows that they did.
const AUDIT_TRIGGERS: &str = "
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
";

const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%SZ', 'now')";

pub struct SqliteGallery {
    path: PathBuf,
    connection: Mutex<Connection>,
    /// The key for encrypted templates, when one was given.
    key: Option<Arc<TemplateKey>>,
    /// The key that seals audit entries; without one they are appended unsealed.
    audit_key: Option<Arc<AuditKey>>,
}

impl SqliteGallery {
    /// Opens (creating if needed) the gallery at `path`.
    pub fn open(path: &Path) -> Result<SqliteGallery, GalleryError> {
        // Templates, the audit log and API key hashes: readable by the owner only.
        crate::private::prepare_database(path).map_err(|source| GalleryError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let db_error = |source| sqlite_error(path, source);
        let mut connection = Connection::open(path).map_err(db_error)?;
        connection
            .busy_timeout(Duration::from_secs(10))
            .map_err(db_error)?;
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(db_error)?;
        connection
            .pragma_update(None, "foreign_keys", "ON")
            .map_err(db_error)?;
        connection
            .pragma_update(None, "synchronous", "FULL")
            .map_err(db_error)?;
        // Deleted templates are overwritten with zeros, not just unlinked: forgetting a person
        // must erase their embeddings from the file.
        connection
            .pragma_update(None, "secure_delete", "ON")
            .map_err(db_error)?;
        // The base schema in one transaction: a process killed while creating a gallery
        // leaves no half-made schema behind.
        let tx = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_error)?;
        tx.execute_batch(SCHEMA).map_err(db_error)?;
        add_quality_column(&tx).map_err(db_error)?;
        tx.commit().map_err(db_error)?;
        migrate(&mut connection).map_err(db_error)?;
        connection.execute_batch(AUDIT_TRIGGERS).map_err(db_error)?;
        Ok(SqliteGallery {
            path: path.to_path_buf(),
            connection: Mutex::new(connection),
            key: None,
            audit_key: None,
        })
    }

    /// The same gallery, sealing the audit entries it appends with `key`.
    pub fn with_audit_key(mut self, key: Option<Arc<AuditKey>>) -> SqliteGallery {
        self.audit_key = key;
        self
    }

    /// The same gallery, reading and writing templates with `key` (see [`crate::seal`]).
    pub fn with_key(mut self, key: Option<Arc<TemplateKey>>) -> SqliteGallery {
        self.key = key;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How templates are stored now: the key the gallery records against the one given.
    fn sealing(&self, connection: &Connection) -> Result<Sealing<'_>, GalleryError> {
        let stored = self.meta(connection, "key_id")?;
        Sealing::resolve(stored.as_deref(), self.key.as_deref(), || {
            connection
                .query_row("SELECT EXISTS(SELECT 1 FROM templates)", [], |r| r.get(0))
                .map_err(self.db_error())
        })
    }

    /// Inside a writing transaction: the sealing to write with; an empty, unencrypted gallery
    /// given a key records it (from now on it is encrypted).
    fn sealing_for_write(&self, tx: &Connection) -> Result<Sealing<'_>, GalleryError> {
        let sealing = self.sealing(tx)?;
        set_key_id(tx, sealing.key_id()).map_err(self.db_error())?;
        Ok(sealing)
    }

    fn db_error(&self) -> impl Fn(rusqlite::Error) -> GalleryError + '_ {
        move |source| sqlite_error(&self.path, source)
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, GalleryError>,
    ) -> Result<T, GalleryError> {
        let mut connection = self.connection.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut connection)
    }

    /// One value of the `meta` table (the model, the key id, the revision).
    fn meta(&self, connection: &Connection, key: &str) -> Result<Option<String>, GalleryError> {
        connection
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(self.db_error())
    }

    fn check_model(&self, connection: &Connection, requested: &str) -> Result<(), GalleryError> {
        match self.meta(connection, "model_id")? {
            Some(model) if model != requested => Err(GalleryError::ModelMismatch {
                gallery_model: model,
                requested: requested.to_string(),
            }),
            _ => Ok(()),
        }
    }

    fn find_person(&self, connection: &Connection, name: &str) -> Result<Person, GalleryError> {
        connection
            .query_row(
                "SELECT p.name, p.created, COUNT(t.id) FROM people p
                 LEFT JOIN templates t ON t.person_id = p.id
                 WHERE p.name = ?1 GROUP BY p.id",
                [name],
                person_from_row,
            )
            .optional()
            .map_err(self.db_error())?
            .ok_or_else(|| GalleryError::UnknownPerson {
                name: name.to_string(),
            })
    }

    /// An empty gallery may take templates of any model again.
    fn forget_model_if_empty(&self, connection: &Connection) -> Result<(), GalleryError> {
        let left: i64 = connection
            .query_row("SELECT COUNT(*) FROM templates", [], |r| r.get(0))
            .map_err(self.db_error())?;
        if left == 0 {
            connection
                .execute("DELETE FROM meta WHERE key = 'model_id'", [])
                .map_err(self.db_error())?;
        }
        Ok(())
    }

    /// Templates of one person (or all), their embeddings decoded with `sealing` (left empty
    /// without one).
    fn query_templates(
        &self,
        connection: &Connection,
        person: Option<&str>,
        sealing: Option<&Sealing<'_>>,
    ) -> Result<Vec<Template>, GalleryError> {
        self.query_templates_where(connection, person, None, sealing)
    }

    /// [`Self::query_templates`], optionally only the template with id `template`.
    fn query_templates_where(
        &self,
        connection: &Connection,
        person: Option<&str>,
        template: Option<i64>,
        sealing: Option<&Sealing<'_>>,
    ) -> Result<Vec<Template>, GalleryError> {
        let sql = "SELECT t.id, p.name, t.model_id, t.dimension, t.embedding, t.image_sha256,
                          t.box_x1, t.box_y1, t.box_x2, t.box_y2, t.detector_score, t.source, t.created, t.quality
                   FROM templates t JOIN people p ON p.id = t.person_id
                   WHERE (?1 IS NULL OR p.name = ?1) AND (?2 IS NULL OR t.id = ?2)
                   ORDER BY t.id";
        let mut statement = connection.prepare_cached(sql).map_err(self.db_error())?;
        let rows = statement
            .query_map(params![person, template], |r| {
                let dimension: i64 = r.get(3)?;
                let blob: Vec<u8> = r.get(4)?;
                Ok((
                    dimension,
                    blob,
                    Template {
                        id: r.get(0)?,
                        person: r.get(1)?,
                        model_id: r.get(2)?,
                        embedding: Vec::new(),
                        image_sha256: r.get(5)?,
                        bbox: [r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?],
                        detector_score: r.get(10)?,
                        source: r.get(11)?,
                        created: r.get(12)?,
                        quality: r
                            .get::<_, Option<String>>(13)?
                            .and_then(|text| serde_json::from_str(&text).ok()),
                    },
                ))
            })
            .map_err(self.db_error())?;
        let mut templates = Vec::new();
        for row in rows {
            let (dimension, blob, mut template) = row.map_err(self.db_error())?;
            if let Some(sealing) = sealing {
                template.embedding = sealing.decode(
                    &blob,
                    dimension.max(0) as usize,
                    &template.person,
                    &template.model_id,
                    template.id,
                )?;
            }
            templates.push(template);
        }
        Ok(templates)
    }
}

impl SqliteGallery {
    /// Enrolls many people in one transaction (bulk imports, benchmarks): all or nothing.
    pub fn enroll_batch(
        &self,
        model_id: &str,
        batch: &[(String, Vec<NewTemplate>)],
    ) -> Result<usize, GalleryError> {
        for (name, _) in batch {
            require_normalized(name)?;
        }
        self.with(|c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(self.db_error())?;
            self.check_model(&tx, model_id)?;
            let sealing = self.sealing_for_write(&tx)?;
            let mut added = 0;
            {
                let mut person = tx
                    .prepare_cached(&format!(
                        "INSERT INTO people (name, created) VALUES (?1, {NOW})
                         ON CONFLICT(name) DO UPDATE SET name = name RETURNING id"
                    ))
                    .map_err(self.db_error())?;
                for (name, templates) in batch {
                    let person_id: i64 = person
                        .query_row([name], |r| r.get(0))
                        .map_err(self.db_error())?;
                    for t in templates {
                        let person = (person_id, name.as_str());
                        added += insert_template(self, &tx, person, model_id, t, None, &sealing)?;
                    }
                }
            }
            if added > 0 {
                remember_model(&tx, model_id).map_err(self.db_error())?;
                bump_revision(&tx).map_err(self.db_error())?;
            }
            tx.commit().map_err(self.db_error())?;
            Ok(added)
        })
    }
}

impl Gallery for SqliteGallery {
    fn compact(&self) -> Result<usize, GalleryError> {
        // VACUUM waits for readers through the busy timeout; it never copies deleted rows.
        self.with(|c| {
            c.execute_batch("VACUUM; PRAGMA wal_checkpoint(TRUNCATE);")
                .map_err(self.db_error())?;
            Ok(0)
        })
    }

    fn key_id(&self) -> Result<Option<String>, GalleryError> {
        self.with(|c| self.meta(c, "key_id"))
    }

    fn rekey_with(
        &self,
        new_key: Option<&TemplateKey>,
        audit: Option<&dyn Fn(usize) -> NewAuditEvent>,
    ) -> Result<usize, GalleryError> {
        self.with(|c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(self.db_error())?;
            let old = self.sealing(&tx)?;
            let new = match new_key {
                Some(key) => Sealing::Sealed(key),
                None => Sealing::Plain,
            };
            let rows: Vec<(i64, String, String, i64, Vec<u8>)> = {
                let mut statement = tx
                    .prepare(
                        "SELECT t.id, p.name, t.model_id, t.dimension, t.embedding
                         FROM templates t JOIN people p ON p.id = t.person_id ORDER BY t.id",
                    )
                    .map_err(self.db_error())?;
                let rows = statement
                    .query_map([], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                    })
                    .map_err(self.db_error())?;
                rows.collect::<Result<_, _>>().map_err(self.db_error())?
            };
            for (id, person, model, dimension, blob) in &rows {
                let embedding =
                    old.decode(blob, (*dimension).max(0) as usize, person, model, *id)?;
                let blob = new.encode(&embedding, person, model)?;
                tx.execute(
                    "UPDATE templates SET embedding = ?1 WHERE id = ?2",
                    params![blob, id],
                )
                .map_err(self.db_error())?;
            }
            set_key_id(&tx, new.key_id()).map_err(self.db_error())?;
            if let Some(audit) = audit {
                insert_audit(&tx, self.audit_key.as_deref(), &audit(rows.len()))
                    .map_err(self.db_error())?;
            }
            tx.commit().map_err(self.db_error())?;
            // secure_delete zeroed the old blobs; the WAL still holds their pages until this.
            erase_free_pages(c);
            Ok(rows.len())
        })
    }

    fn append_audit(&self, e: &NewAuditEvent) -> Result<(), GalleryError> {
        self.with(|c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(self.db_error())?;
            insert_audit(&tx, self.audit_key.as_deref(), e).map_err(self.db_error())?;
            tx.commit().map_err(self.db_error())
        })
    }

    fn audit_log(&self, after: Option<i64>, limit: usize) -> Result<Vec<AuditEvent>, GalleryError> {
        self.with(|c| {
            let mut s = c
                .prepare_cached(
                    "SELECT id, at, actor, action, person, decision, distance, detail, mac, key_id
                     FROM audit WHERE id > ?1 ORDER BY id LIMIT ?2",
                )
                .map_err(self.db_error())?;
            let rows = s
                .query_map(params![after.unwrap_or(0), limit as i64], audit_row)
                .map_err(self.db_error())?;
            rows.collect::<Result<Vec<_>, _>>().map_err(self.db_error())
        })
    }

    fn audit_newest_sealed(&self) -> Result<Option<AuditEvent>, GalleryError> {
        self.with(|c| newest_sealed(c).map_err(self.db_error()))
    }

    fn audit_id_allocation(&self) -> Result<IdAllocation, GalleryError> {
        self.with(|c| {
            let last_assigned = last_assigned_audit_id(c).map_err(self.db_error())?;
            Ok(IdAllocation::Gapless { last_assigned })
        })
    }

    fn model_id(&self) -> Result<Option<String>, GalleryError> {
        self.with(|c| self.meta(c, "model_id"))
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
        self.with(|c| {
            // IMMEDIATE: take the write lock up front so concurrent enrollers wait (busy
            // timeout) instead of failing halfway.
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(self.db_error())?;
            self.check_model(&tx, model_id)?;
            if let Some(first) = templates.first() {
                let expected: Option<i64> = tx
                    .query_row("SELECT dimension FROM templates LIMIT 1", [], |r| r.get(0))
                    .optional()
                    .map_err(self.db_error())?;
                for t in templates {
                    let expected = expected.map_or(first.embedding.len(), |d| d as usize);
                    if t.embedding.len() != expected {
                        return Err(GalleryError::DimensionMismatch {
                            dimension: t.embedding.len(),
                            expected,
                        });
                    }
                }
            }
            let sealing = self.sealing_for_write(&tx)?;
            let mut report = EnrollReport::default();
            let existing: Option<i64> = tx
                .query_row("SELECT id FROM people WHERE name = ?1", [name], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(self.db_error())?;
            let person_id = match existing {
                Some(_) if options.new_person => {
                    return Err(GalleryError::PersonExists {
                        name: name.to_string(),
                    })
                }
                Some(id) => id,
                None => {
                    tx.execute(
                        &format!("INSERT INTO people (name, created) VALUES (?1, {NOW})"),
                        [name],
                    )
                    .map_err(self.db_error())?;
                    report.created_person = true;
                    tx.last_insert_rowid()
                }
            };
            for t in templates {
                let person = (person_id, name);
                let inserted = insert_template(self, &tx, person, model_id, t, None, &sealing)?;
                if inserted == 1 {
                    report.added.push(tx.last_insert_rowid());
                } else {
                    report.duplicates.push(t.image_sha256.clone());
                }
            }
            if !report.added.is_empty() {
                remember_model(&tx, model_id).map_err(self.db_error())?;
            }
            if !report.added.is_empty() {
                bump_revision(&tx).map_err(self.db_error())?;
            }
            if report.created_person && report.added.is_empty() {
                // Nothing to keep: do not leave an empty person behind.
                report.created_person = false;
                if let Some(audit) = options.audit {
                    // Nothing changed; the attempt is still recorded.
                    tx.execute("DELETE FROM people WHERE id = ?1", [person_id])
                        .map_err(self.db_error())?;
                    insert_audit(&tx, self.audit_key.as_deref(), &audit(&report))
                        .map_err(self.db_error())?;
                    tx.commit().map_err(self.db_error())?;
                } else {
                    tx.rollback().map_err(self.db_error())?;
                }
                return Ok(report);
            }
            if let Some(audit) = options.audit {
                insert_audit(&tx, self.audit_key.as_deref(), &audit(&report))
                    .map_err(self.db_error())?;
            }
            tx.commit().map_err(self.db_error())?;
            Ok(report)
        })
    }

    fn templates_of(&self, name: &str, model_id: &str) -> Result<Vec<Template>, GalleryError> {
        let name = lookup_name(name);
        let name = name.as_ref();
        self.with(|c| {
            self.check_model(c, model_id)?;
            let known: bool = c
                .query_row(
                    "SELECT EXISTS(SELECT 1 FROM people WHERE name = ?1)",
                    [name],
                    |r| r.get(0),
                )
                .map_err(self.db_error())?;
            if !known {
                return Err(GalleryError::UnknownPerson {
                    name: name.to_string(),
                });
            }
            let sealing = self.sealing(c)?;
            self.query_templates(c, Some(name), Some(&sealing))
        })
    }

    fn all_templates(&self, model_id: &str) -> Result<Vec<Template>, GalleryError> {
        self.with(|c| {
            self.check_model(c, model_id)?;
            let sealing = self.sealing(c)?;
            self.query_templates(c, None, Some(&sealing))
        })
    }

    fn people(&self) -> Result<Vec<Person>, GalleryError> {
        self.with(|c| {
            let mut statement = c
                .prepare(
                    "SELECT p.name, p.created, COUNT(t.id) FROM people p
                     LEFT JOIN templates t ON t.person_id = p.id
                     GROUP BY p.id ORDER BY p.name",
                )
                .map_err(self.db_error())?;
            let rows = statement
                .query_map([], person_from_row)
                .map_err(self.db_error())?;
            rows.collect::<Result<Vec<_>, _>>().map_err(self.db_error())
        })
    }

    fn people_page(&self, after: Option<&str>, limit: usize) -> Result<Vec<Person>, GalleryError> {
        self.with(|c| {
            let mut statement = c
                .prepare_cached(
                    "SELECT p.name, p.created, COUNT(t.id) FROM people p
                     LEFT JOIN templates t ON t.person_id = p.id
                     WHERE ?1 IS NULL OR p.name > ?1
                     GROUP BY p.id ORDER BY p.name LIMIT ?2",
                )
                .map_err(self.db_error())?;
            let rows = statement
                .query_map(params![after, limit as i64], person_from_row)
                .map_err(self.db_error())?;
            rows.collect::<Result<Vec<_>, _>>().map_err(self.db_error())
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
            let inserted = c
                .execute(
                    &format!("INSERT OR IGNORE INTO people (name, created) VALUES (?1, {NOW})"),
                    [name],
                )
                .map_err(self.db_error())?;
            if inserted == 0 {
                return Err(GalleryError::PersonExists {
                    name: name.to_string(),
                });
            }
            bump_revision(c).map_err(self.db_error())?;
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
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(self.db_error())?;
            let person_id = |name: &str| -> Result<Option<i64>, GalleryError> {
                tx.query_row("SELECT id FROM people WHERE name = ?1", [name], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(self.db_error())
            };
            let from_id = person_id(from)?.ok_or_else(|| GalleryError::UnknownPerson {
                name: from.to_string(),
            })?;
            let mut report = RenameReport {
                name: to.clone(),
                ..RenameReport::default()
            };
            if from == to {
                return Ok(report);
            }
            let target_id = match person_id(&to)? {
                Some(id) => {
                    report.merged = true;
                    id
                }
                None => {
                    tx.execute(
                        "UPDATE people SET name = ?1 WHERE id = ?2",
                        params![to, from_id],
                    )
                    .map_err(self.db_error())?;
                    from_id
                }
            };
            let sealing = self.sealing(&tx)?;
            let rows: Vec<(i64, String, i64, Vec<u8>, String)> = {
                let mut statement = tx
                    .prepare(
                        "SELECT id, model_id, dimension, embedding, image_sha256
                         FROM templates WHERE person_id = ?1 ORDER BY id",
                    )
                    .map_err(self.db_error())?;
                let rows = statement
                    .query_map([from_id], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                    })
                    .map_err(self.db_error())?;
                rows.collect::<Result<_, _>>().map_err(self.db_error())?
            };
            for (id, model, dimension, blob, sha256) in &rows {
                if report.merged {
                    let duplicate: bool = tx
                        .query_row(
                            "SELECT EXISTS(SELECT 1 FROM templates
                             WHERE person_id = ?1 AND image_sha256 = ?2)",
                            params![target_id, sha256],
                            |r| r.get(0),
                        )
                        .map_err(self.db_error())?;
                    if duplicate {
                        tx.execute("DELETE FROM templates WHERE id = ?1", [id])
                            .map_err(self.db_error())?;
                        report.duplicates_dropped += 1;
                        continue;
                    }
                }
                let embedding =
                    sealing.decode(blob, (*dimension).max(0) as usize, from, model, *id)?;
                let blob = sealing.encode(&embedding, &to, model)?;
                tx.execute(
                    "UPDATE templates SET embedding = ?1, person_id = ?2 WHERE id = ?3",
                    params![blob, target_id, id],
                )
                .map_err(self.db_error())?;
                report.templates_moved += 1;
            }
            if report.merged {
                tx.execute("DELETE FROM people WHERE id = ?1", [from_id])
                    .map_err(self.db_error())?;
            }
            bump_revision(&tx).map_err(self.db_error())?;
            if let Some(audit) = audit {
                insert_audit(&tx, self.audit_key.as_deref(), &audit(&report))
                    .map_err(self.db_error())?;
            }
            tx.commit().map_err(self.db_error())?;
            erase_free_pages(c);
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
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(self.db_error())?;
            self.find_person(&tx, name)?;
            let removed = tx
                .execute(
                    "DELETE FROM templates WHERE id = ?1
                     AND person_id = (SELECT id FROM people WHERE name = ?2)",
                    params![id, name],
                )
                .map_err(self.db_error())?;
            if removed == 0 {
                return Err(GalleryError::UnknownTemplate {
                    name: name.to_string(),
                    id,
                });
            }
            self.forget_model_if_empty(&tx)?;
            bump_revision(&tx).map_err(self.db_error())?;
            if let Some(audit) = audit {
                insert_audit(&tx, self.audit_key.as_deref(), audit).map_err(self.db_error())?;
            }
            tx.commit().map_err(self.db_error())?;
            erase_free_pages(c);
            Ok(())
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
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(self.db_error())?;
            if !templates.is_empty() {
                self.check_model(&tx, model_id)?;
            }
            let sealing = self.sealing_for_write(&tx)?;
            let person_id: i64 = tx
                .query_row(
                    "INSERT INTO people (name, created) VALUES (?1, ?2)
                     ON CONFLICT(name) DO UPDATE SET name = name RETURNING id",
                    params![person.name, person.created],
                    |r| r.get(0),
                )
                .map_err(self.db_error())?;
            let mut added = 0;
            for t in templates {
                let new = t.to_new();
                let at = Some(t.created.as_str());
                let person = (person_id, person.name.as_str());
                added += insert_template(self, &tx, person, model_id, &new, at, &sealing)?;
            }
            if added > 0 {
                remember_model(&tx, model_id).map_err(self.db_error())?;
            }
            bump_revision(&tx).map_err(self.db_error())?;
            tx.commit().map_err(self.db_error())?;
            Ok(added)
        })
    }

    fn scan_embeddings(
        &self,
        model_id: &str,
        visit: &mut dyn FnMut(i64, &str, &[f32]),
    ) -> Result<(), GalleryError> {
        self.with(|c| {
            self.check_model(c, model_id)?;
            let sealing = self.sealing(c)?;
            let mut statement = c
                .prepare_cached(
                    "SELECT t.id, p.name, t.dimension, t.embedding
                     FROM templates t JOIN people p ON p.id = t.person_id ORDER BY t.id",
                )
                .map_err(self.db_error())?;
            let mut rows = statement.query([]).map_err(self.db_error())?;
            let mut embedding = Vec::new();
            while let Some(row) = rows.next().map_err(self.db_error())? {
                let id: i64 = row.get(0).map_err(self.db_error())?;
                let person = row.get_ref(1).map_err(self.db_error())?;
                let person = person.as_str().map_err(|e| self.db_error()(e.into()))?;
                let dimension: i64 = row.get(2).map_err(self.db_error())?;
                let blob = row
                    .get_ref(3)
                    .map_err(self.db_error())?
                    .as_blob()
                    .map_err(|e| self.db_error()(e.into()))?;
                match &sealing {
                    // The common case decodes in place, without an allocation per template.
                    Sealing::Plain if dimension >= 0 && blob.len() == dimension as usize * 4 => {
                        embedding.clear();
                        embedding.extend(
                            blob.chunks_exact(4)
                                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                        );
                    }
                    _ => {
                        let dimension = dimension.max(0) as usize;
                        embedding = sealing.decode(blob, dimension, person, model_id, id)?;
                    }
                }
                visit(id, person, &embedding);
            }
            Ok(())
        })
    }

    fn revision(&self) -> Result<u64, GalleryError> {
        self.with(|c| {
            let value = self.meta(c, "revision")?;
            Ok(value.and_then(|v| v.parse().ok()).unwrap_or(0))
        })
    }

    fn counts(&self) -> Result<GalleryCounts, GalleryError> {
        self.with(|c| {
            c.query_row(
                "SELECT (SELECT COUNT(*) FROM people), (SELECT COUNT(*) FROM templates)",
                [],
                |r| {
                    Ok(GalleryCounts {
                        people: r.get::<_, i64>(0)? as usize,
                        templates: r.get::<_, i64>(1)? as usize,
                    })
                },
            )
            .map_err(self.db_error())
        })
    }

    fn forget_with(
        &self,
        name: &str,
        audit: Option<&dyn Fn(usize) -> NewAuditEvent>,
    ) -> Result<usize, GalleryError> {
        let name = lookup_name(name);
        let name = name.as_ref();
        self.with(|c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(self.db_error())?;
            let id: Option<i64> = tx
                .query_row("SELECT id FROM people WHERE name = ?1", [name], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(self.db_error())?;
            let Some(id) = id else {
                return Err(GalleryError::UnknownPerson {
                    name: name.to_string(),
                });
            };
            let removed = tx
                .execute("DELETE FROM templates WHERE person_id = ?1", [id])
                .map_err(self.db_error())?;
            tx.execute("DELETE FROM people WHERE id = ?1", [id])
                .map_err(self.db_error())?;
            self.forget_model_if_empty(&tx)?;
            bump_revision(&tx).map_err(self.db_error())?;
            if let Some(audit) = audit {
                insert_audit(&tx, self.audit_key.as_deref(), &audit(removed))
                    .map_err(self.db_error())?;
            }
            tx.commit().map_err(self.db_error())?;
            erase_free_pages(c);
            Ok(removed)
        })
    }
}

/// Stores one template (`created` defaults to now); a photo the person already has is
/// skipped (returns 0).
fn insert_template(
    gallery: &SqliteGallery,
    connection: &Connection,
    (person_id, person): (i64, &str),
    model_id: &str,
    t: &NewTemplate,
    created: Option<&str>,
    sealing: &Sealing<'_>,
) -> Result<usize, GalleryError> {
    check_finite(&t.embedding)?;
    let blob = sealing.encode(&t.embedding, person, model_id)?;
    connection
        .prepare_cached(
            "INSERT OR IGNORE INTO templates (person_id, model_id, dimension, embedding, image_sha256,
                 box_x1, box_y1, box_x2, box_y2, detector_score, source, created, quality)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11,
                     coalesce(?12, strftime('%Y-%m-%dT%H:%M:%SZ', 'now')), ?13)",
        )
        .and_then(|mut statement| {
            statement.execute(params![
                person_id,
                model_id,
                t.embedding.len() as i64,
                blob,
                t.image_sha256,
                t.bbox[0],
                t.bbox[1],
                t.bbox[2],
                t.bbox[3],
                t.detector_score,
                t.source,
                created,
                t.quality.as_ref().map(|q| q.to_string()),
            ])
        })
        .map_err(gallery.db_error())
}

/// A database error, told apart when it is a full disk or a refused write (SQLite's "disk
/// full" and I/O error codes), which the user can fix.
fn sqlite_error(path: &Path, source: rusqlite::Error) -> GalleryError {
    use rusqlite::ErrorCode::{DiskFull, SystemIoFailure};
    let path = path.display().to_string();
    match source.sqlite_error_code() {
        Some(DiskFull | SystemIoFailure) => GalleryError::StorageFull { path, source },
        _ => GalleryError::Database { path, source },
    }
}

/// Galleries made before quality was measured lack the column; add it (once).
fn add_quality_column(connection: &Connection) -> rusqlite::Result<()> {
    let has_column: bool = connection.query_row(
        "SELECT count(*) FROM pragma_table_info('templates') WHERE name = 'quality'",
        [],
        |r| r.get::<_, i64>(0).map(|n| n > 0),
    )?;
    if !has_column {
        connection.execute_batch("ALTER TABLE templates ADD COLUMN quality TEXT")?;
    }
    Ok(())
}

/// The columns [`key_row`] reads.
const KEY_COLUMNS: &str = "id, role, label, created, revoked, hash";

fn key_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<KeyRecord> {
    Ok(KeyRecord {
        id: r.get(0)?,
        role: r.get(1)?,
        label: r.get(2)?,
        created: r.get(3)?,
        revoked: r.get(4)?,
        hash: r.get(5)?,
    })
}

impl KeyStore for SqliteGallery {
    fn insert_key(
        &self,
        id: &str,
        role: &str,
        label: &str,
        hash: &str,
    ) -> Result<(), GalleryError> {
        self.with(|c| {
            c.execute(
                &format!(
                    "INSERT INTO api_keys (id, role, label, hash, created) VALUES (?1, ?2, ?3, ?4, {NOW})"
                ),
                params![id, role, label, hash],
            )
            .map(drop)
            .map_err(self.db_error())
        })
    }

    fn keys(&self) -> Result<Vec<KeyRecord>, GalleryError> {
        self.with(|c| {
            let mut statement = c
                .prepare(&format!(
                    "SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created, id"
                ))
                .map_err(self.db_error())?;
            let rows = statement.query_map([], key_row).map_err(self.db_error())?;
            rows.collect::<Result<Vec<_>, _>>().map_err(self.db_error())
        })
    }

    fn key(&self, id: &str) -> Result<Option<KeyRecord>, GalleryError> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?1"),
                [id],
                key_row,
            )
            .optional()
            .map_err(self.db_error())
        })
    }

    fn revoke_key(&self, id: &str) -> Result<bool, GalleryError> {
        self.with(|c| {
            c.execute(
                &format!("UPDATE api_keys SET revoked = {NOW} WHERE id = ?1 AND revoked IS NULL"),
                [id],
            )
            .map(|n| n > 0)
            .map_err(self.db_error())
        })
    }

    fn set_key_hash(&self, id: &str, hash: &str) -> Result<(), GalleryError> {
        self.with(|c| {
            c.execute("UPDATE api_keys SET hash = ?2 WHERE id = ?1", [id, hash])
                .map(drop)
                .map_err(self.db_error())
        })
    }
}

/// Appends one audit entry, sealed onto the newest sealed entry when there is a key. Runs
/// inside the caller's write transaction, whose lock keeps the chain in one line.
fn insert_audit(
    connection: &Connection,
    key: Option<&AuditKey>,
    e: &NewAuditEvent,
) -> rusqlite::Result<()> {
    let mut entry = AuditEvent {
        id: last_assigned_audit_id(connection)? + 1,
        at: connection.query_row(&format!("SELECT {NOW}"), [], |r| r.get(0))?,
        actor: e.actor.clone(),
        action: e.action.clone(),
        person: e.person.clone(),
        decision: e.decision.clone(),
        distance: e.distance,
        detail: e.detail.clone(),
        mac: None,
        key_id: None,
    };
    if let Some(key) = key {
        let newest = newest_sealed(connection)?;
        let newest_mac = newest.as_ref().and_then(|n| n.mac.as_deref());
        entry.mac = Some(audit_chain::seal_next(key, newest_mac, &entry));
        entry.key_id = Some(key.id().to_string());
    }
    connection
        .prepare_cached(
            "INSERT INTO audit (id, at, actor, action, person, decision, distance, detail, mac, key_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?
        .execute(params![
            entry.id,
            entry.at,
            entry.actor,
            entry.action,
            entry.person,
            entry.decision,
            entry.distance,
            entry.detail,
            entry.mac,
            entry.key_id
        ])?;
    Ok(())
}

fn audit_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditEvent> {
    Ok(AuditEvent {
        id: r.get(0)?,
        at: r.get(1)?,
        actor: r.get(2)?,
        action: r.get(3)?,
        person: r.get(4)?,
        decision: r.get(5)?,
        distance: r.get(6)?,
        detail: r.get(7)?,
        mac: r.get(8)?,
        key_id: r.get(9)?,
    })
}

fn newest_sealed(connection: &Connection) -> rusqlite::Result<Option<AuditEvent>> {
    connection
        .query_row(
            "SELECT id, at, actor, action, person, decision, distance, detail, mac, key_id
             FROM audit WHERE mac IS NOT NULL ORDER BY id DESC LIMIT 1",
            [],
            audit_row,
        )
        .optional()
}

/// The highest audit id ever handed out: AUTOINCREMENT's counter, which deleting the newest
/// entries does not lower.
fn last_assigned_audit_id(connection: &Connection) -> rusqlite::Result<i64> {
    connection.query_row(
        "SELECT max(
             coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'audit'), 0),
             coalesce((SELECT max(id) FROM audit), 0))",
        [],
        |r| r.get(0),
    )
}

/// Applies the [`MIGRATIONS`] this file has not had yet, each in its own transaction.
fn migrate(connection: &mut Connection) -> rusqlite::Result<()> {
    for (version, sql) in MIGRATIONS {
        let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let applied: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if applied < *version {
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", version)?;
        }
        tx.commit()?;
    }
    Ok(())
}

/// Records (or with `None`, clears) the id of the key the templates are encrypted with.
fn set_key_id(connection: &Connection, key_id: Option<&str>) -> rusqlite::Result<usize> {
    match key_id {
        Some(id) => connection.execute(
            "INSERT INTO meta (key, value) VALUES ('key_id', ?1)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [id],
        ),
        None => connection.execute("DELETE FROM meta WHERE key = 'key_id'", []),
    }
}

/// Records the gallery's model when its first templates arrive.
fn remember_model(connection: &Connection, model_id: &str) -> rusqlite::Result<usize> {
    connection.execute(
        "INSERT INTO meta (key, value) VALUES ('model_id', ?1) ON CONFLICT(key) DO NOTHING",
        [model_id],
    )
}

fn bump_revision(connection: &Connection) -> rusqlite::Result<usize> {
    connection.execute(
        "INSERT INTO meta (key, value) VALUES ('revision', '1')
         ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1",
        [],
    )
}

/// A real erase: `secure_delete` zeroes the deleted rows; copying the WAL into the database
/// and truncating it removes the older page versions that still held them. Best effort: the
/// delete itself has committed; a reader holding an old snapshot only delays the scrub.
fn erase_free_pages(connection: &Connection) {
    if let Err(err) = connection.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
        tracing::debug!("could not compact the gallery after an erase: {err}");
    }
}

fn person_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Person> {
    Ok(Person {
        name: r.get(0)?,
        created: r.get(1)?,
        templates: r.get::<_, i64>(2)? as usize,
    })
}

#[cfg(test)]
fn encode_embedding(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    //! What only the SQLite file shows (bytes on disk after erasure, tampering with a sealed
    //! row); everything a backend must do is in the contract tests (`tests/contract.rs`).

    use super::*;

    fn template(seed: f32, sha: &str) -> NewTemplate {
        NewTemplate {
            embedding: vec![seed, 1.0 - seed, 0.5],
            image_sha256: sha.to_string(),
            bbox: [1.0, 2.0, 3.0, 4.0],
            detector_score: 0.99,
            source: format!("{sha}.jpg"),
            quality: None,
        }
    }

    fn gallery() -> (tempfile::TempDir, SqliteGallery) {
        let dir = tempfile::tempdir().unwrap();
        let g = SqliteGallery::open(&dir.path().join("g.db")).unwrap();
        (dir, g)
    }

    #[test]
    fn erased_embeddings_leave_no_trace_in_the_files() {
        let (dir, g) = gallery();
        let marker: Vec<f32> = (0..32).map(|i| 0.123_456 + i as f32 * 1e-3).collect();
        let keep = NewTemplate {
            embedding: vec![0.5; 32],
            ..template(0.0, "keep")
        };
        let secret = NewTemplate {
            embedding: marker.clone(),
            ..template(0.0, "secret")
        };
        g.enroll("keeper", "m1", &[keep]).unwrap();
        let report = g
            .enroll("ann", "m1", std::slice::from_ref(&secret))
            .unwrap();
        g.enroll(
            "bob",
            "m1",
            &[NewTemplate {
                image_sha256: "b2".into(),
                ..secret.clone()
            }],
        )
        .unwrap();
        let needle = encode_embedding(&marker);
        let files_hold_marker = || {
            std::fs::read_dir(dir.path()).unwrap().any(|entry| {
                let bytes = std::fs::read(entry.unwrap().path()).unwrap();
                bytes.windows(needle.len()).any(|w| w == needle)
            })
        };
        assert!(files_hold_marker(), "the test must see the stored bytes");
        g.remove_template("ann", report.added[0]).unwrap();
        g.forget("bob").unwrap();
        assert!(
            !files_hold_marker(),
            "erased embeddings are still in the files"
        );
        assert_eq!(g.people().unwrap().len(), 2);
    }

    #[test]
    fn encrypted_templates_leave_no_plaintext_and_refuse_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let key = TemplateKey::from_hex(&TemplateKey::generate_hex().unwrap()).unwrap();
        let g = SqliteGallery::open(&dir.path().join("g.db"))
            .unwrap()
            .with_key(Some(Arc::new(key)));
        let marker: Vec<f32> = (0..32).map(|i| 0.654_321 + i as f32 * 1e-3).collect();
        let secret = NewTemplate {
            embedding: marker.clone(),
            ..template(0.0, "secret")
        };
        g.enroll("ann", "m1", std::slice::from_ref(&secret))
            .unwrap();
        g.enroll(
            "bob",
            "m1",
            &[NewTemplate {
                embedding: vec![0.5; 32],
                ..template(0.0, "b")
            }],
        )
        .unwrap();
        let needle = encode_embedding(&marker);
        let files_hold_marker = || {
            std::fs::read_dir(dir.path()).unwrap().any(|entry| {
                let bytes = std::fs::read(entry.unwrap().path()).unwrap();
                bytes.windows(needle.len()).any(|w| w == needle)
            })
        };
        assert!(
            !files_hold_marker(),
            "an encrypted embedding is in the files"
        );
        assert_eq!(g.templates_of("ann", "m1").unwrap()[0].embedding, marker);
        // Someone with write access gives bob ann's template: it must not match as bob.
        g.with(|c| {
            c.execute_batch(
                "UPDATE templates SET embedding = (SELECT embedding FROM templates t
                    JOIN people p ON p.id = t.person_id WHERE p.name = 'ann')
                 WHERE person_id = (SELECT id FROM people WHERE name = 'bob')",
            )
            .map_err(g.db_error())
        })
        .unwrap();
        let err = g.templates_of("bob", "m1").unwrap_err();
        assert!(
            matches!(err, GalleryError::TemplateTampered { ref person, .. } if person == "bob"),
            "{err}"
        );
        assert!(err.to_string().contains("integrity check"), "{err}");
    }
}
