//! Files only their owner can read.
//!
//! A gallery file holds face templates (unencrypted unless a key is set), the audit log and the
//! hashes of API keys; the configuration and the evaluation caches beside it hold thresholds and
//! embeddings. facegate creates every such file with mode 0600 and every directory it creates
//! for them with mode 0700, whatever the process's umask. A file that already exists and can be
//! read by others is narrowed to 0600 when facegate opens it (and a warning says so): SQLite
//! gives the `-wal` and `-shm` files it creates the mode of the database file, so narrowing the
//! database is what keeps those private too.
//!
//! Directories that already exist are left as they are: a gallery placed in a shared folder on
//! purpose keeps that folder's mode, only the files in it are narrowed.

use std::io;
use std::path::{Path, PathBuf};

/// SQLite's companions of a database file, which hold recent writes in the clear.
const SQLITE_COMPANIONS: [&str; 3] = ["-wal", "-shm", "-journal"];

/// Creates `dir` and any missing parents, each new one readable by its owner only.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Makes sure the SQLite database at `path` (and the companions SQLite keeps beside it) can be
/// read by their owner only: creates the database empty with mode 0600 if it does not exist,
/// and narrows it and its companions to 0600 if they do. Creates the parent directory as
/// [`create_dir_all`] does.
pub fn prepare_database(path: &Path) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        create_dir_all(parent)?;
    }
    create_private(path)?;
    for suffix in SQLITE_COMPANIONS {
        let mut companion = path.as_os_str().to_owned();
        companion.push(suffix);
        let companion = PathBuf::from(companion);
        if companion.exists() {
            narrow(&companion)?;
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically (a temporary file beside it, then a rename), the file
/// readable by its owner only.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        create_dir_all(parent)?;
    }
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let _ = std::fs::remove_file(&partial);
    {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&partial)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&partial, path)
}

/// Creates `path` empty with mode 0600 if it is missing; narrows it to 0600 if it exists.
fn create_private(path: &Path) -> io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => narrow(path),
        Err(err) => Err(err),
    }
}

/// Removes every permission of group and others from an existing file.
#[cfg(unix)]
fn narrow(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)?.permissions().mode();
    if mode & 0o077 == 0 {
        return Ok(());
    }
    match std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700)) {
        Ok(()) => tracing::warn!(
            "{} could be read by other users (mode {:o}); it is now readable by its owner only",
            path.display(),
            mode & 0o777
        ),
        // Another user's file, opened to read: theirs to protect, not a reason to refuse.
        Err(err) if err.kind() == io::ErrorKind::PermissionDenied => tracing::warn!(
            "{} can be read by other users (mode {:o}) and is not yours to change; its owner should `chmod 600` it",
            path.display(),
            mode & 0o777
        ),
        Err(err) => return Err(err),
    }
    Ok(())
}

#[cfg(not(unix))]
fn narrow(_path: &Path) -> io::Result<()> {
    Ok(())
}

/// The permission bits of `path` that group and others have (0 when only the owner has any).
#[cfg(unix)]
pub fn exposed_bits(path: &Path) -> io::Result<u32> {
    use std::os::unix::fs::PermissionsExt;
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o077)
}

#[cfg(not(unix))]
pub fn exposed_bits(_path: &Path) -> io::Result<u32> {
    Ok(0)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn new_directories_and_databases_are_the_owners_only() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("a/b/gallery.db");
        prepare_database(&db).unwrap();
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        assert_eq!(mode(&dir.path().join("a/b")), 0o700);
        assert_eq!(mode(&db), 0o600);
        assert_eq!(std::fs::metadata(&db).unwrap().len(), 0);
    }

    #[test]
    fn existing_files_are_narrowed_and_existing_directories_kept() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let db = dir.path().join("gallery.db");
        let wal = dir.path().join("gallery.db-wal");
        for file in [&db, &wal] {
            std::fs::write(file, b"data").unwrap();
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        prepare_database(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
        assert_eq!(mode(&wal), 0o600);
        assert_eq!(std::fs::read(&db).unwrap(), b"data", "contents kept");
        assert_eq!(
            mode(dir.path()),
            0o755,
            "an existing folder is the user's choice"
        );
        assert_eq!(exposed_bits(&db).unwrap(), 0);
    }

    #[test]
    fn atomic_writes_are_the_owners_only_and_replace_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("home/config.json");
        write_atomically(&config, b"one").unwrap();
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_atomically(&config, b"two").unwrap();
        assert_eq!(std::fs::read(&config).unwrap(), b"two");
        assert_eq!(mode(&config), 0o600);
        assert_eq!(mode(&dir.path().join("home")), 0o700);
        assert!(!dir.path().join("home/config.json.partial").exists());
    }
}
