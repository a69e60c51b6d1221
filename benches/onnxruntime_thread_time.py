#!/usr/bin/env python3
"""onnxruntime's counterpart of `examples/tract_profile.rs`: one intra-op thread, the median and
mean of the thread's CPU time per run (time.thread_time), which other jobs on a shared VM inflate
less than the wall clock. The input is tract_profile's (i % 97 / 97 · 8 − 12), so both sides run
the same values. Usage: onnxruntime_thread_time.py MODEL.onnx BATCH N_MELS FRAMES [RUNS] (1000);
`tract_profile cp-mobile …` writes its random-weight model to /tmp/cp-mobile.onnx."""
import sys
import time

import numpy as np
import onnxruntime as ort


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    path = sys.argv[1]
    batch, mels, frames = (int(a) for a in sys.argv[2:5])
    runs = int(sys.argv[5]) if len(sys.argv) > 5 else 1000
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    n = batch * mels * frames
    x = ((np.arange(n) % 97) / 97.0 * 8.0 - 12.0).astype(np.float32).reshape(batch, 1, mels, frames)
    for _ in range(20):
        sess.run(None, {name: x})
    t = []
    for _ in range(runs):
        s = time.thread_time()
        sess.run(None, {name: x})
        t.append(time.thread_time() - s)
    t.sort()
    print(f"onnxruntime {path} at {[batch, 1, mels, frames]}: median {t[runs // 2] * 1e3:.3f} ms, "
          f"mean {sum(t) / runs * 1e3:.3f} ms (thread CPU time, {runs} runs)")


if __name__ == "__main__":
    main()
