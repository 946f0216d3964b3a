//! Bare strings, defaults and `mlp` expansion: `Spec::expanded` and its round trip.

use super::*;
use crate::engine::config::{self as e, LayerConfig};

/// A spec touching most features, to round-trip.
fn rich() -> Value {
    json!({
        "name": "rich",
        "model": {"input_dim": 4, "layers": [
            {"type": "mlp", "depth": 3, "width": 16, "activation": {"type": "leaky_relu", "slope": 0.2},
             "init": "he_normal", "norm": "batch", "residual": true},
            {"type": "residual", "layers": [
                {"type": "mlp", "depth": 2, "width": 16, "init": {"type": "orthogonal"}},
                {"type": "dropout"}
            ]},
            {"type": "batch_norm", "momentum": 0.2},
            {"type": "activation", "activation": "prelu"},
            {"type": "layer_norm"},
            {"type": "dense", "units": 3, "init": {"type": "normal", "std": 0.02}, "bias_init": {"type": "constant", "value": 0.1}}
        ]},
        "data": {"type": "blobs", "dims": 4, "validation_split": 0.25},
        "training": {"epochs": 2, "batch_size": 100, "optimizer": {"type": "rmsprop", "centered": true},
                     "clip": {"type": "value", "max": 0.5}, "precision": "f64", "shuffle": false},
        "probes": {"histograms": true},
        "return_gradients": true
    })
}

#[test]
fn bare_strings_mean_the_same_as_their_tagged_objects() {
    let bare = base();
    let bare = with(bare, "/model/layers/0/activation", json!("relu"));
    let bare = with(bare, "/model/layers/0/init", json!("he_normal"));
    let bare = with(bare, "/model/layers/0/norm", json!("batch"));
    let bare = with(bare, "/data", json!("xor"));
    let tagged = with(base(), "/model/layers/0/activation", json!({"type": "relu"}));
    let tagged = with(tagged, "/model/layers/0/init", json!({"type": "he_normal"}));
    let tagged = with(tagged, "/model/layers/0/norm", json!({"type": "batch"}));
    let tagged = with(tagged, "/data", json!({"type": "xor"}));
    assert_eq!(valid(&bare), valid(&tagged));
}

#[test]
fn bare_optimizer_names_take_each_optimizers_default_learning_rate() {
    for (name, lr) in [("sgd", 0.01), ("adam", 0.001), ("adamw", 0.001), ("rmsprop", 0.01), ("adagrad", 0.01)] {
        let c = valid(&with(base(), "/training/optimizer", json!(name)));
        let got = match c.training.optimizer {
            e::OptimizerConfig::Sgd { lr, .. }
            | e::OptimizerConfig::Rmsprop { lr, .. }
            | e::OptimizerConfig::Adagrad { lr, .. }
            | e::OptimizerConfig::Adam { lr, .. }
            | e::OptimizerConfig::AdamW { lr, .. } => lr,
        };
        assert_eq!(got, lr, "{name}");
    }
}

#[test]
fn bare_layer_names_are_accepted_for_layers_without_required_fields() {
    let v = with(base(), "/model/layers/1", json!("layer_norm"));
    let v = with(v, "/model/layers/0/units", json!(2));
    let c = valid(&v);
    assert!(matches!(c.network.layers[1], LayerConfig::LayerNorm(_)));
}

#[test]
fn expanded_replaces_bare_strings_by_tagged_objects_with_every_default_written() {
    let spec = parse_ok(&with(base(), "/model/layers/0/init", json!("he_uniform")));
    let json = serde_json::to_value(spec.expanded()).unwrap();
    assert_eq!(json["model"]["layers"][0]["activation"], json!({"type": "relu"}));
    assert_eq!(json["model"]["layers"][0]["init"], json!({"type": "he_uniform", "gain": 1.0, "mode": "fan_in"}));
    assert_eq!(json["model"]["layers"][0]["bias_init"], json!({"type": "constant", "value": 0.0}));
    assert_eq!(json["model"]["layers"][1]["activation"], json!({"type": "linear"}));
    assert_eq!(
        json["training"]["optimizer"],
        json!({"type": "sgd", "lr": 0.01, "momentum": 0.0, "dampening": 0.0, "nesterov": false})
    );
    // Written even when absent, so that an RFC 6902 `replace` can target them.
    assert_eq!(json["model"]["layers"][0]["norm"], Value::Null);
    assert_eq!(json["training"]["clip"], Value::Null);
    assert_eq!(json["training"]["bptt_truncate"], Value::Null);
    assert_eq!(json["data"], json!({"type": "xor", "samples": 64, "noise": 0.1, "validation_split": 0.0}));
    assert_eq!(json["probes"], json!({"every": 1, "histograms": false, "max_points": 200, "parameters": false}));
    assert_eq!(json["return_gradients"], json!(false));
    assert_eq!(json["training"]["shuffle"], json!(true));
    assert_eq!(json["training"]["precision"], json!("f32"));
}

#[test]
fn missing_training_and_probes_expand_to_the_defaults() {
    let v = without(without(base(), "/training"), "/probes");
    let json = serde_json::to_value(parse_ok(&v).expanded()).unwrap();
    assert_eq!(json["seed"], json!(1));
    assert_eq!(json["training"]["steps"], json!(1000));
    assert_eq!(json["training"]["batch_size"], json!(64));
    assert_eq!(json["training"]["loss"], json!("cross_entropy"));
    assert_eq!(json["training"]["optimizer"]["type"], json!("adam"));
    assert_eq!(json["training"]["optimizer"]["lr"], json!(0.001));
    assert_eq!(json["training"]["weight_decay"], json!(0.0));
    assert_eq!(json["probes"]["every"], json!(10));
}

#[test]
fn default_seed_is_zero() {
    assert_eq!(valid(&without(base(), "/seed")).seed, 0);
}

#[test]
fn default_loss_is_mse_for_regression_data() {
    let v = json!({"model": {"input_dim": 1, "layers": [{"type": "dense", "units": 1}]}, "data": "sine"});
    let c = valid(&v);
    assert_eq!(c.training.loss, e::LossKind::Mse);
    assert_eq!(c.data, e::DataConfig::Sine { samples: 1024, noise: 0.0 });
}

#[test]
fn data_defaults_follow_the_documented_values() {
    let cases = [
        (json!("spirals"), 2, e::DataConfig::Spirals { samples: 1024, noise: 0.1, classes: 2 }),
        (json!("circles"), 2, e::DataConfig::Circles { samples: 1024, noise: 0.1, factor: 0.5 }),
        (json!("moons"), 2, e::DataConfig::Moons { samples: 1024, noise: 0.1 }),
        (json!("blobs"), 3, e::DataConfig::Blobs { samples: 1024, classes: 3, dims: 2, std: 1.0 }),
        (json!("teacher"), 2, e::DataConfig::Teacher { samples: 1024, dims: 8, classes: 2, outputs: 1, hidden: 32 }),
    ];
    for (data, classes, expected) in cases {
        let input = if data == "teacher" { 8 } else { 2 };
        let v = json!({
            "model": {"input_dim": input, "layers": [{"type": "dense", "units": classes}]},
            "data": data
        });
        assert_eq!(valid(&v).data, expected);
    }
}

#[test]
fn mlp_expands_into_depth_dense_layers_with_its_settings() {
    let v = json!({
        "model": {"input_dim": 2, "layers": [
            {"type": "mlp", "depth": 4, "width": 8, "activation": "tanh", "init": "lecun_normal", "norm": "layer"},
            {"type": "dense", "units": 2}
        ]},
        "data": "xor"
    });
    let spec = parse_ok(&v).expanded();
    assert_eq!(spec.model.layers.len(), 5);
    for layer in &spec.model.layers[..4] {
        let Layer::Dense(d) = layer else { panic!("not dense: {layer:?}") };
        assert_eq!(d.units, 8);
        assert_eq!(d.activation, Some(Activation::Tanh));
        assert_eq!(d.init, Some(Init::LecunNormal { gain: Some(1.0), mode: Some(FanMode::FanIn) }));
        assert_eq!(d.norm, Some(Norm::Layer { eps: Some(1e-5) }));
    }
}

#[test]
fn residual_mlp_keeps_the_width_changing_first_layer_plain_and_wraps_the_rest() {
    let v = json!({
        "model": {"input_dim": 2, "layers": [
            {"type": "mlp", "depth": 3, "width": 8, "residual": true},
            {"type": "dense", "units": 2}
        ]},
        "data": "xor"
    });
    let spec = parse_ok(&v).expanded();
    assert!(matches!(spec.model.layers[0], Layer::Dense(_)));
    for layer in &spec.model.layers[1..3] {
        let Layer::Residual(r) = layer else { panic!("not residual: {layer:?}") };
        assert!(matches!(r.layers.as_slice(), [Layer::Dense(d)] if d.units == 8));
    }
    assert!(matches!(spec.model.layers[3], Layer::Dense(_)));
    valid(&v);
}

#[test]
fn residual_mlp_wraps_every_layer_when_its_input_already_has_the_width() {
    let v = json!({
        "model": {"input_dim": 2, "layers": [
            {"type": "dense", "units": 8},
            {"type": "mlp", "depth": 3, "width": 8, "residual": true},
            {"type": "dense", "units": 2}
        ]},
        "data": "xor"
    });
    let spec = parse_ok(&v).expanded();
    assert_eq!(spec.model.layers.len(), 5);
    assert!(spec.model.layers[1..4].iter().all(|l| matches!(l, Layer::Residual(_))));
}

#[test]
fn expanded_is_idempotent() {
    let spec = parse_ok(&rich());
    assert_eq!(spec.expanded().expanded(), spec.expanded());
}

#[test]
fn expanded_spec_reparses_to_itself_and_validates_to_the_same_run_config() {
    let spec = parse_ok(&rich());
    let config = spec.validate(&Limits::default()).unwrap();
    let again = reparsed_expanded(&spec);
    assert_eq!(again, spec.expanded());
    assert_eq!(again.validate(&Limits::default()).unwrap(), config);
}

#[test]
fn epochs_are_kept_in_the_expanded_spec_and_become_steps_over_the_training_split() {
    // 1024 samples, 25% held out -> 768 for training; batches of 100 -> 8 per epoch; 2 epochs.
    let spec = parse_ok(&rich());
    let expanded = serde_json::to_value(spec.expanded()).unwrap();
    assert_eq!(expanded["training"]["epochs"], json!(2));
    assert!(expanded["training"].get("steps").is_none());
    let c = spec.validate(&Limits::default()).unwrap();
    assert_eq!(c.training.steps, 16);
    assert_eq!(c.training.precision, e::Precision::F64);
    assert!(!c.training.shuffle);
}

#[test]
fn rich_spec_converts_norms_dropout_and_inits_as_written() {
    let c = valid(&rich());
    let LayerConfig::Dense(first) = &c.network.layers[0] else { panic!() };
    assert_eq!(first.activation, e::Activation::LeakyRelu { slope: 0.2 });
    assert_eq!(first.norm, Some(e::NormKind::Batch));
    let LayerConfig::Residual(block) = &c.network.layers[3] else { panic!("{:?}", c.network.layers[3]) };
    assert_eq!(block.len(), 3);
    assert_eq!(block[2], LayerConfig::Dropout { rate: 0.5 });
    let LayerConfig::BatchNorm(bn) = &c.network.layers[4] else { panic!() };
    assert_eq!(bn.momentum, 0.2);
    let LayerConfig::Dense(last) = c.network.layers.last().unwrap() else { panic!() };
    assert_eq!(last.init, e::Init::Normal { std: 0.02 });
    assert_eq!(last.bias_init, e::Init::Constant { value: 0.1 });
}

#[test]
fn every_wire_variant_serialises_to_names_the_parser_reads() {
    let activations = [
        Activation::Linear,
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Relu,
        Activation::LeakyRelu { slope: Some(0.1) },
        Activation::Elu { alpha: None },
        Activation::Prelu { init: Some(0.3) },
        Activation::Selu,
        Activation::Gelu,
        Activation::Softplus,
        Activation::Silu,
    ];
    for a in activations {
        let back: Activation = serde_json::from_value(serde_json::to_value(a).unwrap()).unwrap();
        assert_eq!(back, a);
    }
    let inits = [
        Init::Normal { std: 0.1 },
        Init::Uniform { limit: 0.1 },
        Init::Constant { value: 0.0 },
        Init::XavierUniform { gain: None },
        Init::XavierNormal { gain: Some(2.0) },
        Init::HeUniform { gain: None, mode: Some(FanMode::FanOut) },
        Init::HeNormal { gain: Some(1.0), mode: None },
        Init::LecunNormal { gain: None, mode: Some(FanMode::FanIn) },
        Init::Orthogonal { gain: None },
        Init::Identity { gain: Some(0.5) },
    ];
    for i in inits {
        let back: Init = serde_json::from_value(serde_json::to_value(i).unwrap()).unwrap();
        assert_eq!(back, i);
    }
    let optimizers = ["sgd", "rmsprop", "adagrad", "adam", "adamw"]
        .map(|o| serde_json::from_value::<Optimizer>(json!(o)).unwrap().filled());
    for o in optimizers {
        let back: Optimizer = serde_json::from_value(serde_json::to_value(o).unwrap()).unwrap();
        assert_eq!(back, o);
    }
    for c in [Clip::GlobalNorm { max: 1.0 }, Clip::Value { max: 2.0 }] {
        let back: Clip = serde_json::from_value(serde_json::to_value(c).unwrap()).unwrap();
        assert_eq!(back, c);
    }
    for n in [Norm::Batch { eps: Some(1e-3), momentum: None }, Norm::Layer { eps: None }] {
        let back: Norm = serde_json::from_value(serde_json::to_value(n).unwrap()).unwrap();
        assert_eq!(back, n);
    }
    let sources = [
        "xor",
        "spirals",
        "circles",
        "moons",
        "blobs",
        "sine",
        "teacher",
        "adding",
        "copy",
        "temporal_order",
        "parity",
        "sine_sequence",
    ];
    for s in sources {
        let data: Data = serde_json::from_value(json!(s)).unwrap();
        let filled = data.filled();
        let back: Data = serde_json::from_value(serde_json::to_value(&filled).unwrap()).unwrap();
        assert_eq!(back, filled, "{s}");
    }
    for data in [
        json!({"type": "inline", "x": [[1.0]], "y": [0]}),
        json!({"type": "inline", "x": [[1.0]], "y": [0.5]}),
        json!({"type": "inline", "x": [[1.0]], "y": [[0.5, 1.0]]}),
        json!({"type": "inline_sequences", "x": [[[1.0], [2.0]]], "y": [1]}),
        json!({"type": "inline_sequences", "x": [[[1.0], [2.0]]], "y": [0.5]}),
        json!({"type": "inline_sequences", "x": [[[1.0], [2.0]]], "y": [[0.5, 1.0]]}),
        json!({"type": "inline_sequences", "x": [[[1.0], [2.0]]], "y": [[0, 1]]}),
        json!({"type": "inline_sequences", "x": [[[1.0], [2.0]]], "y": [[[0.5], [1.0]]]}),
    ] {
        let parsed: Data = serde_json::from_value(data.clone()).unwrap();
        assert_eq!(serde_json::to_value(&parsed).unwrap(), data);
    }
    let rnn = json!({"type": "rnn", "cell": "gru", "units": 4, "weight_ih": [[1.0]], "return_sequences": true});
    let layer: Layer = serde_json::from_value(rnn.clone()).unwrap();
    assert_eq!(serde_json::to_value(&layer).unwrap(), rnn);
    for cell in Cell::ALL {
        assert_eq!(serde_json::to_value(cell).unwrap(), json!(cell.name()));
    }
    for loss in Loss::ALL {
        let v = with(base(), "/training/loss", json!(loss.name()));
        assert_eq!(parse_ok(&v).training.unwrap().loss, Some(*loss));
    }
}

#[test]
fn expanded_leaves_an_absurdly_deep_mlp_unexpanded_and_validation_still_refuses_it() {
    let v = with(base(), "/model/layers/0", json!({"type": "mlp", "depth": 1u64 << 40, "width": 8}));
    let expanded = parse_ok(&v).expanded();
    assert_eq!(expanded.model.layers.len(), 2);
    let Layer::Mlp(m) = &expanded.model.layers[0] else { panic!("{:?}", expanded.model.layers[0]) };
    assert_eq!(m.activation, Some(Activation::Relu));
    assert_eq!(m.residual, Some(false));
    let no_layer_limit = Limits { max_layers: u64::MAX, ..Limits::default() };
    let errors = expanded.validate(&no_layer_limit).unwrap_err();
    assert_eq!(
        detail_at(&errors, "/model/layers"),
        "the network has 1,099,511,627,777 layers (with mlp expanded); the limit is 100,000"
    );
}
