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

/// The operators whose activation input static int8 quantises ([`activation_inputs`]).
const QUANTISED_OPS: [&str; 2] = ["Conv", "Gemm"];

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

/// The float32 values that `Conv` and `Gemm` nodes compute on (their input 0, unless it is an
/// initializer), in graph order without repeats: where QDQ quantises activations, as
/// onnxruntime's `quantize_static` does for these operators. `MatMul` is left out on purpose:
/// in our graphs it is only the `--waveform` front end's mel projection, whose input (a power
/// spectrum spanning many orders of magnitude) 256 linear levels destroy (a `cnn` export went
/// from 0.4455 to 0.1091 accuracy with it quantised).
pub fn activation_inputs(model: &pb::ModelProto) -> Vec<String> {
    let Some(graph) = model.graph.as_ref() else {
        return Vec::new();
    };
    let constants: std::collections::HashSet<&str> =
        graph.initializer.iter().map(|i| i.name.as_str()).collect();
    let mut names: Vec<String> = Vec::new();
    for node in &graph.node {
        if !QUANTISED_OPS.contains(&node.op_type.as_str()) {
            continue;
        }
        if let Some(x) = node.input.first() {
            if !constants.contains(x.as_str()) && !names.contains(x) {
                names.push(x.clone());
            }
        }
    }
    names
}

/// `model` with `names` added to its outputs (float32, shape left to the runtime), so one run
/// reads those intermediate values: what calibration runs.
pub fn with_outputs(model: &pb::ModelProto, names: &[String]) -> pb::ModelProto {
    let mut model = model.clone();
    if let Some(graph) = model.graph.as_mut() {
        let float = pb::tensor_proto::DataType::Float as i32;
        for name in names {
            graph.output.push(pb::ValueInfoProto {
                name: name.clone(),
                r#type: Some(pb::TypeProto {
                    value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                        elem_type: float,
                        shape: None,
                    })),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
    }
    model
}

/// The observed range of one activation over the calibration clips.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivationRange {
    pub name: String,
    pub min: f32,
    pub max: f32,
}

/// uint8 quantisation of `[min, max]` widened to hold 0 (so that zero padding and ReLU's zeros
/// are exact): (scale, zero point), onnxruntime's MinMax calibration with asymmetric uint8.
pub fn uint8_params(min: f32, max: f32) -> (f32, u8) {
    let (lo, hi) = (min.min(0.0), max.max(0.0));
    if hi - lo <= f32::MIN_POSITIVE {
        return (1.0, 0);
    }
    let scale = (hi - lo) / 255.0;
    let zero = (-lo / scale).round().clamp(0.0, 255.0) as u8;
    (scale, zero)
}

/// Rewrites `model` in place so that each activation of `ranges` passes through
/// `QuantizeLinear` → `DequantizeLinear` (uint8, per tensor, [`uint8_params`]) before the nodes
/// that read it, which then compute on the value rounded to 256 levels: the QDQ format that
/// onnxruntime runs as integer kernels and any runtime can run as written. With int8 weights
/// ([`store_weights_as_int8`]) this is static post-training quantisation. Returns the number of
/// activations quantised.
pub fn quantize_activations(model: &mut pb::ModelProto, ranges: &[ActivationRange]) -> usize {
    let Some(graph) = model.graph.as_mut() else {
        return 0;
    };
    let mut count = 0;
    let mut pairs: std::collections::HashMap<String, Vec<pb::NodeProto>> = Default::default();
    for r in ranges {
        let (scale, zero) = uint8_params(r.min, r.max);
        let base = format!("{}_act", r.name);
        let (s, z, q, dq) = (
            format!("{base}_scale"),
            format!("{base}_zero"),
            format!("{base}_q"),
            format!("{base}_dq"),
        );
        graph.initializer.push(pb::TensorProto {
            name: s.clone(),
            data_type: pb::tensor_proto::DataType::Float as i32,
            float_data: vec![scale],
            ..Default::default()
        });
        graph.initializer.push(pb::TensorProto {
            name: z.clone(),
            data_type: pb::tensor_proto::DataType::Uint8 as i32,
            raw_data: vec![zero],
            ..Default::default()
        });
        let node = |op: &str, input: &str, output: &str| pb::NodeProto {
            input: vec![input.to_string(), s.clone(), z.clone()],
            output: vec![output.to_string()],
            name: format!("{output}_node"),
            op_type: op.to_string(),
            ..Default::default()
        };
        let nodes = vec![
            node("QuantizeLinear", &r.name, &q),
            node("DequantizeLinear", &q, &dq),
        ];
        for n in &mut graph.node {
            if QUANTISED_OPS.contains(&n.op_type.as_str()) && n.input.first() == Some(&r.name) {
                n.input[0] = dq.clone();
            }
        }
        pairs.insert(r.name.clone(), nodes);
        count += 1;
    }
    // Each pair right after the node that computes its value (graph inputs: at the head), so
    // the nodes stay in topological order.
    let mut ordered = Vec::with_capacity(graph.node.len() + 2 * count);
    for input in &graph.input {
        ordered.extend(pairs.remove(&input.name).unwrap_or_default());
    }
    for n in std::mem::take(&mut graph.node) {
        let outputs = n.output.clone();
        ordered.push(n);
        for o in outputs {
            ordered.extend(pairs.remove(&o).unwrap_or_default());
        }
    }
    graph.node = ordered;
    count
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

    /// An activation read by a Gemm goes through QuantizeLinear/DequantizeLinear with the
    /// calibrated range (widened to 0): tract computes on the value rounded to that grid, and
    /// clips it at the range's ends.
    #[test]
    fn activations_round_to_the_calibrated_uint8_grid() {
        use crate::onnx::graph::attr_int;
        let mut g = OnnxGraph::new();
        g.add_input("x", &[Dim::Fixed(1), Dim::Fixed(3)]);
        let r = g.add_node("Relu", &["x"], vec![]);
        let w = g.add_initializer("w", &[1.0, 0.0, 0.0, 0.0, 1.0, 0.0], &[2, 3]);
        let b = g.add_initializer("b", &[0.0, 0.0], &[2]);
        g.add_node_as("Gemm", &[&r, &w, &b], vec![attr_int("transB", 1)], "y");
        g.add_output("y", &[Dim::Fixed(1), Dim::Fixed(2)]);
        let mut model = g.to_model();
        assert_eq!(activation_inputs(&model), std::slice::from_ref(&r));
        let range = ActivationRange {
            name: r.clone(),
            min: 0.5,
            max: 2.0,
        };
        assert_eq!(quantize_activations(&mut model, &[range]), 1);
        let ops: Vec<&str> = model
            .graph
            .as_ref()
            .unwrap()
            .node
            .iter()
            .map(|n| n.op_type.as_str())
            .collect();
        assert_eq!(ops, ["Relu", "QuantizeLinear", "DequantizeLinear", "Gemm"]);
        // [0.5, 2] widens to [0, 2]: scale 2/255, zero point 0; 2.7 is clipped to 2.
        let (scale, zero) = uint8_params(0.5, 2.0);
        assert_eq!(zero, 0);
        assert!((scale - 2.0 / 255.0).abs() < 1e-9);
        let got = run(&model, &[1.2345, 2.7, -1.0]);
        let on_grid = (1.2345f32 / scale).round() * scale;
        assert!((got[[0, 0]] - on_grid).abs() < 1e-6, "{got:?}");
        assert!((got[[0, 0]] - 1.2345).abs() > 1e-4, "{got:?}");
        assert!((got[[0, 1]] - 2.0).abs() < 1e-6, "{got:?}");
    }

    /// The grid's 256 levels span the range widened to 0 (0 itself is the zero point, so exact):
    /// its ends lie within one step of the range's.
    #[test]
    fn the_grid_spans_the_widened_range() {
        for (lo, hi) in [(-1.0f32, 3.0), (-0.37, 0.2), (0.0, 5.0), (-4.0, -1.0)] {
            let (scale, zero) = uint8_params(lo, hi);
            let first = -(zero as f32) * scale;
            let last = (255 - zero as i32) as f32 * scale;
            assert!((first - lo.min(0.0)).abs() <= scale, "{lo}..{hi}: {first}");
            assert!((last - hi.max(0.0)).abs() <= scale, "{lo}..{hi}: {last}");
        }
        assert_eq!(uint8_params(0.0, 0.0), (1.0, 0));
    }

    /// A MatMul's input (the waveform front end's power spectrum) is not quantised; the Gemm
    /// after it is.
    #[test]
    fn matmul_inputs_stay_float() {
        use crate::onnx::graph::attr_int;
        let mut g = OnnxGraph::new();
        g.add_input("x", &[Dim::Fixed(1), Dim::Fixed(3)]);
        let m = g.add_initializer("m", &[1.0; 9], &[3, 3]);
        let mel = g.add_node("MatMul", &["x", &m], vec![]);
        let w = g.add_initializer("w", &[1.0; 6], &[2, 3]);
        let b = g.add_initializer("b", &[0.0, 0.0], &[2]);
        g.add_node_as("Gemm", &[&mel, &w, &b], vec![attr_int("transB", 1)], "y");
        g.add_output("y", &[Dim::Fixed(1), Dim::Fixed(2)]);
        assert_eq!(activation_inputs(&g.to_model()), [mel]);
    }
}
