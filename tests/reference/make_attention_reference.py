#!/usr/bin/env python3
"""PyTorch float64 reference files for gradscope's attention, pool and transformer blocks.

What it makes (all in this directory, each file a few tens of KB; made with torch 2.15.0, numpy 2.4):

  attn_<name>.json  one forward/backward on all inline sequences (batch = all samples), as
                    `gradscope analyze --gradients` (and `POST /v1/analyze` with
                    `"return_gradients": true`) runs it:
      {"description": str,
       "spec": <gradscope spec: name, seed, model (every parameter explicit),
                data {"type": "inline_sequences", "x": B x T x F, "y": ...},
                training {"loss", "batch_size": B, "steps": 1, "optimizer": sgd lr 0.1,
                          "precision": "f64", "shuffle": false}>,
       "loss": float,
       "gradients": <layout>}

    <names> (d_model 8, 2 heads of 4, T 5, B 4, 3 input features; every model starts with a
    dense(linear, 8) input projection applied at every step):
      mha                  dense -> attention -> pool last -> dense(3 classes); cross_entropy, one
                           label per sequence
      mha_causal_mean      dense -> attention(causal) -> pool mean -> dense(2); mse, a row of 2
                           values per sequence
      pre_ln_relu/gelu     dense -> nn.TransformerEncoderLayer(d_model 8, nhead 2, dim_feedforward 16,
                           dropout 0, activation relu/gelu, batch_first, norm_first=True) -> final
                           nn.LayerNorm -> pool last -> dense(3 classes); cross_entropy
      post_ln_relu/gelu    the same with norm_first=False and no final LayerNorm
      per_step             dense -> two pre-LN (gelu) nn.TransformerEncoderLayer blocks with the causal
                           mask -> final LayerNorm -> dense(2) at every step, no pool; mse on a
                           B x T x 2 target

Layers in the spec:
  attention  {"type": "attention", "heads": H, "causal": bool, "in_proj_weight": 3d x d (q, k, v
             stacked), "in_proj_bias": 3d, "out_proj.weight": d x d, "out_proj.bias": d}: exactly
             nn.MultiheadAttention(d, H, dropout=0, bias=True, batch_first=True)(x, x, x,
             attn_mask=M)[0] with M = None, or with causal M[i, j] = -inf for j > i (step i attends to
             steps <= i): per head h (features h*d/H ..), S = q k^T / sqrt(d/H), P = softmax(S + M)
             over the keys, O = P v; out = concat_h(O) out_proj.weight^T + out_proj.bias.
  pool       {"type": "pool", "mode": "last"|"mean"}: B x T x d -> B x d (no parameters).
  dense      per time step: act(x W^T + b); linear, relu or gelu (the exact erf form, nn.GELU()).
  layer_norm per time step over the d features, eps 1e-5 (nn.LayerNorm), "weight", "bias".
  residual   {"layers": [...]}: x + f(x).
  A pre-LN nn.TransformerEncoderLayer is residual[layer_norm(norm1), attention(self_attn)],
  residual[layer_norm(norm2), dense(16, act; linear1), dense(8, linear; linear2)]; a post-LN one is
  residual[attention(self_attn)], layer_norm(norm1), residual[dense(linear1), dense(linear2)],
  layer_norm(norm2).
Losses: cross_entropy = mean over the B sequences; mse = mean over all elements (B*K per sequence
targets, B*T*K per step targets). Targets y: B class ints; B rows of K floats; B x T x K floats.

<layout>: a list parallel to spec.model.layers: attention -> {"in_proj_weight", "in_proj_bias",
"out_proj.weight", "out_proj.bias"}, dense and layer_norm -> {"weight", "bias"}, pool -> {},
residual -> {"layers": [<layout of the inner layers>]}; each gradient has its parameter's shape
(matrices as lists of rows).

How to run (a venv with PyTorch for the CPU and numpy: `python3 -m venv "$HOME/.cache/gradscope-ref-venv"`,
then its `pip install torch numpy`):
    "$HOME/.cache/gradscope-ref-venv/bin/python" tests/reference/make_attention_reference.py
It is deterministic (fixed numpy seeds; parameters ~ uniform, inputs and regression targets ~ N(0, 1),
all rounded to 6 decimals and then used exactly as written). The MHA fast path is switched off
(torch.backends.mha.set_fastpath_enabled(False); it would only apply without autograd anyway) and
every module is in training mode with dropout 0. Before writing a file it checks, and aborts on any
failure:
  * nn.MultiheadAttention gives the same outputs and gradients with need_weights False (the stored
    run), True with average_attn_weights True, and True with it False; the causal mask written as a
    float -inf mask, as a bool mask, and with the is_causal hint agree too;
  * the transformer files: nn.TransformerEncoderLayer (the source of the stored numbers, its
    state_dict mapped onto the spec layers) and the explicit composition of the spec's layers
    (residual / layer_norm / nn.MultiheadAttention / dense) agree on outputs, loss and every
    gradient;
  * torch.autograd.gradcheck on the float64 network (all parameters at once);
  * a separate numpy interpreter of the written spec JSON (no torch; attention written out)
    reproduces the loss, and central differences of it match EVERY stored gradient entry (so the
    spec really describes the network whose gradients are stored, layout mapping included);
  * causal files: in the numpy interpreter, changing the inputs at the last step leaves every
    earlier step's attention output unchanged, and dropping the mask changes the gradients;
  * the attention is neither saturated nor uniform (every unmasked probability >= MIN_PROB, and
    some row's largest probability exceeds the uniform one by at least MIN_PEAK); relu feed-forward
    pre-activations are at least KINK_MARGIN away from 0 and each relu layer sees both signs
    (fraction of either sign >= MIN_SIGN_FRACTION); every file is below MAX_BYTES.
"""

import copy
import json
import math
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
torch.backends.mha.set_fastpath_enabled(False)

OUT_DIR = os.path.dirname(os.path.abspath(__file__))
EPS = 1e-5
D_MODEL, HEADS, FFN, T_STEPS, BATCH, IN_FEATURES = 8, 2, 16, 5, 4, 3
KINK_MARGIN = 0.005      # min |pre-activation| of every relu input (FD steps move it by < 1e-4)
MIN_SIGN_FRACTION = 0.2
MIN_PROB = 1e-3          # every unmasked attention probability at least this
MIN_PEAK = 0.1           # some row's max probability >= 1/(attended steps) + this
MAX_BYTES = 200_000
ATTN_PARAMS = ["in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"]
STRUCT = {"type", "units", "activation", "heads", "causal", "mode", "layers", "eps"}


# --------------------------------------------------------------------------------------------
# Spec construction
# --------------------------------------------------------------------------------------------

def fill_params(layers, width, rng):
    """Returns (layers with explicit parameters, output width). Input dicts are not modified."""
    out = []
    for L in layers:
        L = dict(L)
        t = L["type"]
        if t == "dense":
            u = L["units"]
            lim = math.sqrt(6.0 / (width + u)) * 1.2
            L["weight"] = r6(rng.uniform(-lim, lim, (u, width)))
            L["bias"] = r6(rng.uniform(-0.4, 0.4, u))
            width = u
        elif t == "layer_norm":
            L["weight"] = r6(rng.uniform(0.6, 1.5, width))
            L["bias"] = r6(rng.uniform(-0.4, 0.4, width))
        elif t == "attention":
            d = width
            assert d % L["heads"] == 0
            lim_in = math.sqrt(6.0 / (d + 3 * d)) * 1.2    # Xavier over the stacked 3d x d, x1.2
            L["in_proj_weight"] = r6(rng.uniform(-lim_in, lim_in, (3 * d, d)))
            L["in_proj_bias"] = r6(rng.uniform(-0.3, 0.3, 3 * d))
            L["out_proj.weight"] = r6(rng.uniform(-1.2 / math.sqrt(d), 1.2 / math.sqrt(d), (d, d)))
            L["out_proj.bias"] = r6(rng.uniform(-0.3, 0.3, d))
        elif t == "pool":
            pass
        elif t == "residual":
            inner, w2 = fill_params(L["layers"], width, rng)
            assert w2 == width, "residual inner stack must keep the width"
            L["layers"] = inner
        else:
            raise ValueError(t)
        out.append(L)
    return out, width


def per_step_output(layers):
    """Whether the network output keeps the time steps (no pool)."""
    return not any(L["type"] == "pool" for L in layers)


def leaves(spec_layers, layout):
    """(spec layer dict, parameter name, layout leaf) for every parameter; checks the layout's
    structure and names against the spec."""
    assert len(spec_layers) == len(layout), "layout not parallel to spec.model.layers"
    for L, G in zip(spec_layers, layout):
        if L["type"] == "residual":
            assert list(G) == ["layers"], list(G)
            yield from leaves(L["layers"], G["layers"])
            continue
        expected = [k for k in L if k not in STRUCT]
        assert sorted(G) == sorted(expected), (L["type"], sorted(G), sorted(expected))
        want = {"dense": ["weight", "bias"], "layer_norm": ["weight", "bias"], "attention": ATTN_PARAMS,
                "pool": []}[L["type"]]
        assert sorted(G) == sorted(want), (L["type"], sorted(G))
        for k in want:
            yield L, k, G[k]


# --------------------------------------------------------------------------------------------
# Torch: explicit composition of the spec's layers
# --------------------------------------------------------------------------------------------

def t64(v):
    return torch.tensor(v, dtype=torch.float64)


def set_(param, value):
    with torch.no_grad():
        assert tuple(param.shape) == np.asarray(value).shape, (tuple(param.shape), np.asarray(value).shape)
        param.copy_(t64(value))


def make_act(name):
    return {"linear": nn.Identity(), "relu": nn.ReLU(), "gelu": nn.GELU(approximate="none")}[name]


def causal_mask(T, kind="float"):
    """PyTorch's causal mask: -inf (float) / True (bool) above the diagonal."""
    if kind == "bool":
        return torch.ones(T, T, dtype=torch.bool).triu(1)
    return nn.Transformer.generate_square_subsequent_mask(T, dtype=torch.float64)


# How nn.MultiheadAttention is called in the explicit composition (varied by the self-checks).
MHA_CALL = {"need_weights": False, "average_attn_weights": True, "mask": "float", "is_causal": False}


class Dense(nn.Module):
    def __init__(self, L, width):
        super().__init__()
        self.linear = nn.Linear(width, L["units"])
        set_(self.linear.weight, L["weight"])
        set_(self.linear.bias, L["bias"])
        self.act_name = L["activation"]
        self.act = make_act(L["activation"])
        self.out_width = L["units"]
        self.pre = None

    def forward(self, x):
        z = self.linear(x)
        self.pre = z.detach()
        return self.act(z)

    def named(self):
        return {"weight": self.linear.weight, "bias": self.linear.bias}


class Norm(nn.Module):
    def __init__(self, L, width):
        super().__init__()
        self.m = nn.LayerNorm(width, eps=EPS)
        set_(self.m.weight, L["weight"])
        set_(self.m.bias, L["bias"])
        self.out_width = width

    def forward(self, x):
        return self.m(x)

    def named(self):
        return {"weight": self.m.weight, "bias": self.m.bias}


class Attn(nn.Module):
    def __init__(self, L, width):
        super().__init__()
        self.m = nn.MultiheadAttention(width, L["heads"], dropout=0.0, bias=True, batch_first=True)
        self.causal = L["causal"]
        for k in ATTN_PARAMS:
            set_(self.named()[k], L[k])
        self.out_width = width

    def forward(self, x):
        c = MHA_CALL
        mask = causal_mask(x.shape[1], c["mask"]) if self.causal else None
        out, _ = self.m(x, x, x, attn_mask=mask, need_weights=c["need_weights"],
                        average_attn_weights=c["average_attn_weights"],
                        is_causal=c["is_causal"] and self.causal)
        return out

    def named(self):
        return {"in_proj_weight": self.m.in_proj_weight, "in_proj_bias": self.m.in_proj_bias,
                "out_proj.weight": self.m.out_proj.weight, "out_proj.bias": self.m.out_proj.bias}


class Pool(nn.Module):
    def __init__(self, L, width):
        super().__init__()
        self.mode = L["mode"]
        self.out_width = width

    def forward(self, x):
        return x[:, -1] if self.mode == "last" else x.mean(dim=1)

    def named(self):
        return {}


class Stack(nn.Module):
    def __init__(self, layers, width):
        super().__init__()
        mods = []
        for L in layers:
            m = {"dense": Dense, "layer_norm": Norm, "attention": Attn, "pool": Pool,
                 "residual": Residual}[L["type"]](L, width)
            width = m.out_width
            mods.append(m)
        self.mods = nn.ModuleList(mods)
        self.out_width = width

    def forward(self, x):
        for m in self.mods:
            x = m(x)
        return x

    def layout(self, fn):
        return [m.layout(fn) if isinstance(m, Residual) else {k: fn(v) for k, v in m.named().items()}
                for m in self.mods]

    def relu_inputs(self):
        for m in self.mods:
            if isinstance(m, Residual):
                yield from m.inner.relu_inputs()
            elif isinstance(m, Dense) and m.act_name == "relu":
                yield m.pre


class Residual(nn.Module):
    def __init__(self, L, width):
        super().__init__()
        self.inner = Stack(L["layers"], width)
        assert self.inner.out_width == width
        self.out_width = width

    def forward(self, x):
        return x + self.inner(x)

    def layout(self, fn):
        return {"layers": self.inner.layout(fn)}


# --------------------------------------------------------------------------------------------
# Torch: the library's nn.TransformerEncoderLayer, its parameters mapped onto the spec's layers
# --------------------------------------------------------------------------------------------

def tel_layout(tel, norm_first):
    """The spec layers that make up one TransformerEncoderLayer, as a layout of its parameters."""
    sa = tel.self_attn
    attn = {"in_proj_weight": sa.in_proj_weight, "in_proj_bias": sa.in_proj_bias,
            "out_proj.weight": sa.out_proj.weight, "out_proj.bias": sa.out_proj.bias}

    def pair(m):
        return {"weight": m.weight, "bias": m.bias}
    ffn = [pair(tel.linear1), pair(tel.linear2)]
    if norm_first:
        return [{"layers": [pair(tel.norm1), attn]}, {"layers": [pair(tel.norm2)] + ffn}]
    return [{"layers": [attn]}, pair(tel.norm1), {"layers": ffn}, pair(tel.norm2)]


def tel_spec_layers(norm_first, act, causal):
    attn = {"type": "attention", "heads": HEADS, "causal": causal}
    ffn = [{"type": "dense", "units": FFN, "activation": act},
           {"type": "dense", "units": D_MODEL, "activation": "linear"}]
    if norm_first:
        return [{"type": "residual", "layers": [{"type": "layer_norm"}, attn]},
                {"type": "residual", "layers": [{"type": "layer_norm"}] + ffn}]
    return [{"type": "residual", "layers": [attn]}, {"type": "layer_norm"},
            {"type": "residual", "layers": ffn}, {"type": "layer_norm"}]


class TelNet(nn.Module):
    """items: a list of ("layer", spec layer) for a plain spec layer (dense, layer_norm, pool) or
    ("tel", norm_first, act, causal, n_spec_layers) for one nn.TransformerEncoderLayer."""

    def __init__(self, items, spec_layers, width):
        super().__init__()
        mods, self.kinds, i = [], [], 0
        for it in items:
            if it[0] == "layer":
                L = spec_layers[i]
                m = Stack([L], width)
                i += 1
                self.kinds.append(("layer", None))
                width = m.out_width
            else:
                _, norm_first, act, causal, n = it
                m = nn.TransformerEncoderLayer(d_model=width, nhead=HEADS, dim_feedforward=FFN,
                                               dropout=0.0, activation=act, layer_norm_eps=EPS,
                                               batch_first=True, norm_first=norm_first, bias=True)
                lay = tel_layout(m, norm_first)
                assert len(lay) == n
                for L, k, p in leaves(spec_layers[i:i + n], lay):
                    set_(p, L[k])
                # every TEL parameter is mapped onto exactly one spec parameter
                mapped = {id(p) for _, _, p in leaves(spec_layers[i:i + n], lay)}
                assert mapped == {id(p) for p in m.parameters()}, "unmapped TransformerEncoderLayer parameter"
                self.kinds.append(("tel", (norm_first, causal)))
                i += n
            mods.append(m)
        assert i == len(spec_layers)
        self.mods = nn.ModuleList(mods)
        self.tel_call = {"mask": "float", "is_causal": False}

    def forward(self, x):
        for (kind, info), m in zip(self.kinds, self.mods):
            if kind == "layer":
                x = m(x)
            else:
                causal = info[1]
                mask = causal_mask(x.shape[1], self.tel_call["mask"]) if causal else None
                x = m(x, src_mask=mask, is_causal=self.tel_call["is_causal"] and causal)
        return x

    def layout(self, fn):
        out = []
        for (kind, info), m in zip(self.kinds, self.mods):
            if kind == "layer":
                out += m.layout(fn)
            else:
                out += [walk_layout(L, fn) for L in tel_layout(m, info[0])]
        return out


def walk_layout(G, fn):
    if "layers" in G:
        return {"layers": [walk_layout(x, fn) for x in G["layers"]]}
    return {k: fn(v) for k, v in G.items()}


# --------------------------------------------------------------------------------------------
# Loss, targets
# --------------------------------------------------------------------------------------------

def torch_targets(spec):
    y = spec["data"]["y"]
    if spec["training"]["loss"] == "cross_entropy":
        return torch.tensor(y, dtype=torch.long)
    return t64(y)


def torch_loss(kind, out, Y):
    if kind == "cross_entropy":
        return F.cross_entropy(out.reshape(-1, out.shape[-1]), Y.reshape(-1), reduction="mean")
    if kind == "mse":
        assert out.shape == Y.shape, (out.shape, Y.shape)
        return F.mse_loss(out, Y, reduction="mean")
    raise ValueError(kind)


def to_json(t):
    return t.detach().tolist()


def grads_of(net):
    return net.layout(lambda p: p.grad.detach().clone())


def max_tree_diff(a, b):
    """Max |a - b| over two layouts of tensors (same structure and keys)."""
    if isinstance(a, list):
        assert len(a) == len(b)
        return max([max_tree_diff(x, y) for x, y in zip(a, b)], default=0.0)
    if isinstance(a, dict):
        assert list(a) == list(b), (list(a), list(b))
        return max([max_tree_diff(a[k], b[k]) for k in a], default=0.0)
    return float((a - b).abs().max())


def forward_backward(net, X, Y, kind):
    net.zero_grad()
    out = net(X)
    lval = torch_loss(kind, out, Y)
    lval.backward()
    return out.detach(), lval.item(), grads_of(net)


# --------------------------------------------------------------------------------------------
# Independent numpy interpreter of the spec (forward only)
# --------------------------------------------------------------------------------------------

_erf = np.vectorize(math.erf)


def np_act(name, z):
    if name == "linear":
        return z
    if name == "relu":
        return np.where(z > 0, z, 0.0)
    if name == "gelu":
        return 0.5 * z * (1.0 + _erf(z / math.sqrt(2.0)))
    raise ValueError(name)


def np_layer_norm(z, w, b):
    mu = z.mean(axis=-1, keepdims=True)
    var = ((z - mu) ** 2).mean(axis=-1, keepdims=True)
    return (z - mu) / np.sqrt(var + EPS) * w + b


def np_attention(L, x, probs=None):
    """x: B x T x d. Written out head by head."""
    B, T, d = x.shape
    H = L["heads"]
    dh = d // H
    W, bias = L["in_proj_weight"], L["in_proj_bias"]
    q = x @ W[:d].T + bias[:d]
    k = x @ W[d:2 * d].T + bias[d:2 * d]
    v = x @ W[2 * d:].T + bias[2 * d:]
    heads = []
    for h in range(H):
        sl = slice(h * dh, (h + 1) * dh)
        S = np.einsum("bid,bjd->bij", q[..., sl], k[..., sl]) / math.sqrt(dh)
        if L["causal"]:
            S = np.where(np.triu(np.ones((T, T), dtype=bool), 1), -np.inf, S)
        m = S.max(axis=-1, keepdims=True)
        e = np.exp(S - m)
        P = e / e.sum(axis=-1, keepdims=True)
        if probs is not None:
            probs.append((L["causal"], P))
        heads.append(np.einsum("bij,bjd->bid", P, v[..., sl]))
    o = np.concatenate(heads, axis=-1)
    return o @ L["out_proj.weight"].T + L["out_proj.bias"]


def np_run(layers, a, probs=None, attn_out=None):
    for L in layers:
        t = L["type"]
        if t == "dense":
            a = np_act(L["activation"], a @ L["weight"].T + L["bias"])
        elif t == "layer_norm":
            a = np_layer_norm(a, L["weight"], L["bias"])
        elif t == "attention":
            a = np_attention(L, a, probs)
            if attn_out is not None:
                attn_out.append(a)
        elif t == "pool":
            a = a[:, -1] if L["mode"] == "last" else a.mean(axis=1)
        elif t == "residual":
            a = a + np_run(L["layers"], a, probs, attn_out)
        else:
            raise ValueError(t)
    return a


def np_loss(spec, x=None, **kw):
    x = np.asarray(spec["data"]["x"], dtype=np.float64) if x is None else x
    out = np_run(spec["model"]["layers"], x, **kw)
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


def arrays_in_place(layers):
    for L in layers:
        for k in list(L):
            if k == "layers":
                arrays_in_place(L["layers"])
            elif k not in STRUCT:
                L[k] = np.asarray(L[k], dtype=np.float64)


def as_arrays(spec):
    spec = copy.deepcopy(spec)
    arrays_in_place(spec["model"]["layers"])
    return spec


def fd_check(doc, h=1e-5, atol=1e-8, rtol=1e-6):
    """Central differences of the numpy interpreter vs every stored gradient entry; returns
    (max error, entries checked)."""
    spec = as_arrays(doc["spec"])
    loss0 = np_loss(spec)
    assert abs(loss0 - doc["loss"]) <= 1e-12 * max(1.0, abs(loss0)), (loss0, doc["loss"])
    worst, n = 0.0, 0
    for L, k, g in leaves(spec["model"]["layers"], doc["gradients"]):
        arr, g = L[k], np.asarray(g, dtype=np.float64)
        assert g.shape == arr.shape, (k, g.shape, arr.shape)
        for idx in np.ndindex(arr.shape):
            orig = arr[idx]
            arr[idx] = orig + h
            lp = np_loss(spec)
            arr[idx] = orig - h
            lm = np_loss(spec)
            arr[idx] = orig
            fd = (lp - lm) / (2 * h)
            err = abs(fd - g[idx])
            assert err <= atol + rtol * abs(g[idx]), (L["type"], k, idx, fd, g[idx])
            worst, n = max(worst, err), n + 1
    return worst, n


def attention_ok(spec):
    """Neither saturated nor uniform attention (numpy interpreter, written spec)."""
    probs = []
    np_loss(as_arrays(spec), probs=probs)
    peak = 0.0
    for causal, P in probs:
        T = P.shape[-1]
        for i in range(T):
            n_att = i + 1 if causal else T
            row = P[:, i, :n_att]
            if row.min() < MIN_PROB:
                return False, 0.0
            if causal:
                assert np.all(P[:, i, n_att:] == 0.0)
            if n_att > 1:
                peak = max(peak, float((row.max(axis=-1) - 1.0 / n_att).max()))
    return peak >= MIN_PEAK, peak


def causality_check(spec):
    """Changing the last step's input leaves every earlier step's attention output unchanged."""
    sp = as_arrays(spec)
    x = np.asarray(sp["data"]["x"], dtype=np.float64)
    x2 = x.copy()
    x2[:, -1] += 0.7
    a1, a2 = [], []
    np_run(sp["model"]["layers"], x, attn_out=a1)
    np_run(sp["model"]["layers"], x2, attn_out=a2)
    assert a1, "no attention layer"
    for u, v in zip(a1, a2):
        assert np.array_equal(u[:, :-1], v[:, :-1]), "causal attention reads a later step"
        assert np.abs(u[:, -1] - v[:, -1]).max() > 1e-3


def relu_ok(stack):
    for pre in stack.relu_inputs():
        if pre.abs().min().item() < KINK_MARGIN:
            return False
        pos = (pre > 0).double().mean().item()
        if pos < MIN_SIGN_FRACTION or pos > 1 - MIN_SIGN_FRACTION:
            return False
    return True


def has_causal(layers):
    return any(has_causal(L["layers"]) if L["type"] == "residual" else
               (L["type"] == "attention" and L["causal"]) for L in layers)


def set_causal(layers, value):
    for L in layers:
        if L["type"] == "residual":
            set_causal(L["layers"], value)
        elif L["type"] == "attention":
            L["causal"] = value


# --------------------------------------------------------------------------------------------
# One file
# --------------------------------------------------------------------------------------------

def make_data(rng, B, T, F_in, loss, per_step, out_w):
    x = r6(rng.normal(0.0, 1.0, (B, T, F_in)))
    if loss == "cross_entropy":
        assert not per_step and B >= out_w
        y = [int(v) for v in rng.permutation(np.arange(B) % out_w)]   # every class present
    else:
        y = r6(rng.normal(0.0, 1.0, (B, T, out_w) if per_step else (B, out_w)))
        assert all(v != int(v) for v in np.asarray(y).reshape(-1))     # never read as labels
    return x, y


def make_case(name, what, items, loss, base_seed):
    """items: ("layer", spec layer) or ("tel", norm_first, act, causal); the stored numbers come
    from TelNet (nn.TransformerEncoderLayer for the "tel" items, nn.MultiheadAttention etc. for the
    rest), checked against the explicit composition of the written spec's layers."""
    struct, tel_items = [], []
    for it in items:
        if it[0] == "layer":
            struct.append(it[1])
            tel_items.append(it)
        else:
            _, norm_first, act, causal = it
            ls = tel_spec_layers(norm_first, act, causal)
            struct += ls
            tel_items.append(("tel", norm_first, act, causal, len(ls)))
    per_step = per_step_output(struct)
    for seed in range(base_seed, base_seed + 500):
        rng = np.random.default_rng(seed)
        full, out_w = fill_params(struct, IN_FEATURES, rng)
        x, y = make_data(rng, BATCH, T_STEPS, IN_FEATURES, loss, per_step, out_w)
        spec = {"name": f"reference attn_{name}", "seed": seed,
                "model": {"input_dim": IN_FEATURES, "layers": full},
                "data": {"type": "inline_sequences", "x": x, "y": y},
                "training": {"loss": loss, "batch_size": BATCH, "steps": 1,
                             "optimizer": {"type": "sgd", "lr": 0.1},
                             "precision": "f64", "shuffle": False}}
        X, Y = t64(x), torch_targets(spec)

        # explicit composition of the written spec's layers
        explicit = Stack(full, IN_FEATURES)
        explicit.train()
        out_e, loss_e, grads_e = forward_backward(explicit, X, Y, loss)
        if not relu_ok(explicit):
            continue
        ok, peak = attention_ok(spec)
        if not ok:
            continue

        # nn.MultiheadAttention call variants: need_weights / average_attn_weights / mask form
        variants = [{"need_weights": True, "average_attn_weights": True},
                    {"need_weights": True, "average_attn_weights": False}]
        if has_causal(full):
            variants += [{"mask": "bool"}, {"is_causal": True}, {"mask": "bool", "is_causal": True}]
        worst_var = 0.0
        for v in variants:
            saved = dict(MHA_CALL)
            MHA_CALL.update(v)
            try:
                o, lv, g = forward_backward(explicit, X, Y, loss)
            finally:
                MHA_CALL.clear()
                MHA_CALL.update(saved)
            d_o, d_g = float((o - out_e).abs().max()), max_tree_diff(g, grads_e)
            assert d_o < 1e-13 and abs(lv - loss_e) < 1e-13 and d_g < 1e-12, (name, v, d_o, d_g)
            worst_var = max(worst_var, d_o, d_g)

        # the network the stored numbers come from
        net = TelNet(tel_items, full, IN_FEATURES)
        net.train()
        assert sum(isinstance(m, nn.TransformerEncoderLayer) for m in net.modules()) == \
            sum(it[0] == "tel" for it in items), name
        out_t, loss_t, grads_t = forward_backward(net, X, Y, loss)
        d_out, d_grad = float((out_t - out_e).abs().max()), max_tree_diff(grads_t, grads_e)
        assert d_out < 1e-13 and abs(loss_t - loss_e) < 1e-13 and d_grad < 1e-12, (name, d_out, d_grad)
        if has_causal(full):
            for tc in ({"mask": "bool", "is_causal": False}, {"mask": "float", "is_causal": True}):
                net.tel_call = tc
                o, lv, g = forward_backward(net, X, Y, loss)
                assert float((o - out_t).abs().max()) < 1e-13 and max_tree_diff(g, grads_t) < 1e-12, (name, tc)
            net.tel_call = {"mask": "float", "is_causal": False}
            out_t, loss_t, grads_t = forward_backward(net, X, Y, loss)

        # gradcheck over every parameter at once
        names, vals = zip(*[(k, v) for k, v in net.named_parameters()])

        def f(*ps):
            o = torch.func.functional_call(net, dict(zip(names, ps)), (X,))
            return torch_loss(loss, o, Y)

        assert torch.autograd.gradcheck(
            f, tuple(v.detach().clone().requires_grad_(True) for v in vals),
            eps=1e-6, atol=1e-7, rtol=1e-5), name

        grads = net.layout(lambda p: to_json(p.grad))
        doc = {"description": what, "spec": spec, "loss": loss_t, "gradients": grads}
        worst_fd, count = fd_check(doc)
        assert count == sum(p.numel() for p in net.parameters()), (count, name)

        note = ""
        if has_causal(full):
            causality_check(spec)
            nc = copy.deepcopy(spec)
            set_causal(nc["model"]["layers"], False)
            ref = Stack(nc["model"]["layers"], IN_FEATURES)
            ref.train()
            _, _, g_nc = forward_backward(ref, X, Y, loss)
            dm = max_tree_diff(g_nc, grads_e)
            assert dm > 1e-3, (name, "the causal mask changes nothing", dm)
            note = f", mask changes grads by up to {dm:.3g}"

        path = os.path.join(OUT_DIR, f"attn_{name}.json")
        text = dumps(doc) + "\n"
        assert json.loads(text) == doc
        assert len(text) < MAX_BYTES, (name, len(text))
        with open(path, "w") as fh:
            fh.write(text)
        print(f"{os.path.basename(path)}: seed {seed}, loss {loss_t:.6f}, TEL/MHA vs explicit max "
              f"|dout| {d_out:.1e} |dg| {d_grad:.1e}, MHA call variants {worst_var:.1e}, attention "
              f"peak {peak:.3f}{note}, {count} fd entries max |fd - g| {worst_fd:.2e}, {len(text)} bytes")
        return
    raise RuntimeError(f"no seed met the criteria for {name}")


# --------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------

COMMON = (
    "One forward/backward on all inline sequences (batch = all 4 samples, no shuffling), PyTorch "
    "float64, training mode, dropout 0; d_model 8, 2 heads of 4 features, T 5, 3 input features. "
    "attention = nn.MultiheadAttention(d, heads, dropout=0, bias=True, batch_first=True)(x, x, x"
    "[, attn_mask = -inf above the diagonal when causal])[0]: per head S = q k^T / sqrt(d/heads), "
    "softmax over the keys, parameters in its state_dict layout (in_proj_weight 3d x d with q, k, v "
    "stacked, in_proj_bias 3d, out_proj.weight d x d, out_proj.bias d); dense and layer_norm (eps "
    "1e-5, over the features) apply at every time step; gelu is the exact erf form. 'loss' is the "
    "loss at the given parameters; 'gradients' a list parallel to spec.model.layers (attention -> "
    "in_proj_weight, in_proj_bias, out_proj.weight, out_proj.bias; dense, layer_norm -> weight, "
    "bias; pool -> {}; residual -> {\"layers\": [...]}), each of its parameter's shape.")

TEL = (
    " The stored numbers are those of torch.nn.TransformerEncoderLayer(d_model=8, nhead=2, "
    "dim_feedforward=16, dropout=0.0, activation={act}, batch_first=True, norm_first={nf}) with its "
    "state_dict mapped onto the spec layers ({mapping}); the script checks that the explicit "
    "composition of the spec layers gives the same outputs and gradients.")
PRE_MAP = ("residual[layer_norm = norm1, attention = self_attn], residual[layer_norm = norm2, "
           "dense(16) = linear1, dense(8, linear) = linear2]")
POST_MAP = ("residual[attention = self_attn], layer_norm = norm1, residual[dense(16) = linear1, "
            "dense(8, linear) = linear2], layer_norm = norm2")


def dense(units, act="linear"):
    return ("layer", {"type": "dense", "units": units, "activation": act})


def main():
    print("torch", torch.__version__, "numpy", np.__version__)
    ce = "cross_entropy (mean over the 4 sequences), y = one class int per sequence. "
    make_case("mha",
              "dense(linear, 8) -> attention(2 heads, not causal) -> pool(last) -> dense(linear, 3 "
              "classes); " + ce + COMMON,
              [dense(D_MODEL), ("layer", {"type": "attention", "heads": HEADS, "causal": False}),
               ("layer", {"type": "pool", "mode": "last"}), dense(3)],
              "cross_entropy", base_seed=100)
    make_case("mha_causal_mean",
              "dense(linear, 8) -> attention(2 heads, causal: step t attends to steps <= t) -> "
              "pool(mean over the 5 steps) -> dense(linear, 2); mse (mean over all 4 x 2 elements), "
              "y = a row of 2 floats per sequence. " + COMMON,
              [dense(D_MODEL), ("layer", {"type": "attention", "heads": HEADS, "causal": True}),
               ("layer", {"type": "pool", "mode": "mean"}), dense(2)],
              "mse", base_seed=200)
    for i, act in enumerate(["relu", "gelu"]):
        kink = (f" Every relu input is at least {KINK_MARGIN} away from 0 and the relu layer sees "
                "both signs." if act == "relu" else "")
        make_case(f"pre_ln_{act}",
                  "dense(linear, 8) -> pre-LN transformer encoder block (residual[layer_norm, "
                  f"attention(2 heads)], residual[layer_norm, dense(16, {act}), dense(8, linear)]) -> "
                  "layer_norm (final) -> pool(last) -> dense(linear, 3 classes); " + ce + COMMON
                  + TEL.format(act=act, nf=True, mapping=PRE_MAP) + kink,
                  [dense(D_MODEL), ("tel", True, act, False), ("layer", {"type": "layer_norm"}),
                   ("layer", {"type": "pool", "mode": "last"}), dense(3)],
                  "cross_entropy", base_seed=300 + 100 * i)
        make_case(f"post_ln_{act}",
                  "dense(linear, 8) -> post-LN transformer encoder block (residual[attention(2 heads)], "
                  f"layer_norm, residual[dense(16, {act}), dense(8, linear)], layer_norm) -> "
                  "pool(last) -> dense(linear, 3 classes); " + ce + COMMON
                  + TEL.format(act=act, nf=False, mapping=POST_MAP) + kink,
                  [dense(D_MODEL), ("tel", False, act, False),
                   ("layer", {"type": "pool", "mode": "last"}), dense(3)],
                  "cross_entropy", base_seed=500 + 100 * i)
    make_case("per_step",
              "dense(linear, 8) -> two pre-LN transformer encoder blocks with causal attention (each "
              "residual[layer_norm, attention(2 heads, causal)], residual[layer_norm, dense(16, gelu), "
              "dense(8, linear)]) -> layer_norm (final) -> dense(linear, 2) at every step, no pool; "
              "per-step mse: y = 4 x 5 x 2 floats, mean over all 40 elements. " + COMMON
              + TEL.format(act="gelu", nf=True, mapping=PRE_MAP + ", for each block, src_mask = the "
                           "float causal mask")
              + " The script also checks that the last step's input cannot change an earlier step's "
              "attention output.",
              [dense(D_MODEL), ("tel", True, "gelu", True), ("tel", True, "gelu", True),
               ("layer", {"type": "layer_norm"}), dense(2)],
              "mse", base_seed=700)


if __name__ == "__main__":
    sys.exit(main())
