//! Transformer training-step throughput, measured beside its PyTorch counterpart in this
//! directory, `benches/transformer_step.py` (benches/README.md).
//!
//! ```text
//! cargo bench --bench transformer_step -- [--d-model 64 256] [--heads 4] [--depth 4] [--seq 64]
//!                                         [--batch 32] [--norm-first] [--out FILE] [--blocks 3]
//!                                         [--block-sec 0.4] [--modes plain,instrumented]
//! ```
//!
//! Workload (the same text is the module doc of `transformer_step.py`):
//! - data: 8 fixed batches of `batch` sequences of `seq` steps, inputs N(0, 1) of width
//!   `in = d_model`, labels uniform over 10 classes; cycled in order (step `i` sees batch `i % 8`,
//!   no data generation is timed);
//! - model: a linear input projection `in -> d_model`; `depth` encoder blocks, each PyTorch's
//!   `nn.TransformerEncoderLayer(d_model, heads, 4 d_model, dropout=0, activation=relu,
//!   batch_first=True, norm_first)` (post-LN by default, pre-LN with `--norm-first`, which also
//!   adds a final LayerNorm(d_model) as `nn.TransformerEncoder(..., norm=...)` does), no mask, no
//!   positional encoding; the last time step's row; Linear(d_model, 10); softmax cross-entropy
//!   (mean over the batch); gradscope: `dense`, `transformer` {depth, heads, ffn 4 d_model, relu,
//!   norm_first, causal false, alpha 1, eps 1e-5}, (`layer_norm`,) `pool` last, `dense`;
//! - init: PyTorch's defaults (Linear weight and bias U(+-1/sqrt(fan_in)), attention in-proj
//!   Xavier-uniform with zero biases, out-proj U(+-1/sqrt(d)) with a zero bias, norms 1 and 0);
//! - optimiser: Adam, lr 1e-3, betas (0.9, 0.999), eps 1e-8, no weight decay;
//! - f32, one thread (gradscope: faer's products with `Par::Seq`; PyTorch: `--threads 1`).
//!
//! One step = zero the gradients, forward, loss, backward, optimiser update.
//!
//! Modes, timed in interleaved blocks:
//! - `plain`: no probes;
//! - `instrumented`: the engine's probes at every step (`ProbeConfig { every: 1 }`): for every
//!   layer (input projection, each block's attention, linear1, linear2, norm1, norm2, the pool
//!   and the head) the weight-gradient norm/rms/max, bias-gradient norm, weight norm,
//!   ||dL/d(output)||, output mean/std, dead fraction (relu), non-finite counts; for every
//!   attention layer the per-head attention entropy, the largest logit and the rank collapse of
//!   its output; for every block ||dL/dx_l|| of its input, the norm and the rank collapse of its
//!   output; the loss, accuracy and the global gradient norm. PyTorch's instrumented modes read
//!   every parameter's gradient norm, ||dL/dx_l|| of each block's input and the loss (a subset).
//!
//! - `products` (only when asked for): not a training step but an estimate of its bound, the
//!   step's matrix products alone ([`products_only`]): each `linalg::gemm` of the forward and
//!   backward passes (the input projection, per block QKV, the per-(sample, head) scores and
//!   mixes, the output projection, the FFN, and their weight and input gradients), on buffers of
//!   the step's shapes, back to back, with nothing else (no bias, softmax, norm, optimiser or
//!   probe). Its `steps_per_sec` (the fastest undisturbed pass) is about the most a step on these
//!   products can reach.
//!
//! Timing as `mlp_step.rs` (`benches/common`): a block is timed after a warm-up, with enough
//! steps to take ~`--block-sec`; the median of `--blocks` blocks is reported; a block during
//! which other processes used more than 0.15 cores is re-run (up to `--retries` times, 2 s apart)
//! and the least disturbed attempt is kept. Each block starts a fresh `RunRecord`.

mod common;

use clap::Parser;
use common::{emit, measure, median, round, timed, Blocks, Line, MatmulFlops, Timing, BUSY_THRESHOLD};
use gradscope::engine::config::{
    Activation, DataConfig, DenseConfig, Init, InlineSequenceTargets, InlineTargets, LayerConfig, LossKind,
    NetworkConfig, NormConfig, OptimizerConfig, PoolKind, Precision, ProbeConfig, RunConfig, Schedule, TrainConfig,
    TransformerConfig,
};
use gradscope::engine::linalg::gemm;
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::Serialize;
use std::time::Instant;

const CLASSES: usize = 10;
const BATCHES: usize = 8;
const LR: f64 = 1e-3;

#[derive(Parser, Debug)]
#[command(about = "gradscope transformer training-step benchmark (see the module doc)")]
struct Args {
    #[arg(long, num_args = 1.., default_values_t = [64, 256])]
    d_model: Vec<usize>,
    #[arg(long, default_value_t = 4)]
    heads: usize,
    #[arg(long, default_value_t = 4)]
    depth: usize,
    #[arg(long, default_value_t = 64)]
    seq: usize,
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Pre-LN blocks (and a final layer norm) instead of post-LN.
    #[arg(long)]
    norm_first: bool,
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
    /// Re-runs of a contended block (0 for a fixed amount of work, e.g. under perf).
    #[arg(long, default_value_t = 3)]
    retries: usize,
    /// Modes to run, comma-separated: plain, instrumented, products.
    #[arg(long, default_value = "plain,instrumented")]
    modes: String,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Also append the JSON lines to this file.
    #[arg(long)]
    out: Option<String>,
    #[arg(long, default_value = "")]
    tag: String,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// `nn.Linear`'s default init: weight and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
fn linear(units: usize, fan_in: usize) -> LayerConfig {
    let limit = 1.0 / (fan_in as f64).sqrt();
    LayerConfig::Dense(DenseConfig {
        units,
        activation: Activation::Linear,
        init: Init::Uniform { limit },
        bias_init: Init::Uniform { limit },
        norm: None,
        norm_config: NormConfig::default(),
        params: Default::default(),
    })
}

/// 8 batches of N(0, 1) sequences (`seq` x `in_dim`) with labels uniform over 10 classes.
fn data(batch: usize, seq: usize, in_dim: usize, seed: u64) -> DataConfig {
    let mut rng = ChaCha8Rng::seed_from_u64(seed + 1);
    let n = BATCHES * batch;
    let x =
        (0..n).map(|_| (0..seq).map(|_| (0..in_dim).map(|_| rng.sample(StandardNormal)).collect()).collect()).collect();
    let y = (0..n).map(|_| rng.random_range(0..CLASSES)).collect();
    DataConfig::InlineSequences { x, y: InlineSequenceTargets::PerSequence(InlineTargets::Classes(y)) }
}

#[derive(Debug, Clone, Copy, Serialize)]
struct Config {
    d_model: usize,
    heads: usize,
    depth: usize,
    ffn: usize,
    seq: usize,
    batch: usize,
    in_dim: usize,
    classes: usize,
    norm_first: bool,
    activation: &'static str,
    loss: &'static str,
    optimizer: &'static str,
    lr: f64,
    params: usize,
}

impl Config {
    fn run_config(&self, seed: u64) -> RunConfig {
        let d = self.d_model;
        let blocks = TransformerConfig {
            depth: self.depth,
            heads: self.heads,
            ffn: self.ffn,
            activation: Activation::Relu,
            norm_first: self.norm_first,
            causal: false,
            alpha: 1.0,
            eps: 1e-5,
            blocks: Vec::new(),
        };
        let mut layers = vec![linear(d, self.in_dim), LayerConfig::Transformer(blocks)];
        if self.norm_first {
            layers.push(LayerConfig::LayerNorm(NormConfig { eps: 1e-5, ..NormConfig::default() }));
        }
        layers.extend([LayerConfig::Pool(PoolKind::Last), linear(CLASSES, d)]);
        RunConfig {
            seed,
            network: NetworkConfig { input_dim: self.in_dim, layers },
            data: data(self.batch, self.seq, self.in_dim, seed),
            training: TrainConfig {
                steps: usize::MAX,
                batch_size: self.batch,
                loss: LossKind::CrossEntropy,
                optimizer: OptimizerConfig::Adam { lr: LR, beta1: 0.9, beta2: 0.999, eps: 1e-8, amsgrad: false },
                schedule: Schedule::Constant,
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

    /// Matrix-product FLOPs of one step, as `transformer_step.py` counts them: forward
    /// `2 B T (in d + depth (4 d^2 + 2 d ffn + 2 T d)) + 2 B d 10`, times 3 (forward and the two
    /// products of backward; the input projection's input gradient is counted too).
    fn flops(&self) -> f64 {
        let (b, t, d, f) = (self.batch as f64, self.seq as f64, self.d_model as f64, self.ffn as f64);
        let block = 4.0 * d * d + 2.0 * d * f + 2.0 * t * d;
        let fwd = 2.0 * b * t * (self.in_dim as f64 * d + self.depth as f64 * block) + 2.0 * b * d * CLASSES as f64;
        3.0 * fwd
    }

    fn count_params(&self) -> usize {
        let (d, f) = (self.d_model, self.ffn);
        let block = 3 * d * d + 3 * d + d * d + d + d * f + f + f * d + d + 4 * d;
        let final_norm = if self.norm_first { 2 * d } else { 0 };
        self.in_dim * d + d + self.depth * block + final_norm + d * CLASSES + CLASSES
    }
}

fn bench(args: &Args, config: Config) {
    let run = config.run_config(args.seed);
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
        let line = Line::new("transformer_step", config, m.name, m.probe, timing, MatmulFlops::of(flops), &args.tag);
        emit(&line, args.out.as_deref());
    }
    if args.modes.split(',').any(|m| m == "products") {
        products_only(args, config);
    }
}

/// One matrix product of a step, `C = A B` with A (m, k) and B (k, n), each stored as the engine
/// stores it (a weight gradient reads `dZ^T` as the transpose of `dZ`; a forward product reads
/// `W^T` as the transpose of `W`).
struct Product {
    a: Array2<f32>,
    b: Array2<f32>,
    a_t: bool,
    b_t: bool,
    c: Array2<f32>,
    /// How many times a step runs it (the per-(sample, head) products: B * heads).
    times: usize,
}

impl Product {
    fn new(m: usize, k: usize, n: usize, a_t: bool, b_t: bool, times: usize) -> Self {
        let fill = |r: usize, c: usize, s: usize| {
            Array2::from_shape_fn((r, c), |(i, j)| ((i * 7 + j * 3 + s) % 13) as f32 * 0.01 - 0.06)
        };
        let a = if a_t { fill(k, m, 1) } else { fill(m, k, 1) };
        let b = if b_t { fill(n, k, 2) } else { fill(k, n, 2) };
        Product { a, b, a_t, b_t, c: Array2::zeros((m, n)), times }
    }

    fn run(&mut self) {
        for _ in 0..self.times {
            match (self.a_t, self.b_t) {
                (false, false) => gemm(1.0, &self.a, &self.b, 0.0, &mut self.c),
                (false, true) => gemm(1.0, &self.a, &self.b.t(), 0.0, &mut self.c),
                (true, false) => gemm(1.0, &self.a.t(), &self.b, 0.0, &mut self.c),
                (true, true) => gemm(1.0, &self.a.t(), &self.b.t(), 0.0, &mut self.c),
            }
        }
    }

    fn flops(&self) -> f64 {
        let (m, n) = self.c.dim();
        let k = if self.a_t { self.a.nrows() } else { self.a.ncols() };
        2.0 * (m * k * n * self.times) as f64
    }
}

/// The products of one training step of `config` (see the module doc), layer by layer in the
/// step's order; within an attention layer all of one kind run together (the step alternates
/// them per head; the total is the same). Each per-(sample, head) product reuses one set of
/// buffers, which keeps them in cache; every other product has its own inputs, which the step may
/// find in cache where one layer's output is the next one's input.
fn step_products(config: &Config) -> Vec<Product> {
    let (r, d, f, t, i) = (config.batch * config.seq, config.d_model, config.ffn, config.seq, config.in_dim);
    let (dh, bh) = (d / config.heads, config.batch * config.heads);
    let p = Product::new;
    let mut out = vec![p(r, i, d, false, true, 1)];
    for _ in 0..config.depth {
        // Forward: QKV, S = c Q K^T, O = P V, the output projection, the FFN.
        out.extend([p(r, d, 3 * d, false, true, 1), p(t, dh, t, false, true, bh), p(t, t, dh, false, false, bh)]);
        out.extend([p(r, d, d, false, true, 1), p(r, d, f, false, true, 1), p(r, f, d, false, true, 1)]);
    }
    let head = config.batch;
    out.extend([
        p(head, d, CLASSES, false, true, 1),
        p(CLASSES, head, d, true, false, 1),
        p(head, CLASSES, d, false, false, 1),
    ]);
    for _ in 0..config.depth {
        // Backward, last block first: the FFN's and the output projection's weight and input
        // gradients, dP, dV, dQ, dK per (sample, head), then QKV's.
        out.extend([p(d, r, f, true, false, 1), p(r, d, f, false, false, 1), p(f, r, d, true, false, 1)]);
        out.extend([p(r, f, d, false, false, 1), p(d, r, d, true, false, 1), p(r, d, d, false, false, 1)]);
        out.extend([p(t, dh, t, false, true, bh), p(t, t, dh, true, false, bh), p(t, t, dh, false, false, bh)]);
        out.extend([p(t, t, dh, true, false, bh), p(3 * d, r, d, true, false, 1), p(r, 3 * d, d, false, false, 1)]);
    }
    // The input projection's weight gradient (its input gradient is not needed).
    out.push(p(d, r, i, true, false, 1));
    out
}

/// The timing of the `products` mode.
#[derive(Serialize)]
struct ProductsTiming {
    /// 1 / the fastest undisturbed pass: about the most a step on these products can reach.
    steps_per_sec: f64,
    /// The fastest undisturbed pass (all passes when every one was disturbed).
    us_per_step: f64,
    us_per_step_median: f64,
    us_per_step_max: f64,
    passes: usize,
    /// Passes during which other processes used more than `BUSY_THRESHOLD` cores.
    contended_passes: usize,
    other_busy_cores_max: f64,
    /// The products' FLOPs over the fastest pass.
    achieved_gflops: f64,
}

/// Times [`step_products`] back to back: `--warmup` untimed passes, then passes for about
/// `--blocks` x `--block-sec` seconds (at least 5); reports the fastest pass during which no other
/// process used more than `BUSY_THRESHOLD` cores.
fn products_only(args: &Args, config: Config) {
    let mut products = step_products(&config);
    let flops: f64 = products.iter().map(Product::flops).sum();
    for _ in 0..args.warmup {
        products.iter_mut().for_each(Product::run);
    }
    let budget = args.blocks as f64 * args.block_sec;
    let (mut passes, started) = (Vec::new(), Instant::now());
    while passes.len() < 5 || started.elapsed().as_secs_f64() < budget {
        let t = timed(|| products.iter_mut().for_each(Product::run));
        passes.push((t.wall, t.other));
    }
    let walls: Vec<f64> = passes.iter().map(|p| p.0).collect();
    let quiet: Vec<f64> = passes.iter().filter(|p| p.1 < BUSY_THRESHOLD).map(|p| p.0).collect();
    let fastest = if quiet.is_empty() { &walls } else { &quiet }.iter().copied().fold(f64::INFINITY, f64::min);
    let timing = ProductsTiming {
        steps_per_sec: round(1.0 / fastest, 2),
        us_per_step: round(fastest * 1e6, 1),
        us_per_step_median: round(median(&walls) * 1e6, 1),
        us_per_step_max: round(walls.iter().copied().fold(0.0, f64::max) * 1e6, 1),
        passes: passes.len(),
        contended_passes: passes.len() - quiet.len(),
        other_busy_cores_max: round(passes.iter().map(|p| p.1).fold(0.0, f64::max), 2),
        achieved_gflops: round(flops / fastest / 1e9, 2),
    };
    let line = Line::new("transformer_step", config, "products", false, timing, MatmulFlops::of(flops), &args.tag);
    emit(&line, args.out.as_deref());
}

fn main() {
    let args = Args::parse();
    for &d in &args.d_model {
        if args.heads == 0 || d % args.heads != 0 {
            eprintln!("d_model {d} is not divisible by {} heads", args.heads);
            std::process::exit(2);
        }
        let mut config = Config {
            d_model: d,
            heads: args.heads,
            depth: args.depth,
            ffn: 4 * d,
            seq: args.seq,
            batch: args.batch,
            in_dim: d,
            classes: CLASSES,
            norm_first: args.norm_first,
            activation: "relu",
            loss: "cross_entropy",
            optimizer: "adam",
            lr: LR,
            params: 0,
        };
        config.params = config.count_params();
        bench(&args, config);
    }
}
