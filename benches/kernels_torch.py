#!/usr/bin/env python3
"""PyTorch's side of benches/kernels.rs: one stride-1 convolution at batch 1 on one thread,
forward and weight gradient, best of REPS runs in ms, as one JSON list (a record per layer).

    python3 benches/kernels_torch.py REPS C,H,W,O,K ...
"""
import json
import sys
import time

import torch
import torch.nn.functional as F

torch.set_num_threads(1)


def best(fn, reps):
    fn()
    t = float("inf")
    for _ in range(reps):
        s = time.perf_counter()
        fn()
        t = min(t, (time.perf_counter() - s) * 1e3)
    return t


def main():
    reps = int(sys.argv[1])
    rows = []
    for spec in sys.argv[2:]:
        c, h, w, o, k = map(int, spec.split(","))
        x = torch.randn(1, c, h, w)
        wt = torch.randn(o, c, k, k)
        gy = torch.randn(1, o, h, w)
        with torch.no_grad():
            fwd = best(lambda: F.conv2d(x, wt, padding=k // 2), reps)
            gw = best(lambda: torch.nn.grad.conv2d_weight(x, wt.shape, gy, padding=k // 2), reps)
        rows.append({"spec": spec, "forward_ms": fwd, "weight_grad_ms": gw})
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
