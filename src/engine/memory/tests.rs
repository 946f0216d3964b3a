use super::*;
use crate::engine::config::{
    DenseConfig, Init, NetworkConfig, NormConfig, NormKind, ProbeConfig, RnnConfig, TrainConfig,
};
use crate::engine::config::{LossKind, RunConfig};
use crate::engine::network::Network;

fn dense(units: usize, activation: Activation, norm: Option<NormKind>) -> LayerConfig {
    LayerConfig::Dense(DenseConfig {
        units,
        activation,
        init: Init::XavierUniform { gain: 1.0 },
        bias_init: Init::Constant { value: 0.0 },
        norm,
        norm_config: NormConfig::default(),
        params: Default::default(),
    })
}

fn rnn(cell: CellKind, units: usize, return_sequences: bool) -> LayerConfig {
    LayerConfig::Rnn(RnnConfig {
        cell,
        units,
        activation: Activation::Tanh,
        init: Init::XavierUniform { gain: 1.0 },
        recurrent_init: Init::Orthogonal { gain: 1.0 },
        return_sequences,
        forget_bias: 0.0,
        params: Default::default(),
    })
}

fn adam() -> OptimizerConfig {
    OptimizerConfig::Adam { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, amsgrad: false }
}

fn run(input_dim: usize, layers: Vec<LayerConfig>, data: DataConfig, batch: usize, loss: LossKind) -> RunConfig {
    RunConfig {
        seed: 1,
        network: NetworkConfig { input_dim, layers },
        data,
        training: TrainConfig {
            steps: 1,
            batch_size: batch,
            loss,
            optimizer: adam(),
            schedule: crate::engine::config::Schedule::Constant,
            weight_decay: 0.0,
            clip: None,
            shuffle: true,
            precision: Precision::F32,
            validation_split: 0.0,
            standardize: false,
            bptt_truncate: None,
        },
        probes: ProbeConfig::default(),
    }
}

/// The issue's spec: an LSTM of 512 units on the adding task, 2,000 steps, batch 1,024.
fn issue_lstm() -> RunConfig {
    let layers = vec![rnn(CellKind::Lstm, 512, false), dense(1, Activation::Linear, None)];
    run(2, layers, DataConfig::Adding { samples: 1024, length: 2000 }, 1024, LossKind::Mse)
}

#[test]
fn the_issue_lstm_names_its_gates_as_the_biggest_part() {
    let e = issue_lstm().clone();
    let e = estimate(&e);
    let biggest = e.biggest().unwrap_or_else(|| panic!("no parts"));
    assert_eq!(biggest.kind, PartKind::RecurrentGates);
    assert_eq!(biggest.bytes, 1024 * 2000 * 4 * 512 * 4);
    assert_eq!(
        biggest.to_string(),
        "the LSTM gates kept for backpropagation (rnn_0): 1,024 sequences × 2,000 steps × 4 gates × 512 units × 4 bytes = 16.8 GB"
    );
    // Gates, their gradients and h, c, tanh c: 7 arrays of the gates' rows per unit, and more.
    assert!(e.bytes > 1024 * 2000 * 512 * 4 * 11, "{}", e.bytes);
    assert_eq!(e.phase, Phase::Training);
    assert_eq!(e.bytes, e.parts.iter().map(|p| p.bytes).sum::<u64>());
}

#[test]
fn cells_differ_by_their_gates_and_states() {
    let with = |cell| {
        let layers = vec![rnn(cell, 64, false), dense(1, Activation::Linear, None)];
        estimate(&run(2, layers, DataConfig::Adding { samples: 256, length: 100 }, 256, LossKind::Mse))
    };
    let (v, l, g) = (with(CellKind::Vanilla), with(CellKind::Lstm), with(CellKind::Gru));
    let gates = |e: &MemoryEstimate| e.bytes_of(PartKind::RecurrentGates);
    assert_eq!(gates(&v), 256 * 100 * 64 * 4);
    assert_eq!(gates(&l), 4 * gates(&v));
    assert_eq!(gates(&g), 3 * gates(&v));
    let states = |e: &MemoryEstimate| e.bytes_of(PartKind::RecurrentStates);
    assert_eq!(states(&v), 256 * 101 * 64 * 4);
    assert_eq!(states(&l), 256 * 302 * 64 * 4);
    assert_eq!(states(&g), 256 * 201 * 64 * 4);
    assert!(v.bytes < g.bytes && g.bytes < l.bytes);
}

#[test]
fn f64_doubles_what_the_network_keeps_but_not_the_data() {
    let mut c = issue_lstm();
    let f32_ = estimate(&c);
    c.training.precision = Precision::F64;
    let f64_ = estimate(&c);
    for kind in [PartKind::RecurrentGates, PartKind::Activations, PartKind::Parameters, PartKind::OptimizerState] {
        assert_eq!(f64_.bytes_of(kind), 2 * f32_.bytes_of(kind), "{kind:?}");
    }
    assert_eq!(f64_.bytes_of(PartKind::Data), f32_.bytes_of(PartKind::Data));
}

#[test]
fn optimizer_state_follows_the_optimizer() {
    let mlp = vec![dense(100, Activation::Relu, None), dense(3, Activation::Linear, None)];
    let mut c =
        run(10, mlp, DataConfig::Blobs { samples: 100, classes: 3, dims: 10, std: 1.0 }, 32, LossKind::CrossEntropy);
    let p = 100 * 11 + 3 * 101;
    let state = |c: &RunConfig| estimate(c).bytes_of(PartKind::OptimizerState);
    assert_eq!(state(&c), 2 * p * 4);
    c.training.optimizer = OptimizerConfig::Sgd { lr: 0.1, momentum: 0.0, dampening: 0.0, nesterov: false };
    assert_eq!(state(&c), 0);
    c.training.optimizer = OptimizerConfig::Sgd { lr: 0.1, momentum: 0.9, dampening: 0.0, nesterov: false };
    assert_eq!(state(&c), p * 4);
    c.training.optimizer = OptimizerConfig::Rmsprop { lr: 0.1, alpha: 0.99, eps: 1e-8, momentum: 0.9, centered: true };
    assert_eq!(state(&c), 3 * p * 4);
}

/// The parameter count the estimate uses is the network's own, for every kind of layer.
#[test]
fn parameters_are_counted_as_the_network_counts_them() {
    let cases: Vec<(usize, Vec<LayerConfig>)> = vec![
        (
            7,
            vec![
                dense(30, Activation::Prelu { init: 0.25 }, Some(NormKind::Batch)),
                LayerConfig::LayerNorm(NormConfig::default()),
                LayerConfig::Residual(vec![dense(30, Activation::Tanh, Some(NormKind::Layer))]),
                LayerConfig::Activation { activation: Activation::Prelu { init: 0.1 }, params: Default::default() },
                LayerConfig::Dropout { rate: 0.5 },
                dense(4, Activation::Linear, None),
            ],
        ),
        (3, vec![rnn(CellKind::Gru, 17, true), rnn(CellKind::Lstm, 9, false), dense(2, Activation::Linear, None)]),
        (3, vec![rnn(CellKind::Vanilla, 5, false), dense(2, Activation::Linear, None)]),
    ];
    for (input_dim, layers) in cases {
        let net = Network::<f32>::new(&NetworkConfig { input_dim, layers: layers.clone() }, 1)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(params(&layers, input_dim as u64), net.num_params() as u64);
    }
}

/// Rows are batch x time steps up to the rnn that drops the time axis, the batch after it.
#[test]
fn activations_count_rows_through_the_time_axis() {
    let layers =
        vec![dense(8, Activation::Tanh, None), rnn(CellKind::Vanilla, 16, false), dense(1, Activation::Linear, None)];
    let c = run(2, layers, DataConfig::Adding { samples: 50, length: 30 }, 10, LossKind::Mse);
    let e = estimate(&c);
    // t_0 (300 x 2), dense (300 x 8), rnn (10 x 16), dense (10 x 1).
    assert_eq!(e.bytes_of(PartKind::Activations), (300 * 2 + 300 * 8 + 10 * 16 + 10) * 4);
    assert_eq!(e.bytes_of(PartKind::Deltas), (300 * 8 + 10 * 16 + 10) * 4);
}

/// A large plain data set on a small network peaks while the data is prepared (two copies).
#[test]
fn a_large_data_set_peaks_while_it_is_prepared() {
    let mlp = vec![dense(4, Activation::Relu, None), dense(3, Activation::Linear, None)];
    let c = run(
        100,
        mlp,
        DataConfig::Blobs { samples: 100_000, classes: 3, dims: 100, std: 1.0 },
        16,
        LossKind::CrossEntropy,
    );
    let e = estimate(&c);
    assert_ne!(e.phase, Phase::Training);
    assert_eq!(e.bytes_of(PartKind::Data), 100_000 * 101 * 8);
    assert_eq!(e.bytes_of(PartKind::DataCopy), 100_000 * 101 * 8);
}

#[test]
fn the_record_grows_with_the_probes_and_the_time_steps() {
    let layers = vec![rnn(CellKind::Vanilla, 8, false), dense(1, Activation::Linear, None)];
    let mut c = run(2, layers, DataConfig::Adding { samples: 16, length: 1000 }, 16, LossKind::Mse);
    c.training.steps = 100_000;
    c.probes.every = 1;
    let e = estimate(&c);
    let record = e.bytes_of(PartKind::Record);
    assert!(record > 100_000 * 1000 * 8, "{record}");
    assert_eq!(e.biggest().map(|p| p.kind), Some(PartKind::Record));
    assert_eq!(probe_count(10, 3), 4);
    assert_eq!(probe_count(11, 5), 3);
    assert_eq!(probe_count(12, 5), 4);
    assert_eq!(probe_count(1, 10), 1);
}

#[test]
fn analysis_is_f64_on_its_batch_without_optimizer_state() {
    let c = issue_lstm();
    let a = estimate_analysis(&c, 64, false);
    assert_eq!(a.bytes_of(PartKind::OptimizerState), 0);
    assert_eq!(a.bytes_of(PartKind::RecurrentGates), 64 * 2000 * 4 * 512 * 8);
}
