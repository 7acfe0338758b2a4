//! The attacks of the second security review, each tried against the real binary and each
//! required to fail: a flood of wrong API keys, slow and idle connections, more connections than
//! allowed, gallery files other users could read, a key file other users could read, names that
//! look like other names, and secrets handed to child processes.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{agent, create_key, facegate, home, photo_path, ServeProcess};

fn address(server: &ServeProcess) -> SocketAddr {
    server
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("the server's address")
}

fn people_status(base: &str, key: &str) -> (u16, Option<String>) {
    let response = agent()
        .get(format!("{base}/v1/people"))
        .header("Authorization", &format!("Bearer {key}"))
        .call()
        .expect("HTTP request");
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (response.status().as_u16(), retry_after)
}

#[test]
fn a_flood_of_wrong_keys_is_cheap_limited_and_never_locks_out_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let gallery = dir.path().join("gallery.db");
    let (id, key) = create_key(&gallery, "identify");
    let server = ServeProcess::start(&gallery, &["--auth-failure-limit", "30"]);
    assert_eq!(people_status(&server.base, &key).0, 200);
    let (idle_kib, _) = server.memory_kib();

    // 400 wrong secrets for the real key id, 20 at a time.
    let wrong = format!("fgk_{id}_{}", "A".repeat(43));
    let statuses: Vec<(u16, Option<String>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..20)
            .map(|_| {
                scope.spawn(|| {
                    (0..20)
                        .map(|_| people_status(&server.base, &wrong))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let (_, peak_kib) = server.memory_kib();
    let unauthorized = statuses.iter().filter(|(s, _)| *s == 401).count();
    let limited: Vec<_> = statuses.iter().filter(|(s, _)| *s == 429).collect();
    println!(
        "400 wrong keys: {unauthorized} x 401, {} x 429; memory idle {idle_kib} KiB, peak {peak_kib} KiB",
        limited.len()
    );
    assert_eq!(unauthorized + limited.len(), 400, "{statuses:?}");
    assert!(
        unauthorized <= 60,
        "the limit held: {unauthorized} answered 401"
    );
    assert!(
        limited.iter().all(|(_, retry)| retry.is_some()),
        "429s say when to retry"
    );
    assert!(
        peak_kib.saturating_sub(idle_kib) < 100 * 1024,
        "memory grew from {idle_kib} to {peak_kib} KiB"
    );

    // The key's holder, at the very address that failed, still gets in; the attacker does not.
    assert_eq!(people_status(&server.base, &key).0, 200);
    assert_eq!(people_status(&server.base, &wrong).0, 429);
}

/// Waits until the server closes `stream` (EOF or reset), returning how long it took, or
/// `None` if it is still open after `limit`.
fn closed_within(stream: &mut TcpStream, started: Instant, limit: Duration) -> Option<Duration> {
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buffer = [0u8; 4096];
    while started.elapsed() < limit {
        match stream.read(&mut buffer) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => continue, // a 408 before the close
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Some(started.elapsed()),
        }
    }
    None
}

#[test]
fn slow_headers_and_idle_connections_are_closed_after_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServeProcess::start(
        &dir.path().join("gallery.db"),
        &["--insecure-no-auth", "--header-timeout", "2"],
    );
    let addr = address(&server);
    let started = Instant::now();
    let mut slow: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                .unwrap();
            s
        })
        .collect();
    let mut silent: Vec<TcpStream> = (0..20).map(|_| TcpStream::connect(addr).unwrap()).collect();
    // One finished request, then the connection is kept alive and left idle.
    let mut kept = TcpStream::connect(addr).unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 12];
    kept.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");

    let limit = Duration::from_secs(20);
    let mut times = Vec::new();
    let kinds = ["slow"; 20]
        .into_iter()
        .chain(["silent"; 20])
        .chain(["kept-alive"]);
    for (stream, kind) in slow
        .iter_mut()
        .chain(silent.iter_mut())
        .chain([&mut kept])
        .zip(kinds)
    {
        let closed = closed_within(stream, started, limit);
        assert!(
            closed.is_some(),
            "a {kind} connection was still open after {limit:?}"
        );
        times.extend(closed);
    }
    let slowest = times.iter().max().unwrap();
    println!(
        "41 slow, silent and idle connections closed; the last after {slowest:?} (timeout 2 s)"
    );
    assert!(
        *slowest >= Duration::from_secs(1),
        "closed before the timeout: {slowest:?}"
    );
    // The server still answers.
    assert_eq!(
        agent()
            .get(format!("{}/healthz", server.base))
            .call()
            .unwrap()
            .status()
            .as_u16(),
        200
    );
}

#[test]
fn connections_beyond_the_limit_are_closed_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServeProcess::start(
        &dir.path().join("gallery.db"),
        &[
            "--insecure-no-auth",
            "--max-connections",
            "4",
            "--header-timeout",
            "30",
        ],
    );
    let addr = address(&server);
    let held: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut extra = TcpStream::connect(addr).unwrap();
    let _ = extra.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let closed = closed_within(&mut extra, Instant::now(), Duration::from_secs(10));
    assert!(closed.is_some(), "a fifth connection was served");
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    let response = agent()
        .get(format!("{}/healthz", server.base))
        .call()
        .unwrap();
    assert_eq!(
        response.status().as_u16(),
        200,
        "slots come back when connections close"
    );
}

/// Runs `facegate --home HOME ARGS` under a permissive umask (0000), as a careless service
/// manager might start it.
fn facegate_with_umask_0(home_dir: &Path, args: &[&str]) -> (i32, String) {
    let output = Command::new("sh")
        .arg("-c")
        .arg("umask 0000 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_facegate"))
        .arg("--home")
        .arg(home_dir)
        .args(args)
        .env("FACEGATE_HOME", home_dir)
        .env_remove("FACEGATE_GALLERY")
        .env_remove("FACEGATE_KEY")
        .env_remove("FACEGATE_KEY_FILE")
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[cfg(unix)]
#[test]
fn gallery_files_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The models come from the shared test home; the gallery goes to a new folder.
    std::fs::create_dir_all(&data).unwrap();
    std::os::unix::fs::symlink(home().join("models"), data.join("models")).unwrap();
    let gallery = data.join("new/gallery.db");
    let photo = photo_path("train", "ben_afflek", 0);
    let (code, stderr) = facegate_with_umask_0(
        &data,
        &[
            "--gallery",
            gallery.to_str().unwrap(),
            "enroll",
            "ben",
            photo.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let (code, stderr) = facegate_with_umask_0(
        &data,
        &[
            "--gallery",
            gallery.to_str().unwrap(),
            "keys",
            "create",
            "--role",
            "verify",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data.join("new")), 0o700, "a folder facegate creates");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(data.join("new")).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
        checked.push(path.file_name().unwrap().to_string_lossy().into_owned());
    }
    checked.sort();
    println!("owner-only: {checked:?}");
    assert!(checked.contains(&"gallery.db".to_string()), "{checked:?}");

    // A gallery made readable by others (by hand, or by an older version) is narrowed on open.
    std::fs::set_permissions(&gallery, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, stderr) =
        facegate_with_umask_0(&data, &["--gallery", gallery.to_str().unwrap(), "list"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(mode(&gallery), 0o600);
    assert!(stderr.contains("readable by its owner only"), "{stderr}");
}

#[cfg(unix)]
#[test]
fn a_key_file_others_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let gallery = dir.path().join("gallery.db");
    let key = dir.path().join("gallery.key");
    let photo = photo_path("train", "ben_afflek", 0);
    let photo = photo.to_str().unwrap();
    let (code, _, stderr) = facegate(
        &gallery,
        &["gallery", "keygen", "--output", key.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{stderr}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, stdout, _) = facegate(
        &gallery,
        &[
            "--json",
            "--key-file",
            key.to_str().unwrap(),
            "enroll",
            "ben",
            photo,
        ],
    );
    assert_eq!(code, 2, "{stdout}");
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["error"]["code"], "invalid_key");
    let message = doc["error"]["message"].as_str().unwrap();
    assert!(message.contains("chmod 600"), "{message}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, _, stderr) = facegate(
        &gallery,
        &["--key-file", key.to_str().unwrap(), "enroll", "ben", photo],
    );
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn names_that_look_alike_are_one_person_or_refused() {
    let dir = tempfile::tempdir().unwrap();
    let gallery = dir.path().join("gallery.db");
    let (enroll_photo, probe) = (
        photo_path("train", "ben_afflek", 0),
        photo_path("train", "ben_afflek", 1),
    );
    let decomposed = "Zoe\u{301}";
    let composed = "Zo\u{e9}";
    let (code, _, stderr) = facegate(
        &gallery,
        &["enroll", decomposed, enroll_photo.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = facegate(&gallery, &["verify", composed, probe.to_str().unwrap()]);
    assert_eq!(
        code, 0,
        "the same name typed the other way is the same person: {stderr}"
    );
    let (_, stdout, _) = facegate(&gallery, &["--json", "list"]);
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    let people = doc["people"].as_array().unwrap();
    assert_eq!(people.len(), 1, "{stdout}");
    assert_eq!(people[0]["name"], composed);

    for lookalike in ["ben\u{200B}", "\u{202E}neb", "\u{FEFF}ben"] {
        let (code, stdout, _) = facegate(
            &gallery,
            &[
                "--json",
                "enroll",
                lookalike,
                enroll_photo.to_str().unwrap(),
            ],
        );
        assert_eq!(code, 2, "{lookalike:?}: {stdout}");
        let doc: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(doc["error"]["code"], "invalid_name", "{lookalike:?}");
    }
}

#[cfg(unix)]
#[test]
fn programs_facegate_runs_do_not_inherit_its_secrets() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let seen = dir.path().join("environment.txt");
    // Stand-ins for ffmpeg and ffprobe that write down the environment they were given.
    for program in ["ffmpeg", "ffprobe"] {
        let script = bin.join(program);
        std::fs::write(
            &script,
            format!("#!/bin/sh\nenv >> '{}'\nexit 1\n", seen.display()),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let gallery = dir.path().join("gallery.db");
    let secret = "ab".repeat(32);
    let output = Command::new(env!("CARGO_BIN_EXE_facegate"))
        .args(["--home", home().to_str().unwrap()])
        .args(["--gallery", gallery.to_str().unwrap()])
        .args(["enroll", "ben", "--video", "clip.mp4"])
        .env("PATH", path)
        .env("FACEGATE_KEY", &secret)
        .env(
            "FACEGATE_GALLERY",
            "postgres://user:password@127.0.0.1:1/db",
        )
        .output()
        .unwrap();
    let environment = std::fs::read_to_string(&seen).unwrap_or_else(|_| {
        panic!(
            "the stand-in was not run: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert!(environment.contains("PATH="), "{environment}");
    assert!(
        !environment.contains(&secret),
        "the template key reached ffmpeg"
    );
    assert!(!environment.contains("FACEGATE_"), "{environment}");
}

/// Sends one raw HTTP/1.1 request and returns the status line.
fn raw_status(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).unwrap();
    String::from_utf8_lossy(&head).into_owned()
}

#[test]
fn without_keys_only_loopback_same_origin_requests_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServeProcess::start(&dir.path().join("gallery.db"), &["--insecure-no-auth"]);
    let addr = address(&server);
    let people = |headers: &str| {
        raw_status(
            addr,
            &format!("GET /v1/people HTTP/1.1\r\n{headers}Connection: close\r\n\r\n"),
        )
    };
    let host = format!("Host: {addr}\r\n");
    assert_eq!(people(&host), "HTTP/1.1 200");
    // DNS rebinding: a page's own name that resolves to 127.0.0.1.
    assert_eq!(people("Host: rebound.example:8080\r\n"), "HTTP/1.1 403");
    // Cross-site requests from a page elsewhere.
    assert_eq!(
        people(&format!("{host}Origin: http://evil.example\r\n")),
        "HTTP/1.1 403"
    );
    assert_eq!(
        people(&format!("{host}Sec-Fetch-Site: cross-site\r\n")),
        "HTTP/1.1 403"
    );
    assert_eq!(
        people(&format!("{host}Origin: http://{addr}\r\n")),
        "HTTP/1.1 200"
    );
}

#[test]
fn listening_beyond_loopback_without_tls_is_warned_about() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_facegate"))
        .args(["--home", home().to_str().unwrap()])
        .args(["--gallery", dir.path().join("gallery.db").to_str().unwrap()])
        .args(["serve", "--listen", "0.0.0.0:0", "--insecure-no-auth"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut warned = false;
    for line in stderr.lines().map_while(Result::ok).take(50) {
        if line.contains("without TLS") {
            warned = true;
            break;
        }
        if line.contains("models loaded") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        warned,
        "no warning about serving without TLS beyond loopback"
    );
}

#[test]
fn edits_to_the_audit_log_are_found_by_audit_verify() {
    let dir = tempfile::tempdir().unwrap();
    let gallery = dir.path().join("gallery.db");
    let key_file = dir.path().join("keys").join("audit.key");
    let key_arg = key_file.to_str().unwrap();
    let run = |args: &[&str]| {
        let mut all = vec!["--audit-key-file", key_arg];
        all.extend_from_slice(args);
        facegate(&gallery, &all)
    };
    let (enroll_photo, probe) = (
        photo_path("train", "ben_afflek", 0),
        photo_path("train", "ben_afflek", 1),
    );
    let (code, _, stderr) = run(&["enroll", "ben", enroll_photo.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    for _ in 0..2 {
        let (code, _, stderr) = run(&["verify", "ben", probe.to_str().unwrap()]);
        assert_eq!(code, 0, "{stderr}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the audit key is created owner-only");
    }

    let verify = |extra: &[&str]| {
        let mut args = vec!["--json", "audit", "verify"];
        args.extend_from_slice(extra);
        let (code, stdout, stderr) = run(&args);
        let doc: Value = serde_json::from_str(&stdout).unwrap_or_else(|_| panic!("{stderr}"));
        (code, doc["report"].clone())
    };
    let (code, report) = verify(&[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["intact"], true);
    assert_eq!(report["verified"], 3);
    let head = format!(
        "{}:{}",
        report["head"]["id"],
        report["head"]["mac"].as_str().unwrap()
    );

    // With write access to the file: drop the guards, turn a failed match into a match and
    // remove the newest entry.
    let c = rusqlite::Connection::open(&gallery).unwrap();
    c.execute_batch(
        "DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;
         UPDATE audit SET decision = 'no_match' WHERE action = 'verify' AND id = (SELECT min(id) FROM audit WHERE action = 'verify');
         DELETE FROM audit WHERE id = (SELECT max(id) FROM audit);",
    )
    .unwrap();
    drop(c);
    let (code, report) = verify(&["--head", &head]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["intact"], false);
    assert_eq!(report["problems"][0]["problem"], "broken", "{report}");
    assert_eq!(report["problems"][1]["problem"], "missing", "{report}");
    assert_eq!(report["anchor_found"], false);

    // A different audit key may not write to this log, and does not verify it.
    let other = dir.path().join("other.key");
    let (code, stdout, _) = facegate(
        &gallery,
        &[
            "--audit-key-file",
            other.to_str().unwrap(),
            "--json",
            "verify",
            "ben",
            probe.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 2, "{stdout}");
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["error"]["code"], "audit_key_mismatch");
    // Until the chain is restarted under it on purpose (the old key lost).
    let (code, _, stderr) = facegate(
        &gallery,
        &[
            "--audit-key-file",
            other.to_str().unwrap(),
            "audit",
            "restart-chain",
            "--yes",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, _) = facegate(
        &gallery,
        &[
            "--audit-key-file",
            other.to_str().unwrap(),
            "--json",
            "audit",
            "verify",
        ],
    );
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(doc["report"]["sealed_by_earlier_keys"], 2, "{stdout}");
    assert_eq!(doc["report"]["restarts"].as_array().unwrap().len(), 1);
}
