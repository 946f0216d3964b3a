//! Structural problems: each reported at its JSON Pointer, all of them at once.

use super::*;

#[test]
fn unknown_field_is_reported_at_its_pointer_with_the_expected_names() {
    let mut v = base();
    v["model"]["layers"].as_array_mut().unwrap().push(json!({"type": "dense", "unitz": 2}));
    let errors = parse_err(&v);
    let detail = detail_at(&errors, "/model/layers/2/unitz");
    assert!(detail.starts_with("unknown field `unitz`; expected one of `type`, `units`, `activation`"), "{detail}");
    assert!(detail.contains("did you mean `units`?"), "{detail}");
    // The same layer is also missing `units`.
    assert_problem(&errors, "/model/layers/2/units", "missing required field `units`");
}

#[test]
fn unknown_layer_type_is_reported_at_its_type_with_the_known_types() {
    let errors = parse_err(&with(base(), "/model/layers/0/type", json!("dens")));
    let detail = detail_at(&errors, "/model/layers/0/type");
    assert!(detail.contains("unknown layer type `dens`"), "{detail}");
    assert!(detail.contains("`dense`, `batch_norm`, `layer_norm`, `dropout`, `activation`, `residual`, `mlp`, `rnn`"));
    assert!(detail.contains("did you mean `dense`?"));
    // Its other fields are not second-guessed: which are allowed depends on the type.
    assert_eq!(errors.0.len(), 1, "{errors}");
}

#[test]
fn unknown_tags_of_every_tagged_object_are_reported() {
    let cases = [
        ("/model/layers/0/activation", json!("rellu"), "/model/layers/0/activation"),
        ("/model/layers/0/init", json!({"type": "kaiming"}), "/model/layers/0/init/type"),
        ("/model/layers/0/norm", json!("group"), "/model/layers/0/norm"),
        ("/data/type", json!("mnist"), "/data/type"),
        ("/training/optimizer", json!({"type": "lion"}), "/training/optimizer/type"),
        ("/training/clip", json!({"type": "norm", "max": 1}), "/training/clip/type"),
        ("/training/loss", json!("hinge"), "/training/loss"),
        ("/training/precision", json!("f16"), "/training/precision"),
    ];
    for (at, value, pointer) in cases {
        let errors = parse_err(&with(base(), at, value));
        assert_problem(&errors, pointer, "unknown");
    }
}

#[test]
fn wrong_json_types_say_what_was_expected_and_what_was_given() {
    let errors = parse_err(&with(base(), "/training/batch_size", json!("64")));
    assert_eq!(detail_at(&errors, "/training/batch_size"), "expected a non-negative integer, got a string");
    let errors = parse_err(&with(base(), "/model/layers/0/units", json!(-3)));
    assert_eq!(detail_at(&errors, "/model/layers/0/units"), "expected a non-negative integer, got the number -3");
    let errors = parse_err(&with(base(), "/model/layers/0/units", json!(2.5)));
    assert_problem(&errors, "/model/layers/0/units", "got the number 2.5");
    let errors = parse_err(&with(base(), "/probes/histograms", json!(1)));
    assert_problem(&errors, "/probes/histograms", "expected true or false");
    let errors = parse_err(&with(base(), "/model/layers", json!({})));
    assert_problem(&errors, "/model/layers", "expected an array of layers, got an object");
    let errors = parse_err(&with(base(), "/model/layers/0", json!(7)));
    assert_problem(&errors, "/model/layers/0", "expected a layer");
}

#[test]
fn missing_required_fields_are_reported_where_they_belong() {
    let errors = parse_err(&without(base(), "/model"));
    assert_problem(&errors, "/model", "missing required field `model`");
    let errors = parse_err(&without(base(), "/model/input_dim"));
    assert_problem(&errors, "/model/input_dim", "missing required field `input_dim`");
    let errors = parse_err(&without(base(), "/model/layers/0/type"));
    assert_problem(&errors, "/model/layers/0/type", "missing required field `type`");
    let errors = parse_err(&with(base(), "/data", json!({"type": "inline", "x": [[1.0, 2.0]]})));
    assert_problem(&errors, "/data/y", "missing required field `y`");
}

#[test]
fn bare_string_of_a_type_with_required_fields_points_at_the_string_and_shows_the_object_form() {
    let errors = parse_err(&with(base(), "/model/layers/0/init", json!("normal")));
    let detail = detail_at(&errors, "/model/layers/0/init");
    assert!(detail.contains("`normal` needs the field `std`"), "{detail}");
    assert!(detail.contains(r#"{"type": "normal", "std": ...}"#), "{detail}");
    let errors = parse_err(&with(base(), "/model/layers/0", json!("dense")));
    assert_problem(&errors, "/model/layers/0", "`dense` needs the field `units`");
}

#[test]
fn unknown_field_in_a_layer_and_wrong_type_in_training_are_both_reported() {
    let v = with(base(), "/model/layers/0/unitz", json!(3));
    let v = with(v, "/training/steps", json!("many"));
    let errors = parse_err(&v);
    assert_eq!(errors.pointers(), vec!["/model/layers/0/unitz", "/training/steps"], "{errors}");
}

#[test]
fn problems_across_the_whole_spec_are_all_listed_in_document_order() {
    let v = json!({
        "sede": 1,
        "model": {"input_dim": "2", "layers": [
            {"type": "dense", "units": 8, "activation": {"type": "leaky_relu", "slop": 0.1}},
            {"type": "residual", "layers": [{"type": "dropout", "rate": "high"}]},
            {"type": "mlp", "depth": 2}
        ]},
        "data": {"type": "spirals", "classes": 3.5, "validation_split": true},
        "training": {"optimizer": {"type": "sgd", "lr": 0.1, "beta1": 0.9}, "clip": {"type": "value"}},
        "probes": {"every": null, "max_points": [200]}
    });
    let errors = parse_err(&v);
    assert_eq!(
        errors.pointers(),
        vec![
            "/model/input_dim",
            "/model/layers/0/activation/slop",
            "/model/layers/1/layers/0/rate",
            "/model/layers/2/width",
            "/data/classes",
            "/data/validation_split",
            "/training/optimizer/beta1",
            "/training/clip/max",
            "/probes/max_points",
            "/sede",
        ],
        "{errors}"
    );
}

#[test]
fn fields_of_another_optimizer_are_unknown_and_the_list_names_this_ones() {
    let errors = parse_err(&with(base(), "/training/optimizer", json!({"type": "adam", "momentum": 0.9})));
    let detail = detail_at(&errors, "/training/optimizer/momentum");
    assert!(detail.contains("`lr`, `beta1`, `beta2`, `eps`, `amsgrad`"), "{detail}");
}

#[test]
fn null_means_absent_for_optional_fields() {
    let v = with(base(), "/model/layers/0/norm", Value::Null);
    let v = with(v, "/training/clip", Value::Null);
    let v = with(v, "/name", Value::Null);
    let spec = parse_ok(&v);
    assert_eq!(spec.name, None);
    assert_eq!(valid(&v), valid(&base()));
}

#[test]
fn unknown_keys_are_escaped_in_pointers() {
    let errors = parse_err(&with(base(), "/probes/a~b", json!(1)));
    assert_eq!(errors.pointers(), vec!["/probes/a~0b"]);
    let mut v = base();
    v["probes"].as_object_mut().unwrap().insert("x/y".into(), json!(1));
    assert_eq!(parse_err(&v).pointers(), vec!["/probes/x~1y"]);
}

#[test]
fn a_spec_that_is_not_an_object_is_reported_at_the_root() {
    for v in [json!([]), json!("spec"), json!(null), json!(3)] {
        let errors = parse_err(&v);
        assert_eq!(errors.pointers(), vec![""], "{errors}");
    }
}

#[test]
fn inline_targets_must_be_all_labels_all_numbers_or_all_rows() {
    let data = |y: Value| with(base(), "/data", json!({"type": "inline", "x": [[0.0, 1.0], [1.0, 0.0]], "y": y}));
    let errors = parse_err(&data(json!([0, [1.0]])));
    assert_problem(&errors, "/data/y/1", "expected a number like the first target");
    let errors = parse_err(&data(json!([[0.5], 1.0])));
    assert_problem(&errors, "/data/y/1", "expected an array of numbers like the first target");
    let errors = parse_err(&data(json!(["a", "b"])));
    assert_problem(&errors, "/data/y/0", "expected a class label, a number or an array");
    assert!(matches!(
        parse_ok(&data(json!([0, 1]))).data.source,
        DataSource::Inline { y: InlineTargets::Labels(_), .. }
    ));
    assert!(matches!(
        parse_ok(&data(json!([0.0, 1.5]))).data.source,
        DataSource::Inline { y: InlineTargets::Scalars(_), .. }
    ));
}

#[test]
fn deeply_nested_residual_blocks_are_refused_not_recursed_forever() {
    let mut layer = json!({"type": "dense", "units": 2});
    for _ in 0..40 {
        layer = json!({"type": "residual", "layers": [layer]});
    }
    let errors = parse_err(&with(base(), "/model/layers/0", layer));
    assert!(errors.0.iter().any(|e| e.detail.contains("nested more than")), "{errors}");
}

#[test]
fn serde_deserialize_reports_every_problem_like_parse() {
    let v = with(base(), "/model/layers/0/unitz", json!(3));
    let v = with(v, "/training/steps", json!("many"));
    let message = serde_json::from_value::<Spec>(v).unwrap_err().to_string();
    assert!(message.contains("/model/layers/0/unitz") && message.contains("/training/steps"), "{message}");
}

#[test]
fn spec_errors_display_lists_every_problem_with_its_pointer() {
    let v = with(base(), "/model/layers/0/unitz", json!(3));
    let v = with(v, "/training/steps", json!("many"));
    let text = parse_err(&v).to_string();
    assert!(text.starts_with("invalid spec: 2 problems"), "{text}");
    assert!(text.contains("\n  /model/layers/0/unitz: unknown field `unitz`"), "{text}");
    assert!(text.contains("\n  /training/steps: expected a non-negative integer"), "{text}");
}
