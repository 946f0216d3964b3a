#!/usr/bin/env python3
"""Run the experiment presets (src/spec/presets/experiments/*.json) with the single-run CLI and
check the scientific claim of each.

    scripts/tune-experiment-presets.py [EXPERIMENT.json ...] [--bin target/debug/gradscope]
                                       [--jobs 2] [--json out.json]

For every experiment it builds the runs the way an experiment request means them: the base spec
unchanged is the variant `baseline`; each entry of `variants` is the base with its RFC 6902
`patch` applied; a `vary` object is the full grid of its axes (JSON pointer -> values, applied as
`add` ops, cell names `ptr=value,...`). Every variant runs on every seed (the spec's top-level
`seed` is replaced by it). It prints, per variant and seed, grad_ratio_first_last, final_loss,
final_accuracy, non_finite and duration_ms, then the claim check of the experiment (by file
name) and exits 1 when a claim fails.

Patches are applied with `jsonpatch` when it is installed, else with the small applier below
(add / replace / remove / test).
"""

import argparse
import copy
import itertools
import json
import math
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXP_DIR = os.path.join(ROOT, "src", "spec", "presets", "experiments")
JOB_PRESETS = os.path.join(ROOT, "src", "spec", "presets")

# two-sided 95% Student t quantiles t_{0.975, df}
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


# ---------------------------------------------------------------------------------------------
# JSON patch

def _unescape(tok):
    return tok.replace("~1", "/").replace("~0", "~")


def _split(ptr):
    if ptr == "":
        return []
    if not ptr.startswith("/"):
        raise ValueError(f"bad JSON pointer {ptr!r}")
    return [_unescape(t) for t in ptr[1:].split("/")]


def _parent(doc, toks):
    cur = doc
    for t in toks[:-1]:
        cur = cur[int(t)] if isinstance(cur, list) else cur[t]
    return cur, toks[-1]


def apply_patch_fallback(doc, ops):
    doc = copy.deepcopy(doc)
    for op in ops:
        toks = _split(op["path"])
        kind = op["op"]
        if not toks:
            if kind in ("add", "replace"):
                doc = copy.deepcopy(op["value"])
                continue
            raise ValueError(f"unsupported op on the root: {op}")
        par, key = _parent(doc, toks)
        if isinstance(par, list):
            if kind == "add":
                idx = len(par) if key == "-" else int(key)
                par.insert(idx, copy.deepcopy(op["value"]))
            elif kind == "replace":
                par[int(key)] = copy.deepcopy(op["value"])
            elif kind == "remove":
                del par[int(key)]
            elif kind == "test":
                assert par[int(key)] == op["value"], op
            else:
                raise ValueError(f"unsupported op {kind}")
        else:
            if kind == "add":
                par[key] = copy.deepcopy(op["value"])
            elif kind == "replace":
                if key not in par:
                    raise KeyError(f"replace of a missing member {op['path']}")
                par[key] = copy.deepcopy(op["value"])
            elif kind == "remove":
                del par[key]
            elif kind == "test":
                assert par[key] == op["value"], op
            else:
                raise ValueError(f"unsupported op {kind}")
    return doc


def apply_patch(doc, ops):
    try:
        import jsonpatch  # type: ignore
    except ImportError:
        return apply_patch_fallback(doc, ops)
    return jsonpatch.apply_patch(doc, ops, in_place=False)


# ---------------------------------------------------------------------------------------------
# experiment -> runs

def resolve_base(base):
    if isinstance(base, dict) and set(base) == {"preset"}:
        with open(os.path.join(JOB_PRESETS, base["preset"] + ".json")) as f:
            return json.load(f)
    return base


def seeds_of(exp):
    s = exp.get("seeds", 3)
    if isinstance(s, int):
        return list(range(1, s + 1))
    return list(s)


def fmt_value(v):
    if isinstance(v, str):
        return v
    if isinstance(v, dict) and "type" in v:
        rest = ",".join(f"{k}={v[k]}" for k in v if k != "type")
        return v["type"] + (f"({rest})" if rest else "")
    return json.dumps(v, separators=(",", ":"))


def variants_of(exp):
    """[(name, patch, spec)], baseline first (a grid cell equal to the base is the baseline)."""
    base = resolve_base(exp["base"])
    out = [("baseline", [], base)]
    if "variants" in exp:
        for v in exp["variants"]:
            out.append((v["name"], v["patch"], apply_patch(base, v["patch"])))
    if "vary" in exp:
        axes = list(exp["vary"].items())
        for combo in itertools.product(*[vals for _, vals in axes]):
            patch = [{"op": "replace", "path": p, "value": val} for (p, _), val in zip(axes, combo)]
            name = ",".join(f"{p.rsplit('/', 1)[-1]}={fmt_value(val)}" for (p, _), val in zip(axes, combo))
            spec = apply_patch(base, patch)
            if spec == base:
                out[0] = (name + " (baseline)", [], base)
            else:
                out.append((name, patch, spec))
    return out


def run_one(binary, spec, seed):
    spec = copy.deepcopy(spec)
    spec["seed"] = seed
    t0 = time.time()
    p = subprocess.run([binary, "run", "-"], input=json.dumps(spec), capture_output=True, text=True)
    wall = time.time() - t0
    if p.returncode != 0 and not p.stdout.strip():
        return {"error": p.stderr.strip()[:400], "wall_s": wall}
    try:
        rep = json.loads(p.stdout)
    except json.JSONDecodeError:
        return {"error": (p.stderr or p.stdout).strip()[:400], "wall_s": wall}
    s = rep.get("summary", {})
    return {
        "ratio": s.get("grad_ratio_first_last"),
        "loss": s.get("final_loss"),
        "acc": s.get("final_accuracy"),
        "non_finite": s.get("non_finite"),
        "verdict": s.get("verdict"),
        "ms": s.get("duration_ms"),
        "codes": sorted({d.get("code") for d in rep.get("diagnostics", [])}),
        "wall_s": wall,
    }


def run_experiment(binary, exp, jobs):
    seeds = seeds_of(exp)
    variants = variants_of(exp)
    tasks = [(vn, sp, sd) for vn, _, sp in variants for sd in seeds]
    t0 = time.time()
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        res = list(pool.map(lambda t: run_one(binary, t[1], t[2]), tasks))
    wall = time.time() - t0
    table = {}
    for (vn, _, sd), r in zip(tasks, res):
        table.setdefault(vn, {})[sd] = r
    return seeds, [v[0] for v in variants], table, wall


# ---------------------------------------------------------------------------------------------
# statistics

def gmean(xs):
    xs = [x for x in xs if x is not None and x > 0]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


def paired(a, b):
    """(mean, lo, hi) of the paired 95% t-interval of a - b; None if a value is missing."""
    if any(x is None for x in a + b):
        return None
    d = [x - y for x, y in zip(a, b)]
    n = len(d)
    m = sum(d) / n
    sd = math.sqrt(sum((x - m) ** 2 for x in d) / (n - 1)) if n > 1 else float("inf")
    h = T975.get(n - 1, 1.96) * sd / math.sqrt(n)
    return m, m - h, m + h


def col(table, vn, seeds, key):
    return [table[vn][s].get(key) for s in seeds]


def finite_loss(r):
    return r.get("non_finite") is None and r.get("loss") is not None


# ---------------------------------------------------------------------------------------------
# printing

def g(x, spec=".3g"):
    if x is None:
        return "-"
    if isinstance(x, float):
        return format(x, spec)
    return str(x)


def print_table(name, seeds, vnames, table, wall):
    print(f"\n=== {name}  (wall {wall:.1f}s, sum of run durations "
          f"{sum((table[v][s].get('ms') or 0) for v in vnames for s in seeds) / 1000:.1f}s)")
    print(f"{'variant':<34} {'seed':>4} {'grad_ratio':>10} {'final_loss':>10} {'acc':>6} "
          f"{'non_finite':>10} {'ms':>6}  verdict / codes")
    for vn in vnames:
        for s in seeds:
            r = table[vn][s]
            if "error" in r:
                print(f"{vn:<34} {s:>4} ERROR {r['error']}")
                continue
            nf = "-" if r["non_finite"] is None else "step " + str(r["non_finite"].get("step", "?"))
            print(f"{vn:<34} {s:>4} {g(r['ratio']):>10} {g(r['loss'], '.4f'):>10} "
                  f"{g(r['acc'], '.3f'):>6} {nf:>10} {g(r['ms']):>6}  {r['verdict']} {','.join(r['codes'])}")


class Checker:
    def __init__(self):
        self.ok = True
        self.lines = []

    def check(self, cond, text):
        self.ok &= bool(cond)
        self.lines.append(("PASS" if cond else "FAIL") + "  " + text)


def fmt_ci(ci):
    return "n/a" if ci is None else f"mean {ci[0]:+.4f}, 95% CI [{ci[1]:+.4f}, {ci[2]:+.4f}]"


def check_rescue(seeds, table, c):
    base_r = col(table, "baseline", seeds, "ratio")
    base_l = col(table, "baseline", seeds, "loss")
    gb = gmean(base_r)
    for v in ["he-relu", "batch-norm", "residual"]:
        r = col(table, v, seeds, "ratio")
        gv = gmean(r)
        per_seed = [x / y if x and y else None for x, y in zip(r, base_r)]
        c.check(gv is not None and gb is not None and gv >= 100 * gb
                and all(p is not None and p >= 100 for p in per_seed),
                f"{v}: ratio >= 100x baseline: gmean x{g(gv / gb if gv and gb else None)}, "
                f"per seed x{[g(p, '.3g') for p in per_seed]}")
        loss = col(table, v, seeds, "loss")
        ci = paired(loss, base_l)
        c.check(ci is not None and all(a < b for a, b in zip(loss, base_l)) and ci[2] < 0,
                f"{v}: final loss lower on every seed and CI excludes 0: {fmt_ci(ci)}")
    r = col(table, "small-init", seeds, "ratio")
    c.check(all(x is not None and y is not None and x < y for x, y in zip(r, base_r)),
            f"small-init: ratio below baseline on every seed: {[g(x) for x in r]} vs {[g(x) for x in base_r]}")
    r = col(table, "clip", seeds, "ratio")
    rel = [abs(x / y - 1) if x and y else None for x, y in zip(r, base_r)]
    c.check(all(x is not None and x <= 0.10 for x in rel),
            f"clip: ratio within 10% of baseline: rel diff {[g(x) for x in rel]}")
    loss = col(table, "clip", seeds, "loss")
    ci = paired(loss, base_l)
    c.check(ci is not None and ci[2] >= 0,
            f"clip: no consistent loss improvement (CI upper bound >= 0): {fmt_ci(ci)}")


def check_clipping(seeds, table, c):
    for s in seeds:
        b, v = table["baseline"][s], table["clip"][s]
        worse = (not finite_loss(b)) or (finite_loss(v) and b["loss"] > v["loss"])
        c.check(worse, f"seed {s}: unclipped non-finite or worse: non_finite={b.get('non_finite')}, "
                f"loss {g(b.get('loss'))} vs clipped {g(v.get('loss'))}")
        c.check(finite_loss(v), f"seed {s}: clipped run finite (loss {g(v.get('loss'))})")


def check_cells(seeds, table, c, wall):
    names = [v for v in table]
    means = {v: (sum(col(table, v, seeds, "loss")) / len(seeds)
                 if all(finite_loss(table[v][s]) for s in seeds) else float("inf")) for v in names}
    ranking = sorted(names, key=lambda v: means[v])
    c.check(ranking[0] in ("lstm", "gru"),
            "ranking by mean final loss: " + ", ".join(f"{v} {means[v]:.4f}" for v in ranking))
    win = ranking[0]
    loss = col(table, win, seeds, "loss")
    base = col(table, "baseline", seeds, "loss")
    ci = paired(loss, base)
    c.check(ci is not None and all(a < b for a, b in zip(loss, base)) and ci[2] < 0,
            f"{win} beats vanilla on every seed, CI excludes 0: {fmt_ci(ci)}")
    c.check(all(x < 0.05 for x in loss), f"{win} final loss < 0.05 on every seed: {[g(x, '.4f') for x in loss]}")
    total = sum(table[v][s]["ms"] for v in names for s in seeds) / 1000
    c.check(total <= 240, f"sum of run durations {total:.1f}s <= 240s (2 cores -> ~{total / 2:.0f}s wall; "
            f"measured wall {wall:.1f}s)")


def check_grid(seeds, table, c):
    names = list(table)
    means = {v: sum(col(table, v, seeds, "loss")) / len(seeds) for v in names}
    best = min(names, key=lambda v: means[v])
    he = [v for v in names if "activation=relu" in v and "he_normal" in v][0]
    ci = paired(col(table, he, seeds, "loss"), col(table, best, seeds, "loss"))
    c.check(he == best or (ci is not None and ci[1] <= 0 <= ci[2]),
            f"relu+he best or indistinguishable from best ({best}): mean {means[he]:.4f} vs {means[best]:.4f}; "
            f"relu+he - best: {fmt_ci(ci)}")
    for v in names:
        if "activation=sigmoid" in v:
            r = col(table, v, seeds, "ratio")
            c.check(all(x is not None and x < 1e-4 for x in r),
                    f"{v}: grad ratio at init < 1e-4 (vanishing, critical) on every seed: {[g(x) for x in r]}")
    for v in sorted(names, key=lambda v: means[v]):
        print(f"    mean final loss {means[v]:.4f}  gmean ratio {g(gmean(col(table, v, seeds, 'ratio')))}  {v}")


CHECKS = {
    "rescue-deep-sigmoid": check_rescue,
    "clipping-exploding-rnn": check_clipping,
    "rnn-cells": check_cells,
    "init-vs-activation": check_grid,
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("experiments", nargs="*")
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "debug", "gradscope"))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--json", help="write every measurement here")
    args = ap.parse_args()
    files = args.experiments or sorted(
        os.path.join(EXP_DIR, f) for f in os.listdir(EXP_DIR) if f.endswith(".json"))
    all_ok = True
    dump = {}
    for path in files:
        with open(path) as f:
            exp = json.load(f)
        key = os.path.basename(path)[:-5]
        seeds, vnames, table, wall = run_experiment(args.bin, exp, args.jobs)
        print_table(exp.get("name", key), seeds, vnames, table, wall)
        dump[key] = {"seeds": seeds, "wall_s": wall, "runs": table}
        errors = [(v, s) for v in vnames for s in seeds if "error" in table[v][s]]
        if errors:
            print(f"  runs failed: {errors}")
            all_ok = False
            continue
        c = Checker()
        check = CHECKS.get(key.split(".")[0])
        if check is None:
            print("  (no claim check for this file name)")
            continue
        if check is check_cells:
            check(seeds, table, c, wall)
        else:
            check(seeds, table, c)
        print("  claims:")
        for line in c.lines:
            print("   ", line)
        all_ok &= c.ok
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dump, f, indent=1)
    sys.exit(0 if all_ok else 1)


if __name__ == "__main__":
    main()
