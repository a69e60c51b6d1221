#!/usr/bin/env python3
"""Converts a teacher's logits saved by PyTorch (`torch.save` of an N x C tensor, as DCASE
ensembles are shared) into a file `asc train --teacher-logits` reads:

    python3 scripts/teacher_logits.py LOGITS.pt DATA/meta.csv OUT.tsv   # a named table
    python3 scripts/teacher_logits.py LOGITS.pt DATA/meta.csv OUT.npy   # the bare matrix

The tensor's rows must be meta.csv's rows in file order and its columns the classes in
alphabetical order (check this against the ensemble's own documentation); the table written
names every row's file and every column's class, so asc can check both.
"""
import sys

import numpy as np
import torch


def main():
    src, meta, out = sys.argv[1:4]
    logits = torch.load(src, map_location="cpu")
    if isinstance(logits, dict):
        sys.exit(f"{src}: a dict ({', '.join(logits)}), expected one N x C tensor")
    logits = logits.detach().double().numpy()
    with open(meta) as f:
        rows = [line.rstrip("\n").split("\t") for line in f][1:]
    rows = [r for r in rows if r and r[0]]
    labels = sorted({r[1] for r in rows})
    if logits.shape != (len(rows), len(labels)):
        sys.exit(f"{src}: shape {logits.shape}, meta.csv has {len(rows)} rows and "
                 f"{len(labels)} classes")
    if out.endswith(".npy"):
        np.save(out, logits.astype(np.float32))
        return
    with open(out, "w") as f:
        f.write("filename\t" + "\t".join(labels) + "\n")
        for r, z in zip(rows, logits):
            f.write(r[0] + "\t" + "\t".join(f"{v:.7g}" for v in z) + "\n")


if __name__ == "__main__":
    main()
