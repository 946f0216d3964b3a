//! Tests of the spec module: the fixture examples (`tests/fixtures/spec-examples/`), bare-string
//! forms, expansion, every kind of invalid spec, and property tests that nothing panics.
//!
//! Test-only code: `unwrap`/`expect` are fine here (a failed one is a failed test).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod data_checks;
mod examples;
mod expansion;
mod parsing;
mod properties;
mod schema;
mod sequences;
mod transformers;
mod validation;

use serde_json::{json, Value};

use super::*;
use crate::engine::config::RunConfig;

/// The fixture example specs (`tests/fixtures/spec-examples/`), by file name, sorted.
fn fixture_examples() -> Vec<(String, Value)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/spec-examples");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.file_name().unwrap().to_string_lossy().into_owned(), value)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(!out.is_empty(), "no examples found in {}", dir.display());
    out
}

/// A small valid spec to break in tests: 2 -> 8 (relu) -> 2 on xor.
fn base() -> Value {
    json!({
        "seed": 1,
        "model": {"input_dim": 2, "layers": [
            {"type": "dense", "units": 8, "activation": "relu"},
            {"type": "dense", "units": 2}
        ]},
        "data": {"type": "xor", "samples": 64},
        "training": {"steps": 10, "batch_size": 16, "loss": "cross_entropy", "optimizer": "sgd"},
        "probes": {"every": 1}
    })
}

/// `v` with the value at `pointer` replaced (or added, when the parent is an object).
fn with(mut v: Value, pointer: &str, new: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    match v.pointer_mut(parent).unwrap() {
        Value::Object(m) => {
            m.insert(key.to_owned(), new);
        }
        Value::Array(a) => a[key.parse::<usize>().unwrap()] = new,
        other => panic!("cannot set {pointer} in {other}"),
    }
    v
}

/// `v` without the member at `pointer`.
fn without(mut v: Value, pointer: &str) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    v.pointer_mut(parent).unwrap().as_object_mut().unwrap().remove(key);
    v
}

fn parse_ok(v: &Value) -> Spec {
    parse(v).unwrap_or_else(|e| panic!("{e}\nin {v:#}"))
}

fn parse_err(v: &Value) -> SpecErrors {
    match parse(v) {
        Ok(s) => panic!("expected parse errors, got {s:?}"),
        Err(e) => e,
    }
}

fn valid(v: &Value) -> RunConfig {
    parse_ok(v).validate(&Limits::default()).unwrap_or_else(|e| panic!("{e}\nin {v:#}"))
}

fn invalid_with(v: &Value, limits: &Limits) -> SpecErrors {
    match parse_ok(v).validate(limits) {
        Ok(c) => panic!("expected validation errors, got {c:?}"),
        Err(e) => e,
    }
}

fn invalid(v: &Value) -> SpecErrors {
    invalid_with(v, &Limits::default())
}

/// The detail reported at `pointer`; fails listing all problems when there is none.
fn detail_at<'a>(errors: &'a SpecErrors, pointer: &str) -> &'a str {
    errors
        .0
        .iter()
        .find(|e| e.pointer == pointer)
        .map(|e| e.detail.as_str())
        .unwrap_or_else(|| panic!("no problem at {pointer}; got:\n{errors}"))
}

/// Asserts a problem at `pointer` whose detail contains `needle`.
fn assert_problem(errors: &SpecErrors, pointer: &str, needle: &str) {
    let found = errors.0.iter().any(|e| e.pointer == pointer && e.detail.contains(needle));
    assert!(found, "no problem at {pointer} mentioning {needle:?}; got:\n{errors}");
}

/// Serialises the expanded spec and reads it back, as the report echo and patches do.
fn reparsed_expanded(spec: &Spec) -> Spec {
    let json = serde_json::to_value(spec.expanded()).unwrap();
    parse(&json).unwrap_or_else(|e| panic!("expanded spec does not parse: {e}\n{json:#}"))
}
