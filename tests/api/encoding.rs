//! Compression (gzip, brotli) of JSON, SVG and HTML but not of event streams, and the finished
//! report's `ETag` with `If-None-Match` -> `304`.

use std::io::Read;

use reqwest::header::{ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE, ETAG, IF_NONE_MATCH, VARY};
use reqwest::{Response, StatusCode};
use serde_json::Value;

use crate::helpers::*;

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes).read_to_end(&mut out).expect("gzip");
    out
}

fn unbrotli(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli_decompressor::Decompressor::new(bytes, 4096).read_to_end(&mut out).expect("brotli");
    out
}

fn header(res: &Response, name: reqwest::header::HeaderName) -> Option<String> {
    res.headers().get(name).map(|v| v.to_str().unwrap().to_owned())
}

async fn get_with(app: &TestApp, path: &str, headers: &[(reqwest::header::HeaderName, &str)]) -> Response {
    let mut req = app.client.get(app.url(path));
    for (k, v) in headers {
        req = req.header(k, *v);
    }
    req.send().await.unwrap()
}

/// A finished job's id.
async fn finished_job(app: &TestApp) -> String {
    let id = app.submit(&tiny_spec(20)).await["id"].as_str().unwrap().to_owned();
    app.wait_for_status(&id, "succeeded").await;
    id
}

#[tokio::test]
async fn a_report_asked_for_with_gzip_or_br_is_compressed_and_decodes_to_the_same_json() {
    let app = spawn_app().await;
    let id = finished_job(&app).await;
    let path = format!("/v1/jobs/{id}/report");

    let plain = get_with(&app, &path, &[]).await;
    assert_eq!(plain.status(), StatusCode::OK);
    assert_eq!(header(&plain, CONTENT_ENCODING), None);
    let tag = header(&plain, ETAG).expect("a finished report has an ETag");
    let identity = plain.bytes().await.unwrap().to_vec();
    let report: Value = serde_json::from_slice(&identity).unwrap();

    for (coding, decode) in [("gzip", gunzip as fn(&[u8]) -> Vec<u8>), ("br", unbrotli)] {
        let res = get_with(&app, &path, &[(ACCEPT_ENCODING, coding)]).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(header(&res, CONTENT_ENCODING).as_deref(), Some(coding));
        assert_eq!(header(&res, CONTENT_TYPE).as_deref(), Some("application/json"));
        assert!(header(&res, VARY).unwrap_or_default().to_ascii_lowercase().contains("accept-encoding"));
        // Another representation, another strong tag: the same hash with the coding's suffix.
        let coded_tag = header(&res, ETAG).unwrap();
        assert_eq!(coded_tag, format!("{}-{coding}\"", tag.trim_end_matches('"')));
        let body = res.bytes().await.unwrap();
        assert!(body.len() < identity.len(), "{coding}: {} bytes for {}", body.len(), identity.len());
        let decoded = decode(&body);
        assert_eq!(decoded, identity, "{coding} decodes to the very bytes sent without compression");
        assert_eq!(serde_json::from_slice::<Value>(&decoded).unwrap(), report);
    }
}

#[tokio::test]
async fn svg_html_and_lists_are_compressed_and_event_streams_are_not() {
    let app = spawn_app().await;
    let id = finished_job(&app).await;
    for (path, media) in [
        (format!("/v1/jobs/{id}/plots/loss.svg"), "image/svg+xml"),
        (format!("/v1/jobs/{id}/report.html"), "text/html; charset=utf-8"),
        ("/v1/jobs".to_owned(), "application/json"),
    ] {
        let res = get_with(&app, &path, &[(ACCEPT_ENCODING, "gzip")]).await;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        assert_eq!(header(&res, CONTENT_ENCODING).as_deref(), Some("gzip"), "{path}");
        assert_eq!(header(&res, CONTENT_TYPE).as_deref(), Some(media), "{path}");
        let decoded = String::from_utf8(gunzip(&res.bytes().await.unwrap())).unwrap();
        assert!(decoded.starts_with('<') || decoded.starts_with('{'), "{path}: {}", &decoded[..40.min(decoded.len())]);
    }
    let res = get_with(&app, &format!("/v1/jobs/{id}/events"), &[(ACCEPT_ENCODING, "gzip, br")]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, CONTENT_TYPE).as_deref(), Some("text/event-stream"));
    assert_eq!(header(&res, CONTENT_ENCODING), None, "event streams are never compressed");
    let text = res.text().await.unwrap();
    assert!(text.contains("event: status"), "{text}");
}

#[tokio::test]
async fn the_report_etag_round_trip_gives_304_without_a_body() {
    let app = spawn_app().await;
    let id = finished_job(&app).await;
    let path = format!("/v1/jobs/{id}/report");
    let first = get_with(&app, &path, &[]).await;
    let tag = header(&first, ETAG).unwrap();
    assert!(tag.starts_with('"') && tag.ends_with('"'), "a strong tag: {tag}");
    let body = first.bytes().await.unwrap();
    // The same bytes, the same tag.
    assert_eq!(header(&get_with(&app, &path, &[]).await, ETAG).unwrap(), tag);

    let gzip_tag = format!("{}-gzip\"", tag.trim_end_matches('"'));
    let weak = format!("W/{tag}");
    let listed = format!("\"other\", {tag}");
    for (held, extra, echoed) in [
        (tag.as_str(), None, tag.as_str()),
        (weak.as_str(), None, tag.as_str()),
        (listed.as_str(), None, tag.as_str()),
        (gzip_tag.as_str(), Some("gzip"), gzip_tag.as_str()),
        ("*", None, tag.as_str()),
    ] {
        let mut headers = vec![(IF_NONE_MATCH, held)];
        if let Some(coding) = extra {
            headers.push((ACCEPT_ENCODING, coding));
        }
        let res = get_with(&app, &path, &headers).await;
        assert_eq!(res.status(), StatusCode::NOT_MODIFIED, "If-None-Match: {held}");
        assert_eq!(header(&res, ETAG).as_deref(), Some(echoed), "If-None-Match: {held}");
        assert_eq!(header(&res, CONTENT_ENCODING), None);
        assert!(res.bytes().await.unwrap().is_empty(), "a 304 has no body");
    }
    let res = get_with(&app, &path, &[(IF_NONE_MATCH, "\"0123456789abcdef0123456789abcdef\"")]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.bytes().await.unwrap(), body);

    // A 304 is counted as an answer, not as a refusal.
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics
            .contains("gradscope_http_requests_total{method=\"GET\",route=\"/v1/jobs/{id}/report\",status=\"304\"} 5"),
        "{metrics}"
    );
    assert!(!metrics.contains("status=\"304\",reason"), "{metrics}");
}

#[tokio::test]
async fn only_a_finished_report_has_an_etag() {
    let app = spawn_app().await;
    let id = app.submit(&long_spec()).await["id"].as_str().unwrap().to_owned();
    app.wait_until_training(&id).await;
    let res = get_with(&app, &format!("/v1/jobs/{id}/report"), &[(IF_NONE_MATCH, "*")]).await;
    assert_eq!(header(&res, ETAG), None);
    assert_eq!(problem(res, 409).await["type"], "/problems/report-not-ready");
    app.client.post(app.url(&format!("/v1/jobs/{id}/cancel"))).send().await.unwrap();
    app.wait_for_status(&id, "cancelled").await;
    // Cancelled while running: it keeps the report of what it measured, now final and tagged.
    let res = get_with(&app, &format!("/v1/jobs/{id}/report"), &[]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(header(&res, ETAG).is_some());
}
