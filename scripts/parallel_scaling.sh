#!/usr/bin/env bash
# Data-parallel training on this machine (docs/distributed.md): the same run as one process and
# as `mpirun -np 2`, its throughput and what the all-reduces cost, and whether the two give the
# same weights (they should for a norm without batch statistics, up to summation order).
#
#   scripts/parallel_scaling.sh DATA [NORM] [MODEL] [EPOCHS] [OUT] [TRAIN OPTIONS...]
#
# Further arguments go to both `asc train` runs (`--sync-bn` for synchronised BN).
# Needs an asc built with `--features mpi` (ASC=path, default target-mpi/release/asc) and
# Open MPI's mpirun. The one-process run gets as many threads as the two ranks together.
set -euo pipefail
data=$1; norm=${2:-gn}; model=${3:-cnn}; epochs=${4:-3}; out=${5:-runs/parallel-scaling}
ASC=${ASC:-target-mpi/release/asc}
cores=$(nproc)
mkdir -p "$out"
common=(train --data "$data" --model "$model" --norm "$norm" --epochs "$epochs" --dropout 0 --no-augment "${@:6}")
rm -rf "$out/one" "$out/two"
echo "== 1 process, $cores threads"
RAYON_NUM_THREADS=$cores "$ASC" "${common[@]}" --out "$out/one" 2>&1 | grep -E '^(epoch|trained)'
echo "== mpirun -np 2, $((cores / 2)) thread(s) each"
mpirun --allow-run-as-root --oversubscribe -np 2 -x RAYON_NUM_THREADS=$((cores / 2 > 0 ? cores / 2 : 1)) \
  "$ASC" "${common[@]}" --out "$out/two" 2>&1 | grep -E '^(epoch|trained|rank|data-parallel)'
python3 - "$out/one/checkpoint.safetensors" "$out/two/checkpoint.safetensors" <<'PY'
import sys
import numpy as np
from safetensors.numpy import load_file
a, b = load_file(sys.argv[1]), load_file(sys.argv[2])
worst, at = 0.0, ""
for k in a:
    scale = max(float(np.abs(a[k]).max()), 1e-6)
    d = float(np.abs(a[k] - b[k]).max()) / scale
    if d > worst:
        worst, at = d, k
print(f"1 vs 2 ranks: worst relative difference of any tensor {worst:.1e} ({at}), {len(a)} tensors")
PY
