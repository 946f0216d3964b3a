//! `GET /v1/presets` and `GET /v1/presets/{name}`: the preset catalogue of
//! [`crate::spec::presets`] over HTTP. (`{"preset": NAME}` bodies are expanded by
//! [`super::extract::SpecBody`].) Depends on `spec`, `problem` (for the documented `404`) and
//! `api::error` / `api::extract`.

use axum::Json;

use super::error::ApiError;
use super::extract::ApiPath;
use crate::problem::Problem;
use crate::spec::presets::{self, PresetList};
use crate::spec::Spec;

/// Every preset, as full specs.
#[utoipa::path(
    get,
    path = "/v1/presets",
    tag = "presets",
    operation_id = "list_presets",
    responses((status = 200, description = "Every preset, with its full spec", body = PresetList)),
)]
pub async fn list_presets() -> Json<PresetList> {
    Json(presets::list())
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
    presets::find(&name).map(|p| Json(p.spec.clone())).ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "preset-not-found",
            "Preset not found",
            format!("no preset is called `{name}`"),
        )
    })
}
