//! The `facegate` command-line tool.

mod bench;
mod cli;
mod commands;
mod context;
mod demo;
mod eval;
mod live;
mod progress;
mod report;
mod serve;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // A server's access log is its normal output; other commands stay quiet.
    let serving = matches!(cli.command, cli::Command::Serve(_));
    // A closed pipe (`facegate list | head -1`) ends a command quietly, as it ends any Unix
    // tool. The server keeps Rust's default (the signal ignored): a client that hangs up is an
    // error on its connection, not the end of the process.
    #[cfg(unix)]
    if !serving {
        // SAFETY: restores the default disposition of one signal, before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    limit_malloc_arenas();
    let level = match cli.global.verbose {
        0 if serving => "info",
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("FACEGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .init();
    let json = cli.global.json;
    match commands::run(cli) {
        Ok(code) => code,
        Err(err) => {
            report_error(&err, json);
            ExitCode::from(2)
        }
    }
}

/// Errors go to stderr as text, with what to do about them in this tool's terms; with `--json`
/// also to stdout as `{"error": {code, message}}`.
fn report_error(err: &anyhow::Error, json: bool) {
    let code = err
        .chain()
        .find_map(|e| e.downcast_ref::<facegate::Error>())
        .map_or("error", facegate::Error::code);
    let message = match hint(code) {
        Some(hint) => format!("{err:#}; {hint}"),
        None => format!("{err:#}"),
    };
    eprintln!("error: {message}");
    if json {
        let doc = serde_json::json!({ "error": { "code": code, "message": message } });
        println!("{doc}");
    }
}

/// The command line's advice for an error code: the library's messages name no front end's
/// flags or commands, so each front end says how its users fix things.
fn hint(code: &str) -> Option<&'static str> {
    Some(match code {
        "several_faces" => "crop the photo, or pass --largest to use the largest face",
        "face_too_small" => "lower --min-face-size to accept smaller faces",
        "poor_quality" => "pass --quality off to store it anyway",
        "unknown_person" => "`facegate list` shows who is enrolled",
        "empty_gallery" => "enroll someone with `facegate enroll NAME PHOTO`",
        "model_mismatch" => "use the gallery's model (--model), or another --gallery",
        "key_missing" => "set FACEGATE_KEY (64 hex digits), FACEGATE_KEY_FILE or --key-file to the gallery's key",
        "wrong_key" => "give the gallery's key with --key-file; `facegate gallery rekey` changes it",
        "not_encrypted" => "encrypt the templates once with `facegate gallery rekey --new-key-file FILE` (no current key given), or leave the key out",
        "invalid_key" => "`facegate gallery keygen` makes a key; `facegate gallery rekey` rotates one",
        "template_tampered" => "`facegate forget NAME` removes the person; then enroll the photo again",
        "audit_key_mismatch" => "give the log's audit key with --audit-key-file (FACEGATE_AUDIT_KEY_FILE); if it is lost, `facegate audit restart-chain --yes` starts a new chain",
        _ => return None,
    })
}

/// glibc gives each thread that allocates its own heap, up to eight per core, and keeps what
/// is freed in each. ONNX Runtime's thread pools (one per network) then hold several copies of
/// the largest buffers they ever used: over a video stream, a few hundred MiB more than the
/// work needs (docs/PERFORMANCE.md, "Video"). One heap per core keeps the cores busy and the
/// memory bounded. `MALLOC_ARENA_MAX` in the environment still decides when set.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cores = libc::c_int::try_from(cores).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only changes a tuning parameter of the allocator; called before
        // any thread is started.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, cores);
        }
    }
}
