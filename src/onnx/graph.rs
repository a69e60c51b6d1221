//! A small ONNX graph builder over the prost messages of `tract_onnx::pb` (docs/architecture.md,
//! "Dependencies": tract's protobuf types + prost 0.14 are how we write ONNX; opset 17).
//!
//! Names are made unique by the builder, so emitters can ask for "bn_scale" many times.
//! Node outputs are single values named after the node.

use std::collections::HashSet;

use candle_core::{bail, DType, Result, Tensor};
use tract_onnx::pb;

/// The opset every exported model declares (docs/architecture.md: tract tests opsets 9–18).
pub const OPSET: i64 = 17;
/// ONNX IR version matching opset 17.
pub const IR_VERSION: i64 = 8;

/// A node attribute (the protobuf message; build one with [`attr_int`], [`attr_ints`],
/// [`attr_float`] or [`attr_string`]).
pub type Attribute = pb::AttributeProto;

/// One dimension of a graph input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    Fixed(i64),
    /// A symbolic dimension such as "N" or "T".
    Sym(String),
}

/// Accumulates nodes, initializers, graph inputs/outputs and metadata.
#[derive(Debug, Default)]
pub struct OnnxGraph {
    nodes: Vec<pb::NodeProto>,
    initializers: Vec<pb::TensorProto>,
    inputs: Vec<pb::ValueInfoProto>,
    outputs: Vec<pb::ValueInfoProto>,
    metadata: Vec<(String, String)>,
    used: HashSet<String>,
}

impl OnnxGraph {
    pub fn new() -> Self {
        Self::default()
    }

    /// `base`, or `base_1`, `base_2`, ... if taken.
    pub fn fresh_name(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut i = 0;
        while self.used.contains(&name) {
            i += 1;
            name = format!("{base}_{i}");
        }
        self.used.insert(name.clone());
        name
    }

    /// Declares a float graph input; `name` is used verbatim (and reserved).
    pub fn add_input(&mut self, name: &str, dims: &[Dim]) {
        self.used.insert(name.to_string());
        self.inputs.push(value_info(name, dims));
    }

    /// Declares a float graph output.
    pub fn add_output(&mut self, name: &str, dims: &[Dim]) {
        self.outputs.push(value_info(name, dims));
    }

    /// Adds a one-output node and returns the output's name.
    pub fn add_node(&mut self, op: &str, inputs: &[&str], attrs: Vec<Attribute>) -> String {
        let out = self.fresh_name(&op.to_lowercase());
        self.push_node(op, inputs, attrs, out)
    }

    /// Adds a one-output node whose output has exactly the name `output` (a graph output).
    pub fn add_node_as(
        &mut self,
        op: &str,
        inputs: &[&str],
        attrs: Vec<Attribute>,
        output: &str,
    ) -> String {
        self.used.insert(output.to_string());
        self.push_node(op, inputs, attrs, output.to_string())
    }

    fn push_node(
        &mut self,
        op: &str,
        inputs: &[&str],
        attrs: Vec<Attribute>,
        out: String,
    ) -> String {
        self.nodes.push(pb::NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            name: out.clone(),
            op_type: op.to_string(),
            attribute: attrs,
            ..Default::default()
        });
        out
    }

    /// Adds a float initializer and returns its (unique) name.
    pub fn add_initializer(&mut self, base: &str, data: &[f32], dims: &[i64]) -> String {
        let name = self.fresh_name(base);
        self.initializers.push(pb::TensorProto {
            name: name.clone(),
            dims: dims.to_vec(),
            data_type: pb::tensor_proto::DataType::Float as i32,
            float_data: data.to_vec(),
            ..Default::default()
        });
        name
    }

    /// Adds an int64 initializer (shapes for Reshape, axes for ReduceSum) and returns its name.
    pub fn add_initializer_i64(&mut self, base: &str, data: &[i64], dims: &[i64]) -> String {
        let name = self.fresh_name(base);
        self.initializers.push(pb::TensorProto {
            name: name.clone(),
            dims: dims.to_vec(),
            data_type: pb::tensor_proto::DataType::Int64 as i32,
            int64_data: data.to_vec(),
            ..Default::default()
        });
        name
    }

    /// Adds a candle tensor (any float dtype, stored as f32) with the given dims; the element
    /// counts must agree.
    pub fn add_tensor(&mut self, base: &str, t: &Tensor, dims: &[i64]) -> Result<String> {
        let count: i64 = dims.iter().product();
        if count != t.elem_count() as i64 {
            bail!(
                "onnx initializer {base}: tensor of shape {:?} does not fit dims {dims:?}",
                t.dims()
            );
        }
        let data = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        Ok(self.add_initializer(base, &data, dims))
    }

    /// Adds a `metadata_props` entry of the model.
    pub fn add_metadata(&mut self, key: &str, value: &str) {
        self.metadata.push((key.to_string(), value.to_string()));
    }

    /// Number of nodes so far (for tests and diagnostics).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The operator types used, in order.
    pub fn op_types(&self) -> Vec<&str> {
        self.nodes.iter().map(|n| n.op_type.as_str()).collect()
    }

    /// The finished model (opset [`OPSET`]), ready for `prost::Message::encode_to_vec`.
    pub fn to_model(self) -> pb::ModelProto {
        pb::ModelProto {
            ir_version: IR_VERSION,
            opset_import: vec![pb::OperatorSetIdProto {
                domain: String::new(),
                version: OPSET,
            }],
            producer_name: "asc".to_string(),
            producer_version: env!("CARGO_PKG_VERSION").to_string(),
            graph: Some(pb::GraphProto {
                node: self.nodes,
                name: "asc".to_string(),
                initializer: self.initializers,
                input: self.inputs,
                output: self.outputs,
                ..Default::default()
            }),
            metadata_props: self
                .metadata
                .into_iter()
                .map(|(key, value)| pb::StringStringEntryProto { key, value })
                .collect(),
            ..Default::default()
        }
    }
}

fn value_info(name: &str, dims: &[Dim]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension::Value, Dimension};
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Fixed(v) => Value::DimValue(*v),
                Dim::Sym(s) => Value::DimParam(s.clone()),
            }),
            ..Default::default()
        })
        .collect();
    pb::ValueInfoProto {
        name: name.to_string(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: pb::tensor_proto::DataType::Float as i32,
                shape: Some(pb::TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn attr(name: &str, kind: pb::attribute_proto::AttributeType) -> Attribute {
    Attribute {
        name: name.to_string(),
        r#type: kind as i32,
        ..Default::default()
    }
}

/// An INT attribute.
pub fn attr_int(name: &str, v: i64) -> Attribute {
    Attribute {
        i: v,
        ..attr(name, pb::attribute_proto::AttributeType::Int)
    }
}

/// An INTS attribute.
pub fn attr_ints(name: &str, v: &[i64]) -> Attribute {
    Attribute {
        ints: v.to_vec(),
        ..attr(name, pb::attribute_proto::AttributeType::Ints)
    }
}

/// A FLOAT attribute.
pub fn attr_float(name: &str, v: f32) -> Attribute {
    Attribute {
        f: v,
        ..attr(name, pb::attribute_proto::AttributeType::Float)
    }
}

/// A STRING attribute.
pub fn attr_string(name: &str, v: &str) -> Attribute {
    Attribute {
        s: v.as_bytes().to_vec(),
        ..attr(name, pb::attribute_proto::AttributeType::String)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use tract_onnx::prelude::*;

    #[test]
    fn names_are_unique_and_model_runs_in_tract() {
        let mut g = OnnxGraph::new();
        g.add_input("x", &[Dim::Sym("N".into()), Dim::Fixed(3)]);
        let w = g.add_initializer("w", &[1.0, 2.0, 3.0], &[1, 3]);
        let w2 = g.add_initializer("w", &[0.5, 0.5, 0.5], &[1, 3]);
        assert_ne!(w, w2);
        let y = g.add_node("Mul", &["x", &w], vec![]);
        let z = g.add_node("Add", &[&y, &w2], vec![]);
        let out = g.add_node("Identity", &[&z], vec![]);
        g.add_output(&out, &[Dim::Sym("N".into()), Dim::Fixed(3)]);
        g.add_metadata("labels", "a,b,c");
        let bytes = g.to_model().encode_to_vec();
        let model = tract_onnx::onnx()
            .model_for_read(&mut bytes.as_slice())
            .unwrap()
            .with_input_fact(0, f32::fact([2, 3]).into())
            .unwrap()
            .into_optimized()
            .unwrap()
            .into_runnable()
            .unwrap();
        let x = tract_ndarray::arr2(&[[1f32, 1., 1.], [2., 0., -1.]]).into_tensor();
        let res = model.run(tvec!(x.into())).unwrap();
        let v: Vec<f32> = res[0]
            .to_plain_array_view::<f32>()
            .unwrap()
            .iter()
            .copied()
            .collect::<Vec<f32>>();
        assert_eq!(v, vec![1.5, 2.5, 3.5, 2.5, 0.5, -2.5]);
    }

    #[test]
    fn add_tensor_rejects_wrong_dims() {
        let mut g = OnnxGraph::new();
        let t = candle_core::Tensor::zeros(4, DType::F32, &candle_core::Device::Cpu).unwrap();
        let err = g.add_tensor("t", &t, &[5]).unwrap_err().to_string();
        assert!(err.contains("[4]") && err.contains("[5]"), "{err}");
    }
}
