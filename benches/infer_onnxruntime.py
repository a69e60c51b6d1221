#!/usr/bin/env python3
"""onnxruntime side of `cargo bench --bench infer`: median ms per batch for one model, with 1 and
2 intra-op threads, and the process's peak RSS over session creation and the runs (VmHWM, reset
through /proc/self/clear_refs first, as the Rust side does), with its growth over the RSS before.
Usage: infer_onnxruntime.py MODEL.onnx BATCH N_MELS FRAMES [RUNS] (default 7)"""
import json
import sys
import time

import numpy as np
import onnxruntime as ort


def median_ms(sess, x, runs=7):
    sess.run(["probs"], {"logmel": x})
    t = []
    for _ in range(runs):
        s = time.perf_counter()
        sess.run(["probs"], {"logmel": x})
        t.append((time.perf_counter() - s) * 1e3)
    return sorted(t)[len(t) // 2]


def status_mb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def reset_peak_rss():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def main():
    path, batch, m, frames = sys.argv[1], *map(int, sys.argv[2:5])
    runs = int(sys.argv[5]) if len(sys.argv) > 5 else 7
    i = np.arange(m * frames, dtype=np.float32)
    x = np.tile(((i % 97) / 97.0 * 8.0 - 12.0).reshape(1, 1, m, frames), (batch, 1, 1, 1))
    out = {"onnxruntime": ort.__version__}
    for threads in (1, 2):
        reset_peak_rss()
        before = status_mb("VmRSS")
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        out[f"ms_{threads}"] = median_ms(sess, x.astype(np.float32), runs)
        peak = status_mb("VmHWM")
        out[f"peak_mb_{threads}"] = peak
        out[f"growth_mb_{threads}"] = peak - before
        del sess
    print(json.dumps(out))


if __name__ == "__main__":
    main()
