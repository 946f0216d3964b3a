//! `docs/spec.md`, the spec reference, against the code, so that neither drifts from the other:
//!
//! - every property of every schema a request body reaches (`SubmitRequest` in the OpenAPI
//!   document the crate generates, as `gradscope openapi` prints it) is a row of the field table
//!   of its object, and every row names a property;
//! - every enumerated value and every `type` tag of a union is listed in its section;
//! - every JSON example is a spec (or a preset request) that parses and validates with the
//!   default limits, and the examples cover every layer type, data source, optimiser and cell;
//! - the documented defaults are the ones expansion writes out, and the limits table holds
//!   `Limits::default()` under the server flags that set each limit.
//!
//! The page's structure is what makes this possible: each object has a heading that names its
//! schema in backticks (`` ### `Dense` ``; a heading may name several, `` `OptimizerAdam`,
//! `OptimizerAdamw` ``), and its fields are a table whose header starts with `field`, one row per
//! field with the name in backticks first. A union's own table (`Activation`, `Data`) holds the
//! fields its variants share or, for the small unions, those of any variant.
//!
//! Test-only code: `unwrap`/`expect` are fine here (a failed one is a failed test).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use gradscope::engine::units::thousands;
use gradscope::spec::{check, Limits};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Reading the page.

/// A heading and what follows it up to the next heading.
#[derive(Debug)]
struct Section {
    heading: String,
    /// The backticked words of the heading (the schema names, where it names any).
    names: Vec<String>,
    /// The body, code blocks included.
    text: String,
    /// The backticked words of the body outside code blocks.
    words: Vec<String>,
    /// The field tables' rows: field name and the cells after it.
    fields: Vec<(String, Vec<String>)>,
}

fn doc() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/spec.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The backticked words of `s`, in order.
fn backticked(s: &str) -> Vec<String> {
    s.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

/// The cells of a table row (`| a | b |` -> `["a", "b"]`).
fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    inner.split('|').map(|c| c.trim().to_owned()).collect()
}

fn sections(doc: &str) -> Vec<Section> {
    let mut out: Vec<Section> = Vec::new();
    let mut in_code = false;
    for line in doc.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            let heading = line.trim_start_matches('#').trim().to_owned();
            out.push(Section {
                names: backticked(&heading),
                heading,
                text: String::new(),
                words: Vec::new(),
                fields: Vec::new(),
            });
            continue;
        }
        if let Some(s) = out.last_mut() {
            s.text.push_str(line);
            s.text.push('\n');
            if !in_code && !line.starts_with("```") {
                s.words.extend(backticked(line));
            }
        }
    }
    for s in &mut out {
        s.fields = field_rows(&s.text);
    }
    out
}

/// The rows of the tables in `text` whose header's first cell is `field`.
fn field_rows(text: &str) -> Vec<(String, Vec<String>)> {
    let mut rows = Vec::new();
    let mut in_fields = false;
    let mut header_seen = false;
    for line in text.lines() {
        if !line.trim_start().starts_with('|') {
            in_fields = false;
            header_seen = false;
            continue;
        }
        let c = cells(line);
        if !header_seen {
            header_seen = true;
            in_fields = c.first().is_some_and(|h| h == "field");
            continue;
        }
        if !in_fields || c.iter().all(|x| x.chars().all(|ch| ch == '-' || ch == ':')) {
            continue;
        }
        let name =
            backticked(&c[0]).into_iter().next().unwrap_or_else(|| panic!("a field row without a `name`: {line}"));
        rows.push((name, c[1..].to_vec()));
    }
    rows
}

/// The bodies of the fenced blocks of `lang` (```json).
fn code_blocks(doc: &str, lang: &str) -> Vec<String> {
    let mut out = Vec::new();
    // The open block: whether it is of `lang`, and its body.
    let mut open: Option<(bool, String)> = None;
    for line in doc.lines() {
        if let Some(info) = line.strip_prefix("```") {
            match open.take() {
                None => open = Some((info.trim() == lang, String::new())),
                Some((true, body)) => out.push(body),
                Some((false, _)) => {}
            }
        } else if let Some((_, body)) = open.as_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Reading the OpenAPI document.

struct Schemas {
    all: BTreeMap<String, Value>,
    /// The schemas a request body reaches, by name.
    spec: BTreeSet<String>,
    /// Union name -> its variants (tag -> schema name).
    unions: BTreeMap<String, BTreeMap<String, String>>,
    /// Variant schema name -> its union.
    union_of: BTreeMap<String, String>,
}

impl Schemas {
    fn load() -> Schemas {
        let doc = gradscope::api::openapi::document();
        let all: BTreeMap<String, Value> = doc["components"]["schemas"]
            .as_object()
            .expect("components/schemas")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut spec = BTreeSet::new();
        let mut todo = vec!["SubmitRequest".to_owned()];
        while let Some(name) = todo.pop() {
            if spec.insert(name.clone()) {
                let mut refs = Vec::new();
                collect_refs(&all[&name], &mut refs);
                todo.extend(refs);
            }
        }
        let mut unions = BTreeMap::new();
        let mut union_of = BTreeMap::new();
        for name in &spec {
            let Some(mapping) = all[name]["discriminator"]["mapping"].as_object() else { continue };
            let union = name.strip_suffix("Object").unwrap_or(name).to_owned();
            let variants: BTreeMap<String, String> = mapping
                .iter()
                .map(|(tag, r)| (tag.clone(), r.as_str().unwrap().rsplit('/').next().unwrap().to_owned()))
                .collect();
            for v in variants.values() {
                union_of.insert(v.clone(), union.clone());
            }
            unions.insert(union, variants);
        }
        Schemas { all, spec, unions, union_of }
    }

    fn properties(&self, name: &str) -> BTreeSet<String> {
        self.all[name]["properties"].as_object().map(|p| p.keys().cloned().collect()).unwrap_or_default()
    }

    fn enum_values(&self, name: &str) -> Vec<String> {
        self.all[name]["enum"]
            .as_array()
            .map(|v| v.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }

    /// The variants of `union` that require nothing but `type`.
    fn bare_variants(&self, union: &str) -> Vec<(String, String)> {
        self.unions[union]
            .iter()
            .filter(|(_, schema)| {
                self.all[schema.as_str()]["required"].as_array().is_none_or(|r| r.iter().all(|x| x == "type"))
            })
            .map(|(t, s)| (t.clone(), s.clone()))
            .collect()
    }
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, x) in map {
                match (k.as_str(), x) {
                    ("$ref", Value::String(r)) => {
                        out.extend(r.strip_prefix("#/components/schemas/").map(str::to_owned));
                    }
                    _ => collect_refs(x, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

/// Fails with every line of `missing` when there is any.
fn assert_none(what: &str, missing: &[String]) {
    assert!(missing.is_empty(), "{what} ({}):\n  {}", missing.len(), missing.join("\n  "));
}

// ---------------------------------------------------------------------------------------------
// Fields and values.

#[test]
fn every_property_of_every_spec_schema_is_in_the_table_of_its_object() {
    let (schemas, doc) = (Schemas::load(), doc());
    let sections = sections(&doc);
    let documented = |schema: &str, field: &str| {
        sections.iter().any(|s| s.names.iter().any(|n| n == schema) && s.fields.iter().any(|(f, _)| f == field))
    };
    let mut missing = Vec::new();
    for name in &schemas.spec {
        for p in schemas.properties(name) {
            let in_union = schemas.union_of.get(name).is_some_and(|u| documented(u, &p));
            if !documented(name, &p) && !in_union {
                missing.push(format!("{name}.{p}"));
            }
        }
    }
    assert!(schemas.spec.len() > 50, "only {} spec schemas found: {:?}", schemas.spec.len(), schemas.spec);
    assert_none("properties of the spec schemas missing from the field tables of docs/spec.md", &missing);
}

#[test]
fn every_documented_field_is_a_property_of_the_schema_its_heading_names() {
    let (schemas, doc) = (Schemas::load(), doc());
    let mut wrong = Vec::new();
    for s in sections(&doc) {
        if s.fields.is_empty() {
            continue;
        }
        let named: Vec<&String> = s.names.iter().filter(|n| schemas.spec.contains(*n)).collect();
        if named.is_empty() {
            wrong.push(format!("the field table under \"{}\" names no spec schema in its heading", s.heading));
        }
        for schema in named {
            for (field, _) in &s.fields {
                let ok = match schemas.unions.get(schema) {
                    // A union's table: a field of at least one variant.
                    Some(variants) => variants.values().any(|v| schemas.properties(v).contains(field)),
                    None => schemas.properties(schema).contains(field),
                };
                if !ok {
                    wrong.push(format!("{schema}.{field} (under \"{}\")", s.heading));
                }
            }
        }
    }
    assert_none("fields in docs/spec.md that the schemas do not have", &wrong);
}

#[test]
fn every_enumerated_value_and_union_type_is_listed_in_its_section() {
    let (schemas, doc) = (Schemas::load(), doc());
    let sections = sections(&doc);
    let listed = |owner: &str, value: &str| {
        sections.iter().any(|s| s.names.iter().any(|n| n == owner) && s.words.iter().any(|w| w == value))
    };
    let mut missing = Vec::new();
    let mut checked = 0;
    for name in &schemas.spec {
        // `ActivationName` is the bare names of the union `Activation`, listed with it.
        let owner = name.strip_suffix("Name").filter(|u| schemas.unions.contains_key(*u)).unwrap_or(name);
        for value in schemas.enum_values(name) {
            checked += 1;
            if !listed(owner, &value) {
                missing.push(format!("{name}: `{value}` (in the section of `{owner}`)"));
            }
        }
    }
    for (union, variants) in &schemas.unions {
        for tag in variants.keys() {
            checked += 1;
            if !listed(union, tag) {
                missing.push(format!("{union}: type `{tag}`"));
            }
        }
    }
    assert!(checked > 60, "only {checked} values checked");
    assert_none("values missing from docs/spec.md", &missing);
}

// ---------------------------------------------------------------------------------------------
// Examples.

/// The layer types of `layers`, those inside residual blocks included.
fn layer_types(layers: &Value, out: &mut BTreeSet<String>) {
    for layer in layers.as_array().into_iter().flatten() {
        let tag = layer.as_str().or_else(|| layer["type"].as_str()).unwrap_or_default();
        out.insert(tag.to_owned());
        if let Some(cell) = layer["cell"].as_str() {
            out.insert(format!("cell {cell}"));
        } else if tag == "rnn" {
            out.insert("cell vanilla".to_owned());
        }
        layer_types(&layer["layers"], out);
    }
}

/// `"x"` or `{"type": "x"}`.
fn tag(v: &Value) -> Option<&str> {
    v.as_str().or_else(|| v["type"].as_str())
}

#[test]
fn every_json_example_is_a_spec_that_validates_and_they_cover_every_kind() {
    let (schemas, doc) = (Schemas::load(), doc());
    let blocks = code_blocks(&doc, "json");
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, block) in blocks.iter().enumerate() {
        let value: Value = match serde_json::from_str(block) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("example {i} is not JSON: {e}\n{block}"));
                continue;
            }
        };
        if value.get("preset").is_some() {
            if !matches!(gradscope::spec::presets::requested(&value), Ok(Some(_))) {
                problems.push(format!("example {i} is not a valid preset request: {block}"));
            }
            continue;
        }
        if let Err(e) = check(&value, &Limits::default()) {
            problems.push(format!("example {i} ({}) does not validate: {e}", value["name"]));
            continue;
        }
        layer_types(&value["model"]["layers"], &mut seen);
        seen.extend(tag(&value["data"]).map(|t| format!("data {t}")));
        seen.extend(tag(&value["training"]["optimizer"]).map(|t| format!("optimizer {t}")));
    }
    assert!(blocks.len() >= 22, "only {} JSON examples", blocks.len());
    assert_none("JSON examples in docs/spec.md that are not valid specs", &problems);

    let mut wanted: Vec<String> = schemas.unions["Layer"].keys().cloned().collect();
    wanted.extend(schemas.unions["Data"].keys().map(|t| format!("data {t}")));
    wanted.extend(schemas.unions["Optimizer"].keys().map(|t| format!("optimizer {t}")));
    wanted.extend(schemas.enum_values("Cell").iter().map(|c| format!("cell {c}")));
    let uncovered: Vec<String> = wanted.into_iter().filter(|w| !seen.contains(w)).collect();
    assert_none("kinds no JSON example of docs/spec.md shows", &uncovered);
}

// ---------------------------------------------------------------------------------------------
// Defaults and limits.

/// A documented default as a JSON value, when the cell is one plain value: a number (`1e-5`,
/// `1000 (when ...)`), a backticked `true`/`false`/name, or a backticked JSON object. `None` for
/// prose (`required`, `none`, "`cross_entropy` for class targets, ...").
fn default_value(cell: &str) -> Option<Value> {
    let first = cell.split([' ', '(']).next().unwrap_or_default();
    if let Ok(x) = first.parse::<f64>() {
        return Some(json!(x));
    }
    let words = backticked(cell);
    if words.len() != 1 || cell.trim() != format!("`{}`", words[0]) {
        return None;
    }
    match words[0].as_str() {
        "true" => Some(json!(true)),
        "false" => Some(json!(false)),
        "null" => None,
        w if w.starts_with('{') => Some(serde_json::from_str(w).expect("a JSON default")),
        w => Some(json!(w)),
    }
}

/// Whether the expanded value `got` is the documented default `want`.
fn same_default(want: &Value, got: &Value) -> bool {
    match (want, got) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        // A bare name documents the object `{"type": name}` expansion writes.
        (Value::String(a), Value::Object(_)) => got["type"] == *a,
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| same_default(v, w)))
        }
        _ => want == got,
    }
}

/// A spec around `layer` (not validated: expansion needs only a parse).
fn with_layer(layer: Value) -> Value {
    json!({"model": {"input_dim": 2, "layers": [layer]}, "data": "xor"})
}

/// The smallest object of a layer type (its required fields).
fn minimal_layer(tag: &str) -> Value {
    let mut layer = match tag {
        "dense" | "rnn" => json!({"units": 3}),
        "mlp" => json!({"depth": 1, "width": 3}),
        "residual" => json!({"layers": [{"type": "dense", "units": 2}]}),
        "activation" => json!({"activation": "tanh"}),
        "attention" => json!({"heads": 1}),
        "transformer" => json!({"heads": 1, "ffn": 4}),
        _ => json!({}),
    };
    layer["type"] = json!(tag);
    layer
}

/// Where the defaults of `schema` can be read: the expanded value of a spec that leaves them
/// out. Several for a union (one per variant without a required field); none when expansion does
/// not write the object out.
fn expanded_objects(schemas: &Schemas, schema: &str) -> Vec<Value> {
    let expand = |spec: Value, pointer: &str| {
        let spec = gradscope::spec::parse(&spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
        serde_json::to_value(spec.expanded()).unwrap().pointer(pointer).cloned().unwrap()
    };
    let layer0 = "/model/layers/0";
    let each_bare = |union: &str, build: &dyn Fn(&str) -> Value, pointer: &str| {
        schemas.bare_variants(union).into_iter().map(|(t, _)| expand(build(&t), pointer)).collect::<Vec<_>>()
    };
    match (schema, schemas.union_of.get(schema).map(String::as_str)) {
        ("Spec", _) => vec![expand(with_layer(minimal_layer("dense")), "")],
        ("Training", _) => vec![expand(with_layer(minimal_layer("dense")), "/training")],
        ("Probes", _) => vec![expand(with_layer(minimal_layer("dense")), "/probes")],
        ("Activation", _) => each_bare(
            "Activation",
            &|t: &str| with_layer(json!({"type": "dense", "units": 2, "activation": t})),
            "/model/layers/0/activation",
        ),
        ("Init", _) => each_bare(
            "Init",
            &|t: &str| with_layer(json!({"type": "dense", "units": 2, "init": t})),
            "/model/layers/0/init",
        ),
        ("Norm", _) => each_bare(
            "Norm",
            &|t: &str| with_layer(json!({"type": "dense", "units": 2, "norm": t})),
            "/model/layers/0/norm",
        ),
        ("Data", _) => each_bare(
            "Data",
            &|t: &str| json!({"model": {"input_dim": 2, "layers": [minimal_layer("dense")]}, "data": t}),
            "/data",
        ),
        (_, Some("Layer")) => {
            let tag = schemas.all[schema]["properties"]["type"]["enum"][0].as_str().unwrap().to_owned();
            // An mlp's settings show on the dense layers it expands into.
            vec![expand(with_layer(minimal_layer(&tag)), layer0)]
        }
        (_, Some("Data")) => {
            let tag = schemas.all[schema]["properties"]["type"]["enum"][0].as_str().unwrap().to_owned();
            let data = match tag.as_str() {
                "inline" | "inline_sequences" => return Vec::new(),
                t => json!(t),
            };
            vec![expand(json!({"model": {"input_dim": 2, "layers": [minimal_layer("dense")]}, "data": data}), "/data")]
        }
        (_, Some("Optimizer")) => {
            let tag = schemas.all[schema]["properties"]["type"]["enum"][0].as_str().unwrap().to_owned();
            let mut spec = with_layer(minimal_layer("dense"));
            spec["training"] = json!({"optimizer": tag});
            vec![expand(spec, "/training/optimizer")]
        }
        _ => Vec::new(),
    }
}

#[test]
fn documented_defaults_are_the_ones_expansion_writes_out() {
    let (schemas, doc) = (Schemas::load(), doc());
    let mut wrong = Vec::new();
    let mut compared = 0;
    for s in sections(&doc) {
        for schema in s.names.iter().filter(|n| schemas.spec.contains(*n)) {
            let objects = expanded_objects(&schemas, schema);
            for (field, rest) in &s.fields {
                let Some(want) = rest.get(1).and_then(|cell| default_value(cell)) else { continue };
                // Only where expansion writes the field (a union's field: in the variants that have it).
                for got in objects.iter().filter_map(|o| o.get(field)) {
                    compared += 1;
                    if !same_default(&want, got) {
                        wrong.push(format!("{schema}.{field}: documented {want}, expanded {got}"));
                    }
                }
            }
        }
    }
    assert!(compared >= 80, "only {compared} defaults compared");
    assert_none("defaults in docs/spec.md that expansion does not apply", &wrong);
}

/// `1,000,000` -> 1000000.
fn count(cell: &str) -> Option<u64> {
    cell.replace(',', "").parse().ok()
}

#[test]
fn the_limits_table_holds_the_default_limits_under_the_flags_that_set_them() {
    type Get = fn(&Limits) -> u64;
    let limits: [(&str, Get); 9] = [
        ("--max-layers", |l| l.max_layers),
        ("--max-units", |l| l.max_units),
        ("--max-params", |l| l.max_params),
        ("--max-steps", |l| l.max_steps),
        ("--max-batch-size", |l| l.max_batch_size),
        ("--max-samples", |l| l.max_samples),
        ("--max-seq-len", |l| l.max_seq_len),
        ("--max-data-values", |l| l.max_data_values),
        ("--max-compute", |l| l.max_compute),
    ];
    let doc = doc();
    let section = sections(&doc).into_iter().find(|s| s.heading == "Limits").expect("a `## Limits` section");
    let rows: BTreeMap<String, String> = section
        .text
        .lines()
        .filter(|l| l.starts_with("| `--"))
        .map(|l| {
            let c = cells(l);
            (backticked(&c[0])[0].clone(), c[1].clone())
        })
        .collect();
    let defaults = Limits::default();
    let serve_defaults = gradscope::config::ServeArgs::try_parse_from(["gradscope"]).unwrap().limits.limits();
    let mut wrong = Vec::new();
    for (flag, get) in limits {
        match rows.get(flag).map(|c| count(c)) {
            None => wrong.push(format!("{flag} is not in the table")),
            Some(documented) if documented != Some(get(&defaults)) => {
                wrong.push(format!("{flag}: documented {documented:?}, Limits::default() {}", get(&defaults)))
            }
            Some(_) => {}
        }
        // The flag exists, sets this limit, and defaults to it.
        let set = gradscope::config::ServeArgs::try_parse_from(["gradscope", flag, "7"])
            .unwrap_or_else(|e| panic!("{flag}: {e}"))
            .limits
            .limits();
        if get(&set) != 7 || get(&serve_defaults) != get(&defaults) {
            wrong.push(format!("{flag} does not set this limit or defaults to another value"));
        }
    }
    assert!(rows.contains_key("--max-job-memory"), "--max-job-memory is not in the limits table");
    assert_none("the limits table of docs/spec.md", &wrong);

    let analyze = gradscope::jobs::service::default_analyze_limits();
    for text in [
        format!("`--analyze-max-params` ({})", thousands(analyze.max_params)),
        format!("`--analyze-max-samples` ({})", thousands(analyze.max_samples)),
        format!("a batch of at most {}", thousands(analyze.max_batch_size)),
    ] {
        let prose = section.text.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(prose.contains(&text), "the Limits section does not say {text:?}");
    }
}
