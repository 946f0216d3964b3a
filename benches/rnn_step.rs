//! RNN training-step throughput (BPTT), measured beside a PyTorch
//! implementation of the same workload (benches/README.md).
//!
//! ```text
//! cargo bench --bench rnn_step -- [--cell rnn lstm gru] [--hidden 64 128] [--seq 50 200]
//!                                 [--batch 32] [--out FILE] [--blocks 3] [--block-sec 0.4]
//!                                 [--modes plain,instrumented]
//! ```
//!
//! Model and data as in the PyTorch counterpart: the adding problem (input 2: a value u ~ U(0,1) and a
//! marker that is 1 at exactly two steps, one in each half; target the sum of the two marked
//! values); one recurrent layer (`rnn` = vanilla tanh, `lstm`, `gru`) of `hidden` units; dense(1,
//! linear) on the last state; MSE; SGD lr 0.01; batch 32. PyTorch's default init: every weight and
//! bias U(-1/sqrt(H), 1/sqrt(H)) (the head: U(-1/sqrt(H), 1/sqrt(H)) too, as `nn.Linear(H, 1)`),
//! the biases passed as explicit parameters since the engine's default recurrent biases are zero.
//! 8 fixed batches generated from the seed, passed as inline sequences and cycled (no shuffling,
//! so step `i` sees batch `i % 8` and no data generation is timed); f32; one thread
//! (faer's products run with `Par::Seq`, matrixmultiply is built without threading).
//!
//! Modes, timed in interleaved blocks:
//! - `instrumented`: probes every step: `||dL/dh_t||` for every t, every parameter's gradient
//!   statistics, the engine's per-layer statistics, gate means/saturations (a superset of
//!   PyTorch's `unrolled_item`/`unrolled_stacked`), and the spectra of the recurrent blocks of
//!   `W_hh` on the engine's schedule for a `--run-steps` run probed every step (default 1000:
//!   at most every 20th step, further apart where their cost bound asks, `train::spectra_gap`;
//!   the line's `spectra_in_run` says how many of the run's steps compute them).
//! - `plain`: no probes.
//!
//! Timing as `mlp_step.rs`: a block is timed after a warm-up, with enough steps to take
//! ~`--block-sec`; the median of `--blocks` blocks is reported; a block during which other
//! processes used more than 0.15 cores is re-run (up to 3 times, 2 s apart) and the least
//! disturbed attempt is kept. Each block starts a fresh `RunRecord`.

mod common;

use clap::Parser;
use common::{emit, measure, round, Blocks, Line, Timing};
use gradscope::engine::config::{
    Activation, CellKind, DataConfig, DenseConfig, ExplicitParams, Init, InlineSequenceTargets, InlineTargets,
    LayerConfig, LossKind, NetworkConfig, NormConfig, OptimizerConfig, Precision, ProbeConfig, RnnConfig, RunConfig,
    TrainConfig,
};
use gradscope::engine::train::spectra_at;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

const IN_DIM: usize = 2;
const BATCHES: usize = 8;
/// Other processes' load (cores) above which a block counts as contended (as `_bench.py`).
const RETRIES: usize = 3;

#[derive(Parser, Debug)]
#[command(about = "gradscope RNN training-step benchmark (see the module doc)")]
struct Args {
    #[arg(long, num_args = 1.., default_values = ["rnn", "lstm"])]
    cell: Vec<String>,
    #[arg(long, num_args = 1.., default_values_t = [64, 128])]
    hidden: Vec<usize>,
    #[arg(long, num_args = 1.., default_values_t = [50, 200])]
    seq: Vec<usize>,
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Timed blocks per mode; the median is reported.
    #[arg(long, default_value_t = 3)]
    blocks: usize,
    /// Target seconds per block.
    #[arg(long, default_value_t = 0.4)]
    block_sec: f64,
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Fixed steps per block (0 = calibrate from --block-sec).
    #[arg(long, default_value_t = 0)]
    steps_per_block: usize,
    /// Modes to run, comma-separated: plain, instrumented.
    #[arg(long, default_value = "plain,instrumented")]
    modes: String,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Steps of the run the bench steps through, probed every step. Only the engine's spectra
    /// schedule depends on it (`train::spectra_at`): 1000 steps probed every step compute the
    /// spectra of `W_hh` at most at every 20th step (51 steps), fewer where `train::spectra_gap`
    /// spaces them further.
    #[arg(long, default_value_t = 1000)]
    run_steps: usize,
    /// Also append the JSON lines to this file.
    #[arg(long)]
    out: Option<String>,
    #[arg(long, default_value = "")]
    tag: String,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn cell(name: &str) -> Result<(CellKind, &'static str), String> {
    match name {
        "rnn" | "tanh" | "vanilla" => Ok((CellKind::Vanilla, "rnn")),
        "lstm" => Ok((CellKind::Lstm, "lstm")),
        "gru" => Ok((CellKind::Gru, "gru")),
        other => Err(format!("unknown cell {other} (rnn, lstm, gru)")),
    }
}

/// 8 batches of adding-problem sequences, as `rnn_step.py` draws them: u ~ U(0,1) at every step,
/// markers at one step in `[0, T/2)` and one in `[T/2, T)`, target `u_i1 + u_i2`.
fn data(batch: usize, seq: usize, seed: u64) -> DataConfig {
    let mut rng = ChaCha8Rng::seed_from_u64(seed + 1);
    let n = BATCHES * batch;
    let mut x = Vec::with_capacity(n);
    let mut y = Vec::with_capacity(n);
    for _ in 0..n {
        let u: Vec<f64> = (0..seq).map(|_| rng.random::<f64>()).collect();
        let i1 = rng.random_range(0..(seq / 2).max(1));
        let i2 = rng.random_range(seq / 2..seq);
        x.push((0..seq).map(|t| vec![u[t], if t == i1 || t == i2 { 1.0 } else { 0.0 }]).collect());
        y.push(vec![u[i1] + if i2 != i1 { u[i2] } else { 0.0 }]);
    }
    DataConfig::InlineSequences { x, y: InlineSequenceTargets::PerSequence(InlineTargets::Values(y)) }
}

fn uniform(rng: &mut ChaCha8Rng, n: usize, limit: f64) -> Vec<f64> {
    (0..n).map(|_| rng.random_range(-limit..limit)).collect()
}

#[derive(Debug, Clone, Copy, Serialize)]
struct Config {
    cell: &'static str,
    hidden: usize,
    seq: usize,
    batch: usize,
    in_dim: usize,
    task: &'static str,
    loss: &'static str,
    optimizer: &'static str,
    lr: f64,
    params: usize,
}

impl Config {
    fn gates(&self, kind: CellKind) -> usize {
        kind.gates() * self.hidden
    }

    fn run_config(&self, kind: CellKind, seed: u64, run_steps: usize) -> RunConfig {
        let h = self.hidden;
        let limit = 1.0 / (h as f64).sqrt();
        // nn.RNN / nn.LSTM / nn.GRU: every parameter U(-1/sqrt(H), 1/sqrt(H)).
        let mut rng = ChaCha8Rng::seed_from_u64(seed + 2);
        let mut params = ExplicitParams::new();
        params.insert("bias_ih".into(), uniform(&mut rng, self.gates(kind), limit));
        params.insert("bias_hh".into(), uniform(&mut rng, self.gates(kind), limit));
        let rnn = LayerConfig::Rnn(RnnConfig {
            cell: kind,
            units: h,
            activation: Activation::Tanh,
            init: Init::Uniform { limit },
            recurrent_init: Init::Uniform { limit },
            return_sequences: false,
            forget_bias: 0.0,
            params,
        });
        let head = LayerConfig::Dense(DenseConfig {
            units: 1,
            activation: Activation::Linear,
            init: Init::Uniform { limit },
            bias_init: Init::Uniform { limit },
            norm: None,
            norm_config: NormConfig::default(),
            params: Default::default(),
        });
        RunConfig {
            seed,
            network: NetworkConfig { input_dim: IN_DIM, layers: vec![rnn, head] },
            data: data(self.batch, self.seq, seed),
            training: TrainConfig {
                steps: run_steps,
                batch_size: self.batch,
                loss: LossKind::Mse,
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
            probes: ProbeConfig { every: 1, histograms: false, parameters: false },
        }
    }

    /// FLOPs of one step as `rnn_step.py` counts them: forward `2 B G H (IN + H) T + 2 B H`,
    /// times 3 for forward + the two products of backward.
    fn flops(&self, kind: CellKind) -> f64 {
        let (b, g, h, t) = (self.batch as f64, kind.gates() as f64, self.hidden as f64, self.seq as f64);
        3.0 * (2.0 * b * g * h * (IN_DIM as f64 + h) * t + 2.0 * b * h)
    }
}

/// The RNN bench's own figures on its lines.
#[derive(Serialize)]
struct RnnFigures {
    approx_gflop_per_step: f64,
    /// Steps of the `--run-steps` run (probed every step) that compute the W_hh spectra.
    spectra_in_run: Option<usize>,
    run_steps: usize,
}

fn bench(args: &Args, config: Config, kind: CellKind) {
    let run = config.run_config(kind, args.seed, args.run_steps);
    let blocks = Blocks {
        warmup: args.warmup,
        block_sec: args.block_sec,
        steps_per_block: args.steps_per_block,
        blocks: args.blocks,
        retries: RETRIES,
    };
    let modes = measure(&run, &args.modes, &blocks);
    let flops = config.flops(kind);
    for m in &modes {
        let figures = RnnFigures {
            approx_gflop_per_step: round(flops / 1e9, 4),
            spectra_in_run: m.probe.then(|| {
                let gap = m.session.spectra_gap();
                (0..args.run_steps).filter(|&s| spectra_at(s, args.run_steps, 1, gap)).count()
            }),
            run_steps: args.run_steps,
        };
        let line = Line::new("rnn_step", config, m.name, m.probe, Timing::of(m, &modes, flops), figures, &args.tag);
        emit(&line, args.out.as_deref());
    }
}

fn main() {
    let args = Args::parse();
    let mut cells = Vec::new();
    for name in &args.cell {
        match cell(name) {
            Ok(c) => cells.push(c),
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(2);
            }
        }
    }
    for &(kind, cell_name) in &cells {
        for &hidden in &args.hidden {
            for &seq in &args.seq {
                let g = kind.gates() * hidden;
                let config = Config {
                    cell: cell_name,
                    hidden,
                    seq,
                    batch: args.batch,
                    in_dim: IN_DIM,
                    task: "adding",
                    loss: "mse",
                    optimizer: "sgd",
                    lr: 0.01,
                    params: g * (IN_DIM + hidden) + 2 * g + hidden + 1,
                };
                bench(&args, config, kind);
            }
        }
    }
}
