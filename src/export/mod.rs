//! ONNX export: the graph builder over `tract_onnx::pb` (design.md, "Dependencies").

pub mod graph;
