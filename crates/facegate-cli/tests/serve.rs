//! `facegate serve` and `facegate keys` as a user runs them: the real binary, keys made on the
//! command line, HTTPS, graceful shutdown, and a bounded load test.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use facegate::gallery::{Gallery, SqliteGallery};
use serde_json::{json, Value};
use support::{agent, b64, create_key, facegate, photo, read, ServeProcess};

#[test]
fn keys_made_on_the_command_line_work_until_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let gallery = dir.path().join("gallery.db");
    let (id, key) = create_key(&gallery, "enroll");
    assert!(key.starts_with("fgk_"));

    let (code, stdout, _) = facegate(&gallery, &["--json", "keys", "list"]);
    assert_eq!(code, 0);
    let listed: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(listed["keys"][0]["id"], id.as_str());
    assert_eq!(listed["keys"][0]["role"], "enroll");
    assert!(!stdout.contains(&key), "keys list must never show a key");

    let server = ServeProcess::start(&gallery, &[]);
    let http = agent();
    let auth = format!("Bearer {key}");
    let (status, body) = read(
        http.post(format!("{}/v1/people", server.base))
            .header("Authorization", &auth)
            .send_json(json!({ "name": "ben", "images": [b64(&photo("train", "ben_afflek", 0))] })),
    );
    assert_eq!(status, 201, "{body}");

    let (code, _, stderr) = facegate(&gallery, &["keys", "revoke", &id]);
    assert_eq!(code, 0, "{stderr}");
    let (status, body) = read(
        http.get(format!("{}/v1/people", server.base))
            .header("Authorization", &auth)
            .call(),
    );
    assert_eq!(
        status, 401,
        "a revoked key must stop working at once: {body}"
    );

    let (code, _, stderr) = facegate(&gallery, &["keys", "revoke", "no-such-id"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("no API key with id"), "{stderr}");

    // The access log names routes and statuses, never keys, images or embeddings.
    server.terminate();
    let mut server = server;
    assert!(server.wait(Duration::from_secs(30)).is_some());
    let log = server.log().join("\n");
    assert!(
        log.contains("route=\"/v1/people\"") && log.contains("status=401"),
        "{log}"
    );
    assert!(!log.contains(&key[12..]));
    assert!(!log.contains(&b64(&photo("train", "ben_afflek", 0))[..40]));
}

#[test]
fn serves_https_with_the_given_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let gallery = dir.path().join("gallery.db");
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, certified.cert.pem()).unwrap();
    std::fs::write(&key_path, certified.key_pair.serialize_pem()).unwrap();
    let (_, key) = create_key(&gallery, "verify");
    let server = ServeProcess::start(
        &gallery,
        &[
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
        ],
    );
    assert!(
        server.base.starts_with("https://127.0.0.1:"),
        "{}",
        server.base
    );
    let port = server.base.rsplit(':').next().unwrap();
    let trusted = ureq::tls::Certificate::from_der(certified.cert.der()).to_owned();
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::Specific(Arc::new(vec![trusted])))
        .build();
    let https: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(tls)
        .build()
        .into();
    let (status, body) = read(
        https
            .post(format!("https://localhost:{port}/v1/detect"))
            .header("Authorization", format!("Bearer {key}"))
            .send_json(json!({ "image": b64(&photo("val", "madonna", 0)) })),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["faces"].as_array().unwrap().len(), 1);
    // Plain HTTP on the TLS port gets nowhere.
    let plain = agent()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .call();
    assert!(plain.is_err() || plain.unwrap().status() != 200);

    // A missing key file is a clear error, not a panic.
    let (code, _, stderr) = facegate(
        &gallery,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            "/nonexistent/key.pem",
        ],
    );
    assert_eq!(code, 2);
    assert!(
        stderr.contains("could not load the TLS certificate"),
        "{stderr}"
    );
}

fn in_flight(base: &str, key: &str) -> u64 {
    let mut response = agent()
        .get(format!("{base}/metrics"))
        .header("Authorization", format!("Bearer {key}"))
        .call()
        .unwrap();
    let text = response.body_mut().read_to_string().unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("facegate_inference_in_flight "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn shutdown_lets_in_flight_requests_finish() {
    let dir = tempfile::tempdir().unwrap();
    let gallery = dir.path().join("gallery.db");
    let (_, key) = create_key(&gallery, "admin");
    let mut server = ServeProcess::start(&gallery, &[]);
    let images: Vec<String> = (0..8)
        .map(|i| b64(&photo("train", "mindy_kaling", i)))
        .collect();
    let url = format!("{}/v1/people", server.base);
    let auth = format!("Bearer {key}");
    let request = std::thread::spawn(move || {
        read(
            agent()
                .post(url)
                .header("Authorization", auth)
                .send_json(json!({ "name": "mindy", "images": images, "largest": true })),
        )
    });
    // Signal only once the enrollment is running.
    let deadline = Instant::now() + Duration::from_secs(60);
    while in_flight(&server.base, &key) == 0 {
        assert!(Instant::now() < deadline, "the request never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    server.terminate();
    let (status, body) = request.join().unwrap();
    assert_eq!(status, 201, "the in-flight request must finish: {body}");
    let exit = server.wait(Duration::from_secs(60)).expect("server exits");
    assert!(exit.success(), "{exit:?}");
    let stored = SqliteGallery::open(&gallery).unwrap();
    assert_eq!(
        stored.person("mindy").unwrap().templates,
        body["added"].as_array().unwrap().len()
    );
    assert!(body["added"].as_array().unwrap().len() >= 7);
}

/// N concurrent clients verifying, in rounds: throughput, latency percentiles and memory.
#[test]
fn load_test_concurrent_verify() {
    const ROUNDS: usize = 3;
    const REQUESTS: usize = 120;
    const CLIENTS: usize = 4;
    const ROUND_LIMIT: Duration = Duration::from_secs(120);

    let dir = tempfile::tempdir().unwrap();
    let gallery = dir.path().join("gallery.db");
    let (_, key) = create_key(&gallery, "admin");
    let server = ServeProcess::start(&gallery, &["--rate-limit", "0"]);
    let (status, body) = read(
        agent()
            .post(format!("{}/v1/people", server.base))
            .header("Authorization", format!("Bearer {key}"))
            .send_json(json!({ "name": "ben", "images": [b64(&photo("train", "ben_afflek", 0))] })),
    );
    assert_eq!(status, 201, "{body}");
    let probes: Arc<Vec<Value>> = Arc::new(
        (0..4)
            .map(|i| json!({ "person": "ben", "image": b64(&photo("val", "ben_afflek", i)) }))
            .collect(),
    );

    let mut rounds = Vec::new();
    for round in 0..ROUNDS {
        let next = Arc::new(Mutex::new(0usize));
        let latencies = Arc::new(Mutex::new(Vec::new()));
        let started = Instant::now();
        let workers: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let (next, latencies, probes) = (next.clone(), latencies.clone(), probes.clone());
                let (url, auth) = (
                    format!("{}/v1/verify", server.base),
                    format!("Bearer {key}"),
                );
                std::thread::spawn(move || {
                    let http = agent();
                    loop {
                        let i = {
                            let mut n = next.lock().unwrap();
                            if *n >= REQUESTS || started.elapsed() > ROUND_LIMIT {
                                break;
                            }
                            *n += 1;
                            *n
                        };
                        let sent = Instant::now();
                        let (status, body) = read(
                            http.post(&url)
                                .header("Authorization", &auth)
                                .send_json(&probes[i % probes.len()]),
                        );
                        assert_eq!(status, 200, "{body}");
                        assert_eq!(body["is_match"], true);
                        latencies.lock().unwrap().push(sent.elapsed().as_secs_f64());
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
        let elapsed = started.elapsed().as_secs_f64();
        let mut latencies = latencies.lock().unwrap().clone();
        assert_eq!(latencies.len(), REQUESTS, "round {round} ran out of time");
        latencies.sort_by(f64::total_cmp);
        let percentile = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
        let (rss, peak) = server.memory_kib();
        rounds.push(json!({
            "round": round + 1,
            "requests": REQUESTS,
            "clients": CLIENTS,
            "seconds": elapsed,
            "requests_per_second": REQUESTS as f64 / elapsed,
            "p50_ms": percentile(0.50) * 1000.0,
            "p99_ms": percentile(0.99) * 1000.0,
            "rss_mib": rss as f64 / 1024.0,
            "peak_rss_mib": peak as f64 / 1024.0,
        }));
    }
    let report = json!({ "route": "POST /v1/verify", "rounds": rounds });
    let text = serde_json::to_string_pretty(&report).unwrap();
    println!("{text}");
    std::fs::write(support::artifacts().join("serve-load-test.json"), &text).unwrap();

    // Flat memory: after the first round has warmed every buffer, more rounds of the same
    // work must not keep growing the process.
    let rss = |i: usize| rounds[i]["rss_mib"].as_f64().unwrap();
    let growth = rss(ROUNDS - 1) - rss(0);
    assert!(
        growth < 24.0,
        "resident memory grew by {growth:.1} MiB over {} identical rounds: {text}",
        ROUNDS - 1
    );
}

/// kill -9 of a server in the middle of concurrent enrollments, on SQLite and (when a test
/// server is configured) PostgreSQL: every request is all or nothing, every answered 201 is
/// stored, the database is intact, and a restarted server serves it.
#[test]
fn kill_9_of_the_server_mid_enrollment_keeps_each_request_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = dir.path().join("gallery.db");
    kill_server_mid_enrollment(&sqlite);
    let c = rusqlite::Connection::open(&sqlite).unwrap();
    let check: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    if let Some(db) = facegate_testing::ScratchDatabase::from_env().unwrap() {
        kill_server_mid_enrollment(std::path::Path::new(db.url()));
    }
}

fn kill_server_mid_enrollment(gallery: &std::path::Path) {
    use std::sync::atomic::{AtomicBool, Ordering};
    const PHOTOS: usize = 3;
    // Quality off: every request should succeed, so the kill lands among real writes.
    let serve = [
        "--insecure-no-auth",
        "--rate-limit",
        "0",
        "--quality",
        "off",
    ];
    let server = ServeProcess::start(gallery, &serve);
    let people = ["ben_afflek", "madonna", "elton_john", "mindy_kaling"];
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(Mutex::new(Vec::<(String, u16)>::new()));
    let clients: Vec<_> = people
        .iter()
        .map(|person| {
            let images: Vec<String> = (1..=PHOTOS)
                .map(|n| b64(&photo("train", person, n)))
                .collect();
            let (stop, answered) = (stop.clone(), answered.clone());
            let (url, person) = (format!("{}/v1/people", server.base), person.to_string());
            std::thread::spawn(move || {
                let http = agent();
                for k in 0.. {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let name = format!("{person} {k}");
                    let body = json!({ "name": name, "images": images });
                    match http.post(&url).send_json(&body) {
                        Ok(response) => {
                            let status = response.status().as_u16();
                            answered.lock().unwrap().push((name, status));
                        }
                        Err(_) => break, // the server is gone
                    }
                }
            })
        })
        .collect();
    let started = Instant::now();
    let created = |answered: &[(String, u16)]| answered.iter().filter(|(_, s)| *s == 201).count();
    while created(&answered.lock().unwrap()) < 3 && started.elapsed() < Duration::from_secs(300) {
        std::thread::sleep(Duration::from_millis(20));
    }
    // Let the next requests get under way, then kill without warning.
    std::thread::sleep(Duration::from_millis(250));
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.join().unwrap();
    }
    drop(server);

    let answered = answered.lock().unwrap().clone();
    let created: Vec<&String> = answered
        .iter()
        .filter(|(_, status)| *status == 201)
        .map(|(name, _)| name)
        .collect();
    assert!(!created.is_empty(), "{answered:?}");
    let location = facegate::gallery::GalleryLocation::from_path(gallery);
    let stored = location.open().unwrap().people().unwrap();
    for person in &stored {
        assert_eq!(
            person.templates, PHOTOS,
            "{} is half enrolled after the kill ({location})",
            person.name
        );
    }
    for name in created {
        assert!(
            stored.iter().any(|p| &p.name == name),
            "{name} was answered 201 but is not stored ({location})"
        );
    }
    eprintln!(
        "{location}: {} requests answered before the kill ({:?}), {} people stored",
        answered.len(),
        answered.iter().map(|(_, s)| s).collect::<Vec<_>>(),
        stored.len()
    );
    // A restarted server serves the same gallery.
    let server = ServeProcess::start(gallery, &["--insecure-no-auth"]);
    let (status, body) = read(
        agent()
            .get(format!("{}/v1/people?limit=500", server.base))
            .call(),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["people"].as_array().unwrap().len(),
        stored.len(),
        "{body}"
    );
}
