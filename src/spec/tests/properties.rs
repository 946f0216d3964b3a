//! Property tests: parsing and validating arbitrary JSON, and randomly damaged valid specs,
//! never panics; whatever validates also round-trips through `expanded`.

use proptest::prelude::*;

use super::*;

/// Field names and type tags of the spec, so that random objects often look like spec parts.
const WORDS: &[&str] = &[
    "type",
    "units",
    "activation",
    "init",
    "norm",
    "weight",
    "bias",
    "layers",
    "depth",
    "width",
    "residual",
    "model",
    "input_dim",
    "data",
    "samples",
    "noise",
    "classes",
    "dims",
    "x",
    "y",
    "training",
    "steps",
    "epochs",
    "batch_size",
    "loss",
    "optimizer",
    "lr",
    "momentum",
    "clip",
    "max",
    "probes",
    "every",
    "dense",
    "mlp",
    "rnn",
    "batch_norm",
    "layer_norm",
    "dropout",
    "rate",
    "relu",
    "prelu",
    "prelu_weight",
    "leaky_relu",
    "slope",
    "he_normal",
    "normal",
    "std",
    "gain",
    "mode",
    "fan_out",
    "batch",
    "layer",
    "xor",
    "inline",
    "blobs",
    "teacher",
    "sgd",
    "adam",
    "cross_entropy",
    "mse",
    "bce",
    "global_norm",
    "value",
    "validation_split",
    "running_var",
    "norm_weight",
    "seed",
    "outputs",
    "hidden",
    "factor",
    "spirals",
    "cell",
    "lstm",
    "gru",
    "return_sequences",
    "forget_bias",
    "recurrent_init",
    "identity",
    "length",
    "delay",
    "adding",
    "copy",
    "parity",
    "temporal_order",
    "sine_sequence",
    "inline_sequences",
    "bptt_truncate",
];

fn word() -> impl Strategy<Value = String> {
    prop_oneof![4 => prop::sample::select(WORDS).prop_map(str::to_owned), 1 => "[a-z/~]{0,6}"]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0u64..5).prop_map(Value::from),
        (0u64..100).prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-2.0f64..2.0).prop_map(Value::from),
        any::<f64>().prop_filter("finite", |x| x.is_finite()).prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf =
        prop_oneof![Just(Value::Null), any::<bool>().prop_map(Value::Bool), number(), word().prop_map(Value::String),];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(word(), inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Parses and validates; when it validates, checks the expanded round trip. Must not panic.
fn check(v: &Value) -> Result<(), TestCaseError> {
    let Ok(spec) = parse(v) else { return Ok(()) };
    let Ok(config) = spec.validate(&Limits::default()) else { return Ok(()) };
    let again = reparsed_expanded(&spec);
    prop_assert_eq!(again.validate(&Limits::default()).ok(), Some(config));
    Ok(())
}

/// One random edit somewhere in `v`: `path` picks a child at each level (modulo its size) and
/// `op` what to do at the node reached.
fn mutate(node: &mut Value, path: &[usize], op: u8, new: Value, key: String) {
    if let Some((&step, rest)) = path.split_first() {
        match node {
            Value::Array(a) if !a.is_empty() => {
                let n = a.len();
                return mutate(&mut a[step % n], rest, op, new, key);
            }
            Value::Object(m) if !m.is_empty() => {
                let n = m.len();
                if let Some(child) = m.values_mut().nth(step % n) {
                    mutate(child, rest, op, new, key);
                }
                return;
            }
            _ => {}
        }
    }
    match (op % 6, node) {
        // Remove a member (often an optional one: the spec stays readable).
        (0, Value::Object(m)) => {
            if let Some(k) = m.keys().nth(key.len() % m.len().max(1)).cloned() {
                m.remove(&k);
            }
        }
        (1, Value::Object(m)) => {
            m.insert(key, new);
        }
        (2, Value::Array(a)) => a.push(new),
        // Nudge a number to an edge value: zero, negative, fractional, huge, integral float.
        (3 | 4, node @ Value::Number(_)) => {
            let edges = [json!(0), json!(-1), json!(0.5), json!(1u64 << 40), json!(1.0), json!(3), json!(1e300)];
            let seed = node.as_f64().unwrap_or(0.0).abs() as usize;
            *node = edges[seed.wrapping_add(key.len()) % edges.len()].clone();
        }
        // Swap a name for another known one (`relu` -> `batch`, `xor` -> `inline`, ...).
        (3 | 4, node @ Value::String(_)) => *node = Value::String(key),
        (_, node) => *node = new,
    }
}

/// Spec-like JSON: mostly well-formed, with sizes and settings drawn from small ranges and edge
/// values, so that validation (not only parsing) is exercised.
fn spec_like() -> impl Strategy<Value = Value> {
    let size = || prop_oneof![8 => (1u64..6).prop_map(Value::from), 1 => Just(json!(0))];
    let fraction = || prop_oneof![(0.0f64..1.0).prop_map(Value::from), Just(json!(1.0)), Just(json!(-0.5))];
    let activation = || {
        prop_oneof![
            prop::sample::select(vec!["relu", "tanh", "sigmoid", "linear", "prelu", "gelu", "selu", "silu"])
                .prop_map(Value::from),
            (-1.0f64..1.0).prop_map(|slope| json!({"type": "leaky_relu", "slope": slope})),
        ]
    };
    let norm = prop_oneof![Just(Value::Null), Just(json!("batch")), Just(json!({"type": "layer", "eps": 1e-3}))];
    let init = prop_oneof![
        Just(json!("he_normal")),
        Just(json!({"type": "orthogonal", "gain": 2.0})),
        (-1.0f64..1.0).prop_map(|std| json!({"type": "normal", "std": std})),
    ];
    let leaf = prop_oneof![
        4 => (size(), activation(), norm.clone(), init).prop_map(|(units, activation, norm, init)| {
            json!({"type": "dense", "units": units, "activation": activation, "norm": norm, "init": init})
        }),
        1 => Just(json!({"type": "batch_norm"})),
        1 => Just(json!("layer_norm")),
        1 => fraction().prop_map(|rate| json!({"type": "dropout", "rate": rate})),
        1 => activation().prop_map(|a| json!({"type": "activation", "activation": a})),
        2 => (0u64..4, size(), norm, any::<bool>()).prop_map(|(depth, width, norm, residual)| {
            json!({"type": "mlp", "depth": depth, "width": width, "norm": norm, "residual": residual})
        }),
        2 => (size(), prop::sample::select(vec!["vanilla", "lstm", "gru"]), any::<bool>(), prop::option::of(-1.0f64..2.0))
            .prop_map(|(units, cell, return_sequences, forget_bias)| {
                let mut rnn = json!({"type": "rnn", "units": units, "cell": cell, "return_sequences": return_sequences});
                if let Some(b) = forget_bias {
                    rnn["forget_bias"] = json!(b);
                }
                rnn
            }),
    ];
    let layer = leaf.prop_recursive(3, 12, 3, |inner| {
        prop::collection::vec(inner, 1..3).prop_map(|layers| json!({"type": "residual", "layers": layers}))
    });
    let data = prop_oneof![
        prop::sample::select(vec!["xor", "moons", "circles", "spirals", "sine"]).prop_map(Value::from),
        (prop::sample::select(vec!["adding", "copy", "temporal_order", "parity", "sine_sequence"]), 0u64..14)
            .prop_map(|(kind, length)| json!({"type": kind, "samples": 16, "length": length})),
        (1usize..3, 1usize..4, prop::collection::vec(0i64..3, 1..4), any::<bool>()).prop_map(
            |(width, steps, y, per_step)| {
                let x: Vec<Vec<Vec<f64>>> = (0..y.len()).map(|i| vec![vec![i as f64; width]; steps]).collect();
                let y = if per_step { json!(y.iter().map(|&c| vec![c; steps]).collect::<Vec<_>>()) } else { json!(y) };
                json!({"type": "inline_sequences", "x": x, "y": y})
            }
        ),
        (size(), size()).prop_map(|(classes, dims)| json!({"type": "blobs", "classes": classes, "dims": dims})),
        (1usize..5, prop::collection::vec(0i64..3, 1..5), fraction()).prop_map(|(width, y, split)| {
            let x: Vec<Vec<f64>> = (0..y.len()).map(|i| vec![i as f64; width]).collect();
            json!({"type": "inline", "x": x, "y": y, "validation_split": split})
        }),
    ];
    let training = (
        size(),
        size(),
        prop::sample::select(vec!["cross_entropy", "cross_entropy", "cross_entropy", "mse", "bce"]),
        prop::sample::select(vec!["sgd", "adam", "adamw", "rmsprop", "adagrad"]),
        any::<bool>(),
    )
        .prop_map(|(steps, batch, loss, optimizer, epochs)| {
            let count = if epochs { "epochs" } else { "steps" };
            json!({count: steps, "batch_size": batch, "loss": loss, "optimizer": optimizer})
        });
    // Most specs end in a 2-unit output, which fits the 2-class data sets, so many validate.
    let output = prop_oneof![3 => Just(vec![json!({"type": "dense", "units": 2})]), 1 => Just(vec![])];
    (prop_oneof![3 => Just(json!(2)), 1 => size()], prop::collection::vec(layer, 0..4), output, data, training)
        .prop_map(|(input_dim, mut layers, output, data, training)| {
            layers.extend(output);
            json!({"model": {"input_dim": input_dim, "layers": layers}, "data": data, "training": training})
        })
}

/// Sequence specs, mostly valid: a sequence task with its `input_dim`, one or two rnn layers
/// (any cell, sometimes a per-step layer between them), and an output layer of the right width,
/// with `return_sequences` matching the targets most of the time.
fn sequence_like() -> impl Strategy<Value = Value> {
    // (data, features per step, output units, per-step targets)
    let task = prop_oneof![
        (0u64..60).prop_map(|length| (json!({"type": "adding", "samples": 16, "length": length}), 2, 1, false)),
        (0u64..6, 0u64..6).prop_map(|(length, delay)| {
            (json!({"type": "copy", "samples": 16, "length": length, "delay": delay}), 10, 9, true)
        }),
        (5u64..40).prop_map(|length| (json!({"type": "temporal_order", "samples": 16, "length": length}), 6, 4, false)),
        (0u64..12).prop_map(|length| (json!({"type": "parity", "samples": 16, "length": length}), 1, 2, false)),
        (0u64..12, prop_oneof![Just(0.0), Just(0.1), Just(-1.0)]).prop_map(|(length, noise)| {
            (json!({"type": "sine_sequence", "samples": 16, "length": length, "noise": noise}), 1, 1, true)
        }),
        (1u64..3, 1usize..4, prop::collection::vec(0i64..2, 1..4), any::<bool>()).prop_map(
            |(width, steps, y, per_step)| {
                let x: Vec<Vec<Vec<f64>>> = (0..y.len()).map(|i| vec![vec![i as f64; width as usize]; steps]).collect();
                let y = if per_step { json!(y.iter().map(|&c| vec![c; steps]).collect::<Vec<_>>()) } else { json!(y) };
                // Labels 0..2: the output needs 2 units (fewer when only 0s occur: then invalid).
                (json!({"type": "inline_sequences", "x": x, "y": y}), width, 2, per_step)
            }
        ),
    ];
    let cell = || prop::sample::select(vec!["vanilla", "lstm", "gru"]);
    (
        task,
        cell(),
        cell(),
        1u64..5,
        prop::sample::select(vec![0u8, 0, 0, 1, 2, 3]),
        prop::sample::select(vec![0u8, 0, 0, 0, 1, 2]),
        prop::option::of(0u64..4),
        prop::sample::select(vec!["sgd", "adam", "rmsprop"]),
    )
        .prop_map(|((data, features, outputs, per_step), first, second, units, shape, mismatch, bptt, optimizer)| {
            let last = |cell: &str| {
                let mut r = json!({"type": "rnn", "cell": cell, "units": units, "return_sequences": per_step != (mismatch == 1)});
                if cell == "lstm" {
                    r["forget_bias"] = json!(1.0);
                }
                r
            };
            let mut layers = match shape {
                0 => vec![last(first)],
                1 => vec![json!({"type": "rnn", "cell": first, "units": units, "return_sequences": true}), last(second)],
                2 => vec![
                    json!({"type": "rnn", "cell": first, "units": units, "return_sequences": true}),
                    json!({"type": "layer_norm"}),
                    last(second),
                ],
                // A dense projection per step before the rnn.
                _ => vec![json!({"type": "dense", "units": units, "activation": "tanh"}), last(first)],
            };
            layers.push(json!({"type": "dense", "units": if mismatch == 2 { outputs + 1 } else { outputs }}));
            json!({
                "model": {"input_dim": features, "layers": layers},
                "data": data,
                "training": {"steps": 3, "batch_size": 4, "optimizer": optimizer, "bptt_truncate": bptt}
            })
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn parse_and_validate_never_panic_on_sequence_like_json(v in sequence_like()) {
        check(&v)?;
    }

    #[test]
    fn parse_and_validate_never_panic_on_arbitrary_json(v in json_value()) {
        check(&v)?;
    }

    #[test]
    fn parse_and_validate_never_panic_on_arbitrary_spec_shaped_json(
        layers in prop::collection::vec(json_value(), 0..4),
        data in json_value(),
        training in json_value(),
    ) {
        let v = json!({"model": {"input_dim": 2, "layers": layers}, "data": data, "training": training});
        check(&v)?;
    }

    #[test]
    fn parse_and_validate_never_panic_on_spec_like_json(v in spec_like()) {
        check(&v)?;
    }

    #[test]
    fn parse_and_validate_never_panic_on_mutated_valid_specs(
        which in any::<prop::sample::Index>(),
        edits in prop::collection::vec(
            (prop::collection::vec(any::<usize>(), 0..6), any::<u8>(), json_value(), word()),
            1..3,
        ),
    ) {
        let mut specs: Vec<Value> = fixture_examples().into_iter().map(|(_, v)| v).collect();
        specs.push(base());
        let mut v = specs[which.index(specs.len())].clone();
        for (path, op, new, key) in edits {
            mutate(&mut v, &path, op, new, key);
        }
        check(&v)?;
    }
}
