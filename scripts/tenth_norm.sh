#!/usr/bin/env bash
# Shows that a tenth normalization layer is one new file plus one line (docs/architecture.md,
# "Adding a norm"): in a scratch copy of this tree it adds src/nn/norm/rms.rs (an RMS norm: each
# sample divided by the root mean square over (C, H, W), then a learnt per-channel scale and shift,
# with one setting of its own) and the line `rms,` in the registry list, then builds, trains
# `cnn --norm rms` for one epoch on synthetic clips, then again with its setting changed in a
# --config file, exports that run to ONNX, classifies with the exported file, and prints the run's
# norm_config; last, tests/models.rs (every model with every norm) with the new layer.
#
#   bash scripts/tenth_norm.sh            # scratch folder under target/tenth-norm (kept, reused)
#
# Needs only the Rust toolchain. The first run copies target/release (if built) to save
# rebuilding the dependencies.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${TENTH_NORM_DIR:-$ROOT/target/tenth-norm}"
SRC="$WORK/src-tree"
rm -rf "$SRC" && mkdir -p "$SRC"
git -C "$ROOT" ls-files -z | (cd "$ROOT" && xargs -0 cp --parents -t "$SRC")
# Uncommitted edits of tracked files travel too (ls-files lists them; cp copies the work tree).
if [ ! -d "$WORK/target/release" ] && [ -d "$ROOT/target/release" ]; then
  mkdir -p "$WORK/target" && cp -r "$ROOT/target/release" "$WORK/target/release"
fi

# 1. The one new file.
cat > "$SRC/src/nn/norm/rms.rs" <<'EOF'
//! RMS norm (a demonstration layer for docs/architecture.md, "Adding a norm"): each sample divided
//! by its root mean square over (C, H, W), then a per-channel scale and shift; train = eval.

use candle_core::{Result, Tensor};
use serde::{Deserialize, Serialize};

use super::{Norm, NormBuilder, NormConfig, NormEntry};
use crate::nn::ops::Activation;
use crate::nn::options::Options;
use crate::onnx::graph::{attr_int, attr_ints, OnnxGraph};

/// The layer's own setting (`norm_config.rms`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RmsOptions {
    /// The ε under the root is `eps_scale · norm_config.eps`.
    pub eps_scale: f64,
}

impl Default for RmsOptions {
    fn default() -> Self {
        Self { eps_scale: 1.0 }
    }
}

impl Options for RmsOptions {
    const KEY: &'static str = "rms";
}

pub const ENTRY: NormEntry = NormEntry::new("rms", build).configured_by::<RmsOptions>();

#[derive(Debug)]
pub struct RmsNorm {
    eps: f64,
    weight: Tensor,
    bias: Tensor,
}

pub fn build(c: usize, cfg: &NormConfig, nb: &NormBuilder) -> Result<Box<dyn Norm>> {
    Ok(Box::new(RmsNorm {
        eps: cfg.eps * cfg.options::<RmsOptions>().eps_scale,
        weight: nb.param("weight", c, 1.0)?,
        bias: nb.param("bias", c, 0.0)?,
    }))
}

impl Norm for RmsNorm {
    fn forward_act_t(&self, x: &Tensor, _train: bool, act: Activation) -> Result<Tensor> {
        let mut per_sample = vec![x.dim(0)?];
        per_sample.resize(x.rank(), 1);
        let mut per_channel = vec![1, self.weight.elem_count()];
        per_channel.resize(x.rank(), 1);
        let ms = x.sqr()?.flatten_from(1)?.mean_keepdim(1)?.reshape(per_sample)?;
        let y = x.broadcast_div(&(ms + self.eps)?.sqrt()?)?;
        let y = y
            .broadcast_mul(&self.weight.reshape(per_channel.clone())?)?
            .broadcast_add(&self.bias.reshape(per_channel)?)?;
        act.apply(&y)
    }

    fn name(&self) -> &'static str {
        ENTRY.name
    }

    fn emit_onnx(&self, g: &mut OnnxGraph, input: &str) -> Result<String> {
        let c = self.weight.elem_count() as i64;
        let sq = g.add_node("Mul", &[input, input], vec![]);
        let axes = attr_ints("axes", &[1, 2, 3]);
        let ms = g.add_node("ReduceMean", &[&sq], vec![axes, attr_int("keepdims", 1)]);
        let eps = g.add_initializer("rms_eps", &[self.eps as f32], &[]);
        let var = g.add_node("Add", &[&ms, &eps], vec![]);
        let rms = g.add_node("Sqrt", &[&var], vec![]);
        let y = g.add_node("Div", &[input, &rms], vec![]);
        let w = g.add_tensor("rms_weight", &self.weight, &[c, 1, 1])?;
        let b = g.add_tensor("rms_bias", &self.bias, &[c, 1, 1])?;
        let y = g.add_node("Mul", &[&y, &w], vec![]);
        Ok(g.add_node("Add", &[&y, &b], vec![]))
    }
}
EOF

# 2. The one line: after `none,` in the registry! list.
grep -q '^    none,$' "$SRC/src/nn/norm/mod.rs"
sed -i 's/^    none,$/    none,\n    rms,/' "$SRC/src/nn/norm/mod.rs"
echo "== the change against this tree:"
diff -ru --exclude=target "$ROOT/src" "$SRC/src" || true

cd "$SRC"
echo "== build"
cargo build --release --target-dir "$WORK/target" 2>&1 | tail -1
ASC="$WORK/target/release/asc"
RUN="$WORK/run"
rm -rf "$RUN" && mkdir -p "$RUN"
"$ASC" train --help | grep -o "bn, l2bn[^.]*rms" | head -1
"$ASC" synth --out "$RUN/data" --clips-per-class 10 --seconds 1 2>&1 | tail -1
echo "== train cnn --norm rms, defaults"
"$ASC" train --data "$RUN/data" --model cnn --norm rms --epochs 1 --out "$RUN/a" 2>&1 | tail -2
# Its setting changed in a copy of the run's config, trained again from that file.
sed 's/"eps_scale": 1.0/"eps_scale": 10.0/' "$RUN/a/config.json" > "$RUN/cfg.json"
echo "== train with norm_config.rms.eps_scale = 10 (--config)"
"$ASC" train --data "$RUN/data" --norm rms --config "$RUN/cfg.json" --out "$RUN/b" 2>&1 | tail -2
"$ASC" export --run "$RUN/b" --out "$RUN/model.onnx" 2>&1 | tail -1
"$ASC" classify "$RUN/data/audio" --model "$RUN/model.onnx" 2>/dev/null | head -3
echo "== the second run's norm_config:"
sed -n '/"norm_config"/,/^  },/p' "$RUN/b/config.json"
echo "== tests/models.rs with the new layer"
cargo test --release --target-dir "$WORK/target" --test models 2>&1 | grep -E "test result|FAILED"
