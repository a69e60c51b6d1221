#!/usr/bin/env python3
"""Lockstep recipe parity: `asc train` and the PyTorch reference trainer on the same draws.

scripts/recipe_parity.py compares the two trainers over seeds, each with its own random draws,
so it can only say that the accuracies lie in each other's seed spread. This check removes the
draws: the reference writes its initial weights (tests/fixtures/ref_train.py --write-init),
`asc train --init` starts from them and records its batches and crops (--trace-batches), and the
reference replays exactly those (--lockstep), with augmentation and dropout off. The two then
compute the same sequence of optimiser steps, so their curves may differ only by float rounding,
which grows slowly over the steps; a difference in the recipe anywhere (learning-rate schedule,
AdamW, weight decay, norm layers and their running statistics, input standardisation, the
evaluation path, metrics) shows as a gap from the first epoch on.

Writes OUT/lockstep.md (per model x norm and epoch: both training losses, their relative
difference, both test macro accuracies), OUT/lockstep.csv and OUT/lockstep.png.

Run (needs python3 with torch, numpy, safetensors, matplotlib, and a release build):
  python3 scripts/lockstep_parity.py --data data/devset --out runs/lockstep \\
      --models cnn,cp-mobile --norms bn,l2bn [--flags "--epochs 20"] [--seed 0]
"""
import argparse
import json
import os
import shlex
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from recipe_parity import (REF, add_common_args, features_for, jsonl, run,  # noqa: E402
                           write_md_csv)

# Per-epoch relative difference of the training loss below which the two runs count as the
# same computation: float32 rounding, summed in different orders by the two kernels, stays
# orders of magnitude below it over the first epochs.
SAME = 1e-3


def cell(a, model, norm, log):
    """Trains one model x norm on both sides in lockstep; returns the two per-epoch curves."""
    base = os.path.join(a.out, f"{model}-{norm}-s{a.seed}")
    flags = (["--data", a.data, "--model", model, "--norm", norm, "--seed", str(a.seed),
              "--no-augment", "--dropout", "0"] + shlex.split(a.flags))
    prep, init = os.path.join(base, "prep"), os.path.join(base, "init.safetensors")
    asc_dir, ref_dir = os.path.join(base, "asc"), os.path.join(base, "ref")
    if not os.path.exists(os.path.join(asc_dir, "metrics.json")):
        # The recipe first (config.json, split.json), then the reference's draw of the weights.
        run([a.asc, "train", *flags, "--out", prep, "--stop-after", "0"], log)
        run([sys.executable, REF, "--run", prep, "--features", "-", "--out", "-",
             "--seed", str(a.seed), "--write-init", init], log)
        run([a.asc, "train", *flags, "--out", asc_dir, "--init", init, "--trace-batches",
             "--watch-test"], log)
        run([a.asc, "evaluate", "--run", asc_dir], log)
    if not os.path.exists(os.path.join(ref_dir, "result.json")):
        feats = features_for(a.asc, a.data, asc_dir, a.out, log)
        run([sys.executable, REF, "--run", asc_dir, "--features", feats, "--out", ref_dir,
             "--seed", str(a.seed), "--threads", str(a.threads), "--quiet", "--lockstep"], log)
    return jsonl(os.path.join(asc_dir, "metrics.jsonl")), jsonl(os.path.join(ref_dir, "metrics.jsonl"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_args(ap, "runs/lockstep")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if not os.path.exists(a.asc):
        sys.exit(f"{a.asc} not found: cargo build --release first")
    os.makedirs(a.out, exist_ok=True)
    log = os.path.join(a.out, "log.txt")
    rows, curves, verdicts = [], {}, []
    for model in a.models.split(","):
        for norm in a.norms.split(","):
            print(f"{model} {norm}", flush=True)
            ours, ref = cell(a, model, norm, log)
            curves[(model, norm)] = (ours, ref)
            for o, r in zip(ours, ref):
                rel = abs(o["train_loss"] - r["train_loss"]) / abs(r["train_loss"])
                rows.append({"model": model, "norm": norm, "epoch": o["epoch"],
                             "asc_train_loss": o["train_loss"], "ref_train_loss": r["train_loss"],
                             "rel_diff": rel, "asc_test_macro": o["test_macro_accuracy"],
                             "ref_test_macro": r["test_macro_accuracy"]})
            first = [r for r in rows if (r["model"], r["norm"]) == (model, norm)]
            verdicts.append((model, norm, first[0]["rel_diff"] < SAME,
                             next((r["epoch"] for r in first if r["rel_diff"] >= SAME), None),
                             next((r["epoch"] for r in first
                                   if r["asc_test_macro"] != r["ref_test_macro"]), None)))
    write(a, rows, curves, verdicts)
    sys.exit(0 if all(v[2] for v in verdicts) else 1)


def write(a, rows, curves, verdicts):
    cmd = "python3 scripts/lockstep_parity.py " + " ".join(shlex.quote(x) for x in sys.argv[1:])
    lines = ["# Lockstep recipe parity: asc and the PyTorch reference on the same draws\n",
             f"Data: `{a.data}`; seed {a.seed}; asc flags: `--no-augment --dropout 0 {a.flags}`. "
             f"Command: `{cmd}`\n",
             "| model | norm | same computation at epoch 1 | first epoch with training-loss "
             f"difference ≥ {SAME:g} | first epoch whose test macro accuracy differs |",
             "|---|---|---|---|---|"]
    for model, norm, ok, drift, test in verdicts:
        lines.append(f"| {model} | {norm} | {'yes' if ok else 'NO'} | {drift or 'none'} | "
                     f"{test or 'none'} |")
    lines += ["", "| model | norm | epoch | asc train loss | ref train loss | relative difference "
              "| asc test macro | ref test macro |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['norm']} | {r['epoch']} | {r['asc_train_loss']:.6f} | "
                     f"{r['ref_train_loss']:.6f} | {r['rel_diff']:.1e} | {r['asc_test_macro']:.3f} | "
                     f"{r['ref_test_macro']:.3f} |")
    write_md_csv(a.out, "lockstep", lines, rows)
    plot(a, curves)
    print("\n".join(lines))


def plot(a, curves):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, len(curves), figsize=(4.2 * len(curves), 6.5), squeeze=False)
    for j, ((model, norm), (ours, ref)) in enumerate(curves.items()):
        for side, c, colour, style in (("asc", ours, "tab:blue", "-"),
                                       ("PyTorch reference", ref, "tab:orange", "--")):
            for row, key in ((0, "test_macro_accuracy"), (1, "train_loss")):
                axes[row][j].plot([e["epoch"] for e in c], [e[key] for e in c], style,
                                  color=colour, label=side)
                axes[row][j].set_title(f"{model} {norm}: {key.replace('_', ' ')}", fontsize=9)
                axes[row][j].set_xlabel("epoch")
        axes[0][j].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(a.out, "lockstep.png"), dpi=110)


if __name__ == "__main__":
    main()
