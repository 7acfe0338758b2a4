//! Enrolled people and their face templates.
//!
//! [`Gallery`] is the storage seam; [`SqliteGallery`] is the embedded default (one file, no
//! server) and [`PostgresGallery`] the shared one (PostgreSQL + pgvector, Citus-ready);
//! [`GalleryLocation`] picks one from a path or a `postgres://` URL. A gallery remembers which
//! embedding model made its templates: mixing models would compare incomparable vectors, so it
//! is refused with [`GalleryError::ModelMismatch`].

pub mod api_keys;
pub mod audit_chain;
pub mod index;
mod location;
pub mod migrate;
pub mod postgres;
pub mod private;
pub mod seal;
mod sqlite;

use serde::{Deserialize, Serialize};

pub use api_keys::{KeyRecord, KeyStore};
pub use audit_chain::{AuditKey, ChainReport};
pub use index::{Hit, QuantizedIndex, TemplateIndex};
pub use location::GalleryLocation;
pub use postgres::{PostgresGallery, PostgresOptions, SearchMode};
pub use seal::TemplateKey;
pub use sqlite::SqliteGallery;

#[derive(Debug, thiserror::Error)]
pub enum GalleryError {
    #[error("no person named {name:?} is enrolled")]
    UnknownPerson { name: String },
    #[error("the gallery is empty; enroll someone first")]
    Empty,
    #[error("this gallery holds templates made by the model {gallery_model}, but {requested} was asked for; embeddings of different models cannot be compared. Use the same model, or another gallery")]
    ModelMismatch {
        gallery_model: String,
        requested: String,
    },
    #[error("a person named {name:?} already exists; add faces to them, or choose another name")]
    PersonExists { name: String },
    #[error("{name:?} has no template with id {id}; list their templates to see the ids")]
    UnknownTemplate { name: String, id: i64 },
    #[error("invalid person name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("template of {dimension} values does not match this gallery's {expected}")]
    DimensionMismatch { dimension: usize, expected: usize },
    #[error("could not write the gallery {path}: the disk is full or the file system refused the write ({source}). Free some space (or fix the file system) and run the command again; nothing was written")]
    StorageFull {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("gallery database {path}: {source}")]
    Database {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("could not create the gallery {path} (or its folder), or make it readable by its owner only: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("PostgreSQL gallery {target}: {source}")]
    Postgres {
        target: String,
        #[source]
        source: ::postgres::Error,
    },
    #[error("PostgreSQL gallery {target}: {message}")]
    PostgresSetup { target: String, message: String },
    #[error("could not reach the PostgreSQL gallery {target}: {reason}. Is the server running, and are the host, port, user and database in the URL right?")]
    Unreachable { target: String, reason: String },
    #[error("refusing to store an embedding: {reason}")]
    InvalidEmbedding { reason: String },
    #[error("this gallery's templates are encrypted (key id {gallery_key}) and no key was given; give the gallery's key. Names can still be listed without it")]
    KeyMissing { gallery_key: String },
    #[error("the key given (id {given_key}) is not this gallery's key (id {gallery_key}); nothing was read or written. Use the key the gallery was encrypted with")]
    WrongKey {
        gallery_key: String,
        given_key: String,
    },
    #[error("a key was given, but this gallery's templates are stored unencrypted; encrypt them first, or leave the key out")]
    NotEncrypted,
    #[error("invalid template key: {reason}")]
    InvalidKey { reason: String },
    #[error("could not read the key file {path}: {source}")]
    KeyFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the key file {path} can be read by other users (mode {mode:03o}); a key that others can read protects nothing. Make it readable by you only (`chmod 600 {path}`) and, if others may have copied it, rotate it")]
    KeyFileExposed { path: String, mode: u32 },
    #[error("invalid audit key in {path}: {reason}")]
    InvalidAuditKey { path: String, reason: String },
    #[error("the audit log is sealed with the audit key {log_key}, but the audit key given is {given_key}; writing with it would break the log's chain. Give the audit key the log was sealed with, or, if that key is lost, start a new chain under this key on purpose")]
    AuditKeyMismatch { log_key: String, given_key: String },
    #[error("the system's random number generator failed; cannot encrypt safely")]
    Randomness,
    #[error("template {id} of {person:?} fails its integrity check: it was altered or moved in the database. Refusing to use it; remove the person and enroll the photo again")]
    TemplateTampered { person: String, id: i64 },
}

impl GalleryError {
    /// Whether the same request may succeed if repeated (a dropped connection, a database
    /// restarting): servers answer these with 503 rather than 500.
    pub fn is_transient(&self) -> bool {
        match self {
            GalleryError::Postgres { source, .. } => postgres::is_transient(source),
            GalleryError::Unreachable { .. } => true,
            _ => false,
        }
    }
}

/// One entry of the audit log: who did what, to whom, and the decision. Never an image or an
/// embedding.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub id: i64,
    /// UTC, `YYYY-MM-DDTHH:MM:SSZ`.
    pub at: String,
    /// `local:<user>` for the command line, `key:<id>` for an API key, `anonymous`.
    pub actor: String,
    /// `enroll`, `forget`, `remove_template`, `verify`, `identify`.
    pub action: String,
    pub person: Option<String>,
    /// `match`, `no_match`, `identified`, `unknown`, `added`, `erased`, ...
    pub decision: Option<String>,
    /// The decision's distance (verify, identify).
    pub distance: Option<f32>,
    /// Anything else worth keeping: counts, the model.
    pub detail: Option<String>,
    /// The entry's link in the tamper-evident chain (see [`audit_chain`]); `None` for entries
    /// written before the log was sealed, or without an audit key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// The id of the audit key that sealed the entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
}

/// An audit entry to append.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NewAuditEvent {
    pub actor: String,
    pub action: String,
    pub person: Option<String>,
    pub decision: Option<String>,
    pub distance: Option<f32>,
    pub detail: Option<String>,
}

/// How [`Gallery::enroll_with`] writes.
#[derive(Default)]
pub struct EnrollOptions<'a> {
    /// Refuse with [`GalleryError::PersonExists`] if the person exists (creating a person with
    /// their first photos, in the same transaction).
    pub new_person: bool,
    /// The audit entry for what was done, appended in the same transaction.
    pub audit: Option<&'a dyn Fn(&EnrollReport) -> NewAuditEvent>,
}

/// A template to store.
#[derive(Clone, Debug, PartialEq)]
pub struct NewTemplate {
    /// L2-normalised embedding.
    pub embedding: Vec<f32>,
    /// SHA-256 of the photo's bytes (duplicate detection).
    pub image_sha256: String,
    /// Face box `[x1, y1, x2, y2]` in the photo.
    pub bbox: [f32; 4],
    pub detector_score: f32,
    /// Where the photo came from (a file name), for people reading `facegate list`.
    pub source: String,
    /// The quality figures measured at enrollment (a JSON object), if any.
    pub quality: Option<serde_json::Value>,
}

/// A stored template.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Template {
    pub id: i64,
    pub person: String,
    pub model_id: String,
    #[serde(skip)]
    pub embedding: Vec<f32>,
    pub image_sha256: String,
    pub bbox: [f32; 4],
    pub detector_score: f32,
    pub source: String,
    pub created: String,
    /// The quality figures measured at enrollment; absent for templates enrolled before
    /// facegate measured quality.
    pub quality: Option<serde_json::Value>,
}

impl Template {
    /// The same template, to store in another gallery.
    pub fn to_new(&self) -> NewTemplate {
        NewTemplate {
            embedding: self.embedding.clone(),
            image_sha256: self.image_sha256.clone(),
            bbox: self.bbox,
            detector_score: self.detector_score,
            source: self.source.clone(),
            quality: self.quality.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Person {
    pub name: String,
    pub created: String,
    /// How many templates the person has (`template_count`, as over HTTP: `templates` is a
    /// list wherever it appears).
    #[serde(rename = "template_count", alias = "templates")]
    pub templates: usize,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GalleryCounts {
    pub people: usize,
    pub templates: usize,
}

/// What one enroll call did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EnrollReport {
    /// Template ids written.
    pub added: Vec<i64>,
    /// Photos already enrolled for this person, by SHA-256: skipped.
    pub duplicates: Vec<String>,
    /// Whether the person was created by this call.
    pub created_person: bool,
}

/// What one rename did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenameReport {
    /// The name the person has now (in its stored form).
    pub name: String,
    /// Whether someone already had that name, so the two were merged.
    pub merged: bool,
    /// Templates now under the new name.
    pub templates_moved: usize,
    /// Photos the other person already had: dropped in a merge.
    pub duplicates_dropped: usize,
}

/// A template found by a search inside the gallery's database.
#[derive(Clone, Debug, PartialEq)]
pub struct Nearest {
    pub person: String,
    pub template_id: i64,
    pub embedding: Vec<f32>,
}

/// The people closest to a probe, each with their closest template, closest first.
#[derive(Clone, Debug, PartialEq)]
pub struct NearestPeople {
    pub hits: Vec<Nearest>,
    pub people_searched: usize,
    pub templates_searched: usize,
    /// Whether every template was compared (no approximate index).
    pub exact: bool,
}

/// Storage of people and templates.
pub trait Gallery: Send + Sync {
    /// The model whose templates the gallery holds (none while it is empty of templates).
    fn model_id(&self) -> Result<Option<String>, GalleryError>;

    /// Adds templates to `name` (creating the person) in one transaction: all or nothing.
    /// Photos already enrolled for this person are skipped and reported.
    fn enroll(
        &self,
        name: &str,
        model_id: &str,
        templates: &[NewTemplate],
    ) -> Result<EnrollReport, GalleryError> {
        self.enroll_with(name, model_id, templates, &EnrollOptions::default())
    }

    /// [`Gallery::enroll`], refusing an existing person and/or writing its audit entry in the
    /// same transaction, as `options` say.
    fn enroll_with(
        &self,
        name: &str,
        model_id: &str,
        templates: &[NewTemplate],
        options: &EnrollOptions<'_>,
    ) -> Result<EnrollReport, GalleryError>;

    /// Every template of one person.
    fn templates_of(&self, name: &str, model_id: &str) -> Result<Vec<Template>, GalleryError>;

    /// Every template in the gallery.
    fn all_templates(&self, model_id: &str) -> Result<Vec<Template>, GalleryError>;

    fn people(&self) -> Result<Vec<Person>, GalleryError>;

    /// One page of people in name order, starting after `after` (keyset paging: stable while
    /// people are added or removed).
    fn people_page(&self, after: Option<&str>, limit: usize) -> Result<Vec<Person>, GalleryError>;

    fn person(&self, name: &str) -> Result<Person, GalleryError>;

    /// Creates a person with no templates yet.
    fn create_person(&self, name: &str) -> Result<Person, GalleryError>;

    /// The templates of one person, whatever model made them, without their embeddings (for
    /// listing: works without the key of an encrypted gallery).
    fn templates_info(&self, name: &str) -> Result<Vec<Template>, GalleryError>;

    /// One template by its id, without its embedding (`None` if no template has that id).
    fn template_info(&self, id: i64) -> Result<Option<Template>, GalleryError>;

    /// Every template of every person, without embeddings, in id order (for listing).
    fn all_templates_info(&self) -> Result<Vec<Template>, GalleryError>;

    /// Renames a person, keeping their templates. Renaming onto someone who exists merges the
    /// two: the templates move to that person (photos they already have are dropped) and the
    /// old name goes. Encrypted templates are re-sealed under the new name. All or nothing,
    /// with `audit` (given what was done) appended in the same transaction.
    fn rename_person_with(
        &self,
        from: &str,
        to: &str,
        audit: Option<&dyn Fn(&RenameReport) -> NewAuditEvent>,
    ) -> Result<RenameReport, GalleryError>;

    /// Erases one template of a person.
    fn remove_template(&self, name: &str, id: i64) -> Result<(), GalleryError> {
        self.remove_template_with(name, id, None)
    }

    /// [`Gallery::remove_template`], with `audit` appended in the same transaction.
    fn remove_template_with(
        &self,
        name: &str,
        id: i64,
        audit: Option<&NewAuditEvent>,
    ) -> Result<(), GalleryError>;

    /// How many people and templates the gallery holds.
    fn counts(&self) -> Result<GalleryCounts, GalleryError>;

    /// Visits every template of `model_id`: id, person, embedding. For building search indexes
    /// without materialising [`Template`]s.
    fn scan_embeddings(
        &self,
        model_id: &str,
        visit: &mut dyn FnMut(i64, &str, &[f32]),
    ) -> Result<(), GalleryError> {
        for t in self.all_templates(model_id)? {
            visit(t.id, &t.person, &t.embedding);
        }
        Ok(())
    }

    /// Changes whenever the gallery's contents change (by any process): cached indexes compare
    /// it to know they are stale.
    fn revision(&self) -> Result<u64, GalleryError>;

    /// Erases a person and all their templates; returns how many templates went.
    fn forget(&self, name: &str) -> Result<usize, GalleryError> {
        self.forget_with(name, None)
    }

    /// [`Gallery::forget`], with the audit entry (given the number of templates erased)
    /// appended in the same transaction.
    fn forget_with(
        &self,
        name: &str,
        audit: Option<&dyn Fn(usize) -> NewAuditEvent>,
    ) -> Result<usize, GalleryError>;

    /// Rewrites the database files without the space deleted rows left behind, so nothing of
    /// erased templates remains in them (SQLite `VACUUM`; PostgreSQL `VACUUM FULL`, which locks
    /// the tables while it runs, after waiting up to a minute for older transactions, which
    /// could still see deleted rows). Returns how many such transactions were still open:
    /// rows they could see may remain until the next compaction.
    fn compact(&self) -> Result<usize, GalleryError>;

    /// The id of the key the gallery's templates are encrypted with (none: unencrypted).
    fn key_id(&self) -> Result<Option<String>, GalleryError>;

    /// Re-encrypts every template under `new_key` (none: stores them unencrypted), in one
    /// transaction, reading them with the key this gallery was opened with. Returns how many
    /// templates were rewritten.
    fn rekey(&self, new_key: Option<&TemplateKey>) -> Result<usize, GalleryError> {
        self.rekey_with(new_key, None)
    }

    /// [`Gallery::rekey`], with the audit entry (given the number of templates rewritten)
    /// appended in the same transaction.
    fn rekey_with(
        &self,
        new_key: Option<&TemplateKey>,
        audit: Option<&dyn Fn(usize) -> NewAuditEvent>,
    ) -> Result<usize, GalleryError>;

    /// Appends to the audit log, sealed onto the newest entry when the gallery has an audit key
    /// (see [`audit_chain`]). The database refuses updates and deletes of entries.
    fn append_audit(&self, event: &NewAuditEvent) -> Result<(), GalleryError>;

    /// The audit log, oldest first: entries with an id above `after`, at most `limit`.
    fn audit_log(&self, after: Option<i64>, limit: usize) -> Result<Vec<AuditEvent>, GalleryError>;

    /// The newest audit entry that carries a MAC: the link the next entry is sealed onto.
    fn audit_newest_sealed(&self) -> Result<Option<AuditEvent>, GalleryError>;

    /// Whether a missing audit id means a removed entry (see [`audit_chain::IdAllocation`]).
    fn audit_id_allocation(&self) -> Result<audit_chain::IdAllocation, GalleryError>;

    /// Copies a person and their templates from another gallery, keeping creation times
    /// (template ids are assigned anew). Photos the person already has are skipped. Returns
    /// how many templates were added. All or nothing.
    fn import_person(
        &self,
        person: &Person,
        model_id: &str,
        templates: &[Template],
    ) -> Result<usize, GalleryError>;

    /// Whether 1:N search runs inside the gallery ([`Gallery::nearest`]) rather than in a
    /// [`TemplateIndex`] loaded into this process.
    fn searches_in_place(&self) -> bool {
        false
    }

    /// 1:N inside the gallery: up to `people` people ranked by their closest template.
    /// `None` for galleries that are searched in process.
    fn nearest(
        &self,
        model_id: &str,
        probe: &[f32],
        people: usize,
    ) -> Result<Option<NearestPeople>, GalleryError> {
        let _ = (model_id, probe, people);
        Ok(None)
    }
}

/// Embeddings must be finite: a NaN would compare as "close" to nothing and break ordering.
pub(crate) fn check_finite(embedding: &[f32]) -> Result<(), GalleryError> {
    if embedding.iter().all(|v| v.is_finite()) {
        Ok(())
    } else {
        Err(GalleryError::InvalidEmbedding {
            reason: "it contains NaN or infinite values".into(),
        })
    }
}

/// The structural naming rule: 1 to 200 characters, no control characters, no leading or
/// trailing spaces. Names already stored are held to this rule (a migration copies them as they
/// are); new names are held to [`normalize_name`]'s.
pub fn validate_name(name: &str) -> Result<(), GalleryError> {
    let invalid = |reason: &str| Err(invalid_name(name, reason.to_string()));
    if name.is_empty() {
        return invalid("a name cannot be empty");
    }
    if name.chars().count() > 200 {
        return invalid("a name can have at most 200 characters");
    }
    if name.chars().any(char::is_control) {
        return invalid("a name cannot contain control characters (newlines, tabs, ...)");
    }
    if name.trim() != name {
        return invalid("a name cannot start or end with spaces");
    }
    Ok(())
}

/// A new person's name as it is stored: the structural rule of [`validate_name`], in Unicode
/// normalization form C (so "Zoé" typed as one character or as "e" plus a combining accent is
/// one person), and without invisible formatting or direction-control characters (a zero-width
/// space or a right-to-left override would make a name that looks like another one). The zero-
/// width joiner and non-joiner stay allowed: Persian and Indic names and emoji need them.
/// Anything else (any script, spaces inside, punctuation) is kept exactly.
pub fn normalize_name(name: &str) -> Result<String, GalleryError> {
    use unicode_normalization::UnicodeNormalization;
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    let normalized: String = name.nfc().collect();
    validate_name(&normalized)?;
    let hidden = normalized.chars().enumerate().find(|(_, c)| {
        c.general_category() == GeneralCategory::Format && !matches!(c, '\u{200C}' | '\u{200D}')
    });
    if let Some((position, c)) = hidden {
        return Err(invalid_name(
            name,
            format!(
                "a name cannot contain invisible formatting or direction-control characters (U+{:04X} at character {})",
                c as u32,
                position + 1
            ),
        ));
    }
    Ok(normalized)
}

/// How a name given to look someone up is compared with the stored names: in normalization
/// form C, as [`normalize_name`] stores them.
pub(crate) fn lookup_name(name: &str) -> std::borrow::Cow<'_, str> {
    use unicode_normalization::{is_nfc_quick, IsNormalized, UnicodeNormalization};
    match is_nfc_quick(name.chars()) {
        IsNormalized::Yes => std::borrow::Cow::Borrowed(name),
        _ => std::borrow::Cow::Owned(name.nfc().collect()),
    }
}

/// For the bulk paths, which take names from programs: a name must already be in its stored
/// form.
pub(crate) fn require_normalized(name: &str) -> Result<(), GalleryError> {
    if normalize_name(name)? != name {
        return Err(invalid_name(
            name,
            "a name must be in Unicode normalization form C here (normalize it first)".into(),
        ));
    }
    Ok(())
}

fn invalid_name(name: &str, reason: String) -> GalleryError {
    GalleryError::InvalidName {
        name: name.chars().take(60).collect(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rule() {
        assert!(validate_name("Zoë O'Brien-Łukasz 😀").is_ok());
        assert!(validate_name("robert'); DROP TABLE people;--").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name(" alice").is_err());
        assert!(validate_name("a\nb").is_err());
        assert!(validate_name(&"x".repeat(201)).is_err());
    }

    #[test]
    fn new_names_are_stored_in_one_form_without_invisible_characters() {
        let composed = "Zo\u{e9}";
        let decomposed = "Zoe\u{301}";
        assert_ne!(composed, decomposed);
        assert_eq!(normalize_name(decomposed).unwrap(), composed);
        assert_eq!(normalize_name(composed).unwrap(), composed);
        assert_eq!(lookup_name(decomposed), composed);
        for hidden in [
            "ben\u{200B}",         // zero-width space
            "\u{202E}neb",         // right-to-left override
            "be\u{2066}n\u{2069}", // isolates
            "\u{FEFF}ben",         // byte-order mark
            "be\u{AD}n",           // soft hyphen
        ] {
            let err = normalize_name(hidden).unwrap_err().to_string();
            assert!(err.contains("invisible"), "{hidden:?}: {err}");
        }
        // Joiners spell real names (Persian) and emoji.
        assert!(
            normalize_name("\u{645}\u{6CC}\u{200C}\u{62E}\u{648}\u{627}\u{647}\u{645}").is_ok()
        );
        assert!(normalize_name("\u{1F469}\u{200D}\u{1F52C}").is_ok());
        assert!(normalize_name("Zoë O'Brien-Łukasz 😀").is_ok());
        assert!(normalize_name(" Zoë").is_err());
        assert!(require_normalized(decomposed).is_err());
        assert!(require_normalized(composed).is_ok());
    }
}
