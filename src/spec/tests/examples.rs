//! The fixture example specs (`tests/fixtures/spec-examples/`): all parse and validate, the
//! recurrent ones included.

use super::*;
use crate::engine::config::{
    Activation as EActivation, CellKind, ClipConfig, DataConfig, Init as EInit, LayerConfig, LossKind, OptimizerConfig,
};

#[test]
fn every_fixture_example_parses() {
    for (name, v) in fixture_examples() {
        if let Err(e) = parse(&v) {
            panic!("{name}: {e}");
        }
    }
}

#[test]
fn every_fixture_example_deserializes_through_serde_as_it_parses() {
    for (name, v) in fixture_examples() {
        let via_serde: Spec = serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(via_serde, parse_ok(&v), "{name}");
    }
}

#[test]
fn every_fixture_example_validates_into_a_run_config() {
    let examples = fixture_examples();
    for (name, v) in &examples {
        if let Err(e) = parse_ok(v).validate(&Limits::default()) {
            panic!("{name}: {e}");
        }
    }
    assert!(examples.len() >= 7, "expected the seven fixture examples, found {}", examples.len());
}

#[test]
fn rnn_adding_example_becomes_a_vanilla_tanh_rnn_on_the_adding_problem() {
    let (_, v) = fixture_examples().into_iter().find(|(n, _)| n == "rnn-adding.json").unwrap();
    let c = valid(&v);
    assert_eq!(c.network.input_dim, 2);
    let LayerConfig::Rnn(r) = &c.network.layers[0] else { panic!("not rnn: {:?}", c.network.layers[0]) };
    assert_eq!((r.cell, r.units, r.activation), (CellKind::Vanilla, 64, EActivation::Tanh));
    assert_eq!((r.init, r.recurrent_init), (EInit::XavierUniform { gain: 1.0 }, EInit::Orthogonal { gain: 1.0 }));
    assert!(!r.return_sequences);
    assert!(r.params.is_empty());
    assert!(matches!(c.network.layers[1], LayerConfig::Dense(ref d) if d.units == 1));
    assert_eq!(c.data, DataConfig::Adding { samples: 4096, length: 50 });
    assert_eq!(c.training.loss, LossKind::Mse);
    assert_eq!(c.training.clip, Some(ClipConfig::GlobalNorm { max: 1.0 }));
    assert_eq!(c.training.bptt_truncate, None);
}

#[test]
fn lstm_adding_example_becomes_an_lstm_with_pytorch_defaults() {
    let (_, v) = fixture_examples().into_iter().find(|(n, _)| n == "lstm-adding.json").unwrap();
    let c = valid(&v);
    let LayerConfig::Rnn(r) = &c.network.layers[0] else { panic!("not rnn: {:?}", c.network.layers[0]) };
    assert_eq!((r.cell, r.units, r.forget_bias), (CellKind::Lstm, 64, 0.0));
    assert_eq!((r.init, r.recurrent_init), (EInit::XavierUniform { gain: 1.0 }, EInit::Orthogonal { gain: 1.0 }));
    assert!(!r.return_sequences);
    assert_eq!(c.data, DataConfig::Adding { samples: 4096, length: 50 });
    assert_eq!(c.training.loss, LossKind::Mse);
}

#[test]
fn examples_expanded_and_reparsed_validate_to_the_same_run_config() {
    for (name, v) in fixture_examples() {
        let spec = parse_ok(&v);
        let config = spec.validate(&Limits::default()).unwrap();
        let again = reparsed_expanded(&spec).validate(&Limits::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(config, again, "{name}");
    }
}

#[test]
fn examples_expand_and_reparse_to_the_same_spec() {
    for (name, v) in fixture_examples() {
        let spec = parse_ok(&v);
        assert_eq!(reparsed_expanded(&spec), spec.expanded(), "{name}");
    }
}

#[test]
fn deep_sigmoid_example_becomes_twenty_sigmoid_layers_and_an_output_trained_by_sgd() {
    let (_, v) = fixture_examples().into_iter().find(|(n, _)| n == "deep-sigmoid.json").unwrap();
    let c = valid(&v);
    assert_eq!(c.seed, 7);
    assert_eq!(c.network.layers.len(), 21);
    let LayerConfig::Dense(first) = &c.network.layers[0] else { panic!("not dense") };
    assert_eq!(first.units, 64);
    assert_eq!(first.activation, crate::engine::config::Activation::Sigmoid);
    assert_eq!(c.training.steps, 500);
    assert_eq!(c.training.optimizer, OptimizerConfig::Sgd { lr: 0.1, momentum: 0.0, dampening: 0.0, nesterov: false });
    assert_eq!(c.data, DataConfig::Spirals { samples: 1024, noise: 0.1, classes: 2 });
    assert_eq!(c.probes.every, 10);
}

#[test]
fn analyze_example_without_training_gets_default_training() {
    let (_, v) = fixture_examples().into_iter().find(|(n, _)| n == "analyze-tanh-ordered.json").unwrap();
    let c = valid(&v);
    assert_eq!(c.training.steps, 1000);
    assert_eq!(c.training.batch_size, 64);
    assert_eq!(c.training.loss, LossKind::CrossEntropy);
    assert_eq!(
        c.training.optimizer,
        OptimizerConfig::Adam { lr: 0.001, beta1: 0.9, beta2: 0.999, eps: 1e-8, amsgrad: false }
    );
    assert_eq!(c.training.weight_decay, 0.0);
    assert_eq!(c.training.clip, None);
}

#[test]
fn explicit_weights_example_carries_its_parameters_flattened_row_major() {
    let (_, v) = fixture_examples().into_iter().find(|(n, _)| n == "explicit-weights.json").unwrap();
    let c = valid(&v);
    let LayerConfig::Dense(d) = &c.network.layers[0] else { panic!("not dense") };
    assert_eq!(d.params["weight"], vec![0.5, -0.25, 0.1, 0.8, -0.6, 0.3]);
    assert_eq!(d.params["bias"], vec![0.0, 0.1, -0.1]);
    let DataConfig::Inline { y, .. } = &c.data else { panic!("not inline") };
    assert_eq!(*y, crate::engine::config::InlineTargets::Classes(vec![0, 1, 1, 0]));
}

#[test]
fn residual_batchnorm_example_keeps_validation_split_clip_and_weight_decay() {
    let (_, v) = fixture_examples().into_iter().find(|(n, _)| n == "residual-batchnorm.json").unwrap();
    let c = valid(&v);
    assert_eq!(c.training.validation_split, 0.2);
    assert_eq!(c.training.weight_decay, 0.0001);
    assert_eq!(c.training.clip, Some(crate::engine::config::ClipConfig::GlobalNorm { max: 1.0 }));
    assert!(matches!(c.network.layers[1], LayerConfig::Residual(ref inner) if inner.len() == 2));
    assert!(matches!(c.network.layers[3], LayerConfig::LayerNorm(_)));
}
