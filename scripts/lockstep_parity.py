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

How large may the rounding gap grow? --yardstick measures it: the reference trains the same
replay a second time in float64, and the table sets asc's distance from that float64 run next
to the float32 reference's own distance from it. asc follows the same recipe when it stays as
close to the float64 computation as PyTorch's float32 run does (median over the epochs within a
factor 2); a recipe difference would put asc far outside that band.

Writes OUT/lockstep.md (per model x norm and epoch: the training losses, their relative
differences, the test macro accuracies), OUT/lockstep.csv and OUT/lockstep.png.

Run (needs python3 with torch, numpy, safetensors, matplotlib, and a release build):
  python3 scripts/lockstep_parity.py --data data/devset --out runs/lockstep \\
      --models cnn,cp-mobile --norms bn,l2bn [--flags "--epochs 20"] [--seed 0] [--yardstick]
"""
import argparse
import json
import os
import shlex
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from recipe_parity import (REF, add_common_args, features_for, jsonl, run,  # noqa: E402
                           write_md_csv)

# Without --yardstick: relative difference of the first epoch's training loss below which the
# two runs count as the same computation (float32 rounding, summed in different orders by the
# two kernels, stays far below it over the first few steps).
SAME = 1e-3
# With --yardstick: asc's median distance from the float64 run may be at most this multiple of
# the float32 reference's.
BAND = 2.0


def cell(a, model, norm, log):
    """Trains one model x norm on both sides in lockstep (and the float64 yardstick when asked);
    returns the per-epoch curves: asc, reference, float64 reference or None."""
    base = os.path.join(a.out, f"{model}-{norm}-s{a.seed}")
    flags = (["--data", a.data, "--model", model, "--norm", norm, "--seed", str(a.seed),
              "--no-augment", "--dropout", "0"] + shlex.split(a.flags))
    prep, init = os.path.join(base, "prep"), os.path.join(base, "init.safetensors")
    asc_dir, ref_dir = os.path.join(base, "asc"), os.path.join(base, "ref")
    ref64_dir = os.path.join(base, "ref64")
    if not os.path.exists(os.path.join(asc_dir, "metrics.json")):
        # The recipe first (config.json, split.json), then the reference's draw of the weights.
        run([a.asc, "train", *flags, "--out", prep, "--stop-after", "0"], log)
        run([sys.executable, REF, "--run", prep, "--features", "-", "--out", "-",
             "--seed", str(a.seed), "--write-init", init], log)
        run([a.asc, "train", *flags, "--out", asc_dir, "--init", init, "--trace-batches",
             "--watch-test"], log)
        run([a.asc, "evaluate", "--run", asc_dir], log)
    sides = [(ref_dir, [])] + ([(ref64_dir, ["--float64"])] if a.yardstick else [])
    for out, extra in sides:
        if not os.path.exists(os.path.join(out, "result.json")):
            feats = features_for(a.asc, a.data, asc_dir, a.out, log)
            run([sys.executable, REF, "--run", asc_dir, "--features", feats, "--out", out,
                 "--seed", str(a.seed), "--threads", str(a.threads), "--quiet", "--lockstep",
                 *extra], log)
    curve = lambda d: jsonl(os.path.join(d, "metrics.jsonl"))
    return curve(asc_dir), curve(ref_dir), curve(ref64_dir) if a.yardstick else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_args(ap, "runs/lockstep")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--yardstick", action="store_true",
                    help="also train the replay in float64 and compare both sides with it")
    a = ap.parse_args()
    if not os.path.exists(a.asc):
        sys.exit(f"{a.asc} not found: cargo build --release first")
    os.makedirs(a.out, exist_ok=True)
    log = os.path.join(a.out, "log.txt")
    rows, curves, verdicts = [], {}, []
    for model in a.models.split(","):
        for norm in a.norms.split(","):
            print(f"{model} {norm}", flush=True)
            ours, ref, ref64 = cell(a, model, norm, log)
            curves[(model, norm)] = (ours, ref, ref64)
            cell_rows = [epoch_row(model, norm, o, r, q)
                         for o, r, q in zip(ours, ref, ref64 or [None] * len(ours))]
            rows.extend(cell_rows)
            verdicts.append(verdict(model, norm, cell_rows, a.yardstick))
    write(a, rows, curves, verdicts)
    sys.exit(0 if all(v[2] for v in verdicts) else 1)


def rel(x, y):
    return abs(x - y) / abs(y)


def epoch_row(model, norm, o, r, q):
    row = {"model": model, "norm": norm, "epoch": o["epoch"],
           "asc_train_loss": o["train_loss"], "ref_train_loss": r["train_loss"],
           "rel_diff": rel(o["train_loss"], r["train_loss"]),
           "asc_test_macro": o["test_macro_accuracy"], "ref_test_macro": r["test_macro_accuracy"]}
    if q is not None:
        row.update({"ref64_train_loss": q["train_loss"],
                    "asc_vs_64": rel(o["train_loss"], q["train_loss"]),
                    "ref_vs_64": rel(r["train_loss"], q["train_loss"]),
                    "ref64_test_macro": q["test_macro_accuracy"]})
    return row


def verdict(model, norm, rows, yardstick):
    """(model, norm, same recipe?, how it was judged, first epoch whose test macro differs)."""
    test = next((r["epoch"] for r in rows if r["asc_test_macro"] != r["ref_test_macro"]), None)
    if yardstick:
        med = lambda k: sorted(r[k] for r in rows)[len(rows) // 2]
        ours, theirs = med("asc_vs_64"), med("ref_vs_64")
        return (model, norm, ours <= BAND * theirs,
                f"median distance from float64: asc {ours:.1e}, float32 reference {theirs:.1e}",
                test)
    first = rows[0]["rel_diff"]
    return (model, norm, first < SAME, f"epoch 1 training losses {first:.1e} apart", test)


def write(a, rows, curves, verdicts):
    cmd = "python3 scripts/lockstep_parity.py " + " ".join(shlex.quote(x) for x in sys.argv[1:])
    lines = ["# Lockstep recipe parity: asc and the PyTorch reference on the same draws\n",
             f"Data: `{a.data}`; seed {a.seed}; asc flags: `--no-augment --dropout 0 {a.flags}`. "
             f"Command: `{cmd}`\n",
             "| model | norm | same recipe | judged by | first epoch whose test macro accuracy "
             "differs |", "|---|---|---|---|---|"]
    for model, norm, ok, how, test in verdicts:
        lines.append(f"| {model} | {norm} | {'yes' if ok else 'NO'} | {how} | {test or 'none'} |")
    y = a.yardstick
    lines += ["", "| model | norm | epoch | asc train loss | ref train loss | "
              + ("ref float64 train loss | asc vs float64 | ref vs float64 | " if y else
                 "relative difference | ")
              + "asc test macro | ref test macro |" + (" ref float64 test macro |" if y else ""),
              "|---|---|---|---|---|---|---|" + ("---|---|---|" if y else "")]
    for r in rows:
        gaps = (f"{r['ref64_train_loss']:.6f} | {r['asc_vs_64']:.1e} | {r['ref_vs_64']:.1e} | "
                if y else f"{r['rel_diff']:.1e} | ")
        lines.append(f"| {r['model']} | {r['norm']} | {r['epoch']} | {r['asc_train_loss']:.6f} | "
                     f"{r['ref_train_loss']:.6f} | {gaps}{r['asc_test_macro']:.3f} | "
                     f"{r['ref_test_macro']:.3f} |" + (f" {r['ref64_test_macro']:.3f} |" if y else ""))
    write_md_csv(a.out, "lockstep", lines, rows)
    plot(a, curves)
    print("\n".join(lines))


def plot(a, curves):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, len(curves), figsize=(4.2 * len(curves), 6.5), squeeze=False)
    for j, ((model, norm), (ours, ref, ref64)) in enumerate(curves.items()):
        sides = [("asc", ours, "tab:blue", "-"), ("PyTorch reference", ref, "tab:orange", "--")]
        if ref64:
            sides.append(("PyTorch reference, float64", ref64, "tab:green", ":"))
        for side, c, colour, style in sides:
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
