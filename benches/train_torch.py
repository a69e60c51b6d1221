#!/usr/bin/env python3
"""PyTorch CPU side of `cargo bench --bench norms` (issue 9): one training step of our models
with each normalization layer, timed like benches/norms.rs `train_step_ms`.

The models are not re-implemented here: `cnn` and `cp-mobile` come from
tests/fixtures/gen_models.py (built from docs/models.md) with the layers of
tests/fixtures/gen_norms.py (docs/norms.md), run in float32. Two changes make the comparison fair:

* The fixture generator's bookkeeping on every ReLU and max pool (distance to a kink, for
  choosing a batch) is left out, and the `cnn` gets its dropout (p = 0.3 after the max pool, as
  in src/nn/models/cnn.rs; the two dropouts on the 32-wide head vectors cost nothing and are left
  out).
* With `--impl native` (the default) what PyTorch has kernels for runs through them: BN and GN
  are `F.batch_norm` and `F.group_norm` with their affine (as nn.BatchNorm2d, nn.GroupNorm), BN's
  and GN's statistics inside L2BN, IEBN, UBN and GN+ too; LN is `F.layer_norm` (then the
  per-channel affine of docs/norms.md §2.3), IN `F.instance_norm`, and UBN's batch cosine one Gram
  matrix (as ours) instead of the fixture's n² `cosine_similarity` calls -- what a PyTorch user
  would write.
  Each replacement is checked against the spec form on a small float64 input before timing.
  `--impl spec` times the fixture's formulas as they are.

A step is: train-mode forward, mean cross-entropy against soft targets (0.1 per class, as the
Rust bench), backward, AdamW (lr 1e-3, weight decay 1e-4, PyTorch defaults otherwise, as
`OptimizerConfig::adamw(1e-4)`). One warm-up step, then the median of `--reps`.

Peak RSS: on Linux, "5" written to /proc/self/clear_refs resets the high-water mark VmHWM to the
current RSS; it is reset before the model is built and read after the last step, so it is this
process's peak while building and training that configuration (torch itself included), next to
the RSS before building. Memory the allocator keeps from one configuration serves the next, so
benches/norms.rs runs this script once per configuration (and its own side likewise).

Run from anywhere:
  python3 benches/train_torch.py --model cnn --input 32,64,216 --norms bn,none [--reps 3]
      [--threads 2] [--impl native|spec]
Prints one JSON object on stdout: {"torch", "threads", "impl", "rows": [{"norm", "ms",
"start_rss_mib", "peak_rss_mib"}]} (RSS figures null off Linux).
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(
    0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
)
import gen_models  # noqa: E402  (sets the default dtype to float64)
import gen_norms  # noqa: E402

torch.set_default_dtype(torch.float32)
NORMS = ["bn", "l2bn", "gn", "gnplus", "ubn", "iebn", "ln", "in", "none"]
# Settings of the Rust NormConfig::default (as gen_models.VARIANTS for these names).
CFG = {stem: cfg for stem, _, cfg in gen_models.VARIANTS}
CNN_DROPOUT = 0.3
N_CLASSES = gen_models.N_CLASSES


# ---- peak RSS ----------------------------------------------------------------------------
def reset_peak_rss():
    """Resets VmHWM to the current RSS (Linux; elsewhere nothing is reported)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def status_mib(field):
    """A kB field of /proc/self/status in MiB (None off Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


# ---- native kernels in place of the spec formulas -----------------------------------------
def native_bn_core(x, bufs, train, update=True):
    """gen_norms.bn_core through F.batch_norm: batch statistics (biased variance) in train mode,
    running update with the unbiased variance and momentum 0.1, in place."""
    assert update
    return F.batch_norm(
        x, bufs["running_mean"], bufs["running_var"], training=train,
        momentum=gen_norms.MOM, eps=gen_norms.EPS,
    )


def native_gn_core(x, groups):
    return F.group_norm(x, groups, eps=gen_norms.EPS)


def native_bn(x, p, b, cfg, train):
    """BN with its affine inside F.batch_norm, as nn.BatchNorm2d runs it."""
    return F.batch_norm(
        x, b["running_mean"], b["running_var"], p["weight"], p["bias"], training=train,
        momentum=gen_norms.MOM, eps=gen_norms.EPS,
    )


def native_gn(x, p, b, cfg, train):
    """GN with its affine inside F.group_norm, as nn.GroupNorm runs it."""
    g = gen_norms.groups_for(x.shape[1], cfg.get("max_groups", 32))
    return F.group_norm(x, g, p["weight"], p["bias"], eps=gen_norms.EPS)


def native_ln(x, p, b, cfg, train):
    y = F.layer_norm(x, x.shape[1:], eps=gen_norms.EPS)
    return y * gen_norms.chan(p["weight"], x) + gen_norms.chan(p["bias"], x)


def native_in(x, p, b, cfg, train):
    return F.instance_norm(x, weight=p["weight"], bias=p["bias"], eps=gen_norms.EPS)


def native_batch_cosine(x):
    """gen_norms.batch_cosine as one Gram matrix of the normalized samples."""
    xs = x[: min(x.shape[0], 16)].detach().flatten(1)
    n = xs.shape[0]
    if n == 1:
        return 1.0
    xn = xs / xs.norm(dim=1, keepdim=True).clamp_min(1e-8)
    return ((xn @ xn.T).sum().item() - n) / (n * (n - 1))


def check_native():
    """Each native replacement against the spec form it replaces (float64, small input)."""
    gen = torch.Generator().manual_seed(9)
    x = (0.5 + torch.randn(5, 8, 6, 7, generator=gen, dtype=torch.float64))
    p = {k: v.double() for k, v in gen_norms.params_for("bn", 8, gen).items()}

    def bufs():
        return {k: v.double() for k, v in gen_norms.init_bn_bufs(8).items()}

    pairs = []
    for train in (True, False):
        b1, b2 = bufs(), bufs()
        b1["running_var"] += 0.3
        b2["running_var"] += 0.3
        pairs.append(("bn_core", gen_norms.bn_core(x, b1, train), native_bn_core(x, b2, train)))
        pairs += [(f"running {k}", b1[k], b2[k]) for k in b1]
    b1, b2 = bufs(), bufs()
    pairs.append(("bn", gen_norms.bn(x, p, b1, {}, True), native_bn(x, p, b2, {}, True)))
    pairs.append(("gn_core", gen_norms.gn_core(x, 4), native_gn_core(x, 4)))
    cfg = {"max_groups": 4}
    pairs.append(("gn", gen_norms.gn(x, p, {}, cfg, True), native_gn(x, p, {}, cfg, True)))
    pairs.append(("ln", gen_norms.ln(x, p, {}, {}, True), native_ln(x, p, {}, {}, True)))
    pairs.append(("in", gen_norms.inorm(x, p, {}, {}, True), native_in(x, p, {}, {}, True)))
    pairs.append(("batch_cosine", torch.tensor(gen_norms.batch_cosine(x)),
                  torch.tensor(native_batch_cosine(x))))
    for name, a, b in pairs:
        err = (a - b).abs().max().item()
        if err > 1e-9:
            raise SystemExit(f"native {name} disagrees with the spec form by {err:.2e}")


def use_native():
    check_native()
    gen_norms.bn_core = native_bn_core
    gen_norms.gn_core = native_gn_core
    gen_norms.batch_cosine = native_batch_cosine
    gen_norms.LAYERS["bn"] = native_bn
    gen_norms.LAYERS["gn"] = native_gn
    gen_norms.LAYERS["ln"] = native_ln
    gen_norms.LAYERS["in"] = native_in


# ---- the models --------------------------------------------------------------------------
class BenchNet(gen_models.Net):
    """gen_models.Net without the kink bookkeeping, with the cnn's dropout."""

    def relu(self, x):
        return F.relu(x)

    def max_pool(self, x, k):
        return F.dropout(F.max_pool2d(x, k), CNN_DROPOUT, training=True)


def build(model, norm):
    build_fn, forward = gen_models.MODELS[model]
    net = BenchNet(norm, CFG[norm], torch.Generator().manual_seed(0))
    build_fn(net)
    net.start(torch.float32)
    params = list(net.params.values())
    assert all(v.dtype == torch.float32 for v in params + list(net.buffers.values()))
    return net, forward, params


def step_ms(model, norm, input_shape, reps):
    """Median ms of one training step; RSS (MiB) at the start and its peak over building and
    training."""
    reset_peak_rss()
    start_rss = status_mib("VmRSS")
    n, h, w = input_shape
    net, forward, params = build(model, norm)
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-4)
    x = torch.randn(n, 1, h, w)
    y = torch.full((n, N_CLASSES), 0.1)
    times = []
    for i in range(reps + 1):
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        logits = forward(net, x)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        opt.step()
        if i > 0:
            times.append((time.perf_counter() - t) * 1e3)
        assert logits.dtype == torch.float32
    return statistics.median_high(times), start_rss, status_mib("VmHWM")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=list(gen_models.MODELS), required=True)
    ap.add_argument("--input", required=True, help="N,H,W of the (N, 1, H, W) batch")
    ap.add_argument("--norms", default=",".join(NORMS))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--impl", choices=["native", "spec"], default="native")
    a = ap.parse_args()
    input_shape = tuple(int(v) for v in a.input.split(","))
    if len(input_shape) != 3:
        ap.error("--input needs N,H,W")
    norms = a.norms.split(",")
    unknown = [n for n in norms if n not in NORMS]
    if unknown:
        ap.error(f"unknown norm(s) {unknown}; known: {NORMS}")
    torch.set_num_threads(a.threads)
    if a.impl == "native":
        use_native()
    rows = []
    for norm in norms:
        ms, start, peak = step_ms(a.model, norm, input_shape, a.reps)
        rows.append({"norm": norm, "ms": ms, "start_rss_mib": start, "peak_rss_mib": peak})
    json.dump(
        {"torch": torch.__version__, "threads": torch.get_num_threads(), "impl": a.impl,
         "rows": rows},
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    main()
