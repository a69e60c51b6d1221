#!/usr/bin/env bash
# The whole benchmark suite in one invocation (issue 9): front end vs librosa, inference vs
# onnxruntime, training steps and norm layers vs PyTorch, our ops vs candle's and PyTorch's.
# Everything goes to the terminal and to one log, target/bench-suite-YYYYMMDD-HHMM.log, headed by
# the machine and the versions of the Python peers (ratios are what to read: each compares two
# tools measured in the same run).
#
#   scripts/bench-suite.sh              # all of it (the cnn at 128 x 431 alone takes minutes)
#   ASC_BENCH_MODELS=cnn-216 ASC_BENCH_NORMS=bn,none scripts/bench-suite.sh   # a quick pass
#   ASC_BENCH_SUITE="norms ops" scripts/bench-suite.sh                        # some benches
#   (names: frontend, kernels, infer1 = infer with one rayon thread, infer1-avx2 = the same on
#   the AVX2 kernels, infer, norms, ops, process = the whole-process benchmarks below)
#
# `process` times `asc features` and `asc classify` as whole processes against the Python loops
# on 40 real clips (benches/features_process.py, benches/classify_process.py, on both kernel
# paths). It needs ASC_BENCH_DATASET (a DCASE-layout dataset with >= 120 WAVs, e.g. the
# development set), ASC_BENCH_CNN and ASC_BENCH_CPM (a cnn and a cp-mobile .onnx from
# `asc export`); without them it says so and is skipped.
#
# The benches' own knobs (ASC_BENCH_*) pass through; see the head of each benches/*.rs.
set -uo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
mkdir -p "$target"
log="$target/bench-suite-$(date -u +%Y%m%d-%H%M).log"

header() {
    echo "# bench suite, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (uncommitted changes)')"
    echo "cpus: $(nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo), load: $(cut -d' ' -f1-3 /proc/loadavg)"
    rustc --version
    python3 - <<'EOF' 2>&1
import importlib
import sys
print("python", sys.version.split()[0])
for name in ("torch", "onnxruntime", "librosa", "numpy", "soundfile"):
    try:
        print(f"  {name} {importlib.import_module(name).__version__}")
    except Exception as e:  # a missing peer: its side of the benchmark is skipped
        print(f"  {name}: not available ({type(e).__name__})")
EOF
    env | grep '^ASC_BENCH_' | sort
}

# Whole-process benchmarks on real clips (see the head of this file).
process() {
    echo "## whole processes: benches/features_process.py, benches/classify_process.py"
    if [ -z "${ASC_BENCH_DATASET:-}" ] || [ -z "${ASC_BENCH_CNN:-}" ] || [ -z "${ASC_BENCH_CPM:-}" ]; then
        echo "skipped: set ASC_BENCH_DATASET, ASC_BENCH_CNN and ASC_BENCH_CPM"
        return 0
    fi
    local clips="$target/bench-clips" asc="$target/release/asc" isa
    cargo build --release 2>&1 | tail -1 &&
        python3 benches/make_clips.py "$ASC_BENCH_DATASET" "$clips" || return 1
    for isa in avx512 avx2; do
        echo "### ASC_KERNEL_ISA=$isa"
        echo "features, 10 s clips: $(ASC_KERNEL_ISA=$isa python3 benches/features_process.py "$asc" "$clips/10s" 7)" &&
            echo "classify cnn, 10 s clips: $(ASC_KERNEL_ISA=$isa python3 benches/classify_process.py "$asc" "$ASC_BENCH_CNN" "$clips/10s" 5)" &&
            echo "classify cp-mobile, 1 s clips: $(ASC_KERNEL_ISA=$isa python3 benches/classify_process.py "$asc" "$ASC_BENCH_CPM" "$clips/1s" 5)" ||
            return 1
    done
}

suite() {
    local status=0
    header
    # infer1: the inference bench with one rayon thread, so tract's batch-32 rows are single
    # threaded as issue 9's goal states them (the default spreads a batch over the threads).
    for bench in ${ASC_BENCH_SUITE:-frontend kernels infer1 infer1-avx2 infer norms ops process}; do
        echo
        if [ "$bench" = infer1 ]; then
            echo "## RAYON_NUM_THREADS=1 cargo bench --bench infer"
            RAYON_NUM_THREADS=1 cargo bench --bench infer 2>&1 || { echo "cargo bench --bench infer (1 thread) failed"; status=1; }
            continue
        fi
        if [ "$bench" = infer1-avx2 ]; then
            echo "## RAYON_NUM_THREADS=1 ASC_KERNEL_ISA=avx2 cargo bench --bench infer"
            RAYON_NUM_THREADS=1 ASC_KERNEL_ISA=avx2 cargo bench --bench infer 2>&1 || { echo "cargo bench --bench infer (AVX2) failed"; status=1; }
            continue
        fi
        if [ "$bench" = process ]; then
            process || status=1
            continue
        fi
        echo "## cargo bench --bench $bench"
        cargo bench --bench "$bench" 2>&1 || { echo "cargo bench --bench $bench failed"; status=1; }
    done
    return "$status"
}

suite 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
echo "log: $log"
exit "$rc"
