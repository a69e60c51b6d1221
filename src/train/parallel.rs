//! Data-parallel training over several processes (`mpirun -np N asc train ...`, built with the
//! `mpi` cargo feature): every rank builds the same global batch (same seed, same augmentation),
//! trains on its share of the rows, and the gradients are summed over the ranks before every
//! step, so all ranks take the same step and hold the same weights. Rank 0 alone writes the run
//! folder (config, checkpoints, metrics); a resumed run resumes on every rank from its files.
//!
//! What changes against one process with the whole batch is the normalization question of the
//! seeds' papers: BN (and every layer with batch statistics) normalizes each rank's rows with
//! that rank's statistics ("per-rank BN"), and the running estimates are averaged over the ranks
//! after each step. Layers without batch statistics (GN, LN, IN, none) give the one-process
//! weights up to the order of the gradient sums (`tests/parallel.rs`). With `sync_bn`
//! (`asc train --sync-bn`) the batch statistics are all-reduced inside the forward and the
//! backward instead ([`crate::nn::ops::across`]), and BN gives the one-process weights too.
//! Dropout draws each element's
//! mask from its index in the whole batch (`Model::reseed`'s first row), so a rank's masks are
//! those one process draws for the same rows.

use candle_core::{backprop::GradStore, Result, Tensor, Var};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The communication a data-parallel run needs.
pub trait Collective: Send + Sync {
    /// This process's rank, 0 to size − 1.
    fn rank(&self) -> usize;
    /// The number of ranks.
    fn size(&self) -> usize;
    /// Replaces `values` by their element-wise sum over all ranks (every rank calls it with the
    /// same length).
    fn all_reduce_sum(&self, values: &mut [f32]);
    /// Waits until every rank has called it.
    fn barrier(&self);
}

/// One process: nothing to communicate.
#[derive(Debug, Clone, Copy, Default)]
pub struct Single;

impl Collective for Single {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn all_reduce_sum(&self, _values: &mut [f32]) {}
    fn barrier(&self) {}
}

/// The ranks a run trains over (one process unless started by `mpirun`), and the time spent
/// communicating.
#[derive(Clone)]
pub struct Parallel {
    ranks: Arc<dyn Collective>,
    traffic: Arc<Traffic>,
}

/// What the all-reduces of a run cost, summed.
#[derive(Debug, Default)]
struct Traffic {
    nanos: AtomicU64,
    calls: AtomicU64,
    values: AtomicU64,
}

/// [`Parallel::traffic`]'s figures.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct TrafficSummary {
    pub all_reduces: u64,
    /// float32 values sent per rank, in all.
    pub values: u64,
    pub seconds: f64,
}

impl Default for Parallel {
    fn default() -> Self {
        Self::new(Arc::new(Single))
    }
}

impl std::fmt::Debug for Parallel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Parallel(rank {} of {})", self.rank(), self.size())
    }
}

impl Parallel {
    pub fn new(ranks: Arc<dyn Collective>) -> Self {
        Self {
            ranks,
            traffic: Arc::default(),
        }
    }

    pub fn rank(&self) -> usize {
        self.ranks.rank()
    }

    pub fn size(&self) -> usize {
        self.ranks.size()
    }

    /// The all-reduces so far: how many, how many values, how long they took on this rank
    /// (waiting for the slowest rank included).
    pub fn traffic(&self) -> TrafficSummary {
        TrafficSummary {
            all_reduces: self.traffic.calls.load(Ordering::Relaxed),
            values: self.traffic.values.load(Ordering::Relaxed),
            seconds: self.traffic.nanos.load(Ordering::Relaxed) as f64 * 1e-9,
        }
    }

    /// The timed all-reduce every other method goes through.
    fn all_reduce(&self, values: &mut [f32]) {
        let t = std::time::Instant::now();
        self.ranks.all_reduce_sum(values);
        let dt = t.elapsed().as_nanos() as u64;
        self.traffic.nanos.fetch_add(dt, Ordering::Relaxed);
        self.traffic.calls.fetch_add(1, Ordering::Relaxed);
        self.traffic
            .values
            .fetch_add(values.len() as u64, Ordering::Relaxed);
    }

    /// Whether this rank writes the run folder and prints progress.
    pub fn is_root(&self) -> bool {
        self.rank() == 0
    }

    /// This rank's rows of a global batch of `n`: contiguous, sizes differing by at most one.
    pub fn shard(&self, n: usize) -> Range<usize> {
        shard(n, self.rank(), self.size())
    }

    /// Sums the gradients of `params` over the ranks, in place in `grads`: one message for all
    /// of them. A parameter without a gradient on this rank contributes zeros.
    pub fn all_reduce_grads(&self, grads: &mut GradStore, params: &[(String, Var)]) -> Result<()> {
        if self.size() == 1 {
            return Ok(());
        }
        let mut flat = Vec::new();
        for (_, var) in params {
            match grads.get(var.as_tensor()) {
                Some(g) => flat.extend(g.flatten_all()?.to_vec1::<f32>()?),
                None => flat.extend(std::iter::repeat_n(0f32, var.elem_count())),
            }
        }
        self.all_reduce(&mut flat);
        let mut at = 0;
        for (_, var) in params {
            let n = var.elem_count();
            let g = Tensor::from_slice(&flat[at..at + n], var.shape(), var.device())?;
            grads.insert(var.as_tensor(), g);
            at += n;
        }
        Ok(())
    }

    /// Replaces every variable of `vars` (running statistics) by its mean over the ranks.
    pub fn average_vars(&self, vars: &[Var]) -> Result<()> {
        if self.size() == 1 {
            return Ok(());
        }
        let mut flat = Vec::new();
        for v in vars {
            flat.extend(v.as_tensor().flatten_all()?.to_vec1::<f32>()?);
        }
        self.all_reduce(&mut flat);
        let ranks = self.size() as f32;
        let mut at = 0;
        for v in vars {
            let n = v.elem_count();
            let mean: Vec<f32> = flat[at..at + n].iter().map(|x| x / ranks).collect();
            v.set(&Tensor::from_vec(mean, v.shape(), v.device())?)?;
            at += n;
        }
        Ok(())
    }

    /// The sums of `values` over the ranks.
    pub fn sum(&self, values: &[f32]) -> Vec<f32> {
        let mut v = values.to_vec();
        if self.size() > 1 {
            self.all_reduce(&mut v);
        }
        v
    }

    pub fn barrier(&self) {
        self.ranks.barrier()
    }
}

/// Synchronised batch statistics go through the same timed all-reduce as the gradients.
impl crate::nn::ops::SumAcross for Parallel {
    fn sum_across(&self, values: &mut [f32]) {
        self.all_reduce(values);
    }
}

/// Rows `rank` of `size` takes out of `n`: the first `n % size` ranks one more.
pub fn shard(n: usize, rank: usize, size: usize) -> Range<usize> {
    let (base, extra) = (n / size, n % size);
    let start = rank * base + rank.min(extra);
    start..start + base + usize::from(rank < extra)
}

/// The size of the job this process was started in by an MPI launcher (Open MPI's or a PMI
/// one's environment), if any.
pub fn launcher_size() -> Option<usize> {
    [
        "OMPI_COMM_WORLD_SIZE",
        "PMI_SIZE",
        "PMIX_SIZE",
        "MPI_LOCALNRANKS",
    ]
    .iter()
    .find_map(|k| std::env::var(k).ok()?.parse().ok())
}

/// The ranks of this process's job, and what must live as long as they are used.
pub struct Ranks {
    pub parallel: Parallel,
    /// MPI's environment: finalises MPI when dropped.
    #[cfg(feature = "mpi")]
    _universe: Option<mpi::environment::Universe>,
}

/// The error of a process started by an MPI launcher that cannot join the job.
#[derive(Debug, thiserror::Error)]
#[error("started by an MPI launcher with {0} ranks, but {1}")]
pub struct LaunchError(usize, &'static str);

/// One process, or the ranks of the MPI job this process was started in (`mpirun -np N`).
/// Without the `mpi` feature, a process started by a launcher of more than one rank is refused:
/// the ranks would each train the whole run into the same folder.
pub fn from_launcher() -> std::result::Result<Ranks, LaunchError> {
    let size = launcher_size().unwrap_or(1);
    if size <= 1 {
        return Ok(Ranks {
            parallel: Parallel::default(),
            #[cfg(feature = "mpi")]
            _universe: None,
        });
    }
    #[cfg(feature = "mpi")]
    {
        let (universe, ranks) = mpi_ranks::Mpi::init().ok_or(LaunchError(
            size,
            "MPI could not be initialised (already initialised?)",
        ))?;
        Ok(Ranks {
            parallel: Parallel::new(Arc::new(ranks)),
            _universe: Some(universe),
        })
    }
    #[cfg(not(feature = "mpi"))]
    Err(LaunchError(
        size,
        "this asc was built without the `mpi` feature (cargo build --release --features mpi)",
    ))
}

#[cfg(feature = "mpi")]
pub mod mpi_ranks {
    //! The ranks of an MPI job (rsmpi over the system's MPI library).
    use super::Collective;
    use mpi::collective::SystemOperation;
    use mpi::topology::SimpleCommunicator;
    use mpi::traits::{Communicator, CommunicatorCollectives};
    use std::sync::Mutex;

    /// MPI's world communicator. Keep the [`mpi::environment::Universe`] alive (it finalises MPI
    /// when dropped) for as long as this is used.
    pub struct Mpi {
        world: Mutex<SimpleCommunicator>,
        rank: usize,
        size: usize,
    }

    // SAFETY: the communicator is only used through the mutex, one call at a time; the training
    // loop makes every call from the one thread that runs it (rayon only computes inside ops), so
    // even an MPI library that grants less than the MPI_THREAD_SERIALIZED asked for is used as
    // it allows.
    unsafe impl Send for Mpi {}
    unsafe impl Sync for Mpi {}

    impl Mpi {
        /// Initialises MPI: the universe (to keep until the end) and the world's ranks.
        pub fn init() -> Option<(mpi::environment::Universe, Self)> {
            let (universe, _) = mpi::initialize_with_threading(mpi::Threading::Serialized)?;
            let world = universe.world();
            let (rank, size) = (world.rank() as usize, world.size() as usize);
            Some((
                universe,
                Self {
                    world: Mutex::new(world),
                    rank,
                    size,
                },
            ))
        }
    }

    impl Collective for Mpi {
        fn rank(&self) -> usize {
            self.rank
        }
        fn size(&self) -> usize {
            self.size
        }
        fn all_reduce_sum(&self, values: &mut [f32]) {
            let world = self.world.lock().expect("mpi lock");
            let send = values.to_vec();
            world.all_reduce_into(&send[..], values, SystemOperation::sum());
        }
        fn barrier(&self) {
            self.world.lock().expect("mpi lock").barrier();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_the_batch_once() {
        for (n, size) in [(32, 2), (33, 2), (7, 3), (2, 4)] {
            let parts: Vec<Range<usize>> = (0..size).map(|r| shard(n, r, size)).collect();
            assert_eq!(parts[0].start, 0);
            for w in parts.windows(2) {
                assert_eq!(w[0].end, w[1].start);
            }
            assert_eq!(parts[size - 1].end, n);
            let lens: Vec<usize> = parts.iter().map(|p| p.len()).collect();
            assert!(lens.iter().max().unwrap() - lens.iter().min().unwrap() <= 1);
        }
    }
}
