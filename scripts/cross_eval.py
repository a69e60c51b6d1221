#!/usr/bin/env python3
"""One `asc train` run's weights through both evaluation paths: the PyTorch reference's
forward pass (tests/fixtures/ref_train.py, its models from the specification) and `asc
evaluate` (the run's metrics.json). Equal figures mean a gap in scripts/recipe_parity.py comes
from training, not from evaluation (running statistics, input standardisation, whole clips).

Run (after `asc evaluate --run RUN`; FEATURES as recipe_parity.py writes them, the run's front
end):  python3 scripts/cross_eval.py RUN FEATURES
"""
import json
import os
import sys

import numpy as np
import torch
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "fixtures"))
import ref_train as R  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402

run, feats = sys.argv[1], sys.argv[2]
config = json.load(open(os.path.join(run, "config.json")))
labels_of, test_names = R.dataset(config["data"], config["fold"])
index = {n: i for i, n in enumerate(config["labels"])}
specs = R.load_features(feats, test_names)
net, forward = R.build_model(config, 0)
w = load_file(os.path.join(run, "best.safetensors"))
missing = []
for k in list(net.params):
    if "param." + k in w:
        net.params[k] = torch.from_numpy(w["param." + k].astype(np.float32))
    else:
        missing.append(k)
for k in list(net.buffers):
    if "buffer." + k in w:
        net.buffers[k] = torch.from_numpy(w["buffer." + k].astype(np.float32))
    else:
        missing.append(k)
mean, std = w.get("buffer.input_norm.mean"), w.get("buffer.input_norm.std")
probs = R.predict(net, forward, [specs[n] for n in test_names], mean, std)
y = np.array([index[labels_of[n]] for n in test_names])
m = R.metrics(probs, y, len(index))
asc = json.load(open(os.path.join(run, "metrics.json")))
print(f"missing {missing}")
print(f"reference forward: macro {m['macro_accuracy']:.4f} acc {m['accuracy']:.4f} log loss {m['log_loss']:.4f}")
print(f"asc evaluate:      macro {asc['macro_accuracy']:.4f} acc {asc['accuracy']:.4f} log loss {asc['log_loss']:.4f}")
