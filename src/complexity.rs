//! What a model costs, counted the way DCASE task 1 counts it (torchinfo 1.8's convention,
//! `docs/dcase.md`): its parameters and the bytes they take at each storage precision, the
//! multiply-accumulates of one forward pass per layer, and the verdict against the task's limits
//! (128 kB of parameters, 30 M MACs per 1 s clip).
//!
//! One rule for every layer, read off its parameters, so a new norm layer or model is counted
//! without code of its own: a parameter of a convolution (a variable group holding a rank-4
//! weight: the model's convs, and convs inside a norm such as UBN's) costs its element count
//! times the output's height × width; any other parameter (norm affines, linear layers) costs its
//! element count. That is torchinfo's `Conv`/other split at batch 1: a BatchNorm of C channels
//! adds 2C MACs, pooling and activations nothing.

use crate::nn::models::{LayerShape, Model};
use serde::Serialize;

/// DCASE 2025 task 1's limit on parameter memory, at the precision the parameters are stored
/// in. "128 kB" read in decimal units, the stricter of the two readings (131,072 bytes in
/// binary ones).
pub const MAX_PARAM_BYTES: u64 = 128_000;
/// DCASE 2025 task 1's limit on multiply-accumulates per 1 s clip.
pub const MAX_MACS: u64 = 30_000_000;

/// One layer's share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerCost {
    pub name: String,
    pub kind: String,
    /// Output channels, height, width.
    pub out: [usize; 3],
    pub params: u64,
    pub macs: u64,
}

/// A model's cost for one input size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Complexity {
    /// Input height (mel bands) and width (frames).
    pub input: [usize; 2],
    pub layers: Vec<LayerCost>,
    pub params: u64,
    pub macs: u64,
}

/// Bytes of `params` parameters stored as fp32, fp16 and int8 (int8's per-tensor scales and
/// zero points not included: a few bytes per layer).
pub fn param_bytes(params: u64) -> [(&'static str, u64); 3] {
    [("fp32", 4 * params), ("fp16", 2 * params), ("int8", params)]
}

/// Counts `model`'s layers for a 1 × C × H × W input of `input_hw`, with the shapes of its
/// trainable variables by name (`params`). A variable outside every listed layer is counted in
/// a row of its own (name `(other)`, no MACs), so the parameter total is always the model's.
pub fn measure(
    model: &dyn Model,
    params: &[(String, Vec<usize>)],
    input_hw: (usize, usize),
) -> Complexity {
    let shapes = model.layers(input_hw);
    let mut layers: Vec<LayerCost> = shapes
        .iter()
        .map(|s| LayerCost {
            name: s.name.clone(),
            kind: s.kind.to_string(),
            out: s.out,
            params: 0,
            macs: 0,
        })
        .collect();
    let mut other = LayerCost {
        name: "(other)".to_string(),
        kind: String::new(),
        out: [0; 3],
        params: 0,
        macs: 0,
    };
    for (name, dims) in params {
        let n: u64 = dims.iter().product::<usize>() as u64;
        match owner(&shapes, name) {
            Some(i) => {
                let [_, h, w] = shapes[i].out;
                let per_position = in_conv(params, name);
                layers[i].params += n;
                let per_call = if per_position { n * (h * w) as u64 } else { n };
                layers[i].macs += per_call * shapes[i].calls as u64;
            }
            None => other.params += n,
        }
    }
    if other.params > 0 {
        layers.push(other);
    }
    Complexity {
        input: [input_hw.0, input_hw.1],
        params: layers.iter().map(|l| l.params).sum(),
        macs: layers.iter().map(|l| l.macs).sum(),
        layers,
    }
}

/// The layer whose variables' prefix is the longest one `name` starts with.
fn owner(shapes: &[LayerShape], name: &str) -> Option<usize> {
    shapes
        .iter()
        .enumerate()
        .filter(|(_, s)| {
            name.strip_prefix(s.name.as_str())
                .is_some_and(|rest| rest.starts_with('.'))
        })
        .max_by_key(|(_, s)| s.name.len())
        .map(|(i, _)| i)
}

/// Whether `name` belongs to a convolution: its group (the name up to its last dot) holds a
/// rank-4 variable.
fn in_conv(params: &[(String, Vec<usize>)], name: &str) -> bool {
    let group = name.rsplit_once('.').map_or("", |(g, _)| g);
    params.iter().any(|(other, dims)| {
        dims.len() == 4 && other.rsplit_once('.').map_or("", |(g, _)| g) == group
    })
}

impl Complexity {
    /// One line against the limits, e.g. `params 61,148: fp32 244,592 B over, fp16 122,296 B
    /// within, int8 61,148 B within 128,000 B; 29,419,156 MACs within 30,000,000`.
    pub fn verdict(&self) -> String {
        let bytes: Vec<String> = param_bytes(self.params)
            .iter()
            .map(|(what, b)| format!("{what} {} B {}", thousands(*b), within(*b, MAX_PARAM_BYTES)))
            .collect();
        format!(
            "DCASE 2025 limits: {} parameters: {} (limit {} B); {} MACs {} (limit {})",
            thousands(self.params),
            bytes.join(", "),
            thousands(MAX_PARAM_BYTES),
            thousands(self.macs),
            within(self.macs, MAX_MACS),
            thousands(MAX_MACS)
        )
    }

    /// The per-layer table (torchinfo's columns), totals and [`Self::verdict`], as text.
    pub fn table(&self) -> String {
        let mut rows = vec![[
            "layer".to_string(),
            "kind".to_string(),
            "output".to_string(),
            "params".to_string(),
            "MACs".to_string(),
        ]];
        for l in &self.layers {
            rows.push([
                l.name.clone(),
                l.kind.clone(),
                format!("{} x {} x {}", l.out[0], l.out[1], l.out[2]),
                thousands(l.params),
                thousands(l.macs),
            ]);
        }
        let input = format!("input 1 x {} x {}", self.input[0], self.input[1]);
        rows.push([
            "total".to_string(),
            String::new(),
            input,
            thousands(self.params),
            thousands(self.macs),
        ]);
        let widths: Vec<usize> = (0..5)
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        let mut text = String::new();
        for row in &rows {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(c, (cell, &w))| {
                    if c >= 3 {
                        format!("{cell:>w$}")
                    } else {
                        format!("{cell:<w$}")
                    }
                })
                .collect();
            text.push_str(cells.join("  ").trim_end());
            text.push('\n');
        }
        text.push_str(&self.verdict());
        text.push('\n');
        text
    }
}

fn within(value: u64, limit: u64) -> &'static str {
    if value <= limit {
        "within"
    } else {
        "OVER"
    }
}

/// `1234567` as `1,234,567`.
fn thousands(v: u64) -> String {
    let digits = v.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(29_419_156), "29,419,156");
    }

    #[test]
    fn a_variable_belongs_to_the_longest_matching_prefix_only() {
        let shape = |name: &str| LayerShape {
            name: name.to_string(),
            kind: "Conv2d",
            out: [1, 1, 1],
            calls: 1,
        };
        let shapes = [shape("b1"), shape("b1.depth"), shape("b10")];
        assert_eq!(owner(&shapes, "b1.depth.weight"), Some(1));
        assert_eq!(owner(&shapes, "b1.weight"), Some(0));
        assert_eq!(owner(&shapes, "b10.weight"), Some(2));
        assert_eq!(owner(&shapes, "b100.weight"), None);
    }
}
