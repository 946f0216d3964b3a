//! The committed OpenAPI document matches what the code generates.

use std::path::PathBuf;

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
