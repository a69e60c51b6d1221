#!/usr/bin/env bash
# The GPU check of docs/gpu.md: CPU vs CUDA parity (tests/gpu_parity.rs: the norm fixtures and
# our ops, <= 1e-4) and a short `asc train --device cuda` for every model x norm on a tiny
# `asc synth` set, with clips/s, written to a report.
#
# Usage: scripts/gpu-check.sh [build|run|all]   (default all)
#   build  builds asc and the parity test with --features cuda (scripts/cuda-env.sh: no GPU
#          needed) and copies both, stripped, to $ASC_GPU_CHECK_DIR/bin and bundle.tar.xz
#   run    runs them from there (unpacking bundle.tar.xz if bin/ is absent): needs an NVIDIA GPU, driver >= 580 and the CUDA 13 libraries
#          (found via $ASC_CUDA_LIBS, LD_LIBRARY_PATH, .cuda/ or python's nvidia/cu13/lib)
#   all    build, then run
# Environment: ASC_GPU_CHECK_DIR (default target/gpu-check), ASC_GPU_CHECK_EPOCHS (default 2; clips/s is the last epoch's),
#   ASC_GPU_CHECK_DEVICES (default "cuda"; "cuda cpu" also times each run on the CPU),
#   ASC_GPU_CHECK_MODELS, ASC_GPU_CHECK_NORMS (default: all of them).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${ASC_GPU_CHECK_DIR:-${CARGO_TARGET_DIR:-$repo/target}/gpu-check}
mode=${1:-all}

build() {
    # shellcheck source=scripts/cuda-env.sh
    source "$repo/scripts/cuda-env.sh"
    cd "$repo"
    cargo build --release --locked --features cuda --bin asc
    local test_bin
    test_bin=$(cargo test --release --locked --features cuda --test gpu_parity --no-run \
        --message-format=json | python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "gpu_parity" and m.get("executable"):
        print(m["executable"])')
    mkdir -p "$out/bin"
    cp "${CARGO_TARGET_DIR:-$repo/target}/release/asc" "$out/bin/asc"
    cp "$test_bin" "$out/bin/gpu_parity"
    strip "$out/bin/asc" "$out/bin/gpu_parity"
    # One file to take to a GPU machine that cannot build (about 20 MB; `run` unpacks it).
    XZ_OPT=${XZ_OPT:--6 -T0} tar -C "$out" -cJf "$out/bundle.tar.xz" bin
    ls -l "$out/bin" "$out/bundle.tar.xz"
}

# Adds the folders holding the CUDA 13 libraries to LD_LIBRARY_PATH; fails naming what is missing.
find_libs() {
    local dirs=() d
    [[ -n ${ASC_CUDA_LIBS:-} ]] && dirs+=("$ASC_CUDA_LIBS")
    [[ -d $repo/.cuda/pip/nvidia/cu13/lib ]] && dirs+=("$repo/.cuda/pip/nvidia/cu13/lib")
    # A PyTorch (or any pip) installation of the CUDA 13 wheels: site-packages/nvidia/cu13/lib.
    d=$(python3 -c 'import nvidia, os
for p in nvidia.__path__:
    if os.path.isdir(os.path.join(p, "cu13", "lib")): print(os.path.join(p, "cu13", "lib")); break' 2>/dev/null || true)
    [[ -n $d ]] && dirs+=("$d")
    local front
    front=$(IFS=:; echo "${dirs[*]}")
    if [[ -n $front ]]; then
        export LD_LIBRARY_PATH=$front${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    fi
    local missing
    missing=$(ldd "$out/bin/asc" | grep "not found" || true)
    if [[ -n $missing ]]; then
        echo "gpu-check: libraries not found (LD_LIBRARY_PATH=$LD_LIBRARY_PATH):" >&2
        echo "$missing" >&2
        echo "gpu-check: see docs/gpu.md, 'Run time'" >&2
        return 1
    fi
    ldd "$out/bin/asc" | grep -E "libcuda|libcublas|libcurand|libnvrtc|libcudart" >&2 || true
}

run() {
    if [[ ! -x $out/bin/asc && -f $out/bundle.tar.xz ]]; then
        tar -C "$out" -xJf "$out/bundle.tar.xz" ||
            python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
                "$out/bundle.tar.xz" "$out"
    fi
    [[ -x $out/bin/asc && -x $out/bin/gpu_parity ]] || {
        echo "gpu-check: no binaries in $out/bin: run 'scripts/gpu-check.sh build' first" >&2
        return 1
    }
    find_libs
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv | tee "$out/gpu.txt"
    fi
    cd "$repo"
    echo "== parity: tests/gpu_parity.rs" >&2
    "$out/bin/gpu_parity" --test-threads=1 2>&1 | tee "$out/parity.txt"

    echo "== training: models x norms on ${ASC_GPU_CHECK_DEVICES:-cuda}" >&2
    local data=$out/synth epochs=${ASC_GPU_CHECK_EPOCHS:-2}
    [[ -d $data ]] || "$out/bin/asc" synth --out "$data" --clips-per-class 24 --seconds 2
    local report=$out/train.tsv model norm dev line rate
    read -r -a devices <<<"${ASC_GPU_CHECK_DEVICES:-cuda}"
    mkdir -p "$out/runs"
    printf 'model\tnorm\tdevice\tepochs\tclips_per_s\tseconds\tstatus\n' >"$report"
    local models norms
    read -r -a models <<<"${ASC_GPU_CHECK_MODELS:-cnn cp-mobile}"
    read -r -a norms <<<"${ASC_GPU_CHECK_NORMS:-bn l2bn gn gnplus ubn iebn ln in none}"
    for model in "${models[@]}"; do
        for norm in "${norms[@]}"; do
            for dev in "${devices[@]}"; do
                local run_dir=$out/runs/$model-$norm-$dev start=$SECONDS
                rm -rf "$run_dir"
                if line=$("$out/bin/asc" train --data "$data" --model "$model" --norm "$norm" \
                    --device "$dev" --epochs "$epochs" --batch-size 16 --out "$run_dir" \
                    2>"$run_dir.log" | tail -n1); then
                    rate=$(grep -oE '[0-9.]+ clips/s' <<<"$line" | cut -d' ' -f1)
                    printf '%s\t%s\t%s\t%s\t%s\t%s\tok\n' "$model" "$norm" "$dev" "$epochs" \
                        "$rate" $((SECONDS - start)) | tee -a "$report"
                else
                    printf '%s\t%s\t%s\t%s\t-\t%s\tFAILED (%s.log)\n' "$model" "$norm" "$dev" \
                        "$epochs" $((SECONDS - start)) "$run_dir" | tee -a "$report"
                fi
            done
        done
    done
    if grep -q FAILED "$report"; then
        echo "gpu-check: some training runs failed, see $report" >&2
        return 1
    fi
    echo "gpu-check: parity passed; training report $report" >&2
}

case $mode in
build) build ;;
run) run ;;
all) build && run ;;
*)
    echo "usage: scripts/gpu-check.sh [build|run|all]" >&2
    exit 2
    ;;
esac
