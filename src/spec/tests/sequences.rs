//! Recurrent layers and sequence data: conversion into the engine's config, the shape walk
//! through sequences, per-step vs per-sequence targets, limits, and every refusal with its
//! pointer.

use super::*;
use crate::engine::config::{
    Activation as EActivation, CellKind, DataConfig, Init as EInit, InlineSequenceTargets as ETargets,
    InlineTargets as EInline, LayerConfig, LossKind, RnnConfig,
};

/// A small valid sequence spec: adding (T = 10) -> vanilla rnn of 8 -> dense 1, mse.
fn seq_base() -> Value {
    json!({
        "seed": 1,
        "model": {"input_dim": 2, "layers": [
            {"type": "rnn", "units": 8},
            {"type": "dense", "units": 1}
        ]},
        "data": {"type": "adding", "samples": 64, "length": 10},
        "training": {"steps": 10, "batch_size": 16, "loss": "mse"},
        "probes": {"every": 1}
    })
}

/// A spec of `layers` on `data` with `input_dim` features per step and the default loss.
fn seq_spec(input_dim: u64, layers: Value, data: Value) -> Value {
    json!({
        "model": {"input_dim": input_dim, "layers": layers},
        "data": data,
        "training": {"steps": 10, "batch_size": 16}
    })
}

fn rnn_at(c: &RunConfig, i: usize) -> &RnnConfig {
    match &c.network.layers[i] {
        LayerConfig::Rnn(r) => r,
        other => panic!("layer {i} is not an rnn: {other:?}"),
    }
}

/// The spec round-trips through `expanded` to the same run config.
pub(super) fn assert_round_trip(v: &Value) {
    let spec = parse_ok(v);
    let config = spec.validate(&Limits::default()).unwrap();
    let again = reparsed_expanded(&spec).validate(&Limits::default()).unwrap_or_else(|e| panic!("{e}\nin {v:#}"));
    assert_eq!(config, again);
}

// ---------------------------------------------------------------------------------------------
// The rnn layer.

#[test]
fn an_rnn_layer_converts_with_the_documented_defaults() {
    let c = valid(&seq_base());
    let r = rnn_at(&c, 0);
    assert_eq!(
        *r,
        RnnConfig {
            cell: CellKind::Vanilla,
            units: 8,
            activation: EActivation::Tanh,
            init: EInit::XavierUniform { gain: 1.0 },
            recurrent_init: EInit::Orthogonal { gain: 1.0 },
            return_sequences: false,
            forget_bias: 0.0,
            params: Default::default(),
        }
    );
    assert_eq!(c.data, DataConfig::Adding { samples: 64, length: 10 });
    assert_eq!(c.training.loss, LossKind::Mse);
}

#[test]
fn every_cell_converts_and_explicit_parameters_are_flattened_row_major() {
    // 2 inputs, 2 units: rows = gates x 2.
    for (cell, kind, gates) in
        [("vanilla", CellKind::Vanilla, 1), ("lstm", CellKind::Lstm, 4), ("gru", CellKind::Gru, 3)]
    {
        let rows = gates * 2;
        let ih: Vec<Vec<f64>> = (0..rows).map(|i| vec![i as f64, i as f64 + 0.5]).collect();
        let hh: Vec<Vec<f64>> = (0..rows).map(|i| vec![-(i as f64), 0.25]).collect();
        let b: Vec<f64> = (0..rows).map(|i| i as f64 / 10.0).collect();
        let layer = json!({"type": "rnn", "cell": cell, "units": 2, "weight_ih": ih, "weight_hh": hh,
                           "bias_ih": b, "bias_hh": b});
        let v = with(seq_base(), "/model/layers/0", layer);
        let c = valid(&v);
        let r = rnn_at(&c, 0);
        assert_eq!((r.cell, r.units), (kind, 2), "{cell}");
        assert_eq!(r.params["weight_ih"], ih.concat(), "{cell}");
        assert_eq!(r.params["weight_hh"], hh.concat(), "{cell}");
        assert_eq!(r.params["bias_ih"], b, "{cell}");
        assert_eq!(r.params["bias_hh"], b, "{cell}");
        assert_round_trip(&v);
    }
}

#[test]
fn explicit_rnn_parameters_of_the_wrong_shape_say_expected_and_got() {
    let layer = json!({"type": "rnn", "cell": "lstm", "units": 2,
                       "weight_ih": [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]],
                       "weight_hh": vec![vec![0.0, 0.0]; 7].into_iter().chain([vec![0.0]]).collect::<Vec<_>>(),
                       "bias_ih": [0.0, 1.0],
                       "bias_hh": vec![0.0; 9]});
    let errors = invalid(&with(seq_base(), "/model/layers/0", layer));
    assert_eq!(
        detail_at(&errors, "/model/layers/0/weight_ih"),
        "`weight_ih` has 3 rows; expected 8 x 2 (4 gates (i, f, g, o) x units x inputs)"
    );
    assert_eq!(
        detail_at(&errors, "/model/layers/0/weight_hh/7"),
        "row 7 of `weight_hh` has 1 values; expected 2 (4 gates (i, f, g, o) x units x units = 8 x 2)"
    );
    assert_eq!(
        detail_at(&errors, "/model/layers/0/bias_ih"),
        "`bias_ih` has 2 values; expected 8 (4 gates (i, f, g, o) x units)"
    );
    assert_problem(&errors, "/model/layers/0/bias_hh", "has 9 values; expected 8");

    let layer = json!({"type": "rnn", "cell": "gru", "units": 1, "weight_hh": [[1.0], [2.0]]});
    let errors = invalid(&with(seq_base(), "/model/layers/0", layer));
    assert_problem(&errors, "/model/layers/0/weight_hh", "expected 3 x 1 (3 gates (r, z, n) x units x units)");
    let layer = json!({"type": "rnn", "units": 2, "weight_ih": [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]});
    let errors = invalid(&with(seq_base(), "/model/layers/0", layer));
    assert_problem(&errors, "/model/layers/0/weight_ih/0", "has 3 values; expected 2 (units x inputs = 2 x 2)");
}

#[test]
fn explicit_rnn_parameters_must_be_finite() {
    // JSON has no NaN; a spec built in code (or patched) can still carry one.
    let mut spec = parse_ok(&seq_base());
    let Layer::Rnn(r) = &mut spec.model.layers[0] else { panic!("not rnn") };
    r.units = 1;
    r.weight_hh = Some(vec![vec![f64::NAN]]);
    r.bias_ih = Some(vec![f64::INFINITY]);
    let errors = spec.validate(&Limits::default()).unwrap_err();
    assert_problem(&errors, "/model/layers/0/weight_hh/0/0", "non-finite value (NaN)");
    assert_problem(&errors, "/model/layers/0/bias_ih/0", "non-finite value (inf)");
}

#[test]
fn a_vanilla_cell_takes_tanh_relu_or_sigmoid_only() {
    for (name, expected) in
        [("tanh", EActivation::Tanh), ("relu", EActivation::Relu), ("sigmoid", EActivation::Sigmoid)]
    {
        let v = with(seq_base(), "/model/layers/0/activation", json!(name));
        assert_eq!(rnn_at(&valid(&v), 0).activation, expected);
        assert_round_trip(&v);
    }
    for name in ["gelu", "linear", "leaky_relu"] {
        let v = with(seq_base(), "/model/layers/0/activation", json!(name));
        assert_eq!(
            detail_at(&invalid(&v), "/model/layers/0/activation"),
            format!("a vanilla rnn cell's activation must be tanh, relu or sigmoid, got `{name}`")
        );
    }
}

#[test]
fn an_explicit_activation_on_a_gated_cell_is_refused() {
    for (cell, fixed) in
        [("lstm", "sigmoid gates, tanh cell input and output"), ("gru", "sigmoid gates, tanh candidate")]
    {
        let v =
            with(seq_base(), "/model/layers/0", json!({"type": "rnn", "cell": cell, "units": 8, "activation": "tanh"}));
        assert_eq!(
            detail_at(&invalid(&v), "/model/layers/0/activation"),
            format!("`activation` applies to vanilla rnn cells only; an {cell} cell has fixed activations ({fixed}); remove it")
        );
    }
}

#[test]
fn forget_bias_is_for_lstm_cells_only() {
    let v = with(seq_base(), "/model/layers/0", json!({"type": "rnn", "cell": "lstm", "units": 8, "forget_bias": 1.0}));
    assert_eq!(rnn_at(&valid(&v), 0).forget_bias, 1.0);
    assert_round_trip(&v);
    for cell in ["vanilla", "gru"] {
        let v =
            with(seq_base(), "/model/layers/0", json!({"type": "rnn", "cell": cell, "units": 8, "forget_bias": 1.0}));
        assert_eq!(
            detail_at(&invalid(&v), "/model/layers/0/forget_bias"),
            format!("`forget_bias` applies to lstm cells only (it is the initial bias of the forget gate); this layer's cell is `{cell}`")
        );
    }
    let v = with(seq_base(), "/model/layers/0/forget_bias", json!("one"));
    assert_problem(&parse_err(&v), "/model/layers/0/forget_bias", "expected a number");
}

#[test]
fn recurrent_inits_convert_and_are_checked() {
    let v = with(seq_base(), "/model/layers/0/recurrent_init", json!({"type": "identity", "gain": 0.5}));
    assert_eq!(rnn_at(&valid(&v), 0).recurrent_init, EInit::Identity { gain: 0.5 });
    let v = with(seq_base(), "/model/layers/0/recurrent_init", json!("identity"));
    assert_eq!(rnn_at(&valid(&v), 0).recurrent_init, EInit::Identity { gain: 1.0 });
    let v = with(seq_base(), "/model/layers/0/recurrent_init", json!({"type": "orthogonal", "gain": 1.2}));
    assert_eq!(rnn_at(&valid(&v), 0).recurrent_init, EInit::Orthogonal { gain: 1.2 });
    let v = with(seq_base(), "/model/layers/0/init", json!("he_normal"));
    assert!(matches!(rnn_at(&valid(&v), 0).init, EInit::HeNormal { gain: 1.0, .. }));
    let v = with(seq_base(), "/model/layers/0/recurrent_init", json!({"type": "normal", "std": -1.0}));
    assert_problem(&invalid(&v), "/model/layers/0/recurrent_init/std", "finite number >= 0");
    let v = with(seq_base(), "/model/layers/0/recurrent_init", json!({"type": "identity", "gain": -1.0}));
    assert_problem(&invalid(&v), "/model/layers/0/recurrent_init/gain", "finite number >= 0");
}

#[test]
fn rnn_units_are_checked_like_any_width() {
    let v = with(seq_base(), "/model/layers/0/units", json!(0));
    assert_problem(&invalid(&v), "/model/layers/0/units", "at least 1");
}

#[test]
fn expansion_writes_only_the_defaults_the_cell_uses() {
    let layers = json!([
        {"type": "rnn", "units": 4, "return_sequences": true},
        {"type": "rnn", "cell": "lstm", "units": 4, "return_sequences": true},
        {"type": "rnn", "cell": "gru", "units": 4},
        {"type": "dense", "units": 1}
    ]);
    let v = with(seq_base(), "/model/layers", layers);
    let json = serde_json::to_value(parse_ok(&v).expanded()).unwrap();
    let l = &json["model"]["layers"];
    assert_eq!(l[0]["activation"], json!({"type": "tanh"}));
    assert_eq!(l[0].get("forget_bias"), None);
    assert_eq!(l[1].get("activation"), None);
    assert_eq!(l[1]["forget_bias"], json!(0.0));
    assert_eq!((l[2].get("activation"), l[2].get("forget_bias")), (None, None));
    for i in 0..3 {
        assert_eq!(l[i]["init"], json!({"type": "xavier_uniform", "gain": 1.0}));
        assert_eq!(l[i]["recurrent_init"], json!({"type": "orthogonal", "gain": 1.0}));
    }
    assert_eq!((l[0]["return_sequences"].clone(), l[2]["return_sequences"].clone()), (json!(true), json!(false)));
    assert_eq!(l[1]["cell"], json!("lstm"));
    assert_round_trip(&v);
    let spec = parse_ok(&v);
    assert_eq!(reparsed_expanded(&spec), spec.expanded());
}

// ---------------------------------------------------------------------------------------------
// The shape walk.

#[test]
fn stacked_rnns_feed_each_other_their_units_per_step() {
    // The second rnn reads the first one's 8 units: an explicit weight_ih of 3 x 8 fits.
    let layers = json!([
        {"type": "rnn", "units": 8, "return_sequences": true},
        {"type": "rnn", "units": 3, "weight_ih": vec![vec![0.1; 8]; 3]},
        {"type": "dense", "units": 1}
    ]);
    let c = valid(&with(seq_base(), "/model/layers", layers));
    assert!(rnn_at(&c, 0).return_sequences);
    assert_eq!(rnn_at(&c, 1).params["weight_ih"].len(), 24);
}

#[test]
fn an_rnn_after_one_without_return_sequences_is_refused() {
    let layers = json!([
        {"type": "rnn", "units": 8},
        {"type": "dense", "units": 8},
        {"type": "rnn", "units": 3},
        {"type": "dense", "units": 1}
    ]);
    let errors = invalid(&with(seq_base(), "/model/layers", layers));
    assert_eq!(
        detail_at(&errors, "/model/layers/2"),
        "an `rnn` layer needs a sequence; the previous rnn layer (/model/layers/0) has return_sequences false, \
         so only its last time step reaches this layer; set return_sequences to true there"
    );
}

#[test]
fn layers_after_a_sequence_returning_rnn_apply_per_step() {
    // copy: 10 inputs per step, 9 classes at every step.
    let layers = json!([
        {"type": "rnn", "cell": "gru", "units": 16, "return_sequences": true},
        {"type": "layer_norm"},
        {"type": "dropout", "rate": 0.1},
        {"type": "dense", "units": 16, "activation": "relu", "norm": "batch"},
        {"type": "residual", "layers": [{"type": "dense", "units": 16, "activation": "tanh"}]},
        {"type": "activation", "activation": "gelu"},
        {"type": "dense", "units": 9}
    ]);
    let v = seq_spec(10, layers, json!({"type": "copy", "samples": 32}));
    let c = valid(&v);
    assert_eq!(c.network.layers.len(), 7);
    assert_eq!(c.data, DataConfig::Copy { samples: 32, length: 10, delay: 10 });
    assert_eq!(c.training.loss, LossKind::CrossEntropy);
    assert_round_trip(&v);
}

#[test]
fn an_rnn_inside_a_residual_block_is_refused() {
    let layers = json!([
        {"type": "rnn", "units": 4, "return_sequences": true},
        {"type": "residual", "layers": [{"type": "rnn", "units": 4, "return_sequences": true}]},
        {"type": "rnn", "units": 4},
        {"type": "dense", "units": 1}
    ]);
    let errors = invalid(&with(seq_base(), "/model/layers", layers));
    assert_eq!(
        detail_at(&errors, "/model/layers/1/layers/0"),
        "`rnn` layers inside residual blocks are not supported yet; put the recurrent layers before or after \
         the residual block"
    );
    assert_eq!(errors.0.len(), 1, "{errors}");
}

#[test]
fn plain_data_with_an_rnn_layer_is_refused_at_the_layer() {
    let v = with(base(), "/model/layers/0", json!({"type": "rnn", "cell": "lstm", "units": 8}));
    let errors = invalid(&v);
    assert_problem(&errors, "/model/layers/0", "an `rnn` layer needs sequence data");
    assert_problem(&errors, "/model/layers/0", "the `xor` data (see /data/type) has one row of features per sample");
}

#[test]
fn sequence_data_without_a_layer_that_reads_across_steps_is_refused_at_the_data() {
    let v = seq_spec(1, json!([{"type": "dense", "units": 2}]), json!({"type": "parity"}));
    assert_eq!(
        detail_at(&invalid(&v), "/data/type"),
        "`parity` is sequence data (samples x time steps x features), which needs a layer that reads across the \
         time steps: a recurrent (`rnn`) or `attention` layer, or a `pool` layer"
    );
}

#[test]
fn per_step_targets_need_the_last_rnn_to_return_sequences() {
    for (data, input, outputs) in [
        (json!({"type": "copy", "length": 3, "delay": 2}), 10, 9),
        (json!({"type": "sine_sequence", "length": 8}), 1, 1),
    ] {
        let kind = data["type"].as_str().unwrap().to_owned();
        let layers = json!([{"type": "rnn", "units": 4}, {"type": "dense", "units": outputs}]);
        let errors = invalid(&seq_spec(input, layers, data));
        assert_eq!(
            detail_at(&errors, "/model/layers/0/return_sequences"),
            format!("`{kind}` has a target at every time step (see /data/type); set return_sequences to true on the last rnn layer")
        );
    }
    // Only the last rnn counts.
    let layers = json!([
        {"type": "rnn", "units": 4, "return_sequences": true},
        {"type": "rnn", "units": 4},
        {"type": "dense", "units": 9}
    ]);
    let errors = invalid(&seq_spec(10, layers, json!({"type": "copy"})));
    assert_eq!(errors.pointers(), vec!["/model/layers/1/return_sequences"]);
}

#[test]
fn per_sequence_targets_need_the_last_rnn_to_return_only_its_last_step() {
    let v = with(seq_base(), "/model/layers/0/return_sequences", json!(true));
    assert_eq!(
        detail_at(&invalid(&v), "/model/layers/0/return_sequences"),
        "`adding` has one target per sequence (see /data/type), but the last rnn layer returns every time step; \
         set return_sequences to false on the last rnn layer (false is the default)"
    );
    let x = json!([[[1.0], [2.0]], [[3.0], [4.0]]]);
    let layers = json!([{"type": "rnn", "units": 4, "return_sequences": true}, {"type": "dense", "units": 2}]);
    let v = seq_spec(1, layers, json!({"type": "inline_sequences", "x": x, "y": [0, 1]}));
    assert_problem(&invalid(&v), "/model/layers/0/return_sequences", "has one target per sequence (see /data/y)");
}

// ---------------------------------------------------------------------------------------------
// Generated sequence data.

#[test]
fn sequence_data_converts_with_the_documented_defaults_and_widths() {
    // (data, input_dim, output units, engine config, default loss)
    let cases = [
        (json!("adding"), 2, 1, false, DataConfig::Adding { samples: 1024, length: 50 }, LossKind::Mse),
        (json!("copy"), 10, 9, true, DataConfig::Copy { samples: 1024, length: 10, delay: 10 }, LossKind::CrossEntropy),
        (
            json!("temporal_order"),
            6,
            4,
            false,
            DataConfig::TemporalOrder { samples: 1024, length: 50 },
            LossKind::CrossEntropy,
        ),
        (json!("parity"), 1, 2, false, DataConfig::Parity { samples: 1024, length: 10 }, LossKind::CrossEntropy),
        (
            json!("sine_sequence"),
            1,
            1,
            true,
            DataConfig::SineSequence { samples: 1024, length: 50, noise: 0.0 },
            LossKind::Mse,
        ),
    ];
    for (data, input, outputs, per_step, config, loss) in cases {
        let layers =
            json!([{"type": "rnn", "units": 4, "return_sequences": per_step}, {"type": "dense", "units": outputs}]);
        let v = seq_spec(input, layers, data.clone());
        let c = valid(&v);
        assert_eq!(c.data, config, "{data}");
        assert_eq!(c.training.loss, loss, "{data}");
        assert_eq!(c.network.input_dim, input as usize, "{data}");
        assert_round_trip(&v);

        // One unit too many at the output.
        let v = with(v, "/model/layers/1/units", json!(outputs + 1));
        assert_problem(&invalid(&v), "/model/layers/1/units", &format!("the last layer has {} units", outputs + 1));
    }
}

#[test]
fn sine_sequence_takes_length_and_noise_and_refuses_other_fields() {
    let layers = json!([{"type": "rnn", "units": 4, "return_sequences": true}, {"type": "dense", "units": 1}]);
    let v = seq_spec(1, layers, json!({"type": "sine_sequence", "samples": 8, "length": 7, "noise": 0.05}));
    assert_eq!(valid(&v).data, DataConfig::SineSequence { samples: 8, length: 7, noise: 0.05 });
    let bad = with(v.clone(), "/data/noise", json!(-0.1));
    assert_problem(&invalid(&bad), "/data/noise", "finite number >= 0");
    let bad = with(v, "/data/delay", json!(3));
    assert_problem(&parse_err(&bad), "/data/delay", "unknown field `delay`");
}

#[test]
fn input_dim_is_checked_against_the_features_per_time_step() {
    let v = with(seq_base(), "/model/input_dim", json!(3));
    assert_eq!(
        detail_at(&invalid(&v), "/model/input_dim"),
        "`input_dim` is 3 but each time step of the `adding` data has 2 features"
    );
}

#[test]
fn sequence_lengths_below_the_task_minimum_are_refused_at_the_field() {
    let rnn = |per_step: bool, out: u64| json!([{"type": "rnn", "units": 4, "return_sequences": per_step}, {"type": "dense", "units": out}]);
    let cases = [
        (
            seq_spec(2, rnn(false, 1), json!({"type": "adding", "length": 1})),
            "/data/length",
            "the adding problem needs at least 2 time steps, got `length` 1",
        ),
        (
            seq_spec(6, rnn(false, 4), json!({"type": "temporal_order", "length": 9})),
            "/data/length",
            "the temporal-order problem needs at least 10 time steps, got `length` 9",
        ),
        (
            seq_spec(1, rnn(false, 2), json!({"type": "parity", "length": 0})),
            "/data/length",
            "a sequence needs at least 1 time step, got `length` 0",
        ),
        (
            seq_spec(1, rnn(true, 1), json!({"type": "sine_sequence", "length": 0})),
            "/data/length",
            "a sequence needs at least 1 time step, got `length` 0",
        ),
        (
            seq_spec(10, rnn(true, 9), json!({"type": "copy", "length": 0})),
            "/data/length",
            "`length` must be at least 1, got 0",
        ),
        (
            seq_spec(10, rnn(true, 9), json!({"type": "copy", "delay": 0})),
            "/data/delay",
            "`delay` must be at least 1, got 0",
        ),
    ];
    for (v, ptr, detail) in cases {
        assert_eq!(detail_at(&invalid(&v), ptr), detail, "{v}");
    }
}

#[test]
fn max_seq_len_applies_to_every_sequence_length() {
    let v = with(seq_base(), "/data/length", json!(20_000));
    assert_eq!(detail_at(&invalid(&v), "/data/length"), "a sequence has 20,000 time steps; the limit is 10,000");

    let limits = Limits { max_seq_len: 29, ..Limits::default() };
    let layers = json!([{"type": "rnn", "units": 4, "return_sequences": true}, {"type": "dense", "units": 9}]);
    let v = seq_spec(10, layers, json!({"type": "copy"}));
    assert_eq!(
        detail_at(&invalid_with(&v, &limits), "/data/delay"),
        "a sequence has 30 time steps (length + delay + length); the limit is 29"
    );
    assert!(parse_ok(&v).validate(&Limits { max_seq_len: 30, ..Limits::default() }).is_ok());
    let v = seq_spec(
        10,
        json!([{"type": "rnn", "units": 4, "return_sequences": true}, {"type": "dense", "units": 9}]),
        json!({"type": "copy", "length": 6000}),
    );
    assert_problem(&invalid(&v), "/data/delay", "12,010 time steps");

    let limits = Limits { max_seq_len: 2, ..Limits::default() };
    let layers = json!([{"type": "rnn", "units": 4}, {"type": "dense", "units": 2}]);
    let v = seq_spec(1, layers, json!({"type": "inline_sequences", "x": [[[1.0], [2.0], [3.0]]], "y": [1]}));
    assert_eq!(detail_at(&invalid_with(&v, &limits), "/data/x/0"), "a sequence has 3 time steps; the limit is 2");
}

#[test]
fn the_compute_budget_counts_every_time_step() {
    // rnn: 8 x (2 + 8 + 2) = 96 parameters, dense 8 -> 1: 9; 105 x 10 steps x 16 x 10 steps.
    let limits = Limits { max_compute: 1000, ..Limits::default() };
    assert_eq!(
        detail_at(&invalid_with(&seq_base(), &limits), "/training/steps"),
        "training (105 parameters x 10 steps x 16 sequences per batch x 10 time steps) has 168,000 \
         parameter-time-step updates; the limit is 1,000"
    );
    assert!(parse_ok(&seq_base()).validate(&Limits { max_compute: 168_000, ..Limits::default() }).is_ok());
    // An lstm has 4 gate blocks: 4 x 8 x (2 + 8 + 2) = 384, + 9.
    let v = with(seq_base(), "/model/layers/0/cell", json!("lstm"));
    let limits = Limits { max_compute: 1, ..Limits::default() };
    assert_problem(&invalid_with(&v, &limits), "/training/steps", "(393 parameters x 10 steps");
}

#[test]
fn bptt_truncate_must_be_at_least_one_and_reaches_the_engine() {
    let v = with(seq_base(), "/training/bptt_truncate", json!(5));
    assert_eq!(valid(&v).training.bptt_truncate, Some(5));
    assert_round_trip(&v);
    let v = with(seq_base(), "/training/bptt_truncate", json!(0));
    assert_eq!(detail_at(&invalid(&v), "/training/bptt_truncate"), "`bptt_truncate` must be at least 1, got 0");
    let v = with(seq_base(), "/training/bptt_truncate", Value::Null);
    assert_eq!(valid(&v).training.bptt_truncate, None);
}

// ---------------------------------------------------------------------------------------------
// Inline sequences.

/// inline_sequences of 2 sequences of 3 steps of 2 features, with `y`.
fn inline_seq(y: Value, per_step: bool, outputs: u64) -> Value {
    let x = json!([[[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]], [[6.0, 7.0], [8.0, 9.0], [10.0, 11.0]]]);
    let layers =
        json!([{"type": "rnn", "units": 4, "return_sequences": per_step}, {"type": "dense", "units": outputs}]);
    seq_spec(2, layers, json!({"type": "inline_sequences", "x": x, "y": y}))
}

fn inline_targets_of(c: &RunConfig) -> &ETargets {
    match &c.data {
        DataConfig::InlineSequences { y, .. } => y,
        other => panic!("not inline sequences: {other:?}"),
    }
}

#[test]
fn inline_sequence_targets_are_read_by_depth_and_integers() {
    let cases = [
        (json!([0, 2]), false, 3, ETargets::PerSequence(EInline::Classes(vec![0, 2])), LossKind::CrossEntropy),
        (
            json!([0.5, 1.5]),
            false,
            1,
            ETargets::PerSequence(EInline::Values(vec![vec![0.5], vec![1.5]])),
            LossKind::Mse,
        ),
        (
            json!([[1.0, 2.0], [3.0, 4.5]]),
            false,
            2,
            ETargets::PerSequence(EInline::Values(vec![vec![1.0, 2.0], vec![3.0, 4.5]])),
            LossKind::Mse,
        ),
        (
            json!([[0, 1, 1], [2, 0, 1]]),
            true,
            3,
            ETargets::ClassesPerStep(vec![vec![0, 1, 1], vec![2, 0, 1]]),
            LossKind::CrossEntropy,
        ),
        (
            // Integers at depth 3 are regression values too.
            json!([[[0.5], [1.0], [1.5]], [[2.0], [3.0], [4]]]),
            true,
            1,
            ETargets::ValuesPerStep(vec![vec![vec![0.5], vec![1.0], vec![1.5]], vec![vec![2.0], vec![3.0], vec![4.0]]]),
            LossKind::Mse,
        ),
    ];
    for (y, per_step, outputs, expected, loss) in cases {
        let v = inline_seq(y.clone(), per_step, outputs);
        let c = valid(&v);
        assert_eq!(*inline_targets_of(&c), expected, "{y}");
        assert_eq!(c.training.loss, loss, "{y}");
        assert_round_trip(&v);
    }
}

#[test]
fn inline_sequence_targets_survive_serialisation_as_written() {
    for y in [
        json!([0, 2]),
        json!([0.5, 1.5]),
        json!([[1.0, 2.0], [3.0, 4.0]]),
        json!([[0, 1, 1], [2, 0, 1]]),
        json!([[[0.5], [1.0], [1.5]], [[2.0], [3.0], [4.0]]]),
    ] {
        let data = json!({"type": "inline_sequences", "x": [[[1.0]]], "y": y});
        let parsed: Data = serde_json::from_value(data.clone()).unwrap();
        assert_eq!(serde_json::to_value(&parsed).unwrap(), data);
    }
    // Whole-number regression rows written with a decimal point stay regression rows.
    let parsed: Data =
        serde_json::from_value(json!({"type": "inline_sequences", "x": [[[1.0]]], "y": [[1.0, 2.0]]})).unwrap();
    let DataSource::InlineSequences { y, .. } = parsed.source else { panic!("not inline sequences") };
    assert_eq!(y, InlineSequenceTargets::PerSequence(InlineTargets::Rows(vec![vec![1.0, 2.0]])));
}

#[test]
fn ragged_inline_sequences_are_refused_at_each_offending_sequence() {
    let x = json!([[[1.0], [2.0]], [[3.0]], [[4.0], [5.0]], [[6.0], [7.0], [8.0]]]);
    let layers = json!([{"type": "rnn", "units": 4}, {"type": "dense", "units": 2}]);
    let v = seq_spec(1, layers, json!({"type": "inline_sequences", "x": x, "y": [0, 1, 0, 1]}));
    let errors = invalid(&v);
    assert_eq!(
        detail_at(&errors, "/data/x/1"),
        "sequence 1 has 1 time steps but sequence 0 has 2; all sequences must have the same length (ragged \
         sequences are not padded or masked)"
    );
    assert_problem(&errors, "/data/x/3", "sequence 3 has 3 time steps");
    assert!(!errors.pointers().contains(&"/data/x/2"), "{errors}");
}

#[test]
fn inline_sequence_problems_point_at_the_element() {
    let layers = || json!([{"type": "rnn", "units": 4}, {"type": "dense", "units": 2}]);
    let data = |x: Value, y: Value| json!({"type": "inline_sequences", "x": x, "y": y});
    let cases = [
        (data(json!([]), json!([])), "/data/x", "needs at least one sample"),
        (data(json!([[]]), json!([0])), "/data/x/0", "a sequence needs at least one time step"),
        (data(json!([[[]]]), json!([0])), "/data/x/0/0", "time steps of `x` need at least one value"),
        (
            data(json!([[[1.0], [2.0]], [[3.0], [4.0, 5.0]]]), json!([0, 1])),
            "/data/x/1/1",
            "time step 1 of sequence 1 has 2 features but the first step has 1",
        ),
        (data(json!([[[1.0]], [[2.0]]]), json!([0])), "/data/y", "`y` has 1 targets but `x` has 2 samples"),
        (data(json!([[[1.0]], [[2.0]]]), json!([0, -1])), "/data/y/1", "class label -1 is negative"),
    ];
    for (d, ptr, needle) in cases {
        let v = seq_spec(1, layers(), d);
        assert_problem(&invalid(&v), ptr, needle);
    }
}

#[test]
fn per_step_inline_targets_are_checked_step_by_step() {
    let labels_short = inline_seq(json!([[0, 1, 1], [2, 0]]), true, 3);
    assert_eq!(
        detail_at(&invalid(&labels_short), "/data/y/1"),
        "sequence 1 has 2 labels but 3 time steps; per-step targets need one per time step (a list of integer \
         lists is read as class labels per time step; write per-sequence regression rows with decimal points, \
         e.g. [[1.0, 2.0]])"
    );
    let negative = inline_seq(json!([[0, -1, 1], [2, 0, 1]]), true, 3);
    assert_problem(&invalid(&negative), "/data/y/0/1", "class label -1 is negative");
    let count = inline_seq(json!([[0, 1, 1]]), true, 2);
    assert_eq!(detail_at(&invalid(&count), "/data/y"), "`y` has 1 targets but `x` has 2 sequences");

    let values_short = inline_seq(json!([[[0.5], [1.0], [1.5]], [[2.0], [3.0]]]), true, 1);
    assert_problem(&invalid(&values_short), "/data/y/1", "sequence 1 has 2 target rows but 3 time steps");
    let values_ragged = inline_seq(json!([[[0.5], [1.0], [1.5]], [[2.0], [3.0, 1.0], [4.0]]]), true, 1);
    assert_eq!(
        detail_at(&invalid(&values_ragged), "/data/y/1/1"),
        "this time step has 2 target values but the first has 1"
    );
    let empty = inline_seq(json!([[[], [], []], [[], [], []]]), true, 1);
    assert_problem(&invalid(&empty), "/data/y/0", "at least one value per time step");
    // Two values per step need two output units.
    let two = inline_seq(json!([[[0.5, 1.0], [1.0, 1.0], [1.5, 1.0]], [[2.0, 1.0], [3.0, 1.0], [4.0, 1.0]]]), true, 1);
    assert_problem(
        &invalid(&two),
        "/model/layers/1/units",
        "the last layer has 1 units but mse needs one per target value, and the `inline_sequences` data has 2",
    );
}

#[test]
fn per_step_inline_targets_need_return_sequences_and_name_the_targets() {
    let v = inline_seq(json!([[0, 1, 1], [2, 0, 1]]), false, 3);
    assert_eq!(
        detail_at(&invalid(&v), "/model/layers/0/return_sequences"),
        "`inline_sequences` has a target at every time step (see /data/y); set return_sequences to true on the last rnn layer"
    );
}

#[test]
fn a_malformed_sequence_target_is_a_parse_error_at_the_element() {
    let v = inline_seq(json!([[[0.5], [1.0], [1.5]], [2.0, 3.0, 4.0]]), true, 1);
    assert_problem(&parse_err(&v), "/data/y/1/0", "expected an array of numbers");
    let v = inline_seq(json!([[0, 1, 1], 2]), true, 3);
    assert_problem(&parse_err(&v), "/data/y/1", "an array of numbers like the first target");
    let v = inline_seq(json!("labels"), true, 3);
    assert_problem(&parse_err(&v), "/data/y", "an array of targets");
}

#[test]
fn data_larger_than_the_value_limit_is_refused_with_its_size() {
    let v = serde_json::json!({
        "model": {"input_dim": 2, "layers": [{"type": "rnn", "units": 4}, {"type": "dense", "units": 1}]},
        "data": {"type": "adding", "length": 10000, "samples": 1000000}
    });
    let limits = Limits { max_seq_len: 100_000, max_samples: 10_000_000, ..Limits::default() };
    let errors = parse_ok(&v).validate(&limits).expect_err("too much data");
    let e = errors.0.iter().find(|e| e.pointer == "/data").expect("a /data problem");
    assert!(e.detail.contains("20,000,000,000") && e.detail.contains("20,000,000"), "{}", e.detail);
}
