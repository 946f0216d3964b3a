//! The layering of ARCHITECTURE.md, enforced: each module may only use the layers above it.

// Tests may panic on a broken expectation; the crate's unwrap/expect lints are for library code.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::path::Path;

fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            out.push((path.display().to_string(), text));
        }
    }
}

fn assert_free_of(module: &str, forbidden: &[&str]) {
    let mut files = Vec::new();
    sources(&common::root().join("src").join(module), &mut files);
    assert!(!files.is_empty(), "no sources under src/{module}");
    for (path, text) in files {
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for f in forbidden {
                assert!(
                    !code.contains(f),
                    "{path}:{}: `{f}` is not allowed in src/{module} (see ARCHITECTURE.md)",
                    n + 1
                );
            }
        }
    }
}

#[test]
fn engine_depends_on_nothing_but_numerics() {
    assert_free_of(
        "engine",
        &[
            "serde",
            "tokio",
            "axum",
            "utoipa",
            "crate::spec",
            "crate::analysis",
            "crate::problem",
            "crate::cli",
            "std::fs",
            "std::net",
        ],
    );
}

#[test]
fn spec_does_not_reach_into_later_layers() {
    // `utoipa::ToSchema` derives are allowed: they document the wire types for the OpenAPI
    // document without tying the spec to a server (`utoipa_axum` would).
    assert_free_of(
        "spec",
        &["tokio", "axum", "crate::analysis", "crate::problem", "crate::cli", "crate::jobs", "crate::api"],
    );
}

#[test]
fn analysis_does_not_reach_into_the_command_line() {
    assert_free_of("analysis", &["tokio", "axum", "crate::cli", "crate::jobs", "crate::api", "crate::config"]);
}

#[test]
fn jobs_does_not_depend_on_http_or_the_layers_above() {
    assert_free_of("jobs", &["axum", "tower", "hyper", "reqwest", "crate::api", "crate::cli", "crate::config"]);
}

#[test]
fn api_does_not_depend_on_the_command_line() {
    assert_free_of("api", &["crate::cli"]);
}
