//! MLP training-step throughput, measured beside a PyTorch
//! implementation of the same workload (benches/README.md).
//!
//! ```text
//! cargo bench --bench mlp_step -- [--depth 4 20 50] [--width 32 128 512] [--batch 64 256]
//!                                 [--act relu sigmoid] [--out FILE] [--blocks 3] [--block-sec 0.4]
//! cargo bench --bench mlp_step -- --memory [--depth 50] [--width 512] [--batch 64]
//!                                 [--steps 300] [--probe-every 10]
//! ```
//!
//! Model and data as in the PyTorch counterpart: input 32 -> `depth` x (dense `width`, act) -> dense(10,
//! linear); softmax cross-entropy; SGD lr 0.01; PyTorch's default `nn.Linear` init (weight and
//! bias U(-1/sqrt(fan_in), 1/sqrt(fan_in))); 8 fixed batches of N(0,1) inputs labelled by the
//! argmax of a fixed random linear teacher, cycled (inline data, no shuffling, so step `i` sees
//! batch `i % 8`); f32; one thread (faer's products run with `Par::Seq`, matrixmultiply is built without threading).
//!
//! Modes, timed in interleaved blocks:
//! - `instrumented`: probes every step (the engine's full per-layer statistics: grad
//!   norm/rms/max, bias grad norm, delta norm, weight norm, update ratio, activation mean/std,
//!   saturation/dead fraction, non-finite counts), a superset of PyTorch's `item`/`foreach`.
//! - `plain`: no probes.
//!
//! A block is timed after a warm-up, with enough steps to take ~`--block-sec`; the median of
//! `--blocks` blocks is reported. Like `_bench.py`, a block during which other processes used more
//! than 0.15 cores is re-run (up to `--retries` times, default 3, 2 s apart) and the least
//! disturbed attempt is kept; `--retries 0 --steps-per-block N` gives a fixed amount of work (for
//! callgrind).
//! Each block starts a fresh `RunRecord`, so probe series never grow without bound.
//!
//! `--memory` runs the engine's own training loop (`train`) on one configuration and prints the
//! resident set size after every `--steps / 10` steps and the peak (from /proc/self/status), so
//! that steady-state growth would show.

use std::time::Instant;

mod common;

use clap::Parser;
use common::{emit, measure, round, Blocks, Line, MatmulFlops, Timing};
use gradscope::engine::config::{
    Activation, DataConfig, DenseConfig, Init, InlineTargets, LayerConfig, LossKind, NetworkConfig, NormConfig,
    OptimizerConfig, Precision, ProbeConfig, RunConfig, TrainConfig,
};
use gradscope::engine::train::{train, CancelFlag};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::Serialize;

const IN_DIM: usize = 32;
const CLASSES: usize = 10;
const BATCHES: usize = 8;
/// Other processes' load (cores) above which a block counts as contended (as `_bench.py`).

#[derive(Parser, Debug)]
#[command(about = "gradscope MLP training-step benchmark (see the module doc)")]
struct Args {
    #[arg(long, num_args = 1.., default_values_t = [4])]
    depth: Vec<usize>,
    #[arg(long, num_args = 1.., default_values_t = [128])]
    width: Vec<usize>,
    #[arg(long, num_args = 1.., default_values_t = [64])]
    batch: Vec<usize>,
    #[arg(long, num_args = 1.., default_values = ["relu"])]
    act: Vec<String>,
    /// Timed blocks per mode; the median is reported.
    #[arg(long, default_value_t = 3)]
    blocks: usize,
    /// Target seconds per block.
    #[arg(long, default_value_t = 0.4)]
    block_sec: f64,
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    /// Fixed steps per block (0 = calibrate from --block-sec).
    #[arg(long, default_value_t = 0)]
    steps_per_block: usize,
    /// Re-runs of a contended block (0 for a fixed amount of work, e.g. under callgrind).
    #[arg(long, default_value_t = 3)]
    retries: usize,
    /// Modes to run, comma-separated: plain, instrumented.
    #[arg(long, default_value = "plain,instrumented")]
    modes: String,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Also append the JSON lines to this file.
    #[arg(long)]
    out: Option<String>,
    #[arg(long, default_value = "")]
    tag: String,
    /// Memory mode: run `train` on the first configuration and report RSS.
    #[arg(long)]
    memory: bool,
    /// Steps of the memory run.
    #[arg(long, default_value_t = 300)]
    steps: usize,
    /// Probe interval of the memory run.
    #[arg(long, default_value_t = 10)]
    probe_every: usize,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn activation(name: &str) -> Result<(Activation, &'static str), String> {
    match name {
        "relu" => Ok((Activation::Relu, "relu")),
        "sigmoid" => Ok((Activation::Sigmoid, "sigmoid")),
        "tanh" => Ok((Activation::Tanh, "tanh")),
        other => Err(format!("unknown activation {other} (relu, sigmoid, tanh)")),
    }
}

/// `nn.Linear`'s default init: kaiming_uniform(a = sqrt 5) is U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
/// and the bias uses the same bound.
fn dense(units: usize, fan_in: usize, activation: Activation) -> LayerConfig {
    let limit = 1.0 / (fan_in as f64).sqrt();
    LayerConfig::Dense(DenseConfig {
        units,
        activation,
        init: Init::Uniform { limit },
        bias_init: Init::Uniform { limit },
        norm: None,
        norm_config: NormConfig::default(),
        params: Default::default(),
    })
}

/// 8 batches of N(0,1) inputs, labels = argmax(x teacher) with a N(0,1) `32 x 10` teacher.
fn data(batch: usize, seed: u64) -> DataConfig {
    let mut rng = ChaCha8Rng::seed_from_u64(seed + 1);
    let mut normal = || -> f64 { rng.sample(StandardNormal) };
    let teacher: Vec<Vec<f64>> = (0..IN_DIM).map(|_| (0..CLASSES).map(|_| normal()).collect()).collect();
    let x: Vec<Vec<f64>> = (0..BATCHES * batch).map(|_| (0..IN_DIM).map(|_| normal()).collect()).collect();
    let labels = x
        .iter()
        .map(|row| {
            let logit = |c: usize| row.iter().zip(&teacher).map(|(v, t)| v * t[c]).sum::<f64>();
            (0..CLASSES)
                .map(|c| (c, logit(c)))
                .fold((0, f64::NEG_INFINITY), |b, (c, l)| if l > b.1 { (c, l) } else { b })
                .0
        })
        .collect();
    DataConfig::Inline { x, y: InlineTargets::Classes(labels) }
}

#[derive(Debug, Clone, Copy, Serialize)]
struct Config {
    depth: usize,
    width: usize,
    batch: usize,
    act: &'static str,
    in_dim: usize,
    classes: usize,
    linear_layers: usize,
    params: usize,
    optimizer: &'static str,
    lr: f64,
}

impl Config {
    fn run_config(&self, activation: Activation, seed: u64, steps: usize, probe_every: usize) -> RunConfig {
        let mut layers = Vec::with_capacity(self.depth + 1);
        let mut fan_in = IN_DIM;
        for _ in 0..self.depth {
            layers.push(dense(self.width, fan_in, activation));
            fan_in = self.width;
        }
        layers.push(dense(CLASSES, fan_in, Activation::Linear));
        RunConfig {
            seed,
            network: NetworkConfig { input_dim: IN_DIM, layers },
            data: data(self.batch, seed),
            training: TrainConfig {
                steps,
                batch_size: self.batch,
                loss: LossKind::CrossEntropy,
                optimizer: OptimizerConfig::Sgd { lr: self.lr, momentum: 0.0, dampening: 0.0, nesterov: false },
                schedule: gradscope::engine::config::Schedule::Constant,
                weight_decay: 0.0,
                clip: None,
                shuffle: false,
                precision: Precision::F32,
                validation_split: 0.0,
                standardize: false,
                bptt_truncate: None,
            },
            probes: ProbeConfig { every: probe_every, histograms: false, parameters: false },
        }
    }

    /// (in, out) of every dense layer.
    fn shapes(&self) -> Vec<(usize, usize)> {
        let mut dims = vec![IN_DIM];
        dims.extend(std::iter::repeat_n(self.width, self.depth));
        dims.push(CLASSES);
        dims.windows(2).map(|w| (w[0], w[1])).collect()
    }

    /// Matrix-product FLOPs of one step, as `mlp_step.py` counts them: forward 2 B sum(in out);
    /// backward dW for every layer and dX for all but the first.
    fn flops(&self) -> f64 {
        let mm: Vec<usize> = self.shapes().iter().map(|(i, o)| i * o).collect();
        let all: usize = mm.iter().sum();
        2.0 * self.batch as f64 * (2 * all + all - mm[0]) as f64
    }
}

fn bench(args: &Args, config: Config, act: Activation) {
    let run = config.run_config(act, args.seed, usize::MAX, 1);
    let blocks = Blocks {
        warmup: args.warmup,
        block_sec: args.block_sec,
        steps_per_block: args.steps_per_block,
        blocks: args.blocks,
        retries: args.retries,
    };
    let modes = measure(&run, &args.modes, &blocks);
    let flops = config.flops();
    for m in &modes {
        let timing = Timing::of(m, &modes, flops);
        let line = Line::new("mlp_step", config, m.name, m.probe, timing, MatmulFlops::of(flops), &args.tag);
        emit(&line, args.out.as_deref());
    }
}

/// `VmRSS` and `VmHWM` of this process, in KiB.
fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn memory(args: &Args, config: Config, act: Activation) {
    let run = config.run_config(act, args.seed, args.steps, args.probe_every);
    let (rss0, _) = rss_kib();
    let every = (args.steps / 10).max(1);
    let mut samples = Vec::new();
    let started = Instant::now();
    let record = train(&run, &CancelFlag::new(), &mut |p| {
        if p.step % every == 0 {
            samples.push((p.step, rss_kib().0));
        }
    });
    let secs = started.elapsed().as_secs_f64();
    let (rss, hwm) = rss_kib();
    let record = match record {
        Ok(r) => r,
        Err(e) => panic!("memory run failed: {e}"),
    };
    let mib = |k: u64| round(k as f64 / 1024.0, 1);
    let line = serde_json::json!({
        "framework": "gradscope",
        "bench": "mlp_memory",
        "config": config,
        "steps": args.steps,
        "probe_every": args.probe_every,
        "probe_steps": record.steps.len(),
        "rss_mib_before": mib(rss0),
        "rss_mib_by_step": samples.iter().map(|&(s, k)| (s, mib(k))).collect::<Vec<_>>(),
        "rss_mib_end": mib(rss),
        "peak_rss_mib": mib(hwm),
        "seconds": round(secs, 2),
        "final_loss": record.final_loss,
    });
    emit(&line, args.out.as_deref());
}

fn main() {
    let args = Args::parse();
    let mut acts = Vec::new();
    for name in &args.act {
        match activation(name) {
            Ok(a) => acts.push(a),
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(2);
            }
        }
    }
    for &(act, act_name) in &acts {
        for &depth in &args.depth {
            for &width in &args.width {
                for &batch in &args.batch {
                    let mut config = Config {
                        depth,
                        width,
                        batch,
                        act: act_name,
                        in_dim: IN_DIM,
                        classes: CLASSES,
                        linear_layers: depth + 1,
                        params: 0,
                        optimizer: "sgd",
                        lr: 0.01,
                    };
                    config.params = config.shapes().iter().map(|(i, o)| i * o + o).sum();
                    if args.memory {
                        memory(&args, config, act);
                        return;
                    }
                    bench(&args, config, act);
                }
            }
        }
    }
}
