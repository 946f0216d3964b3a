//! gradscope against PyTorch: the reference files in `tests/reference/` were made by
//! `tests/reference/make_reference.py` (`grads_*`, `optim_*`), `make_rnn_reference.py` (`rnn_*`)
//! and `make_attention_reference.py` (`attn_*`: `nn.MultiheadAttention`, causal or not, `pool`
//! last/mean, and pre-LN / post-LN `nn.TransformerEncoderLayer` blocks with relu and gelu, one
//! forward/backward each; torch 2.15, float64) and are compared here without Python.
//! Tolerance: max |ours - torch| <= 1e-5 x the largest |torch| value of the file; losses within
//! 1e-9 relative.

// Tests may panic on a broken expectation; the crate's unwrap/expect lints are for library code.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use serde_json::Value;

use common::{gradscope, numbers, read_json, root, temp_json};

fn references(prefix: &str) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(root().join("tests/reference"))
        .expect("tests/reference")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(prefix) && n.ends_with(".json"))
        })
        .collect();
    files.sort();
    files
}

/// Compares two parameter trees key by key, so that a mislabelled tensor cannot hide.
fn compare(ours: &Value, theirs: &Value, at: &str, worst: &mut (f64, String)) {
    match (ours, theirs) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, tv) in b {
                let ov = a.get(k).unwrap_or_else(|| panic!("{at}/{k} missing from gradscope's output"));
                compare(ov, tv, &format!("{at}/{k}"), worst);
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "{at}: length");
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                compare(x, y, &format!("{at}/{i}"), worst);
            }
        }
        (Value::Number(x), Value::Number(y)) => {
            let d = (x.as_f64().unwrap_or(f64::NAN) - y.as_f64().unwrap_or(f64::NAN)).abs();
            if d > worst.0 || d.is_nan() {
                *worst = (d, at.to_string());
            }
        }
        _ => panic!("{at}: gradscope gave {ours}, torch {theirs}"),
    }
}

/// Asserts max |ours - theirs| <= 1e-5 x max |theirs|, key by key; prints the margin.
fn assert_close(ours: &Value, theirs: &Value, what: &str) {
    let mut worst = (0.0, String::new());
    compare(ours, theirs, "", &mut worst);
    let tol = 1e-5 * scale(theirs);
    eprintln!("{what}: max |diff| {:e} (tolerance {tol:e})", worst.0);
    assert!(worst.0 <= tol, "{what}: max diff {:e} at {} (tolerance {tol:e})", worst.0, worst.1);
}

fn scale(v: &Value) -> f64 {
    let mut all = Vec::new();
    numbers(v, &mut all);
    all.iter().fold(0.0f64, |m, x| m.max(x.abs()))
}

/// `gradscope analyze --gradients` on a reference's spec: the report, checked to have PyTorch's
/// gradients (key by key) and its loss at step 0 (to 1e-9 relative).
fn analyze_matches(file: &std::path::Path) -> Value {
    let reference = read_json(file);
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("spec.json").to_string();
    let spec = temp_json(&name, &reference["spec"]);
    let out = gradscope(&["analyze", "--gradients", spec.to_str().expect("utf-8 path")], None);
    assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("report JSON");
    assert_close(&report["gradients"], &reference["gradients"], &name);
    if let Some(expected) = reference["loss"].as_f64() {
        let loss = report["loss"][0].as_f64().expect("loss at step 0");
        assert!((loss - expected).abs() <= 1e-9 * expected.abs().max(1.0), "{name}: loss {loss} vs {expected}");
    }
    report
}

/// `gradscope analyze --gradients` on every gradient reference: every layer type, activation and
/// loss gives PyTorch's gradients.
#[test]
fn analyze_gradients_match_pytorch() {
    let files = references("grads_");
    assert!(files.len() >= 14, "expected the gradient references, found {}", files.len());
    for file in files {
        assert!(read_json(&file)["loss"].is_f64(), "{}: no reference loss", file.display());
        analyze_matches(&file);
    }
}

/// `gradscope run --params-out` after 10 steps of each optimiser (weight decay, clipping)
/// lands on torch.optim's weights.
#[test]
fn ten_optimizer_steps_match_torch_optim() {
    let files = references("optim_");
    assert!(files.len() >= 11, "expected the optimiser references, found {}", files.len());
    for file in files {
        let reference = read_json(&file);
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("spec.json").to_string();
        let spec = temp_json(&name, &reference["spec"]);
        let params_out = spec.with_extension("params.json");
        let out = gradscope(
            &["run", spec.to_str().expect("utf-8"), "--params-out", params_out.to_str().expect("utf-8")],
            None,
        );
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        let trained = read_json(&params_out);
        let ours = &trained["model"]["layers"];
        assert_close(ours, &reference["parameters"], &name);
    }
}

/// Recurrent networks (vanilla tanh/relu, LSTM, GRU, stacked, return_sequences, truncated BPTT):
/// PyTorch's gradients, and its ||dL/dh_t|| for every t of the first recurrent layer.
#[test]
fn rnn_gradients_and_timestep_norms_match_pytorch() {
    let files = references("rnn_");
    assert!(files.len() >= 9, "expected the recurrent references, found {}", files.len());
    for file in files {
        let reference = read_json(&file);
        let report = analyze_matches(&file);
        let first_rnn = reference["spec"]["model"]["layers"]
            .as_array()
            .and_then(|l| l.iter().position(|x| x["type"] == "rnn"))
            .expect("an rnn layer");
        let expected = &reference["timesteps"][first_rnn.to_string()];
        let name = file.display().to_string();
        assert_close(&report["timesteps"]["grad_norm"][0], expected, &format!("{name} timesteps"));
    }
}

/// Self-attention (`nn.MultiheadAttention`, with and without the causal mask), `pool` (last and
/// mean) and transformer encoder blocks (`nn.TransformerEncoderLayer`, pre-LN and post-LN, relu
/// and gelu feed-forward, two causal pre-LN blocks with per-step targets): PyTorch's gradients
/// and loss.
#[test]
fn attention_and_transformer_block_gradients_match_pytorch() {
    let files = references("attn_");
    assert!(files.len() >= 7, "expected the attention references, found {}", files.len());
    for file in files {
        assert!(read_json(&file)["loss"].is_f64(), "{}: no reference loss", file.display());
        analyze_matches(&file);
    }
}

/// The one-block `nn.TransformerEncoderLayer` references (pre- and post-LN, relu and gelu) written
/// as one `transformer` layer whose `blocks[0]` holds the `state_dict` by its own names: same
/// loss, and the gradients come back under those names in `blocks[0]`.
#[test]
fn transformer_layer_with_state_dict_names_matches_the_encoder_layer_references() {
    let files: Vec<_> = ["attn_pre_ln_", "attn_post_ln_"].iter().flat_map(|p| references(p)).collect();
    assert_eq!(files.len(), 4, "expected pre/post-LN x relu/gelu references");
    for file in files {
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("ref").to_string();
        let reference = read_json(&file);
        let layers = reference["spec"]["model"]["layers"].as_array().expect("layers").clone();
        let grads = reference["gradients"].as_array().expect("gradients").clone();
        let norm_first = layers[1]["layers"][0]["type"] == "layer_norm";
        // Where each part sits in the composed spec: (layer index, index inside the residual).
        let parts: [(&str, usize, Option<usize>); 5] = if norm_first {
            [
                ("norm1", 1, Some(0)),
                ("self_attn", 1, Some(1)),
                ("norm2", 2, Some(0)),
                ("linear1", 2, Some(1)),
                ("linear2", 2, Some(2)),
            ]
        } else {
            [
                ("self_attn", 1, Some(0)),
                ("norm1", 2, None),
                ("linear1", 3, Some(0)),
                ("linear2", 3, Some(1)),
                ("norm2", 4, None),
            ]
        };
        let at = |tree: &[Value], (i, j): (usize, Option<usize>)| -> Value {
            match j {
                Some(j) => tree[i]["layers"][j].clone(),
                None => tree[i].clone(),
            }
        };
        let (mut block, mut block_grads) = (serde_json::Map::new(), serde_json::Map::new());
        for (part, i, j) in parts {
            let (layer, grad) = (at(&layers, (i, j)), at(&grads, (i, j)));
            for (k, v) in grad.as_object().expect("gradient object") {
                block.insert(format!("{part}.{k}"), layer[k].clone());
                block_grads.insert(format!("{part}.{k}"), v.clone());
            }
        }
        let attention = &at(&layers, parts.iter().find(|p| p.0 == "self_attn").map(|p| (p.1, p.2)).expect("attn"));
        let linear1 = &at(&layers, parts.iter().find(|p| p.0 == "linear1").map(|p| (p.1, p.2)).expect("linear1"));
        let end = if norm_first { 3 } else { 5 };
        let transformer = serde_json::json!({
            "type": "transformer",
            "heads": attention["heads"],
            "ffn": linear1["units"],
            "activation": linear1["activation"],
            "norm_first": norm_first,
            "blocks": [block],
        });
        let mut new_layers = vec![layers[0].clone(), transformer];
        new_layers.extend(layers[end..].iter().cloned());
        let mut expected = vec![grads[0].clone(), serde_json::json!({"blocks": [block_grads]})];
        expected.extend(grads[end..].iter().cloned());
        let mut spec = reference["spec"].clone();
        spec["model"]["layers"] = Value::Array(new_layers);
        let path = temp_json(&format!("transformer_{name}"), &spec);
        let out = gradscope(&["analyze", "--gradients", path.to_str().expect("utf-8 path")], None);
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        let report: Value = serde_json::from_slice(&out.stdout).expect("report JSON");
        assert_close(&report["gradients"], &Value::Array(expected), &format!("transformer layer, {name}"));
        let (loss, torch) = (report["loss"][0].as_f64().expect("loss"), reference["loss"].as_f64().expect("loss"));
        assert!((loss - torch).abs() <= 1e-9 * torch.abs().max(1.0), "{name}: loss {loss} vs {torch}");
    }
}
