#!/usr/bin/env python3
"""Checks a live server's /metrics with the reference tools, after traffic with refusals.

    scripts/check-metrics.py BASE_URL [--token TOKEN]

1. Sends requests that are refused (404 of an unknown route, 414, 431 before routing; with the
   API token if the server has tokens, else without: 400, 404, 405, 415, 422; and without a
   token on a server that has tokens: 401) and checks each answer's status.
2. Scrapes /metrics as a Prometheus scraper that does not ask for OpenMetrics: the answer must
   be `text/plain; version=0.0.4`, and `promtool check metrics` (Debian: package `prometheus`)
   must find nothing to say.
3. Scrapes it again with `Accept: application/openmetrics-text; version=1.0.0`: the answer
   must be OpenMetrics 1.0.0 and parse with the reference parser of Python's
   `prometheus_client` (strict: `# EOF`, counter and unit conventions).
4. Both formats hold the same families with the same types, and every refusal sent is in
   `gradscope_http_refusals_total` with its status and problem type.

Needs `promtool` and `prometheus_client` (PyPI `prometheus-client`, or Debian's
`python3-prometheus-client`); `.ci/run` runs it against the server schemathesis exercised.
"""

import argparse
import subprocess
import sys
import urllib.error
import urllib.request

from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

TEXT = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def request(base, path, method="GET", headers=None, body=None):
    req = urllib.request.Request(base + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as res:
            return res.status, res.headers, res.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("base", help="the server, e.g. http://127.0.0.1:8080")
    ap.add_argument("--token", help="an API token, when the server has tokens")
    ap.add_argument("--promtool", default="promtool")
    args = ap.parse_args()
    auth = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    as_json = {"Content-Type": "application/json", **auth}

    # (status, problem type) of each refusal, and the request that makes it.
    refusals = [
        (404, "not-found", "/no/such/route", "GET", {}, None),
        (414, "uri-too-long", "/v1/jobs?cursor=" + "c" * 5000, "GET", auth, None),
        (431, "headers-too-large", "/v1/jobs", "GET", {"X-Big": "x" * 20 * 1024, **auth}, None),
        (400, "bad-request", "/v1/jobs?limit=0", "GET", auth, None),
        (400, "malformed-json", "/v1/jobs", "POST", as_json, b"{"),
        (404, "job-not-found", "/v1/jobs/no-such-job", "GET", auth, None),
        (405, "method-not-allowed", "/v1/jobs", "PUT", auth, None),
        (415, "unsupported-media-type", "/v1/jobs", "POST", {"Content-Type": "text/plain", **auth}, b"{}"),
        (422, "invalid-spec", "/v1/jobs", "POST", as_json, b'{"model": {}}'),
    ]
    if args.token:
        refusals.append((401, "unauthorized", "/v1/jobs", "GET", {}, None))
    for status, kind, path, method, headers, body in refusals:
        got, _, text = request(args.base, path, method, headers, body)
        if got != status or f"/problems/{kind}" not in text:
            sys.exit(f"{method} {path[:60]}: expected {status} {kind}, got {got}: {text[:300]}")
    print(f"sent {len(refusals)} requests that were refused as expected")

    status, headers, text = request(args.base, "/metrics")
    if status != 200 or headers.get("Content-Type") != TEXT:
        sys.exit(f"/metrics: {status} {headers.get('Content-Type')}, expected 200 {TEXT}")
    lint = subprocess.run([args.promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    print(f"promtool check metrics: exit {lint.returncode}{': ' + lint.stdout + lint.stderr if lint.returncode or lint.stdout or lint.stderr else ', nothing to say'}")
    if lint.returncode != 0 or lint.stdout.strip() or lint.stderr.strip():
        sys.exit("promtool check metrics failed")

    status, headers, om = request(args.base, "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    if status != 200 or headers.get("Content-Type") != OPENMETRICS:
        sys.exit(f"/metrics (OpenMetrics): {status} {headers.get('Content-Type')}, expected 200 {OPENMETRICS}")
    om_families = list(parse_openmetrics(om))
    text_families = list(parse_text(text))
    print(f"parsed: {len(text_families)} families (Prometheus text), {len(om_families)} (OpenMetrics)")

    # The text format has no info type: an info family `x` is the gauge `x_info` there.
    def shape(f, openmetrics):
        if openmetrics and f.type == "info":
            return (f.name + "_info", "gauge")
        return (f.name, f.type)

    om_shapes = sorted(shape(f, True) for f in om_families)
    text_shapes = sorted(shape(f, False) for f in text_families)
    if om_shapes != text_shapes:
        sys.exit(f"the formats differ:\n  text only: {sorted(set(text_shapes) - set(om_shapes))}\n"
                 f"  OpenMetrics only: {sorted(set(om_shapes) - set(text_shapes))}")

    counted = {}
    for f in om_families:
        if f.name == "gradscope_http_refusals":
            for s in f.samples:
                if s.name.endswith("_total"):
                    counted[(int(s.labels["status"]), s.labels["reason"])] = s.value
    missing = [(s, k) for s, k, *_ in refusals if counted.get((s, k), 0) < 1]
    if missing:
        sys.exit(f"refusals not counted: {missing}; counted: {counted}")
    print("refusals counted (status, problem type): " + ", ".join(f"{s} {k}: {v:g}" for (s, k), v in sorted(counted.items())))
    print("ok: /metrics passes promtool in the text format and the OpenMetrics parser, with every refusal counted")


if __name__ == "__main__":
    main()
