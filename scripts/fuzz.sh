#!/usr/bin/env bash
# Fuzzes facegate's parsers for a bounded time each and records what happened.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]     (default 600)
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`); the main build stays
# on stable. Results (executions, crashes) go to fuzz/results.md; crashing inputs stay under
# fuzz/artifacts/<target>/ — add each as a regression test before fixing it.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-600}
targets=(${FUZZ_TARGETS:-image_decode keras_h5 torch_pt dlib_dat tfjs_model gallery_template detect http_request})

# Seeds: small real inputs, so the fuzzer starts past the magic numbers. The detect and
# http_request targets load the models from the test cache (`cargo test` fills it) and start
# from a real face photo, shrunk with ffmpeg when it is installed.
mkdir -p corpus/image_decode corpus/tfjs_model corpus/gallery_template corpus/detect corpus/http_request
cp ../tests/fixtures/golden/tfjs/*_noise_seed7.png corpus/image_decode/ 2>/dev/null || true
face=$(find ../target/facegate-test-home/models -path '*val/madonna/*' -name '*.jpg' 2>/dev/null | sort | head -n1 || true)
if [[ -n "$face" ]] && command -v ffmpeg >/dev/null; then
    ffmpeg -loglevel error -y -i "$face" -vf scale=96:-2 -q:v 8 corpus/detect/face96.jpg
    cp corpus/detect/face96.jpg corpus/image_decode/
    python3 seeds.py corpus/detect/face96.jpg corpus/http_request
fi
bash model_seeds.sh

{
    echo "# Fuzzing results"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%MZ), ${seconds} s per target, $(nproc) cores, $(rustup run nightly rustc --version)"
    echo
    echo "| target | executions | crashes | slow inputs | notes |"
    echo "|---|---|---|---|---|"
} > results.md
for target in "${targets[@]}"; do
    log=$(mktemp)
    status=0
    cargo +nightly fuzz run "$target" -- -max_total_time="$seconds" -rss_limit_mb=2048 \
        -timeout=20 >"$log" 2>&1 || status=$?
    runs=$(grep -oE 'Done [0-9]+ runs' "$log" | grep -oE '[0-9]+' | tail -1 || true)
    if [ -z "$runs" ]; then
        runs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#' || true)
    fi
    # Crashes, out-of-memory and timeouts stop the run; slow inputs (over 10 s) are only noted.
    crashes=$(ls "artifacts/$target" 2>/dev/null | grep -cE '^(crash|oom|leak|timeout)-' || true)
    slow=$(ls "artifacts/$target" 2>/dev/null | grep -c '^slow-unit-' || true)
    note="ok"
    [ "$status" -ne 0 ] && note="stopped with status $status: $(grep -m1 -E 'ERROR|panicked' "$log" | cut -c1-120)"
    echo "| $target | ${runs:-?} | $crashes | $slow | $note |" >> results.md
    tail -n 3 "$log"
    rm -f "$log"
done
cat results.md
