//! Presets: ready specs for the classic scenarios, `GET /v1/presets[/{name}]`, and the expansion
//! of `{"preset": NAME}` request bodies.
//!
//! The specs are the JSON files in `src/api/presets/`, compiled in. The recurrent ones
//! (`rnn-adding-vanishing`, `lstm-adding`, `rnn-exploding-clipping`) are valid specs, but this
//! build's engine does not run recurrent layers yet: submitting one is refused with the 422
//! validation problem that says so. Depends on `spec` (to parse them) and `api::error`.

use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::ApiPath;
use super::App;
use crate::problem::Problem;
use crate::spec::Spec;

/// The preset files, by name (the contract's list, in its order).
const FILES: [(&str, &str); 10] = [
    ("deep-sigmoid-vanishing", include_str!("presets/deep-sigmoid-vanishing.json")),
    ("relu-xavier-30", include_str!("presets/relu-xavier-30.json")),
    ("relu-he-30", include_str!("presets/relu-he-30.json")),
    ("small-init", include_str!("presets/small-init.json")),
    ("batchnorm-rescue", include_str!("presets/batchnorm-rescue.json")),
    ("residual-rescue", include_str!("presets/residual-rescue.json")),
    ("rnn-adding-vanishing", include_str!("presets/rnn-adding-vanishing.json")),
    ("lstm-adding", include_str!("presets/lstm-adding.json")),
    ("rnn-exploding-clipping", include_str!("presets/rnn-exploding-clipping.json")),
    ("dead-relu-high-lr", include_str!("presets/dead-relu-high-lr.json")),
];

/// A preset.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Preset {
    /// Its name, for `{"preset": NAME}`.
    pub name: String,
    /// What it shows (the spec's `name`).
    pub title: String,
    /// The full spec.
    pub spec: Spec,
    /// The JSON as written (what `{"preset": NAME}` submits).
    #[serde(skip)]
    pub json: Value,
}

/// The list of presets.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PresetList {
    /// Every preset.
    pub presets: Vec<Preset>,
}

/// Every preset that parses (all of them: a unit test holds the files to it).
pub fn all() -> &'static [Preset] {
    static PRESETS: OnceLock<Vec<Preset>> = OnceLock::new();
    PRESETS.get_or_init(|| {
        FILES
            .iter()
            .filter_map(|(name, text)| {
                let json: Value = serde_json::from_str(text).ok()?;
                let spec = crate::spec::parse(&json).ok()?;
                Some(Preset { name: (*name).into(), title: spec.name.clone().unwrap_or_default(), spec, json })
            })
            .collect()
    })
}

/// The preset called `name`.
pub fn find(name: &str) -> Option<&'static Preset> {
    all().iter().find(|p| p.name == name)
}

/// A body `{"preset": NAME}` becomes that preset's spec; any other body is returned as it is.
pub fn expand_request(body: Value) -> Result<Value, Problem> {
    let Value::Object(map) = &body else { return Ok(body) };
    let Some(name) = map.get("preset") else { return Ok(body) };
    let names = || all().iter().map(|p| format!("`{}`", p.name)).collect::<Vec<_>>().join(", ");
    let mut errors = Vec::new();
    for key in map.keys().filter(|k| *k != "preset") {
        errors.push(crate::spec::SpecError {
            pointer: format!("/{}", key.replace('~', "~0").replace('/', "~1")),
            detail: format!("unknown field `{key}`: a preset request has only `preset`"),
        });
    }
    let found = match name {
        Value::String(n) => find(n).or_else(|| {
            errors.push(crate::spec::SpecError {
                pointer: "/preset".into(),
                detail: format!("unknown preset `{n}`; expected one of {}", names()),
            });
            None
        }),
        other => {
            errors.push(crate::spec::SpecError {
                pointer: "/preset".into(),
                detail: format!("expected a preset name (a string), got {other}"),
            });
            None
        }
    };
    match found {
        Some(p) if errors.is_empty() => Ok(p.json.clone()),
        _ => Err(Problem::invalid_spec(&crate::spec::SpecErrors(errors))),
    }
}

/// Every preset, as full specs.
#[utoipa::path(
    get,
    path = "/v1/presets",
    tag = "presets",
    operation_id = "list_presets",
    responses((status = 200, description = "Every preset, with its full spec", body = PresetList)),
)]
pub async fn list_presets(State(_app): State<Arc<App>>) -> Json<PresetList> {
    Json(PresetList { presets: all().to_vec() })
}

/// One preset's spec, ready to submit to `POST /v1/jobs` as it is.
#[utoipa::path(
    get,
    path = "/v1/presets/{name}",
    tag = "presets",
    operation_id = "get_preset",
    params(("name" = String, Path, description = "Preset name", example = "relu-he-30")),
    responses(
        (status = 200, description = "The preset's spec", body = Spec),
        (status = 404, description = "No preset has this name", body = Problem, content_type = "application/problem+json",
         example = json!({"type": "/problems/preset-not-found", "title": "Preset not found", "status": 404,
                          "detail": "no preset is called `relu-he-31`"})),
    ),
)]
pub async fn get_preset(ApiPath(name): ApiPath<String>) -> Result<Json<Spec>, ApiError> {
    find(&name).map(|p| Json(p.spec.clone())).ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "preset-not-found",
            "Preset not found",
            format!("no preset is called `{name}`"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_file_parses_and_the_names_are_the_contracts() {
        assert_eq!(all().len(), FILES.len());
        let names: Vec<&str> = all().iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "deep-sigmoid-vanishing",
                "relu-xavier-30",
                "relu-he-30",
                "small-init",
                "batchnorm-rescue",
                "residual-rescue",
                "rnn-adding-vanishing",
                "lstm-adding",
                "rnn-exploding-clipping",
                "dead-relu-high-lr",
            ]
        );
    }

    #[test]
    fn every_preset_validates() {
        for p in all() {
            let result = p.spec.validate(&crate::spec::Limits::default());
            assert!(result.is_ok(), "{}: {:?}", p.name, result.err());
        }
    }

    #[test]
    fn a_preset_body_expands_and_extra_fields_or_unknown_names_are_refused() {
        let v = expand_request(serde_json::json!({"preset": "small-init"})).expect("expands");
        assert_eq!(v["seed"], 2);
        let p = expand_request(serde_json::json!({"preset": "nope", "seed": 1})).expect_err("refused");
        let pointers: Vec<&str> = p.errors.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(pointers, ["/seed", "/preset"]);
    }
}
