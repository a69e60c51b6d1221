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
#   (names: frontend, infer1 = infer with one rayon thread, infer, norms, ops)
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

suite() {
    local status=0
    header
    # infer1: the inference bench with one rayon thread, so tract's batch-32 rows are single
    # threaded as issue 9's goal states them (the default spreads a batch over the threads).
    for bench in ${ASC_BENCH_SUITE:-frontend infer1 infer norms ops}; do
        echo
        if [ "$bench" = infer1 ]; then
            echo "## RAYON_NUM_THREADS=1 cargo bench --bench infer"
            RAYON_NUM_THREADS=1 cargo bench --bench infer 2>&1 || { echo "cargo bench --bench infer (1 thread) failed"; status=1; }
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
