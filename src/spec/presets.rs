//! The preset catalogue: ready specs for the classic scenarios, and the expansion of a
//! `{"preset": NAME}` request body into the spec it names.
//!
//! The specs are the JSON files in `src/spec/presets/`, compiled in; every one of them runs, the
//! recurrent ones (`rnn-adding-vanishing`, `lstm-adding`, `rnn-exploding-clipping`) included.
//! `GET /v1/presets[/{name}]` serves them and `gradscope presets` lists them; `POST /v1/jobs`,
//! `POST /v1/analyze`, `gradscope run` and `gradscope analyze` accept `{"preset": NAME}` in place
//! of a spec.
//!
//! A preset request names a preset and nothing else. What is wrong with one is a
//! [`PresetErrors`]; it converts into [`SpecErrors`] (pointers `/preset` and `/FIELD`), which the
//! callers report as the `422` problem `/problems/invalid-spec`.

use std::fmt;
use std::sync::OnceLock;

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::error::{join, SpecError, SpecErrors};
use super::parse::parse;
use super::types::Spec;

/// The preset files, by name, in the published order (`GET /v1/presets` lists them so).
const FILES: [(&str, &str); 13] = [
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
    ("attention-no-skip", include_str!("presets/attention-no-skip.json")),
    ("post-ln-deep", include_str!("presets/post-ln-deep.json")),
    ("pre-ln-deep", include_str!("presets/pre-ln-deep.json")),
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
    /// Every job preset.
    pub presets: Vec<Preset>,
    /// Every experiment preset (`{"preset": NAME}` as the body of `POST /v1/experiments`).
    pub experiments: Vec<ExperimentPreset>,
}

/// Every preset that parses (all of them: a unit test holds the files to it), in the published
/// order.
pub fn all() -> &'static [Preset] {
    static PRESETS: OnceLock<Vec<Preset>> = OnceLock::new();
    PRESETS.get_or_init(|| {
        FILES
            .iter()
            .filter_map(|(name, text)| {
                let json: Value = serde_json::from_str(text).ok()?;
                let spec = parse(&json).ok()?;
                Some(Preset { name: (*name).into(), title: spec.name.clone().unwrap_or_default(), spec, json })
            })
            .collect()
    })
}

/// Every preset as one list (the body of `GET /v1/presets`, `gradscope presets --json`).
pub fn list() -> PresetList {
    PresetList { presets: all().to_vec(), experiments: experiment_presets().to_vec() }
}

/// The preset called `name`.
pub fn find(name: &str) -> Option<&'static Preset> {
    all().iter().find(|p| p.name == name)
}

/// The experiment presets, in the published order (`GET /v1/presets` lists them under
/// `experiments`).
const EXPERIMENT_FILES: [(&str, &str); 4] = [
    ("rescue-deep-sigmoid", include_str!("presets/experiments/rescue-deep-sigmoid.json")),
    ("init-vs-activation", include_str!("presets/experiments/init-vs-activation.json")),
    ("rnn-cells", include_str!("presets/experiments/rnn-cells.json")),
    ("clipping-exploding-rnn", include_str!("presets/experiments/clipping-exploding-rnn.json")),
];

/// An experiment preset.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExperimentPreset {
    /// Its name, for `{"preset": NAME}` as the body of `POST /v1/experiments`.
    pub name: String,
    /// Its `name` field.
    pub title: String,
    /// What it shows.
    pub description: String,
    /// The request it stands for.
    #[schema(value_type = Object)]
    pub request: Value,
}

/// Every experiment preset that parses (all: a unit test holds the files to it).
pub fn experiment_presets() -> &'static [ExperimentPreset] {
    static PRESETS: OnceLock<Vec<ExperimentPreset>> = OnceLock::new();
    PRESETS.get_or_init(|| {
        EXPERIMENT_FILES
            .iter()
            .filter_map(|(name, text)| {
                let request: Value = serde_json::from_str(text).ok()?;
                let title = request.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
                let description = request.get("description").and_then(Value::as_str).unwrap_or_default().to_owned();
                Some(ExperimentPreset { name: (*name).into(), title, description, request })
            })
            .collect()
    })
}

/// The experiment preset called `name`.
pub fn find_experiment_preset(name: &str) -> Option<&'static ExperimentPreset> {
    experiment_presets().iter().find(|p| p.name == name)
}

/// One thing wrong with a `{"preset": NAME}` request.
#[derive(Debug, Clone, PartialEq)]
pub enum PresetError {
    /// The body has a field besides `preset` (its name).
    OtherField(String),
    /// No preset has this name.
    UnknownName(String),
    /// `preset` is not a string (its value).
    NotAName(Value),
}

impl PresetError {
    /// Where in the request body: an RFC 6901 JSON Pointer.
    pub fn pointer(&self) -> String {
        match self {
            PresetError::OtherField(key) => join("", key),
            PresetError::UnknownName(_) | PresetError::NotAName(_) => "/preset".into(),
        }
    }
}

impl fmt::Display for PresetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PresetError::OtherField(key) => write!(f, "unknown field `{key}`: a preset request has only `preset`"),
            PresetError::UnknownName(name) => {
                let names = all().iter().map(|p| format!("`{}`", p.name)).collect::<Vec<_>>().join(", ");
                write!(f, "unknown preset `{name}`; expected one of {names}")
            }
            PresetError::NotAName(value) => write!(f, "expected a preset name (a string), got {value}"),
        }
    }
}

/// Everything wrong with a `{"preset": NAME}` request: the other fields in the body's key order,
/// then the name. Never empty when returned as an error.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct PresetErrors(pub Vec<PresetError>);

impl fmt::Display for PresetErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        SpecErrors::from(self.clone()).fmt(f)
    }
}

impl From<PresetErrors> for SpecErrors {
    fn from(errors: PresetErrors) -> Self {
        SpecErrors(errors.0.iter().map(|e| SpecError { pointer: e.pointer(), detail: e.to_string() }).collect())
    }
}

/// The preset a request body names: `Ok(None)` when the body is not a preset request (not an
/// object with a `preset` field), `Ok(Some(preset))` for a body that is exactly
/// `{"preset": NAME}` with a known name, and every problem otherwise.
pub fn requested(body: &Value) -> Result<Option<&'static Preset>, PresetErrors> {
    let Value::Object(map) = body else { return Ok(None) };
    let Some(name) = map.get("preset") else { return Ok(None) };
    let mut errors: Vec<PresetError> =
        map.keys().filter(|k| *k != "preset").map(|k| PresetError::OtherField(k.clone())).collect();
    let found = match name {
        Value::String(n) => find(n).or_else(|| {
            errors.push(PresetError::UnknownName(n.clone()));
            None
        }),
        other => {
            errors.push(PresetError::NotAName(other.clone()));
            None
        }
    };
    match found {
        Some(p) if errors.is_empty() => Ok(Some(p)),
        _ => Err(PresetErrors(errors)),
    }
}

/// A body `{"preset": NAME}` becomes that preset's spec (its JSON as written); any other body is
/// returned as it is.
pub fn expand_request(body: Value) -> Result<Value, PresetErrors> {
    Ok(match requested(&body)? {
        Some(preset) => preset.json.clone(),
        None => body,
    })
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_preset_file_parses_and_the_names_are_the_published_list() {
        assert_eq!(all().len(), FILES.len());
        assert_eq!(experiment_presets().len(), EXPERIMENT_FILES.len());
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
                "attention-no-skip",
                "post-ln-deep",
                "pre-ln-deep",
            ]
        );
        assert!(all().iter().all(|p| !p.title.is_empty()), "every preset file has a `name`, its title");
    }

    #[test]
    fn every_preset_validates() {
        for p in all() {
            let result = p.spec.validate(&crate::spec::Limits::default());
            assert!(result.is_ok(), "{}: {:?}", p.name, result.err());
        }
    }

    #[test]
    fn the_list_is_every_preset_in_order() {
        let names: Vec<String> = list().presets.into_iter().map(|p| p.name).collect();
        assert_eq!(names, all().iter().map(|p| p.name.clone()).collect::<Vec<_>>());
        assert_eq!(find("relu-he-30").map(|p| p.name.as_str()), Some("relu-he-30"));
        assert!(find("relu-he-31").is_none());
    }

    #[test]
    fn a_preset_body_expands_to_the_file_as_written() {
        let v = expand_request(json!({"preset": "small-init"})).expect("expands");
        assert_eq!(v["seed"], 2);
        assert_eq!(v, find("small-init").expect("small-init").json);
    }

    #[test]
    fn a_body_without_a_preset_field_is_returned_as_it_is() {
        for body in [json!({"model": {"input_dim": 2}, "seed": 1}), json!([1, 2]), json!("preset")] {
            assert_eq!(expand_request(body.clone()).expect("not a preset request"), body);
        }
    }

    #[test]
    fn extra_fields_and_unknown_names_are_refused_together_with_their_pointers() {
        let e = expand_request(json!({"preset": "nope", "seed": 1, "a/b": 2})).expect_err("refused");
        assert_eq!(
            e.0,
            [
                PresetError::OtherField("a/b".into()),
                PresetError::OtherField("seed".into()),
                PresetError::UnknownName("nope".into()),
            ]
        );
        let errors = SpecErrors::from(e);
        assert_eq!(errors.pointers(), ["/a~1b", "/seed", "/preset"]);
        assert_eq!(errors.0[1].detail, "unknown field `seed`: a preset request has only `preset`");
        assert!(
            errors.0[2].detail.starts_with("unknown preset `nope`; expected one of `deep-sigmoid-vanishing`, "),
            "{}",
            errors.0[2].detail
        );
        assert!(errors.0[2].detail.ends_with(", `pre-ln-deep`"), "{}", errors.0[2].detail);
    }

    #[test]
    fn a_known_name_with_another_field_is_refused() {
        let e = requested(&json!({"preset": "small-init", "seed": 3})).expect_err("refused");
        assert_eq!(e.0, [PresetError::OtherField("seed".into())]);
    }

    #[test]
    fn a_name_that_is_not_a_string_is_refused() {
        let errors = SpecErrors::from(requested(&json!({"preset": 7})).expect_err("refused"));
        assert_eq!(errors.pointers(), ["/preset"]);
        assert_eq!(errors.0[0].detail, "expected a preset name (a string), got 7");
    }
}
