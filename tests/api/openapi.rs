//! The committed OpenAPI document matches what the code generates, its references resolve, and
//! the events a stream sends match the event schemas it documents.

use std::path::PathBuf;

use serde_json::{json, Value};

use crate::helpers::{parse_sse, spawn_app, tiny_spec};

#[test]
fn committed_openapi_json_matches_the_generated_document() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("openapi/openapi.json");
    let generated = gradscope::api::openapi::document_json();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let parse = |s: &str| serde_json::from_str::<serde_json::Value>(s).ok();
    assert!(
        parse(&committed).is_some() && parse(&committed) == parse(&generated),
        "openapi/openapi.json is out of date with the code.\n\
         Regenerate it with:  cargo run -- openapi > openapi/openapi.json\n\
         (or UPDATE_OPENAPI=1 cargo test --test api openapi) and commit the result."
    );
}

/// A JSON Schema (2020-12, as OpenAPI 3.1's) rooted at `schema`, with the document's components.
fn validator(doc: &Value, schema: &Value) -> jsonschema::Validator {
    let mut root = json!({"$schema": "https://json-schema.org/draft/2020-12/schema", "components": doc["components"]});
    for (key, value) in schema.as_object().unwrap() {
        root[key] = value.clone();
    }
    jsonschema::validator_for(&root).unwrap()
}

#[test]
fn every_reference_in_the_document_resolves() {
    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push(r);
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let doc = gradscope::api::openapi::document();
    let mut found = Vec::new();
    refs(&doc, &mut found);
    assert!(found.len() > 100, "{} references", found.len());
    // Discriminator mappings name schemas too.
    let mut mapped = Vec::new();
    for schema in doc["components"]["schemas"].as_object().unwrap().values() {
        if let Some(mapping) = schema["discriminator"]["mapping"].as_object() {
            mapped.extend(mapping.values().map(|v| v.as_str().unwrap()));
        }
    }
    assert!(mapped.len() >= 40, "{} mapped schemas", mapped.len());
    for r in found.into_iter().chain(mapped) {
        let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("{r} is not local"));
        assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
    }
}

/// Each event of a job's stream, read as OpenAPI 3.2 and schemathesis read an event stream's
/// schema (one event: `id`, `event`, and `data` a string whose JSON the `contentSchema` of the
/// variant that `event` maps to describes), matches the document; broken events do not.
#[tokio::test]
async fn every_event_of_a_job_stream_matches_the_documented_event_schema() {
    let doc = gradscope::api::openapi::document();
    let media = &doc["paths"]["/v1/jobs/{id}/events"]["get"]["responses"]["200"]["content"]["text/event-stream"];
    let stream = validator(&doc, &media["schema"]);
    let payload = |name: &str| {
        let target = doc["components"]["schemas"]["JobEvent"]["discriminator"]["mapping"][name].as_str().unwrap();
        let variant = &doc["components"]["schemas"][target.rsplit('/').next().unwrap()];
        assert_eq!(variant["properties"]["data"]["contentMediaType"], "application/json");
        validator(&doc, &variant["properties"]["data"]["contentSchema"])
    };

    let app = spawn_app().await;
    let id = app.submit(&tiny_spec(20)).await["id"].as_str().unwrap().to_owned();
    app.wait_for_status(&id, "succeeded").await;
    let text = app.get(&format!("/v1/jobs/{id}/events")).await.text().await.unwrap();
    let events = parse_sse(&text);
    assert!(events.len() >= 2 && events.last().unwrap().1 == "status", "{text}");
    for (seq, name, data) in &events {
        let event = json!({"id": seq.to_string(), "event": name, "data": data.to_string()});
        assert!(stream.is_valid(&event), "{event}: {:?}", stream.iter_errors(&event).next().map(|e| e.to_string()));
        assert!(payload(name).is_valid(data), "{name} data {data}");
    }

    // Not vacuous: an unknown event, an id that is not a number, a payload under the wrong name.
    let (_, _, progress) = &events[0];
    let (_, _, status) = events.last().unwrap();
    assert!(!stream.is_valid(&json!({"id": "1", "event": "done", "data": progress.to_string()})));
    assert!(!stream.is_valid(&json!({"id": "one", "event": "progress", "data": progress.to_string()})));
    assert!(!payload("status").is_valid(progress));
    assert!(!payload("progress").is_valid(status));
}
