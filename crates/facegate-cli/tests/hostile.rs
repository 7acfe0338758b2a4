//! Hostile and odd inputs through the real binary: every case gets a clear error or a correct
//! answer — never a panic, a hang or unbounded memory — and leaves the gallery consistent.
//! Peak memory (the child's maximum resident set) is measured for every case and must stay
//! under [`MEMORY_BOUND_MIB`].

mod support;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use support::corpus;

/// The models alone take about 300 MiB; no input may push a process past this.
const MEMORY_BOUND_MIB: u64 = 1024;

struct Outcome {
    code: i32,
    json: serde_json::Value,
    peak_mib: u64,
}

/// Runs facegate with `args`, returning its exit code, its JSON answer and its peak RSS.
// The child is reaped with wait4 (for its resource usage), not Child::wait.
#[allow(clippy::zombie_processes)]
fn run(gallery: &Path, args: &[&str]) -> Outcome {
    let mut child = Command::new(env!("CARGO_BIN_EXE_facegate"))
        .arg("--home")
        .arg(support::home())
        .arg("--gallery")
        .arg(gallery)
        .arg("--json")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our child, not yet waited for; the pointers are to live locals.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4 failed");
    assert!(
        libc::WIFEXITED(status),
        "facegate {args:?} did not exit normally (signal {})",
        libc::WTERMSIG(status)
    );
    Outcome {
        code: libc::WEXITSTATUS(status),
        json: serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {stdout}")),
        peak_mib: usage.ru_maxrss as u64 / 1024,
    }
}

fn face_photo() -> image::RgbImage {
    let path = support::photo_path("train", "ben_afflek", 1);
    image::open(path).unwrap().to_rgb8()
}

/// The photo enlarged to 7000x7000 (49 megapixels, just under the default limit).
fn huge(face: &image::RgbImage) -> image::RgbImage {
    image::imageops::resize(face, 7000, 7000, image::imageops::FilterType::Triangle)
}

#[test]
fn hostile_images_get_a_clear_answer_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let gallery = dir.path().join("gallery.db");
    let face = face_photo();
    let face_jpeg = corpus::jpeg(&face);
    let face_png = corpus::png(&face);
    let face_webp = corpus::webp(&face);
    // (file name, bytes, expected exit code, expected error code or "" for success)
    let cases: Vec<(&str, Vec<u8>, i32, &str)> = vec![
        ("empty.jpg", Vec::new(), 2, "corrupt_image"),
        ("empty.png", Vec::new(), 2, "corrupt_image"),
        (
            "truncated.jpg",
            face_jpeg[..face_jpeg.len() / 2].to_vec(),
            2,
            "corrupt_image",
        ),
        (
            "truncated.png",
            face_png[..face_png.len() / 2].to_vec(),
            2,
            "corrupt_image",
        ),
        (
            "truncated.webp",
            face_webp[..face_webp.len() / 2].to_vec(),
            2,
            "corrupt_image",
        ),
        (
            "bomb.png",
            corpus::png_header_only(60_000, 60_000),
            2,
            "image_too_large",
        ),
        (
            "bomb.jpg",
            corpus::jpeg_declaring(60_000, 60_000),
            2,
            "image_too_large",
        ),
        (
            "text.jpg",
            b"this is not an image, whatever its name".to_vec(),
            2,
            "unsupported_format",
        ),
        (
            "animated.gif",
            corpus::animated_gif(),
            2,
            "unsupported_format",
        ),
        (
            "tiny.png",
            corpus::png(&corpus::noise(8, 8, 1)),
            2,
            "no_face",
        ),
        (
            "noise.png",
            corpus::png(&corpus::noise(640, 480, 2)),
            2,
            "no_face",
        ),
        // Large but legal photos (under the 50-megapixel limit): detection shrinks them first,
        // so memory stays bounded. The strip is the shape of an input the detection fuzz
        // target ran out of memory on (kept in tests/fixtures/fuzz).
        ("huge-photo.jpg", corpus::jpeg(&huge(&face)), 0, ""),
        (
            "strip.jpg",
            corpus::jpeg(&corpus::noise(63_072, 96, 4)),
            2,
            "no_face",
        ),
        (
            "fuzz-detect-oom.jpg",
            std::fs::read(support::fixture("fuzz/detect-oom-63072x96.jpg")).unwrap(),
            2,
            "no_face",
        ),
        ("cmyk.jpg", corpus::cmyk_jpeg(&face), 0, ""),
        ("sixteen-bit.png", corpus::png16(&face), 0, ""),
        (
            "animated.webp",
            corpus::animated_webp(&[face.clone(), corpus::noise(face.width(), face.height(), 3)]),
            0,
            "",
        ),
    ];
    let mut report = String::from("| input | exit | answer | peak RSS |\n|---|---|---|---|\n");
    let mut worst = 0;
    for (i, (name, bytes, code, error)) in cases.iter().enumerate() {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let person = format!("person{i}");
        let out = run(&gallery, &["enroll", &person, path.to_str().unwrap()]);
        let answer = out.json["error"]["code"]
            .as_str()
            .unwrap_or("enrolled")
            .to_string();
        report.push_str(&format!(
            "| {name} | {} | {answer} | {} MiB |\n",
            out.code, out.peak_mib
        ));
        worst = worst.max(out.peak_mib);
        assert_eq!(out.code, *code, "{name}: {}", out.json);
        if error.is_empty() {
            assert_eq!(out.json["enrolled"].as_array().unwrap().len(), 1, "{name}");
        } else {
            assert_eq!(out.json["error"]["code"], *error, "{name}: {}", out.json);
            let message = out.json["error"]["message"].as_str().unwrap();
            assert!(
                message.contains(name),
                "{name}: the message names the file: {message}"
            );
        }
        assert!(
            out.peak_mib < MEMORY_BOUND_MIB,
            "{name}: {} MiB peak",
            out.peak_mib
        );
    }
    println!("{report}\nworst peak RSS: {worst} MiB (bound {MEMORY_BOUND_MIB} MiB)");
    std::fs::write(support::artifacts().join("hostile-inputs.md"), &report).unwrap();
    // Only the four readable photos became people.
    let listed = run(&gallery, &["list"]);
    assert_eq!(listed.json["people"].as_array().unwrap().len(), 4);
}

#[test]
fn hostile_names_are_stored_exactly_or_refused_with_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let home_files = |dir: &Path| -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p.clone());
                }
                out.push(p);
            }
        }
        out.sort();
        out
    };
    let gallery = dir.path().join("gallery.db");
    let photo = support::photo_path("train", "ben_afflek", 1);
    let photo = photo.to_str().unwrap();
    let stored = [
        "Zoë Ünïcödé-Ångström",
        "Anne Marie  Smith",
        "😀 emoji 🎉",
        "Robert'); DROP TABLE people;--",
        "\" OR 1=1 --",
        "../../etc/passwd",
        "a/b\\c:d*e?f",
        "%s%n%x",
    ];
    for name in stored {
        let out = run(&gallery, &["enroll", name, photo]);
        assert_eq!(out.code, 0, "{name:?}: {}", out.json);
        assert_eq!(out.json["person"], name);
    }
    let listed = run(&gallery, &["list"]);
    let mut names: Vec<&str> = listed.json["people"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    names.sort();
    let mut expected = stored.to_vec();
    expected.sort();
    assert_eq!(names, expected, "every name is stored and listed exactly");
    let long = "a".repeat(10_000);
    for (name, rule) in [
        (long.as_str(), "at most 200 characters"),
        (" padded", "spaces"),
        ("tab\there", "control characters"),
        ("", "empty"),
    ] {
        let out = run(&gallery, &["enroll", name, photo]);
        assert_eq!(out.code, 2, "{name:?}");
        assert_eq!(out.json["error"]["code"], "invalid_name");
        let message = out.json["error"]["message"].as_str().unwrap();
        assert!(message.contains(rule), "{name:?}: {message}");
    }
    // Only the gallery's own files were written: no name became a path.
    for path in home_files(dir.path()) {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            file.starts_with("gallery.db"),
            "unexpected file {}",
            path.display()
        );
    }
    // The names are verified against exactly as stored.
    let out = run(
        &gallery,
        &["verify", "Robert'); DROP TABLE people;--", photo],
    );
    assert_eq!(out.code, 0, "{}", out.json);
    assert_eq!(
        run(&gallery, &["list"]).json["people"]
            .as_array()
            .unwrap()
            .len(),
        stored.len()
    );
}
