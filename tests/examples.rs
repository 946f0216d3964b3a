//! `gradscope run` on every spec in `examples/` produces a report that validates against the
//! Report schema of the committed OpenAPI document — the shape clients are written against.

// Tests may panic on a broken expectation; the crate's unwrap/expect lints are for library code.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use common::{read_json, root};
use serde_json::{json, Value};

/// A JSON Schema (2020-12, which OpenAPI 3.1 schemas are) whose root is the Report component,
/// with the document's other components reachable through the same `#/components/...` refs.
fn report_validator() -> jsonschema::Validator {
    let doc = common::read_json(&root().join("openapi/openapi.json"));
    let schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": "#/components/schemas/Report",
        "components": doc["components"].clone(),
    });
    jsonschema::validator_for(&schema).expect("the Report schema compiles")
}

fn run_example(path: &Path) -> Value {
    let out = common::gradscope(&["run", path.to_str().unwrap()], None);
    assert!(out.status.success(), "{}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()))
}

#[test]
fn every_example_report_validates_against_the_openapi_report_schema() {
    let validator = report_validator();
    let mut examples: Vec<PathBuf> = std::fs::read_dir(root().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    examples.sort();
    assert!(examples.len() >= 10, "examples/ has {} specs", examples.len());
    // Two at a time: the machine has two cores and the longest example trains for a while.
    let reports: Vec<(PathBuf, Value)> = std::thread::scope(|s| {
        let (a, b) = examples.split_at(examples.len() / 2);
        let run = |part: &[PathBuf]| part.iter().map(|p| (p.clone(), run_example(p))).collect::<Vec<_>>();
        let h = s.spawn(move || run(b));
        let mut out = run(a);
        out.extend(h.join().unwrap());
        out
    });
    for (path, report) in &reports {
        let errors: Vec<String> =
            validator.iter_errors(report).map(|e| format!("{} at {}", e, e.instance_path())).take(5).collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
        assert_eq!(report["report_version"], 1, "{}", path.display());
    }
}

#[test]
fn the_schema_check_rejects_a_broken_report() {
    // The validator is not vacuous: a report missing its summary, or with a string for a number, fails.
    let validator = report_validator();
    let mut report = run_example(&root().join("examples/explicit-weights.json"));
    assert!(validator.is_valid(&report));
    report["summary"]["steps"] = json!("ten");
    assert!(!validator.is_valid(&report));
    report.as_object_mut().unwrap().remove("summary");
    assert!(!validator.is_valid(&report));
}

#[test]
fn every_experiment_example_is_accepted_with_every_run_validated() {
    use gradscope::spec::experiment::{admit, parse_experiment, ExperimentLimits};
    use gradscope::spec::Limits;
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("examples/experiments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "examples/experiments has {} requests", files.len());
    for file in files {
        let plan = parse_experiment(&read_json(&file)).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let limits = ExperimentLimits::default();
        let (base, variants) = plan.variants(None, &limits).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(variants.len() >= 3 && variants[0].baseline, "{}", file.display());
        admit(variants, &plan.seeds(&base, &limits).unwrap(), &Limits::default(), &limits)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }
}
