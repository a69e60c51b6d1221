#!/usr/bin/env python3
"""Cuts the small committed slice of the development set that CI trains on
(tests/fixtures/real/, used by tests/real_audio.rs): five classes, two source recordings per
class for training and a third for the test list, 1 s clips at 16 kHz.

Pieces are 1 s from 0 s and 2.5 s into each 5 s clip of the source, in clip order, until the
source has given its share (4 training pieces per training source, 4 test pieces).

Run after build.py:  python3 datasets/devset/make_slice.py --devset data/devset \\
                          --out tests/fixtures/real
"""
import argparse
import csv
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from build import write_lists  # noqa: E402

# class: (training sources, test source), licences in sources.tsv.
SLICE = {
    "birds": (["pomodoro-birds", "btanks-forest"], "scorched3d-birds1"),
    "crowd": (["etw-crowd", "scorched3d-cheeringloop"], "tuxfootball-crowd"),
    "machinery": (["endlesssky-machinery", "unknownhorizons-lumberjacklong"],
                  "unknownhorizons-windmill"),
    "rain": (["pleethebear-rain", "scorched3d-rain"], "ardentryst-rainloop"),
    "wind": (["lugaru-wind", "berusky2-vitr"], "lugaru-desertambient"),
}
TRAIN_PIECES, TEST_PIECES = 4, 4
RATE = 16000


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devset", default="data/devset")
    ap.add_argument("--out", default="tests/fixtures/real")
    a = ap.parse_args()
    with open(os.path.join(a.devset, "meta.csv"), newline="") as f:
        meta = list(csv.DictReader(f, delimiter="\t"))
    with open(os.path.join(a.devset, "sources.json")) as f:
        sources = {s["source"]: s for s in json.load(f)["sources"]}
    if os.path.exists(a.out):
        shutil.rmtree(a.out)
    os.makedirs(os.path.join(a.out, "audio"))
    os.makedirs(os.path.join(a.out, "evaluation_setup"))
    rows, train, test, licences = [], [], [], []
    for label, (train_srcs, test_src) in SLICE.items():
        plan = [(s, TRAIN_PIECES, train) for s in train_srcs] + [(test_src, TEST_PIECES, test)]
        for src, count, side in plan:
            clips = sorted((r for r in meta if r["identifier"] == src),
                           key=lambda r: int(r["filename"].rsplit("-", 2)[1]))
            pieces = [(c, off) for c in clips for off in (0.0, 2.5)][:count]
            if len(pieces) < count:
                raise SystemExit(f"{src}: only {len(pieces)} pieces")
            for k, (clip, off) in enumerate(pieces):
                name = f"audio/{label}-{src}-{k}-{clip['source_label']}.wav"
                subprocess.run(["sox", "-q", os.path.join(a.devset, clip["filename"]), "-b", "16",
                                os.path.join(a.out, name), "trim", str(off), "1", "rate", "-v",
                                str(RATE)], check=True)
                rows.append((name, label, src, clip["source_label"]))
                side.append((name, label))
            s = sources[src]
            licences.append(f"| {label} | `{src}` | {s['package']} {s['version_used']} | "
                            f"/{s['path']} | {s['license']} | {s['copyright']} |")

    write_lists(a.out, rows, train, test)
    with open(os.path.join(a.out, "LICENSES.md"), "w") as f:
        f.write("# Licences of the real-recording test slice\n\n1 s pieces, resampled to 16 kHz, "
                "of the development set's clips (datasets/devset/make_slice.py); each source "
                "file as shipped in its Debian package, licence and copyright as the package's "
                "debian/copyright states them.\n\n| class | source | package | file | licence "
                "| copyright |\n|---|---|---|---|---|---|\n" + "\n".join(licences) + "\n")
    print(f"{len(rows)} clips in {a.out}")


if __name__ == "__main__":
    main()
