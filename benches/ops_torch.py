#!/usr/bin/env python3
"""PyTorch CPU timings of the same ops and shapes as benches/ops.rs (2 threads, like the build
machine). Run: python3 benches/ops_torch.py [--quick]"""
import sys
import time

import torch
import torch.nn.functional as F

torch.set_num_threads(2)
reps = 1 if "--quick" in sys.argv else 3


def best(fn):
    fn()
    t = float("inf")
    for _ in range(reps):
        s = time.perf_counter()
        fn()
        t = min(t, (time.perf_counter() - s) * 1e3)
    return t


def fwd_bwd(op, *vs):
    def fwd():
        with torch.no_grad():
            op()

    def both():
        for v in vs:
            v.grad = None
        op().sum().backward()

    return best(fwd), best(both)


x = torch.randn(32, 16, 128, 431, requires_grad=True)
w = (torch.randn(16, 16, 3, 3) * 0.1).requires_grad_(True)
xd = torch.randn(32, 64, 32, 54, requires_grad=True)
wd = (torch.randn(64, 1, 3, 3) * 0.3).requires_grad_(True)
rows = [
    ("conv2d 3×3 16→16, 32×16×128×431", fwd_bwd(lambda: F.conv2d(x, w, padding=1), x, w)),
    ("max_pool2d 2×2, 32×16×128×431", fwd_bwd(lambda: F.max_pool2d(x, 2), x)),
    ("avg_pool2d 3×3 s2 p1, 32×16×128×431", fwd_bwd(lambda: F.avg_pool2d(x, 3, 2, 1), x)),
    ("depthwise 3×3, 32×64×32×54", fwd_bwd(lambda: F.conv2d(xd, wd, padding=1, groups=64), xd, wd)),
    (
        "depthwise 3×3 stride (1,2)",
        fwd_bwd(lambda: F.conv2d(xd, wd, stride=(1, 2), padding=1, groups=64), xd, wd),
    ),
]
print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, reps {reps} (+1 warm-up), minimum")
print("| op | torch fwd ms | torch fwd+bwd ms |")
print("|---|---|---|")
for name, (f, b) in rows:
    print(f"| {name} | {f:.1f} | {b:.1f} |")
