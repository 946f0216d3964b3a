//! Request extractors whose rejections are problem details, never axum's plain text.
//!
//! [`SpecBody`] reads a spec request body: content type (415), size (413), JSON syntax (400),
//! `{"preset": NAME}` expansion ([`crate::spec::presets`]), and structural parsing (422, every
//! problem with its pointer). [`ApiQuery`] and [`ApiPath`] wrap axum's extractors;
//! [`idempotency_key`] reads the `Idempotency-Key` header; [`Caller`] is the tenant the request
//! runs as (set by `api::auth`). Depends on `api::error`, `spec`, `problem`, `jobs` (the key and
//! tenant types); the handlers call these and nothing below them.

use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::error::ApiError;
use crate::jobs::service::IdempotencyKey;
use crate::jobs::Tenant;
use crate::problem::Problem;
use crate::spec::{Limits, Spec, SpecErrors};

/// The tenant a request runs as: its token's tenant, or the open tenant when the service has no
/// tokens. `api::auth::authenticate` puts it in the request's extensions; a request that did not
/// pass there is refused (401), so a route can never run as nobody in particular.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(pub Tenant);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized", "the request was not authenticated")
        })
    }
}

/// A spec read from a JSON request body (a spec, or `{"preset": NAME}`).
#[derive(Debug)]
pub struct SpecBody {
    /// The parsed spec, or the body and its parse problems (see [`SpecBody::into_spec`]).
    parsed: Result<Spec, (Value, SpecErrors)>,
    /// SHA-256 of the body's JSON in canonical form (the idempotency fingerprint): the same
    /// JSON with other whitespace or another key order is the same body.
    pub fingerprint: [u8; 32],
}

impl<S: Send + Sync> FromRequest<S> for SpecBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        check_json_content_type(req.headers())?;
        let bytes = Bytes::from_request(req, state).await.map_err(bytes_rejection)?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| Problem::malformed_json(e.to_string()))?;
        let mut canonical = Vec::with_capacity(bytes.len());
        write_canonical(&value, &mut canonical);
        let fingerprint = Sha256::digest(&canonical).into();
        let value = crate::spec::presets::expand_request(value).map_err(Problem::from)?;
        let parsed = crate::spec::parse(&value).map_err(|errors| (value, errors));
        Ok(SpecBody { parsed, fingerprint })
    }
}

impl SpecBody {
    /// The spec; or one `422` listing every problem: what did not parse, and what validation
    /// against `limits` finds in the rest (`spec::with_validation`).
    pub fn into_spec(self, limits: &Limits) -> Result<Spec, ApiError> {
        self.parsed.map_err(|(value, errors)| {
            Problem::invalid_spec(&crate::spec::with_validation(&value, errors, limits)).into()
        })
    }
}

/// Writes `v` as compact JSON with every object's keys in sorted order, so that two bodies that
/// differ only in whitespace or key order give the same bytes.
fn write_canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                // Writing a string or a number into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut *out, k);
                out.push(b':');
                write_canonical(&map[k], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => {
            let _ = serde_json::to_writer(&mut *out, scalar);
        }
    }
}

/// A JSON request body as a value: content type (415), size (413) and syntax (400) checked,
/// nothing else (the experiment parser reports the rest with pointers).
#[derive(Debug)]
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        check_json_content_type(req.headers())?;
        let bytes = Bytes::from_request(req, state).await.map_err(bytes_rejection)?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| Problem::malformed_json(e.to_string()))?;
        Ok(JsonBody(value))
    }
}

fn check_json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let ct = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json")) {
        return Ok(());
    }
    let got = if ct.is_empty() { "no Content-Type".to_owned() } else { format!("Content-Type `{ct}`") };
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
        "Unsupported media type",
        format!("the body must be JSON sent as `Content-Type: application/json`; got {got}"),
    ))
}

fn bytes_rejection(r: BytesRejection) -> ApiError {
    // The body timeout (`api::server`) surfaces as a body error whose source is `TimeoutError`.
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&r);
    while let Some(e) = source {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body-timeout",
                "Request body timed out",
                "the request body stalled for longer than the limit (see `GRADSCOPE_BODY_READ_TIMEOUT_SECS`)",
            );
        }
        source = e.source();
    }
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            "Body too large",
            "the request body is larger than the limit (see `GRADSCOPE_MAX_BODY_BYTES`)",
        )
    } else {
        ApiError::bad_request(format!("the request body could not be read: {}", r.body_text()))
    }
}

/// `axum::extract::Query` with a problem-detail rejection (400).
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(t)| ApiQuery(t))
            .map_err(|e: QueryRejection| ApiError::bad_request(format!("invalid query string: {}", e.body_text())))
    }
}

/// `axum::extract::Path` with a problem-detail rejection (400).
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| ApiPath(t))
            .map_err(|e: PathRejection| ApiError::bad_request(format!("invalid path: {}", e.body_text())))
    }
}

/// Longest `Idempotency-Key` accepted.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

/// The `Idempotency-Key` of a request, with the fingerprint of its body. The draft standard
/// writes the key as a structured-field string (`"abc"`); a bare token is accepted too.
pub fn idempotency_key(headers: &HeaderMap, body: &SpecBody) -> Result<Option<IdempotencyKey>, ApiError> {
    let mut values = headers.get_all("idempotency-key").iter();
    let Some(raw) = values.next() else { return Ok(None) };
    let invalid = |why: &str| {
        ApiError::bad_request(format!("invalid Idempotency-Key: {why}")).with_entry("/headers/idempotency-key", why)
    };
    if values.next().is_some() {
        return Err(invalid("send the header once"));
    }
    let raw = raw.to_str().map_err(|_| invalid("it must be printable ASCII"))?.trim();
    let key = raw.strip_prefix('"').and_then(|k| k.strip_suffix('"')).unwrap_or(raw);
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY {
        return Err(invalid(&format!("it must have 1 to {MAX_IDEMPOTENCY_KEY} characters")));
    }
    if !key.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(invalid("it must be printable ASCII"));
    }
    Ok(Some(IdempotencyKey { key: key.to_owned(), fingerprint: body.fingerprint }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(text: &str) -> String {
        let mut out = Vec::new();
        write_canonical(&serde_json::from_str(text).unwrap(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_same_json_with_other_whitespace_or_key_order_has_one_canonical_form() {
        let a = canonical(r#"{"b": [1, {"y": true, "x": null}], "a": "s"}"#);
        let b = canonical("{\n  \"a\":\"s\",\n  \"b\":[1,{\"x\":null,\"y\":true}]\n}");
        assert_eq!(a, r#"{"a":"s","b":[1,{"x":null,"y":true}]}"#);
        assert_eq!(a, b);
        assert_ne!(canonical(r#"{"a": [1, 2]}"#), canonical(r#"{"a": [2, 1]}"#), "array order matters");
    }
}
