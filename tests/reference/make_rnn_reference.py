#!/usr/bin/env python3
"""PyTorch float64 reference files for gradscope's recurrent layers (BPTT, truncated BPTT).

What it makes (all in this directory, each file a few KB):

  rnn_<name>.json   one forward/backward on all inline sequences (batch = all samples), as
                    gradscope's `POST /v1/analyze` with `"return_gradients": true` runs it:
      {"description": str,
       "spec": <gradscope spec: name, seed, model (every parameter explicit),
                data {"type": "inline_sequences", "x": samples x T x F, "y": ...},
                training {"loss", "batch_size": samples, "steps": 1, "optimizer": sgd lr 0.1,
                          "precision": "f64", "shuffle": false[, "bptt_truncate": k]}>,
       "loss": float,
       "gradients": <layout>,
       "timesteps": {"<index of an rnn layer in spec.model.layers>": [||dL/dh_t|| for t = 1..T]}}

    <names>: vanilla_tanh, vanilla_relu, lstm, gru, stacked_lstm_gru, vanilla_seq, gru_seq,
    truncated_vanilla, truncated_lstm_seq (see CASES at the bottom).

Layers in the spec:
  rnn    {"type": "rnn", "cell": "vanilla"|"lstm"|"gru", "units": H,
          ["activation": "tanh"|"relu" (vanilla only)], "return_sequences": bool,
          "weight_ih": (gates*H) x F_in, "weight_hh": (gates*H) x H, "bias_ih": gates*H,
          "bias_hh": gates*H}
         PyTorch nn.RNN / nn.LSTM / nn.GRU layout and formulas; gates 1 / 4 (i, f, g, o) / 3 (r, z, n):
           vanilla  h' = act(W_ih x + b_ih + W_hh h + b_hh)
           lstm     [i f g o] = W_ih x + b_ih + W_hh h + b_hh; i, f, o sigmoid, g tanh;
                    c' = f*c + i*g; h' = o*tanh(c')
           gru      r = sig(W_ir x + b_ir + W_hr h + b_hr); z = sig(W_iz x + b_iz + W_hz h + b_hz);
                    n = tanh(W_in x + b_in + r*(W_hn h + b_hn)); h' = (1 - z)*n + z*h
         h_0 = 0 and c_0 = 0. Output: h_1..h_T (return_sequences true) or h_T (false).
  dense  {"type": "dense", "units", "activation", "weight" (units x inputs), "bias"}; after a
         sequence output it applies to every time step independently.
Losses: mse = mean over all elements; cross_entropy = mean over rows; with per-step targets the rows
are all (step, sample) pairs (T*B rows, mean over T*B) and mse averages over B*T*K elements.
Targets y: per sequence, B class ints (cross_entropy) or B lists of K floats (mse); per step (only
when the last rnn has return_sequences true): B lists of T class ints, or B x T x K floats.

<layout>: a list parallel to spec.model.layers: rnn -> {"weight_ih", "weight_hh", "bias_ih",
"bias_hh"}, dense -> {"weight", "bias"}, each of the parameter's own shape (matrices as lists of rows).

timesteps: for every rnn layer, the Frobenius norm over the whole batch (B x H) of the TOTAL gradient
dL/dh_t (through later time steps, the layer's own outputs and later layers), t = 1..T.

Truncated BPTT ("bptt_truncate": k): the recurrent state (h, and c for lstm) entering 0-based step
T-k is detached, i.e. treated as a constant, in EVERY rnn layer. The recurrent gradient thus flows
back at most k steps from the last step; earlier steps still get gradients from their own outputs
(return_sequences) and through their own earlier recurrences. Loss and outputs are unchanged. The
timesteps norms are those of this detached graph: the norm of the gradient on the h_t tensor produced
at step t (0 where h_t receives no gradient at all, e.g. t <= T-k with return_sequences false).

How to run (a venv with PyTorch for the CPU and numpy: `python3 -m venv "$HOME/.cache/gradscope-ref-venv"`,
then its `pip install torch numpy`):
    "$HOME/.cache/gradscope-ref-venv/bin/python" tests/reference/make_rnn_reference.py
It is deterministic (fixed numpy seeds; parameters ~ U(-0.6, 0.6), inputs ~ N(0, 1) and regression
targets ~ N(0, 1), all rounded to 6 decimals and then used exactly as written). Before writing a
file it checks, and aborts on any failure:
  * nn.RNN / nn.LSTM / nn.GRU (truncation emulated by running the first T-k steps, detaching the
    final state and running the last k steps from it) and a manual unroll with nn.RNNCell /
    nn.LSTMCell / nn.GRUCell (same weights, retain_grad() on every h_t, the source of the stored
    numbers) agree on outputs, loss and every parameter gradient;
  * a separate numpy interpreter of the written spec JSON (no torch) reproduces the loss, and central
    differences of it match EVERY stored parameter gradient entry and every entry of dL/dh_t (hence
    the stored timestep norms); for truncated BPTT the interpreter holds the state entering step T-k
    fixed at its unperturbed value, which is what detaching means;
  * vanilla relu: every recurrent pre-activation is at least KINK_MARGIN away from 0 and each unit
    sees both signs overall; truncated files have exactly zero norms where no gradient can arrive
    and non-zero norms elsewhere; every file is below 100 KB.
"""

import copy
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_reference import dumps, r6  # noqa: E402  (same JSON formatting and rounding)

torch.set_default_dtype(torch.float64)
torch.use_deterministic_algorithms(True)

OUT_DIR = os.path.dirname(os.path.abspath(__file__))
GATES = {"vanilla": 1, "lstm": 4, "gru": 3}
PARAM_LIM = 0.6
KINK_MARGIN = 0.02
MIN_SIGN_FRACTION = 0.2
MAX_BYTES = 100_000


# --------------------------------------------------------------------------------------------
# Spec construction
# --------------------------------------------------------------------------------------------

def fill_params(layers, width, rng):
    out = []
    for L in layers:
        L = dict(L)
        if L["type"] == "rnn":
            g, H = GATES[L["cell"]], L["units"]
            L["weight_ih"] = r6(rng.uniform(-PARAM_LIM, PARAM_LIM, (g * H, width)))
            L["weight_hh"] = r6(rng.uniform(-PARAM_LIM, PARAM_LIM, (g * H, H)))
            L["bias_ih"] = r6(rng.uniform(-PARAM_LIM, PARAM_LIM, g * H))
            L["bias_hh"] = r6(rng.uniform(-PARAM_LIM, PARAM_LIM, g * H))
            width = H
        elif L["type"] == "dense":
            L["weight"] = r6(rng.uniform(-PARAM_LIM, PARAM_LIM, (L["units"], width)))
            L["bias"] = r6(rng.uniform(-PARAM_LIM, PARAM_LIM, L["units"]))
            width = L["units"]
        else:
            raise ValueError(L["type"])
        out.append(L)
    return out, width


def sequence_out(layers):
    """Whether the network output is per time step (the last rnn returns sequences)."""
    seq = True
    for L in layers:
        if L["type"] == "rnn":
            assert seq, "an rnn needs a sequence input"
            seq = L["return_sequences"]
    return seq


def param_names(L):
    return ["weight_ih", "weight_hh", "bias_ih", "bias_hh"] if L["type"] == "rnn" else ["weight", "bias"]


# --------------------------------------------------------------------------------------------
# Torch: library modules and manual unroll
# --------------------------------------------------------------------------------------------

def t64(v):
    return torch.tensor(v, dtype=torch.float64)


def set_(p, v):
    with torch.no_grad():
        p.copy_(t64(v))


def act_fn(name):
    return {"linear": lambda z: z, "tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid}[name]


def build_modules(spec, unrolled):
    mods, width = [], spec["model"]["input_dim"]
    for L in spec["model"]["layers"]:
        if L["type"] == "rnn":
            H, cell = L["units"], L["cell"]
            if unrolled:
                m = {"vanilla": lambda: nn.RNNCell(width, H, nonlinearity=L["activation"]),
                     "lstm": lambda: nn.LSTMCell(width, H),
                     "gru": lambda: nn.GRUCell(width, H)}[cell]()
                names = {k: k for k in param_names(L)}
            else:
                m = {"vanilla": lambda: nn.RNN(width, H, nonlinearity=L["activation"], batch_first=True),
                     "lstm": lambda: nn.LSTM(width, H, batch_first=True),
                     "gru": lambda: nn.GRU(width, H, batch_first=True)}[cell]()
                names = {k: k + "_l0" for k in param_names(L)}
            for k, tk in names.items():
                set_(getattr(m, tk), L[k])
            mods.append((m, names))
            width = H
        else:
            m = nn.Linear(width, L["units"])
            set_(m.weight, L["weight"])
            set_(m.bias, L["bias"])
            mods.append((m, {"weight": "weight", "bias": "bias"}))
            width = L["units"]
    return mods


def run_library(spec, mods, X):
    k = spec["training"].get("bptt_truncate")
    h = X
    for L, (m, _) in zip(spec["model"]["layers"], mods):
        if L["type"] == "rnn":
            T = h.shape[1]
            if k is not None and 0 < T - k:
                out1, st = m(h[:, :T - k])
                st = tuple(s.detach() for s in st) if isinstance(st, tuple) else st.detach()
                out2, _ = m(h[:, T - k:], st)
                out = torch.cat([out1, out2], dim=1)
            else:
                out, _ = m(h)
            h = out if L["return_sequences"] else out[:, -1]
        else:
            h = act_fn(L["activation"])(m(h))
    return h


def run_unrolled(spec, mods, X):
    """Returns (output, {layer index: [h_t tensors with retained grad]})."""
    k = spec["training"].get("bptt_truncate")
    h_in = X
    states = {}
    for li, (L, (m, _)) in enumerate(zip(spec["model"]["layers"], mods)):
        if L["type"] == "rnn":
            B, T, H = h_in.shape[0], h_in.shape[1], L["units"]
            h = torch.zeros(B, H)
            c = torch.zeros(B, H)
            hs = []
            for t in range(T):
                if k is not None and t == T - k:
                    h = h.detach()
                    c = c.detach()
                if L["cell"] == "lstm":
                    h, c = m(h_in[:, t], (h, c))
                else:
                    h = m(h_in[:, t], h)
                h.retain_grad()
                hs.append(h)
            states[li] = hs
            h_in = torch.stack(hs, dim=1) if L["return_sequences"] else hs[-1]
        else:
            h_in = act_fn(L["activation"])(m(h_in))
    return h_in, states


def torch_loss(kind, out, Y):
    if kind == "cross_entropy":
        return F.cross_entropy(out.reshape(-1, out.shape[-1]), Y.reshape(-1), reduction="mean")
    if kind == "mse":
        assert out.shape == Y.shape, (out.shape, Y.shape)
        return F.mse_loss(out, Y, reduction="mean")
    raise ValueError(kind)


def torch_targets(spec):
    y = spec["data"]["y"]
    if spec["training"]["loss"] == "cross_entropy":
        return torch.tensor(y, dtype=torch.long)
    return t64(y)


# --------------------------------------------------------------------------------------------
# Independent numpy interpreter of the spec (forward only)
# --------------------------------------------------------------------------------------------

def sig(z):
    return 1.0 / (1.0 + np.exp(-z))


def np_act(name, z):
    return {"linear": lambda v: v, "tanh": np.tanh, "relu": lambda v: np.where(v > 0, v, 0.0),
            "sigmoid": sig}[name](z)


def np_forward(spec, frozen=None, record=None, perturb=None, pre=None):
    """Forward pass of the spec JSON.

    frozen:  {layer index: (h, c)} used as the state entering step T-k under bptt_truncate
             (constants); None = computed naturally.
    record:  dict filled with {layer index: (h, c)} entering step T-k (natural values).
    perturb: (layer index, t, array B x H) added to h_t of that layer right after it is computed
             (affects every use of h_t; c_t unchanged).
    pre:     dict filled with {layer index: [pre-activations of a vanilla cell per step]}.
    """
    layers = spec["model"]["layers"]
    k = spec["training"].get("bptt_truncate")
    a = np.asarray(spec["data"]["x"], dtype=np.float64)          # B x T x F
    for li, L in enumerate(layers):
        if L["type"] == "rnn":
            Wi, Wh = np.asarray(L["weight_ih"]), np.asarray(L["weight_hh"])
            bi, bh = np.asarray(L["bias_ih"]), np.asarray(L["bias_hh"])
            B, T, H = a.shape[0], a.shape[1], L["units"]
            h, c = np.zeros((B, H)), np.zeros((B, H))
            outs = []
            for t in range(T):
                if k is not None and t == T - k:
                    if record is not None:
                        record[li] = (h.copy(), c.copy())
                    if frozen is not None:
                        h, c = frozen[li]
                gi = a[:, t] @ Wi.T + bi
                gh = h @ Wh.T + bh
                if L["cell"] == "vanilla":
                    z = gi + gh
                    if pre is not None:
                        pre.setdefault(li, []).append(z)
                    h = np_act(L["activation"], z)
                elif L["cell"] == "lstm":
                    s = gi + gh
                    i, f, g, o = (s[:, j * H:(j + 1) * H] for j in range(4))
                    c = sig(f) * c + sig(i) * np.tanh(g)
                    h = sig(o) * np.tanh(c)
                else:
                    r = sig(gi[:, :H] + gh[:, :H])
                    zz = sig(gi[:, H:2 * H] + gh[:, H:2 * H])
                    n = np.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])
                    h = (1.0 - zz) * n + zz * h
                if perturb is not None and perturb[0] == li and perturb[1] == t:
                    h = h + perturb[2]
                outs.append(h)
            a = np.stack(outs, axis=1) if L["return_sequences"] else outs[-1]
        else:
            a = np_act(L["activation"], a @ np.asarray(L["weight"]).T + np.asarray(L["bias"]))
    return a


def np_loss(spec, **kw):
    out = np_forward(spec, **kw)
    y = spec["data"]["y"]
    if spec["training"]["loss"] == "cross_entropy":
        z = out.reshape(-1, out.shape[-1])
        lab = np.asarray(y, dtype=int).reshape(-1)
        m = z.max(axis=1, keepdims=True)
        lse = (m + np.log(np.exp(z - m).sum(axis=1, keepdims=True)))[:, 0]
        return float(np.mean(lse - z[np.arange(len(lab)), lab]))
    yy = np.asarray(y, dtype=np.float64)
    assert yy.shape == out.shape, (yy.shape, out.shape)
    return float(np.mean((out - yy) ** 2))


def as_arrays(spec):
    spec = copy.deepcopy(spec)
    for L in spec["model"]["layers"]:
        for k in param_names(L):
            L[k] = np.asarray(L[k], dtype=np.float64)
    return spec


def fd_check(doc, h=1e-5, atol=1e-8, rtol=1e-6):
    """Central differences of the numpy interpreter vs every stored gradient entry and every
    entry of dL/dh_t; returns (max error, entries checked)."""
    spec = as_arrays(doc["spec"])
    frozen = {}
    loss0 = np_loss(spec, record=frozen)
    assert abs(loss0 - doc["loss"]) <= 1e-12 * max(1.0, abs(loss0)), (loss0, doc["loss"])
    kw = {"frozen": frozen} if spec["training"].get("bptt_truncate") is not None else {}
    worst, n = 0.0, 0
    layers = spec["model"]["layers"]
    assert len(doc["gradients"]) == len(layers), "layout not parallel to spec.model.layers"
    for L, G in zip(layers, doc["gradients"]):
        assert list(G) == param_names(L), (L["type"], list(G))
        for name in param_names(L):
            arr, g = L[name], np.asarray(G[name], dtype=np.float64)
            assert g.shape == arr.shape, (name, g.shape, arr.shape)
            for idx in np.ndindex(arr.shape):
                orig = arr[idx]
                arr[idx] = orig + h
                lp = np_loss(spec, **kw)
                arr[idx] = orig - h
                lm = np_loss(spec, **kw)
                arr[idx] = orig
                fd = (lp - lm) / (2 * h)
                err = abs(fd - g[idx])
                assert err <= atol + rtol * abs(g[idx]), (L["type"], name, idx, fd, g[idx])
                worst, n = max(worst, err), n + 1
    # dL/dh_t for every rnn layer, step and entry; compare the norms with the stored ones.
    assert set(doc["timesteps"]) == {str(i) for i, L in enumerate(layers) if L["type"] == "rnn"}
    B = len(spec["data"]["x"])
    for key, norms in doc["timesteps"].items():
        li = int(key)
        H = layers[li]["units"]
        assert len(norms) == len(spec["data"]["x"][0])
        for t, stored in enumerate(norms):
            gh = np.zeros((B, H))
            for idx in np.ndindex(B, H):
                d = np.zeros((B, H))
                d[idx] = h
                lp = np_loss(spec, perturb=(li, t, d), **kw)
                lm = np_loss(spec, perturb=(li, t, -d), **kw)
                gh[idx] = (lp - lm) / (2 * h)
            err = abs(float(np.linalg.norm(gh)) - stored)
            assert err <= atol + rtol * stored, (key, t, float(np.linalg.norm(gh)), stored)
            worst, n = max(worst, err), n + B * H
    return worst, n


# --------------------------------------------------------------------------------------------
# One file
# --------------------------------------------------------------------------------------------

def relu_ok(spec):
    pre = {}
    np_forward(as_arrays(spec), pre=pre)
    for li, zs in pre.items():
        if spec["model"]["layers"][li]["activation"] != "relu":
            continue
        z = np.stack(zs)                                        # T x B x H
        if np.abs(z).min() < KINK_MARGIN:
            return False
        pos = (z > 0).reshape(-1, z.shape[-1]).mean(axis=0)    # per unit
        if pos.min() < MIN_SIGN_FRACTION or pos.max() > 1 - MIN_SIGN_FRACTION:
            return False
    return True


def make_data(rng, B, T, F_in, loss, per_step, out_w):
    x = r6(rng.normal(0.0, 1.0, (B, T, F_in)))
    if loss == "cross_entropy":
        if per_step:
            while True:
                y = rng.integers(0, out_w, (B, T))
                if len(set(y.reshape(-1).tolist())) == out_w:
                    break
            y = y.tolist()
        else:
            assert B >= out_w
            y = [int(v) for v in rng.permutation(np.arange(B) % out_w)]
    else:
        y = r6(rng.normal(0.0, 1.0, (B, T, out_w) if per_step else (B, out_w)))
    return x, y


def tdiff(a, b):
    return float((a - b).detach().abs().max())


def make_case(name, what, layers, input_dim, B, T, loss, base_seed, bptt=None):
    per_step = sequence_out(layers)
    for seed in range(base_seed, base_seed + 500):
        rng = np.random.default_rng(seed)
        full, out_w = fill_params(layers, input_dim, rng)
        x, y = make_data(rng, B, T, input_dim, loss, per_step, out_w)
        training = {"loss": loss, "batch_size": B, "steps": 1, "optimizer": {"type": "sgd", "lr": 0.1},
                    "precision": "f64", "shuffle": False}
        if bptt is not None:
            training["bptt_truncate"] = bptt
        spec = {"name": f"reference rnn_{name}", "seed": seed,
                "model": {"input_dim": input_dim, "layers": full},
                "data": {"type": "inline_sequences", "x": x, "y": y},
                "training": training}
        if not relu_ok(spec):
            continue

        X, Y = t64(x), torch_targets(spec)
        # library modules
        lib = build_modules(spec, unrolled=False)
        out_lib = run_library(spec, lib, X)
        loss_lib = torch_loss(loss, out_lib, Y)
        loss_lib.backward()
        # manual unroll (the stored numbers)
        man = build_modules(spec, unrolled=True)
        out_man, states = run_unrolled(spec, man, X)
        loss_man = torch_loss(loss, out_man, Y)
        loss_man.backward()

        assert tdiff(out_lib, out_man) < 1e-13, (name, "outputs", tdiff(out_lib, out_man))
        assert abs(loss_lib.item() - loss_man.item()) < 1e-13, (name, "loss")
        grads = []
        worst_lib = 0.0
        for L, (ml, nl), (mm, nm) in zip(full, lib, man):
            G = {}
            for k in param_names(L):
                gl, gm = getattr(ml, nl[k]).grad, getattr(mm, nm[k]).grad
                d = tdiff(gl, gm)
                assert d < 1e-12, (name, k, d)
                worst_lib = max(worst_lib, d)
                G[k] = gm.detach().tolist()
            grads.append(G)

        timesteps = {}
        for li, hs in states.items():
            timesteps[str(li)] = [0.0 if hh.grad is None else float(hh.grad.norm()) for hh in hs]
            ts = timesteps[str(li)]
            L = full[li]
            # where no gradient can arrive: truncated, not returning sequences, below the cut
            cut = T - bptt if bptt is not None and bptt < T else 0
            dead = set(range(cut)) if (cut and not sequence_tail_feeds(full, li)) else set()
            for t, v in enumerate(ts):
                assert (v == 0.0) == (t in dead), (name, li, t, v, L["type"])

        if bptt is not None:
            # truncation must matter: full BPTT (same spec without bptt_truncate) differs
            full_spec = copy.deepcopy(spec)
            del full_spec["training"]["bptt_truncate"]
            ref = build_modules(full_spec, unrolled=True)
            out_f, states_f = run_unrolled(full_spec, ref, X)
            torch_loss(loss, out_f, Y).backward()
            dg = max(tdiff(getattr(mr, nr[k]).grad, getattr(mm, nm[k]).grad)
                     for L, (mr, nr), (mm, nm) in zip(full, ref, man) for k in param_names(L)
                     if L["type"] == "rnn")
            assert dg > 1e-4, (name, "truncation changes nothing", dg)
            full_ts = [float(hh.grad.norm()) for hh in states_f[0]]
            note = ("\n    full BPTT would give ||dL/dh_t||: " + " ".join(f"{v:.3g}" for v in full_ts)
                    + f"; max rnn gradient change {dg:.3g}")
        else:
            note = ""

        doc = {"description": what, "spec": spec, "loss": loss_man.item(), "gradients": grads,
               "timesteps": timesteps}
        worst_fd, count = fd_check(doc)
        path = os.path.join(OUT_DIR, f"rnn_{name}.json")
        text = dumps(doc) + "\n"
        assert json.loads(text) == doc
        assert len(text) < MAX_BYTES, (name, len(text))
        with open(path, "w") as f:
            f.write(text)
        ts_txt = "; ".join(f"layer {k}: " + " ".join(f"{v:.3g}" for v in vs) for k, vs in timesteps.items())
        print(f"{os.path.basename(path)}: seed {seed}, loss {loss_man.item():.6f}, lib vs unroll "
              f"max |dg| {worst_lib:.1e}, {count} fd entries max err {worst_fd:.1e}, {len(text)} bytes\n"
              f"    ||dL/dh_t||: {ts_txt}{note}")
        return
    raise RuntimeError(f"no seed met the criteria for {name}")


def sequence_tail_feeds(layers, li):
    """Whether h_t of rnn layer li for t < T-1 can receive gradient other than through its own
    recurrence: its layer returns sequences (every h_t reaches the output or the next layer)."""
    return layers[li]["return_sequences"]


# --------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------

COMMON = (
    "One forward/backward on all inline sequences (batch = all samples, no shuffling), PyTorch "
    "float64, h_0 = 0 (and c_0 = 0). rnn parameters in PyTorch nn.RNN/LSTM/GRU layout and formulas "
    "(rows: gates x units; gate order i,f,g,o for lstm, r,z,n for gru with n = tanh(W_in x + b_in + "
    "r*(W_hn h + b_hn))); a dense after a sequence output applies to every time step. 'loss' is the "
    "loss at the given parameters; 'gradients' a list parallel to spec.model.layers (rnn -> "
    "weight_ih, weight_hh, bias_ih, bias_hh; dense -> weight, bias; same shapes as the parameters); "
    "'timesteps' maps the index (as a string) of each rnn layer in spec.model.layers to "
    "[||dL/dh_t|| for t = 1..T], the Frobenius norm over the batch (B x H) of the total gradient on "
    "h_t (through later steps, own outputs and later layers).")

TRUNC = (
    " Truncated BPTT (bptt_truncate k): the recurrent state (h and c) entering 0-based step T-k is "
    "detached (a constant), so the recurrent gradient flows back at most k steps from the last step; "
    "the timestep norms are those of this detached graph (gradient on the h_t tensor produced at step "
    "t; 0 where none arrives). Loss and outputs are as without truncation.")


def rnn(cell, units, rs, act=None):
    L = {"type": "rnn", "cell": cell, "units": units}
    if act is not None:
        L["activation"] = act
    L["return_sequences"] = rs
    return L


def dense(units):
    return {"type": "dense", "units": units, "activation": "linear"}


def main():
    print("torch", torch.__version__, "numpy", np.__version__)
    mse_seq = "mse (mean over all elements), y = B rows of K floats (per-sequence targets). "
    make_case("vanilla_tanh",
              "rnn(vanilla tanh, 4 units, return_sequences false) -> dense(linear, 1) on h_T; " + mse_seq + COMMON,
              [rnn("vanilla", 4, False, "tanh"), dense(1)], 2, B=4, T=6, loss="mse", base_seed=100)
    make_case("vanilla_relu",
              "rnn(vanilla relu, 4 units, return_sequences false) -> dense(linear, 1) on h_T; " + mse_seq
              + f"Every recurrent pre-activation is at least {KINK_MARGIN} away from 0 and each unit sees "
              "both signs. " + COMMON,
              [rnn("vanilla", 4, False, "relu"), dense(1)], 2, B=4, T=6, loss="mse", base_seed=200)
    make_case("lstm",
              "rnn(lstm, 4 units, return_sequences false) -> dense(linear, 3 classes) on h_T; cross_entropy "
              "(mean over the B sequences), y = B class ints. " + COMMON,
              [rnn("lstm", 4, False), dense(3)], 3, B=5, T=6, loss="cross_entropy", base_seed=300)
    make_case("gru",
              "rnn(gru, 4 units, return_sequences false) -> dense(linear, 1) on h_T; " + mse_seq + COMMON,
              [rnn("gru", 4, False), dense(1)], 2, B=4, T=6, loss="mse", base_seed=400)
    make_case("stacked_lstm_gru",
              "rnn(lstm, 4 units, return_sequences true) -> rnn(gru, 3 units, return_sequences false) -> "
              "dense(linear, 1) on the gru's h_T; " + mse_seq + COMMON,
              [rnn("lstm", 4, True), rnn("gru", 3, False), dense(1)], 2, B=3, T=5, loss="mse",
              base_seed=500)
    make_case("vanilla_seq",
              "rnn(vanilla tanh, 5 units, return_sequences true) -> dense(linear, 4 classes) at every step; "
              "per-step cross_entropy: y = B lists of T class ints, mean over all T*B (step, sample) rows. "
              + COMMON,
              [rnn("vanilla", 5, True, "tanh"), dense(4)], 3, B=4, T=5, loss="cross_entropy",
              base_seed=600)
    make_case("gru_seq",
              "rnn(gru, 4 units, return_sequences true) -> dense(linear, 2) at every step; per-step mse: "
              "y = B x T x 2 floats, mean over all B*T*2 elements. " + COMMON,
              [rnn("gru", 4, True), dense(2)], 2, B=3, T=6, loss="mse", base_seed=700)
    make_case("truncated_vanilla",
              "rnn(vanilla tanh, 4 units, return_sequences false) -> dense(linear, 1) on h_T, T = 8, "
              "bptt_truncate 3 (state entering step 5 of 0..7 detached: h_1..h_5 get no gradient); "
              + mse_seq + COMMON + TRUNC,
              [rnn("vanilla", 4, False, "tanh"), dense(1)], 2, B=4, T=8, loss="mse", base_seed=800,
              bptt=3)
    make_case("truncated_lstm_seq",
              "rnn(lstm, 4 units, return_sequences true) -> dense(linear, 3 classes) at every step, T = 7, "
              "bptt_truncate 2 (h and c entering step 5 of 0..6 detached); per-step cross_entropy: "
              "y = B lists of T class ints, mean over all T*B rows. " + COMMON + TRUNC,
              [rnn("lstm", 4, True), dense(3)], 3, B=3, T=7, loss="cross_entropy", base_seed=900,
              bptt=2)


if __name__ == "__main__":
    sys.exit(main())
