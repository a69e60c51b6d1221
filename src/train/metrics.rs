//! Evaluation metrics as DCASE reports them (`docs/datasets.md`): micro accuracy, macro class-wise
//! accuracy, multi-class log loss (sklearn's), per-device accuracy, and the confusion matrix.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One scored example: true class, predicted probabilities, and its device when known.
pub struct Scored<'a> {
    pub target: usize,
    pub probs: &'a [f32],
    pub device: Option<&'a str>,
}

/// Per-class figures.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClassMetrics {
    pub count: usize,
    pub accuracy: f64,
    pub log_loss: f64,
}

/// Per-device figures.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeviceMetrics {
    pub count: usize,
    pub accuracy: f64,
    pub macro_accuracy: f64,
    pub log_loss: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Metrics {
    pub count: usize,
    /// Micro accuracy: correct / total.
    pub accuracy: f64,
    /// Mean over classes of class-wise accuracy (the DCASE ranking metric), over classes present.
    pub macro_accuracy: f64,
    pub log_loss: f64,
    pub per_class: BTreeMap<String, ClassMetrics>,
    pub per_device: BTreeMap<String, DeviceMetrics>,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<usize>>,
    pub labels: Vec<String>,
}

/// sklearn's `log_loss` clipping: probabilities clipped to [eps, 1 − eps], rows renormalised.
const EPS: f64 = 1e-15;

fn example_loss(probs: &[f32], target: usize) -> f64 {
    let clipped: Vec<f64> = probs
        .iter()
        .map(|&p| (p as f64).clamp(EPS, 1.0 - EPS))
        .collect();
    let sum: f64 = clipped.iter().sum();
    -(clipped[target] / sum).ln()
}

fn argmax(p: &[f32]) -> usize {
    // First maximum, like numpy's argmax; NaN never wins.
    let mut best = 0;
    for (i, &v) in p.iter().enumerate() {
        if v > p[best] {
            best = i;
        }
    }
    best
}

/// Accuracy, macro accuracy and log loss of a subset (given as indices into `items`).
fn summary(items: &[Scored], idx: &[usize], n_classes: usize) -> (f64, f64, f64) {
    let mut correct = vec![0usize; n_classes];
    let mut total = vec![0usize; n_classes];
    let mut loss = 0.0;
    for &i in idx {
        let s = &items[i];
        total[s.target] += 1;
        if argmax(s.probs) == s.target {
            correct[s.target] += 1;
        }
        loss += example_loss(s.probs, s.target);
    }
    let n = idx.len().max(1) as f64;
    let present: Vec<usize> = (0..n_classes).filter(|&c| total[c] > 0).collect();
    let macro_acc = present
        .iter()
        .map(|&c| correct[c] as f64 / total[c] as f64)
        .sum::<f64>()
        / present.len().max(1) as f64;
    (
        correct.iter().sum::<usize>() as f64 / n,
        macro_acc,
        loss / n,
    )
}

/// All metrics of a set of scored examples over `labels`.
pub fn score_items(items: &[Scored], labels: &[String]) -> Metrics {
    let k = labels.len();
    let all: Vec<usize> = (0..items.len()).collect();
    let (accuracy, macro_accuracy, log_loss) = summary(items, &all, k);
    let mut confusion = vec![vec![0usize; k]; k];
    for s in items {
        confusion[s.target][argmax(s.probs)] += 1;
    }
    let per_class = (0..k)
        .map(|c| {
            let idx: Vec<usize> = all
                .iter()
                .copied()
                .filter(|&i| items[i].target == c)
                .collect();
            let (acc, _, ll) = summary(items, &idx, k);
            (
                labels[c].clone(),
                ClassMetrics {
                    count: idx.len(),
                    accuracy: acc,
                    log_loss: ll,
                },
            )
        })
        .collect();
    let mut devices: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, s) in items.iter().enumerate() {
        if let Some(d) = s.device {
            devices.entry(d.to_string()).or_default().push(i);
        }
    }
    let per_device = devices
        .into_iter()
        .map(|(d, idx)| {
            let (acc, macro_acc, ll) = summary(items, &idx, k);
            (
                d,
                DeviceMetrics {
                    count: idx.len(),
                    accuracy: acc,
                    macro_accuracy: macro_acc,
                    log_loss: ll,
                },
            )
        })
        .collect();
    Metrics {
        count: items.len(),
        accuracy,
        macro_accuracy,
        log_loss,
        per_class,
        per_device,
        confusion,
        labels: labels.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_case() {
        // Three classes; class 0 has 2 examples (1 right), class 1 has 1 (right).
        let p = [[0.7f32, 0.2, 0.1], [0.2, 0.5, 0.3], [0.1, 0.8, 0.1]];
        let items = [
            Scored {
                target: 0,
                probs: &p[0],
                device: Some("a"),
            },
            Scored {
                target: 0,
                probs: &p[1],
                device: Some("b"),
            },
            Scored {
                target: 1,
                probs: &p[2],
                device: Some("a"),
            },
        ];
        let labels: Vec<String> = ["x", "y", "z"].iter().map(|s| s.to_string()).collect();
        let m = score_items(&items, &labels);
        assert!((m.accuracy - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.macro_accuracy - 0.75).abs() < 1e-12); // (0.5 + 1.0) / 2 present classes
        let want = -(0.7f64.ln() + 0.2f64.ln() + 0.8f64.ln()) / 3.0;
        assert!((m.log_loss - want).abs() < 1e-6);
        assert_eq!(
            m.confusion,
            vec![vec![1, 1, 0], vec![0, 1, 0], vec![0, 0, 0]]
        );
        assert_eq!(m.per_device["a"].count, 2);
        assert!((m.per_device["a"].accuracy - 1.0).abs() < 1e-12);
        assert_eq!(m.per_class["z"].count, 0);
    }
}
