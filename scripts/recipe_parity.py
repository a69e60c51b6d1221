#!/usr/bin/env python3
"""Recipe parity: `asc train` against the PyTorch reference trainer, end to end, on real data.

For every model x norm x seed it trains with `asc train` (test list watched each epoch), scores
the run's model with `asc evaluate`, then trains the same recipe -- read from the run's
config.json and split.json -- with tests/fixtures/ref_train.py on the same log-mel features
(`asc features`), and writes:

  OUT/parity.md    per model and norm: test macro accuracy (and accuracy) of both, mean +- std
                   over seeds, the reference's range, and whether asc's mean lies in that range
  OUT/parity.csv   one line per run
  OUT/parity.png   mean test macro accuracy per epoch, asc against the reference, per model x norm
                   (and training loss), so a gap can be located in the curves

Runs already finished in OUT are reused, so an interrupted check continues where it stopped.

Run (installs nothing; needs python3 with torch, numpy and matplotlib, and a release build):
  cargo build --release
  python3 datasets/devset/build.py --out data/devset
  python3 scripts/recipe_parity.py --data data/devset --out runs/parity \\
      --models cnn,cp-mobile --norms bn,l2bn --seeds 3 [--flags "--epochs 40"] \\
      [--model-flags "cp-mobile=--crop-frames 65"]
"""
import argparse
import csv
import hashlib
import json
import os
import shlex
import statistics
import subprocess
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
REF = os.path.join(ROOT, "tests", "fixtures", "ref_train.py")


def run(cmd, log):
    with open(log, "a") as f:
        f.write("$ " + " ".join(shlex.quote(c) for c in cmd) + "\n")
        f.flush()
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}; see {log}")


def jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def finished(run_dir, epochs):
    try:
        with open(os.path.join(run_dir, "state.json")) as f:
            return json.load(f)["epochs_done"] >= epochs
    except (OSError, KeyError, ValueError):
        return False


def features_for(asc, data, run_dir, out, log):
    """`asc features` of the data set's audio with the run's front end (once per front end)."""
    with open(os.path.join(run_dir, "config.json")) as f:
        frontend = json.load(f)["frontend"]
    text = json.dumps(frontend, sort_keys=True)
    key = hashlib.sha256(text.encode()).hexdigest()[:12]
    folder = os.path.join(out, "features", key)
    done = os.path.join(folder, ".done")
    if not os.path.exists(done):
        os.makedirs(folder, exist_ok=True)
        cfg = os.path.join(folder, "frontend.json")
        with open(cfg, "w") as f:
            f.write(text)
        run([asc, "features", os.path.join(data, "audio"), "--out", folder, "--frontend", cfg,
             "--cache", os.path.join(data, ".asc-cache")], log)
        open(done, "w").close()
    return folder


def one(a, model, norm, seed, log):
    """Trains and scores one cell on both sides; returns (asc row, ref row)."""
    name = f"{model}-{norm}-s{seed}"
    asc_dir = os.path.join(a.out, "asc", name)
    ref_dir = os.path.join(a.out, "ref", name)
    flags = shlex.split(a.flags) + shlex.split(a.model_flags.get(model, ""))
    cfg_path = os.path.join(asc_dir, "config.json")
    epochs = None
    if os.path.exists(cfg_path):
        with open(cfg_path) as f:
            epochs = json.load(f)["epochs"]
    if epochs is None or not finished(asc_dir, epochs):
        run([a.asc, "train", "--data", a.data, "--model", model, "--norm", norm, "--seed",
             str(seed), "--out", asc_dir, "--watch-test", "--resume"] + flags, log)
        run([a.asc, "evaluate", "--run", asc_dir], log)
    with open(os.path.join(asc_dir, "metrics.json")) as f:
        m = json.load(f)
    asc_row = {"side": "asc", "model": model, "norm": norm, "seed": seed,
               "test_accuracy": m["accuracy"], "test_macro_accuracy": m["macro_accuracy"],
               "test_log_loss": m["log_loss"], "curve": jsonl(os.path.join(asc_dir, "metrics.jsonl"))}
    if not os.path.exists(os.path.join(ref_dir, "result.json")):
        feats = features_for(a.asc, a.data, asc_dir, a.out, log)
        run([sys.executable, REF, "--run", asc_dir, "--features", feats, "--out", ref_dir,
             "--seed", str(seed), "--threads", str(a.threads), "--quiet"], log)
    with open(os.path.join(ref_dir, "result.json")) as f:
        r = json.load(f)
    ref_row = {"side": "ref", "model": model, "norm": norm, "seed": seed,
               "test_accuracy": r["test_accuracy"], "test_macro_accuracy": r["test_macro_accuracy"],
               "test_log_loss": r["test_log_loss"], "curve": jsonl(os.path.join(ref_dir, "metrics.jsonl"))}
    return asc_row, ref_row


def add_common_args(ap, out):
    """The flags every check over the development set takes (this script's and its siblings')."""
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", default=out)
    ap.add_argument("--models", default="cnn,cp-mobile")
    ap.add_argument("--norms", default="bn,l2bn")
    ap.add_argument("--flags", default="", help="extra asc train flags for every run")
    ap.add_argument("--asc", default=os.path.join(ROOT, "target", "release", "asc"))
    ap.add_argument("--threads", type=int, default=2)


def write_md_csv(folder, stem, lines, rows):
    """FOLDER/STEM.md from `lines` and FOLDER/STEM.csv from `rows` (dicts with equal keys)."""
    with open(os.path.join(folder, stem + ".md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(folder, stem + ".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def mean_std(v):
    return (statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0)


def report(a, rows):
    lines = [
        "# Recipe parity: asc against the PyTorch reference trainer\n",
        f"Data: `{a.data}`; seeds 0..{a.seeds - 1}; asc flags: `{a.flags}` "
        f"{'; per model: ' + str(a.model_flags) if a.model_flags else ''}. Test list of fold 1, "
        "the run's chosen model (last epoch without a validation split). Command: "
        "`python3 scripts/recipe_parity.py " + " ".join(shlex.quote(x) for x in sys.argv[1:]) + "`\n",
        "| model | norm | asc macro acc. | reference macro acc. | reference range | asc mean in range | "
        "asc acc. | reference acc. |",
        "|---|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for model in a.models:
        for norm in a.norms:
            get = lambda side, k: [r[k] for r in rows if r["side"] == side and r["model"] == model
                                   and r["norm"] == norm]
            am, asd = mean_std(get("asc", "test_macro_accuracy"))
            rm, rsd = mean_std(get("ref", "test_macro_accuracy"))
            lo, hi = min(get("ref", "test_macro_accuracy")), max(get("ref", "test_macro_accuracy"))
            aa, aasd = mean_std(get("asc", "test_accuracy"))
            ra, rasd = mean_std(get("ref", "test_accuracy"))
            ok = lo <= am <= hi
            verdicts.append(ok)
            lines.append(f"| {model} | {norm} | {am:.3f} ± {asd:.3f} | {rm:.3f} ± {rsd:.3f} | "
                         f"[{lo:.3f}, {hi:.3f}] | {'yes' if ok else 'NO'} | {aa:.3f} ± {aasd:.3f} | "
                         f"{ra:.3f} ± {rasd:.3f} |")
    lines.append("\nPer run: `parity.csv`; curves: `parity.png`.\n")
    with open(os.path.join(a.out, "parity.md"), "w") as f:
        f.write("\n".join(lines))
    with open(os.path.join(a.out, "parity.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["side", "model", "norm", "seed", "test_accuracy", "test_macro_accuracy",
                    "test_log_loss"])
        for r in rows:
            w.writerow([r["side"], r["model"], r["norm"], r["seed"], f"{r['test_accuracy']:.6f}",
                        f"{r['test_macro_accuracy']:.6f}", f"{r['test_log_loss']:.6f}"])
    plot(a, rows)
    print("\n".join(lines))
    return all(verdicts)


def plot(a, rows):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cells = [(m, n) for m in a.models for n in a.norms]
    fig, axes = plt.subplots(2, len(cells), figsize=(4.2 * len(cells), 6.5), squeeze=False)
    for j, (model, norm) in enumerate(cells):
        for side, colour in (("asc", "tab:blue"), ("ref", "tab:orange")):
            curves = [r["curve"] for r in rows if r["side"] == side and r["model"] == model
                      and r["norm"] == norm]
            n = min(len(c) for c in curves)
            for row, key in ((0, "test_macro_accuracy"), (1, "train_loss")):
                ax = axes[row][j]
                if any(c[0].get(key) is None for c in curves):
                    continue  # a run trained without --watch-test has no test curve
                for c in curves:
                    ax.plot([e["epoch"] for e in c[:n]], [e[key] for e in c[:n]], color=colour,
                            alpha=0.25, lw=0.8)
                mean = [statistics.mean(c[i][key] for c in curves) for i in range(n)]
                ax.plot(range(1, n + 1), mean, color=colour, lw=2,
                        label="asc" if side == "asc" else "PyTorch reference")
                ax.set_title(f"{model} {norm}: {key.replace('_', ' ')}", fontsize=9)
                ax.set_xlabel("epoch")
        axes[0][j].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(a.out, "parity.png"), dpi=110)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_args(ap, "runs/parity")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--model-flags", action="append", default=[],
                    help="MODEL=FLAGS: extra asc train flags for one model (repeatable)")
    a = ap.parse_args()
    a.models = a.models.split(",")
    a.norms = a.norms.split(",")
    a.model_flags = dict(x.split("=", 1) for x in a.model_flags)
    if not os.path.exists(a.asc):
        sys.exit(f"{a.asc} not found: cargo build --release first")
    os.makedirs(a.out, exist_ok=True)
    log = os.path.join(a.out, "log.txt")
    rows = []
    for model in a.models:
        for norm in a.norms:
            for seed in range(a.seeds):
                print(f"{model} {norm} seed {seed}", flush=True)
                rows.extend(one(a, model, norm, seed, log))
    ok = report(a, rows)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
