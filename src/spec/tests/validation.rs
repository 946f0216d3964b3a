//! Semantic problems: sizes, shapes, ranges, inline data, limits — each at its pointer into the
//! spec as written, all of them at once.

use super::*;

#[test]
fn zero_sizes_are_reported_at_each_field() {
    let v = with(base(), "/model/layers/0/units", json!(0));
    let v = with(v, "/data/samples", json!(0));
    let v = with(v, "/training/batch_size", json!(0));
    let v = with(v, "/training/steps", json!(0));
    let v = with(v, "/probes/every", json!(0));
    let errors = invalid(&v);
    assert_problem(&errors, "/model/layers/0/units", "`units` must be at least 1, got 0");
    assert_problem(&errors, "/data/samples", "`samples` must be at least 1, got 0");
    assert_problem(&errors, "/training/batch_size", "`batch_size` must be at least 1, got 0");
    assert_problem(&errors, "/training/steps", "`steps` must be at least 1, got 0");
    assert_problem(&errors, "/probes/every", "`every` must be at least 1, got 0");
}

#[test]
fn mlp_depth_and_width_of_zero_are_reported_at_the_mlp() {
    let v = with(base(), "/model/layers/0", json!({"type": "mlp", "depth": 0, "width": 8}));
    assert_problem(&invalid(&v), "/model/layers/0/depth", "`depth` must be at least 1, got 0");
    let v = with(base(), "/model/layers/0", json!({"type": "mlp", "depth": 3, "width": 0}));
    let errors = invalid(&v);
    assert_problem(&errors, "/model/layers/0/width", "`width` must be at least 1, got 0");
    // Three expanded layers, one problem: duplicates are folded.
    assert_eq!(errors.0.len(), 1, "{errors}");
}

#[test]
fn problems_in_layers_an_mlp_produced_point_at_the_mlp_once() {
    let v = with(
        base(),
        "/model/layers/0",
        json!({"type": "mlp", "depth": 5, "width": 8, "init": {"type": "xavier_normal", "gain": -1.0},
               "norm": {"type": "batch", "momentum": 2.0}}),
    );
    let errors = invalid(&v);
    assert_eq!(errors.pointers(), vec!["/model/layers/0/init/gain", "/model/layers/0/norm/momentum"], "{errors}");
}

#[test]
fn input_dim_must_match_the_datas_features() {
    let errors = invalid(&with(base(), "/model/input_dim", json!(3)));
    assert_eq!(
        detail_at(&errors, "/model/input_dim"),
        "`input_dim` is 3 but each sample of the `xor` data has 2 features"
    );
}

#[test]
fn residual_block_must_preserve_its_width() {
    let v = with(
        base(),
        "/model/layers",
        json!([
            {"type": "dense", "units": 64},
            {"type": "residual", "layers": [{"type": "dense", "units": 32}]},
            {"type": "dense", "units": 2}
        ]),
    );
    let errors = invalid(&v);
    assert_eq!(detail_at(&errors, "/model/layers/1"), "residual block output has 32 units but its input has 64");
    let v = with(base(), "/model/layers/1", json!({"type": "residual", "layers": []}));
    assert_problem(&invalid(&v), "/model/layers/1/layers", "at least one layer");
}

#[test]
fn problems_inside_residual_blocks_point_into_the_block() {
    let v = with(base(), "/model/layers/1", json!({"type": "residual", "layers": [{"type": "dropout", "rate": 1.0}]}));
    let v = with(v, "/model/layers/0/units", json!(2));
    assert_problem(&invalid(&v), "/model/layers/1/layers/0/rate", "must be in [0, 1)");
}

#[test]
fn cross_entropy_needs_one_output_unit_per_class() {
    let errors = invalid(&with(base(), "/model/layers/1/units", json!(3)));
    assert_eq!(
        detail_at(&errors, "/model/layers/1/units"),
        "the last layer has 3 units but cross_entropy over the 2 classes of the `xor` data needs 2"
    );
    let v = with(base(), "/data", json!({"type": "spirals", "classes": 4}));
    assert_problem(&invalid(&v), "/model/layers/1/units", "over the 4 classes");
}

#[test]
fn last_layer_from_an_mlp_is_reported_at_its_width() {
    let v = with(base(), "/model/layers/1", json!({"type": "mlp", "depth": 2, "width": 5}));
    assert_problem(&invalid(&v), "/model/layers/1/width", "the last layer has 5 units");
}

#[test]
fn bce_needs_one_unit_for_two_classes_and_refuses_more_classes() {
    let v = with(base(), "/training/loss", json!("bce"));
    assert_problem(&invalid(&v), "/model/layers/1/units", "bce on 2 classes needs 1");
    valid(&with(v, "/model/layers/1/units", json!(1)));
    let v = with(base(), "/training/loss", json!("bce"));
    let v = with(v, "/data", json!({"type": "blobs", "classes": 3}));
    assert_problem(&invalid(&v), "/training/loss", "bce on class labels needs exactly 2 classes");
}

#[test]
fn bce_on_regression_targets_needs_them_in_the_unit_interval() {
    let sine = json!({"model": {"input_dim": 1, "layers": [{"type": "dense", "units": 1}]}, "data": "sine",
                      "training": {"loss": "bce"}});
    assert_problem(&invalid(&sine), "/training/loss", "bce needs targets in [0, 1]");
    let v = with(sine.clone(), "/data", json!({"type": "inline", "x": [[0.0], [1.0]], "y": [0.25, 0.75]}));
    valid(&v);
}

#[test]
fn mse_on_class_labels_needs_one_unit_per_class_and_on_values_one_per_target() {
    let v = with(base(), "/training/loss", json!("mse"));
    valid(&v);
    assert_problem(&invalid(&with(v, "/model/layers/1/units", json!(1))), "/model/layers/1/units", "one-hot");
    let v = with(base(), "/training/loss", json!("mse"));
    let v = with(
        v,
        "/data",
        json!({"type": "inline", "x": [[0.0, 1.0], [1.0, 0.0]], "y": [[0.1, 0.2, 0.3], [0.0, 0.0, 1.0]]}),
    );
    assert_problem(&invalid(&v), "/model/layers/1/units", "the `inline` data has 3");
}

#[test]
fn cross_entropy_on_regression_data_is_reported_at_the_loss() {
    let v = json!({"model": {"input_dim": 1, "layers": [{"type": "dense", "units": 1}]}, "data": "sine",
                   "training": {"loss": "cross_entropy"}});
    assert_problem(&invalid(&v), "/training/loss", "cross_entropy needs class labels");
    let v = json!({"model": {"input_dim": 8, "layers": [{"type": "dense", "units": 3}]},
                   "data": {"type": "teacher", "classes": 0, "outputs": 3}});
    assert_eq!(valid(&v).training.loss, crate::engine::config::LossKind::Mse);
}

#[test]
fn explicit_parameters_of_the_wrong_shape_say_expected_and_got() {
    let v = with(base(), "/model/layers/0/weight", json!([[1.0, 2.0], [3.0, 4.0]]));
    assert_eq!(
        detail_at(&invalid(&v), "/model/layers/0/weight"),
        "`weight` has 2 rows; expected 8 x 2 (units x inputs)"
    );
    let v = with(base(), "/model/layers/1/weight", json!([vec![0.0; 8], vec![0.0; 7]]));
    assert_eq!(
        detail_at(&invalid(&v), "/model/layers/1/weight/1"),
        "row 1 of `weight` has 7 values; expected 8 (units x inputs = 2 x 8)"
    );
    let v = with(base(), "/model/layers/1/bias", json!([0.0, 0.0, 0.0]));
    assert_eq!(detail_at(&invalid(&v), "/model/layers/1/bias"), "`bias` has 3 values; expected 2 (one per unit)");
    let v = with(base(), "/model/layers/0/units", json!(2));
    let v = with(v, "/model/layers/1", json!({"type": "batch_norm", "running_var": [1.0, -1.0]}));
    let v = with(v, "/model/layers/0/norm_weight", json!([1.0, 1.0]));
    let errors = invalid(&v);
    assert_problem(&errors, "/model/layers/1/running_var/1", "negative variance");
    assert_problem(&errors, "/model/layers/0/norm_weight", "`norm_weight` is given but the layer has no `norm`");
}

#[test]
fn prelu_weight_needs_a_prelu_activation_and_one_slope_per_unit() {
    let v = with(base(), "/model/layers/0/prelu_weight", json!(vec![0.1; 8]));
    assert_problem(&invalid(&v), "/model/layers/0/prelu_weight", "the activation is not `prelu`");
    let v = with(v, "/model/layers/0/activation", json!("prelu"));
    valid(&v);
    let v = with(v, "/model/layers/0/prelu_weight", json!(vec![0.1; 3]));
    assert_problem(&invalid(&v), "/model/layers/0/prelu_weight", "has 3 values; expected 8");
}

#[test]
fn non_finite_values_are_reported_at_the_entry() {
    // JSON cannot carry NaN, but a spec built in code (a preset, a patched spec) can.
    let mut spec = parse_ok(&with(base(), "/model/layers/1/bias", json!([0.0, 0.0])));
    let Layer::Dense(d) = &mut spec.model.layers[1] else { panic!() };
    d.bias = Some(vec![0.0, f64::NAN]);
    d.activation = Some(Activation::LeakyRelu { slope: Some(f64::INFINITY) });
    let Some(Training { optimizer, .. }) = spec.training.as_mut() else { panic!() };
    *optimizer = Some(Optimizer::Sgd { lr: Some(f64::NAN), momentum: None, dampening: None, nesterov: None });
    let errors = spec.validate(&Limits::default()).unwrap_err();
    assert_problem(&errors, "/model/layers/1/bias/1", "non-finite value (NaN)");
    assert_problem(&errors, "/model/layers/1/activation/slope", "finite");
    assert_problem(&errors, "/training/optimizer/lr", "must be a finite number > 0, got NaN");
}

#[test]
fn hyperparameters_out_of_range_are_all_reported() {
    let v = with(base(), "/training/optimizer", json!({"type": "sgd", "lr": 0, "momentum": 1.0}));
    let v = with(v, "/training/weight_decay", json!(-0.1));
    let v = with(v, "/training/clip", json!({"type": "global_norm", "max": 0}));
    let v = with(v, "/data/validation_split", json!(1.0));
    let v = with(v, "/model/layers/1", json!({"type": "dropout", "rate": 1.0}));
    let v = with(v, "/model/layers/0/units", json!(2));
    let v = with(v, "/probes/max_points", json!(1));
    let errors = invalid(&v);
    assert_eq!(
        errors.pointers(),
        vec![
            "/data/validation_split",
            "/model/layers/1/rate",
            "/training/optimizer/lr",
            "/training/optimizer/momentum",
            "/training/weight_decay",
            "/training/clip/max",
            "/probes/max_points",
        ],
        "{errors}"
    );
    assert_eq!(detail_at(&errors, "/training/optimizer/lr"), "`lr` must be a finite number > 0, got 0");
    assert_eq!(detail_at(&errors, "/training/optimizer/momentum"), "`momentum` must be in [0, 1), got 1");
}

#[test]
fn adam_betas_must_lie_in_zero_one() {
    let v = with(base(), "/training/optimizer", json!({"type": "adamw", "beta1": -0.1, "beta2": 1.0}));
    let errors = invalid(&v);
    assert_eq!(errors.pointers(), vec!["/training/optimizer/beta1", "/training/optimizer/beta2"]);
}

#[test]
fn nesterov_needs_momentum_without_dampening() {
    let v = with(base(), "/training/optimizer", json!({"type": "sgd", "nesterov": true}));
    assert_problem(&invalid(&v), "/training/optimizer/nesterov", "needs `momentum` > 0");
    valid(&with(base(), "/training/optimizer", json!({"type": "sgd", "nesterov": true, "momentum": 0.9})));
}

#[test]
fn steps_and_epochs_together_are_refused() {
    let v = with(base(), "/training/epochs", json!(2));
    assert_problem(&invalid(&v), "/training/epochs", "not both");
}

#[test]
fn inline_data_problems_are_reported_per_sample() {
    let inline = |x: Value, y: Value| with(base(), "/data", json!({"type": "inline", "x": x, "y": y}));
    assert_problem(&invalid(&inline(json!([]), json!([]))), "/data/x", "at least one sample");
    let errors = invalid(&inline(json!([[0.0, 1.0], [1.0], [1.0, 1.0]]), json!([0, 1, 1])));
    assert_eq!(detail_at(&errors, "/data/x/1"), "row 1 of `x` has 1 values but the first has 2");
    let errors = invalid(&inline(json!([[0.0, 1.0], [1.0, 0.0]]), json!([0, 1, 1])));
    assert_eq!(detail_at(&errors, "/data/y"), "`y` has 3 targets but `x` has 2 samples");
    let errors = invalid(&inline(json!([[0.0, 1.0], [1.0, 0.0]]), json!([0, -1])));
    assert_problem(&errors, "/data/y/1", "class label -1 is negative");
    let errors = invalid(&inline(json!([[0.0, 1.0], [1.0, 0.0]]), json!([0.0, 0.5])));
    assert_problem(&errors, "/data/y/1", "label 0.5 is not a class index");
    let errors = invalid(&inline(json!([[], []]), json!([0, 1])));
    assert_problem(&errors, "/data/x/0", "at least one value");
}

#[test]
fn integral_decimal_labels_count_as_classes_under_cross_entropy() {
    let v = with(base(), "/data", json!({"type": "inline", "x": [[0.0, 1.0], [1.0, 0.0]], "y": [0.0, 1.0]}));
    let c = valid(&v);
    let crate::engine::config::DataConfig::Inline { y, .. } = c.data else { panic!() };
    assert_eq!(y, crate::engine::config::InlineTargets::Classes(vec![0, 1]));
}

#[test]
fn inline_classes_are_the_largest_label_plus_one() {
    let v = with(base(), "/data", json!({"type": "inline", "x": [[0.0, 1.0], [1.0, 0.0]], "y": [0, 4]}));
    assert_problem(&invalid(&v), "/model/layers/1/units", "over the 5 classes");
}

#[test]
fn generated_data_parameters_are_checked() {
    let v = with(base(), "/data", json!({"type": "circles", "factor": 1.5, "noise": -1}));
    let errors = invalid(&v);
    assert_problem(&errors, "/data/factor", "must be in (0, 1)");
    assert_problem(&errors, "/data/noise", ">= 0");
    let v = with(base(), "/data", json!({"type": "spirals", "classes": 1}));
    assert_problem(&invalid(&v), "/data/classes", "at least 2");
    let v = with(base(), "/data", json!({"type": "teacher", "classes": 1}));
    assert_problem(&invalid(&v), "/data/classes", "0 (regression) or at least 2");
}

#[test]
fn over_limit_values_report_the_computed_value_and_the_limit() {
    // 2*8 + 8 + 8*2 + 2 = 42 parameters.
    let limits = Limits { max_params: 40, ..Limits::default() };
    assert_eq!(detail_at(&invalid_with(&base(), &limits), "/model"), "the network has 42 parameters; the limit is 40");

    let limits = Limits { max_units: 4, ..Limits::default() };
    assert_eq!(
        detail_at(&invalid_with(&base(), &limits), "/model/layers/0/units"),
        "the layer has 8 units; the limit is 4"
    );

    // 2*4096 + 4096 + 4 * (4096*4096 + 4096) = 67,137,536 parameters.
    let v = with(base(), "/model/layers/0/units", json!(4096));
    let v = with(v, "/model/layers/1", json!({"type": "mlp", "depth": 4, "width": 4096}));
    let v = with(v, "/training/loss", json!("mse"));
    let errors = invalid(&v);
    assert_eq!(detail_at(&errors, "/model"), "the network has 67,137,536 parameters; the limit is 50,000,000");

    let limits = Limits { max_samples: 10, max_batch_size: 8, max_steps: 5, ..Limits::default() };
    let errors = invalid_with(&base(), &limits);
    assert_eq!(detail_at(&errors, "/data/samples"), "the data has 64 samples; the limit is 10");
    assert_eq!(detail_at(&errors, "/training/batch_size"), "a batch has 16 samples; the limit is 8");
    assert_eq!(detail_at(&errors, "/training/steps"), "training has 10 steps; the limit is 5");
}

#[test]
fn epochs_over_the_step_limit_say_how_the_steps_were_computed() {
    let v = without(with(base(), "/training/epochs", json!(1000)), "/training/steps");
    let limits = Limits { max_steps: 1000, ..Limits::default() };
    assert_eq!(
        detail_at(&invalid_with(&v, &limits), "/training/epochs"),
        "training (1,000 epochs of 4 batches) has 4,000 steps; the limit is 1,000"
    );
}

#[test]
fn compute_over_the_limit_reports_its_factors() {
    let limits = Limits { max_compute: 1000, ..Limits::default() };
    assert_eq!(
        detail_at(&invalid_with(&base(), &limits), "/training/steps"),
        "training (42 parameters x 10 steps x 16 samples per batch) has 6,720 parameter-sample updates; the limit is 1,000"
    );
}

#[test]
fn an_absurd_mlp_depth_is_refused_without_expanding_it() {
    let v = with(base(), "/model/layers/0", json!({"type": "mlp", "depth": 1_000_000_000_000u64, "width": 8}));
    let errors = invalid(&v);
    assert_eq!(
        detail_at(&errors, "/model/layers"),
        "the network has 1,000,000,000,001 layers (with mlp expanded); the limit is 1,000"
    );
}

#[test]
fn an_empty_model_is_refused() {
    let v = with(base(), "/model/layers", json!([]));
    assert_problem(&invalid(&v), "/model/layers", "at least one layer");
}

#[test]
fn parse_and_validation_problems_come_from_separate_passes() {
    // Structural problems stop before validation: semantic checks need typed values.
    let v = with(base(), "/model/layers/0/units", json!("8"));
    let v = with(v, "/training/batch_size", json!(0));
    let errors = parse_err(&v);
    assert_eq!(errors.pointers(), vec!["/model/layers/0/units"]);
}
