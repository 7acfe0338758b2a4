//! The camera page in a real browser: headless Chromium, driven over WebDriver (chromedriver),
//! with a fake camera that plays a real face photo. Enrolls a person through the page, then
//! verifies the same person from another photo (match) and another person's photo (no match).
//! Screenshots are kept in target/test-artifacts/.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them). Without them the
//! test says so and passes, unless FACEGATE_REQUIRE_BROWSER is set (as CI does).

mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{agent, artifacts, create_key, photo_path, ServeProcess};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn find_program(candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().map(PathBuf::from).find(|p| p.exists())
}

/// Writes `photo` as a YUV4MPEG2 (4:2:0) clip Chromium can play as a camera: the photo scaled
/// into a 640x480 grey frame.
fn write_y4m(photo: &Path, out: &Path) {
    let source = image::open(photo).unwrap().to_rgb8();
    let frame = camera_frame(&source);
    write_y4m_frames(&vec![frame; 10], out);
}

/// An image scaled into a 640x480 grey camera frame.
fn camera_frame(source: &image::RgbImage) -> image::RgbImage {
    let (width, height) = (640u32, 480u32);
    let scale = f64::min(
        f64::from(width) / f64::from(source.width()),
        f64::from(height) / f64::from(source.height()),
    ) * 0.9;
    let (w, h) = (
        (f64::from(source.width()) * scale) as u32,
        (f64::from(source.height()) * scale) as u32,
    );
    let scaled = image::imageops::resize(source, w, h, image::imageops::FilterType::CatmullRom);
    let mut frame = image::RgbImage::from_pixel(width, height, image::Rgb([120, 120, 120]));
    image::imageops::overlay(
        &mut frame,
        &scaled,
        i64::from((width - w) / 2),
        i64::from((height - h) / 2),
    );
    frame
}

/// 640x480 frames as a 10 frames/s YUV4MPEG2 clip (Chromium loops it).
fn write_y4m_frames(frames: &[image::RgbImage], out: &Path) {
    let (width, height) = (640u32, 480u32);
    let mut clip = format!("YUV4MPEG2 W{width} H{height} F10:1 Ip A1:1 C420jpeg\n").into_bytes();
    for frame in frames {
        clip.extend_from_slice(b"FRAME\n");
        clip.extend_from_slice(&yuv420(frame));
    }
    std::fs::write(out, clip).unwrap();
}

/// One frame's planes, BT.601 full range, as the C420jpeg tag says.
fn yuv420(frame: &image::RgbImage) -> Vec<u8> {
    let (width, height) = frame.dimensions();
    let (mut y, mut u, mut v) = (Vec::new(), Vec::new(), Vec::new());
    for row in 0..height {
        for col in 0..width {
            let p = frame.get_pixel(col, row).0.map(f64::from);
            y.push(
                (0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2])
                    .round()
                    .clamp(0.0, 255.0) as u8,
            );
        }
    }
    for row in (0..height).step_by(2) {
        for col in (0..width).step_by(2) {
            let mut sum = [0.0f64; 3];
            for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                let p = frame.get_pixel(col + dx, row + dy).0;
                for c in 0..3 {
                    sum[c] += f64::from(p[c]) / 4.0;
                }
            }
            let [r, g, b] = sum;
            u.push(
                (128.0 - 0.168736 * r - 0.331264 * g + 0.5 * b)
                    .round()
                    .clamp(0.0, 255.0) as u8,
            );
            v.push(
                (128.0 + 0.5 * r - 0.418688 * g - 0.081312 * b)
                    .round()
                    .clamp(0.0, 255.0) as u8,
            );
        }
    }
    y.extend_from_slice(&u);
    y.extend_from_slice(&v);
    y
}

struct Driver {
    process: Child,
    url: String,
}

impl Driver {
    fn start(program: &Path) -> Driver {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let process = Command::new(program)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut r) = agent().get(format!("{url}/status")).call() {
                let status: Value = r.body_mut().read_json().unwrap_or(Value::Null);
                if status["value"]["ready"] == true {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Driver { process, url }
    }

    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.url);
        let http = agent();
        let response = match method {
            "GET" => http.get(&url).call(),
            "DELETE" => http.delete(&url).call(),
            _ => http.post(&url).send_json(&body),
        };
        let mut response = response.unwrap();
        let status = response.status().as_u16();
        let value: Value = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_json()
            .unwrap();
        assert_eq!(status, 200, "WebDriver {method} {path}: {value}");
        value["value"].clone()
    }

    /// A browser session whose camera plays `clip`.
    fn session(&self, browser: &Path, clip: &Path) -> Session<'_> {
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": browser,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1300,900",
                    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                    format!("--use-file-for-fake-video-capture={}", clip.display()),
                ]
            }
        }}});
        let created = self.call("POST", "/session", capabilities);
        Session {
            driver: self,
            id: created["sessionId"]
                .as_str()
                .unwrap_or_else(|| panic!("no session: {created}"))
                .to_string(),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

struct Session<'d> {
    driver: &'d Driver,
    id: String,
}

impl Session<'_> {
    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        self.driver
            .call(method, &format!("/session/{}{path}", self.id), body)
    }

    fn open(&self, url: &str) {
        self.call("POST", "/url", json!({ "url": url }));
    }

    fn element(&self, css: &str) -> String {
        let found = self.call(
            "POST",
            "/element",
            json!({ "using": "css selector", "value": css }),
        );
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_string()
    }

    fn type_into(&self, css: &str, text: &str) {
        let element = self.element(css);
        self.call("POST", &format!("/element/{element}/clear"), json!({}));
        self.call(
            "POST",
            &format!("/element/{element}/value"),
            json!({ "text": text }),
        );
    }

    fn click(&self, css: &str) {
        let element = self.element(css);
        self.call("POST", &format!("/element/{element}/click"), json!({}));
    }

    fn script(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            json!({ "script": script, "args": [] }),
        )
    }

    /// Polls `script` until it returns something other than `Null`/`false`.
    fn wait_for(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let value = self.script(script);
            if !value.is_null() && value != false {
                return value;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until the result box `id` has left the idle/busy states; returns (state, text).
    fn result(&self, id: &str) -> (String, String) {
        let script = format!(
            "const e = document.getElementById('{id}'); \
             return ['idle', 'busy'].includes(e.dataset.state) ? null : [e.dataset.state, e.innerText];"
        );
        let value = self.wait_for(id, &script);
        (
            value[0].as_str().unwrap().to_string(),
            value[1].as_str().unwrap().to_string(),
        )
    }

    fn camera_ready(&self) {
        self.wait_for(
            "the camera",
            "const v = document.getElementById('video'); return v.videoWidth > 0 && v.readyState >= 2;",
        );
    }

    /// The live detection box has been drawn at least once.
    fn face_box_drawn(&self) {
        self.wait_for(
            "the live face box",
            "const c = document.getElementById('overlay'); if (!c.width) return false; \
             const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; \
             for (let i = 3; i < d.length; i += 4) { if (d[i] > 0) return true; } return false;",
        );
    }

    fn screenshot(&self, name: &str) {
        use base64::Engine as _;
        let png = self.call("GET", "/screenshot", Value::Null);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        std::fs::write(artifacts().join(name), bytes).unwrap();
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        let _ = agent()
            .delete(format!("{}/session/{}", self.driver.url, self.id))
            .call();
    }
}

#[test]
fn enroll_and_verify_through_the_camera_page() {
    let browser = find_program(&["/usr/bin/chromium", "/usr/bin/chromium-browser"]);
    let driver = find_program(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]);
    let (Some(browser), Some(driver)) = (browser, driver) else {
        assert!(
            std::env::var_os("FACEGATE_REQUIRE_BROWSER").is_none(),
            "chromium and chromedriver are required (apt-get install chromium chromium-driver)"
        );
        eprintln!("SKIPPED: the browser test needs chromium and chromium-driver (apt-get install chromium chromium-driver)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let gallery = dir.path().join("gallery.db");
    let (_, key) = create_key(&gallery, "enroll");
    let server = ServeProcess::start(&gallery, &[]);
    let enroll_clip = dir.path().join("ben-enroll.y4m");
    let verify_clip = dir.path().join("ben-verify.y4m");
    write_y4m(&photo_path("train", "ben_afflek", 0), &enroll_clip);
    write_y4m(&photo_path("val", "ben_afflek", 0), &verify_clip);
    let driver = Driver::start(&driver);

    // Enroll from the camera.
    {
        let page = driver.session(&browser, &enroll_clip);
        page.open(&format!("{}/", server.base));
        page.type_into("#api-key", &key);
        page.click("#key-form button");
        page.camera_ready();
        page.face_box_drawn();
        page.type_into("#enroll-name", "Ben");
        page.click("#enroll-button");
        let (state, text) = page.result("enroll-result");
        page.screenshot("web-enroll.png");
        assert_eq!(state, "enrolled", "{text}");
        assert!(text.contains("Ben"), "{text}");
    }

    // Verify: another photo of him on the camera, then someone else's photo uploaded.
    let page = driver.session(&browser, &verify_clip);
    page.open(&format!("{}/", server.base));
    page.type_into("#api-key", &key);
    page.click("#key-form button");
    page.wait_for(
        "the people list",
        "return [...document.getElementById('verify-person').options].some(o => o.value === 'Ben');",
    );
    page.script(
        "const s = document.getElementById('verify-person'); s.value = 'Ben'; return s.value;",
    );
    page.camera_ready();
    page.face_box_drawn();
    page.click("#verify-button");
    let (state, text) = page.result("verify-result");
    page.screenshot("web-verify-match.png");
    assert_eq!(state, "match", "{text}");
    assert!(text.contains("threshold"), "{text}");

    page.script("document.getElementById('verify-result').dataset.state = 'idle'; return true;");
    let other = photo_path("val", "madonna", 0).canonicalize().unwrap();
    let input = page.element("#verify-file");
    page.call(
        "POST",
        &format!("/element/{input}/value"),
        json!({ "text": other.display().to_string() }),
    );
    let (state, text) = page.result("verify-result");
    page.screenshot("web-verify-no-match.png");
    assert_eq!(state, "no-match", "{text}");

    // Who is this? From the camera again.
    page.script("const s = document.getElementById('verify-person'); s.value = ''; document.getElementById('verify-result').dataset.state = 'idle'; return true;");
    page.click("#verify-button");
    let (state, text) = page.result("verify-result");
    assert_eq!(state, "identified", "{text}");
    assert!(text.contains("Ben"), "{text}");
}

/// The seed the challenge test's server draws its challenges from.
const CHALLENGE_SEED: u64 = 2026;

/// Frames of a shared clip at 10 per second (ffmpeg), or `None` with a message.
fn clip_frames(name: &str, dir: &Path) -> Option<Vec<image::RgbImage>> {
    let clip = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/datasets/videos")
        .join(name);
    if !clip.exists() {
        eprintln!(
            "SKIPPED: {} is not here (the shared clips sit beside the repository)",
            clip.display()
        );
        return None;
    }
    let out = dir.join(name.replace('.', "_"));
    std::fs::create_dir_all(&out).unwrap();
    let made = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-i"])
        .arg(&clip)
        .args(["-vf", "fps=10", "-q:v", "2"])
        .arg(out.join("f%04d.jpg"))
        .status()
        .is_ok_and(|s| s.success());
    if !made {
        assert!(
            std::env::var_os("FACEGATE_REQUIRE_FFMPEG").is_none(),
            "ffmpeg is required to cut the clip into frames"
        );
        eprintln!("SKIPPED: ffmpeg is needed to cut the clip into frames");
        return None;
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    Some(
        files
            .iter()
            .map(|f| image::open(f).unwrap().to_rgb8())
            .collect(),
    )
}

#[test]
fn a_liveness_challenge_on_the_camera_page() {
    let browser = find_program(&["/usr/bin/chromium", "/usr/bin/chromium-browser"]);
    let driver = find_program(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]);
    let (Some(browser), Some(driver)) = (browser, driver) else {
        assert!(
            std::env::var_os("FACEGATE_REQUIRE_BROWSER").is_none(),
            "chromium and chromedriver are required (apt-get install chromium chromium-driver)"
        );
        eprintln!("SKIPPED: the browser test needs chromium and chromium-driver");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (Some(genuine), Some(attack)) = (
        clip_frames("selfie_turn_lr_nod_real.mp4", dir.path()),
        clip_frames("attack_smartphone_photo_short.mp4", dir.path()),
    ) else {
        return;
    };
    // The server draws from a known seed, so the first challenge's steps are known here; the
    // fake camera plays the genuine clip's movements cut into that order (the clip README's
    // annotated times), after a frontal lead-in, as a person following the prompts would.
    use rand::SeedableRng;
    let steps = facegate::liveness_challenge::Step::random(
        &mut rand::rngs::StdRng::seed_from_u64(CHALLENGE_SEED),
        facegate::challenge::DEFAULT_CHALLENGE_LENGTH,
        &facegate::liveness_challenge::ALL,
    );
    let at = |seconds: f64| (seconds * 10.0).round() as usize;
    let segment = |step: &facegate::liveness_challenge::Step| match step.name() {
        "right" => (2.1, 6.6),
        "left" => (7.3, 11.2),
        "down" => (11.3, 14.2),
        "up" => (14.3, 16.8),
        // The eyes close at about 17.75 s (bench/liveness/manifest.tsv).
        _ => (17.0, 18.3),
    };
    let front = &genuine[at(0.0)..=at(2.0)];
    let mut answer: Vec<image::RgbImage> = Vec::new();
    for _ in 0..3 {
        answer.extend(front.iter().map(camera_frame));
    }
    let lead = answer.len() as f64 / 10.0;
    for step in &steps {
        let (a, b) = segment(step);
        answer.extend(
            genuine[at(a)..=at(b).min(genuine.len() - 1)]
                .iter()
                .map(camera_frame),
        );
    }
    for _ in 0..2 {
        answer.extend(front.iter().map(camera_frame));
    }
    let loop_seconds = answer.len() as f64 / 10.0;
    let genuine_clip = dir.path().join("challenge-genuine.y4m");
    write_y4m_frames(&answer, &genuine_clip);
    let attack_clip = dir.path().join("challenge-phone-photo.y4m");
    write_y4m_frames(
        &attack.iter().map(camera_frame).collect::<Vec<_>>(),
        &attack_clip,
    );

    let gallery = dir.path().join("gallery.db");
    let enrolled = dir.path().join("selfie.jpg");
    genuine[at(1.0)].save(&enrolled).unwrap();
    let (code, _, stderr) =
        support::facegate(&gallery, &["enroll", "selfie", enrolled.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let (_, key) = create_key(&gallery, "identify");
    let seed = CHALLENGE_SEED.to_string();
    let server = ServeProcess::start(&gallery, &["--insecure-challenge-seed", &seed]);
    let driver = Driver::start(&driver);

    let run = |clip: &Path, shot: &str, click_at: Option<(f64, f64)>| {
        let page = driver.session(&browser, clip);
        page.open(&format!("{}/", server.base));
        page.type_into("#api-key", &key);
        page.click("#key-form button");
        page.wait_for(
            "the people list",
            "return [...document.getElementById('verify-person').options].some(o => o.value === 'selfie');",
        );
        page.script("const s = document.getElementById('verify-person'); s.value = 'selfie'; return s.value;");
        page.camera_ready();
        if let Some((from, to)) = click_at {
            // Start while the camera shows the frontal lead-in, a few seconds before the first
            // movement, as a person would after reading the first prompt.
            page.wait_for(
                "the frontal lead-in",
                &format!(
                    "const t = document.getElementById('video').currentTime % {loop_seconds}; return t >= {from} && t <= {to};"
                ),
            );
        }
        page.click("#challenge-button");
        page.wait_for(
            "the first prompt",
            "return document.getElementById('challenge').dataset.state === 'running' || document.getElementById('challenge-result').dataset.state !== 'busy';",
        );
        page.screenshot(&format!("{shot}-prompt.png"));
        let outcome = page.result("challenge-result");
        page.screenshot(&format!("{shot}.png"));
        outcome
    };
    let (state, text) = run(
        &genuine_clip,
        "web-challenge-genuine",
        Some((lead - 3.5, lead - 2.5)),
    );
    assert_eq!(state, "match", "steps {steps:?}: {text}");
    assert!(text.contains("Live"), "{text}");
    let (state, text) = run(&attack_clip, "web-challenge-phone-photo", None);
    assert_eq!(state, "no-match", "{text}");
    assert!(text.contains("failed"), "{text}");
}
