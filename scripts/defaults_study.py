#!/usr/bin/env python3
"""The measurements behind `asc train`'s defaults: named recipes (sets of `asc train` flags)
trained over several seeds on one data set, each run's model scored on the test list.

  OUT/study.md     one line per recipe: test macro accuracy and accuracy, mean +- std over seeds,
                   and the final training loss (how well the training list is fitted)
  OUT/study.csv    one line per run

Runs already finished in OUT are reused. Recipes are given as NAME=FLAGS (repeatable) or read
from --recipes FILE (one NAME<TAB>FLAGS per line).

Run:  python3 scripts/defaults_study.py --data data/devset --out runs/study --seeds 3 \\
          --recipe "plain=--no-augment --lr 0.001 --schedule constant" --recipe "default="
"""
import argparse
import json
import os
import shlex
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from recipe_parity import ROOT, finished, jsonl, mean_std, run, write_md_csv  # noqa: E402


def train_one(a, name, flags, seed, log):
    run_dir = os.path.join(a.out, f"{name}-s{seed}")
    cfg = os.path.join(run_dir, "config.json")
    epochs = None
    if os.path.exists(cfg):
        with open(cfg) as f:
            epochs = json.load(f)["epochs"]
    if epochs is None or not finished(run_dir, epochs) or not os.path.exists(
            os.path.join(run_dir, "metrics.json")):
        run([a.asc, "train", "--data", a.data, "--model", a.model, "--norm", a.norm, "--seed",
             str(seed), "--out", run_dir, "--resume"] + shlex.split(a.flags) + shlex.split(flags),
            log)
        run([a.asc, "evaluate", "--run", run_dir], log)
    with open(os.path.join(run_dir, "metrics.json")) as f:
        m = json.load(f)
    last = jsonl(os.path.join(run_dir, "metrics.jsonl"))[-1]
    return {"recipe": name, "seed": seed, "test_accuracy": m["accuracy"],
            "test_macro_accuracy": m["macro_accuracy"], "test_log_loss": m["log_loss"],
            "train_loss": last["train_loss"], "epochs": last["epoch"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--model", default="cnn")
    ap.add_argument("--norm", default="bn")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--flags", default="", help="flags every recipe gets")
    ap.add_argument("--recipe", action="append", default=[], help="NAME=FLAGS")
    ap.add_argument("--recipes", help="file of NAME<TAB>FLAGS lines")
    ap.add_argument("--asc", default=os.path.join(ROOT, "target", "release", "asc"))
    a = ap.parse_args()
    recipes = [tuple(r.split("=", 1)) for r in a.recipe]
    if a.recipes:
        with open(a.recipes) as f:
            recipes += [tuple(line.rstrip("\n").split("\t", 1)) for line in f
                        if line.strip() and not line.startswith("#")]
    os.makedirs(a.out, exist_ok=True)
    log = os.path.join(a.out, "log.txt")
    rows = []
    for seed in range(a.seeds):
        for name, flags in recipes:
            print(f"{name} seed {seed}", flush=True)
            rows.append(train_one(a, name, flags, seed, log))
    lines = [f"# asc train recipes: {a.model} + {a.norm} on `{a.data}`, seeds 0..{a.seeds - 1}\n",
             "Command: `python3 scripts/defaults_study.py "
             + " ".join(shlex.quote(x) for x in sys.argv[1:]) + "`\n",
             "| recipe | flags | test macro accuracy | test accuracy | test log loss | final train loss |",
             "|---|---|---|---|---|---|"]
    for name, flags in recipes:
        sel = [r for r in rows if r["recipe"] == name]
        f = lambda k: "{:.3f} ± {:.3f}".format(*mean_std([r[k] for r in sel]))
        lines.append(f"| {name} | `{(a.flags + ' ' + flags).strip()}` | {f('test_macro_accuracy')} | "
                     f"{f('test_accuracy')} | {f('test_log_loss')} | {f('train_loss')} |")
    write_md_csv(a.out, "study", lines, rows)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
