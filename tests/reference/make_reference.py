#!/usr/bin/env python3
"""PyTorch float64 reference files for gradscope's numerics.

What it makes (all in this directory, each file a few KB):

  grads_<name>.json  one forward/backward in training mode (batch statistics for batch norm)
                     on all inline samples, as gradscope's `POST /v1/analyze` with
                     `"return_gradients": true` runs it:
      {"description": str,
       "spec": <gradscope spec: seed, model (every parameter explicit), inline data, training>,
       "loss": float,
       "gradients": <layout>}
    <names>: mixed_ce, mixed_mse, mixed_bce (mixes of dense / norms / residual / prelu), and
    act_<activation> for linear sigmoid tanh relu leaky_relu elu prelu selu gelu softplus silu
    (dense(act, 5) -> dense(linear, 3), cross_entropy).

  optim_<name>.json  10 full-batch optimiser steps of dense(tanh, 5) -> dense(linear, 3) on 8 samples,
                     cross_entropy, weight_decay 0.01 (coupled L2 for all but adamw):
      {"description": str, "spec": <gradscope spec, "steps": 10>,
       "losses": [loss before step 1, ..., loss before step 10],
       "final_loss": loss after step 10,
       "parameters": <layout of the parameter VALUES after the 10 steps>}
    <names>: sgd, sgd_momentum, sgd_nesterov, rmsprop, rmsprop_centered_momentum, adagrad, adam,
    adam_amsgrad, adamw, sgd_clip_global_norm, adam_clip_value.

<layout>: a JSON list parallel to spec.model.layers, one object per layer mapping the parameter name
to its gradient (or value): a matrix is a list of rows in the parameter's own orientation (dense
"weight" is units x inputs), a vector a list. Names are PyTorch state_dict names:
  dense          "weight", "bias"; with "norm": "batch"|"layer" also "norm_weight", "norm_bias";
                 with activation prelu also "prelu_weight" (one slope per unit)
  batch_norm     "weight", "bias"        layer_norm  "weight", "bias"
  activation     prelu: "prelu_weight" (one slope per feature); any other activation: {}
  residual       {"layers": [ <layout of the inner layers> ]}
Buffers (running_mean, running_var) appear in the spec as explicit values but have no gradient and are
not in the layout. eps = 1e-5 everywhere; batch norm normalises with the biased batch variance.

How to run (a venv with PyTorch for the CPU and numpy: `python3 -m venv "$HOME/.cache/gradscope-ref-venv"`,
then its `pip install torch numpy`):
    "$HOME/.cache/gradscope-ref-venv/bin/python" tests/reference/make_reference.py
It is deterministic (fixed numpy seeds, parameters and data rounded to 6 decimals and then used
exactly as written). Before writing anything it checks every file independently of autograd:
  * torch.autograd.gradcheck on every gradient network;
  * a separate numpy interpreter of the written spec JSON (no torch) reproduces the loss, and central
    differences of that interpreter match every stored gradient entry (so the spec really describes
    the network whose gradients are stored, with the layout mapping checked too);
  * a numpy re-implementation of the optimiser update rules (with an analytic backward pass)
    reproduces every optimiser file's losses and final parameters;
  * relu-family kinks: every pre-activation is at least KINK_MARGIN away from 0 and each activation
    layer sees both signs; clipping files really clip at every step; amsgrad really differs from adam.
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

torch.set_default_dtype(torch.float64)
torch.use_deterministic_algorithms(True)

OUT_DIR = os.path.dirname(os.path.abspath(__file__))
EPS = 1e-5
KINK_MARGIN = 0.02       # min |pre-activation| for every activation input
MIN_SIGN_FRACTION = 0.2  # each activation layer: at least this fraction positive and negative
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def r6(a):
    """Round to 6 decimals and return nested Python lists (values then used exactly)."""
    return np.round(np.asarray(a, dtype=np.float64), 6).tolist()


def act_type(a):
    return a if isinstance(a, str) else a["type"]


# --------------------------------------------------------------------------------------------
# Filling a structural spec with explicit parameters
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
            if L.get("norm") in ("batch", "layer"):
                L["norm_weight"] = r6(rng.uniform(0.6, 1.5, u))
                L["norm_bias"] = r6(rng.uniform(-0.4, 0.4, u))
            if L.get("norm") == "batch":
                # Buffers: unused for normalisation in training mode, given to prove it.
                L["running_mean"] = r6(rng.uniform(-0.5, 0.5, u))
                L["running_var"] = r6(rng.uniform(0.5, 1.5, u))
            if act_type(L["activation"]) == "prelu":
                L["prelu_weight"] = r6(rng.uniform(0.05, 0.45, u))
            width = u
        elif t == "batch_norm":
            L["weight"] = r6(rng.uniform(0.6, 1.5, width))
            L["bias"] = r6(rng.uniform(-0.4, 0.4, width))
            L["running_mean"] = r6(rng.uniform(-0.5, 0.5, width))
            L["running_var"] = r6(rng.uniform(0.5, 1.5, width))
        elif t == "layer_norm":
            L["weight"] = r6(rng.uniform(0.6, 1.5, width))
            L["bias"] = r6(rng.uniform(-0.4, 0.4, width))
        elif t == "activation":
            if act_type(L["activation"]) == "prelu":
                L["prelu_weight"] = r6(rng.uniform(0.05, 0.45, width))
        elif t == "residual":
            inner, w2 = fill_params(L["layers"], width, rng)
            assert w2 == width, "residual inner stack must keep the width"
            L["layers"] = inner
        else:
            raise ValueError(t)
        out.append(L)
    return out, width


# --------------------------------------------------------------------------------------------
# Torch network built from a spec
# --------------------------------------------------------------------------------------------

def make_act(a, width):
    t = act_type(a)
    p = {} if isinstance(a, str) else a
    if t == "linear":
        return nn.Identity()
    if t == "sigmoid":
        return nn.Sigmoid()
    if t == "tanh":
        return nn.Tanh()
    if t == "relu":
        return nn.ReLU()
    if t == "leaky_relu":
        return nn.LeakyReLU(negative_slope=p.get("slope", 0.01))
    if t == "elu":
        return nn.ELU(alpha=p.get("alpha", 1.0))
    if t == "prelu":
        return nn.PReLU(num_parameters=width)
    if t == "selu":
        return nn.SELU()
    if t == "gelu":
        return nn.GELU(approximate="none")
    if t == "softplus":
        return nn.Softplus(beta=1.0, threshold=20.0)
    if t == "silu":
        return nn.SiLU()
    raise ValueError(t)


def set_(param, value):
    with torch.no_grad():
        param.copy_(torch.tensor(value, dtype=torch.float64))


class Dense(nn.Module):
    def __init__(self, L, fan_in):
        super().__init__()
        u = L["units"]
        self.linear = nn.Linear(fan_in, u)
        set_(self.linear.weight, L["weight"])
        set_(self.linear.bias, L["bias"])
        self.norm = None
        if L.get("norm") == "batch":
            self.norm = nn.BatchNorm1d(u, eps=EPS, momentum=0.1)
            set_(self.norm.running_mean, L["running_mean"])
            set_(self.norm.running_var, L["running_var"])
        elif L.get("norm") == "layer":
            self.norm = nn.LayerNorm(u, eps=EPS)
        elif L.get("norm") is not None:
            raise ValueError(L["norm"])
        if self.norm is not None:
            set_(self.norm.weight, L["norm_weight"])
            set_(self.norm.bias, L["norm_bias"])
        self.act = make_act(L["activation"], u)
        if isinstance(self.act, nn.PReLU):
            set_(self.act.weight, L["prelu_weight"])
        self.out_width = u
        self.pre = None

    def forward(self, x):
        z = self.linear(x)
        if self.norm is not None:
            z = self.norm(z)
        self.pre = z.detach()
        return self.act(z)

    def named(self):
        d = {"weight": self.linear.weight, "bias": self.linear.bias}
        if self.norm is not None:
            d["norm_weight"] = self.norm.weight
            d["norm_bias"] = self.norm.bias
        if isinstance(self.act, nn.PReLU):
            d["prelu_weight"] = self.act.weight
        return d


class Norm(nn.Module):
    def __init__(self, L, width):
        super().__init__()
        if L["type"] == "batch_norm":
            self.m = nn.BatchNorm1d(width, eps=EPS, momentum=0.1)
            set_(self.m.running_mean, L["running_mean"])
            set_(self.m.running_var, L["running_var"])
        else:
            self.m = nn.LayerNorm(width, eps=EPS)
        set_(self.m.weight, L["weight"])
        set_(self.m.bias, L["bias"])
        self.out_width = width

    def forward(self, x):
        return self.m(x)

    def named(self):
        return {"weight": self.m.weight, "bias": self.m.bias}


class Act(nn.Module):
    def __init__(self, L, width):
        super().__init__()
        self.act = make_act(L["activation"], width)
        if isinstance(self.act, nn.PReLU):
            set_(self.act.weight, L["prelu_weight"])
        self.out_width = width
        self.pre = None

    def forward(self, x):
        self.pre = x.detach()
        return self.act(x)

    def named(self):
        return {"prelu_weight": self.act.weight} if isinstance(self.act, nn.PReLU) else {}


class Stack(nn.Module):
    def __init__(self, layers, width):
        super().__init__()
        mods = []
        for L in layers:
            t = L["type"]
            if t == "dense":
                m = Dense(L, width)
            elif t in ("batch_norm", "layer_norm"):
                m = Norm(L, width)
            elif t == "activation":
                m = Act(L, width)
            elif t == "residual":
                m = Residual(L, width)
            else:
                raise ValueError(t)
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

    def activation_inputs(self):
        for m in self.mods:
            if isinstance(m, Residual):
                yield from m.inner.activation_inputs()
            elif isinstance(m, (Dense, Act)):
                yield type(m).__name__, m.pre


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


def torch_data(spec):
    d = spec["data"]
    X = torch.tensor(d["x"], dtype=torch.float64)
    loss = spec["training"]["loss"]
    if loss == "cross_entropy":
        Y = torch.tensor(d["y"], dtype=torch.long)
    elif loss == "bce":
        Y = torch.tensor(d["y"], dtype=torch.float64).reshape(-1, 1)
    else:
        Y = torch.tensor(d["y"], dtype=torch.float64)
    return X, Y


def torch_loss(kind, out, Y):
    if kind == "cross_entropy":
        return F.cross_entropy(out, Y, reduction="mean")
    if kind == "mse":
        return F.mse_loss(out, Y, reduction="mean")
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(out, Y, reduction="mean")
    raise ValueError(kind)


def to_json(t):
    return t.detach().tolist()


# --------------------------------------------------------------------------------------------
# Independent numpy interpreter of a spec (forward only), for the finite-difference check
# --------------------------------------------------------------------------------------------

_erf = np.vectorize(math.erf)


def np_act(a, z, prelu=None):
    t = act_type(a)
    p = {} if isinstance(a, str) else a
    if t == "linear":
        return z
    if t == "sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    if t == "tanh":
        return np.tanh(z)
    if t == "relu":
        return np.where(z > 0, z, 0.0)
    if t == "leaky_relu":
        return np.where(z > 0, z, p.get("slope", 0.01) * z)
    if t == "elu":
        al = p.get("alpha", 1.0)
        return np.where(z > 0, z, al * np.expm1(np.minimum(z, 0)))
    if t == "prelu":
        return np.where(z > 0, z, np.asarray(prelu) * z)
    if t == "selu":
        return SELU_SCALE * np.where(z > 0, z, SELU_ALPHA * np.expm1(np.minimum(z, 0)))
    if t == "gelu":
        return 0.5 * z * (1.0 + _erf(z / math.sqrt(2.0)))
    if t == "softplus":
        return np.where(z > 20, z, np.log1p(np.exp(np.minimum(z, 20))))
    if t == "silu":
        return z / (1.0 + np.exp(-z))
    raise ValueError(t)


def np_batch_norm(z, w, b):
    mu = z.mean(axis=0)
    var = ((z - mu) ** 2).mean(axis=0)  # biased
    return (z - mu) / np.sqrt(var + EPS) * np.asarray(w) + np.asarray(b)


def np_layer_norm(z, w, b):
    mu = z.mean(axis=1, keepdims=True)
    var = ((z - mu) ** 2).mean(axis=1, keepdims=True)
    return (z - mu) / np.sqrt(var + EPS) * np.asarray(w) + np.asarray(b)


def np_run(layers, h):
    for L in layers:
        t = L["type"]
        if t == "dense":
            z = h @ np.asarray(L["weight"]).T + np.asarray(L["bias"])
            if L.get("norm") == "batch":
                z = np_batch_norm(z, L["norm_weight"], L["norm_bias"])
            elif L.get("norm") == "layer":
                z = np_layer_norm(z, L["norm_weight"], L["norm_bias"])
            h = np_act(L["activation"], z, L.get("prelu_weight"))
        elif t == "batch_norm":
            h = np_batch_norm(h, L["weight"], L["bias"])
        elif t == "layer_norm":
            h = np_layer_norm(h, L["weight"], L["bias"])
        elif t == "activation":
            h = np_act(L["activation"], h, L.get("prelu_weight"))
        elif t == "dropout":
            pass  # off in analyze
        elif t == "residual":
            h = h + np_run(L["layers"], h)
        else:
            raise ValueError(t)
    return h


def np_loss(spec):
    d = spec["data"]
    out = np_run(spec["model"]["layers"], np.asarray(d["x"], dtype=np.float64))
    kind = spec["training"]["loss"]
    if kind == "cross_entropy":
        y = np.asarray(d["y"], dtype=int)
        m = out.max(axis=1, keepdims=True)
        lse = (m + np.log(np.exp(out - m).sum(axis=1, keepdims=True)))[:, 0]
        return float(np.mean(lse - out[np.arange(len(y)), y]))
    if kind == "mse":
        return float(np.mean((out - np.asarray(d["y"], dtype=np.float64)) ** 2))
    if kind == "bce":
        y = np.asarray(d["y"], dtype=np.float64).reshape(-1, 1)
        return float(np.mean(np.maximum(out, 0) - out * y + np.log1p(np.exp(-np.abs(out)))))
    raise ValueError(kind)


BUFFERS = {"running_mean", "running_var"}
STRUCT = {"type", "units", "activation", "norm", "init", "layers", "rate", "eps", "momentum"}


def arrays_in_place(layers):
    """Convert every explicit parameter list in (a deep copy of) the layers to numpy arrays."""
    for L in layers:
        for k in list(L):
            if k == "layers":
                arrays_in_place(L["layers"])
            elif k not in STRUCT:
                L[k] = np.asarray(L[k], dtype=np.float64)


def leaves(spec_layers, grad_layers):
    """(spec layer dict, param name, stored gradient) for every parameter; checks the layout."""
    assert len(spec_layers) == len(grad_layers), "layout not parallel to spec.model.layers"
    for L, G in zip(spec_layers, grad_layers):
        if L["type"] == "residual":
            assert set(G) == {"layers"}
            yield from leaves(L["layers"], G["layers"])
            continue
        expected = {k for k in L if k not in STRUCT and k not in BUFFERS}
        assert set(G) == expected, (L["type"], sorted(G), sorted(expected))
        for k, g in G.items():
            g = np.asarray(g, dtype=np.float64)
            assert g.shape == np.asarray(L[k]).shape, (k, g.shape)
            yield L, k, g


def check_gradients_fd(doc, h=1e-5, atol=1e-7, rtol=1e-6):
    """Central differences of the numpy interpreter vs the stored gradients; returns max error."""
    spec = copy.deepcopy(doc["spec"])
    arrays_in_place(spec["model"]["layers"])
    loss0 = np_loss(spec)
    assert abs(loss0 - doc["loss"]) <= 1e-12 * max(1.0, abs(loss0)), (loss0, doc["loss"])
    worst = 0.0
    n = 0
    for L, k, g in leaves(spec["model"]["layers"], doc["gradients"]):
        arr = L[k]
        for idx in np.ndindex(arr.shape):
            orig = arr[idx]
            arr[idx] = orig + h
            lp = np_loss(spec)
            arr[idx] = orig - h
            lm = np_loss(spec)
            arr[idx] = orig
            fd = (lp - lm) / (2 * h)
            err = abs(fd - g[idx])
            assert err <= atol + rtol * abs(g[idx]), (k, idx, fd, g[idx])
            worst = max(worst, err)
            n += 1
    return worst, n


# --------------------------------------------------------------------------------------------
# JSON output: nested number lists on one line, objects indented
# --------------------------------------------------------------------------------------------

def dumps(o, ind=0):
    pad = "  " * ind
    if isinstance(o, dict):
        if not o:
            return "{}"
        items = [f'{pad}  {json.dumps(k)}: {dumps(v, ind + 1)}' for k, v in o.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(o, list):
        flat = json.dumps(o, allow_nan=False)
        if all(not isinstance(e, (dict, list)) for e in o) or \
                all(isinstance(e, list) and all(not isinstance(x, (dict, list)) for x in e) for e in o):
            if len(flat) < 100 or not all(isinstance(e, list) for e in o):
                return flat
            # matrix: one row per line
            rows = [f"{pad}  {json.dumps(e, allow_nan=False)}" for e in o]
            return "[\n" + ",\n".join(rows) + "\n" + pad + "]"
        if not o:
            return "[]"
        return "[\n" + ",\n".join(f"{pad}  {dumps(e, ind + 1)}" for e in o) + "\n" + pad + "]"
    return json.dumps(o, allow_nan=False)


def write(name, doc):
    path = os.path.join(OUT_DIR, name + ".json")
    text = dumps(doc) + "\n"
    assert json.loads(text) == doc
    assert len(text) < 200_000, (name, len(text))
    with open(path, "w") as f:
        f.write(text)
    return path, len(text)


# --------------------------------------------------------------------------------------------
# Gradient files
# --------------------------------------------------------------------------------------------

def kinks_ok(stack):
    for _, pre in stack.activation_inputs():
        a = pre.abs()
        if a.min().item() < KINK_MARGIN:
            return False
        pos = (pre > 0).double().mean().item()
        if pos < MIN_SIGN_FRACTION or pos > 1 - MIN_SIGN_FRACTION:
            return False
    return True


def make_grads(name, description, input_dim, layers, loss, n, classes, base_seed, ytype):
    """Search deterministically from base_seed for parameters/data meeting the kink criteria."""
    for seed in range(base_seed, base_seed + 500):
        rng = np.random.default_rng(seed)
        full, out_w = fill_params(layers, input_dim, rng)
        x = r6(rng.normal(0.0, 1.0, (n, input_dim)))
        if ytype == "classes":
            y = [int(v) for v in rng.permutation(np.arange(n) % classes)]  # every class present
        else:
            y = r6(rng.normal(0.0, 1.0, (n, out_w)))
        spec = {
            "name": f"reference grads_{name}",
            "seed": seed,
            "model": {"input_dim": input_dim, "layers": full},
            "data": {"type": "inline", "x": x, "y": y},
            "training": {"loss": loss, "batch_size": n, "steps": 1,
                         "optimizer": {"type": "sgd", "lr": 0.1},
                         "precision": "f64", "shuffle": False},
        }
        net = Stack(full, input_dim)
        net.train()
        X, Y = torch_data(spec)
        out = net(X)
        if not kinks_ok(net):
            continue
        lval = torch_loss(loss, out, Y)
        net.zero_grad()
        lval.backward()
        grads = net.layout(lambda p: to_json(p.grad))

        # autograd.gradcheck over every parameter at once (training-mode batch norm).
        names, vals = zip(*[(k, v) for k, v in net.named_parameters()])

        def f(*ps):
            o = torch.func.functional_call(net, dict(zip(names, ps)), (X,))
            return torch_loss(loss, o, Y)

        assert torch.autograd.gradcheck(
            f, tuple(v.detach().clone().requires_grad_(True) for v in vals),
            eps=1e-6, atol=1e-7, rtol=1e-5), name

        doc = {"description": description, "spec": spec, "loss": lval.item(), "gradients": grads}
        worst, count = check_gradients_fd(doc)
        path, size = write("grads_" + name, doc)
        print(f"{os.path.basename(path)}: seed {seed}, loss {lval.item():.6f}, "
              f"{count} gradient entries, max |fd - g| {worst:.2e}, {size} bytes")
        return
    raise RuntimeError(f"no seed met the kink criteria for {name}")


GRAD_COMMON = (
    "One forward/backward in training mode (batch statistics, biased batch variance, eps 1e-5; "
    "no dropout) on all inline samples, PyTorch float64. 'loss' is the loss at the given parameters; "
    "'gradients' is a list parallel to spec.model.layers of {parameter name: dLoss/dparameter} "
    "(PyTorch state_dict names and orientation; residual -> {\"layers\": [...]}; buffers "
    "running_mean/running_var have no gradient; the bias of a dense with norm batch has a gradient "
    "that is zero up to rounding, so compare with an absolute tolerance). Every pre-activation is at "
    "least 0.02 away from 0 and each activation sees both signs.")


def gradient_files():
    leaky = {"type": "leaky_relu", "slope": 0.1}
    elu = {"type": "elu", "alpha": 1.0}
    make_grads(
        "mixed_ce",
        "dense(tanh) -> dense(norm batch, relu) -> residual[dense(prelu), dense(linear)] -> "
        "layer_norm -> batch_norm -> dense(linear, 3 classes); cross_entropy (mean over the batch), "
        "integer class labels. A layer_norm directly followed by a batch_norm has gradients that "
        "are zero up to eps effects and rounding (batch norm removes any per-feature affine map). "
        + GRAD_COMMON,
        4,
        [{"type": "dense", "units": 6, "activation": "tanh"},
         {"type": "dense", "units": 5, "activation": "relu", "norm": "batch"},
         {"type": "residual", "layers": [
             {"type": "dense", "units": 4, "activation": "prelu"},
             {"type": "dense", "units": 5, "activation": "linear"}]},
         {"type": "layer_norm"},
         {"type": "batch_norm"},
         {"type": "dense", "units": 3, "activation": "linear"}],
        "cross_entropy", 8, 3, 100, "classes")
    make_grads(
        "mixed_mse",
        "dense(sigmoid) -> dense(norm layer, leaky_relu 0.1) -> residual[dense(norm batch, elu), "
        "dense(linear)] -> activation(prelu, one slope per feature) -> batch_norm -> layer_norm -> "
        "dense(linear, 2 outputs); mse (mean over all elements), y = rows of 2 floats. " + GRAD_COMMON,
        3,
        [{"type": "dense", "units": 6, "activation": "sigmoid"},
         {"type": "dense", "units": 5, "activation": leaky, "norm": "layer"},
         {"type": "residual", "layers": [
             {"type": "dense", "units": 6, "activation": elu, "norm": "batch"},
             {"type": "dense", "units": 5, "activation": "linear"}]},
         {"type": "activation", "activation": "prelu"},
         {"type": "batch_norm"},
         {"type": "layer_norm"},
         {"type": "dense", "units": 2, "activation": "linear"}],
        "mse", 7, None, 200, "values")
    make_grads(
        "mixed_bce",
        "dense(silu) -> dense(norm batch, prelu) -> residual[dense(gelu), dense(norm layer, tanh), "
        "dense(linear)] -> layer_norm -> activation(selu) -> batch_norm -> dense(linear, 1 output); "
        "bce with logits (mean over elements), y = 0/1 integer labels used as the target of the "
        "single logit. " + GRAD_COMMON,
        4,
        [{"type": "dense", "units": 5, "activation": "silu"},
         {"type": "dense", "units": 6, "activation": "prelu", "norm": "batch"},
         {"type": "residual", "layers": [
             {"type": "dense", "units": 4, "activation": "gelu"},
             {"type": "dense", "units": 5, "activation": "tanh", "norm": "layer"},
             {"type": "dense", "units": 6, "activation": "linear"}]},
         {"type": "layer_norm"},
         {"type": "activation", "activation": "selu"},
         {"type": "batch_norm"},
         {"type": "dense", "units": 1, "activation": "linear"}],
        "bce", 8, 2, 300, "classes")
    acts = [("linear", "linear"), ("sigmoid", "sigmoid"), ("tanh", "tanh"), ("relu", "relu"),
            ("leaky_relu", leaky), ("elu", elu), ("prelu", "prelu"), ("selu", "selu"),
            ("gelu", "gelu"), ("softplus", "softplus"), ("silu", "silu")]
    notes = {"leaky_relu": " (negative slope 0.1)", "elu": " (alpha 1.0)",
             "prelu": " (learnable, one slope per unit, given as prelu_weight)",
             "gelu": " (exact erf form)", "softplus": " (beta 1, threshold 20)"}
    for i, (nm, a) in enumerate(acts):
        make_grads(
            "act_" + nm,
            f"dense({nm}{notes.get(nm, '')}, 5 units) -> dense(linear, 3 classes); cross_entropy "
            "(mean over the batch). " + GRAD_COMMON,
            4,
            [{"type": "dense", "units": 5, "activation": a},
             {"type": "dense", "units": 3, "activation": "linear"}],
            "cross_entropy", 8, 3, 1000 + 100 * i, "classes")


# --------------------------------------------------------------------------------------------
# Optimiser files
# --------------------------------------------------------------------------------------------

OPT_N, OPT_IN, OPT_HID, OPT_CLASSES, OPT_STEPS, WD = 8, 4, 5, 3, 10, 0.01


def opt_base():
    rng = np.random.default_rng(7)
    layers, _ = fill_params([{"type": "dense", "units": OPT_HID, "activation": "tanh"},
                             {"type": "dense", "units": OPT_CLASSES, "activation": "linear"}],
                            OPT_IN, rng)
    x = r6(rng.normal(0.0, 1.0, (OPT_N, OPT_IN)))
    y = [int(v) for v in rng.permutation(np.arange(OPT_N) % OPT_CLASSES)]
    return layers, x, y


def torch_optimizer(o, params, wd):
    t = o["type"]
    if t == "sgd":
        return torch.optim.SGD(params, lr=o["lr"], momentum=o.get("momentum", 0.0),
                               nesterov=o.get("nesterov", False), weight_decay=wd)
    if t == "rmsprop":
        return torch.optim.RMSprop(params, lr=o["lr"], alpha=o["alpha"], eps=o["eps"],
                                   momentum=o["momentum"], centered=o["centered"], weight_decay=wd)
    if t == "adagrad":
        return torch.optim.Adagrad(params, lr=o["lr"], weight_decay=wd)
    if t == "adam":
        return torch.optim.Adam(params, lr=o["lr"], betas=(o["beta1"], o["beta2"]), eps=o["eps"],
                                amsgrad=o["amsgrad"], weight_decay=wd)
    if t == "adamw":
        return torch.optim.AdamW(params, lr=o["lr"], betas=(o["beta1"], o["beta2"]), eps=o["eps"],
                                 amsgrad=o["amsgrad"], weight_decay=wd)
    raise ValueError(t)


def run_torch_optim(spec):
    tr = spec["training"]
    net = Stack(spec["model"]["layers"], spec["model"]["input_dim"])
    net.train()
    X, Y = torch_data(spec)
    opt = torch_optimizer(tr["optimizer"], net.parameters(), tr["weight_decay"])
    clip = tr.get("clip")
    losses, pre_clip_norms, clipped_entries = [], [], []
    for _ in range(tr["steps"]):
        opt.zero_grad()
        lval = torch_loss(tr["loss"], net(X), Y)
        losses.append(lval.item())
        lval.backward()
        grads = [p.grad for p in net.parameters()]
        pre_clip_norms.append(torch.sqrt(sum((g ** 2).sum() for g in grads)).item())
        if clip is not None:
            clipped_entries.append(sum(int((g.abs() > clip["max"]).sum()) for g in grads))
            if clip["type"] == "global_norm":
                torch.nn.utils.clip_grad_norm_(net.parameters(), clip["max"])
            else:
                torch.nn.utils.clip_grad_value_(net.parameters(), clip["max"])
        opt.step()
    with torch.no_grad():
        final = torch_loss(tr["loss"], net(X), Y).item()
    return losses, final, net.layout(to_json), pre_clip_norms, clipped_entries


def np_optim(spec):
    """Independent numpy re-implementation (analytic backward of dense(tanh) -> dense(linear), CE)."""
    tr = spec["training"]
    o, wd, clip = tr["optimizer"], tr["weight_decay"], tr.get("clip")
    L1, L2 = spec["model"]["layers"]
    P = [np.array(L1["weight"]), np.array(L1["bias"]), np.array(L2["weight"]), np.array(L2["bias"])]
    X = np.array(spec["data"]["x"])
    y = np.array(spec["data"]["y"])
    n = len(y)
    onehot = np.eye(L2["units"])[y]

    def loss_grad(P):
        W1, b1, W2, b2 = P
        h = np.tanh(X @ W1.T + b1)
        z = h @ W2.T + b2
        m = z.max(axis=1, keepdims=True)
        e = np.exp(z - m)
        s = e.sum(axis=1, keepdims=True)
        loss = np.mean((m + np.log(s))[:, 0] - z[np.arange(n), y])
        dz = (e / s - onehot) / n
        dh = dz @ W2
        da = dh * (1 - h ** 2)
        return loss, [da.T @ X, da.sum(0), dz.T @ h, dz.sum(0)]

    st = [dict() for _ in P]
    losses = []
    for t in range(1, tr["steps"] + 1):
        loss, G = loss_grad(P)
        losses.append(loss)
        if clip is not None:
            if clip["type"] == "global_norm":
                tot = math.sqrt(sum(float((g ** 2).sum()) for g in G))
                coef = min(clip["max"] / (tot + 1e-6), 1.0)
                G = [g * coef for g in G]
            else:
                G = [np.clip(g, -clip["max"], clip["max"]) for g in G]
        for i, (p, g) in enumerate(zip(P, G)):
            s = st[i]
            typ = o["type"]
            if typ != "adamw":
                g = g + wd * p
            if typ == "sgd":
                mom = o.get("momentum", 0.0)
                if mom:
                    s["buf"] = g.copy() if t == 1 else mom * s["buf"] + g
                    g = g + mom * s["buf"] if o.get("nesterov") else s["buf"]
                P[i] = p - o["lr"] * g
            elif typ == "rmsprop":
                a = o["alpha"]
                s["v"] = a * s.get("v", 0.0) + (1 - a) * g * g
                if o["centered"]:
                    s["ga"] = a * s.get("ga", 0.0) + (1 - a) * g
                    avg = np.sqrt(s["v"] - s["ga"] ** 2) + o["eps"]
                else:
                    avg = np.sqrt(s["v"]) + o["eps"]
                if o["momentum"] > 0:
                    s["buf"] = o["momentum"] * s.get("buf", 0.0) + g / avg
                    P[i] = p - o["lr"] * s["buf"]
                else:
                    P[i] = p - o["lr"] * g / avg
            elif typ == "adagrad":
                s["sum"] = s.get("sum", 0.0) + g * g
                P[i] = p - o["lr"] * g / (np.sqrt(s["sum"]) + 1e-10)
            elif typ in ("adam", "adamw"):
                if typ == "adamw":
                    p = p * (1 - o["lr"] * wd)
                b1, b2 = o["beta1"], o["beta2"]
                s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
                s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g * g
                v = s["v"]
                if o["amsgrad"]:
                    s["vmax"] = np.maximum(s.get("vmax", 0.0), s["v"])
                    v = s["vmax"]
                denom = np.sqrt(v) / math.sqrt(1 - b2 ** t) + o["eps"]
                P[i] = p - o["lr"] / (1 - b1 ** t) * s["m"] / denom
            else:
                raise ValueError(typ)
    final, _ = loss_grad(P)
    return losses, final, [{"weight": P[0], "bias": P[1]}, {"weight": P[2], "bias": P[3]}]


def max_diff(a, b):
    if isinstance(a, dict):
        return max(max_diff(a[k], b[k]) for k in a)
    if isinstance(a, list) and a and isinstance(a[0], dict):
        return max(max_diff(x, y) for x, y in zip(a, b))
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))


def optim_files():
    layers, x, y = opt_base()
    rms = {"alpha": 0.99, "eps": 1e-8}
    adam = {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8}
    cases = [
        ("sgd", "SGD lr 0.1", {"type": "sgd", "lr": 0.1, "momentum": 0.0, "nesterov": False}, None),
        ("sgd_momentum", "SGD lr 0.1, momentum 0.9 (dampening 0; buffer = first gradient at step 1)",
         {"type": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": False}, None),
        ("sgd_nesterov", "SGD lr 0.1, Nesterov momentum 0.9",
         {"type": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True}, None),
        ("rmsprop", "RMSprop lr 0.01, alpha 0.99, eps 1e-8 (added after the square root)",
         {"type": "rmsprop", "lr": 0.01, **rms, "momentum": 0.0, "centered": False}, None),
        ("rmsprop_centered_momentum", "RMSprop lr 0.01, alpha 0.99, eps 1e-8, momentum 0.5, centered",
         {"type": "rmsprop", "lr": 0.01, **rms, "momentum": 0.5, "centered": True}, None),
        ("adagrad", "Adagrad lr 0.1 (lr_decay 0, eps 1e-10, initial accumulator 0)",
         {"type": "adagrad", "lr": 0.1}, None),
        ("adam", "Adam lr 0.01, betas (0.9, 0.999), eps 1e-8, L2 weight decay added to the gradient",
         {"type": "adam", "lr": 0.01, **adam, "amsgrad": False}, None),
        ("adam_amsgrad", "Adam lr 0.01, betas (0.9, 0.9), eps 1e-8, amsgrad (max of the raw second "
         "moment, then bias-corrected as torch does); beta2 0.9 so that the max really differs "
         "from plain Adam within 10 steps",
         {"type": "adam", "lr": 0.01, "beta1": 0.9, "beta2": 0.9, "eps": 1e-8, "amsgrad": True}, None),
        ("adamw", "AdamW lr 0.01, betas (0.9, 0.999), eps 1e-8, decoupled weight decay "
         "(p *= 1 - lr*wd before the Adam update)",
         {"type": "adamw", "lr": 0.01, **adam, "amsgrad": False}, None),
        ("sgd_clip_global_norm", "SGD lr 0.1 with clip_grad_norm_(max 0.05): gradients scaled by "
         "min(1, max/(norm+1e-6)) where norm is the L2 norm over all parameters' loss gradients, "
         "before the optimiser adds weight decay; the norm exceeds 0.05 at every step",
         {"type": "sgd", "lr": 0.1, "momentum": 0.0, "nesterov": False},
         {"type": "global_norm", "max": 0.05}),
        ("adam_clip_value", "Adam lr 0.01 with clip_grad_value_(0.01): each loss-gradient entry "
         "clamped to [-0.01, 0.01] before the optimiser adds weight decay; some entries clip at "
         "every step",
         {"type": "adam", "lr": 0.01, **adam, "amsgrad": False}, {"type": "value", "max": 0.01}),
    ]
    results = {}
    for name, what, opt, clip in cases:
        training = {"loss": "cross_entropy", "batch_size": OPT_N, "steps": OPT_STEPS,
                    "optimizer": opt, "weight_decay": WD}
        if clip is not None:
            training["clip"] = clip
        training.update({"precision": "f64", "shuffle": False})
        spec = {"name": f"reference optim_{name}", "seed": 7,
                "model": {"input_dim": OPT_IN, "layers": copy.deepcopy(layers)},
                "data": {"type": "inline", "x": x, "y": y},
                "training": training}
        losses, final, params, norms, clipped = run_torch_optim(spec)
        nl, nf, nparams = np_optim(spec)
        d_loss = max(abs(a - b) for a, b in zip(losses + [final], nl + [nf]))
        d_par = max_diff(params, [{k: v.tolist() for k, v in L.items()} for L in nparams])
        assert d_loss < 1e-12 and d_par < 1e-12, (name, d_loss, d_par)
        if clip is not None and clip["type"] == "global_norm":
            assert min(norms) > clip["max"] * 1.5, (name, norms)
        if clip is not None and clip["type"] == "value":
            assert min(clipped) > 0, (name, clipped)
        assert losses[-1] < losses[0], (name, losses)
        results[name] = params
        doc = {
            "description": f"{what}; weight_decay 0.01 on ALL parameters (weights and biases). "
                           "dense(tanh, 5) -> dense(linear, 3) on 8 inline samples, full batch, "
                           "no shuffling, cross_entropy, PyTorch float64, 10 steps. 'losses'[k] is "
                           "the loss before step k+1 (the one whose gradient that step uses); "
                           "'final_loss' the loss after step 10; 'parameters' the values after "
                           "step 10, same layout as the gradients files.",
            "spec": spec, "losses": losses, "final_loss": final, "parameters": params}
        path, size = write("optim_" + name, doc)
        print(f"{os.path.basename(path)}: losses {losses[0]:.6f} -> {final:.6f}, "
              f"torch vs numpy max |dp| {d_par:.1e}, {size} bytes"
              + (f", pre-clip grad norms {min(norms):.3f}..{max(norms):.3f}" if clip else ""))
    # amsgrad must actually matter (plain Adam with the same betas for comparison)
    spec_plain = json.loads(open(os.path.join(OUT_DIR, "optim_adam_amsgrad.json")).read())["spec"]
    spec_plain["training"]["optimizer"]["amsgrad"] = False
    _, _, plain, _, _ = run_torch_optim(spec_plain)
    diff = max_diff(results["adam_amsgrad"], plain)
    assert diff > 1e-6, diff
    print(f"adam_amsgrad differs from plain Adam (same betas) by up to {diff:.2e}")


def main():
    print("torch", torch.__version__, "numpy", np.__version__)
    gradient_files()
    optim_files()


if __name__ == "__main__":
    sys.exit(main())
