//! Tamper evidence for the audit log.
//!
//! Every entry carries a MAC (HMAC-SHA-256) over its own fields and the MAC of the sealed entry
//! before it, keyed by an audit key that is kept outside the database. Whoever can write the
//! database but cannot read the key cannot change, insert or remove an entry in the middle of
//! the log without [`verify`] naming the first entry that no longer fits. Removing the newest
//! entries leaves a shorter chain that is still whole; [`verify`] catches that only against a
//! head recorded elsewhere ([`ChainReport::anchor_found`]), or on SQLite through its
//! never-reused ids.
//!
//! The audit key is separate from the template key, so changing the template key does not
//! break the chain. Appending writes under a lock (SQLite's write lock, a table lock on
//! PostgreSQL), so concurrent writers extend one chain.

use std::fmt;
use std::path::Path;

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use serde::Serialize;

use crate::{AuditEvent, Gallery, GalleryError};

/// The environment variable naming the audit key file.
pub const AUDIT_KEY_FILE_ENV: &str = "FACEGATE_AUDIT_KEY_FILE";

/// The action of the entry that starts a new chain under a new audit key; the entries before
/// it stay in the log but can only be checked with the key that sealed them.
pub const RESTART_ACTION: &str = "audit_chain_restart";

/// Problems listed one by one; beyond this many only the count grows.
const LISTED_PROBLEMS: usize = 100;

/// Entries read per page while verifying.
const PAGE: usize = 2000;

/// The key that seals the audit log (256 bits).
pub struct AuditKey {
    key: hmac::Key,
    id: String,
}

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuditKey({})", self.id)
    }
}

impl AuditKey {
    pub fn from_bytes(bytes: &[u8; 32]) -> AuditKey {
        let mut hashed = b"facegate audit key id\0".to_vec();
        hashed.extend_from_slice(bytes);
        let digest = ring::digest::digest(&ring::digest::SHA256, &hashed);
        AuditKey {
            key: hmac::Key::new(hmac::HMAC_SHA256, bytes),
            id: hex(&digest.as_ref()[..8]),
        }
    }

    /// The key in `path` (64 hex digits), refused when other users can read the file.
    pub fn from_file(path: &Path) -> Result<AuditKey, GalleryError> {
        let unreadable = |source| GalleryError::KeyFile {
            path: path.display().to_string(),
            source,
        };
        let exposed = crate::private::exposed_bits(path).map_err(unreadable)?;
        if exposed != 0 {
            return Err(GalleryError::KeyFileExposed {
                path: path.display().to_string(),
                mode: exposed,
            });
        }
        let text = std::fs::read_to_string(path).map_err(unreadable)?;
        let bytes =
            crate::seal::parse_hex_key(&text).map_err(|reason| GalleryError::InvalidAuditKey {
                path: path.display().to_string(),
                reason,
            })?;
        Ok(AuditKey::from_bytes(&bytes))
    }

    /// The key in `path`; when there is no such file, a new random key written there (readable
    /// by its owner only). Several processes starting at once agree on one key: the file is
    /// linked into place only if it still does not exist.
    pub fn load_or_create(path: &Path) -> Result<AuditKey, GalleryError> {
        if path.exists() {
            return AuditKey::from_file(path);
        }
        let io_error = |source| GalleryError::KeyFile {
            path: path.display().to_string(),
            source,
        };
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| GalleryError::Randomness)?;
        let mut partial = path.as_os_str().to_owned();
        partial.push(format!(".{}.partial", std::process::id()));
        let partial = std::path::PathBuf::from(partial);
        crate::private::write_atomically(&partial, format!("{}\n", hex(&bytes)).as_bytes())
            .map_err(io_error)?;
        let linked = std::fs::hard_link(&partial, path);
        let _ = std::fs::remove_file(&partial);
        match linked {
            Ok(()) => Ok(AuditKey::from_bytes(&bytes)),
            // Another process created it first: use theirs.
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                AuditKey::from_file(path)
            }
            Err(err) => Err(io_error(err)),
        }
    }

    /// A short public fingerprint of the key (16 hex digits of a hash), stored with each entry.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The MAC of `entry` (its id, time and every field) following `previous`, the MAC of the
    /// sealed entry before it (`None` for the first entry of a chain).
    pub fn seal(&self, previous: Option<&str>, entry: &AuditEvent) -> String {
        let mut context = hmac::Context::with_key(&self.key);
        context.update(b"facegate audit v1\0");
        let previous = previous.unwrap_or("");
        for field in [
            Some(previous),
            Some(entry.at.as_str()),
            Some(entry.actor.as_str()),
            Some(entry.action.as_str()),
            entry.person.as_deref(),
            entry.decision.as_deref(),
            entry.detail.as_deref(),
        ] {
            update_field(&mut context, field.map(str::as_bytes));
        }
        context.update(&entry.id.to_be_bytes());
        update_field(
            &mut context,
            entry
                .distance
                .map(|d| d.to_bits().to_be_bytes())
                .as_ref()
                .map(|b| &b[..]),
        );
        hex(context.sign().as_ref())
    }
}

/// A field that cannot run into the next: absent, or its length and then its bytes.
fn update_field(context: &mut hmac::Context, field: Option<&[u8]>) {
    match field {
        None => context.update(&[0]),
        Some(bytes) => {
            context.update(&[1]);
            context.update(&(bytes.len() as u64).to_be_bytes());
            context.update(bytes);
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The MAC and key id an entry about to be appended must carry, given the newest sealed entry
/// (its MAC) already in the log.
pub fn seal_next(key: &AuditKey, newest_mac: Option<&str>, entry: &AuditEvent) -> String {
    let previous = if entry.action == RESTART_ACTION {
        None
    } else {
        newest_mac
    };
    key.seal(previous, entry)
}

/// How a backend hands out audit entry ids, which decides what a missing id means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdAllocation {
    /// Ids follow each other without gaps and are never reused (SQLite's AUTOINCREMENT, whose
    /// counter rolls back with a failed transaction): a missing id is a removed entry.
    /// `last_assigned` is the highest id ever handed out.
    Gapless { last_assigned: i64 },
    /// Ids may skip (a PostgreSQL sequence does not roll back): a gap says nothing.
    MayHaveGaps,
}

/// What is wrong with one entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum ChainProblem {
    /// The entry carries no MAC although entries before it do: written without the audit key,
    /// or inserted by hand.
    Unsealed { id: i64 },
    /// Sealed with another audit key than the one given, after this key's chain began.
    OtherKey { id: i64, key_id: String },
    /// The MAC does not match: this entry was changed, or an entry before it was removed or
    /// inserted.
    Broken { id: i64 },
    /// Entries with ids from `first` to `last` are missing (gapless backends only).
    Missing { first: i64, last: i64 },
}

/// The newest sealed entry: record it somewhere else to catch later removal of the newest
/// entries (`--head ID:MAC` when verifying).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChainHead {
    pub id: i64,
    pub mac: String,
}

/// What [`verify`] found.
#[derive(Clone, Debug, Serialize)]
pub struct ChainReport {
    /// True when every problem list is empty (and the anchor, if one was given, was found).
    pub intact: bool,
    pub key_id: String,
    pub entries: usize,
    /// Entries verified with this key.
    pub verified: usize,
    /// Entries from before the log was sealed (older versions of facegate): nothing vouches
    /// for them.
    pub unsealed_before_chain: usize,
    /// Entries before this key's restart entry, sealed by earlier keys: checkable only with
    /// those keys.
    pub sealed_by_earlier_keys: usize,
    /// Ids of the entries where this key started a new chain.
    pub restarts: Vec<i64>,
    pub problems: Vec<ChainProblem>,
    /// Problems beyond those listed.
    pub more_problems: usize,
    pub head: Option<ChainHead>,
    /// Whether the recorded head given to [`verify`] is still in the log with the same MAC;
    /// `None` when none was given.
    pub anchor_found: Option<bool>,
}

impl ChainReport {
    /// The first entry that does not fit, if any.
    pub fn first_problem(&self) -> Option<&ChainProblem> {
        self.problems.first()
    }
}

/// Checks the whole audit log of `gallery` with `key`; `anchor`, a head recorded earlier,
/// must still be there. `progress` is told how many entries were read.
pub fn verify(
    gallery: &dyn Gallery,
    key: &AuditKey,
    anchor: Option<&ChainHead>,
    progress: &mut dyn FnMut(usize),
) -> Result<ChainReport, GalleryError> {
    // Entries sealed by other keys before this key's most recent restart are another chain's.
    let mut last_own_restart = None;
    let mut after = None;
    loop {
        let page = gallery.audit_log(after, PAGE)?;
        for e in &page {
            if e.action == RESTART_ACTION && e.key_id.as_deref() == Some(key.id()) {
                last_own_restart = Some(e.id);
            }
        }
        match page.last() {
            Some(last) if page.len() == PAGE => after = Some(last.id),
            _ => break,
        }
    }

    let mut checker = Checker::new(key, last_own_restart);
    let mut after = None;
    loop {
        let page = gallery.audit_log(after, PAGE)?;
        for e in &page {
            checker.push(e, anchor);
        }
        progress(checker.report.entries);
        match page.last() {
            Some(last) if page.len() == PAGE => after = Some(last.id),
            _ => break,
        }
    }
    if let IdAllocation::Gapless { last_assigned } = gallery.audit_id_allocation()? {
        let newest = checker.last_id.unwrap_or(0);
        if last_assigned > newest {
            checker.problem(ChainProblem::Missing {
                first: newest + 1,
                last: last_assigned,
            });
        }
    } else {
        checker.gapless = false;
    }
    Ok(checker.finish(anchor))
}

struct Checker<'k> {
    key: &'k AuditKey,
    last_own_restart: Option<i64>,
    /// The MAC of the newest sealed entry seen (the link the next one must carry).
    previous: Option<String>,
    chain_started: bool,
    last_id: Option<i64>,
    gapless: bool,
    pending_gaps: Vec<ChainProblem>,
    report: ChainReport,
}

impl<'k> Checker<'k> {
    fn new(key: &'k AuditKey, last_own_restart: Option<i64>) -> Checker<'k> {
        Checker {
            key,
            last_own_restart,
            previous: None,
            chain_started: false,
            last_id: None,
            gapless: true,
            pending_gaps: Vec::new(),
            report: ChainReport {
                intact: false,
                key_id: key.id().to_string(),
                entries: 0,
                verified: 0,
                unsealed_before_chain: 0,
                sealed_by_earlier_keys: 0,
                restarts: Vec::new(),
                problems: Vec::new(),
                more_problems: 0,
                head: None,
                anchor_found: None,
            },
        }
    }

    fn problem(&mut self, problem: ChainProblem) {
        if self.report.problems.len() < LISTED_PROBLEMS {
            self.report.problems.push(problem);
        } else {
            self.report.more_problems += 1;
        }
    }

    fn push(&mut self, e: &AuditEvent, anchor: Option<&ChainHead>) {
        self.report.entries += 1;
        let expected = self.last_id.map_or(1, |last| last + 1);
        // Up to this key's restart the log is an earlier chain's, unverifiable here as a whole.
        let in_own_chain = self.last_own_restart.is_none_or(|r| e.id > r);
        if in_own_chain {
            let last = expected - 1;
            if e.id > expected {
                // Judged at the end, once the backend says whether gaps mean anything.
                self.pending_gaps.push(ChainProblem::Missing {
                    first: last + 1,
                    last: e.id - 1,
                });
            }
        }
        self.last_id = Some(e.id);
        if let (Some(anchor), Some(mac)) = (anchor, &e.mac) {
            if anchor.id == e.id {
                self.report.anchor_found = Some(*mac == anchor.mac);
            }
        }
        let before_own_chain = self.last_own_restart.is_some_and(|r| e.id < r);
        let Some(mac) = &e.mac else {
            if self.chain_started {
                self.problem(ChainProblem::Unsealed { id: e.id });
            } else {
                self.report.unsealed_before_chain += 1;
            }
            return;
        };
        self.chain_started = true;
        if before_own_chain && e.key_id.as_deref() != Some(self.key.id()) {
            self.report.sealed_by_earlier_keys += 1;
            self.previous = Some(mac.clone());
            return;
        }
        if e.key_id.as_deref() != Some(self.key.id()) {
            self.problem(ChainProblem::OtherKey {
                id: e.id,
                key_id: e.key_id.clone().unwrap_or_default(),
            });
        } else if seal_next(self.key, self.previous.as_deref(), e) == *mac {
            self.report.verified += 1;
            if e.action == RESTART_ACTION {
                self.report.restarts.push(e.id);
            }
        } else {
            self.problem(ChainProblem::Broken { id: e.id });
        }
        // Later entries were sealed over what is stored, so one altered entry is one problem.
        self.previous = Some(mac.clone());
        self.report.head = Some(ChainHead {
            id: e.id,
            mac: mac.clone(),
        });
    }

    fn finish(mut self, anchor: Option<&ChainHead>) -> ChainReport {
        if self.gapless {
            let gaps = std::mem::take(&mut self.pending_gaps);
            for gap in gaps {
                self.problem(gap);
            }
            let mut problems = std::mem::take(&mut self.report.problems);
            problems.sort_by_key(problem_id);
            self.report.problems = problems;
        }
        if anchor.is_some() && self.report.anchor_found.is_none() {
            self.report.anchor_found = Some(false);
        }
        self.report.intact = self.report.problems.is_empty()
            && self.report.more_problems == 0
            && self.report.anchor_found != Some(false);
        self.report
    }
}

fn problem_id(problem: &ChainProblem) -> i64 {
    match problem {
        ChainProblem::Unsealed { id } | ChainProblem::OtherKey { id, .. } => *id,
        ChainProblem::Broken { id } => *id,
        ChainProblem::Missing { first, .. } => *first,
    }
}

/// Parses a recorded head written as `ID:MAC`.
pub fn parse_head(text: &str) -> Option<ChainHead> {
    let (id, mac) = text.trim().split_once(':')?;
    let mac = mac.trim().to_ascii_lowercase();
    if mac.len() != 64 || !mac.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(ChainHead {
        id: id.trim().parse().ok()?,
        mac,
    })
}

/// Refuses to write with `key` to a log whose newest sealed entry was sealed by another key:
/// the chain would break at the next entry. A restart entry ([`RESTART_ACTION`]) is the way to
/// continue with a new key on purpose.
pub fn check_key(gallery: &dyn Gallery, key: &AuditKey) -> Result<(), GalleryError> {
    match gallery.audit_newest_sealed()? {
        Some(newest) if newest.key_id.as_deref() != Some(key.id()) => {
            Err(GalleryError::AuditKeyMismatch {
                log_key: newest.key_id.unwrap_or_default(),
                given_key: key.id().to_string(),
            })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: i64, detail: &str) -> AuditEvent {
        AuditEvent {
            id,
            at: "2026-12-07T05:00:00Z".into(),
            actor: "local:test".into(),
            action: "verify".into(),
            person: Some("alice".into()),
            decision: Some("match".into()),
            distance: Some(0.5),
            detail: Some(detail.into()),
            mac: None,
            key_id: None,
        }
    }

    fn chain(key: &AuditKey, n: i64) -> Vec<AuditEvent> {
        let mut previous: Option<String> = None;
        (1..=n)
            .map(|id| {
                let mut e = entry(id, &format!("entry {id}"));
                let mac = seal_next(key, previous.as_deref(), &e);
                e.mac = Some(mac.clone());
                e.key_id = Some(key.id().to_string());
                previous = Some(mac);
                e
            })
            .collect()
    }

    fn check(key: &AuditKey, entries: &[AuditEvent], gapless: bool) -> ChainReport {
        let mut checker = Checker::new(key, None);
        checker.gapless = gapless;
        for e in entries {
            checker.push(e, None);
        }
        checker.finish(None)
    }

    #[test]
    fn an_untouched_chain_is_intact() {
        let key = AuditKey::from_bytes(&[7; 32]);
        let report = check(&key, &chain(&key, 5), true);
        assert!(report.intact, "{report:?}");
        assert_eq!(report.verified, 5);
        assert_eq!(report.head.map(|h| h.id), Some(5));
    }

    #[test]
    fn a_changed_field_breaks_exactly_that_entry() {
        let key = AuditKey::from_bytes(&[7; 32]);
        let mut entries = chain(&key, 5);
        entries[2].decision = Some("no_match".into());
        let report = check(&key, &entries, true);
        assert_eq!(report.problems, vec![ChainProblem::Broken { id: 3 }]);
        let mut entries = chain(&key, 5);
        entries[1].distance = Some(0.49);
        let report = check(&key, &entries, true);
        assert_eq!(report.problems, vec![ChainProblem::Broken { id: 2 }]);
    }

    #[test]
    fn a_removed_entry_breaks_the_next_even_with_ids_renumbered() {
        let key = AuditKey::from_bytes(&[7; 32]);
        let mut entries = chain(&key, 5);
        entries.remove(1);
        let report = check(&key, &entries, false);
        assert_eq!(report.problems, vec![ChainProblem::Broken { id: 3 }]);
        // Ids closed up to hide the gap: the MAC covers the id.
        for (i, e) in entries.iter_mut().enumerate() {
            e.id = i as i64 + 1;
        }
        assert!(!check(&key, &entries, true).intact);
    }

    #[test]
    fn gaps_count_only_where_ids_never_skip() {
        let key = AuditKey::from_bytes(&[7; 32]);
        let mut previous: Option<String> = None;
        let entries: Vec<_> = [1, 2, 5]
            .into_iter()
            .map(|id| {
                let mut e = entry(id, "x");
                let mac = seal_next(&key, previous.as_deref(), &e);
                e.mac = Some(mac.clone());
                e.key_id = Some(key.id().to_string());
                previous = Some(mac);
                e
            })
            .collect();
        assert!(check(&key, &entries, false).intact);
        let report = check(&key, &entries, true);
        assert_eq!(
            report.problems,
            vec![ChainProblem::Missing { first: 3, last: 4 }]
        );
    }

    #[test]
    fn a_forged_entry_without_the_key_is_caught() {
        let key = AuditKey::from_bytes(&[7; 32]);
        let forger = AuditKey::from_bytes(&[8; 32]);
        let mut entries = chain(&key, 3);
        let mut forged = entry(4, "forged");
        forged.mac = Some(forger.seal(entries[2].mac.as_deref(), &forged));
        forged.key_id = Some(key.id().to_string());
        entries.push(forged);
        let mut unsealed = entry(5, "inserted by hand");
        unsealed.key_id = None;
        entries.push(unsealed);
        let report = check(&key, &entries, true);
        assert_eq!(
            report.problems,
            vec![
                ChainProblem::Broken { id: 4 },
                ChainProblem::Unsealed { id: 5 }
            ]
        );
    }

    #[test]
    fn entries_from_before_sealing_are_counted_not_blamed() {
        let key = AuditKey::from_bytes(&[7; 32]);
        let mut entries = vec![entry(1, "old"), entry(2, "old")];
        let mut sealed = chain(&key, 4).split_off(2);
        let mut previous = None;
        for e in &mut sealed {
            let mac = seal_next(&key, previous.as_deref(), e);
            e.mac = Some(mac.clone());
            previous = Some(mac);
        }
        entries.extend(sealed);
        let report = check(&key, &entries, true);
        assert!(report.intact, "{report:?}");
        assert_eq!((report.unsealed_before_chain, report.verified), (2, 2));
    }

    #[test]
    fn a_head_parses_and_rejects_junk() {
        let mac = "ab".repeat(32);
        assert_eq!(
            parse_head(&format!("12:{mac}")),
            Some(ChainHead { id: 12, mac })
        );
        assert_eq!(parse_head("12:abc"), None);
        assert_eq!(parse_head("x:abc"), None);
    }
}
