//! Data-parallel training (`asc::train::parallel`, issue 20) without MPI: two ranks as two
//! threads of this process sharing an in-memory all-reduce, each calling `train::train` as an
//! `mpirun` rank would. A layer without batch statistics (GN, LN) must give the weights of one
//! process training the whole batch, up to the order of the gradient sums; BN, normalizing each
//! rank's half of the batch with that half's statistics, must not, and the test says by how much;
//! with synchronised batch statistics (`sync_bn`) every BN-like layer must give them again.
//! `mpirun -np 2` with the `mpi` feature runs the same code with MPI's all-reduce
//! (docs/distributed.md).

mod child;

use asc::train::parallel::{Collective, Parallel};
use asc::train::{checkpoint, RunOptions, TrainConfig};
use candle_core::Device;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Barrier, Mutex};

/// Ranks as threads: an all-reduce through one shared buffer, between barriers.
struct Threads {
    rank: usize,
    shared: Arc<Shared>,
}

struct Shared {
    size: usize,
    sum: Mutex<Vec<f32>>,
    barrier: Barrier,
}

impl Collective for Threads {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.shared.size
    }
    fn all_reduce_sum(&self, values: &mut [f32]) {
        let s = &self.shared;
        if self.rank == 0 {
            *s.sum.lock().unwrap() = vec![0.0; values.len()];
        }
        s.barrier.wait();
        for (a, v) in s.sum.lock().unwrap().iter_mut().zip(values.iter()) {
            *a += v;
        }
        s.barrier.wait();
        values.copy_from_slice(&s.sum.lock().unwrap());
        s.barrier.wait();
    }
    fn barrier(&self) {
        self.shared.barrier.wait();
    }
}

fn group(size: usize) -> Vec<Parallel> {
    let shared = Arc::new(Shared {
        size,
        sum: Mutex::new(Vec::new()),
        barrier: Barrier::new(size),
    });
    (0..size)
        .map(|rank| {
            Parallel::new(Arc::new(Threads {
                rank,
                shared: shared.clone(),
            }))
        })
        .collect()
}

/// Every tensor of the final checkpoint (parameters, buffers, optimiser moments) of `cfg` trained
/// in `run` over `ranks` ranks.
fn train(cfg: &TrainConfig, run: &Path, ranks: usize) -> BTreeMap<String, Vec<f32>> {
    run_ranks(cfg, run, ranks, RunOptions::default());
    checkpoint_tensors(run)
}

/// One invocation of `cfg` in `run` over `ranks` ranks (threads) with `opts` otherwise.
fn run_ranks(cfg: &TrainConfig, run: &Path, ranks: usize, opts: RunOptions) {
    std::thread::scope(|scope| {
        let handles: Vec<_> = group(ranks)
            .into_iter()
            .map(|parallel| {
                let cfg = cfg.clone();
                let opts = RunOptions {
                    quiet: true,
                    parallel,
                    ..opts.clone()
                };
                scope.spawn(move || asc::train::train(cfg, run, Device::Cpu, &opts))
            })
            .collect();
        for h in handles {
            h.join().unwrap().unwrap();
        }
    });
}

fn checkpoint_tensors(run: &Path) -> BTreeMap<String, Vec<f32>> {
    let loaded = checkpoint::load(&run.join("checkpoint.safetensors"), &Device::Cpu).unwrap();
    loaded
        .tensors
        .iter()
        .map(|(k, t)| (k.clone(), t.flatten_all().unwrap().to_vec1().unwrap()))
        .collect()
}

/// The largest |a − b| / max |a| over the tensors, and the tensor it is in. A running mean is
/// judged on the scale of its layer's running deviation, which is what it is subtracted from:
/// the BN half of GN+ sees maps GN has already centred, and its running mean is rounding noise
/// (1e-8) that one more term in a sum changes in the first digit.
fn worst(a: &BTreeMap<String, Vec<f32>>, b: &BTreeMap<String, Vec<f32>>) -> (f32, String) {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    let mut w = (0f32, String::new());
    for (k, x) in a {
        let spread = k
            .strip_suffix("running_mean")
            .and_then(|layer| a.get(&format!("{layer}running_var")))
            .map_or(0.0, |v| v.iter().fold(0f32, |m, v| m.max(v.abs().sqrt())));
        let scale = x.iter().fold(spread.max(1e-6), |m, v| m.max(v.abs()));
        let d = x
            .iter()
            .zip(&b[k])
            .fold(0f32, |m, (p, q)| m.max((p - q).abs()))
            / scale;
        if d > w.0 {
            w = (d, k.clone());
        }
    }
    w
}

/// `cfg` with `norm` trained by one process and by two ranks (runs under `dir`): the worst
/// relative difference of their checkpoints and where, also added to `report`.
fn one_vs_two(
    cfg: &TrainConfig,
    norm: &str,
    dir: &Path,
    report: &mut Vec<String>,
) -> (f32, String) {
    let cfg = TrainConfig {
        norm: norm.into(),
        ..cfg.clone()
    };
    let one = train(&cfg, &dir.join(format!("{norm}-1")), 1);
    let two = train(&cfg, &dir.join(format!("{norm}-2")), 2);
    let (d, at) = worst(&one, &two);
    let sync = if cfg.sync_bn { " synchronised" } else { "" };
    report.push(format!(
        "{norm}{sync}: 1 vs 2 ranks, worst relative difference {d:.1e} ({at})"
    ));
    (d, at)
}

#[test]
fn two_ranks_give_the_one_process_weights_for_batch_independent_norms() {
    let dir = tempfile::tempdir().unwrap();
    let config = child::training_set(dir.path(), 2, "0.5");
    let mut cfg: TrainConfig = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    // Dropout stays on (0.3): each rank draws the one-process masks of its rows. Augmentation is
    // drawn for the whole batch on every rank alike, so it stays on as well.
    cfg.batch_size = 16;
    let mut report = Vec::new();
    for (norm, same) in [("gn", true), ("ln", true), ("bn", false)] {
        let (d, at) = one_vs_two(&cfg, norm, dir.path(), &mut report);
        if same {
            assert!(d < 1e-4, "{norm}: {d} at {at}");
        } else {
            assert!(
                d > 1e-3,
                "{norm}: per-rank statistics changed nothing ({d})"
            );
        }
    }
    eprintln!("{}", report.join("\n"));
}

/// With `sync_bn`, every layer with batch statistics (BN, L2BN, IEBN, GN+'s BN half, UBN's
/// centred BN) normalises each rank's rows with the whole batch's moments and back-propagates
/// through them, all-reduced inside the forward and the backward: two ranks give the one-process
/// weights, running statistics included, up to the order of the sums (and the float32 messages).
#[test]
fn synchronised_bn_gives_the_one_process_weights() {
    let dir = tempfile::tempdir().unwrap();
    let config = child::training_set(dir.path(), 2, "0.5");
    let mut cfg: TrainConfig = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    cfg.batch_size = 16;
    cfg.sync_bn = true;
    let mut report = Vec::new();
    for norm in ["bn", "l2bn", "iebn", "gnplus", "ubn"] {
        let (d, at) = one_vs_two(&cfg, norm, dir.path(), &mut report);
        assert!(d < 1e-4, "{norm} synchronised: {d} at {at}");
    }
    eprintln!("{}", report.join("\n"));
}

/// A data-parallel run stopped after its first epoch and resumed (every rank reading rank 0's
/// checkpoint) ends with the same checkpoint, bit for bit, as the same run uninterrupted.
#[test]
fn an_interrupted_parallel_run_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let config = child::training_set(dir.path(), 2, "0.5");
    let mut cfg: TrainConfig = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    cfg.norm = "bn".into();
    cfg.batch_size = 16;
    let whole = train(&cfg, &dir.path().join("whole"), 2);
    let run = dir.path().join("resumed");
    let first = RunOptions {
        stop_after_epochs: Some(1),
        ..RunOptions::default()
    };
    run_ranks(&cfg, &run, 2, first);
    let resume = RunOptions {
        resume: true,
        ..RunOptions::default()
    };
    run_ranks(&cfg, &run, 2, resume);
    let resumed = checkpoint_tensors(&run);
    assert_eq!(
        whole.keys().collect::<Vec<_>>(),
        resumed.keys().collect::<Vec<_>>()
    );
    for (k, v) in &whole {
        assert!(
            v.iter()
                .zip(&resumed[k])
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{k} differs after resuming"
        );
    }
}
