#!/usr/bin/env bash
# Fuzzes decode -> resample -> log-mel (fuzz/fuzz_targets/decode_frontend.rs) with cargo-fuzz on
# the stable toolchain: RUSTC_BOOTSTRAP=1 lets stable rustc take the -Z flags cargo-fuzz passes,
# and `-s none` leaves out AddressSanitizer (the code under test is safe Rust; what we look for
# is panics, aborts, hangs and huge allocations). Seeds: the WAV corpus and earlier findings.
# Usage: scripts/fuzz.sh [SECONDS]   (default 900)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
seconds="${1:-900}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
cd "$root/fuzz"
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="$root/fuzz/target"
nice -n 10 cargo fuzz build -s none -O decode_frontend
mkdir -p corpus/decode_frontend artifacts/decode_frontend "$root/tests/fuzz_regressions"
# -rss_limit_mb: a decoder that sizes buffers from a header fails here, not only in the OS.
nice -n 10 cargo fuzz run -s none -O decode_frontend corpus/decode_frontend \
    "$root/tests/corpus" "$root/tests/fuzz_regressions" -- \
    -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=1024 -timeout=10 \
    -dict="$root/fuzz/wav.dict" -print_final_stats=1
