#!/usr/bin/env python3
"""Picks regression inputs from a libFuzzer corpus (after `cargo fuzz cmin`) for
tests/fuzz_regressions/: the smallest input of each distinct outcome `asc info --json` gives,
errors with their numbers masked (so "claims 17 bytes" and "claims 90 bytes" are one outcome),
valid files by format, width, extensibility, channel count and whether they hold any frame.

Usage: scripts/pick_fuzz_regressions.py FUZZ_CORPUS_DIR OUT_DIR  (needs target/debug/asc)
"""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent
asc = root / "target/debug/asc"
corpus, out = Path(sys.argv[1]), Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)

best = {}
files = sorted(corpus.iterdir(), key=lambda p: (p.stat().st_size, p.name))
for chunk in range(0, len(files), 200):
    batch = files[chunk : chunk + 200]
    res = subprocess.run([asc, "info", "--json", *batch], capture_output=True, text=True)
    for line in res.stdout.splitlines():
        v = json.loads(line)
        if "error" in v:
            kind = "error: " + re.sub(r"'[^']*'|\d+(\.\d+)?(e-?\d+)?", "#", v["error"])
        else:
            kind = "ok: {format} {bits_per_sample} ext={extensible} ch={channels}".format(**v)
            kind += " empty" if v["frames"] == 0 else ""
        best.setdefault(kind, Path(v["file"]))

for kind, path in sorted(best.items()):
    shutil.copy(path, out / path.name)
    print(f"{path.name}\t{path.stat().st_size}\t{kind}")
print(f"{len(best)} inputs", file=sys.stderr)
