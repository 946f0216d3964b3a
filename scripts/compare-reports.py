#!/usr/bin/env python3
"""Compare the reports two gradscope binaries give for every example and every preset.

Usage:
    scripts/compare-reports.py run   BINARY OUT_DIR      # write OUT_DIR/<name>.json for each spec
    scripts/compare-reports.py diff  BEFORE_DIR AFTER_DIR

`run` calls `BINARY run FILE` on every file of `examples/` (the `analyze-*` ones with `BINARY
analyze FILE`, as their name says) and on every preset file (`src/spec/presets/*.json`, or the
older `src/api/presets/*.json`), and also `--html` and `--plots` so that those outputs are
compared too. `diff` compares two such directories: the report JSON with the wall-clock field
`summary.duration_ms` removed (the only figure that depends on the clock; the HTML shows it, so
it is masked there as well), then the printed text byte for byte with that number masked, the
HTML page with that number masked, and every SVG byte for byte. It prints one line per file and exits 1 when anything differs.

A refactoring that must not change behaviour (issue 10) is checked by running this before and
after it.
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def spec_files():
    files = sorted((ROOT / "examples").glob("*.json"))
    for d in (ROOT / "src" / "spec" / "presets", ROOT / "src" / "api" / "presets"):
        if d.is_dir():
            files += sorted(d.glob("*.json"))
            break
    return files


def run(binary, out):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for f in spec_files():
        kind = "preset" if "presets" in f.parts else "example"
        name = f"{kind}-{f.stem}"
        command = "analyze" if f.stem.startswith("analyze") else "run"
        plots = out / f"{name}.plots"
        html = out / f"{name}.html"
        p = subprocess.run(
            [binary, command, str(f), "--html", str(html), "--plots", str(plots)],
            capture_output=True,
        )
        (out / f"{name}.json").write_bytes(p.stdout)
        (out / f"{name}.stderr").write_bytes(p.stderr)
        (out / f"{name}.rc").write_text(str(p.returncode))
        print(f"{name}: {command} exit {p.returncode}, {len(p.stdout)} bytes", flush=True)
        failed += p.returncode != 0
    return 1 if failed else 0


def normalise(report):
    report.get("summary", {}).pop("duration_ms", None)
    return report


def mask_text(text):
    # The printed report's wall-clock field: "duration_ms": 123.
    return re.sub(r'("duration_ms": )\d+', r"\1#", text)


def mask_html(text):
    # The summary table's duration row: <th>duration (ms)</th><td>123</td>.
    return re.sub(r"(duration \(ms\)</t[hd]>\s*<td[^>]*>)[^<]*", r"\1#", text)


def diff(before, after):
    before, after = Path(before), Path(after)
    names = sorted({p.stem for p in before.glob("*.json")} | {p.stem for p in after.glob("*.json")})
    differ = 0
    for name in names:
        problems = []
        a, b = before / f"{name}.json", after / f"{name}.json"
        if not (a.exists() and b.exists()):
            problems.append("missing on one side")
        else:
            ra, rb = (before / f"{name}.rc").read_text(), (after / f"{name}.rc").read_text()
            if ra != rb:
                problems.append(f"exit code {ra} -> {rb}")
            try:
                ja, jb = normalise(json.loads(a.read_bytes())), normalise(json.loads(b.read_bytes()))
                if ja != jb:
                    keys = [k for k in set(ja) | set(jb) if ja.get(k) != jb.get(k)]
                    problems.append("report differs in " + ", ".join(sorted(keys)))
                elif mask_text(a.read_text()) != mask_text(b.read_text()):
                    problems.append("same JSON, other bytes (key order or number formatting)")
            except json.JSONDecodeError:
                if a.read_bytes() != b.read_bytes():
                    problems.append("output differs (not JSON)")
            ha, hb = before / f"{name}.html", after / f"{name}.html"
            if ha.exists() != hb.exists() or (
                ha.exists() and mask_html(ha.read_text()) != mask_html(hb.read_text())
            ):
                problems.append("HTML differs")
            pa, pb = before / f"{name}.plots", after / f"{name}.plots"
            sa = sorted(p.name for p in pa.glob("*.svg")) if pa.is_dir() else []
            sb = sorted(p.name for p in pb.glob("*.svg")) if pb.is_dir() else []
            if sa != sb:
                problems.append(f"plots {sa} -> {sb}")
            else:
                changed = [s for s in sa if (pa / s).read_bytes() != (pb / s).read_bytes()]
                if changed:
                    problems.append("SVG differs: " + ", ".join(changed))
        status = "identical" if not problems else "DIFFERS: " + "; ".join(problems)
        print(f"{name}: {status}")
        differ += bool(problems)
    print(f"{len(names) - differ} identical, {differ} differ")
    return 1 if differ else 0


def main(argv):
    if len(argv) == 4 and argv[1] == "run":
        return run(argv[2], argv[3])
    if len(argv) == 4 and argv[1] == "diff":
        return diff(argv[2], argv[3])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
