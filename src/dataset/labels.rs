//! Class labels in alphabetical order (docs/datasets.md: "Label order = alphabetical"): index `i`
//! is the model's output `i`, the `i`-th probability column of a submission file, and the `i`-th
//! label stored in the exported ONNX model.

use serde::{Deserialize, Serialize};

/// Bidirectional label name <-> index map, sorted and without duplicates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Vec<String>", into = "Vec<String>")]
pub struct LabelMap {
    names: Vec<String>,
}

impl LabelMap {
    /// Builds the map from any collection of names; sorts and removes duplicates.
    pub fn new<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut names: Vec<String> = names.into_iter().map(Into::into).collect();
        names.sort();
        names.dedup();
        Self { names }
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Index of `name`, or `None` when the label is unknown.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.names.binary_search_by(|n| n.as_str().cmp(name)).ok()
    }

    /// Name of class `index`, or `None` when out of range.
    pub fn name(&self, index: usize) -> Option<&str> {
        self.names.get(index).map(String::as_str)
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// Deserialising goes through [`LabelMap::new`], so a hand-edited, unsorted list cannot break the
/// sorted invariant.
impl From<Vec<String>> for LabelMap {
    fn from(names: Vec<String>) -> Self {
        Self::new(names)
    }
}

impl From<LabelMap> for Vec<String> {
    fn from(map: LabelMap) -> Self {
        map.names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_dedup_and_roundtrip() {
        let m = LabelMap::new(["tram", "airport", "bus", "airport"]);
        assert_eq!(m.names(), ["airport", "bus", "tram"]);
        for (i, n) in m.names().iter().enumerate() {
            assert_eq!(m.index(n), Some(i));
            assert_eq!(m.name(i), Some(n.as_str()));
        }
        assert_eq!(m.index("park"), None);
        assert_eq!(m.name(3), None);
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, r#"["airport","bus","tram"]"#);
        let back: LabelMap = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
    }
}
