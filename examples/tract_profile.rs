//! Where tract spends its time on an exported model (issue 9): runs the optimised plan of one
//! input shape with a timing wrapper around every node and prints the share of each operator
//! type and the slowest nodes. Times are the thread's CPU time (one thread, rayon's included), so
//! other jobs on a shared machine do not inflate them. The plan is the one `Classifier` runs,
//! with our convolutions swapped in; `ASC_TRACT_CONV=tract` profiles tract's own.
//!
//! Run: `cargo run --release --example tract_profile -- MODEL.onnx BATCH MELS FRAMES [RUNS]`,
//! the model a file `asc export` wrote, or `cnn` / `cp-mobile` for one with random weights and
//! BN (written to /tmp/NAME.onnx too). `PROFILE_NODES=N` lists the N slowest nodes (15),
//! `PROFILE_INFO=1` each one's op details.

use std::collections::HashMap;
use std::time::Duration;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::plan::{eval, SimpleState};

fn main() -> TractResult<()> {
    // Allocate as `asc` does, so per-run tensors do not page-fault fresh mappings each run.
    asc::process::keep_freed_memory();
    // Our convolution hands its rows to rayon: in a one-thread pool they run on this thread, the
    // one whose CPU time is measured.
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()?
        .install(profile)
}

fn profile() -> TractResult<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        eprintln!("usage: tract_profile MODEL.onnx|cnn|cp-mobile BATCH MELS FRAMES [RUNS]");
        std::process::exit(2);
    }
    let batch: usize = args[1].parse()?;
    let mels: usize = args[2].parse()?;
    let frames: usize = args[3].parse()?;
    let runs: usize = args.get(4).map_or(Ok(20), |r| r.parse::<usize>())?.max(1);
    let model = if args[0].ends_with(".onnx") {
        tract_onnx::onnx().model_for_path(&args[0])?
    } else {
        let bytes = random_model(&args[0], mels);
        std::fs::write(format!("/tmp/{}.onnx", args[0]), &bytes)?;
        tract_onnx::onnx().model_for_read(&mut bytes.as_slice())?
    };
    let shape = [batch, 1, mels, frames];
    let plan = asc::infer::optimized_plan(&model, &shape, asc::infer::ConvKernel::from_env())?;
    let input: TValue = Tensor::from_shape(
        &shape,
        &(0..shape.iter().product::<usize>())
            .map(|i| ((i % 97) as f32 / 97.0) * 8.0 - 12.0)
            .collect::<Vec<f32>>(),
    )?
    .into();
    let mut state = SimpleState::new(&plan)?;
    let mut per_node: HashMap<usize, Duration> = HashMap::new();
    let mut total = Duration::ZERO;
    let mut each = Vec::with_capacity(runs);
    for run in 0..=runs {
        let start = cpu_time();
        let mut times: Vec<(usize, Duration)> = Vec::new();
        state.run_plan_with_eval(tvec!(input.clone()), |ctx, op_state, node, inputs| {
            let t = cpu_time();
            let r = eval(ctx, op_state, node, inputs);
            times.push((node.id, cpu_time() - t));
            r
        })?;
        // The first run warms caches and allocations; it is not counted.
        if run > 0 {
            each.push(cpu_time() - start);
            total += each[run - 1];
            for (id, d) in times {
                *per_node.entry(id).or_default() += d;
            }
        }
    }
    let graph = plan.model();
    let verbose = std::env::var_os("PROFILE_INFO").is_some();
    let ms = |d: Duration| d.as_secs_f64() * 1e3 / runs as f64;
    let mut per_op: HashMap<String, Duration> = HashMap::new();
    for (&id, &d) in &per_node {
        *per_op
            .entry(graph.node(id).op().name().to_string())
            .or_default() += d;
    }
    // The median as well: on a shared VM a burst of contention moves the mean by 20 %.
    each.sort();
    println!(
        "{} at {shape:?}: {:.3} ms per run (mean of {runs}), median {:.3} ms",
        args[0],
        ms(total),
        each[runs / 2].as_secs_f64() * 1e3
    );
    let mut ops: Vec<_> = per_op.into_iter().collect();
    ops.sort_by_key(|o| std::cmp::Reverse(o.1));
    println!("{:<28} {:>9} {:>7}", "operator", "ms", "share");
    for (op, d) in &ops {
        println!(
            "{op:<28} {:>9.3} {:>6.1}%",
            ms(*d),
            100.0 * d.as_secs_f64() / total.as_secs_f64()
        );
    }
    let mut nodes: Vec<_> = per_node.into_iter().collect();
    nodes.sort_by_key(|n| std::cmp::Reverse(n.1));
    println!("\nslowest nodes");
    let shown = std::env::var("PROFILE_NODES").map_or(15, |n| n.parse().unwrap_or(15));
    for (id, d) in nodes.iter().take(shown) {
        let node = graph.node(*id);
        let out = &node.outputs[0].fact;
        println!(
            "{:>9.3} ms  {:<24} {:<40} -> {:?}",
            ms(*d),
            node.op().name(),
            node.name,
            out.shape
        );
        if verbose {
            for line in node.op().info()? {
                println!("             {line}");
            }
        }
    }
    Ok(())
}

/// An exported model of `name` with BN, untrained weights, `mels` mel bands and 10 classes.
fn random_model(name: &str, mels: usize) -> Vec<u8> {
    use asc::export::{model_graph, InputKind, ModelMetadata};
    use asc::train::{Session, TrainConfig};
    use prost::Message;
    let mut c = TrainConfig::defaults(name, "bn", "-".into(), "-".into());
    c.labels = (0..10).map(|i| format!("class{i}")).collect();
    c.model.n_classes = 10;
    c.frontend.n_mels = mels;
    let s = Session::build(c, candle_core::Device::Cpu).expect("model");
    let meta = ModelMetadata {
        labels: s.config.labels.clone(),
        frontend: s.config.frontend.clone(),
        input: InputKind::Logmel,
        clip_frames: 10,
        model: name.into(),
        norm: "bn".into(),
        version: "profile".into(),
        training: serde_json::Value::Null,
        devices: Vec::new(),
    };
    model_graph(&s, &meta)
        .expect("graph")
        .to_model()
        .encode_to_vec()
}

/// CPU time of the calling thread.
fn cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for clock_gettime to write.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}
