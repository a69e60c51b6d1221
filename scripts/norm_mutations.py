#!/usr/bin/env python3
"""Mutation check of the norm tests: does each defect of ε, axes, grouping, gate, mixing and
running statistics make tests/norm_parity.rs (or tests/norm_checklist.rs) fail?

Each mutation replaces one exact piece of src/ (it must occur exactly once), runs
`cargo test --test norm_parity --test norm_checklist --no-fail-fast`, puts the file back, and
records which tests failed and the first failing check. A mutation that no test catches, or
that does not compile, makes the script exit with status 1.

Usage (from anywhere in the repository; src/ must have no uncommitted changes, it is edited
in place and restored after every mutation, also on Ctrl-C, SIGTERM and SIGHUP; before each
edit the original file is saved in the worktree's git directory (norm_mutations.restore), so
that the next run puts it back if the script was killed outright):
    python3 scripts/norm_mutations.py            # all mutations, Markdown table on stdout
    python3 scripts/norm_mutations.py --list     # the mutations
    python3 scripts/norm_mutations.py --only gate  # those whose id contains "gate"
Cargo runs under `nice -n 19`; each mutation costs one incremental build of the crate.
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time

ROOT = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                      check=True, cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
TESTS = ["norm_parity", "norm_checklist"]
# The file being mutated and its original text, while a mutant is in place (per worktree).
JOURNAL = os.path.join(ROOT, subprocess.run(
    ["git", "rev-parse", "--git-path", "norm_mutations.restore"], capture_output=True, text=True,
    check=True, cwd=ROOT).stdout.strip())


def eps10(call_cfg="cfg"):
    """A NormConfig expression with ε ten times the configured one."""
    return f"&NormConfig {{ eps: {call_cfg}.eps * 10.0, ..{call_cfg}.clone() }}"


# (id, what the defect is, file, exact old text, new text)
MUTATIONS = [
    # ---- ε, per layer (docs/norms.md §1: ε = 1e-5 inside the square root) -------------------
    ("eps-bn", "BN: ε × 10", "src/nn/norm/bn.rs",
     "stats: RunningStats::new(c, cfg, nb)?,", f"stats: RunningStats::new(c, {eps10()}, nb)?,"),
    ("eps-l2bn", "L2BN: ε × 10", "src/nn/norm/l2bn.rs",
     "stats: RunningStats::new(c, cfg, nb)?,", f"stats: RunningStats::new(c, {eps10()}, nb)?,"),
    ("eps-iebn", "IEBN: ε × 10", "src/nn/norm/iebn.rs",
     "stats: RunningStats::new(c, cfg, nb)?,", f"stats: RunningStats::new(c, {eps10()}, nb)?,"),
    ("eps-ubn", "UBN: ε × 10", "src/nn/norm/ubn.rs",
     "stats: RunningStats::new(c, cfg, nb)?,", f"stats: RunningStats::new(c, {eps10()}, nb)?,"),
    ("eps-gnplus-bn", "GN+: ε × 10 in the BN part", "src/nn/norm/gnplus.rs",
     "Some(RunningStats::new(c, cfg, nb)?)", f"Some(RunningStats::new(c, {eps10()}, nb)?)"),
    ("eps-gnplus-gn", "GN+: ε × 10 in the GN part", "src/nn/norm/gnplus.rs",
     "eps: cfg.eps,", "eps: cfg.eps * 10.0,"),
    ("eps-gn", "GN: ε × 10", "src/nn/norm/gn.rs",
     "        cfg.groups_for(c),\n        cfg,\n", f"        cfg.groups_for(c),\n        {eps10()},\n"),
    ("eps-ln", "LN: ε × 10", "src/nn/norm/ln.rs",
     'GroupNorm::new(ENTRY.name, c, 1, cfg, nb)', f'GroupNorm::new(ENTRY.name, c, 1, {eps10()}, nb)'),
    ("eps-in", "IN: ε × 10", "src/nn/norm/in_norm.rs",
     'GroupNorm::new(ENTRY.name, c, c, cfg, nb)', f'GroupNorm::new(ENTRY.name, c, c, {eps10()}, nb)'),
    # ---- ε, shared kernels ------------------------------------------------------------------
    ("eps-zero", "ε = 0 in batch and group statistics (all layers, train)",
     "src/nn/ops/standardize.rs",
     ".map(|&v| (1.0 / (v as f64 + eps).sqrt()) as f32)",
     ".map(|&v| (1.0 / (v as f64 + 0.0 * eps).sqrt()) as f32)"),
    ("eps-on-std", "ε added to the std, batch and group statistics (all layers, train)",
     "src/nn/ops/standardize.rs",
     ".map(|&v| (1.0 / (v as f64 + eps).sqrt()) as f32)",
     ".map(|&v| (1.0 / ((v as f64).sqrt() + eps)) as f32)"),
    ("eps-on-std-running", "ε added to the std, running statistics (eval)",
     "src/nn/norm/stats.rs",
     "let a = (self.var.as_tensor().detach() + self.eps)?\n            .sqrt()?\n",
     "let a = (self.var.as_tensor().detach().sqrt()? + self.eps)?\n"),
    ("eps-inside-faithful", "faithful GN+: ε inside the sqrt instead of on the std",
     "src/nn/norm/gnplus.rs",
     "xc.broadcast_div(&(std + eps)?)", "xc.broadcast_div(&(std.sqr()? + eps)?.sqrt()?)"),
    # ---- axes and grouping --------------------------------------------------------------------
    ("groups-interleaved", "GN groups take every G-th channel instead of consecutive ones",
     "src/nn/ops/planes.rs",
     "Grouping::SampleGroups(g) => (p / self.c) * g + (p % self.c) / (self.c / g),",
     "Grouping::SampleGroups(g) => (p / self.c) * g + (p % self.c) % g,"),
    ("groups-smallest", "group rule picks the smallest divisor of C (GN becomes LN)",
     "src/nn/norm/mod.rs", "            .rev()\n            .find(", "            .find("),
    ("ln-per-channel", "LN statistics per channel (IN)", "src/nn/norm/ln.rs",
     'GroupNorm::new(ENTRY.name, c, 1,', 'GroupNorm::new(ENTRY.name, c, c,'),
    ("in-per-sample", "IN statistics per sample (LN)", "src/nn/norm/in_norm.rs",
     'GroupNorm::new(ENTRY.name, c, c,', 'GroupNorm::new(ENTRY.name, c, 1,'),
    ("l2bn-rms-over-l", "L2BN RMS divides Σx² by H·W instead of C·H·W", "src/nn/ops/equalize.rs",
     "let d = if mean { (geom.c * geom.l) as f64 } else { 1.0 };",
     "let d = if mean { geom.l as f64 } else { 1.0 };"),
    ("iebn-gap-sample", "IEBN attention from the mean over (C, H, W) instead of (H, W)",
     "src/nn/norm/iebn.rs", "gap_gate(x3, &self.weight_readjust,",
     "gap_gate(&x3.mean_keepdim(1)?.broadcast_as(x3.dims())?, &self.weight_readjust,"),
    ("ubn-center-gap-sample", "UBN centering from the mean over (C, H, W) instead of (H, W)",
     "src/nn/norm/ubn.rs", "let shift = gap(&x3)?\n",
     "let shift = gap(&x3)?.mean_keepdim(1)?.broadcast_as((n, c, 1))?.contiguous()?\n"),
    ("ubn-scale-gate-raw", "UBN scaling gate from the input instead of x̂",
     "src/nn/norm/ubn.rs", "let g = gap_gate(&xh,", "let g = gap_gate(&x3,"),
    ("ubn-bias-ungated", "UBN BNET bias not multiplied by the gate", "src/nn/norm/ubn.rs",
     "let shift = g.broadcast_mul(&self.kernel_bias)?;", "let shift = self.kernel_bias.clone();"),
    # ---- UBN's gate (docs/norms.md §5.2) ----------------------------------------------------
    ("gate-old-cos", "UBN gate decides on the moving cosine before this step's update",
     "src/nn/norm/ubn.rs",
     "FctMode::BatchWhenAbove => c > self.tau,\n            FctMode::BatchWhenBelow => c <= self.tau,",
     "FctMode::BatchWhenAbove => old > self.tau,\n            FctMode::BatchWhenBelow => old <= self.tau,"),
    ("gate-ema-swapped", "UBN moving cosine weights swapped (0.1 old, 0.9 new)",
     "src/nn/norm/ubn.rs",
     "let c = (1.0 - self.momentum_cos) * old + self.momentum_cos * s;",
     "let c = self.momentum_cos * old + (1.0 - self.momentum_cos) * s;"),
    ("gate-no-cap", "UBN cosine over all samples (no 16-sample cap)", "src/nn/norm/ubn.rs",
     "let n = x.dim(0)?.min(self.cos_samples);", "let n = x.dim(0)?;"),
    ("gate-single-sample", "UBN cosine of a single sample taken as 0 instead of 1",
     "src/nn/norm/ubn.rs", "        if n == 1 {\n            return Ok(1.0);",
     "        if n == 1 {\n            return Ok(0.0);"),
    ("gate-diagonal", "UBN cosine keeps the diagonal (mean over all n² pairs)",
     "src/nn/norm/ubn.rs", "Ok((gram_sum - n as f64) / (n * (n - 1)) as f64)",
     "Ok(gram_sum / (n * n) as f64)"),
    ("gate-off-batch-stats", "UBN with the gate off normalizes with batch statistics",
     "src/nn/norm/ubn.rs", ".normalize_running(&x1, None, Activation::Identity)?",
     ".normalize_batch(&x1, None, false, Activation::Identity)?"),
    ("gate-on-no-update", "UBN with the gate on does not update the running statistics",
     "src/nn/norm/stats.rs",
     "let st = centre_standardize(x, w, self.eps)?;\n        self.update(&st, m)?;",
     "let st = centre_standardize(x, w, self.eps)?;\n        let _ = m;"),
    ("gate-eval-updates", "UBN updates its moving cosine in eval mode too",
     "src/nn/norm/ubn.rs", "let use_batch = train && self.fct_gate(x)?;",
     "let use_batch = self.fct_gate(x)? && train;"),
    # ---- GN+ mixing (docs/norms.md §4.2) ----------------------------------------------------
    ("gnplus-mix-swapped", "GN+ weights s and 1 - s swapped", "src/nn/norm/gnplus.rs",
     "let g_s = self.weight.broadcast_mul(&s)?;\n"
     "        let g_rest = self.weight.broadcast_mul(&s.affine(-1.0, 1.0)?)?;",
     "let g_rest = self.weight.broadcast_mul(&s)?;\n"
     "        let g_s = self.weight.broadcast_mul(&s.affine(-1.0, 1.0)?)?;"),
    ("gnplus-no-sigmoid", "GN+ mixes with λ itself instead of sigmoid(λ)", "src/nn/norm/gnplus.rs",
     "let s = sigmoid(&self.lambda)?;", "let s = self.lambda.clone();"),
    ("gnplus-skip-centred", "GN+ skip term g_s·x on the BN-centred GN output",
     "src/nn/ops/standardize.rs", "yv.write(act.eval((xv - m) * a + k * xv + b));",
     "yv.write(act.eval((xv - m) * a + k * (xv - m) + b));"),
    ("gnplus-skip-grad", "GN+ skip weight's gradient without its μ·Σ∂z part",
     "src/nn/ops/standardize.rs",
     ".map(|p| centred[p] + stats.mean[g.group_of(p)] as f64 * f[p])", ".map(|p| centred[p])"),
    ("gnplus-fold", "GN+ eval fold (ONNX) with s and 1 - s swapped", "src/nn/norm/gnplus.rs",
     "a.broadcast_mul(&one_minus)?.broadcast_add(&s)?", "a.broadcast_mul(&s)?.broadcast_add(&one_minus)?"),
    # ---- running statistics (docs/norms.md §1) ----------------------------------------------
    ("running-biased", "running variance from the biased variance (no M/(M-1))",
     "src/nn/norm/stats.rs", "let unbiased = m as f64 / (m as f64 - 1.0);",
     "let unbiased = m as f64 / m as f64;"),
    ("running-momentum", "running statistics weight the old value by m instead of 1 - m",
     "src/nn/norm/stats.rs", "let mom = self.momentum;", "let mom = 1.0 - self.momentum;"),
    ("ubn-stats-of-x", "UBN batch mean of x instead of the centred x1", "src/nn/ops/centre.rs",
     "mean[p % g.c] += s * (1.0 + w[p % g.c] as f64);", "mean[p % g.c] += s;"),
    ("ubn-centre-sign", "UBN centring shift subtracted instead of added", "src/nn/ops/centre.rs",
     "(mean[c] as f64 - w[c] as f64 * s / l as f64) as f32",
     "(mean[c] as f64 + w[c] as f64 * s / l as f64) as f32"),
    ("ubn-centre-grad", "UBN input gradient without the path through the plane mean",
     "src/nn/ops/centre.rs", "let k3 = (-r * a[c] / m + ws[c] as f64 * planes[p] / l) as f32;",
     "let k3 = (-r * a[c] / m) as f32;"),
    # ---- UBN's BNET init (docs/norms.md §5.1) -----------------------------------------------
    ("bnet-bias-bound", "BNET bias U(-1/k², 1/k²) instead of PyTorch's U(-1/k, 1/k)",
     "src/nn/norm/ubn.rs", "lo: -1.0 / k as f64,\n                up: 1.0 / k as f64,",
     "lo: -1.0 / (k * k) as f64,\n                up: 1.0 / (k * k) as f64,"),
    ("bnet-bias-positive", "BNET bias U(0, 1/k)", "src/nn/norm/ubn.rs",
     "lo: -1.0 / k as f64,", "lo: 0.0,"),
    ("bnet-kernel-fan-in", "BNET kernel std from fan-in (k²) instead of fan-out (C·k²)",
     "src/nn/norm/ubn.rs", "stdev: (2.0 / (k * k * c) as f64).sqrt(),",
     "stdev: (2.0 / (k * k) as f64).sqrt(),"),
]


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def recover():
    """Puts back the file that a killed run left mutated (JOURNAL), if any."""
    if not os.path.exists(JOURNAL):
        return
    with open(JOURNAL) as f:
        saved = json.load(f)
    write(os.path.join(ROOT, saved["path"]), saved["original"])
    os.remove(JOURNAL)
    print(f"restored {saved['path']} from a run that was interrupted during {saved['id']}",
          file=sys.stderr)


def on_signal(signum, _frame):
    """SIGTERM and SIGHUP end the run like Ctrl-C, through the `finally` that restores src/."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


def run_tests():
    cmd = ["nice", "-n", "19", "cargo", "test", "--no-fail-fast"]
    for t in TESTS:
        cmd += ["--test", t]
    env = dict(os.environ, RUST_BACKTRACE="0")
    # One stream: cargo names each test binary on stderr, the tests report on stdout. Cargo runs
    # in its own process group, so that an interruption stops its rustc and test processes too
    # (killing cargo alone leaves a rustc building the mutant).
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, env=env, start_new_session=True)
    try:
        out, _ = p.communicate()
    except BaseException:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        raise
    return p.returncode, out


def summarize(out):
    """(failed tests as 'binary: test', first failing check, fixture ids that failed) of a
    cargo test output; the first check is taken from the fixture comparison where it failed."""
    failed, details, fixtures = [], [], set()
    parts = re.split(r"^\s*Running (?:unittests )?tests/(\w+)\.rs.*$", out, flags=re.M)
    for binary, text in zip(parts[1::2], parts[2::2]):
        for name in re.findall(r"^test (\S+) \.\.\. FAILED", text, re.M):
            failed.append(f"{binary}: {name}")
            m = re.search(rf"^---- {re.escape(name)} stdout ----\n(.*?)(?:^note:|^stack backtrace|\Z)",
                          text, re.M | re.S)
            if not m:
                continue
            lines = [l for l in m.group(1).splitlines()
                     if l.strip() and "panicked at" not in l and not l.startswith("|")]
            ids = [l for l in lines if re.match(r"^\w+_s\d ", l)]
            fixtures |= {l.split()[0] for l in ids}
            detail = (ids or lines or [""])[0].strip()
            details.append((0 if ids else 1, f"{name}: {detail}"))
    first = min(details)[1] if details else ""
    return failed, first, fixtures


def shapes_of(fixtures):
    """'s0 s2 s5' from fixture ids like bn_s0."""
    return " ".join(sorted({f.rsplit("_", 1)[1] for f in fixtures}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--list", action="store_true", help="list the mutations and exit")
    ap.add_argument("--only", default="", help="run the mutations whose id contains this")
    args = ap.parse_args()
    chosen = [m for m in MUTATIONS if args.only in m[0]]
    if args.list:
        for mid, what, path, _, _ in chosen:
            print(f"{mid:24s} {path:28s} {what}")
        return 0
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    recover()
    if subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=ROOT,
                      capture_output=True, text=True, check=True).stdout.strip():
        sys.exit("src/ has uncommitted changes; commit or stash them first")
    for mid, _, path, old, _ in chosen:
        n = open(os.path.join(ROOT, path)).read().count(old)
        if n != 1:
            sys.exit(f"{mid}: the text to replace occurs {n} times in {path}")
    print(f"baseline: cargo test {' '.join('--test ' + t for t in TESTS)}", file=sys.stderr)
    rc, out = run_tests()
    if rc != 0:
        sys.exit("the tests fail without any mutation:\n" + out[-3000:])
    rows, missed = [], []
    for i, (mid, what, path, old, new) in enumerate(chosen, 1):
        full = os.path.join(ROOT, path)
        original = open(full).read()
        t0 = time.time()
        with open(JOURNAL, "w") as f:
            json.dump({"id": mid, "path": path, "original": original}, f)
        try:
            write(full, original.replace(old, new))
            rc, out = run_tests()
        finally:
            write(full, original)
            os.remove(JOURNAL)
        failed, first, fixtures = summarize(out)
        if rc != 0 and not failed:
            err = re.search(r"^error(?:\[E\d+\])?: .*$", out, re.M)
            verdict, first = "did not compile", err.group(0) if err else out.strip()[-200:]
            missed.append(mid)
        elif failed:
            verdict = ", ".join(failed)
        else:
            verdict = "NOT CAUGHT"
            missed.append(mid)
        shapes = f" (fixture shapes failing: {shapes_of(fixtures)})" if fixtures else ""
        rows.append(f"| {mid} | {what} | {verdict} | {first}{shapes} |")
        print(f"[{i}/{len(chosen)}] {mid}: {verdict} ({time.time() - t0:.0f} s)", file=sys.stderr)
    if subprocess.run(["git", "diff", "--quiet", "--", "src"], cwd=ROOT).returncode != 0:
        sys.exit("src/ was not restored: run git checkout -- src")
    print("| mutation | defect | failing tests | first failing check |")
    print("|---|---|---|---|")
    print("\n".join(rows))
    print(f"\n{len(chosen) - len(missed)} of {len(chosen)} mutations caught"
          + (f"; missed: {', '.join(missed)}" if missed else ""))
    return 1 if missed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt as e:
        sys.exit(f"interrupted ({e or 'SIGINT'}); src/ restored")
