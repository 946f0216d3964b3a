//! Entity tags (RFC 9110 §8.8.3) of the documents the server keeps unchanged once made: a
//! finished job's report. [`strong_tag`] is the tag of the bytes, [`matching`] answers
//! `If-None-Match` (a match is a `304` without a body), [`for_coding`] is the tag of a
//! compressed copy.
//!
//! A strong tag names one representation, so a report sent gzip-compressed has another tag than
//! the same report sent as is: the compression layer's answer gets `"<hash>-gzip"` (or `-br`) for
//! the handler's `"<hash>"` ([`for_coding`], applied in `server`), as Apache's `mod_deflate`
//! does. A client revalidating either copy sends back the tag it holds; [`matching`] knows the
//! suffixes, and the `304` carries that same tag.
//!
//! Depends on no other file of `api`.

use axum::http::header::IF_NONE_MATCH;
use axum::http::HeaderMap;
use sha2::{Digest, Sha256};

/// Content codings the server compresses with, as they appear in a tag's suffix.
pub const CODINGS: [&str; 2] = ["gzip", "br"];

/// The strong entity-tag of `bytes`: the first 128 bits of their SHA-256, in hex, quoted.
pub fn strong_tag(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// The tag of the copy of the representation tagged `tag` compressed with `coding`: `"x"`
/// becomes `"x-gzip"`. `None` for a weak tag, or a coding this server does not use.
pub fn for_coding(tag: &str, coding: &str) -> Option<String> {
    if !CODINGS.contains(&coding) {
        return None;
    }
    let opaque = tag.strip_prefix('"')?.strip_suffix('"')?;
    Some(format!("\"{opaque}-{coding}\""))
}

/// The entity-tags listed in an `If-None-Match` value, without `W/` and quotes; `*` as itself.
fn listed(value: &str) -> Vec<&str> {
    let mut tags = Vec::new();
    let mut rest = value;
    loop {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_ascii_whitespace());
        if rest.is_empty() {
            return tags;
        }
        if let Some(after) = rest.strip_prefix('*') {
            tags.push("*");
            rest = after;
            continue;
        }
        let unweak = rest.strip_prefix("W/").unwrap_or(rest);
        let Some(quoted) = unweak.strip_prefix('"') else {
            // Not an entity-tag: skip to the next comma.
            rest = rest.find(',').map_or("", |i| &rest[i..]);
            continue;
        };
        match quoted.find('"') {
            Some(end) => {
                tags.push(&quoted[..end]);
                rest = &quoted[end + 1..];
            }
            None => return tags,
        }
    }
}

/// Whether the request's `If-None-Match` matches the representation tagged `tag` (strong, as
/// made by [`strong_tag`]) or one of its compressed copies, by the weak comparison that
/// `If-None-Match` uses (RFC 9110 §13.1.2). Returns the tag to send with the `304`: the one the
/// client holds (`tag` itself for `*`).
pub fn matching(headers: &HeaderMap, tag: &str) -> Option<String> {
    let opaque = tag.strip_prefix('"')?.strip_suffix('"')?;
    for value in headers.get_all(IF_NONE_MATCH) {
        let Ok(value) = value.to_str() else { continue };
        for listed in listed(value) {
            if listed == "*" {
                return Some(tag.to_owned());
            }
            let same = listed == opaque
                || listed.strip_prefix(opaque).and_then(|s| s.strip_prefix('-')).is_some_and(|c| CODINGS.contains(&c));
            if same {
                return Some(format!("\"{listed}\""));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(IF_NONE_MATCH, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn the_tag_is_strong_and_changes_with_the_bytes() {
        let a = strong_tag(b"{\"a\":1}");
        assert_eq!(a.len(), 34);
        assert!(a.starts_with('"') && a.ends_with('"') && !a.starts_with("W/"));
        assert_ne!(a, strong_tag(b"{\"a\":2}"));
        assert_eq!(a, strong_tag(b"{\"a\":1}"));
        assert_eq!(for_coding(&a, "gzip").unwrap(), format!("{}-gzip\"", &a[..33]));
        assert_eq!(for_coding(&a, "deflate"), None);
        assert_eq!(for_coding("W/\"x\"", "gzip"), None);
    }

    #[test]
    fn if_none_match_matches_the_tag_its_coded_copies_and_star_weakly() {
        let tag = "\"0123abcd\"";
        assert_eq!(matching(&headers(&[]), tag), None);
        assert_eq!(matching(&headers(&["\"0123abcd\""]), tag).as_deref(), Some(tag));
        assert_eq!(matching(&headers(&["W/\"0123abcd\""]), tag).as_deref(), Some(tag));
        assert_eq!(matching(&headers(&["\"nope\", \"0123abcd-gzip\""]), tag).as_deref(), Some("\"0123abcd-gzip\""));
        assert_eq!(matching(&headers(&["\"nope\"", "\"0123abcd-br\""]), tag).as_deref(), Some("\"0123abcd-br\""));
        assert_eq!(matching(&headers(&["*"]), tag).as_deref(), Some(tag));
        for miss in ["\"0123abc\"", "\"0123abcd-deflate\"", "\"0123abcdgzip\"", "0123abcd", "\"0123abcd", "", "\"a,b\""]
        {
            assert_eq!(matching(&headers(&[miss]), tag), None, "{miss}");
        }
    }
}
