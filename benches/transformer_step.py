#!/usr/bin/env python3
"""Transformer training-step throughput on PyTorch (CPU), the counterpart of
`benches/transformer_step.rs` (benches/README.md). Self-contained: its timing helpers follow
the logic of the PyTorch reference harness (`_bench.py`): interleaved blocks, the median of
them, contended blocks re-run.

    PY="$HOME/.cache/gradscope-ref-venv/bin/python"
    $PY benches/transformer_step.py --threads 1 [--d-model 64 256] [--heads 4] [--depth 4]
        [--seq 64] [--batch 32] [--norm-first] [--modes plain,item,foreach] [--out FILE]

Workload (the same text is the module doc of `transformer_step.rs`):
- data: 8 fixed batches of `batch` sequences of `seq` steps, inputs N(0, 1) of width
  `in = d_model`, labels uniform over 10 classes; cycled in order (step `i` sees batch `i % 8`,
  no data generation is timed);
- model: a linear input projection `in -> d_model`; `depth` encoder blocks, each PyTorch's
  `nn.TransformerEncoderLayer(d_model, heads, 4 d_model, dropout=0, activation=relu,
  batch_first=True, norm_first)` (post-LN by default, pre-LN with `--norm-first`, which also
  adds a final LayerNorm(d_model) as `nn.TransformerEncoder(..., norm=...)` does), no mask, no
  positional encoding; the last time step's row; Linear(d_model, 10); softmax cross-entropy
  (mean over the batch); gradscope: `dense`, `transformer` {depth, heads, ffn 4 d_model, relu,
  norm_first, causal false, alpha 1, eps 1e-5}, (`layer_norm`,) `pool` last, `dense`;
- init: PyTorch's defaults (Linear weight and bias U(+-1/sqrt(fan_in)), attention in-proj
  Xavier-uniform with zero biases, out-proj U(+-1/sqrt(d)) with a zero bias, norms 1 and 0);
- optimiser: Adam, lr 1e-3, betas (0.9, 0.999), eps 1e-8, no weight decay;
- f32, one thread (gradscope: faer's products with `Par::Seq`; PyTorch: `--threads 1`).

One step = zero the gradients, forward, loss, backward, optimiser update.

The blocks are an `nn.ModuleList` of `nn.TransformerEncoderLayer` applied in a Python loop (the
same computation as `nn.TransformerEncoder`, whose fast path applies only without gradients), so
that the instrumented modes can keep each block's input gradient.

Modes:
  plain    no statistics.
  item     every step: x_l.retain_grad() on each block's input x_l; after backward, for every
           parameter ||grad||_2 (p.grad.norm().item()), for every block ||dL/dx_l||_2 over the
           batch (.norm().item()), and loss.item(), appended to a list.
  foreach  the same numbers, fetched at once: torch._foreach_norm over the parameter gradients
           and the block-input gradients, stacked, one .tolist(), and loss.item().
gradscope's instrumented mode collects a superset (see the module doc of the .rs file).
Prints one JSON line per (config, mode); `--out FILE` appends them to FILE.
"""
import argparse
import json
import os
import statistics
import sys
import time

BUSY_THRESHOLD = 0.15  # other processes' cores above which a block counts as contended
CLASSES, BATCHES, LR = 10, 8, 1e-3


def parse():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--d-model", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--norm-first", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--modes", default="plain,item,foreach")
    ap.add_argument("--steps", type=int, default=0, help="fixed steps per block (0 = calibrate)")
    ap.add_argument("--block-sec", type=float, default=0.4)
    ap.add_argument("--blocks", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--retries", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="")
    ap.add_argument("--tag", default="")
    return ap.parse_args()


# ---- timing helpers (the logic of the reference harness's _bench.py) ----

def pin_threads(n):
    """Every BLAS / OpenMP thread knob to n; must run before torch is imported."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)


def busy_jiffies():
    """Non-idle jiffies of all CPUs together (/proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v[:8]) - (v[3] + (v[4] if len(v) > 4 else 0))  # minus idle and iowait


def own_cpu():
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class Contention:
    """Cores' worth of CPU that OTHER processes used while the block ran."""

    def __enter__(self):
        self.hz = os.sysconf("SC_CLK_TCK")
        self.b0, self.c0, self.t0 = busy_jiffies(), own_cpu(), time.perf_counter()
        return self

    def __exit__(self, *a):
        wall = time.perf_counter() - self.t0
        other = (busy_jiffies() - self.b0) / self.hz - (own_cpu() - self.c0)
        self.other_busy_cores = max(0.0, other / wall) if wall > 0 else 0.0
        return False


def time_steps(step, n, start):
    t0 = time.perf_counter()
    for i in range(start, start + n):
        step(i)
    return time.perf_counter() - t0


def measure_modes(steps_by_mode, warmup, block_sec, blocks, fixed=0, retries=3, min_steps=3):
    """Calibrate each mode (warm-up, then steps per block for ~block_sec), then interleave timed
    blocks across modes (A B C A B C ...). A block during which other processes used more than
    BUSY_THRESHOLD cores is re-run (up to `retries` times, 2 s apart); the least disturbed
    attempt is kept. Returns {mode: stats}."""
    counter = {m: 0 for m in steps_by_mode}

    def run(mode, n):
        t = time_steps(steps_by_mode[mode], n, counter[mode])
        counter[mode] += n
        return t

    n_by_mode = {}
    for mode in steps_by_mode:
        run(mode, warmup)
        if fixed:
            n_by_mode[mode] = fixed
            continue
        n = 1
        while True:
            t = run(mode, n)
            if t >= 0.05 or n >= 1 << 16:
                break
            n *= 2
        n_by_mode[mode] = max(min_steps, int(round(block_sec / (t / n))))
    times = {m: [] for m in steps_by_mode}
    loads = {m: [] for m in steps_by_mode}
    for _ in range(blocks):
        for mode in steps_by_mode:
            n = n_by_mode[mode]
            best = None
            for attempt in range(retries + 1):
                with Contention() as c:
                    t = run(mode, n)
                if best is None or c.other_busy_cores < best[1]:
                    best = (t / n, c.other_busy_cores)
                if c.other_busy_cores < BUSY_THRESHOLD or attempt == retries:
                    break
                time.sleep(2)
            times[mode].append(best[0])
            loads[mode].append(best[1])
    res = {}
    for mode, per in times.items():
        med = statistics.median(per)
        res[mode] = {
            "steps_per_block": n_by_mode[mode],
            "blocks": blocks,
            "us_per_step": med * 1e6,
            "steps_per_sec": 1.0 / med,
            "us_per_step_min": min(per) * 1e6,
            "us_per_step_max": max(per) * 1e6,
            "spread_pct": (max(per) - min(per)) / med * 100.0,
            "other_busy_cores_max": max(loads[mode]),
            "contended_blocks": sum(1 for x in loads[mode] if x >= BUSY_THRESHOLD),
        }
    return res


def emit(rec, out):
    line = json.dumps(rec)
    print(line, flush=True)
    if out:
        with open(out, "a") as f:
            f.write(line + "\n")


# ---- the workload ----

def flops(d, heads, depth, ffn, seq, batch, in_dim):
    """Matrix-product FLOPs of one step, counted as the .rs file does: forward
    2 B T (in d + depth (4 d^2 + 2 d ffn + 2 T d)) + 2 B d 10, times 3."""
    block = 4 * d * d + 2 * d * ffn + 2 * seq * d
    fwd = 2 * batch * seq * (in_dim * d + depth * block) + 2 * batch * d * CLASSES
    return 3 * fwd


def main():
    args = parse()
    pin_threads(args.threads)
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    tinfo = {
        "intra_op_threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkldnn_enabled": torch.backends.mkldnn.enabled,
    }
    modes = [m for m in args.modes.split(",") if m]
    B, T, H, L = args.batch, args.seq, args.heads, args.depth

    for d in args.d_model:
        ffn, in_dim = 4 * d, d
        torch.manual_seed(args.seed)
        proj = nn.Linear(in_dim, d)
        blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(d, H, ffn, dropout=0.0, activation="relu", batch_first=True,
                                       norm_first=args.norm_first)
            for _ in range(L))
        final_norm = nn.LayerNorm(d) if args.norm_first else None
        head = nn.Linear(d, CLASSES)
        model = nn.ModuleList([proj, blocks, head] + ([final_norm] if final_norm is not None else []))
        model.train()
        params = [p for p in model.parameters()]
        opt = torch.optim.Adam(params, lr=LR, betas=(0.9, 0.999), eps=1e-8)

        g = torch.Generator().manual_seed(args.seed + 1)
        data = [(torch.randn(B, T, in_dim, generator=g), torch.randint(0, CLASSES, (B,), generator=g))
                for _ in range(BATCHES)]
        logs = []

        def forward(x, keep):
            h = proj(x)
            inputs = []
            for blk in blocks:
                if keep:
                    h.retain_grad()
                    inputs.append(h)
                h = blk(h)
            if final_norm is not None:
                h = final_norm(h)
            return head(h[:, -1, :]), inputs

        def step_plain(i):
            x, y = data[i % BATCHES]
            opt.zero_grad()
            logits, _ = forward(x, False)
            F.cross_entropy(logits, y).backward()
            opt.step()

        def step_item(i):
            x, y = data[i % BATCHES]
            opt.zero_grad()
            logits, inputs = forward(x, True)
            loss = F.cross_entropy(logits, y)
            loss.backward()
            logs.append((loss.item(), [p.grad.norm().item() for p in params],
                         [h.grad.norm().item() for h in inputs]))
            opt.step()

        def step_foreach(i):
            x, y = data[i % BATCHES]
            opt.zero_grad()
            logits, inputs = forward(x, True)
            loss = F.cross_entropy(logits, y)
            loss.backward()
            norms = torch.stack(torch._foreach_norm([p.grad for p in params] + [h.grad for h in inputs]))
            logs.append((loss.item(), norms.tolist()))
            opt.step()

        fns = {"plain": step_plain, "item": step_item, "foreach": step_foreach}
        res = measure_modes({m: fns[m] for m in modes}, args.warmup, args.block_sec, args.blocks,
                            fixed=args.steps, retries=args.retries)
        logs.clear()
        step_item(0)
        loss0, _, block_grads = logs[-1]
        logs.clear()
        fl = flops(d, H, L, ffn, T, B, in_dim)
        base_us = res.get("plain", {}).get("us_per_step")
        for m in modes:
            r = res[m]
            emit({
                "framework": "pytorch",
                "framework_version": torch.__version__,
                "bench": "transformer_step",
                "config": {"d_model": d, "heads": H, "depth": L, "ffn": ffn, "seq": T, "batch": B,
                           "in_dim": in_dim, "classes": CLASSES, "norm_first": args.norm_first,
                           "activation": "relu", "loss": "cross_entropy", "optimizer": "adam", "lr": LR,
                           "params": sum(p.numel() for p in params)},
                "threads": args.threads,
                "instrumented": m != "plain",
                "mode": m,
                "steps_per_sec": round(r["steps_per_sec"], 2),
                "us_per_step": round(r["us_per_step"], 1),
                "us_per_step_min": round(r["us_per_step_min"], 1),
                "us_per_step_max": round(r["us_per_step_max"], 1),
                "spread_pct": round(r["spread_pct"], 1),
                "steps_per_block": r["steps_per_block"],
                "blocks": r["blocks"],
                "other_busy_cores_max": round(r["other_busy_cores_max"], 2),
                "contended_blocks": r["contended_blocks"],
                "overhead_pct": (round((r["us_per_step"] / base_us - 1) * 100, 1)
                                 if base_us and m != "plain" else None),
                "matmul_gflop_per_step": round(fl / 1e9, 4),
                "achieved_gflops": round(fl / r["us_per_step"] / 1e3, 2),
                "block_input_grad_norms": [round(v, 6) for v in block_grads],
                "torch": tinfo,
                "tag": args.tag,
            }, args.out)


if __name__ == "__main__":
    sys.exit(main())
