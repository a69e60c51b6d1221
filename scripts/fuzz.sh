#!/usr/bin/env bash
# Fuzzes sniff -> decode -> resample -> log-mel (fuzz/fuzz_targets/decode_frontend.rs) with
# cargo-fuzz on the stable toolchain: RUSTC_BOOTSTRAP=1 lets stable rustc take the -Z flags
# cargo-fuzz passes, and `-s none` leaves out AddressSanitizer (the code under test is safe Rust;
# what we look for is panics, aborts, hangs and huge allocations).
#
# Usage: scripts/fuzz.sh [SECONDS] [FORMAT]   (defaults: 900, all)
# FORMAT is one of wav, flac, ogg, mp3, aiff, caf or all: the run is seeded with that format's
# files from tests/corpus and tests/fixtures/formats (all: every file) plus earlier findings, and
# keeps its own working corpus (fuzz/corpus/decode_frontend_FORMAT), so each format gets the
# mutator's whole attention. Findings go to fuzz/artifacts/decode_frontend; copy the ones worth
# keeping into tests/fuzz_regressions/ (tests/fuzz_regressions.rs replays them all).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
seconds="${1:-900}"
format="${2:-all}"
case "$format" in
    wav) pattern='*.wav' dict=wav.dict ;;
    flac) pattern='*.flac' dict=formats.dict ;;
    ogg) pattern='*.ogg' dict=formats.dict ;;
    mp3) pattern='*.mp3' dict=formats.dict ;;
    aiff) pattern='*.aif*' dict=formats.dict ;;
    caf) pattern='*.caf' dict=formats.dict ;;
    all) pattern='*' dict=wav.dict ;;
    *) echo "unknown format '$format' (wav, flac, ogg, mp3, aiff, caf, all)" >&2; exit 2 ;;
esac
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
cd "$root/fuzz"
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="$root/fuzz/target"
nice -n 10 cargo fuzz build -s none -O decode_frontend
work="corpus/decode_frontend_$format"
seeds="$(mktemp -d)"
trap 'rm -rf "$seeds"' EXIT
mkdir -p "$work" artifacts/decode_frontend "$root/tests/fuzz_regressions"
find "$root/tests/corpus" "$root/tests/fixtures/formats" -name "$pattern" ! -name manifest.tsv \
    -exec cp {} "$seeds/" \;
# -rss_limit_mb: a decoder that sizes buffers from a header fails here, not only in the OS.
nice -n 10 cargo fuzz run -s none -O decode_frontend "$work" "$seeds" \
    "$root/tests/fuzz_regressions" -- \
    -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=1024 -timeout=10 \
    -dict="$root/fuzz/$dict" -artifact_prefix="$root/fuzz/artifacts/decode_frontend/" \
    -print_final_stats=1
