#!/usr/bin/env bash
# Builds a CUDA-enabled `asc` (cargo feature `cuda`) on a Linux x86_64 machine that has only the
# Rust toolchain, a C/C++ compiler and python3 with pip: no CUDA installation, no GPU needed.
# The CUDA 13 build tools come from PyPI into .cuda/ (scripts/cuda-env.sh, which also lists the
# environment variables that tune it: CUDA_COMPUTE_CAP, ASC_CUDA_TOOLKIT, ASC_CUDA_DIR).
#
# Usage: scripts/build-cuda.sh [extra cargo build args]
# Result: $CARGO_TARGET_DIR/release/asc (default target/release/asc). What it needs at run time
# (driver >= 580, the CUDA 13 libraries): docs/gpu.md.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/cuda-env.sh
source "$repo/scripts/cuda-env.sh"
cd "$repo"
cargo build --release --locked --features cuda --bin asc "$@"
bin=${CARGO_TARGET_DIR:-$repo/target}/release/asc
echo "build-cuda: built $bin ($(du -h "$bin" | cut -f1)); run-time needs: docs/gpu.md" >&2
