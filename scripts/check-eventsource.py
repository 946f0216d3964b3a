#!/usr/bin/env python3
"""An EventSource in headless Chromium on a finished job stops reconnecting.

Starts `gradscope serve` (the binary given, default ./target/debug/gradscope) on a free
loopback port with a fresh data directory, no API tokens (an EventSource cannot send an
`Authorization` header) and CORS open to any origin (the page is a file:// page), runs a tiny
job to the end, then opens scripts/eventsource.html in headless Chromium with an EventSource
on the job's events URL, and leaves it open for --seconds (10) of wall-clock time. Chromium is
driven over its DevTools pipe (--remote-debugging-pipe: JSON messages ended by NUL on fds 3
and 4), so the page runs in real time, the browser's reconnection timer included.

Passes when
- the page saw the job's final `status` event (`succeeded`), one `open`, and the EventSource
  ended `CLOSED` (readyState 2): the reconnection after the final event got `204`;
- the server counted the events route (`gradscope_http_requests_total` of `/metrics`) exactly
  twice in that time: the stream (200) and the one reconnection (204). A browser that kept
  reconnecting would have come back every ~3 s.

Needs Chromium (Debian: `apt-get install chromium`); `.ci/run` installs it when missing.
Standard library only.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PAGE = REPO / "scripts" / "eventsource.html"
EVENTS_ROUTE = "/v1/jobs/{id}/events"
# A spec that trains in milliseconds: several progress events, then the final status.
SPEC = {
    "model": {"input_dim": 2, "layers": [{"type": "dense", "units": 4, "activation": "tanh"},
                                          {"type": "dense", "units": 2}]},
    "data": {"type": "xor", "samples": 32},
    "training": {"steps": 40, "batch_size": 8},
    "probes": {"every": 5},
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(base, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method="POST" if data else "GET")
    if data:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as res:
        return res.status, res.read().decode()


class Chromium:
    """Headless Chromium driven over the DevTools pipe."""

    def __init__(self, binary, profile):
        ours_r, theirs_w = os.pipe()
        theirs_r, ours_w = os.pipe()

        def fds():
            os.dup2(theirs_r, 3)
            os.dup2(theirs_w, 4)

        self.proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
            pass_fds=(3, 4), preexec_fn=fds, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(theirs_r)
        os.close(theirs_w)
        self.read_fd, self.write_fd = ours_r, ours_w
        self.buf = b""
        self.next_id = 0

    def call(self, method, params=None, session=None):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.write_fd, json.dumps(msg).encode() + b"\0")
        while True:
            while b"\0" not in self.buf:
                chunk = os.read(self.read_fd, 65536)
                if not chunk:
                    raise SystemExit("chromium closed its DevTools pipe")
                self.buf += chunk
            raw, self.buf = self.buf.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise SystemExit(f"DevTools {method}: {reply['error']}")
                return reply["result"]

    def close(self):
        try:
            self.call("Browser.close")
            self.proc.wait(timeout=10)
        except (SystemExit, OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("binary", nargs="?", default=str(REPO / "target" / "debug" / "gradscope"))
    ap.add_argument("--seconds", type=float, default=10.0, help="wall-clock time the page stays open")
    ap.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    args = ap.parse_args()
    if not args.chromium:
        sys.exit("chromium not found (Debian: apt-get install chromium)")

    work = Path(tempfile.mkdtemp(prefix="gradscope-eventsource-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items()
           if k not in ("GRADSCOPE_API_TOKENS", "GRADSCOPE_API_TOKENS_FILE", "GRADSCOPE_METRICS_TOKEN")}
    log = open(work / "server.log", "w")
    server = subprocess.Popen(
        [args.binary, "serve", "--bind", f"127.0.0.1:{port}", "--workers", "1", "--data-dir",
         str(work / "data"), "--cors-allow-origins", "*"], env=env, stdout=log, stderr=log)
    browser = None
    try:
        for _ in range(100):
            try:
                if http(base, "/readyz")[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        status, body = http(base, "/v1/jobs", SPEC)
        job = json.loads(body)
        deadline = time.monotonic() + 60
        while job["status"] not in ("succeeded", "failed", "cancelled"):
            if time.monotonic() > deadline:
                sys.exit(f"job {job['id']} did not finish: {job['status']}")
            time.sleep(0.1)
            job = json.loads(http(base, f"/v1/jobs/{job['id']}")[1])
        if job["status"] != "succeeded":
            sys.exit(f"job {job['id']} ended {job['status']}")
        events = f"{base}/v1/jobs/{job['id']}/events"
        page = PAGE.as_uri() + "?" + urllib.parse.urlencode({"events": events})

        browser = Chromium(args.chromium, work / "profile")
        target = browser.call("Target.createTarget", {"url": page})["targetId"]
        session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        opened = time.monotonic()
        time.sleep(args.seconds)
        expression = "[document.getElementById('summary').textContent, document.getElementById('log').textContent]"
        summary, page_log = browser.call("Runtime.evaluate", {"expression": expression, "returnByValue": True},
                                         session)["result"]["value"]
        wall = time.monotonic() - opened
        _, metrics = http(base, "/metrics")
    finally:
        if browser:
            browser.close()
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()

    seen = dict(kv.split("=", 1) for kv in summary.split())
    route = re.escape(f'route="{EVENTS_ROUTE}"')
    counted = {int(m.group(1)): float(m.group(2)) for m in re.finditer(
        r'^gradscope_http_requests_total\{method="GET",' + route + r',status="(\d+)"\} (\S+)$', metrics, re.M)}
    print(f"page open {wall:.1f} s (wall clock) on {events}")
    print("page log:\n  " + page_log.strip().replace("\n", "\n  "))
    print(f"page summary: {summary}")
    print(f"server: GET {EVENTS_ROUTE} answered {counted}")
    problems = []
    if wall < args.seconds:
        problems.append(f"the page was open {wall:.1f} s, not {args.seconds} s")
    if seen.get("status") != "succeeded":
        problems.append("the page did not see the final status event")
    if seen.get("opens") != "1":
        problems.append(f"the stream was opened {seen.get('opens')} times, not once")
    if seen.get("readyState") != "2":
        problems.append(f"the EventSource is not CLOSED (readyState {seen.get('readyState')}): it would reconnect")
    total = sum(counted.values())
    if total > 2 or counted != {200: 1, 204: 1}:
        problems.append(f"the events URL was requested {total:g} times ({counted}); expected the stream (200) "
                        "and one reconnection (204)")
    if problems:
        print("FAILED:\n  " + "\n  ".join(problems), file=sys.stderr)
        print(f"server log: {work / 'server.log'}", file=sys.stderr)
        sys.exit(1)
    print("ok: the EventSource saw the final event, was told 204 on its one reconnection, and stopped")


if __name__ == "__main__":
    main()
