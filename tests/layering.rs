//! The structure of ARCHITECTURE.md, enforced by reading the sources:
//!
//! - each module may only use the layers above it;
//! - no import cycle between source files;
//! - no source file under `src/` over [`MAX_LINES`] lines;
//! - no JSON Pointer literal in `src/engine` (the engine does not know the JSON);
//! - no diagnostic code spelled as a string literal outside test code and attributes (the codes
//!   are `DiagnosticCode`'s serde names).
//!
//! The sources are lexed (`common/source.rs`), so comments and string literals never count as
//! code. Each rule is a function from the sources to its findings, tested here on synthetic
//! sources both ways (it fires on a bad input, stays quiet on a good one) and run on `src/`.

// Tests may panic on a broken expectation; the crate's unwrap/expect lints are for library code.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;
#[path = "common/source.rs"]
mod source;

use std::collections::BTreeMap;
use std::path::Path;

use source::{cycles, lex, shortest_cycle, Crate, Edge, Kind};

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
    let mut hits = Vec::new();
    for (path, text) in files {
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for f in forbidden.iter().filter(|f| code.contains(**f)) {
                hits.push(format!("{path}:{}: `{f}` is not allowed in src/{module}", n + 1));
            }
        }
    }
    assert!(hits.is_empty(), "{}\n(see the layers in ARCHITECTURE.md)", hits.join("\n"));
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
            "crate::jobs",
            "crate::api",
            "crate::config",
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

// ---------------------------------------------------------------------------------------------
// The rules
// ---------------------------------------------------------------------------------------------

/// Most lines a file under `src/` may have. A module's tests in their own file (`tests.rs`)
/// count apart.
const MAX_LINES: usize = 1000;

/// Import cycles between files, each with the edges that close it and the line that creates
/// each edge.
///
/// An edge `a.rs -> b.rs` is a `use` declaration or a qualified path in `a.rs` (`crate::x::y`,
/// `super::x`, `self::x`, or a child module's name `x::y`) whose longest prefix that is a file
/// module is `b.rs` (`src/x/y.rs`, `src/x/y/mod.rs`; `mod.rs` and `lib.rs` are their directory's
/// module). Not edges: `pub use` (a module's facade), `mod x;`, paths in comments, strings,
/// attributes and `#[cfg(test)]` items, and test-only files (under a `tests` directory or
/// declared `#[cfg(test)] mod x;`).
fn import_cycles(krate: &Crate) -> Vec<String> {
    let graph = krate.graph();
    cycles(&graph)
        .into_iter()
        .map(|component| {
            let mut msg = format!("import cycle between {}:", component.join(", "));
            for from in &component {
                for (to, e) in graph[from].iter().filter(|(to, _)| component.contains(to)) {
                    let file = krate.files.iter().find(|f| f.rel == e.from).expect("edge from a known file");
                    msg += &format!("\n    {}:{} -> {to}    `{}`", e.from, e.line, file.line(e.line));
                }
            }
            msg += &format!("\n  e.g. {}", shortest_cycle(&graph, &component, &component[0]).join(" -> "));
            msg
        })
        .collect()
}

/// Files under `src/` with more than [`MAX_LINES`] lines.
fn long_files(krate: &Crate) -> Vec<String> {
    krate
        .files
        .iter()
        .map(|f| (f, f.text.lines().count()))
        .filter(|(_, n)| *n > MAX_LINES)
        .map(|(f, n)| format!("{}: {n} lines (limit {MAX_LINES})", f.rel))
        .collect()
}

/// A string that reads as a JSON Pointer into the spec: it starts with `/` and a letter or `{`
/// (`"/data/noise"`, `"/model/layers/{}"`), or contains `/layers/`.
fn is_json_pointer(s: &str) -> bool {
    let mut c = s.chars();
    (c.next() == Some('/') && c.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '{')) || s.contains("/layers/")
}

/// JSON Pointer string literals (also `format!` strings) in `src/engine`, its tests included: an
/// engine test that expects a pointer means the engine makes one.
fn engine_json_pointers(krate: &Crate) -> Vec<String> {
    let mut out = Vec::new();
    for f in krate.files.iter().filter(|f| f.rel.starts_with("src/engine/")) {
        for t in f.tokens.iter().filter(|t| t.kind == Kind::Str && is_json_pointer(&t.text)) {
            out.push(format!("{}:{}: {:?}", f.rel, t.line, t.text));
        }
    }
    out
}

/// The wire names of the diagnostic codes (`DiagnosticCode`, `rename_all = "snake_case"`).
const DIAGNOSTIC_CODES: [&str; 8] = [
    "non_finite",
    "vanishing_gradient",
    "exploding_gradient",
    "saturation",
    "dead_units",
    "update_ratio",
    "long_range_vanishing",
    "not_learning",
];

/// The same words in other vocabularies, spelled as strings on purpose: `(file, code, the text
/// around the literal that marks the use, which vocabulary)`. A literal is exempt when it lies
/// inside an occurrence of the text on its line.
const OTHER_VOCABULARIES: [(&str, &str, &str, &str); 1] =
    [("src/jobs/mod.rs", "non_finite", "FailureCode::NonFinite => \"non_finite\"", "a job failure code")];

/// String literals equal to a diagnostic code in the code under `src/`.
///
/// Not counted: test code (`#[cfg(test)]` items, test-only files), attributes
/// (`#[serde(rename = "…")]`), JSON object keys (`x["saturation"]`, `.get("non_finite")`,
/// `"saturation": …` in `json!`: series and summary fields have these names too), and the uses
/// of [`OTHER_VOCABULARIES`].
fn diagnostic_code_literals(krate: &Crate) -> Vec<String> {
    let mut out = Vec::new();
    for f in krate.files.iter().filter(|f| !f.test_only) {
        let t: Vec<_> = f.tokens.iter().filter(|t| !t.test).collect();
        for (i, tok) in t.iter().enumerate() {
            if tok.kind != Kind::Str || tok.attr || !DIAGNOSTIC_CODES.contains(&tok.text.as_str()) {
                continue;
            }
            let at = |k: isize| i.checked_add_signed(k).and_then(|k| t.get(k)).map_or("", |x| x.text.as_str());
            let key = (at(-1) == "[" && at(1) == "]")
                || (at(-1) == "(" && at(-2) == "get" && at(-3) == "." && at(1) == ")")
                || at(1) == ":";
            let line = f.text.lines().nth(tok.line - 1).unwrap_or("");
            let col = line.char_indices().nth(tok.col - 1).map_or(0, |(b, _)| b);
            let other = OTHER_VOCABULARIES.iter().any(|(file, code, around, _)| {
                *file == f.rel
                    && *code == tok.text
                    && line.match_indices(around).any(|(s, m)| s <= col && col < s + m.len())
            });
            if !key && !other {
                out.push(format!("{}:{}: \"{}\"    `{}`", f.rel, tok.line, tok.text, line.trim()));
            }
        }
    }
    out
}

fn src() -> Crate {
    Crate::read(&common::root())
}

fn synthetic(files: &[(&str, &str)]) -> Crate {
    Crate::new(files.iter().map(|(p, t)| (p.to_string(), t.to_string())).collect())
}

// ---------------------------------------------------------------------------------------------
// The rules on the sources
// ---------------------------------------------------------------------------------------------

#[test]
fn no_import_cycle_between_source_files() {
    let found = import_cycles(&src());
    assert!(
        found.is_empty(),
        "{}\n\nBreak each cycle: move what both sides need into a module that depends on neither, or pass it \
         in as an argument; a `pub use` facade does not count as an edge (see `import_cycles` in tests/layering.rs).",
        found.join("\n")
    );
}

#[test]
fn no_source_file_is_over_a_thousand_lines() {
    let found = long_files(&src());
    assert!(
        found.is_empty(),
        "{}\n\nSplit each into a directory module (`x.rs` -> `x/mod.rs` and parts with a module doc each); \
         tests in their own `tests.rs` count apart.",
        found.join("\n")
    );
}

#[test]
fn engine_has_no_json_pointer_literals() {
    let found = engine_json_pointers(&src());
    assert!(
        found.is_empty(),
        "{} JSON Pointer literals in src/engine:\n{}\n\nThe engine does not know the JSON: report the field (an \
         enum or a typed path) in its error and let `spec` spell the pointer.",
        found.len(),
        found.join("\n")
    );
}

#[test]
fn diagnostic_codes_are_not_spelled_as_strings() {
    let found = diagnostic_code_literals(&src());
    assert!(
        found.is_empty(),
        "{} diagnostic codes spelled as string literals:\n{}\n\nUse the `DiagnosticCode` enum (its serde \
         names are the wire codes). A word that belongs to another vocabulary (a verdict, an outcome, a field) \
         goes into OTHER_VOCABULARIES in tests/layering.rs, with the text that marks its use.",
        found.len(),
        found.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// The detectors, both ways
// ---------------------------------------------------------------------------------------------

fn graph_of(edges: &[(&str, &str)]) -> BTreeMap<String, BTreeMap<String, ()>> {
    let mut g: BTreeMap<String, BTreeMap<String, ()>> = BTreeMap::new();
    for (a, b) in edges {
        g.entry(a.to_string()).or_default().insert(b.to_string(), ());
        g.entry(b.to_string()).or_default();
    }
    g
}

#[test]
fn cycle_finder_reports_each_strongly_connected_component() {
    // a -> b -> c -> a and d <-> e, joined by c -> d (one way); f hangs off a.
    let g = graph_of(&[("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"), ("d", "e"), ("e", "d"), ("a", "f")]);
    assert_eq!(cycles(&g), vec![vec!["a", "b", "c"], vec!["d", "e"]]);
    let component: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
    assert_eq!(shortest_cycle(&g, &component, "b"), ["b", "c", "a", "b"]);
    // A chord gives a shorter way back.
    let g = graph_of(&[("a", "b"), ("b", "c"), ("c", "d"), ("d", "a"), ("b", "a")]);
    assert_eq!(cycles(&g), vec![vec!["a", "b", "c", "d"]]);
    let component: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
    assert_eq!(shortest_cycle(&g, &component, "a"), ["a", "b", "a"]);
}

#[test]
fn cycle_finder_accepts_a_layered_graph() {
    let g = graph_of(&[("api", "jobs"), ("api", "analysis"), ("jobs", "analysis"), ("analysis", "engine")]);
    assert!(cycles(&g).is_empty());
    assert!(cycles(&graph_of(&[])).is_empty());
}

fn edges(krate: &Crate) -> Vec<(String, String, usize)> {
    let mut out: Vec<(String, String, usize)> = krate
        .graph()
        .into_values()
        .flat_map(|m| m.into_values())
        .map(|Edge { from, to, line }| (from, to, line))
        .collect();
    out.sort();
    out
}

#[test]
fn file_graph_follows_use_declarations_and_qualified_paths() {
    let krate = synthetic(&[
        ("src/lib.rs", "pub mod a;\npub mod b;\npub mod c;\npub mod d;\nmod main_like;\n"),
        ("src/a/mod.rs", "pub mod x;\npub mod y;\npub use x::Thing;\nuse y::Other;\n"),
        ("src/a/x.rs", "use super::{self as parent, y::{Deep, More as M}};\nfn f() {}\n"),
        ("src/a/y.rs", "fn g() -> crate::b::B {\n    crate::b::B::default()\n}\n"),
        ("src/b.rs", "pub fn h() {\n    let _ = self::inner::k();\n    super::c::C::new();\n}\n"),
        ("src/c.rs", "mod inline {\n    use super::super::d::D;\n}\n"),
        ("src/d.rs", "use std::fmt;\nuse ::serde::Serialize;\n"),
    ]);
    let e = |from: &str, to: &str, line| (format!("src/{from}"), format!("src/{to}"), line);
    assert_eq!(
        edges(&krate),
        vec![
            e("a/mod.rs", "a/y.rs", 4),
            e("a/x.rs", "a/mod.rs", 1),
            e("a/x.rs", "a/y.rs", 1),
            e("a/y.rs", "b.rs", 1),
            e("b.rs", "c.rs", 3),
            e("c.rs", "d.rs", 2),
        ]
    );
}

#[test]
fn comments_strings_facades_and_test_code_make_no_edges() {
    let krate = synthetic(&[
        ("src/lib.rs", "pub mod a;\npub mod b;\n"),
        ("src/a.rs", "pub fn a() {}\n"),
        (
            "src/b.rs",
            r####"//! Uses `crate::a::a` in the docs.
pub use crate::a::a;
pub(crate) use crate::a::a as again;
// use crate::a;
/* nested /* crate::a::a() */ still a comment: crate::a::a() */
const S: &str = "crate::a::a()";
const R: &str = r#"a "quoted" crate::a::a()"#;
const C: char = '"';
fn f<'a>(x: &'a str) -> &'a str { x }
#[doc = "crate::a::a"]
fn g() {}
#[cfg(test)]
mod tests {
    use crate::a::a;
}
#[cfg(test)]
use crate::a::a as test_only;
#[cfg(test)]
mod more;
"####,
        ),
        ("src/b/more.rs", "use crate::a::a;\n"),
        ("src/b/tests/helpers.rs", "use crate::a::a;\n"),
    ]);
    assert_eq!(edges(&krate), vec![]);
    let more = krate.files.iter().find(|f| f.rel == "src/b/more.rs").unwrap();
    assert!(more.test_only, "declared #[cfg(test)] mod more;");
}

#[test]
fn import_cycle_is_reported_with_each_edge_and_its_line() {
    let krate = synthetic(&[
        ("src/lib.rs", "pub mod a;\n"),
        ("src/a/mod.rs", "pub mod p;\npub mod q;\npub mod r;\npub use p::P;\n"),
        ("src/a/p.rs", "use super::q::Q;\npub struct P;\n"),
        ("src/a/q.rs", "pub struct Q;\n\nfn f() -> super::p::P {\n    todo!()\n}\n"),
        ("src/a/r.rs", "use super::p::P;\n"),
    ]);
    let found = import_cycles(&krate);
    assert_eq!(found.len(), 1, "{found:?}");
    let msg = &found[0];
    assert!(msg.starts_with("import cycle between src/a/p.rs, src/a/q.rs:"), "{msg}");
    assert!(msg.contains("src/a/p.rs:1 -> src/a/q.rs    `use super::q::Q;`"), "{msg}");
    assert!(msg.contains("src/a/q.rs:3 -> src/a/p.rs    `fn f() -> super::p::P {`"), "{msg}");
    assert!(msg.contains("e.g. src/a/p.rs -> src/a/q.rs -> src/a/p.rs"), "{msg}");
    assert!(!msg.contains("r.rs"), "r.rs only depends on the cycle: {msg}");
}

#[test]
fn lexer_keeps_strings_comments_chars_and_lifetimes_apart() {
    let toks = lex(r###"a::b /* x /* y */ "z" */ r#"c"d"# b"e" '\'' 'f' 'g: loop {} // "h"
"multi
line" x"###);
    let got: Vec<(Kind, &str, usize)> = toks.iter().map(|t| (t.kind, t.text.as_str(), t.line)).collect();
    assert_eq!(
        got,
        vec![
            (Kind::Ident, "a", 1),
            (Kind::PathSep, "::", 1),
            (Kind::Ident, "b", 1),
            (Kind::Str, "c\"d", 1),
            (Kind::Str, "e", 1),
            (Kind::Char, "'\\''", 1),
            (Kind::Char, "'f'", 1),
            (Kind::Lifetime, "'g", 1),
            (Kind::Punct, ":", 1),
            (Kind::Ident, "loop", 1),
            (Kind::Punct, "{", 1),
            (Kind::Punct, "}", 1),
            (Kind::Str, "multi\nline", 2),
            (Kind::Ident, "x", 3),
        ]
    );
}

#[test]
fn long_file_check_counts_lines() {
    let at_limit = "fn f() {}\n".repeat(MAX_LINES);
    let over = at_limit.clone() + "fn g() {}\n";
    let krate = synthetic(&[("src/ok.rs", &at_limit), ("src/big.rs", &over)]);
    assert_eq!(long_files(&krate), vec![format!("src/big.rs: {} lines (limit {MAX_LINES})", MAX_LINES + 1)]);
}

#[test]
fn json_pointer_check_finds_pointer_literals_in_the_engine_only() {
    let engine = r#"
fn f(i: usize) -> Vec<String> {
    // "/data/in_a_comment" is fine
    let a = "/data/noise".to_string();
    let b = format!("/model/layers/{}", i);
    let c = format!("/data/x/{i}");
    let d = format!("{}/layers/{}/units", "", i);
    let e = format!("{}", "/{}");
    let ok = ["a/b", "1/2", "/ 2", "/", "//", "per/layer", "x / y"];
    vec![a, b, c, d, e]
}
"#;
    let krate = synthetic(&[("src/engine/data.rs", engine), ("src/spec/validate.rs", r#"const P: &str = "/data";"#)]);
    assert_eq!(
        engine_json_pointers(&krate),
        vec![
            r#"src/engine/data.rs:4: "/data/noise""#,
            r#"src/engine/data.rs:5: "/model/layers/{}""#,
            r#"src/engine/data.rs:6: "/data/x/{i}""#,
            r#"src/engine/data.rs:7: "{}/layers/{}/units""#,
            r#"src/engine/data.rs:8: "/{}""#,
        ]
    );
}

#[test]
fn diagnostic_code_check_flags_code_literals_but_not_keys_attributes_or_tests() {
    let analysis = r#"
#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiagnosticCode {
    #[serde(rename = "saturation")]
    Saturation,
}
fn explain(code: &str) -> &str {
    match code {
        "vanishing_gradient" => "fades",
        _ => "",
    }
}
fn read(s: &serde_json::Value) -> bool {
    s["saturation"].is_null() && s.get("non_finite").is_none() && json!({"update_ratio": 1}).is_null()
}
fn verdict() -> &'static str {
    for (code, verdict) in [("dead_units", "dead_units")] {}
    "not_learning"
}
#[cfg(test)]
mod tests {
    const C: &str = "exploding_gradient";
}
"#;
    let krate = synthetic(&[
        ("src/analysis/diagnostics.rs", analysis),
        ("src/analysis/tests/fixtures.rs", r#"const C: &str = "long_range_vanishing";"#),
        ("src/jobs/mod.rs", r#"fn name() -> &'static str { FailureCode::NonFinite => "non_finite" }"#),
    ]);
    let found = diagnostic_code_literals(&krate);
    assert_eq!(
        found,
        vec![
            r#"src/analysis/diagnostics.rs:10: "vanishing_gradient"    `"vanishing_gradient" => "fades",`"#,
            // Both: a verdict spelled as a string is no exception either (verdicts are an enum).
            r#"src/analysis/diagnostics.rs:18: "dead_units"    `for (code, verdict) in [("dead_units", "dead_units")] {}`"#,
            r#"src/analysis/diagnostics.rs:18: "dead_units"    `for (code, verdict) in [("dead_units", "dead_units")] {}`"#,
            r#"src/analysis/diagnostics.rs:19: "not_learning"    `"not_learning"`"#,
        ]
    );
}
