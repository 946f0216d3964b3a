//! Who is calling: bearer tokens (RFC 6750) mapped to tenants, the per-token request rate, and
//! the `/metrics` token. [`authenticate`] is the middleware; [`Auth`] its configuration, loaded
//! once at start ([`Auth::from_args`]).
//!
//! - **Open** (no tokens configured): every request is the one tenant
//!   [`Tenant::open`](crate::jobs::Tenant::open), as before tokens existed; the server says so
//!   at start (a warning when it listens beyond loopback).
//! - **Tokens**: `--api-tokens-file FILE` and/or `GRADSCOPE_API_TOKENS`, entries `TENANT:TOKEN`
//!   (one per line in the file, `#` comments; commas or whitespace between entries in the
//!   variable). A token is an RFC 6750 `b64token` of at least 16 characters. A request to any
//!   `/v1` route without `Authorization: Bearer <token>` gets `401` with
//!   `WWW-Authenticate: Bearer realm="gradscope"` (plus `error="invalid_token"` for a token
//!   that is not known); with a known token it runs as the token's tenant
//!   ([`Caller`](super::extract::Caller)), and the job layer shows that tenant only its own
//!   jobs, experiments and idempotency keys (another tenant's ids are `404`).
//! - The health probes, `/openapi.json` and `/docs` never need a token. `/metrics` needs
//!   `GRADSCOPE_METRICS_TOKEN` when that is set, and is open otherwise.
//! - **Rate**: each token may make `--rate-limit-per-second` requests per second on average,
//!   in bursts of `--rate-limit-burst` (GCRA, from `governor`); beyond it `429` with
//!   `Retry-After`. Open mode has no rate limit (there is no one to tell apart).
//!
//! Tokens are compared in constant time (SHA-256 of the presented token against each stored
//! digest, `subtle`), are never logged, and are kept only as digests after start.
//!
//! Depends on `error` and `extract`; the application state ([`super::app::App`]) holds an
//! `Arc<Auth>` and the router ([`super::server`]) installs the middleware with it.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::extract::Caller;
use crate::config::ServeArgs;
use crate::jobs::Tenant;

/// Shortest token accepted (characters).
pub const MIN_TOKEN_LEN: usize = 16;

/// The `realm` of `WWW-Authenticate`.
const REALM: &str = "gradscope";

/// One configured token.
struct Entry {
    digest: [u8; 32],
    tenant: Tenant,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry").field("tenant", &self.tenant).finish_non_exhaustive()
    }
}

/// The authentication settings of a server (see the module doc).
pub struct Auth {
    /// Empty: the service is open.
    tokens: Vec<Entry>,
    metrics: Option<[u8; 32]>,
    /// Keyed by the token's index in `tokens`.
    limiter: Option<DefaultKeyedRateLimiter<usize>>,
    clock: DefaultClock,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("tokens", &self.tokens.len())
            .field("metrics_token", &self.metrics.is_some())
            .field("rate_limited", &self.limiter.is_some())
            .finish()
    }
}

/// The request rate a token may use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Average requests per second (0: no limit).
    pub per_second: f64,
    /// Requests that may come at once.
    pub burst: u32,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// RFC 6750 `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(t: &str) -> bool {
    let body = t.trim_end_matches('=');
    !body.is_empty() && body.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

fn is_tenant_name(t: &str) -> bool {
    let mut bytes = t.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && t.len() <= 64
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Reads `TENANT:TOKEN` entries from `text` (`source` names it in errors: a file and line, or
/// the variable). Every problem is reported, not only the first.
pub fn parse_tokens(text: &str, source: &str, by_lines: bool) -> Result<Vec<(Tenant, String)>, String> {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    let items: Vec<(usize, &str)> = if by_lines {
        text.lines().enumerate().map(|(i, l)| (i + 1, l)).collect()
    } else {
        text.split(|c: char| c == ',' || c.is_whitespace()).enumerate().map(|(i, l)| (i + 1, l)).collect()
    };
    for (n, item) in items {
        let item = item.trim();
        if item.is_empty() || item.starts_with('#') {
            continue;
        }
        let at = if by_lines { format!("{source} line {n}") } else { format!("{source} entry {n}") };
        let Some((tenant, token)) = item.split_once(':') else {
            problems.push(format!("{at}: expected TENANT:TOKEN"));
            continue;
        };
        let (tenant, token) = (tenant.trim(), token.trim());
        if !is_tenant_name(tenant) {
            problems.push(format!("{at}: the tenant name must be 1 to 64 letters, digits, `.`, `_` or `-`"));
        }
        if token.len() < MIN_TOKEN_LEN || !is_b64token(token) {
            problems.push(format!(
                "{at}: the token must be at least {MIN_TOKEN_LEN} characters of letters, digits and `-._~+/` \
                 (an RFC 6750 b64token), e.g. from `openssl rand -base64 32`"
            ));
        }
        out.push((Tenant::new(tenant), token.to_owned()));
    }
    match problems.is_empty() {
        true => Ok(out),
        false => Err(problems.join("; ")),
    }
}

impl Auth {
    /// An open service: no tokens, no rate limit.
    pub fn open() -> Self {
        Auth { tokens: Vec::new(), metrics: None, limiter: None, clock: DefaultClock::default() }
    }

    /// A service that takes exactly these tokens, with `rate` per token and an optional
    /// `/metrics` token. Refuses a token given twice (to two tenants or one).
    pub fn with_tokens(tokens: Vec<(Tenant, String)>, metrics: Option<&str>, rate: Rate) -> Result<Self, String> {
        let mut entries: Vec<Entry> = Vec::new();
        for (tenant, token) in tokens {
            let digest = digest(&token);
            if entries.iter().any(|e| e.digest == digest) {
                return Err(format!("a token of tenant `{tenant}` is listed twice; every token must be unique"));
            }
            entries.push(Entry { digest, tenant });
        }
        let limiter = match (rate.per_second > 0.0 && rate.per_second.is_finite(), NonZeroU32::new(rate.burst)) {
            (true, Some(burst)) => {
                let period = Duration::try_from_secs_f64(1.0 / rate.per_second)
                    .map_err(|_| format!("the rate limit {} per second is out of range", rate.per_second))?;
                let quota = Quota::with_period(period)
                    .ok_or_else(|| format!("the rate limit {} per second is out of range", rate.per_second))?
                    .allow_burst(burst);
                Some(RateLimiter::keyed(quota))
            }
            _ => None,
        };
        let metrics = metrics.map(digest);
        Ok(Auth { tokens: entries, metrics, limiter, clock: DefaultClock::default() })
    }

    /// The settings of `gradscope serve`: the tokens file and variable, the metrics token, the
    /// rate. Any problem in them stops the server from starting.
    pub fn from_args(args: &ServeArgs) -> Result<Self, String> {
        let mut tokens = Vec::new();
        let mut problems = Vec::new();
        if let Some(path) = &args.api_tokens_file {
            match std::fs::read_to_string(path) {
                Ok(text) => match parse_tokens(&text, &path.display().to_string(), true) {
                    Ok(t) => tokens.extend(t),
                    Err(e) => problems.push(e),
                },
                Err(e) => problems.push(format!("cannot read the tokens file {}: {e}", path.display())),
            }
        }
        if let Some(value) = &args.api_tokens {
            match parse_tokens(value.expose(), "GRADSCOPE_API_TOKENS", false) {
                Ok(t) => tokens.extend(t),
                Err(e) => problems.push(e),
            }
        }
        if let Some(m) = &args.metrics_token {
            if m.expose().len() < MIN_TOKEN_LEN || !is_b64token(m.expose()) {
                problems.push(format!("GRADSCOPE_METRICS_TOKEN must be at least {MIN_TOKEN_LEN} characters of letters, digits and `-._~+/`"));
            }
        }
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        let rate = Rate { per_second: args.rate_limit_per_second, burst: args.rate_limit_burst };
        let metrics = args.metrics_token.as_ref().map(|m| m.expose());
        if tokens.is_empty() {
            let mut auth = Auth::open();
            auth.metrics = metrics.map(digest);
            return Ok(auth);
        }
        Auth::with_tokens(tokens, metrics, rate)
    }

    /// True when no tokens are configured: every caller is the open tenant.
    pub fn is_open(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Distinct tenants of the configured tokens.
    pub fn tenants(&self) -> usize {
        let mut names: Vec<&Tenant> = self.tokens.iter().map(|e| &e.tenant).collect();
        names.sort();
        names.dedup();
        names.len()
    }

    /// The index of the token `presented`, compared in constant time with every stored digest.
    fn find(&self, presented: &str) -> Option<usize> {
        let d = digest(presented);
        let mut found = None;
        for (i, e) in self.tokens.iter().enumerate() {
            if bool::from(e.digest.ct_eq(&d)) {
                found = Some(i);
            }
        }
        found
    }

    /// Seconds until token `index` may make a request again, if it is over its rate now.
    fn over_rate(&self, index: usize) -> Option<u64> {
        let limiter = self.limiter.as_ref()?;
        match limiter.check_key(&index) {
            Ok(()) => None,
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Some(wait.as_secs_f64().ceil().max(1.0) as u64)
            }
        }
    }
}

/// Why a request was not let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// No `Authorization: Bearer` header.
    Missing,
    /// A bearer token that is not known (or a malformed header).
    Invalid,
}

fn unauthorized(why: Refusal, what: &str) -> Response {
    let (detail, challenge) = match why {
        Refusal::Missing => (
            format!("{what} needs a bearer token: send `Authorization: Bearer <token>`"),
            format!("Bearer realm=\"{REALM}\""),
        ),
        Refusal::Invalid => (
            "the bearer token is not valid for this server".to_owned(),
            format!("Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"the token is not known\""),
        ),
    };
    let mut res = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized", detail).into_response();
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        res.headers_mut().insert(WWW_AUTHENTICATE, v);
    }
    res
}

/// The bearer token of a request: `Ok(None)` without an `Authorization` header.
fn bearer(req: &Request) -> Result<Option<&str>, Refusal> {
    let Some(value) = req.headers().get(AUTHORIZATION) else { return Ok(None) };
    let value = value.to_str().map_err(|_| Refusal::Invalid)?;
    let (scheme, token) = value.split_once(' ').ok_or(Refusal::Invalid)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Refusal::Invalid);
    }
    Ok(Some(token.trim()))
}

/// Routes that never need a token: liveness, readiness, and the API's own description.
fn is_public(path: &str) -> bool {
    matches!(path, "/livez" | "/healthz" | "/readyz" | "/openapi.json") || path == "/docs" || path.starts_with("/docs/")
}

/// The middleware: lets public routes through, guards `/metrics` with its own token, and
/// admits every other request as its token's tenant ([`Caller`]) within the token's rate.
pub async fn authenticate(State(auth): State<Arc<Auth>>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if is_public(path) {
        return next.run(req).await;
    }
    if path == "/metrics" {
        if let Some(expected) = &auth.metrics {
            match bearer(&req) {
                Ok(Some(t)) if bool::from(digest(t).ct_eq(expected)) => {}
                Ok(None) => return unauthorized(Refusal::Missing, "`/metrics`"),
                _ => return unauthorized(Refusal::Invalid, "`/metrics`"),
            }
        }
        return next.run(req).await;
    }
    if auth.is_open() {
        req.extensions_mut().insert(Caller(Tenant::open()));
        return next.run(req).await;
    }
    let index = match bearer(&req) {
        Ok(Some(token)) => match auth.find(token) {
            Some(i) => i,
            None => return unauthorized(Refusal::Invalid, "this route"),
        },
        Ok(None) => return unauthorized(Refusal::Missing, "this route"),
        Err(why) => return unauthorized(why, "this route"),
    };
    if let Some(secs) = auth.over_rate(index) {
        let tenant = &auth.tokens[index].tenant;
        return ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "Too many requests",
            format!("this token (tenant `{tenant}`) is over its request rate; retry in {secs} s"),
        )
        .retry_after(secs)
        .into_response();
    }
    req.extensions_mut().insert(Caller(auth.tokens[index].tenant.clone()));
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_entries_parse_and_every_problem_is_reported() {
        let ok =
            parse_tokens("# team tokens\nalice: abcdefghijklmnop0123\n\nbob:ZZZZZZZZZZZZZZZZ==\n", "f", true).unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[0].0.name(), "alice");
        assert_eq!(ok[1].1, "ZZZZZZZZZZZZZZZZ==");
        let env =
            parse_tokens("a:abcdefghijklmnop0123, b:qrstuvwxyzabcdef0123", "GRADSCOPE_API_TOKENS", false).unwrap();
        assert_eq!(env.len(), 2);
        let err = parse_tokens("short:abc\nno colon\n-bad:abcdefghijklmnop0123\n", "f", true).unwrap_err();
        assert!(err.contains("f line 1") && err.contains("f line 2") && err.contains("f line 3"), "{err}");
    }

    #[test]
    fn a_token_is_found_by_its_digest_and_a_duplicate_is_refused() {
        let rate = Rate { per_second: 0.0, burst: 1 };
        let t = |n: &str, s: &str| (Tenant::new(n), s.to_owned());
        let auth = Auth::with_tokens(vec![t("a", "aaaaaaaaaaaaaaaa"), t("b", "bbbbbbbbbbbbbbbb")], None, rate).unwrap();
        assert_eq!(auth.find("bbbbbbbbbbbbbbbb"), Some(1));
        assert_eq!(auth.find("bbbbbbbbbbbbbbbc"), None);
        assert_eq!(auth.tenants(), 2);
        assert!(Auth::with_tokens(vec![t("a", "aaaaaaaaaaaaaaaa"), t("b", "aaaaaaaaaaaaaaaa")], None, rate).is_err());
    }

    #[test]
    fn a_token_over_its_burst_waits_about_one_period() {
        let rate = Rate { per_second: 0.5, burst: 2 };
        let auth = Auth::with_tokens(vec![(Tenant::new("a"), "aaaaaaaaaaaaaaaa".into())], None, rate).unwrap();
        assert_eq!(auth.over_rate(0), None);
        assert_eq!(auth.over_rate(0), None);
        let wait = auth.over_rate(0).expect("the third request in a burst of two is refused");
        assert!((1..=2).contains(&wait), "one request per 2 s: wait {wait} s");
    }
}
