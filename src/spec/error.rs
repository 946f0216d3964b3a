//! Spec problems and how they are collected.
//!
//! Owns [`SpecError`] / [`SpecErrors`] (what the HTTP layer turns into the `errors` array of a
//! `422` problem+json), JSON Pointer construction, and the [`Collector`] that parsing and
//! validation push every problem into instead of stopping at the first one. It depends on
//! nothing but `serde` and `thiserror`; it must not depend on the engine or on any HTTP crate.

use serde::{Deserialize, Serialize};
use std::fmt;

/// One problem with a spec: where it is (an RFC 6901 JSON Pointer into the request body, `""`
/// for the whole document) and what is wrong, in words meant for the person who wrote the spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecError {
    /// RFC 6901 JSON Pointer, e.g. `/model/layers/3/units`.
    pub pointer: String,
    /// What is wrong and, where it helps, what would be right.
    pub detail: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pointer.is_empty() {
            write!(f, "(spec): {}", self.detail)
        } else {
            write!(f, "{}: {}", self.pointer, self.detail)
        }
    }
}

/// Every problem found in a spec, in the order they were found (document order, roughly).
/// Never empty when returned as an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub struct SpecErrors(pub Vec<SpecError>);

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [] => write!(f, "invalid spec"),
            [one] => write!(f, "invalid spec: {one}"),
            many => {
                write!(f, "invalid spec: {} problems", many.len())?;
                for e in many {
                    write!(f, "\n  {e}")?;
                }
                Ok(())
            }
        }
    }
}

impl SpecErrors {
    /// The pointers of all problems, in order (handy in tests and logs).
    pub fn pointers(&self) -> Vec<&str> {
        self.0.iter().map(|e| e.pointer.as_str()).collect()
    }
}

/// At most this many problems are listed; the rest are summarised in one final entry. A
/// hostile or generated spec (say a 100,000-row inline data set full of strings) would otherwise
/// produce a response far larger than the request.
pub(crate) const MAX_ERRORS: usize = 100;

/// Accumulates problems. Parsing and validation push into one of these and carry on, so that a
/// response lists everything wrong with a spec at once.
#[derive(Debug, Default)]
pub(crate) struct Collector {
    errors: Vec<SpecError>,
    dropped: usize,
}

impl Collector {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Records a problem. Exact duplicates are dropped: the layers one `mlp` expands into share
    /// its pointer, so one bad `init` would otherwise be reported `depth` times.
    pub(crate) fn push(&mut self, pointer: impl Into<String>, detail: impl Into<String>) {
        let e = SpecError { pointer: pointer.into(), detail: detail.into() };
        if self.errors.contains(&e) {
            return;
        }
        if self.errors.len() >= MAX_ERRORS {
            self.dropped += 1;
        } else {
            self.errors.push(e);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.errors.is_empty() && self.dropped == 0
    }

    /// `Ok(value)` when nothing was recorded (and the value was built), otherwise every problem.
    pub(crate) fn finish<T>(self, value: Option<T>) -> Result<T, SpecErrors> {
        match value {
            Some(v) if self.is_empty() => Ok(v),
            _ => Err(self.into_errors()),
        }
    }

    fn into_errors(mut self) -> SpecErrors {
        if self.dropped > 0 {
            self.errors.push(SpecError {
                pointer: String::new(),
                detail: format!("... and {} more problems not listed", self.dropped),
            });
        }
        if self.errors.is_empty() {
            // Only reachable if a builder returned `None` without recording why; say so rather
            // than returning an empty error list: an invalid-spec problem lists at least one entry.
            self.errors.push(SpecError {
                pointer: String::new(),
                detail: "the spec could not be read (internal: no problem was recorded)".into(),
            });
        }
        SpecErrors(self.errors)
    }
}

/// `base` extended by one reference token, escaped as RFC 6901 requires (`~` -> `~0`, `/` -> `~1`).
pub(crate) fn join(base: &str, token: &str) -> String {
    let mut s = String::with_capacity(base.len() + token.len() + 1);
    s.push_str(base);
    s.push('/');
    for c in token.chars() {
        match c {
            '~' => s.push_str("~0"),
            '/' => s.push_str("~1"),
            c => s.push(c),
        }
    }
    s
}

/// `base` extended by an array index.
pub(crate) fn index(base: &str, i: usize) -> String {
    format!("{base}/{i}")
}

/// `n` with thousands separators (`61,000,000`), for limit messages people read.
pub(crate) use crate::engine::units::thousands;

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn join_escapes_tilde_and_slash_per_rfc6901() {
        assert_eq!(join("/a", "b/c~d"), "/a/b~1c~0d");
        assert_eq!(join("", "model"), "/model");
    }

    #[test]
    fn collector_drops_exact_duplicates_and_caps_the_list() {
        let mut c = Collector::new();
        c.push("/a", "x");
        c.push("/a", "x");
        for i in 0..MAX_ERRORS + 5 {
            c.push(index("/b", i), "y");
        }
        let errs = c.finish::<()>(None).unwrap_err();
        assert_eq!(errs.0.len(), MAX_ERRORS + 1);
        assert!(errs.0[MAX_ERRORS].detail.contains("6 more"));
    }

    #[test]
    fn finish_never_returns_an_empty_error_list() {
        let errs = Collector::new().finish::<()>(None).unwrap_err();
        assert_eq!(errs.0.len(), 1);
    }
}
