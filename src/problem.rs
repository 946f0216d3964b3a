//! RFC 9457 problem details: the one error shape every consumer of gradscope sees, from the
//! command line (stderr, exit code 2) and from every non-2xx HTTP response.
//!
//! `type` is a URI reference naming the kind of problem (`/problems/invalid-spec`, ...); the
//! kinds are listed in `docs/service.md` ("Errors") and in `openapi/openapi.json`. Depends on
//! `spec` for its error lists; must not depend on HTTP crates.

use serde::Serialize;

use crate::spec::{PresetErrors, SpecErrors};

/// A problem detail object.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Problem {
    /// URI reference identifying the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short, fixed summary of the kind.
    pub title: String,
    /// The HTTP status this problem maps to.
    pub status: u16,
    /// What happened in this occurrence.
    pub detail: String,
    /// One entry per problem found in a spec.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ProblemEntry>,
}

/// One problem within a request body, located by a JSON Pointer (RFC 6901).
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct ProblemEntry {
    /// Where in the body.
    pub pointer: String,
    /// What is wrong there.
    pub detail: String,
}

impl Problem {
    /// A problem without per-field entries.
    pub fn new(kind: &str, title: &str, status: u16, detail: impl Into<String>) -> Self {
        Problem {
            kind: format!("/problems/{kind}"),
            title: title.into(),
            status,
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

    /// The body is not JSON.
    pub fn malformed_json(detail: impl Into<String>) -> Self {
        Problem::new("malformed-json", "Malformed JSON", 400, detail)
    }

    /// A run could not allocate one of its buffers (`503`): the request was valid, the machine
    /// (or the process's memory limit) could not hold the run. Nothing else was affected; the
    /// detail names the bytes asked for and the buffer.
    pub fn out_of_memory(detail: impl Into<String>) -> Self {
        Problem::new("out-of-memory", "Out of memory", 503, detail)
    }

    /// The spec was read but is invalid: one entry per problem.
    pub fn invalid_spec(errors: &SpecErrors) -> Self {
        let n = errors.0.len();
        let mut p = Problem::new(
            "invalid-spec",
            "Invalid spec",
            422,
            format!("the spec has {n} problem{}", if n == 1 { "" } else { "s" }),
        );
        p.errors =
            errors.0.iter().map(|e| ProblemEntry { pointer: e.pointer.clone(), detail: e.detail.clone() }).collect();
        p
    }
}

/// A `{"preset": NAME}` request that names no preset (or not only one): the `422` invalid-spec
/// problem, one entry per problem (`/preset`, or the field that should not be there).
impl From<PresetErrors> for Problem {
    fn from(errors: PresetErrors) -> Self {
        Problem::invalid_spec(&errors.into())
    }
}
