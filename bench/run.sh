#!/usr/bin/env bash
# facegate's performance harness: the same photos, the same machine, one run.
#
#   bench/run.sh            full: 1,000 LFW photos; 1:N at 1k, 100k and 1M templates
#   bench/run.sh --quick    200 photos; 1:N at 1k and 100k (a few minutes)
#
# Compares facegate (CLI and library) with the original prototype's pipeline (`mtcnn` package +
# Keras FaceNet) and with face_recognition (dlib), each set up here in its own venv from pinned
# packages. Needs LFW (default ../shared/datasets/lfw, or LFW=DIR); the video section uses the
# clips in ../shared/datasets/videos (or VIDEOS=DIR) and ffmpeg, and is skipped without them. Results: a Markdown table on
# stdout and in $BENCH_WORK/report.md, raw numbers in $BENCH_WORK/results.json; the last line is
# machine-readable. See docs/PERFORMANCE.md.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=full
case "${1:-}" in
    --quick) MODE=quick ;;
    "") ;;
    *) echo "usage: bench/run.sh [--quick]" >&2; exit 2 ;;
esac
LFW="${LFW:-../shared/datasets/lfw}"
[ -d "$LFW" ] || { echo "LFW not found at $LFW (set LFW=DIR)" >&2; exit 2; }
mkdir -p "${BENCH_WORK:-target/bench}"
BENCH_WORK="$(cd "${BENCH_WORK:-target/bench}" && pwd)"
export BENCH_WORK

echo "== building facegate (release)" >&2
cargo build --release --quiet
FACEGATE="$PWD/target/release/facegate"
FG_HOME="$BENCH_WORK/home"
echo "== fetching facegate's models" >&2
"$FACEGATE" --home "$FG_HOME" models fetch >/dev/null

# venv NAME REQUIREMENTS NO_DEPS_PACKAGE: created once, re-created when the pins change.
venv() {
    local dir="$BENCH_WORK/venv-$1"
    if [ ! -x "$dir/bin/python" ] || ! cmp -s "$2" "$dir/.pins"; then
        echo "== setting up $1 ($dir)" >&2
        rm -rf "$dir"
        python3 -m venv "$dir"
        "$dir/bin/python" -m pip install --quiet --disable-pip-version-check -r "$2"
        "$dir/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps "$3"
        cp "$2" "$dir/.pins"
    fi
}
venv prototype bench/requirements-prototype.txt "mtcnn==0.1.1"
venv face-recognition bench/requirements-face-recognition.txt "face-recognition==1.3.0"

exec python3 bench/harness.py --mode "$MODE" --lfw "$LFW" --work "$BENCH_WORK" \
    --facegate "$FACEGATE" --facegate-home "$FG_HOME" \
    --videos "${VIDEOS:-../shared/datasets/videos}"
