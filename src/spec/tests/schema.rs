//! The OpenAPI shape of the tagged unions (`spec/schema.rs`): named variants under a
//! discriminator, bare names exactly where the parser takes them, and every spec the project
//! ships valid against the `Spec` schema (and a broken one not).

use serde_json::{json, Value};
use utoipa::ToSchema;

use super::*;
use crate::spec::schema::{reshape, Schemas};

/// The unions, and where each sits in [`base`] for the bare-name test.
const UNIONS: [(&str, &str); 7] = [
    ("Layer", "/model/layers/0"),
    ("Activation", "/model/layers/0/activation"),
    ("Init", "/model/layers/0/init"),
    ("Norm", "/model/layers/0/norm"),
    ("Optimizer", "/training/optimizer"),
    ("Clip", "/training/clip"),
    ("Data", "/data"),
];

/// `T` and every schema it refers to, as utoipa derives them and [`reshape`] leaves them.
fn schemas_of<T: ToSchema>() -> Value {
    let mut collected = Vec::new();
    T::schemas(&mut collected);
    let mut schemas: Schemas = collected.into_iter().collect();
    schemas.insert(T::name().into_owned(), T::schema());
    reshape(&mut schemas);
    serde_json::to_value(&schemas).unwrap()
}

fn spec_schemas() -> Value {
    schemas_of::<Spec>()
}

/// A JSON Schema (2020-12, as OpenAPI 3.1's) whose root is `T`.
fn validator_of<T: ToSchema>() -> jsonschema::Validator {
    let schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": format!("#/components/schemas/{}", T::name()),
        "components": {"schemas": schemas_of::<T>()},
    });
    jsonschema::validator_for(&schema).unwrap()
}

fn spec_validator() -> jsonschema::Validator {
    validator_of::<Spec>()
}

/// The discriminated `oneOf` of a union: `{Union}Object`, or the union itself without bare names.
fn tagged<'a>(schemas: &'a Value, union: &str) -> &'a Value {
    schemas.get(format!("{union}Object")).unwrap_or(&schemas[union])
}

#[test]
fn every_union_is_a_discriminated_one_of_of_named_variants_each_requiring_its_tag() {
    let schemas = spec_schemas();
    for (union, _) in UNIONS {
        let object = tagged(&schemas, union);
        assert_eq!(object["discriminator"]["propertyName"], "type", "{union}");
        let mapping = object["discriminator"]["mapping"].as_object().unwrap();
        let refs: Vec<&str> = object["oneOf"].as_array().unwrap().iter().map(|r| r["$ref"].as_str().unwrap()).collect();
        assert_eq!(refs.len(), mapping.len(), "{union}: {refs:?}");
        assert!(mapping.len() >= 2, "{union}");
        for (tag, target) in mapping {
            let target = target.as_str().unwrap();
            assert!(refs.contains(&target), "{union}: {target} is mapped but not a branch");
            let variant = &schemas[target.strip_prefix("#/components/schemas/").unwrap()];
            assert_eq!(variant["properties"]["type"]["enum"], json!([tag]), "{target}");
            assert_eq!(variant["required"][0], "type", "{target}");
            assert!(variant["description"].is_string(), "{target} has no description");
        }
        if schemas.get(format!("{union}Name")).is_some() {
            let either: Vec<&Value> = schemas[union]["oneOf"].as_array().unwrap().iter().map(|r| &r["$ref"]).collect();
            assert_eq!(
                either,
                [
                    &json!(format!("#/components/schemas/{union}Name")),
                    &json!(format!("#/components/schemas/{union}Object"))
                ]
            );
            assert!(schemas[union]["description"].is_string(), "{union}");
        }
    }
    // A layer's variant is its own struct; the other unions' are named after union and tag.
    assert_eq!(tagged(&schemas, "Layer")["discriminator"]["mapping"]["rnn"], "#/components/schemas/Rnn");
    assert_eq!(
        tagged(&schemas, "Activation")["discriminator"]["mapping"]["leaky_relu"],
        "#/components/schemas/ActivationLeakyRelu"
    );
    // The flattened source is no schema of its own; every data variant has the shared fields.
    assert!(schemas.get("DataSource").is_none());
    for variant in ["DataXor", "DataInline", "DataInlineSequences"] {
        assert!(schemas[variant]["properties"]["validation_split"].is_object(), "{variant}");
        assert!(schemas[variant]["properties"]["standardize"].is_object(), "{variant}");
    }
    // Integers are numbers in JSON Schema, so the targets' branches overlap: `anyOf`.
    assert!(schemas["InlineTargets"]["anyOf"].is_array());
    assert!(schemas["InlineSequenceTargets"]["anyOf"].is_array());
}

#[test]
fn the_bare_names_of_each_union_are_exactly_the_type_names_the_parser_takes_alone() {
    let schemas = spec_schemas();
    let mut bare_seen = 0;
    for (union, place) in UNIONS {
        let names = schemas.get(format!("{union}Name")).map_or(json!([]), |s| s["enum"].clone());
        let names = names.as_array().unwrap();
        for tag in tagged(&schemas, union)["discriminator"]["mapping"].as_object().unwrap().keys() {
            let spec = with(base(), place, json!(tag));
            let listed = names.contains(&json!(tag));
            let parsed = parse(&spec);
            assert_eq!(parsed.is_ok(), listed, "{union} `{tag}` alone at {place} (listed: {listed}): {parsed:?}");
            bare_seen += usize::from(listed);
        }
    }
    assert!(bare_seen >= 30, "only {bare_seen} bare names");
}

#[test]
fn every_example_preset_and_fixture_spec_validates_against_the_spec_schema() {
    let validator = spec_validator();
    let mut specs = fixture_examples();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for path in std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()) {
        if path.extension().is_some_and(|x| x == "json") {
            let value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            specs.push((path.display().to_string(), value));
        }
    }
    for preset in presets::all() {
        // As written, and expanded (what a report echoes and `GET /v1/presets/{name}` serves).
        specs.push((preset.name.to_string(), serde_json::to_value(&preset.spec).unwrap()));
        specs.push((format!("{} (expanded)", preset.name), serde_json::to_value(preset.spec.expanded()).unwrap()));
    }
    assert!(specs.len() >= 30, "{} specs", specs.len());
    for (name, spec) in &specs {
        parse_ok(spec);
        let errors: Vec<String> =
            validator.iter_errors(spec).map(|e| format!("{e} at {}", e.instance_path())).take(5).collect();
        assert!(errors.is_empty(), "{name}: {errors:#?}");
    }
}

#[test]
fn the_spec_schema_refuses_what_the_parser_refuses() {
    // Not vacuous: the base spec and its bare and object forms pass; each broken one fails both.
    let validator = spec_validator();
    for (pointer, good) in [
        ("/model/layers/0/activation", json!({"type": "leaky_relu", "slope": 0.2})),
        ("/model/layers/0/init", json!({"type": "normal", "std": 0.1})),
        ("/data", json!({"type": "inline", "x": [[0.0, 1.0], [1.0, 0.0]], "y": [0, 1], "validation_split": 0.5})),
        ("/training/clip", json!({"type": "global_norm", "max": 1.0})),
        ("/training/clip", json!(null)),
    ] {
        let spec = with(base(), pointer, good);
        parse_ok(&spec);
        assert!(
            validator.is_valid(&spec),
            "{pointer}: {:?}",
            validator.iter_errors(&spec).next().map(|e| e.to_string())
        );
    }
    for (pointer, bad) in [
        ("/model/layers/0/type", json!("conv")),
        ("/model/layers/0/activation", json!("relu6")),
        ("/model/layers/0/init", json!({"type": "normal"})),
        ("/data", json!("inline")),
        ("/training/optimizer", json!({"type": "adam", "lr": "fast"})),
        ("/training/clip", json!("global_norm")),
    ] {
        let spec = with(base(), pointer, bad);
        parse_err(&spec);
        assert!(!validator.is_valid(&spec), "{pointer} = {}: the schema accepts it", spec.pointer(pointer).unwrap());
    }
}

#[test]
fn every_experiment_example_and_preset_validates_against_the_experiment_request_schema() {
    use crate::spec::experiment::ExperimentRequest;
    let validator = validator_of::<ExperimentRequest>();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/experiments");
    let mut requests: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| (p.display().to_string(), serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()))
        .collect();
    requests.extend(presets::experiment_presets().iter().map(|p| (p.name.clone(), p.request.clone())));
    assert!(requests.len() >= 4, "{} requests", requests.len());
    for (name, request) in &requests {
        let errors: Vec<String> =
            validator.iter_errors(request).map(|e| format!("{e} at {}", e.instance_path())).take(5).collect();
        assert!(errors.is_empty(), "{name}: {errors:#?}");
    }
    // The base is a spec or a preset by name, and a grid maps pointers to lists.
    let good = json!({"base": {"preset": "relu-he-30"}, "vary": {"/seed": [1, 2]}});
    assert!(validator.is_valid(&good));
    for bad in [
        json!({"base": {"preset": "relu-he-30", "seed": 1}, "vary": {"/seed": [1, 2]}}),
        json!({"base": {"model": {"input_dim": 2, "layers": []}}, "vary": {"/seed": [1, 2]}}),
        json!({"base": {"preset": "relu-he-30"}, "vary": {"/seed": 1}}),
    ] {
        assert!(!validator.is_valid(&bad), "{bad}");
    }
}
