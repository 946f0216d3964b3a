//! Every check the engine's data module makes (generator parameters, inline data) is made by
//! `Spec::validate` first, at the pointer of the offending field or element. The engine's own
//! tests (`engine/data/{points,sequences,inline}.rs`) assert the engine-terms error for the same
//! configs; values JSON cannot carry (NaN, infinities) are put into the parsed spec directly.

use super::*;

/// The problems of `base()` with `data` as its data.
fn with_data(data: Value) -> SpecErrors {
    invalid(&with(base(), "/data", data))
}

/// The problems of `base()` with its data source replaced by `source` after parsing.
fn with_source(source: DataSource) -> SpecErrors {
    let mut spec = parse_ok(&base());
    spec.data.source = source;
    spec.validate(&Limits::default()).expect_err("the data source should be refused")
}

/// Asserts that `errors` has a problem at `pointer` (any detail).
fn assert_at(errors: &SpecErrors, pointer: &str) {
    assert!(errors.pointers().contains(&pointer), "no problem at {pointer}; got:\n{errors}");
}

#[test]
fn invalid_generator_parameters_are_refused_at_the_field() {
    let cases = [
        (json!({"type": "xor", "samples": 0, "noise": 0.1}), "/data/samples"),
        (json!({"type": "moons", "samples": 10, "noise": -1.0}), "/data/noise"),
        (json!({"type": "spirals", "samples": 10, "noise": 0.1, "classes": 1}), "/data/classes"),
        (json!({"type": "circles", "samples": 10, "noise": 0.1, "factor": 1.0}), "/data/factor"),
        (json!({"type": "blobs", "samples": 10, "classes": 0, "dims": 2, "std": 1.0}), "/data/classes"),
        (json!({"type": "blobs", "samples": 10, "classes": 2, "dims": 0, "std": 1.0}), "/data/dims"),
        (json!({"type": "sine", "samples": 0, "noise": 0.1}), "/data/samples"),
        (
            json!({"type": "teacher", "samples": 10, "dims": 2, "classes": 1, "outputs": 0, "hidden": 4}),
            "/data/classes",
        ),
        (
            json!({"type": "teacher", "samples": 10, "dims": 2, "classes": 0, "outputs": 0, "hidden": 4}),
            "/data/outputs",
        ),
        (json!({"type": "teacher", "samples": 10, "dims": 0, "classes": 2, "outputs": 0, "hidden": 4}), "/data/dims"),
        (json!({"type": "teacher", "samples": 10, "dims": 2, "classes": 2, "outputs": 0, "hidden": 0}), "/data/hidden"),
    ];
    for (data, pointer) in cases {
        assert_at(&with_data(data), pointer);
    }
    let nan = Some(f64::NAN);
    assert_at(&with_source(DataSource::Xor { samples: Some(10), noise: nan }), "/data/noise");
    assert_at(&with_source(DataSource::Circles { samples: Some(10), noise: Some(0.1), factor: nan }), "/data/factor");
    let std = Some(f64::INFINITY);
    assert_at(&with_source(DataSource::Blobs { samples: Some(10), classes: Some(2), dims: Some(2), std }), "/data/std");
}

#[test]
fn invalid_sequence_task_parameters_are_refused_at_the_field() {
    let cases = [
        (json!({"type": "adding", "samples": 10, "length": 1}), "/data/length"),
        (json!({"type": "adding", "samples": 0, "length": 10}), "/data/samples"),
        (json!({"type": "copy", "samples": 10, "length": 0, "delay": 3}), "/data/length"),
        (json!({"type": "copy", "samples": 10, "length": 3, "delay": 0}), "/data/delay"),
        (json!({"type": "temporal_order", "samples": 10, "length": 9}), "/data/length"),
        (json!({"type": "parity", "samples": 10, "length": 0}), "/data/length"),
        (json!({"type": "sine_sequence", "samples": 10, "length": 0, "noise": 0.0}), "/data/length"),
    ];
    for (data, pointer) in cases {
        assert_at(&with_data(data), pointer);
    }
    let source = DataSource::SineSequence { samples: Some(10), length: Some(5), noise: Some(f64::NAN) };
    assert_at(&with_source(source), "/data/noise");
}

#[test]
fn inline_rows_are_checked_for_shape_at_the_row() {
    let inline = |x: Value, y: Value| with_data(json!({"type": "inline", "x": x, "y": y}));
    assert_at(&inline(json!([[1.0, 2.0], [3.0, 4.0], [5.0]]), json!([0, 1, 0])), "/data/x/2");
    assert_at(&inline(json!([]), json!([])), "/data/x");
    assert_at(&inline(json!([[], []]), json!([0, 1])), "/data/x/0");
}

#[test]
fn inline_non_finite_values_are_refused_at_the_element() {
    let x = vec![vec![1.0, 2.0], vec![f64::NAN, 4.0]];
    let errors = with_source(DataSource::Inline { x, y: InlineTargets::Labels(vec![0, 1]) });
    assert_problem(&errors, "/data/x/1/0", "non-finite value (NaN)");

    let y = InlineTargets::Rows(vec![vec![0.0], vec![f64::INFINITY]]);
    let errors = with_source(DataSource::Inline { x: vec![vec![1.0, 0.0], vec![2.0, 0.0]], y });
    assert_problem(&errors, "/data/y/1/0", "non-finite value (inf)");
}

#[test]
fn inline_target_count_mismatches_are_refused_at_the_targets() {
    let x = json!([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]]);
    let inline = |y: Value| with_data(json!({"type": "inline", "x": x, "y": y}));
    assert_problem(&inline(json!([0, 1])), "/data/y", "`y` has 2 targets but `x` has 3 samples");
    assert_problem(&inline(json!([[0.0], [0.0], [0.0], [0.0]])), "/data/y", "`y` has 4 targets");
    assert_problem(&inline(json!([[0.0, 1.0], [0.0], [0.0, 1.0]])), "/data/y/1", "row 1 of `y` has 1 values");
}

#[test]
fn inline_labels_too_large_to_count_are_refused() {
    // JSON labels are at most i64::MAX, so the class count (largest + 1) always fits; it is held
    // to `max_units` and refused at the targets.
    let v = with(base(), "/data", json!({"type": "inline", "x": [[1.0, 0.0], [2.0, 0.0]], "y": [0, i64::MAX]}));
    assert_problem(&invalid(&v), "/data/y", "classes (largest label + 1)");
}

/// A spec of 2 features per step, an rnn and a dense layer, on inline sequences `x`, `y`.
fn sequences(x: Value, y: Value) -> Value {
    json!({
        "model": {"input_dim": 2, "layers": [{"type": "rnn", "units": 4}, {"type": "dense", "units": 2}]},
        "data": {"type": "inline_sequences", "x": x, "y": y},
        "training": {"steps": 10, "batch_size": 16}
    })
}

#[test]
fn ragged_inline_sequences_are_refused_at_the_sequence() {
    let x = json!([[[1.0, 1.0], [2.0, 2.0]], [[3.0, 3.0], [4.0, 4.0]], [[5.0, 5.0]], [[6.0, 6.0]]]);
    let errors = invalid(&sequences(x, json!([0, 1, 0, 1])));
    assert_problem(&errors, "/data/x/2", "not padded or masked");
}

#[test]
fn inline_sequence_problems_are_refused_at_the_element() {
    let x = || json!([[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]]]);
    let cases = [
        (json!([]), json!([]), "/data/x"),
        (json!([[]]), json!([0]), "/data/x/0"),
        (json!([[[]]]), json!([0]), "/data/x/0/0"),
        (json!([[[1.0, 2.0], [3.0]]]), json!([0]), "/data/x/0/1"),
        (x(), json!([0]), "/data/y"),
        (x(), json!([[0, 1], [1]]), "/data/y/1"),
        (x(), json!([[0, 1]]), "/data/y"),
        // The engine names label (1, 1) when it cannot count usize::MAX + 1 classes; on the wire
        // the largest label is i64::MAX, whose class count is refused at the targets.
        (x(), json!([[0, 1], [1, i64::MAX]]), "/data/y"),
        (x(), json!([[[0.0], [0.0]], [[0.0]]]), "/data/y/1"),
        (x(), json!([[[0.0], [0.0]], [[0.0], [0.0, 1.0]]]), "/data/y/1/1"),
        (x(), json!([[[], []], [[], []]]), "/data/y/0"),
    ];
    for (x, y, pointer) in cases {
        let what = format!("x = {x}, y = {y}");
        let errors = invalid(&sequences(x, y));
        assert!(errors.pointers().contains(&pointer), "{what}: no problem at {pointer}; got:\n{errors}");
    }
}

#[test]
fn non_finite_inline_sequence_values_are_refused_at_the_element() {
    let mut spec = parse_ok(&sequences(json!([[[1.0, 2.0]], [[3.0, 4.0]]]), json!([0, 1])));
    spec.data.source = DataSource::InlineSequences {
        x: vec![vec![vec![1.0, 2.0]], vec![vec![f64::NAN, 4.0]]],
        y: InlineSequenceTargets::PerSequence(InlineTargets::Labels(vec![0, 1])),
    };
    let errors = spec.validate(&Limits::default()).expect_err("NaN input accepted");
    assert_problem(&errors, "/data/x/1/0/0", "non-finite value (NaN)");

    spec.data.source = DataSource::InlineSequences {
        x: vec![vec![vec![1.0, 2.0], vec![3.0, 4.0]], vec![vec![5.0, 6.0], vec![7.0, 8.0]]],
        y: InlineSequenceTargets::ValuesPerStep(vec![vec![vec![0.0], vec![0.0]], vec![vec![0.0], vec![f64::INFINITY]]]),
    };
    let errors = spec.validate(&Limits::default()).expect_err("infinite target accepted");
    assert_problem(&errors, "/data/y/1/1/0", "non-finite value (inf)");
}
