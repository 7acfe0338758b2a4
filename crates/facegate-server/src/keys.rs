//! API keys: stored as hashes through the gallery's key store (`facegate_gallery::KeyStore`: the
//! SQLite file, or the PostgreSQL database every server shares), shown in full only once.
//!
//! A key reads `fgk_<id>_<secret>`. The id finds the row without trying every hash; the secret
//! is 256 random bits, stored as its SHA-256 and compared in constant time. A slow password hash
//! would add nothing for a secret that cannot be guessed, and would make every wrong secret
//! expensive for the server. Keys with argon2 hashes (as facegate made them before) still work,
//! are checked one at a time, and are rehashed on their first successful use.
//! Every request reads the row: a key revoked from the CLI stops working at once, even on a
//! running server.
//!
//! Keys for CompreFace clients are what those clients expect: a random UUID, valid for one
//! CompreFace service (recognition, detection or verification; see [`KeyScope`]). Its row id
//! is derived from the UUID by a one-way hash, so the id reveals nothing of the key, and the
//! whole UUID (122 random bits) is the secret. The scope is stored with the role
//! (`admin@compreface:recognition`); a facegate that does not know scopes reads such a role as
//! unknown and gives it the least power.

use std::sync::{Arc, Mutex};

use argon2::password_hash::{PasswordHash, PasswordVerifier};
use argon2::Argon2;
use base64::Engine as _;
use facegate::gallery::{GalleryError, GalleryLocation, KeyRecord};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const PREFIX: &str = "fgk_";

/// How a stored hash made by [`secret_hash`] starts (argon2's start with `$argon2`).
const SHA256_HASH: &str = "sha256:";

/// What a key may do. Each role includes the ones below it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Verify against a name and detect faces. A decision, not a measurement: no distances,
    /// and an unknown name is answered as a failed match (a verify key cannot find out who is
    /// enrolled).
    Verify,
    /// Also identify (1:N) and list people.
    Identify,
    /// Also create people and add faces.
    Enroll,
    /// Also delete people and templates, and read the metrics.
    Admin,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Verify => "verify",
            Role::Identify => "identify",
            Role::Enroll => "enroll",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "verify" => Some(Role::Verify),
            "identify" => Some(Role::Identify),
            "enroll" => Some(Role::Enroll),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn allows(self, required: Role) -> bool {
        self >= required
    }
}

/// The CompreFace services: a CompreFace key belongs to exactly one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CompreFaceService {
    Recognition,
    Detection,
    Verification,
}

impl CompreFaceService {
    pub fn name(self) -> &'static str {
        match self {
            CompreFaceService::Recognition => "recognition",
            CompreFaceService::Detection => "detection",
            CompreFaceService::Verification => "verification",
        }
    }

    pub fn parse(text: &str) -> Option<CompreFaceService> {
        match text {
            "recognition" => Some(CompreFaceService::Recognition),
            "detection" => Some(CompreFaceService::Detection),
            "verification" => Some(CompreFaceService::Verification),
            _ => None,
        }
    }

    /// The service whose routes a path belongs to (`/api/v1/<service>/...`).
    pub fn of_route(route: &str) -> Option<CompreFaceService> {
        let rest = route.strip_prefix("/api/v1/")?;
        CompreFaceService::parse(rest.split('/').next()?)
    }
}

/// Where a key may be used beyond its role. Unscoped keys work on every route their role
/// allows; a scoped key only on its API's routes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyScope {
    /// One service of the CompreFace-compatible API.
    CompreFace(CompreFaceService),
    /// A scope this version does not know (a newer facegate's): it covers no route.
    Unknown,
}

impl KeyScope {
    /// Stored after the role: `<role>@<scope>`.
    fn stored(self) -> String {
        match self {
            KeyScope::CompreFace(service) => format!("compreface:{}", service.name()),
            KeyScope::Unknown => "unknown".to_string(),
        }
    }

    fn parse(text: &str) -> Option<KeyScope> {
        let service = text.strip_prefix("compreface:")?;
        CompreFaceService::parse(service).map(KeyScope::CompreFace)
    }

    /// Whether a request to `route` is within the scope.
    pub fn covers(self, route: &str) -> bool {
        match self {
            KeyScope::CompreFace(service) => CompreFaceService::of_route(route) == Some(service),
            KeyScope::Unknown => false,
        }
    }
}

impl Serialize for KeyScope {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.stored())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Gallery(#[from] GalleryError),
    #[error("no API key with id {id:?}; `facegate keys list` shows the ids")]
    UnknownKey { id: String },
    #[error("could not hash the key: {0}")]
    Hash(String),
}

/// Why a presented key was refused. Deliberately coarse towards the client: only the server
/// tells an unknown id from a wrong secret.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    Malformed,
    Unknown,
    /// The id is a real key's; the secret is not its.
    WrongSecret {
        id: String,
    },
    Revoked,
    /// A key with an argon2 hash (made by an earlier version), not checked because the caller
    /// asked for cheap checks only.
    SlowCheckRefused {
        id: String,
    },
}

/// A key as listed (never the secret).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KeyInfo {
    pub id: String,
    pub role: Role,
    /// Where the key may be used (none: wherever its role allows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<KeyScope>,
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
    pub scope: Option<KeyScope>,
}

impl Caller {
    /// Whoever calls a server that runs without keys: an administrator, everywhere.
    pub fn anonymous() -> Caller {
        Caller {
            key_id: "anonymous".to_string(),
            role: Role::Admin,
            scope: None,
        }
    }
}

pub struct ApiKeys {
    rows: Rows,
    /// Held while an argon2 hash is checked: each check takes ~19 MB and tens of milliseconds,
    /// so they run one at a time.
    slow_check: Mutex<()>,
}

/// The key records, wherever the gallery keeps them.
struct Rows(Arc<dyn facegate::gallery::KeyStore>);

/// A stored key: what is listed, and the hash of its secret.
type Row = (KeyInfo, String);

impl ApiKeys {
    /// Opens the key table in the gallery's database (creating both if needed).
    pub fn open(location: &GalleryLocation) -> Result<ApiKeys, KeyError> {
        Ok(ApiKeys {
            rows: Rows(location.open_key_store()?),
            slow_check: Mutex::new(()),
        })
    }

    pub fn create(&self, role: Role, label: &str) -> Result<CreatedKey, KeyError> {
        let id = hex(&rand::random::<[u8; 8]>());
        let secret =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let info = self.insert(&id, &secret, role, None, label)?;
        Ok(CreatedKey {
            info,
            key: format!("{PREFIX}{id}_{secret}"),
        })
    }

    /// A key for CompreFace clients: a random UUID, usable only on `scope`'s routes.
    pub fn create_scoped(
        &self,
        role: Role,
        scope: KeyScope,
        label: &str,
    ) -> Result<CreatedKey, KeyError> {
        let key = uuid::Uuid::new_v4().hyphenated().to_string();
        let id = uuid_key_id(&key);
        let info = self.insert(&id, &key, role, Some(scope), label)?;
        Ok(CreatedKey { info, key })
    }

    fn insert(
        &self,
        id: &str,
        secret: &str,
        role: Role,
        scope: Option<KeyScope>,
        label: &str,
    ) -> Result<KeyInfo, KeyError> {
        let stored_role = match scope {
            Some(scope) => format!("{}@{}", role.name(), scope.stored()),
            None => role.name().to_string(),
        };
        self.rows
            .insert(id, &stored_role, label, &secret_hash(id, secret))?;
        self.rows
            .find(id)?
            .map(|(info, _)| info)
            .ok_or_else(|| KeyError::UnknownKey { id: id.to_string() })
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

    /// Checks a presented key. With `allow_slow_check` false, a key that still has an argon2
    /// hash is refused unchecked ([`Refusal::SlowCheckRefused`]): the server asks so for clients
    /// that have already failed too often.
    pub fn authenticate(
        &self,
        presented: &str,
        allow_slow_check: bool,
    ) -> Result<Result<Caller, Refusal>, KeyError> {
        let Some((id, secret)) = presented_parts(presented) else {
            return Ok(Err(Refusal::Malformed));
        };
        let (id, secret) = (id.as_str(), secret.as_str());
        let Some((info, stored)) = self.rows.find(id)? else {
            return Ok(Err(Refusal::Unknown));
        };
        if info.revoked.is_some() {
            return Ok(Err(Refusal::Revoked));
        }
        let matches = match stored.strip_prefix(SHA256_HASH) {
            Some(_) => {
                let presented_hash = secret_hash(id, secret);
                bool::from(presented_hash.as_bytes().ct_eq(stored.as_bytes()))
            }
            None if !allow_slow_check => {
                return Ok(Err(Refusal::SlowCheckRefused { id: id.to_string() }))
            }
            None => {
                let _one_at_a_time = self.slow_check.lock().unwrap_or_else(|p| p.into_inner());
                let parsed =
                    PasswordHash::new(&stored).map_err(|e| KeyError::Hash(e.to_string()))?;
                let matches = Argon2::default()
                    .verify_password(secret.as_bytes(), &parsed)
                    .is_ok();
                if matches {
                    self.rows.set_hash(id, &secret_hash(id, secret))?;
                }
                matches
            }
        };
        if !matches {
            return Ok(Err(Refusal::WrongSecret { id: id.to_string() }));
        }
        Ok(Ok(Caller {
            key_id: info.id,
            role: info.role,
            scope: info.scope,
        }))
    }
}

/// A presented key's row id and secret: `fgk_<id>_<secret>`, or a UUID (a CompreFace key,
/// whose id is derived from it).
fn presented_parts(presented: &str) -> Option<(String, String)> {
    if let Some((id, secret)) = presented
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.split_once('_'))
    {
        return Some((id.to_string(), secret.to_string()));
    }
    let uuid = uuid::Uuid::try_parse(presented).ok()?;
    let key = uuid.hyphenated().to_string();
    Some((uuid_key_id(&key), key))
}

/// The row id a presented key names, if it is shaped like a key at all (for counting
/// failures against the key).
pub fn presented_id(presented: &str) -> Option<String> {
    presented_parts(presented).map(|(id, _)| id)
}

/// Whether a presented key is shaped like a CompreFace key (a UUID).
pub fn is_uuid_key(presented: &str) -> bool {
    uuid::Uuid::try_parse(presented).is_ok()
}

/// The row id of a UUID key: a one-way hash of it, marked so it cannot collide with the ids
/// of `fgk_` keys (16 hex digits).
fn uuid_key_id(uuid: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"facegate uuid key id v1\0");
    hasher.update(uuid.as_bytes());
    format!("u{}", &hex(&hasher.finalize())[..16])
}

/// The stored form of a key's secret: SHA-256 over a label, the id and the secret (the id in it,
/// so a hash copied to another row does not match there).
fn secret_hash(id: &str, secret: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"facegate api key v1\0");
    hasher.update(id.as_bytes());
    hasher.update(b"\0");
    hasher.update(secret.as_bytes());
    format!("{SHA256_HASH}{}", hex(&hasher.finalize()))
}

impl Rows {
    /// `role` as stored: a role name, with `@scope` for scoped keys.
    fn insert(&self, id: &str, role: &str, label: &str, hash: &str) -> Result<(), KeyError> {
        Ok(self.0.insert_key(id, role, label, hash)?)
    }

    fn list(&self) -> Result<Vec<KeyInfo>, KeyError> {
        Ok(self.0.keys()?.into_iter().map(|r| row(r).0).collect())
    }

    /// Whether the key went from active to revoked.
    fn revoke(&self, id: &str) -> Result<bool, KeyError> {
        Ok(self.0.revoke_key(id)?)
    }

    fn set_hash(&self, id: &str, hash: &str) -> Result<(), KeyError> {
        Ok(self.0.set_key_hash(id, hash)?)
    }

    fn find(&self, id: &str) -> Result<Option<Row>, KeyError> {
        Ok(self.0.key(id)?.map(row))
    }
}

fn row(record: KeyRecord) -> Row {
    let (role, scope) = match record.role.split_once('@') {
        Some((role, scope)) => (role, Some(scope)),
        None => (record.role.as_str(), None),
    };
    let parsed_scope = scope.map(KeyScope::parse);
    let role = match (Role::parse(role), parsed_scope) {
        // An unknown role or scope (a newer facegate's) gets the least power, and a scope it
        // cannot widen.
        (Some(role), None | Some(Some(_))) => role,
        _ => Role::Verify,
    };
    let info = KeyInfo {
        id: record.id,
        role,
        scope: match parsed_scope {
            Some(Some(scope)) => Some(scope),
            // Unknown: still scoped, to routes nothing covers.
            Some(None) => Some(KeyScope::Unknown),
            None => None,
        },
        label: record.label,
        created: record.created,
        revoked: record.revoked,
    };
    (info, record.hash)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher, SaltString};

    #[test]
    fn keys_are_hashed_checked_and_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gallery.db");
        let store = ApiKeys::open(&GalleryLocation::Sqlite(path.clone())).unwrap();
        let created = store.create(Role::Enroll, "kiosk").unwrap();
        assert!(created.key.starts_with("fgk_"));
        let caller = store.authenticate(&created.key, false).unwrap().unwrap();
        assert_eq!(caller.role, Role::Enroll);
        assert_eq!(
            store.authenticate(&created.key, true).unwrap().unwrap(),
            caller
        );

        let mut forged = created.key.clone();
        forged.pop();
        forged.push(if created.key.ends_with('A') { 'B' } else { 'A' });
        let id = created.info.id.clone();
        assert_eq!(
            store.authenticate(&forged, true).unwrap(),
            Err(Refusal::WrongSecret { id: id.clone() })
        );
        let other_id = format!(
            "fgk_0000000000000000_{}",
            created.key.rsplit('_').next().unwrap()
        );
        assert_eq!(
            store.authenticate(&other_id, true).unwrap(),
            Err(Refusal::Unknown)
        );
        assert_eq!(
            store.authenticate("Bearer nonsense", true).unwrap(),
            Err(Refusal::Malformed)
        );

        // The database holds only the hash.
        let raw = std::fs::read(&path).unwrap();
        let secret = created.key.rsplit('_').next().unwrap();
        assert!(!raw.windows(secret.len()).any(|w| w == secret.as_bytes()));

        // A revocation from another handle (the CLI) takes effect on this one.
        let other = ApiKeys::open(&GalleryLocation::Sqlite(path.clone())).unwrap();
        other.revoke(&created.info.id).unwrap();
        assert_eq!(
            store.authenticate(&created.key, true).unwrap(),
            Err(Refusal::Revoked)
        );
        assert!(store.list().unwrap()[0].revoked.is_some());
        assert!(matches!(
            store.revoke("nope"),
            Err(KeyError::UnknownKey { .. })
        ));
    }

    #[test]
    fn keys_with_argon2_hashes_work_and_are_rehashed_on_first_use() {
        let dir = tempfile::tempdir().unwrap();
        let store = ApiKeys::open(&GalleryLocation::Sqlite(dir.path().join("g.db"))).unwrap();
        let (id, secret) = ("00112233aabbccdd", "an-earlier-versions-secret");
        let salt = SaltString::encode_b64(&[7u8; 16]).unwrap();
        let argon2 = Argon2::default()
            .hash_password(secret.as_bytes(), &salt)
            .unwrap()
            .to_string();
        store.rows.insert(id, "verify", "old", &argon2).unwrap();
        let key = format!("{PREFIX}{id}_{secret}");
        let wrong = format!("{PREFIX}{id}_not-it");

        assert_eq!(
            store.authenticate(&key, false).unwrap(),
            Err(Refusal::SlowCheckRefused { id: id.into() }),
            "no argon2 when only cheap checks are allowed"
        );
        assert_eq!(
            store.authenticate(&wrong, true).unwrap(),
            Err(Refusal::WrongSecret { id: id.into() })
        );
        assert_eq!(
            store.rows.find(id).unwrap().unwrap().1,
            argon2,
            "a failure changes nothing"
        );
        assert!(store.authenticate(&key, true).unwrap().is_ok());
        let rehashed = store.rows.find(id).unwrap().unwrap().1;
        assert!(rehashed.starts_with(SHA256_HASH), "{rehashed}");
        assert!(
            store.authenticate(&key, false).unwrap().is_ok(),
            "now a cheap check"
        );
        assert!(store.authenticate(&wrong, false).unwrap().is_err());
    }

    #[test]
    fn a_hash_copied_to_another_key_does_not_match_there() {
        let dir = tempfile::tempdir().unwrap();
        let store = ApiKeys::open(&GalleryLocation::Sqlite(dir.path().join("g.db"))).unwrap();
        let a = store.create(Role::Verify, "a").unwrap();
        let b = store.create(Role::Admin, "b").unwrap();
        let a_hash = store.rows.find(&a.info.id).unwrap().unwrap().1;
        store.rows.set_hash(&b.info.id, &a_hash).unwrap();
        let a_secret = a.key.rsplit('_').next().unwrap();
        let as_b = format!("{PREFIX}{}_{a_secret}", b.info.id);
        assert!(store.authenticate(&as_b, true).unwrap().is_err());
    }

    #[test]
    fn compreface_keys_are_uuids_scoped_to_their_service() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.db");
        let store = ApiKeys::open(&GalleryLocation::Sqlite(path.clone())).unwrap();
        let scope = KeyScope::CompreFace(CompreFaceService::Detection);
        let created = store.create_scoped(Role::Verify, scope, "cam").unwrap();
        let uuid = uuid::Uuid::try_parse(&created.key).unwrap();
        assert_eq!(uuid.get_version_num(), 4);
        assert_eq!(created.info.scope, Some(scope));
        let caller = store.authenticate(&created.key, false).unwrap().unwrap();
        assert_eq!((caller.role, caller.scope), (Role::Verify, Some(scope)));
        assert_eq!(
            store
                .authenticate(&created.key.to_uppercase(), false)
                .unwrap(),
            Ok(caller)
        );
        // The id does not show the key; the database holds neither.
        assert!(!created.key.contains(&created.info.id[1..]));
        let raw = std::fs::read(&path).unwrap();
        assert!(!raw.windows(36).any(|w| w == created.key.as_bytes()));
        // Another UUID is unknown.
        let other = uuid::Uuid::new_v4().to_string();
        assert_eq!(
            store.authenticate(&other, true).unwrap(),
            Err(Refusal::Unknown)
        );

        assert!(scope.covers("/api/v1/detection/detect"));
        assert!(!scope.covers("/api/v1/recognition/recognize"));
        assert!(!scope.covers("/v1/detect"));
    }

    #[test]
    fn a_scope_or_role_from_a_newer_version_gives_the_least_power() {
        let record = |role: &str| KeyRecord {
            id: "x".into(),
            role: role.into(),
            label: String::new(),
            created: String::new(),
            revoked: None,
            hash: String::new(),
        };
        let (info, _) = row(record("admin@compreface:recognition"));
        assert_eq!(info.role, Role::Admin);
        let (info, _) = row(record("admin@somewhere-new"));
        assert_eq!(
            (info.role, info.scope),
            (Role::Verify, Some(KeyScope::Unknown))
        );
        assert!(!KeyScope::Unknown.covers("/v1/verify"));
        let (info, _) = row(record("superuser"));
        assert_eq!((info.role, info.scope), (Role::Verify, None));
    }

    #[test]
    fn roles_include_the_ones_below() {
        assert!(Role::Admin.allows(Role::Enroll));
        assert!(Role::Enroll.allows(Role::Verify));
        assert!(Role::Enroll.allows(Role::Identify));
        assert!(Role::Identify.allows(Role::Verify));
        assert!(!Role::Verify.allows(Role::Identify));
        assert!(!Role::Verify.allows(Role::Enroll));
        assert!(!Role::Enroll.allows(Role::Admin));
    }
}
