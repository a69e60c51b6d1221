//! A validation split carved from the TRAIN list, disjoint in recording location.
//!
//! docs/datasets.md: "splits are location-disjoint, so a validation split must be too" — clips of
//! one location share room acoustics and background, so a random clip-level split would leak and
//! overstate validation accuracy. The test list is never touched: choosing epochs on it is what
//! made the L2BN paper's numbers optimistic (docs/datasets.md, reference numbers).

use std::collections::{BTreeMap, HashSet};

use super::rng::{mix64, SplitMix64};
use super::{Clip, DatasetError};

/// Train and validation index lists (indices into the clip list), both in input order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationSplit {
    pub train: Vec<usize>,
    pub validation: Vec<usize>,
}

/// Moves about `fraction` of the clips of `train` to a validation list, whole locations at a
/// time, class by class.
///
/// Each location is assigned to its majority class; for every class, locations are taken in a
/// seeded random order while that brings the class's validation count closer to
/// `fraction × class size`. A class with two or more locations gives at least one to validation
/// and keeps at least one for training; a class with one location stays in training. Clips
/// without a location (plain layout) count as a location of their own. Deterministic in
/// (`clips`, `train`, `fraction`, `seed`).
pub fn validation_split(
    clips: &[Clip],
    train: &[usize],
    fraction: f64,
    seed: u64,
) -> Result<ValidationSplit, DatasetError> {
    if !(0.0..1.0).contains(&fraction) {
        return Err(DatasetError::InvalidArgument(format!(
            "validation fraction must be in [0, 1), got {fraction}"
        )));
    }
    if let Some(&bad) = train.iter().find(|&&i| i >= clips.len()) {
        return Err(DatasetError::InvalidArgument(format!(
            "train index {bad} out of range for {} clips",
            clips.len()
        )));
    }
    // Location -> clip indices; BTreeMap for a deterministic order.
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for &i in train {
        let c = &clips[i];
        let key = match &c.location {
            Some(loc) => format!("L{loc}"),
            None => format!("F{}", c.filename),
        };
        groups.entry(key).or_default().push(i);
    }
    // Class -> (location key, size).
    let mut by_class: BTreeMap<Option<usize>, Vec<(&str, usize)>> = BTreeMap::new();
    for (key, members) in &groups {
        by_class
            .entry(majority_label(clips, members))
            .or_default()
            .push((key.as_str(), members.len()));
    }
    let mut chosen: HashSet<&str> = HashSet::new();
    for (class, mut locs) in by_class {
        if fraction == 0.0 || locs.len() < 2 {
            continue;
        }
        let total: usize = locs.iter().map(|l| l.1).sum();
        let target = ((fraction * total as f64).round() as usize).max(1);
        let class_key = class.map_or(u64::MAX, |c| c as u64);
        SplitMix64::derive(seed, mix64(class_key)).shuffle(&mut locs);
        let mut taken = 0usize;
        let mut n_taken = 0usize;
        for (key, size) in &locs {
            if taken >= target || n_taken + 1 == locs.len() {
                break;
            }
            // Take the location if that lands closer to the target (always take the first).
            let over = (taken + size).abs_diff(target);
            if n_taken == 0 || over <= target - taken {
                chosen.insert(key);
                taken += size;
                n_taken += 1;
            }
        }
    }
    let in_val = |i: &usize| {
        let c = &clips[*i];
        let key = match &c.location {
            Some(loc) => format!("L{loc}"),
            None => format!("F{}", c.filename),
        };
        chosen.contains(key.as_str())
    };
    let (validation, train): (Vec<usize>, Vec<usize>) = train.iter().partition(|i| in_val(i));
    Ok(ValidationSplit { train, validation })
}

/// The most frequent label among `members` (ties: the smaller class index).
fn majority_label(clips: &[Clip], members: &[usize]) -> Option<usize> {
    let mut counts: BTreeMap<Option<usize>, usize> = BTreeMap::new();
    for &i in members {
        *counts.entry(clips[i].label).or_default() += 1;
    }
    let best = counts.values().copied().max().unwrap_or(0);
    counts
        .into_iter()
        .find(|&(_, n)| n == best)
        .and_then(|(l, _)| l)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clip(label: usize, loc: &str, k: usize) -> Clip {
        Clip {
            filename: format!("audio/{label}-{loc}-{k}-a.wav"),
            path: format!("/x/{label}-{loc}-{k}.wav").into(),
            label: Some(label),
            device: Some("a".into()),
            city: Some("c".into()),
            location: Some(loc.to_string()),
        }
    }

    fn toy() -> Vec<Clip> {
        // 3 classes x 5 locations x 4 clips.
        let mut v = Vec::new();
        for label in 0..3 {
            for l in 0..5 {
                for k in 0..4 {
                    v.push(clip(label, &format!("c-{label}{l}"), k));
                }
            }
        }
        v
    }

    #[test]
    fn location_disjoint_stratified_deterministic() {
        let clips = toy();
        let train: Vec<usize> = (0..clips.len()).collect();
        let s = validation_split(&clips, &train, 0.2, 42).unwrap();
        assert_eq!(s.train.len() + s.validation.len(), clips.len());
        let locs = |idx: &[usize]| -> HashSet<String> {
            idx.iter()
                .map(|&i| clips[i].location.clone().unwrap())
                .collect()
        };
        assert!(locs(&s.train).is_disjoint(&locs(&s.validation)));
        for class in 0..3 {
            let n = s
                .validation
                .iter()
                .filter(|&&i| clips[i].label == Some(class))
                .count();
            assert_eq!(n, 4, "class {class}: one of five locations");
        }
        assert_eq!(s, validation_split(&clips, &train, 0.2, 42).unwrap());
        let other: Vec<_> = (1..20)
            .map(|seed| {
                validation_split(&clips, &train, 0.2, seed)
                    .unwrap()
                    .validation
            })
            .collect();
        assert!(
            other.iter().any(|v| *v != s.validation),
            "seed has no effect"
        );
    }

    #[test]
    fn single_location_class_stays_in_train_and_bad_args_fail() {
        let clips: Vec<Clip> = (0..4).map(|k| clip(0, "only", k)).collect();
        let s = validation_split(&clips, &[0, 1, 2, 3], 0.5, 1).unwrap();
        assert_eq!(s.train, [0, 1, 2, 3]);
        assert!(s.validation.is_empty());
        assert!(validation_split(&clips, &[0], 1.0, 1).is_err());
        assert!(validation_split(&clips, &[9], 0.1, 1).is_err());
    }

    #[test]
    fn clips_without_location_are_their_own_group() {
        let mut clips = toy();
        for c in &mut clips {
            c.location = None;
        }
        let train: Vec<usize> = (0..clips.len()).collect();
        let s = validation_split(&clips, &train, 0.25, 3).unwrap();
        assert_eq!(s.validation.len(), 15); // 5 of 20 per class
    }
}
