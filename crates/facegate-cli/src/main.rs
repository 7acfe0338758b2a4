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

/// Errors go to stderr as text; with `--json` also to stdout as `{"error": {code, message}}`.
fn report_error(err: &anyhow::Error, json: bool) {
    let code = err
        .chain()
        .find_map(|e| e.downcast_ref::<facegate::Error>())
        .map_or("error", facegate::Error::code);
    let message = format!("{err:#}");
    eprintln!("error: {message}");
    if json {
        let doc = serde_json::json!({ "error": { "code": code, "message": message } });
        println!("{doc}");
    }
}
