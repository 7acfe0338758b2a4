//! API keys: stored as argon2 hashes in the gallery database (the SQLite file, or the
//! PostgreSQL database every server shares), shown in full only once.
//!
//! A key reads `fgk_<id>_<secret>`. The id finds the row without trying every hash; the secret
//! is checked with argon2. Verified keys are remembered in memory (by the SHA-256 of the whole
//! key) so a busy client pays for argon2 once, but every request still reads the row: a key
//! revoked from the CLI stops working at once, even on a running server.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine as _;
use facegate::gallery::{GalleryError, GalleryLocation, PostgresGallery};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS api_keys (
    id      TEXT PRIMARY KEY,
    role    TEXT NOT NULL,
    label   TEXT NOT NULL,
    hash    TEXT NOT NULL,
    created TEXT NOT NULL,
    revoked TEXT
);
";

const PREFIX: &str = "fgk_";

/// What a key may do. Each role includes the ones below it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Verify, identify, detect; list people.
    Verify,
    /// Also create people and add faces.
    Enroll,
    /// Also delete people and templates.
    Admin,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Verify => "verify",
            Role::Enroll => "enroll",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "verify" => Some(Role::Verify),
            "enroll" => Some(Role::Enroll),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn allows(self, required: Role) -> bool {
        self >= required
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key database {path}: {source}")]
    Database {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error(transparent)]
    Gallery(#[from] GalleryError),
    #[error("no API key with id {id:?}; `facegate keys list` shows the ids")]
    UnknownKey { id: String },
    #[error("could not hash the key: {0}")]
    Hash(String),
}

/// Why a presented key was refused. Deliberately coarse towards the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    Malformed,
    Unknown,
    Revoked,
}

/// A key as listed (never the secret).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KeyInfo {
    pub id: String,
    pub role: Role,
    pub label: String,
    pub created: String,
    pub revoked: Option<String>,
}

/// A freshly created key: the only time the full key exists outside its holder.
#[derive(Clone, Debug, Serialize)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub info: KeyInfo,
    pub key: String,
}

/// The authenticated caller of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub key_id: String,
    pub role: Role,
}

pub struct KeyStore {
    rows: Rows,
    /// SHA-256 of verified keys -> key id.
    verified: Mutex<HashMap<[u8; 32], String>>,
}

/// Where the key rows live: next to the gallery's people.
enum Rows {
    Sqlite {
        path: String,
        connection: Mutex<Connection>,
    },
    Postgres(Box<PostgresGallery>),
}

/// A stored key: what is listed, and the argon2 hash.
type Row = (KeyInfo, String);

impl KeyStore {
    /// Opens the key table in the gallery's database (creating both if needed).
    pub fn open(location: &GalleryLocation) -> Result<KeyStore, KeyError> {
        let rows = match location {
            GalleryLocation::Sqlite(path) => Rows::open_sqlite(path)?,
            // The gallery's migrations create the key table.
            GalleryLocation::Postgres(url) => Rows::Postgres(Box::new(PostgresGallery::open(url)?)),
        };
        Ok(KeyStore {
            rows,
            verified: Mutex::new(HashMap::new()),
        })
    }

    pub fn create(&self, role: Role, label: &str) -> Result<CreatedKey, KeyError> {
        let id = hex(&rand::random::<[u8; 8]>());
        let secret =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
            .map_err(|e| KeyError::Hash(e.to_string()))?;
        let hash = Argon2::default()
            .hash_password(secret.as_bytes(), &salt)
            .map_err(|e| KeyError::Hash(e.to_string()))?
            .to_string();
        self.rows.insert(&id, role, label, &hash)?;
        let info = self
            .rows
            .find(&id)?
            .map(|(info, _)| info)
            .ok_or_else(|| KeyError::UnknownKey { id: id.clone() })?;
        Ok(CreatedKey {
            info,
            key: format!("{PREFIX}{id}_{secret}"),
        })
    }

    pub fn list(&self) -> Result<Vec<KeyInfo>, KeyError> {
        self.rows.list()
    }

    /// Revokes a key; it is refused from the next request on.
    pub fn revoke(&self, id: &str) -> Result<KeyInfo, KeyError> {
        let changed = self.rows.revoke(id)?;
        match self.rows.find(id)? {
            Some((info, _)) => {
                if !changed {
                    tracing::info!("key {id} was already revoked");
                }
                Ok(info)
            }
            None => Err(KeyError::UnknownKey { id: id.to_string() }),
        }
    }

    /// Checks a presented key.
    pub fn authenticate(&self, presented: &str) -> Result<Result<Caller, Refusal>, KeyError> {
        let Some((id, secret)) = presented
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once('_'))
        else {
            return Ok(Err(Refusal::Malformed));
        };
        let Some((info, hash)) = self.rows.find(id)? else {
            return Ok(Err(Refusal::Unknown));
        };
        if info.revoked.is_some() {
            return Ok(Err(Refusal::Revoked));
        }
        let fingerprint: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let known = self
            .verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&fingerprint)
            .is_some_and(|cached| cached == id);
        if !known {
            let parsed = PasswordHash::new(&hash).map_err(|e| KeyError::Hash(e.to_string()))?;
            if Argon2::default()
                .verify_password(secret.as_bytes(), &parsed)
                .is_err()
            {
                return Ok(Err(Refusal::Unknown));
            }
            self.verified
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(fingerprint, id.to_string());
        }
        Ok(Ok(Caller {
            key_id: info.id,
            role: info.role,
        }))
    }
}

const TIMESTAMP: &str = "to_char(created AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')";

impl Rows {
    fn open_sqlite(path: &Path) -> Result<Rows, KeyError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            // The gallery creates its own directory too; an error here shows up on open.
            let _ = std::fs::create_dir_all(parent);
        }
        let db_error = |source| KeyError::Database {
            path: path.display().to_string(),
            source,
        };
        let connection = Connection::open(path).map_err(db_error)?;
        connection
            .busy_timeout(Duration::from_secs(10))
            .map_err(db_error)?;
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(db_error)?;
        connection.execute_batch(SCHEMA).map_err(db_error)?;
        Ok(Rows::Sqlite {
            path: path.display().to_string(),
            connection: Mutex::new(connection),
        })
    }

    /// Runs `work` on the SQLite connection.
    fn sqlite<T>(
        path: &str,
        connection: &Mutex<Connection>,
        work: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, KeyError> {
        let connection = connection.lock().unwrap_or_else(|p| p.into_inner());
        work(&connection).map_err(|source| KeyError::Database {
            path: path.to_string(),
            source,
        })
    }

    fn insert(&self, id: &str, role: Role, label: &str, hash: &str) -> Result<(), KeyError> {
        match self {
            Rows::Sqlite { path, connection } => Self::sqlite(path, connection, |c| {
                c.execute(
                    "INSERT INTO api_keys (id, role, label, hash, created)
                     VALUES (?1, ?2, ?3, ?4, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))",
                    params![id, role.name(), label, hash],
                )
                .map(drop)
            }),
            Rows::Postgres(db) => Ok(db.run(|c| {
                c.execute(
                    "INSERT INTO facegate_api_keys (id, role, label, hash) VALUES ($1, $2, $3, $4)",
                    &[&id, &role.name(), &label, &hash],
                )
                .map(drop)
            })?),
        }
    }

    fn list(&self) -> Result<Vec<KeyInfo>, KeyError> {
        match self {
            Rows::Sqlite { path, connection } => Self::sqlite(path, connection, |c| {
                let mut statement = c.prepare(
                    "SELECT id, role, label, created, revoked FROM api_keys ORDER BY created, id",
                )?;
                let rows = statement.query_map([], |r| {
                    Ok(info(r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })?;
                rows.collect()
            }),
            Rows::Postgres(db) => Ok(db.run(|c| {
                let rows = c.query(
                    &format!(
                        "SELECT id, role, label, {TIMESTAMP}, {} FROM facegate_api_keys
                         ORDER BY created, id",
                        TIMESTAMP.replace("created", "revoked")
                    ),
                    &[],
                )?;
                Ok(rows
                    .iter()
                    .map(|r| info(r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
                    .collect())
            })?),
        }
    }

    /// Whether the key went from active to revoked.
    fn revoke(&self, id: &str) -> Result<bool, KeyError> {
        match self {
            Rows::Sqlite { path, connection } => Self::sqlite(path, connection, |c| {
                c.execute(
                    "UPDATE api_keys SET revoked = strftime('%Y-%m-%dT%H:%M:%SZ', 'now')
                     WHERE id = ?1 AND revoked IS NULL",
                    [id],
                )
                .map(|n| n > 0)
            }),
            Rows::Postgres(db) => Ok(db.run(|c| {
                c.execute(
                    "UPDATE facegate_api_keys SET revoked = now() WHERE id = $1 AND revoked IS NULL",
                    &[&id],
                )
                .map(|n| n > 0)
            })?),
        }
    }

    fn find(&self, id: &str) -> Result<Option<Row>, KeyError> {
        match self {
            Rows::Sqlite { path, connection } => Self::sqlite(path, connection, |c| {
                c.query_row(
                    "SELECT id, role, label, created, revoked, hash FROM api_keys WHERE id = ?1",
                    [id],
                    |r| {
                        let found = info(r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?);
                        Ok((found, r.get(5)?))
                    },
                )
                .optional()
            }),
            Rows::Postgres(db) => Ok(db.run(|c| {
                let row = c.query_opt(
                    &format!(
                        "SELECT id, role, label, {TIMESTAMP}, {}, hash FROM facegate_api_keys
                         WHERE id = $1",
                        TIMESTAMP.replace("created", "revoked")
                    ),
                    &[&id],
                )?;
                Ok(row.map(|r| {
                    let found = info(r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
                    (found, r.get(5))
                }))
            })?),
        }
    }
}

fn info(
    id: String,
    role: String,
    label: String,
    created: String,
    revoked: Option<String>,
) -> KeyInfo {
    KeyInfo {
        id,
        // An unknown role (a newer facegate's) gets the least power.
        role: Role::parse(&role).unwrap_or(Role::Verify),
        label,
        created,
        revoked,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_hashed_checked_and_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gallery.db");
        let store = KeyStore::open(&GalleryLocation::Sqlite(path.clone())).unwrap();
        let created = store.create(Role::Enroll, "kiosk").unwrap();
        assert!(created.key.starts_with("fgk_"));
        let caller = store.authenticate(&created.key).unwrap().unwrap();
        assert_eq!(caller.role, Role::Enroll);
        // Again, from the in-memory cache.
        assert_eq!(store.authenticate(&created.key).unwrap().unwrap(), caller);

        let mut forged = created.key.clone();
        forged.pop();
        forged.push(if created.key.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(store.authenticate(&forged).unwrap(), Err(Refusal::Unknown));
        assert_eq!(
            store.authenticate("Bearer nonsense").unwrap(),
            Err(Refusal::Malformed)
        );

        // The database holds only the hash.
        let raw = std::fs::read(&path).unwrap();
        let secret = created.key.rsplit('_').next().unwrap();
        assert!(!raw.windows(secret.len()).any(|w| w == secret.as_bytes()));

        // A revocation from another handle (the CLI) takes effect on this one.
        let other = KeyStore::open(&GalleryLocation::Sqlite(path.clone())).unwrap();
        other.revoke(&created.info.id).unwrap();
        assert_eq!(
            store.authenticate(&created.key).unwrap(),
            Err(Refusal::Revoked)
        );
        assert!(store.list().unwrap()[0].revoked.is_some());
        assert!(matches!(
            store.revoke("nope"),
            Err(KeyError::UnknownKey { .. })
        ));
    }

    #[test]
    fn roles_include_the_ones_below() {
        assert!(Role::Admin.allows(Role::Enroll));
        assert!(Role::Enroll.allows(Role::Verify));
        assert!(!Role::Verify.allows(Role::Enroll));
        assert!(!Role::Enroll.allows(Role::Admin));
    }
}
