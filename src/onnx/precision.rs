//! Compact storage of an ONNX model's weights (`asc export --fp16`, issue 19): every float
//! initializer is stored as float16 and turned back into float32 by a `Cast` at the head of the
//! graph, so the file's parameters take half the bytes (DCASE counts parameter memory at the
//! stored precision) while every runtime computes exactly as before, in float32, on the rounded
//! weights. tract folds the casts of constants away when it optimises, so the plan it runs is the
//! float32 plan with rounded weights (our convolution swap included).

use half::f16;
use tract_onnx::pb;

/// Largest finite float16.
const F16_MAX: f32 = 65504.0;

/// What [`store_weights_as_fp16`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fp16Summary {
    /// Initializers now stored as float16, and their elements.
    pub tensors: usize,
    pub elements: usize,
    /// Float initializers kept as float32 because a value lies beyond float16's range.
    pub kept_f32: usize,
}

/// Rewrites `model` in place: each float32 initializer whose values all fit float16's range
/// becomes a float16 initializer `<name>_fp16` feeding a `Cast(to = FLOAT)` that outputs
/// `<name>`, so the nodes that read it are unchanged.
pub fn store_weights_as_fp16(model: &mut pb::ModelProto) -> Fp16Summary {
    let mut summary = Fp16Summary::default();
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
        casts.push(pb::NodeProto {
            input: vec![stored],
            output: vec![name.clone()],
            name: format!("{name}_cast"),
            op_type: "Cast".to_string(),
            attribute: vec![pb::AttributeProto {
                name: "to".to_string(),
                r#type: pb::attribute_proto::AttributeType::Int as i32,
                i: pb::tensor_proto::DataType::Float as i64,
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    // The casts come first: ONNX wants nodes in topological order.
    casts.append(&mut graph.node);
    graph.node = casts;
    summary
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

    /// A graph y = x·w + b rewritten to float16 weights: the weights round to float16 and are
    /// cast back, a weight beyond float16's range stays float32, and tract runs the result to
    /// the rounded weights' output.
    #[test]
    fn weights_round_to_fp16_and_the_graph_still_runs() {
        use tract_onnx::prelude::*;
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
            Fp16Summary {
                tensors: 1,
                elements: 6,
                kept_f32: 1
            }
        );
        assert_eq!(model.graph.as_ref().unwrap().node[0].op_type, "Cast");
        let plan = tract_onnx::onnx()
            .model_for_proto_model(&model)
            .unwrap()
            .into_optimized()
            .unwrap()
            .into_runnable()
            .unwrap();
        let x = [1.0f32, 2.0, -1.0];
        let out = plan
            .run(tvec!(Tensor::from_shape(&[1, 3], &x).unwrap().into()))
            .unwrap();
        let got = out[0].to_plain_array_view::<f32>().unwrap();
        let r = |v: f32| f16::from_f32(v).to_f32();
        let want = |j: usize| (0..3).map(|i| x[i] * r(w_values[i * 2 + j])).sum::<f32>();
        // Column 1 sees the rounding (3.3 -> 3.30078125); column 0's bias kept all its digits.
        assert!((got[[0, 1]] - (want(1) + 0.5)).abs() < 1e-5, "{got:?}");
        let unrounded: f32 = (0..3).map(|i| x[i] * w_values[i * 2 + 1]).sum::<f32>() + 0.5;
        assert!((got[[0, 1]] - unrounded).abs() > 1e-4, "{got:?}");
        assert!((got[[0, 0]] - (want(0) + 7.0e4)).abs() < 0.01, "{got:?}");
    }
}
