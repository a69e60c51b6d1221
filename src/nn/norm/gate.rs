//! The per-sample channel gate of IEBN (its attention, docs/norms.md §6.2) and UBN (its scaling
//! calibration, §5.2), `sigmoid(w·GAP(t) + b)` with per-channel w and b, as ONNX ops (§6.3,
//! §5.4). Its forward is `ops::gap_gate` (IEBN; UBN's candle-op path), or inside UBN's BNET
//! conv's op (`ops::gated_depthwise`).

use candle_core::{Result, Tensor};

use crate::onnx::graph::OnnxGraph;

/// `Sigmoid(GAP(x)·w + b)` for rank-4 input, with (C) parameters as [1, C, 1, 1] initializers:
/// the per-sample channel gate of IEBN (§6.3) and UBN (§5.4).
pub fn emit_gap_gate(g: &mut OnnxGraph, input: &str, w: &Tensor, b: &Tensor) -> Result<String> {
    let c = w.elem_count() as i64;
    let a = g.add_node("GlobalAveragePool", &[input], vec![]);
    let w = g.add_tensor("gate_w", w, &[1, c, 1, 1])?;
    let b = g.add_tensor("gate_b", b, &[1, c, 1, 1])?;
    let aw = g.add_node("Mul", &[&a, &w], vec![]);
    let z = g.add_node("Add", &[&aw, &b], vec![]);
    Ok(g.add_node("Sigmoid", &[&z], vec![]))
}
