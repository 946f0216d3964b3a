//! Attention, positional encodings, pooling and learning-rate schedules: conversion into the
//! engine's config, where each may sit in the flow of sequences, and every refusal with its
//! pointer.

use super::sequences::assert_round_trip;
use super::*;
use crate::engine::config::{
    AttentionConfig, DataConfig, LayerConfig, PoolKind, PositionalConfig, PositionalKind, Schedule,
};

/// A pre-LN block on marked recall (T = 8, vocab 8: 9 inputs per step), pooled into 8 classes.
fn recall(layers: Value) -> Value {
    json!({
        "seed": 1,
        "model": {"input_dim": 9, "layers": layers},
        "data": {"type": "marked_recall", "samples": 64, "length": 8, "vocab": 8},
        "training": {"steps": 10, "batch_size": 16}
    })
}

fn pre_ln_block() -> Value {
    json!([
        {"type": "dense", "units": 16},
        {"type": "positional", "encoding": "learned"},
        {"type": "residual", "layers": ["layer_norm", {"type": "attention", "heads": 4}]},
        {"type": "residual", "layers": ["layer_norm", {"type": "dense", "units": 32, "activation": "relu"}, {"type": "dense", "units": 16}]},
        "layer_norm",
        {"type": "pool", "mode": "mean"},
        {"type": "dense", "units": 8}
    ])
}

#[test]
fn a_pre_ln_block_on_marked_recall_converts_to_attention_positional_and_pool() {
    let v = recall(pre_ln_block());
    let c = valid(&v);
    assert_eq!(c.data, DataConfig::MarkedRecall { samples: 64, length: 8, vocab: 8 });
    let l = &c.network.layers;
    assert_eq!(
        l[1],
        LayerConfig::Positional(PositionalConfig {
            kind: PositionalKind::Learned,
            steps: 8,
            params: Default::default()
        })
    );
    let LayerConfig::Residual(inner) = &l[2] else { panic!("{:?}", l[2]) };
    assert_eq!(
        inner[1],
        LayerConfig::Attention(AttentionConfig { heads: 4, causal: false, params: Default::default() })
    );
    assert_eq!(l[5], LayerConfig::Pool(PoolKind::Mean));
    assert_eq!(c.training.schedule, Schedule::Constant);
    assert_round_trip(&v);
}

#[test]
fn explicit_attention_parameters_take_pytorchs_names_and_shapes() {
    let d = 4;
    let m = |rows: usize| json!(vec![vec![0.1; d]; rows]);
    let layers = json!([
        {"type": "dense", "units": d},
        {"type": "attention", "heads": 2, "causal": true, "in_proj_weight": m(3 * d), "in_proj_bias": vec![0.0; 3 * d],
         "out_proj.weight": m(d), "out_proj.bias": vec![0.0; d]},
        "pool", {"type": "dense", "units": 8}
    ]);
    let c = valid(&recall(layers));
    let LayerConfig::Attention(a) = &c.network.layers[1] else { panic!("{:?}", c.network.layers[1]) };
    assert!(a.causal);
    let names: Vec<&str> = a.params.keys().map(String::as_str).collect();
    assert_eq!(names, ["in_proj_bias", "in_proj_weight", "out_proj.bias", "out_proj.weight"]);
    // A wrong shape is named with the layout.
    let bad = json!([
        {"type": "dense", "units": d},
        {"type": "attention", "heads": 2, "in_proj_weight": m(d)},
        "pool", {"type": "dense", "units": 8}
    ]);
    assert_problem(&invalid(&recall(bad)), "/model/layers/1/in_proj_weight", "expected 12 x 4 (3 x d x d (q, k, v))");
}

#[test]
fn heads_that_do_not_divide_the_width_are_refused_at_heads() {
    let layers = json!([{"type": "dense", "units": 6}, {"type": "attention", "heads": 4}, "pool", {"type": "dense", "units": 8}]);
    assert_eq!(
        detail_at(&invalid(&recall(layers)), "/model/layers/1/heads"),
        "`heads` must divide the layer's width d = 6 (each head gets d / heads features), got 4"
    );
}

#[test]
fn attention_on_plain_data_and_after_a_pool_is_refused_at_the_layer() {
    let v = with(base(), "/model/layers/0", json!({"type": "attention", "heads": 1}));
    assert_problem(&invalid(&v), "/model/layers/0", "an `attention` layer needs sequence data");
    let layers = json!([{"type": "dense", "units": 8}, "pool", {"type": "attention", "heads": 2}, {"type": "dense", "units": 8}]);
    assert_eq!(
        detail_at(&invalid(&recall(layers)), "/model/layers/2"),
        "an `attention` layer needs a sequence; the pool layer (/model/layers/1) keeps one row per sequence; move this \
         layer before it"
    );
}

#[test]
fn one_target_per_sequence_after_attention_needs_a_pool() {
    let layers =
        json!([{"type": "dense", "units": 8}, {"type": "attention", "heads": 2}, {"type": "dense", "units": 8}]);
    assert_eq!(
        detail_at(&invalid(&recall(layers)), "/model/layers/1"),
        "`marked_recall` has one target per sequence (see /data/type), but attention keeps every time step; add a \
         `pool` layer (mode `last` or `mean`) after the last attention layer"
    );
}

#[test]
fn a_target_at_every_step_refuses_a_pool_and_takes_attention_alone() {
    // copy: 10 inputs per step, 9 classes at every step.
    let pooled = json!([{"type": "dense", "units": 8}, {"type": "attention", "heads": 2, "causal": true}, "pool", {"type": "dense", "units": 9}]);
    let copy = json!({"type": "copy", "samples": 32});
    let v = json!({"model": {"input_dim": 10, "layers": pooled}, "data": copy, "training": {"steps": 10, "batch_size": 16}});
    assert_problem(&invalid(&v), "/model/layers/2", "but this pool layer keeps one row per sequence; remove it");
    let per_step = json!([{"type": "dense", "units": 8}, {"type": "attention", "heads": 2, "causal": true}, {"type": "dense", "units": 9}]);
    valid(&with(v, "/model/layers", per_step));
}

#[test]
fn a_pool_inside_a_residual_block_and_a_sinusoidal_weight_are_refused() {
    let layers =
        json!([{"type": "dense", "units": 8}, {"type": "residual", "layers": ["pool"]}, {"type": "dense", "units": 8}]);
    assert_problem(&invalid(&recall(layers)), "/model/layers/1/layers/0", "cannot sit inside a residual block");
    let layers = json!([{"type": "dense", "units": 2}, {"type": "positional", "weight": [[0.0, 0.0]]}, "pool", {"type": "dense", "units": 8}]);
    assert_problem(&invalid(&recall(layers)), "/model/layers/1/weight", "a sinusoidal one has none");
}

#[test]
fn schedules_convert_and_warmups_longer_than_the_run_are_refused() {
    let v = with(recall(pre_ln_block()), "/training/schedule", json!({"type": "warmup", "warmup_steps": 3}));
    assert_eq!(valid(&v).training.schedule, Schedule::Warmup { warmup_steps: 3 });
    let v = with(recall(pre_ln_block()), "/training/schedule", json!("cosine"));
    assert_eq!(valid(&v).training.schedule, Schedule::Cosine { warmup_steps: 0 });
    assert_round_trip(&v);
    let v = with(recall(pre_ln_block()), "/training/schedule", json!({"type": "warmup", "warmup_steps": 11}));
    assert_eq!(
        detail_at(&invalid(&v), "/training/schedule/warmup_steps"),
        "`warmup_steps` is 11 but the run has 10 steps; at most 10"
    );
    let v = with(recall(pre_ln_block()), "/training/schedule", json!({"type": "cosine", "warmup_steps": 10}));
    assert_problem(&invalid(&v), "/training/schedule/warmup_steps", "a cosine decay needs fewer than 10");
    let v = with(recall(pre_ln_block()), "/training/schedule", json!({"type": "warmup", "warmup_steps": 0}));
    assert_problem(&invalid(&v), "/training/schedule/warmup_steps", "must be at least 1");
}

#[test]
fn a_transformer_converts_with_its_defaults_and_takes_state_dict_names_per_block() {
    let layers = json!([
        {"type": "dense", "units": 4},
        {"type": "transformer", "depth": 2, "heads": 2, "ffn": 3,
         "blocks": [{}, {"linear1.bias": [0.1, 0.2, 0.3], "norm2.weight": [1.0, 2.0, 3.0, 4.0]}]},
        "pool",
        {"type": "dense", "units": 8}
    ]);
    let c = valid(&recall(layers));
    let LayerConfig::Transformer(t) = &c.network.layers[1] else { panic!("{:?}", c.network.layers[1]) };
    assert_eq!((t.depth, t.heads, t.ffn, t.norm_first, t.causal, t.alpha), (2, 2, 3, false, false, 1.0));
    assert_eq!(t.activation, crate::engine::config::Activation::Relu);
    assert!(t.blocks[0].is_empty());
    assert_eq!(t.blocks[1]["linear1.bias"], [0.1, 0.2, 0.3]);
    assert_eq!(t.blocks[1]["norm2.weight"], [1.0, 2.0, 3.0, 4.0]);
}

#[test]
fn every_transformer_mistake_is_refused_at_its_field_in_one_answer() {
    let layers = json!([
        {"type": "dense", "units": 6},
        {"type": "transformer", "depth": 2, "heads": 4, "ffn": 3, "activation": "tanh", "alpha": 0.0,
         "blocks": [{"linear2.weight": [[1.0, 2.0]]}]},
        "pool",
        {"type": "dense", "units": 8}
    ]);
    let e = invalid(&recall(layers));
    let at = "/model/layers/1";
    assert_eq!(
        detail_at(&e, &format!("{at}/heads")),
        "`heads` must divide the layer's width d = 6 (each head gets d / heads features), got 4"
    );
    assert!(detail_at(&e, &format!("{at}/activation")).contains("`relu` or `gelu`"));
    assert!(detail_at(&e, &format!("{at}/alpha")).contains("> 0"));
    assert!(detail_at(&e, &format!("{at}/blocks")).contains("expected one per block: depth = 2"));
    assert!(detail_at(&e, &format!("{at}/blocks/0/linear2.weight")).contains("d x ffn"));
    // On plain data the transformer is refused where it stands.
    let v = with(base(), "/model/layers/0", json!({"type": "transformer", "heads": 1, "ffn": 4}));
    assert!(detail_at(&invalid(&v), "/model/layers/0").contains("needs sequence data"));
}
