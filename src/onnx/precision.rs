//! Compact storage of an ONNX model's weights (`asc export --fp16 | --int8`, issue 19), so the
//! file's parameters take fewer bytes (DCASE counts parameter memory at the stored precision)
//! while every runtime still computes in float32, on rounded weights:
//! - float16: every float initializer stored as float16 and turned back into float32 by a `Cast`
//!   at the head of the graph;
//! - int8: the weights of `Conv` and `Gemm` nodes stored as int8 with one float32 scale per
//!   output channel (symmetric, zero point 0) and turned back by a per-axis `DequantizeLinear`;
//!   biases and norm parameters (vectors) stay float32. Only the storage is quantised, not the
//!   arithmetic: activations stay float32, so no calibration data is needed.
//!
//! tract folds these conversions of constants away when it optimises, so the plan it runs is the
//! float32 plan with rounded weights (our convolution swap included).

use half::f16;
use tract_onnx::pb;

/// Largest finite float16.
const F16_MAX: f32 = 65504.0;

/// What a rewrite converted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Converted {
    /// Initializers now stored in the compact type, and their elements.
    pub tensors: usize,
    pub elements: usize,
    /// float16: float initializers kept as float32 because a value lies beyond float16's range.
    pub kept_f32: usize,
    /// int8: the float32 scales added (one per output channel).
    pub scales: usize,
}

/// Rewrites `model` in place: each float32 initializer whose values all fit float16's range
/// becomes a float16 initializer `<name>_fp16` feeding a `Cast(to = FLOAT)` that outputs
/// `<name>`, so the nodes that read it are unchanged.
pub fn store_weights_as_fp16(model: &mut pb::ModelProto) -> Converted {
    let mut summary = Converted::default();
    let Some(graph) = model.graph.as_mut() else {
        return summary;
    };
    let mut casts = Vec::new();
    for init in &mut graph.initializer {
        if init.data_type != pb::tensor_proto::DataType::Float as i32 {
            continue;
        }
        let values = float_values(init);
        if values.iter().any(|v| !v.is_finite() || v.abs() > F16_MAX) {
            summary.kept_f32 += 1;
            continue;
        }
        let name = std::mem::take(&mut init.name);
        let stored = format!("{name}_fp16");
        init.name = stored.clone();
        init.data_type = pb::tensor_proto::DataType::Float16 as i32;
        init.float_data.clear();
        init.raw_data = values
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_le_bytes())
            .collect();
        summary.tensors += 1;
        summary.elements += values.len();
        let to = pb::tensor_proto::DataType::Float as i64;
        casts.push(conversion("Cast", vec![stored], &name, ("to", to)));
    }
    prepend(graph, casts);
    summary
}

/// Rewrites `model` in place: the weight (input 1) of every `Conv` and `Gemm` node that is a
/// float32 initializer of rank ≥ 2 becomes `<name>_int8` (int8, symmetric per output channel:
/// scale = max |w| / 127 over the channel) with `<name>_scale` and `<name>_zero`, feeding a
/// `DequantizeLinear(axis = 0)` that outputs `<name>`.
pub fn store_weights_as_int8(model: &mut pb::ModelProto) -> Converted {
    let mut summary = Converted::default();
    let Some(graph) = model.graph.as_mut() else {
        return summary;
    };
    let weights: std::collections::HashSet<String> = graph
        .node
        .iter()
        .filter(|n| n.op_type == "Conv" || n.op_type == "Gemm")
        .filter_map(|n| n.input.get(1).cloned())
        .collect();
    let mut added = Vec::new();
    let mut nodes = Vec::new();
    for init in &mut graph.initializer {
        let float = init.data_type == pb::tensor_proto::DataType::Float as i32;
        if !float || init.dims.len() < 2 || !weights.contains(&init.name) {
            continue;
        }
        let values = float_values(init);
        let channels = init.dims[0] as usize;
        if channels == 0 || !values.len().is_multiple_of(channels) {
            continue;
        }
        let per = values.len() / channels;
        let scales: Vec<f32> = values
            .chunks(per)
            .map(|c| {
                let max = c.iter().fold(0f32, |m, v| m.max(v.abs()));
                if max > 0.0 {
                    max / 127.0
                } else {
                    1.0
                }
            })
            .collect();
        let quantised: Vec<u8> = values
            .chunks(per)
            .zip(&scales)
            .flat_map(|(c, &s)| {
                c.iter()
                    .map(move |v| (v / s).round().clamp(-127.0, 127.0) as i8 as u8)
            })
            .collect();
        let name = std::mem::take(&mut init.name);
        let (stored, scale, zero) = (
            format!("{name}_int8"),
            format!("{name}_scale"),
            format!("{name}_zero"),
        );
        init.name = stored.clone();
        init.data_type = pb::tensor_proto::DataType::Int8 as i32;
        init.float_data.clear();
        init.raw_data = quantised;
        added.push(pb::TensorProto {
            name: scale.clone(),
            dims: vec![channels as i64],
            data_type: pb::tensor_proto::DataType::Float as i32,
            float_data: scales,
            ..Default::default()
        });
        added.push(pb::TensorProto {
            name: zero.clone(),
            dims: vec![channels as i64],
            data_type: pb::tensor_proto::DataType::Int8 as i32,
            raw_data: vec![0; channels],
            ..Default::default()
        });
        summary.tensors += 1;
        summary.elements += values.len();
        summary.scales += channels;
        let inputs = vec![stored, scale, zero];
        nodes.push(conversion("DequantizeLinear", inputs, &name, ("axis", 0)));
    }
    graph.initializer.extend(added);
    prepend(graph, nodes);
    summary
}

/// A node `op` from `inputs` to `output` with one integer attribute.
fn conversion(op: &str, inputs: Vec<String>, output: &str, attr: (&str, i64)) -> pb::NodeProto {
    pb::NodeProto {
        input: inputs,
        output: vec![output.to_string()],
        name: format!("{output}_{}", op.to_lowercase()),
        op_type: op.to_string(),
        attribute: vec![pb::AttributeProto {
            name: attr.0.to_string(),
            r#type: pb::attribute_proto::AttributeType::Int as i32,
            i: attr.1,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Puts `nodes` before the graph's own: they convert initializers the others read, and ONNX
/// wants nodes in topological order.
fn prepend(graph: &mut pb::GraphProto, mut nodes: Vec<pb::NodeProto>) {
    nodes.append(&mut graph.node);
    graph.node = nodes;
}

/// The values of a float32 initializer, from `float_data` or little-endian `raw_data`.
fn float_values(init: &pb::TensorProto) -> Vec<f32> {
    if !init.raw_data.is_empty() {
        init.raw_data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    } else {
        init.float_data.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::graph::{Dim, OnnxGraph};

    /// `model` (input x of shape 1 × 3) run by tract: its output, 1 × 2.
    fn run(
        model: &pb::ModelProto,
        x: &[f32; 3],
    ) -> tract_onnx::prelude::tract_ndarray::Array2<f32> {
        use tract_onnx::prelude::*;
        let plan = tract_onnx::onnx()
            .model_for_proto_model(model)
            .unwrap()
            .into_optimized()
            .unwrap()
            .into_runnable()
            .unwrap();
        let out = plan
            .run(tvec!(Tensor::from_shape(&[1, 3], x).unwrap().into()))
            .unwrap();
        out[0]
            .to_plain_array_view::<f32>()
            .unwrap()
            .into_dimensionality()
            .unwrap()
            .to_owned()
    }

    /// A graph y = x·w + b rewritten to float16 weights: the weights round to float16 and are
    /// cast back, a weight beyond float16's range stays float32, and tract runs the result to
    /// the rounded weights' output.
    #[test]
    fn weights_round_to_fp16_and_the_graph_still_runs() {
        let mut g = OnnxGraph::new();
        g.add_input("x", &[Dim::Fixed(1), Dim::Fixed(3)]);
        let w_values = [0.1f32, -2.5, 1.0e-3, 3.3, 0.0, 7.0];
        let w = g.add_initializer("w", &w_values, &[3, 2]);
        let b = g.add_initializer("b", &[7.0e4, 0.5], &[2]);
        let y = g.add_node("MatMul", &["x", &w], vec![]);
        g.add_node_as("Add", &[&y, &b], vec![], "y");
        g.add_output("y", &[Dim::Fixed(1), Dim::Fixed(2)]);
        let mut model = g.to_model();
        let summary = store_weights_as_fp16(&mut model);
        assert_eq!(
            summary,
            Converted {
                tensors: 1,
                elements: 6,
                kept_f32: 1,
                scales: 0
            }
        );
        assert_eq!(model.graph.as_ref().unwrap().node[0].op_type, "Cast");
        let x = [1.0f32, 2.0, -1.0];
        let got = run(&model, &x);
        let r = |v: f32| f16::from_f32(v).to_f32();
        let want = |j: usize| (0..3).map(|i| x[i] * r(w_values[i * 2 + j])).sum::<f32>();
        // Column 1 sees the rounding (3.3 -> 3.30078125); column 0's bias kept all its digits.
        assert!((got[[0, 1]] - (want(1) + 0.5)).abs() < 1e-5, "{got:?}");
        let unrounded: f32 = (0..3).map(|i| x[i] * w_values[i * 2 + 1]).sum::<f32>() + 0.5;
        assert!((got[[0, 1]] - unrounded).abs() > 1e-4, "{got:?}");
        assert!((got[[0, 0]] - (want(0) + 7.0e4)).abs() < 0.01, "{got:?}");
    }

    /// A Gemm's weight stored as int8 with one scale per output row (max |w| / 127), the bias
    /// kept float32, and tract computing with the dequantised weights.
    #[test]
    fn gemm_weights_quantise_per_output_channel() {
        use crate::onnx::graph::attr_int;
        let mut g = OnnxGraph::new();
        g.add_input("x", &[Dim::Fixed(1), Dim::Fixed(3)]);
        // Row 0 large, row 1 small: one scale for both would flatten row 1.
        let w_values = [10.0f32, -3.3, 0.7, 0.011, -0.02, 0.005];
        let w = g.add_initializer("w", &w_values, &[2, 3]);
        let b = g.add_initializer("b", &[0.25, -0.5], &[2]);
        g.add_node_as("Gemm", &["x", &w, &b], vec![attr_int("transB", 1)], "y");
        g.add_output("y", &[Dim::Fixed(1), Dim::Fixed(2)]);
        let mut model = g.to_model();
        let summary = store_weights_as_int8(&mut model);
        assert_eq!(
            summary,
            Converted {
                tensors: 1,
                elements: 6,
                kept_f32: 0,
                scales: 2
            }
        );
        let graph = model.graph.as_ref().unwrap();
        assert_eq!(graph.node[0].op_type, "DequantizeLinear");
        let bias = graph.initializer.iter().find(|i| i.name == b).unwrap();
        assert_eq!(bias.data_type, pb::tensor_proto::DataType::Float as i32);
        let x = [1.0f32, 2.0, -1.0];
        let got = run(&model, &x);
        for (row, bias) in [0.25f32, -0.5].iter().enumerate() {
            let w = &w_values[row * 3..row * 3 + 3];
            let scale = w.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
            let deq = |v: f32| (v / scale).round() * scale;
            let want: f32 = (0..3).map(|i| x[i] * deq(w[i])).sum::<f32>() + bias;
            assert!(
                (got[[0, row]] - want).abs() < 1e-5,
                "row {row}: {got:?} vs {want}"
            );
        }
        // Row 1 keeps its detail: its error is that of its own scale, not row 0's.
        let exact: f32 = (0..3).map(|i| x[i] * w_values[3 + i]).sum::<f32>() - 0.5;
        assert!((got[[0, 1]] - exact).abs() < 0.02 / 127.0 * 3.0, "{got:?}");
    }
}
