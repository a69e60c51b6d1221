//! Index samplers: which clips make up each batch of an epoch.
//!
//! Batches are a pure function of (seed, epoch): a resumed run (docs/architecture.md "Run
//! directory") replays exactly the batches it would have seen, without storing sampler state.

use super::rng::SplitMix64;
use super::DatasetError;

/// Produces the batches (lists of clip indices) of one epoch.
pub trait BatchSampler {
    /// The batches of epoch `epoch` (0-based); identical for identical (seed, epoch).
    fn batches(&self, epoch: u64) -> Vec<Vec<usize>>;
    /// Number of batches each epoch has.
    fn batches_per_epoch(&self) -> usize;
}

fn check_batch(batch_size: usize, n: usize) -> Result<(), DatasetError> {
    if batch_size == 0 {
        return Err(DatasetError::InvalidArgument(
            "batch size must be > 0".into(),
        ));
    }
    if n == 0 {
        return Err(DatasetError::InvalidArgument(
            "a sampler needs at least one index".into(),
        ));
    }
    Ok(())
}

fn chunk(order: Vec<usize>, batch_size: usize, drop_last: bool) -> Vec<Vec<usize>> {
    order
        .chunks(batch_size)
        .filter(|c| !drop_last || c.len() == batch_size)
        .map(<[usize]>::to_vec)
        .collect()
}

fn count_batches(n: usize, batch_size: usize, drop_last: bool) -> usize {
    if drop_last {
        n / batch_size
    } else {
        n.div_ceil(batch_size)
    }
}

/// Every index once per epoch, in a fresh random order each epoch.
#[derive(Debug, Clone)]
pub struct ShuffledSampler {
    indices: Vec<usize>,
    batch_size: usize,
    drop_last: bool,
    seed: u64,
}

impl ShuffledSampler {
    /// `drop_last` drops a final incomplete batch (a batch of one breaks batch norm).
    pub fn new(
        indices: Vec<usize>,
        batch_size: usize,
        drop_last: bool,
        seed: u64,
    ) -> Result<Self, DatasetError> {
        check_batch(batch_size, indices.len())?;
        Ok(Self {
            indices,
            batch_size,
            drop_last,
            seed,
        })
    }
}

impl BatchSampler for ShuffledSampler {
    fn batches(&self, epoch: u64) -> Vec<Vec<usize>> {
        let mut order = self.indices.clone();
        SplitMix64::derive(self.seed, epoch).shuffle(&mut order);
        chunk(order, self.batch_size, self.drop_last)
    }

    fn batches_per_epoch(&self) -> usize {
        count_batches(self.indices.len(), self.batch_size, self.drop_last)
    }
}

/// Draws classes uniformly: the epoch is a sequence of blocks, each block holding every class
/// once in random order, and each class serves its clips in a random permutation (reshuffled
/// when used up). Rare classes are thus oversampled and frequent ones undersampled; on a
/// balanced data set an epoch is a permutation of the indices.
#[derive(Debug, Clone)]
pub struct ClassBalancedSampler {
    per_class: Vec<Vec<usize>>,
    epoch_len: usize,
    batch_size: usize,
    drop_last: bool,
    seed: u64,
}

impl ClassBalancedSampler {
    /// `classes[i]` is the class of `indices[i]`. The epoch length defaults to the number of
    /// indices ([`Self::with_epoch_len`] changes it).
    pub fn new(
        indices: &[usize],
        classes: &[usize],
        batch_size: usize,
        drop_last: bool,
        seed: u64,
    ) -> Result<Self, DatasetError> {
        check_batch(batch_size, indices.len())?;
        if indices.len() != classes.len() {
            return Err(DatasetError::InvalidArgument(format!(
                "{} indices but {} class labels",
                indices.len(),
                classes.len()
            )));
        }
        let n_classes = classes.iter().max().map_or(0, |m| m + 1);
        let mut per_class = vec![Vec::new(); n_classes];
        for (&i, &c) in indices.iter().zip(classes) {
            per_class[c].push(i);
        }
        per_class.retain(|v| !v.is_empty());
        Ok(Self {
            per_class,
            epoch_len: indices.len(),
            batch_size,
            drop_last,
            seed,
        })
    }

    pub fn with_epoch_len(mut self, epoch_len: usize) -> Self {
        self.epoch_len = epoch_len.max(1);
        self
    }
}

impl BatchSampler for ClassBalancedSampler {
    fn batches(&self, epoch: u64) -> Vec<Vec<usize>> {
        let mut rng = SplitMix64::derive(self.seed, epoch);
        let mut pools: Vec<Vec<usize>> = self.per_class.clone();
        for p in &mut pools {
            rng.shuffle(p);
        }
        let mut cursor = vec![0usize; pools.len()];
        let mut block: Vec<usize> = (0..pools.len()).collect();
        let mut order = Vec::with_capacity(self.epoch_len);
        while order.len() < self.epoch_len {
            rng.shuffle(&mut block);
            for &c in &block {
                if order.len() == self.epoch_len {
                    break;
                }
                if cursor[c] == pools[c].len() {
                    rng.shuffle(&mut pools[c]);
                    cursor[c] = 0;
                }
                order.push(pools[c][cursor[c]]);
                cursor[c] += 1;
            }
        }
        chunk(order, self.batch_size, self.drop_last)
    }

    fn batches_per_epoch(&self) -> usize {
        count_batches(self.epoch_len, self.batch_size, self.drop_last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffled_is_a_permutation_and_deterministic() {
        let s = ShuffledSampler::new((10..31).collect(), 4, false, 9).unwrap();
        let b0 = s.batches(0);
        assert_eq!(b0.len(), 6);
        assert_eq!(s.batches_per_epoch(), 6);
        let mut all: Vec<usize> = b0.concat();
        all.sort_unstable();
        assert_eq!(all, (10..31).collect::<Vec<_>>());
        assert_eq!(b0, s.batches(0));
        assert_ne!(b0, s.batches(1));
        let d = ShuffledSampler::new((0..21).collect(), 4, true, 9).unwrap();
        assert_eq!(d.batches(0).len(), 5);
        assert!(d.batches(0).iter().all(|b| b.len() == 4));
        assert!(ShuffledSampler::new(vec![], 4, false, 0).is_err());
        assert!(ShuffledSampler::new(vec![1], 0, false, 0).is_err());
    }

    #[test]
    fn balanced_draws_classes_uniformly() {
        // Class 0: 90 items, class 1: 9, class 2: 1.
        let indices: Vec<usize> = (0..100).collect();
        let classes: Vec<usize> = indices
            .iter()
            .map(|&i| match i {
                0..90 => 0,
                90..99 => 1,
                _ => 2,
            })
            .collect();
        let s = ClassBalancedSampler::new(&indices, &classes, 10, false, 5).unwrap();
        let order: Vec<usize> = s.batches(3).concat();
        assert_eq!(order.len(), 100);
        let mut counts = [0usize; 3];
        for &i in &order {
            counts[classes[i]] += 1;
        }
        let mut sorted = counts;
        sorted.sort_unstable();
        assert_eq!(sorted, [33, 33, 34]);
        // Class 0 is served without repetition within the epoch.
        let mut zeros: Vec<usize> = order.iter().copied().filter(|&i| i < 90).collect();
        zeros.sort_unstable();
        zeros.dedup();
        assert_eq!(zeros.len(), counts[0]);
        assert_eq!(s.batches(3), s.batches(3));
        assert_ne!(s.batches(3), s.batches(4));
        assert!(ClassBalancedSampler::new(&indices, &classes[..5], 10, false, 5).is_err());
    }

    #[test]
    fn balanced_on_balanced_data_is_a_permutation() {
        let indices: Vec<usize> = (0..12).collect();
        let classes: Vec<usize> = (0..12).map(|i| i % 3).collect();
        let s = ClassBalancedSampler::new(&indices, &classes, 5, false, 1).unwrap();
        let mut all = s.batches(0).concat();
        all.sort_unstable();
        assert_eq!(all, indices);
        let s = s.with_epoch_len(7);
        assert_eq!(s.batches(0).concat().len(), 7);
        assert_eq!(s.batches_per_epoch(), 2);
    }
}
