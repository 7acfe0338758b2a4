//! Encryption at rest of template embeddings: AES-256-GCM, a fresh random nonce per template,
//! the person and model bound in as associated data (a template moved to another person, or
//! altered, fails to open instead of matching).
//!
//! Only embeddings are sealed: names, photo hashes and dates stay queryable, so listing people
//! works without the key. A gallery records the id of its key (a hash of it, never the key),
//! so a wrong key is refused before anything is decrypted.

use std::fmt;
use std::path::Path;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

use crate::GalleryError;

/// The environment variable holding a key (64 hex digits).
pub const KEY_ENV: &str = "FACEGATE_KEY";
/// The environment variable naming a file that holds a key.
pub const KEY_FILE_ENV: &str = "FACEGATE_KEY_FILE";

/// 256 bits written as 64 hex digits (surrounding whitespace ignored); the reason when not.
pub(crate) fn parse_hex_key(text: &str) -> Result<[u8; 32], String> {
    let text = text.trim();
    if text.len() != 64 {
        return Err(format!(
            "a key is 64 hex digits (256 bits), this one has {} characters",
            text.chars().count()
        ));
    }
    let mut bytes = [0u8; 32];
    for (i, pair) in text.as_bytes().chunks_exact(2).enumerate() {
        let digits = std::str::from_utf8(pair).ok();
        bytes[i] = digits
            .and_then(|d| u8::from_str_radix(d, 16).ok())
            .ok_or_else(|| "a key may only contain hex digits 0-9 and a-f".to_string())?;
    }
    Ok(bytes)
}

/// First byte of every sealed template, so a later format can be told apart.
const FORMAT_V1: u8 = 1;
const TAG_LEN: usize = 16;

/// A 256-bit key for template encryption.
pub struct TemplateKey {
    key: LessSafeKey,
    id: String,
}

impl fmt::Debug for TemplateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TemplateKey({})", self.id)
    }
}

impl TemplateKey {
    /// A key from 64 hex digits (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<TemplateKey, GalleryError> {
        let bytes = parse_hex_key(text).map_err(|reason| GalleryError::InvalidKey { reason })?;
        TemplateKey::from_bytes(&bytes)
    }

    /// A key read from a file holding 64 hex digits.
    pub fn from_file(path: &Path) -> Result<TemplateKey, GalleryError> {
        let unreadable = |source| GalleryError::KeyFile {
            path: path.display().to_string(),
            source,
        };
        let exposed = crate::private::exposed_bits(path).map_err(unreadable)?;
        if exposed != 0 {
            return Err(GalleryError::KeyFileExposed {
                path: path.display().to_string(),
                mode: file_mode(path).unwrap_or(exposed),
            });
        }
        let text = std::fs::read_to_string(path).map_err(unreadable)?;
        TemplateKey::from_hex(&text)
    }

    /// The key named by `FACEGATE_KEY` or `FACEGATE_KEY_FILE`, if either is set.
    pub fn from_env() -> Result<Option<TemplateKey>, GalleryError> {
        if let Some(text) = std::env::var_os(KEY_ENV).filter(|v| !v.is_empty()) {
            let text = text.to_str().ok_or_else(|| GalleryError::InvalidKey {
                reason: format!("{KEY_ENV} is not valid text"),
            })?;
            return TemplateKey::from_hex(text).map(Some);
        }
        match std::env::var_os(KEY_FILE_ENV).filter(|v| !v.is_empty()) {
            Some(path) => TemplateKey::from_file(Path::new(&path)).map(Some),
            None => Ok(None),
        }
    }

    /// A new random key, as 64 hex digits.
    pub fn generate_hex() -> Result<String, GalleryError> {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| GalleryError::Randomness)?;
        Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    fn from_bytes(bytes: &[u8; 32]) -> Result<TemplateKey, GalleryError> {
        let unbound =
            UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| GalleryError::InvalidKey {
                reason: "the key was refused by the cipher".into(),
            })?;
        let mut hashed = b"facegate template key id\0".to_vec();
        hashed.extend_from_slice(bytes);
        let digest = ring::digest::digest(&ring::digest::SHA256, &hashed);
        let id = digest.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(TemplateKey {
            key: LessSafeKey::new(unbound),
            id,
        })
    }

    /// A short public fingerprint of the key (16 hex digits of a hash): safe to store and show.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Encrypts one embedding of `person`, made by `model_id`.
    pub fn seal(
        &self,
        embedding: &[f32],
        person: &str,
        model_id: &str,
    ) -> Result<Vec<u8>, GalleryError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| GalleryError::Randomness)?;
        let mut sealed = Vec::with_capacity(1 + NONCE_LEN + embedding.len() * 4 + TAG_LEN);
        sealed.push(FORMAT_V1);
        sealed.extend_from_slice(&nonce);
        let mut body: Vec<u8> = embedding.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(associated_data(person, model_id)),
                &mut body,
            )
            .map_err(|_| GalleryError::Randomness)?;
        sealed.extend_from_slice(&body);
        Ok(sealed)
    }

    /// Decrypts and checks one sealed embedding; `None` when it fails its integrity check
    /// (altered, moved to another person or model, or sealed with another key).
    pub fn open(&self, sealed: &[u8], person: &str, model_id: &str) -> Option<Vec<f32>> {
        let rest = sealed.strip_prefix(&[FORMAT_V1])?;
        if rest.len() < NONCE_LEN + TAG_LEN {
            return None;
        }
        let (nonce, body) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut body = body.to_vec();
        let plain = self
            .key
            .open_in_place(
                nonce,
                Aad::from(associated_data(person, model_id)),
                &mut body,
            )
            .ok()?;
        if plain.len() % 4 != 0 {
            return None;
        }
        Some(
            plain
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        )
    }
}

fn associated_data(person: &str, model_id: &str) -> Vec<u8> {
    let mut aad = b"facegate template v1\0".to_vec();
    aad.extend_from_slice(model_id.as_bytes());
    aad.push(0);
    aad.extend_from_slice(person.as_bytes());
    aad
}

#[cfg(unix)]
fn file_mode(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    Some(std::fs::metadata(path).ok()?.permissions().mode() & 0o777)
}

#[cfg(not(unix))]
fn file_mode(_path: &Path) -> Option<u32> {
    None
}

/// Whether `key` is the right one for `gallery` (the same rules every read and write applies),
/// for long-running processes to refuse to start rather than fail each request.
pub fn check_key(
    gallery: &dyn crate::Gallery,
    key: Option<&TemplateKey>,
) -> Result<(), GalleryError> {
    let stored = gallery.key_id()?;
    Sealing::resolve(stored.as_deref(), key, || {
        Ok(gallery.counts()?.templates > 0)
    })
    .map(drop)
}

/// How a gallery stores embeddings right now, resolved from the key it records and the key
/// this process was given.
pub(crate) enum Sealing<'a> {
    Plain,
    Sealed(&'a TemplateKey),
}

impl<'a> Sealing<'a> {
    /// `stored`: the key id the gallery records (none: unencrypted). `has_templates`: whether
    /// any template exists (an empty, unencrypted gallery adopts a given key).
    pub(crate) fn resolve(
        stored: Option<&str>,
        given: Option<&'a TemplateKey>,
        has_templates: impl FnOnce() -> Result<bool, GalleryError>,
    ) -> Result<Sealing<'a>, GalleryError> {
        match (stored, given) {
            (None, None) => Ok(Sealing::Plain),
            (Some(stored), Some(key)) if stored == key.id() => Ok(Sealing::Sealed(key)),
            (Some(stored), Some(key)) => Err(GalleryError::WrongKey {
                gallery_key: stored.to_string(),
                given_key: key.id().to_string(),
            }),
            (Some(stored), None) => Err(GalleryError::KeyMissing {
                gallery_key: stored.to_string(),
            }),
            (None, Some(key)) => match has_templates()? {
                false => Ok(Sealing::Sealed(key)),
                true => Err(GalleryError::NotEncrypted),
            },
        }
    }

    pub(crate) fn encode(
        &self,
        embedding: &[f32],
        person: &str,
        model_id: &str,
    ) -> Result<Vec<u8>, GalleryError> {
        match self {
            Sealing::Plain => Ok(embedding.iter().flat_map(|v| v.to_le_bytes()).collect()),
            Sealing::Sealed(key) => key.seal(embedding, person, model_id),
        }
    }

    /// The embedding in `blob` (`dimension` values), checked.
    pub(crate) fn decode(
        &self,
        blob: &[u8],
        dimension: usize,
        person: &str,
        model_id: &str,
        template_id: i64,
    ) -> Result<Vec<f32>, GalleryError> {
        let tampered = || GalleryError::TemplateTampered {
            person: person.to_string(),
            id: template_id,
        };
        let values = match self {
            Sealing::Plain => {
                if blob.len() != dimension * 4 {
                    return Err(tampered());
                }
                blob.chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect()
            }
            Sealing::Sealed(key) => key.open(blob, person, model_id).ok_or_else(tampered)?,
        };
        if values.len() != dimension {
            return Err(tampered());
        }
        Ok(values)
    }

    pub(crate) fn key_id(&self) -> Option<&str> {
        match self {
            Sealing::Plain => None,
            Sealing::Sealed(key) => Some(key.id()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> TemplateKey {
        TemplateKey::from_hex(&TemplateKey::generate_hex().unwrap()).unwrap()
    }

    #[test]
    fn sealed_embeddings_open_only_for_their_person_model_and_key() {
        let k = key();
        let embedding = vec![0.25f32, -1.5, 3.0];
        let sealed = k.seal(&embedding, "alice", "m1").unwrap();
        assert_eq!(sealed.len(), 1 + 12 + 12 + 16);
        assert_eq!(k.open(&sealed, "alice", "m1"), Some(embedding.clone()));
        assert_eq!(
            k.open(&sealed, "bob", "m1"),
            None,
            "moved to another person"
        );
        assert_eq!(k.open(&sealed, "alice", "m2"), None, "another model");
        assert_eq!(key().open(&sealed, "alice", "m1"), None, "another key");
        for i in 0..sealed.len() {
            let mut flipped = sealed.clone();
            flipped[i] ^= 0x01;
            assert_eq!(k.open(&flipped, "alice", "m1"), None, "bit {i} flipped");
        }
        assert_eq!(k.open(&sealed[..20], "alice", "m1"), None);
        assert_eq!(k.open(&[], "alice", "m1"), None);
        let again = k.seal(&embedding, "alice", "m1").unwrap();
        assert_ne!(sealed, again, "every template gets its own nonce");
        let plain: Vec<u8> = embedding.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert!(!sealed.windows(plain.len()).any(|w| w == plain));
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gallery.key");
        std::fs::write(&path, TemplateKey::generate_hex().unwrap()).unwrap();
        for (mode, refused) in [
            (0o644, true),
            (0o640, true),
            (0o604, true),
            (0o600, false),
            (0o400, false),
        ] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            match TemplateKey::from_file(&path) {
                Err(GalleryError::KeyFileExposed { mode: shown, .. }) => {
                    assert!(refused, "mode {mode:o} refused");
                    assert_eq!(shown, mode);
                }
                Ok(_) => assert!(!refused, "mode {mode:o} accepted"),
                Err(other) => panic!("mode {mode:o}: {other}"),
            }
        }
    }

    #[test]
    fn keys_are_parsed_strictly_and_identified_stably() {
        let hex = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";
        let a = TemplateKey::from_hex(hex).unwrap();
        let b = TemplateKey::from_hex(&format!("  {}\n", hex.to_lowercase())).unwrap();
        assert_eq!(a.id(), b.id());
        assert_eq!(a.id().len(), 16);
        assert_ne!(a.id(), key().id());
        for bad in ["", "abc", &hex[..62], &format!("{}zz", &hex[..62])] {
            let err = TemplateKey::from_hex(bad).unwrap_err();
            assert!(matches!(err, GalleryError::InvalidKey { .. }), "{err}");
        }
        assert!(
            !format!("{a:?}").contains("0011"),
            "Debug must not show the key"
        );
    }

    #[test]
    fn the_key_rules() {
        let k = key();
        let other = key();
        let ok = || Ok(true);
        assert!(matches!(
            Sealing::resolve(None, None, ok),
            Ok(Sealing::Plain)
        ));
        assert!(matches!(
            Sealing::resolve(Some(k.id()), Some(&k), ok),
            Ok(Sealing::Sealed(_))
        ));
        assert!(matches!(
            Sealing::resolve(Some(k.id()), Some(&other), ok),
            Err(GalleryError::WrongKey { .. })
        ));
        assert!(matches!(
            Sealing::resolve(Some(k.id()), None, ok),
            Err(GalleryError::KeyMissing { .. })
        ));
        assert!(matches!(
            Sealing::resolve(None, Some(&k), ok),
            Err(GalleryError::NotEncrypted)
        ));
        assert!(matches!(
            Sealing::resolve(None, Some(&k), || Ok(false)),
            Ok(Sealing::Sealed(_))
        ));
        let sealed = Sealing::Sealed(&k);
        let blob = sealed.encode(&[1.0, 2.0], "p", "m").unwrap();
        assert_eq!(sealed.decode(&blob, 2, "p", "m", 7).unwrap(), [1.0, 2.0]);
        assert!(matches!(
            sealed.decode(&blob, 3, "p", "m", 7),
            Err(GalleryError::TemplateTampered { id: 7, .. })
        ));
        assert!(matches!(
            Sealing::Plain.decode(&blob, 2, "p", "m", 7),
            Err(GalleryError::TemplateTampered { .. })
        ));
    }
}
