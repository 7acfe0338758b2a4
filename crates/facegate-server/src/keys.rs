//! API keys: stored as argon2 hashes in the gallery database, shown in full only once.
//!
//! A key reads `fgk_<id>_<secret>`. The id finds the row without trying every hash; the secret
//! is checked with argon2. Verified keys are remembered in memory (by the SHA-256 of the whole
//! key) so a busy client pays for argon2 once, but every request still reads the row: a key
//! revoked from the CLI stops working at once, even on a running server.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine as _;
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
    path: PathBuf,
    connection: Mutex<Connection>,
    /// SHA-256 of verified keys -> key id.
    verified: Mutex<HashMap<[u8; 32], String>>,
}

impl KeyStore {
    /// Opens the key table in the gallery database at `path` (creating both if needed).
    pub fn open(path: &Path) -> Result<KeyStore, KeyError> {
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
        Ok(KeyStore {
            path: path.to_path_buf(),
            connection: Mutex::new(connection),
            verified: Mutex::new(HashMap::new()),
        })
    }

    fn db_error(&self) -> impl Fn(rusqlite::Error) -> KeyError + '_ {
        move |source| KeyError::Database {
            path: self.path.display().to_string(),
            source,
        }
    }

    fn connection(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.connection.lock().unwrap_or_else(|p| p.into_inner())
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
        let connection = self.connection();
        connection
            .execute(
                "INSERT INTO api_keys (id, role, label, hash, created)
                 VALUES (?1, ?2, ?3, ?4, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))",
                params![id, role.name(), label, hash],
            )
            .map_err(self.db_error())?;
        let info = Self::find(&connection, &id)
            .map_err(self.db_error())?
            .map(|(info, _)| info)
            .ok_or_else(|| KeyError::UnknownKey { id: id.clone() })?;
        Ok(CreatedKey {
            info,
            key: format!("{PREFIX}{id}_{secret}"),
        })
    }

    pub fn list(&self) -> Result<Vec<KeyInfo>, KeyError> {
        let connection = self.connection();
        let mut statement = connection
            .prepare("SELECT id, role, label, created, revoked FROM api_keys ORDER BY created, id")
            .map_err(self.db_error())?;
        let rows = statement
            .query_map([], info_from_row)
            .map_err(self.db_error())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.db_error())
    }

    /// Revokes a key; it is refused from the next request on.
    pub fn revoke(&self, id: &str) -> Result<KeyInfo, KeyError> {
        let connection = self.connection();
        let changed = connection
            .execute(
                "UPDATE api_keys SET revoked = strftime('%Y-%m-%dT%H:%M:%SZ', 'now')
                 WHERE id = ?1 AND revoked IS NULL",
                [id],
            )
            .map_err(self.db_error())?;
        let found = Self::find(&connection, id).map_err(self.db_error())?;
        match found {
            Some((info, _)) => {
                if changed == 0 {
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
        let found = Self::find(&self.connection(), id).map_err(self.db_error())?;
        let Some((info, hash)) = found else {
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

    fn find(connection: &Connection, id: &str) -> rusqlite::Result<Option<(KeyInfo, String)>> {
        connection
            .query_row(
                "SELECT id, role, label, created, revoked, hash FROM api_keys WHERE id = ?1",
                [id],
                |r| Ok((info_from_row(r)?, r.get(5)?)),
            )
            .optional()
    }
}

fn info_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<KeyInfo> {
    let role: String = r.get(1)?;
    Ok(KeyInfo {
        id: r.get(0)?,
        // An unknown role (a newer facegate's) gets the least power.
        role: Role::parse(&role).unwrap_or(Role::Verify),
        label: r.get(2)?,
        created: r.get(3)?,
        revoked: r.get(4)?,
    })
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
        let store = KeyStore::open(&path).unwrap();
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
        let other = KeyStore::open(&path).unwrap();
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
