//! Structural parsing: `serde_json::Value` -> wire types, reporting every problem at once.
//!
//! serde's derived `Deserialize` stops at the first error, and a spec author wants the whole list
//! (an unknown field in layer 0 *and* a wrong type in `training`). So this module walks the
//! `Value` by hand with a small reader ([`Obj`]) that records, for each object, the field names
//! it was asked for: those are both what it reads and what it lists in "unknown field; expected
//! one of ..." — one list of names per type, here. The wire types' `Deserialize` impls delegate
//! to these same functions, so there is no second, derived reading of the JSON to drift apart.
//!
//! Only structure is checked here (object vs array vs number, known fields and `type` tags,
//! required fields present, integers where counts are expected). Whether values make sense
//! (units > 0, shapes, limits) is `validate`'s job. Depends on `serde`/`serde_json` and the wire
//! types; must not depend on the engine or on HTTP/async crates.

use serde::de::{Deserialize, Deserializer, Error as _};
use serde_json::{Map, Value};

use super::error::{index, join, Collector, SpecErrors};
use super::types::*;

/// Residual blocks nest at most this deep. serde_json already refuses documents nested deeper
/// than 128, but a `Value` built in code (or by applying a patch) has no such limit, and every
/// later pass recurses over the layer tree.
const MAX_NESTING: usize = 32;

/// Parses a spec, reporting every structural problem with its JSON Pointer.
pub fn parse(value: &Value) -> Result<Spec, SpecErrors> {
    let mut cx = Collector::new();
    let spec = parse_spec(&mut cx, value, "");
    cx.finish(spec)
}

/// Runs a parse function on a whole document (used by the `Deserialize` impls and tests).
fn parse_with<T>(value: &Value, f: impl FnOnce(&mut Collector, &Value, &str) -> Option<T>) -> Result<T, SpecErrors> {
    let mut cx = Collector::new();
    let out = f(&mut cx, value, "");
    cx.finish(out)
}

/// `Deserialize` for wire types through the collecting parser: buffer into a `Value`, then walk
/// it. The error message lists every problem (`SpecErrors`' `Display`).
macro_rules! deserialize_via {
    ($($T:ty => $f:expr),+ $(,)?) => {$(
        impl<'de> Deserialize<'de> for $T {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let v = Value::deserialize(d)?;
                parse_with(&v, $f).map_err(D::Error::custom)
            }
        }
    )+};
}

deserialize_via! {
    Spec => parse_spec,
    Model => parse_model,
    Layer => |cx: &mut Collector, v: &Value, p: &str| parse_layer(cx, v, p, 0),
    Activation => parse_activation,
    Init => parse_init,
    Norm => parse_norm,
    Data => parse_data,
    Training => parse_training,
    Optimizer => parse_optimizer,
    Clip => parse_clip,
    Probes => parse_probes,
}

// ---------------------------------------------------------------------------------------------
// The reader.

/// How a value is described in "expected X, got Y" messages.
fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(_) => "a string".into(),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

fn type_error(cx: &mut Collector, ptr: &str, expected: &str, got: &Value) {
    cx.push(ptr, format!("expected {expected}, got {}", describe(got)));
}

/// `a`, `b`, `c` — for "expected one of" lists.
fn quoted_list<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    names.into_iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

/// The known name closest to a misspelt one, if it is close enough to be a likely typo.
fn did_you_mean<'a>(got: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(got, k), *k))
        .filter(|(d, k)| *d <= 2 && *d < k.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

fn unknown_name(kind: &str, got: &str, known: &[&str]) -> String {
    let mut s = format!("unknown {kind} `{got}`; expected one of {}", quoted_list(known.iter().copied()));
    if let Some(k) = did_you_mean(got, known) {
        s.push_str(&format!(" (did you mean `{k}`?)"));
    }
    s
}

/// Reads the fields of one JSON object, remembering which names were asked for so that
/// [`Obj::finish`] can report the rest as unknown.
pub(super) struct Obj<'v> {
    /// `None` for the bare-string form of a tagged object (`"relu"`), which has no fields.
    map: Option<&'v Map<String, Value>>,
    /// Pointer of the object (or of the bare string).
    ptr: String,
    /// The `type` tag when read from a bare string, for the "needs a field" hint.
    bare: Option<&'v str>,
    known: Vec<&'static str>,
}

impl<'v> Obj<'v> {
    /// The object at `ptr`, or a type error.
    fn new(cx: &mut Collector, v: &'v Value, ptr: &str, what: &str) -> Option<Self> {
        match v {
            Value::Object(map) => Some(Obj { map: Some(map), ptr: ptr.to_owned(), bare: None, known: Vec::new() }),
            other => {
                type_error(cx, ptr, &format!("{what} (an object)"), other);
                None
            }
        }
    }

    /// The raw value of `key`, marking it known; `null` counts as absent.
    fn get(&mut self, key: &'static str) -> Option<&'v Value> {
        self.known.push(key);
        self.map.and_then(|m| m.get(key)).filter(|v| !v.is_null())
    }

    /// A required field.
    fn req<T>(
        &mut self,
        cx: &mut Collector,
        key: &'static str,
        f: impl FnOnce(&mut Collector, &'v Value, &str) -> Option<T>,
    ) -> Option<T> {
        match self.get(key) {
            Some(v) => f(cx, v, &join(&self.ptr, key)),
            None => {
                match self.bare {
                    // A bare string has no fields to point into; point at the string and say how
                    // to write the object form instead.
                    Some(tag) => cx.push(
                        &self.ptr,
                        format!(
                            "`{tag}` needs the field `{key}`, so it cannot be given as a bare \
                             string; write {{\"type\": \"{tag}\", \"{key}\": ...}}"
                        ),
                    ),
                    None => cx.push(join(&self.ptr, key), format!("missing required field `{key}`")),
                }
                None
            }
        }
    }

    /// An optional field: `Some(None)` when absent or `null`, `None` when present but invalid.
    fn opt<T>(
        &mut self,
        cx: &mut Collector,
        key: &'static str,
        f: impl FnOnce(&mut Collector, &'v Value, &str) -> Option<T>,
    ) -> Option<Option<T>> {
        match self.get(key) {
            Some(v) => f(cx, v, &join(&self.ptr, key)).map(Some),
            None => Some(None),
        }
    }

    /// Reports every field that was not asked for.
    fn finish(self, cx: &mut Collector) {
        let Some(map) = self.map else { return };
        for key in map.keys() {
            if !self.known.iter().any(|k| k == key) {
                cx.push(join(&self.ptr, key), unknown_name("field", key, &self.known));
            }
        }
    }
}

/// Reads the `type` of a tagged object (or takes a bare string as the type of an object with no
/// other fields). `None` (after recording why) when there is no usable tag; the fields are then
/// not checked, since which fields are allowed depends on the tag.
fn tagged<'v>(
    cx: &mut Collector,
    v: &'v Value,
    ptr: &str,
    what: &str,
    tags: &[&'static str],
) -> Option<(&'static str, Obj<'v>)> {
    let find = |s: &str| tags.iter().copied().find(|t| *t == s);
    match v {
        Value::String(s) => match find(s) {
            Some(tag) => {
                Some((tag, Obj { map: None, ptr: ptr.to_owned(), bare: Some(s.as_str()), known: vec!["type"] }))
            }
            None => {
                cx.push(ptr, unknown_name(&format!("{what} type"), s, tags));
                None
            }
        },
        Value::Object(map) => {
            let tptr = join(ptr, "type");
            match map.get("type") {
                None | Some(Value::Null) => {
                    cx.push(
                        tptr,
                        format!("missing required field `type`; expected one of {}", quoted_list(tags.iter().copied())),
                    );
                    None
                }
                Some(Value::String(s)) => match find(s) {
                    Some(tag) => {
                        Some((tag, Obj { map: Some(map), ptr: ptr.to_owned(), bare: None, known: vec!["type"] }))
                    }
                    None => {
                        cx.push(tptr, unknown_name(&format!("{what} type"), s, tags));
                        None
                    }
                },
                Some(other) => {
                    type_error(cx, &tptr, &format!("a {what} type name (a string)"), other);
                    None
                }
            }
        }
        other => {
            type_error(cx, ptr, &format!("a {what} (an object with a \"type\", or a type name)"), other);
            None
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Scalars and arrays.

fn p_u64(cx: &mut Collector, v: &Value, ptr: &str) -> Option<u64> {
    let n = v.as_u64();
    if n.is_none() {
        type_error(cx, ptr, "a non-negative integer", v);
    }
    n
}

fn p_f64(cx: &mut Collector, v: &Value, ptr: &str) -> Option<f64> {
    // `as_f64` also accepts integers (`1` for `1.0`), as a JSON number is one type.
    let n = v.as_f64();
    if n.is_none() {
        type_error(cx, ptr, "a number", v);
    }
    n
}

fn p_bool(cx: &mut Collector, v: &Value, ptr: &str) -> Option<bool> {
    let b = v.as_bool();
    if b.is_none() {
        type_error(cx, ptr, "true or false", v);
    }
    b
}

fn p_string(cx: &mut Collector, v: &Value, ptr: &str) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        other => {
            type_error(cx, ptr, "a string", other);
            None
        }
    }
}

/// An array whose every element `f` accepts; all elements are checked even after a failure.
fn p_list<'v, T>(
    cx: &mut Collector,
    v: &'v Value,
    ptr: &str,
    what: &str,
    mut f: impl FnMut(&mut Collector, &'v Value, &str) -> Option<T>,
) -> Option<Vec<T>> {
    let Value::Array(items) = v else {
        type_error(cx, ptr, &format!("an array of {what}"), v);
        return None;
    };
    let mut out = Some(Vec::with_capacity(items.len()));
    for (i, item) in items.iter().enumerate() {
        match (f(cx, item, &index(ptr, i)), out.as_mut()) {
            (Some(x), Some(o)) => o.push(x),
            _ => out = None,
        }
    }
    out
}

fn p_vector(cx: &mut Collector, v: &Value, ptr: &str) -> Option<Vec<f64>> {
    p_list(cx, v, ptr, "numbers", p_f64)
}

fn p_matrix(cx: &mut Collector, v: &Value, ptr: &str) -> Option<Vec<Vec<f64>>> {
    p_list(cx, v, ptr, "rows (arrays of numbers)", p_vector)
}

fn p_tensor3(cx: &mut Collector, v: &Value, ptr: &str) -> Option<Vec<Vec<Vec<f64>>>> {
    p_list(cx, v, ptr, "sequences (arrays of time steps)", p_matrix)
}

/// A string naming one value of a [`wire_names!`](super::types) enum.
fn p_named<T: Copy>(
    cx: &mut Collector,
    v: &Value,
    ptr: &str,
    what: &str,
    all: &[T],
    name: impl Fn(T) -> &'static str,
) -> Option<T> {
    let Value::String(s) = v else {
        type_error(cx, ptr, &format!("a {what} name (a string)"), v);
        return None;
    };
    let found = all.iter().copied().find(|x| name(*x) == s);
    if found.is_none() {
        let names: Vec<&str> = all.iter().map(|x| name(*x)).collect();
        cx.push(ptr, unknown_name(what, s, &names));
    }
    found
}

fn p_loss(cx: &mut Collector, v: &Value, ptr: &str) -> Option<Loss> {
    p_named(cx, v, ptr, "loss", Loss::ALL, Loss::name)
}

fn p_precision(cx: &mut Collector, v: &Value, ptr: &str) -> Option<Precision> {
    p_named(cx, v, ptr, "precision", Precision::ALL, Precision::name)
}

fn p_cell(cx: &mut Collector, v: &Value, ptr: &str) -> Option<Cell> {
    p_named(cx, v, ptr, "cell", Cell::ALL, Cell::name)
}

fn p_pool_mode(cx: &mut Collector, v: &Value, ptr: &str) -> Option<PoolMode> {
    p_named(cx, v, ptr, "pool mode", PoolMode::ALL, PoolMode::name)
}

fn p_positional(cx: &mut Collector, v: &Value, ptr: &str) -> Option<PositionalEncoding> {
    p_named(cx, v, ptr, "positional encoding", PositionalEncoding::ALL, PositionalEncoding::name)
}

fn p_fan_mode(cx: &mut Collector, v: &Value, ptr: &str) -> Option<FanMode> {
    p_named(cx, v, ptr, "fan mode", FanMode::ALL, FanMode::name)
}

// ---------------------------------------------------------------------------------------------
// The spec.

fn parse_spec(cx: &mut Collector, v: &Value, ptr: &str) -> Option<Spec> {
    let mut o = Obj::new(cx, v, ptr, "a spec")?;
    let name = o.opt(cx, "name", p_string);
    let seed = o.opt(cx, "seed", p_u64);
    let model = o.req(cx, "model", parse_model);
    let data = o.req(cx, "data", parse_data);
    let training = o.opt(cx, "training", parse_training);
    let probes = o.opt(cx, "probes", parse_probes);
    let return_gradients = o.opt(cx, "return_gradients", p_bool);
    o.finish(cx);
    Some(Spec {
        name: name?,
        seed: seed?,
        model: model?,
        data: data?,
        training: training?,
        probes: probes?,
        return_gradients: return_gradients?,
    })
}

fn parse_model(cx: &mut Collector, v: &Value, ptr: &str) -> Option<Model> {
    let mut o = Obj::new(cx, v, ptr, "a model")?;
    let input_dim = o.req(cx, "input_dim", p_u64);
    let layers = o.req(cx, "layers", |cx, v, p| parse_layers(cx, v, p, 0));
    o.finish(cx);
    Some(Model { input_dim: input_dim?, layers: layers? })
}

mod attention;
pub(super) use attention::{parse_attention, parse_transformer};

fn parse_layers(cx: &mut Collector, v: &Value, ptr: &str, nesting: usize) -> Option<Vec<Layer>> {
    p_list(cx, v, ptr, "layers", |cx, v, p| parse_layer(cx, v, p, nesting))
}

/// Layer `type` tags, in the order of the `Layer` schema of `openapi/openapi.json`.
pub(crate) const LAYER_TYPES: &[&str] = &[
    "dense",
    "batch_norm",
    "layer_norm",
    "dropout",
    "activation",
    "residual",
    "mlp",
    "rnn",
    "attention",
    "pool",
    "positional",
    "transformer",
];

fn parse_layer(cx: &mut Collector, v: &Value, ptr: &str, nesting: usize) -> Option<Layer> {
    let (tag, mut o) = tagged(cx, v, ptr, "layer", LAYER_TYPES)?;
    let layer = match tag {
        "dense" => parse_dense(cx, &mut o).map(Layer::Dense),
        "batch_norm" => parse_batch_norm(cx, &mut o).map(Layer::BatchNorm),
        "layer_norm" => parse_layer_norm(cx, &mut o).map(Layer::LayerNorm),
        "dropout" => o.opt(cx, "rate", p_f64).map(|rate| Layer::Dropout(Dropout { rate })),
        "activation" => parse_activation_layer(cx, &mut o).map(Layer::Activation),
        "residual" => {
            if nesting >= MAX_NESTING {
                cx.push(ptr, format!("residual blocks are nested more than {MAX_NESTING} deep"));
                // Skip the inner layers, and the unknown-field check that would flag them.
                return None;
            }
            o.req(cx, "layers", |cx, v, p| parse_layers(cx, v, p, nesting + 1))
                .map(|layers| Layer::Residual(Residual { layers }))
        }
        "mlp" => parse_mlp(cx, &mut o).map(Layer::Mlp),
        "rnn" => parse_rnn(cx, &mut o).map(Layer::Rnn),
        "attention" => parse_attention(cx, &mut o).map(Layer::Attention),
        "transformer" => parse_transformer(cx, &mut o).map(Layer::Transformer),
        "pool" => o.opt(cx, "mode", p_pool_mode).map(|mode| Layer::Pool(Pool { mode })),
        "positional" => {
            let encoding = o.opt(cx, "encoding", p_positional);
            let weight = o.opt(cx, "weight", p_matrix);
            (|| Some(Layer::Positional(Positional { encoding: encoding?, weight: weight? })))()
        }
        _ => None,
    };
    o.finish(cx);
    layer
}

fn parse_dense(cx: &mut Collector, o: &mut Obj<'_>) -> Option<Dense> {
    let units = o.req(cx, "units", p_u64);
    let activation = o.opt(cx, "activation", parse_activation);
    let init = o.opt(cx, "init", parse_init);
    let bias_init = o.opt(cx, "bias_init", parse_init);
    let norm = o.opt(cx, "norm", parse_norm);
    let weight = o.opt(cx, "weight", p_matrix);
    let bias = o.opt(cx, "bias", p_vector);
    let norm_weight = o.opt(cx, "norm_weight", p_vector);
    let norm_bias = o.opt(cx, "norm_bias", p_vector);
    let running_mean = o.opt(cx, "running_mean", p_vector);
    let running_var = o.opt(cx, "running_var", p_vector);
    let prelu_weight = o.opt(cx, "prelu_weight", p_vector);
    Some(Dense {
        units: units?,
        activation: activation?,
        init: init?,
        bias_init: bias_init?,
        norm: norm?,
        weight: weight?,
        bias: bias?,
        norm_weight: norm_weight?,
        norm_bias: norm_bias?,
        running_mean: running_mean?,
        running_var: running_var?,
        prelu_weight: prelu_weight?,
    })
}

fn parse_batch_norm(cx: &mut Collector, o: &mut Obj<'_>) -> Option<BatchNorm> {
    let eps = o.opt(cx, "eps", p_f64);
    let momentum = o.opt(cx, "momentum", p_f64);
    let weight = o.opt(cx, "weight", p_vector);
    let bias = o.opt(cx, "bias", p_vector);
    let running_mean = o.opt(cx, "running_mean", p_vector);
    let running_var = o.opt(cx, "running_var", p_vector);
    Some(BatchNorm {
        eps: eps?,
        momentum: momentum?,
        weight: weight?,
        bias: bias?,
        running_mean: running_mean?,
        running_var: running_var?,
    })
}

fn parse_layer_norm(cx: &mut Collector, o: &mut Obj<'_>) -> Option<LayerNorm> {
    let eps = o.opt(cx, "eps", p_f64);
    let weight = o.opt(cx, "weight", p_vector);
    let bias = o.opt(cx, "bias", p_vector);
    Some(LayerNorm { eps: eps?, weight: weight?, bias: bias? })
}

fn parse_activation_layer(cx: &mut Collector, o: &mut Obj<'_>) -> Option<ActivationLayer> {
    let activation = o.req(cx, "activation", parse_activation);
    let prelu_weight = o.opt(cx, "prelu_weight", p_vector);
    Some(ActivationLayer { activation: activation?, prelu_weight: prelu_weight? })
}

fn parse_mlp(cx: &mut Collector, o: &mut Obj<'_>) -> Option<Mlp> {
    let depth = o.req(cx, "depth", p_u64);
    let width = o.req(cx, "width", p_u64);
    let activation = o.opt(cx, "activation", parse_activation);
    let init = o.opt(cx, "init", parse_init);
    let bias_init = o.opt(cx, "bias_init", parse_init);
    let norm = o.opt(cx, "norm", parse_norm);
    let residual = o.opt(cx, "residual", p_bool);
    Some(Mlp {
        depth: depth?,
        width: width?,
        activation: activation?,
        init: init?,
        bias_init: bias_init?,
        norm: norm?,
        residual: residual?,
    })
}

fn parse_rnn(cx: &mut Collector, o: &mut Obj<'_>) -> Option<Rnn> {
    let cell = o.opt(cx, "cell", p_cell);
    let units = o.req(cx, "units", p_u64);
    let activation = o.opt(cx, "activation", parse_activation);
    let init = o.opt(cx, "init", parse_init);
    let recurrent_init = o.opt(cx, "recurrent_init", parse_init);
    let return_sequences = o.opt(cx, "return_sequences", p_bool);
    let forget_bias = o.opt(cx, "forget_bias", p_f64);
    let weight_ih = o.opt(cx, "weight_ih", p_matrix);
    let weight_hh = o.opt(cx, "weight_hh", p_matrix);
    let bias_ih = o.opt(cx, "bias_ih", p_vector);
    let bias_hh = o.opt(cx, "bias_hh", p_vector);
    Some(Rnn {
        cell: cell?,
        units: units?,
        activation: activation?,
        init: init?,
        recurrent_init: recurrent_init?,
        return_sequences: return_sequences?,
        forget_bias: forget_bias?,
        weight_ih: weight_ih?,
        weight_hh: weight_hh?,
        bias_ih: bias_ih?,
        bias_hh: bias_hh?,
    })
}

// ---------------------------------------------------------------------------------------------
// Activations, inits, norms.

const ACTIVATION_TYPES: &[&str] =
    &["linear", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "prelu", "selu", "gelu", "softplus", "silu"];

fn parse_activation(cx: &mut Collector, v: &Value, ptr: &str) -> Option<Activation> {
    let (tag, mut o) = tagged(cx, v, ptr, "activation", ACTIVATION_TYPES)?;
    let a = match tag {
        "linear" => Some(Activation::Linear),
        "sigmoid" => Some(Activation::Sigmoid),
        "tanh" => Some(Activation::Tanh),
        "relu" => Some(Activation::Relu),
        "leaky_relu" => o.opt(cx, "slope", p_f64).map(|slope| Activation::LeakyRelu { slope }),
        "elu" => o.opt(cx, "alpha", p_f64).map(|alpha| Activation::Elu { alpha }),
        "prelu" => o.opt(cx, "init", p_f64).map(|init| Activation::Prelu { init }),
        "selu" => Some(Activation::Selu),
        "gelu" => Some(Activation::Gelu),
        "softplus" => Some(Activation::Softplus),
        "silu" => Some(Activation::Silu),
        _ => None,
    };
    o.finish(cx);
    a
}

const INIT_TYPES: &[&str] = &[
    "normal",
    "uniform",
    "constant",
    "xavier_uniform",
    "xavier_normal",
    "he_uniform",
    "he_normal",
    "lecun_normal",
    "orthogonal",
    "identity",
];

fn parse_init(cx: &mut Collector, v: &Value, ptr: &str) -> Option<Init> {
    let (tag, mut o) = tagged(cx, v, ptr, "init", INIT_TYPES)?;
    let init = match tag {
        "normal" => o.req(cx, "std", p_f64).map(|std| Init::Normal { std }),
        "uniform" => o.req(cx, "limit", p_f64).map(|limit| Init::Uniform { limit }),
        "constant" => o.req(cx, "value", p_f64).map(|value| Init::Constant { value }),
        "xavier_uniform" => o.opt(cx, "gain", p_f64).map(|gain| Init::XavierUniform { gain }),
        "xavier_normal" => o.opt(cx, "gain", p_f64).map(|gain| Init::XavierNormal { gain }),
        "orthogonal" => o.opt(cx, "gain", p_f64).map(|gain| Init::Orthogonal { gain }),
        "identity" => o.opt(cx, "gain", p_f64).map(|gain| Init::Identity { gain }),
        "he_uniform" | "he_normal" | "lecun_normal" => {
            let g = o.opt(cx, "gain", p_f64);
            let mode = o.opt(cx, "mode", p_fan_mode);
            match (g, mode, tag) {
                (Some(gain), Some(mode), "he_uniform") => Some(Init::HeUniform { gain, mode }),
                (Some(gain), Some(mode), "he_normal") => Some(Init::HeNormal { gain, mode }),
                (Some(gain), Some(mode), _) => Some(Init::LecunNormal { gain, mode }),
                _ => None,
            }
        }
        _ => None,
    };
    o.finish(cx);
    init
}

fn parse_norm(cx: &mut Collector, v: &Value, ptr: &str) -> Option<Norm> {
    let (tag, mut o) = tagged(cx, v, ptr, "norm", &["batch", "layer"])?;
    let eps = o.opt(cx, "eps", p_f64);
    let norm = match tag {
        "batch" => {
            let momentum = o.opt(cx, "momentum", p_f64);
            Some(Norm::Batch { eps: eps?, momentum: momentum? })
        }
        _ => Some(Norm::Layer { eps: eps? }),
    };
    o.finish(cx);
    norm
}

// ---------------------------------------------------------------------------------------------
// Data.

pub(crate) const DATA_TYPES: &[&str] = &[
    "xor",
    "spirals",
    "circles",
    "moons",
    "blobs",
    "sine",
    "teacher",
    "adding",
    "copy",
    "temporal_order",
    "parity",
    "marked_recall",
    "sine_sequence",
    "inline",
    "inline_sequences",
];

fn parse_data(cx: &mut Collector, v: &Value, ptr: &str) -> Option<Data> {
    let (tag, mut o) = tagged(cx, v, ptr, "data", DATA_TYPES)?;
    let source = parse_data_source(cx, &mut o, tag);
    let validation_split = o.opt(cx, "validation_split", p_f64);
    let standardize = o.opt(cx, "standardize", p_bool);
    o.finish(cx);
    Some(Data { source: source?, validation_split: validation_split?, standardize: standardize? })
}

fn parse_data_source(cx: &mut Collector, o: &mut Obj<'_>, tag: &str) -> Option<DataSource> {
    // Every generated source has `samples`; read it first so it leads the expected-fields list.
    let samples = if tag.starts_with("inline") { Some(None) } else { o.opt(cx, "samples", p_u64) };
    let source = match tag {
        "xor" => {
            let noise = o.opt(cx, "noise", p_f64);
            DataSource::Xor { samples: samples?, noise: noise? }
        }
        "spirals" => {
            let noise = o.opt(cx, "noise", p_f64);
            let classes = o.opt(cx, "classes", p_u64);
            DataSource::Spirals { samples: samples?, noise: noise?, classes: classes? }
        }
        "circles" => {
            let noise = o.opt(cx, "noise", p_f64);
            let factor = o.opt(cx, "factor", p_f64);
            DataSource::Circles { samples: samples?, noise: noise?, factor: factor? }
        }
        "moons" => {
            let noise = o.opt(cx, "noise", p_f64);
            DataSource::Moons { samples: samples?, noise: noise? }
        }
        "blobs" => {
            let classes = o.opt(cx, "classes", p_u64);
            let dims = o.opt(cx, "dims", p_u64);
            let std = o.opt(cx, "std", p_f64);
            DataSource::Blobs { samples: samples?, classes: classes?, dims: dims?, std: std? }
        }
        "sine" => {
            let noise = o.opt(cx, "noise", p_f64);
            DataSource::Sine { samples: samples?, noise: noise? }
        }
        "teacher" => {
            let dims = o.opt(cx, "dims", p_u64);
            let classes = o.opt(cx, "classes", p_u64);
            let outputs = o.opt(cx, "outputs", p_u64);
            let hidden = o.opt(cx, "hidden", p_u64);
            DataSource::Teacher {
                samples: samples?,
                dims: dims?,
                classes: classes?,
                outputs: outputs?,
                hidden: hidden?,
            }
        }
        "adding" => {
            let length = o.opt(cx, "length", p_u64);
            DataSource::Adding { samples: samples?, length: length? }
        }
        "copy" => {
            let length = o.opt(cx, "length", p_u64);
            let delay = o.opt(cx, "delay", p_u64);
            DataSource::Copy { samples: samples?, length: length?, delay: delay? }
        }
        "temporal_order" => {
            let length = o.opt(cx, "length", p_u64);
            DataSource::TemporalOrder { samples: samples?, length: length? }
        }
        "parity" => {
            let length = o.opt(cx, "length", p_u64);
            DataSource::Parity { samples: samples?, length: length? }
        }
        "marked_recall" => {
            let length = o.opt(cx, "length", p_u64);
            let vocab = o.opt(cx, "vocab", p_u64);
            DataSource::MarkedRecall { samples: samples?, length: length?, vocab: vocab? }
        }
        "sine_sequence" => {
            let length = o.opt(cx, "length", p_u64);
            let noise = o.opt(cx, "noise", p_f64);
            DataSource::SineSequence { samples: samples?, length: length?, noise: noise? }
        }
        "inline" => {
            let x = o.req(cx, "x", p_matrix);
            let y = o.req(cx, "y", p_targets);
            DataSource::Inline { x: x?, y: y? }
        }
        "inline_sequences" => {
            let x = o.req(cx, "x", p_tensor3);
            let y = o.req(cx, "y", p_sequence_targets);
            DataSource::InlineSequences { x: x?, y: y? }
        }
        _ => return None,
    };
    Some(source)
}

/// Inline targets: all integers (class labels), all numbers (scalar targets) or all arrays
/// (target rows). The first element decides which; the others must match it.
fn p_targets(cx: &mut Collector, v: &Value, ptr: &str) -> Option<InlineTargets> {
    let Value::Array(items) = v else {
        type_error(cx, ptr, "an array of targets (class labels, numbers or arrays)", v);
        return None;
    };
    let is_int = |x: &Value| x.is_i64() || x.is_u64();
    match items.first() {
        None => Some(InlineTargets::Labels(Vec::new())),
        Some(Value::Array(_)) => p_list(cx, v, ptr, "target rows", |cx, item, p| match item {
            Value::Array(_) => p_vector(cx, item, p),
            other => {
                type_error(cx, p, "an array of numbers like the first target", other);
                None
            }
        })
        .map(InlineTargets::Rows),
        Some(Value::Number(_)) if items.iter().all(is_int) => p_list(cx, v, ptr, "class labels", |cx, item, p| {
            let n = item.as_i64();
            if n.is_none() {
                cx.push(p, format!("class label {item} is too large"));
            }
            n
        })
        .map(InlineTargets::Labels),
        Some(Value::Number(_)) => p_list(cx, v, ptr, "numbers", |cx, item, p| {
            if item.is_array() {
                type_error(cx, p, "a number like the first target", item);
                return None;
            }
            p_f64(cx, item, p)
        })
        .map(InlineTargets::Scalars),
        Some(other) => {
            type_error(cx, &index(ptr, 0), "a class label, a number or an array of numbers", other);
            None
        }
    }
}

/// Inline sequence targets, by the rule of [`InlineSequenceTargets`]: a flat list is read as
/// inline targets are (one per sequence); a list of lists is per-step class labels when every
/// inner element is an integer, and per-sequence regression rows otherwise; a list of lists of
/// lists is per-step regression rows. The first element decides the depth; the others must
/// match it.
fn p_sequence_targets(cx: &mut Collector, v: &Value, ptr: &str) -> Option<InlineSequenceTargets> {
    let Value::Array(items) = v else {
        type_error(
            cx,
            ptr,
            "an array of targets (per sequence: class labels, numbers or arrays of numbers; per time \
             step: arrays of class labels or arrays of arrays of numbers)",
            v,
        );
        return None;
    };
    let is_int = |x: &Value| x.is_i64() || x.is_u64();
    match items.first() {
        Some(Value::Array(first)) if matches!(first.first(), Some(Value::Array(_))) => {
            p_list(cx, v, ptr, "sequences of target rows", |cx, item, p| match item {
                Value::Array(_) => p_matrix(cx, item, p),
                other => {
                    type_error(cx, p, "an array of target rows (one per time step) like the first target", other);
                    None
                }
            })
            .map(InlineSequenceTargets::ValuesPerStep)
        }
        Some(Value::Array(_)) if items.iter().all(|i| i.as_array().is_some_and(|row| row.iter().all(is_int))) => {
            p_list(cx, v, ptr, "arrays of class labels", |cx, item, p| {
                p_list(cx, item, p, "class labels", |cx, label, p| {
                    let n = label.as_i64();
                    if n.is_none() {
                        cx.push(p, format!("class label {label} is too large"));
                    }
                    n
                })
            })
            .map(InlineSequenceTargets::ClassesPerStep)
        }
        _ => p_targets(cx, v, ptr).map(InlineSequenceTargets::PerSequence),
    }
}

// ---------------------------------------------------------------------------------------------
// Training and probes.

fn parse_training(cx: &mut Collector, v: &Value, ptr: &str) -> Option<Training> {
    let mut o = Obj::new(cx, v, ptr, "training settings")?;
    let steps = o.opt(cx, "steps", p_u64);
    let epochs = o.opt(cx, "epochs", p_u64);
    let batch_size = o.opt(cx, "batch_size", p_u64);
    let loss = o.opt(cx, "loss", p_loss);
    let optimizer = o.opt(cx, "optimizer", parse_optimizer);
    let weight_decay = o.opt(cx, "weight_decay", p_f64);
    let clip = o.opt(cx, "clip", parse_clip);
    let schedule = o.opt(cx, "schedule", parse_schedule);
    let bptt_truncate = o.opt(cx, "bptt_truncate", p_u64);
    let shuffle = o.opt(cx, "shuffle", p_bool);
    let precision = o.opt(cx, "precision", p_precision);
    o.finish(cx);
    Some(Training {
        steps: steps?,
        epochs: epochs?,
        batch_size: batch_size?,
        loss: loss?,
        optimizer: optimizer?,
        weight_decay: weight_decay?,
        clip: clip?,
        schedule: schedule?,
        bptt_truncate: bptt_truncate?,
        shuffle: shuffle?,
        precision: precision?,
    })
}

const OPTIMIZER_TYPES: &[&str] = &["sgd", "rmsprop", "adagrad", "adam", "adamw"];

fn parse_optimizer(cx: &mut Collector, v: &Value, ptr: &str) -> Option<Optimizer> {
    let (tag, mut o) = tagged(cx, v, ptr, "optimizer", OPTIMIZER_TYPES)?;
    let lr = o.opt(cx, "lr", p_f64);
    let opt = match tag {
        "sgd" => {
            let momentum = o.opt(cx, "momentum", p_f64);
            let dampening = o.opt(cx, "dampening", p_f64);
            let nesterov = o.opt(cx, "nesterov", p_bool);
            (|| Some(Optimizer::Sgd { lr: lr?, momentum: momentum?, dampening: dampening?, nesterov: nesterov? }))()
        }
        "rmsprop" => {
            let alpha = o.opt(cx, "alpha", p_f64);
            let eps = o.opt(cx, "eps", p_f64);
            let momentum = o.opt(cx, "momentum", p_f64);
            let centered = o.opt(cx, "centered", p_bool);
            (|| {
                Some(Optimizer::Rmsprop { lr: lr?, alpha: alpha?, eps: eps?, momentum: momentum?, centered: centered? })
            })()
        }
        "adagrad" => {
            let lr_decay = o.opt(cx, "lr_decay", p_f64);
            let eps = o.opt(cx, "eps", p_f64);
            let initial = o.opt(cx, "initial_accumulator_value", p_f64);
            (|| {
                Some(Optimizer::Adagrad {
                    lr: lr?,
                    lr_decay: lr_decay?,
                    eps: eps?,
                    initial_accumulator_value: initial?,
                })
            })()
        }
        "adam" | "adamw" => {
            let beta1 = o.opt(cx, "beta1", p_f64);
            let beta2 = o.opt(cx, "beta2", p_f64);
            let eps = o.opt(cx, "eps", p_f64);
            let amsgrad = o.opt(cx, "amsgrad", p_bool);
            (|| {
                let (lr, beta1, beta2, eps, amsgrad) = (lr?, beta1?, beta2?, eps?, amsgrad?);
                Some(if tag == "adam" {
                    Optimizer::Adam { lr, beta1, beta2, eps, amsgrad }
                } else {
                    Optimizer::Adamw { lr, beta1, beta2, eps, amsgrad }
                })
            })()
        }
        _ => None,
    };
    o.finish(cx);
    opt
}

fn parse_clip(cx: &mut Collector, v: &Value, ptr: &str) -> Option<Clip> {
    let (tag, mut o) = tagged(cx, v, ptr, "clip", &["global_norm", "value"])?;
    let max = o.req(cx, "max", p_f64);
    o.finish(cx);
    let max = max?;
    Some(if tag == "global_norm" { Clip::GlobalNorm { max } } else { Clip::Value { max } })
}

fn parse_schedule(cx: &mut Collector, v: &Value, ptr: &str) -> Option<Schedule> {
    let (tag, mut o) = tagged(cx, v, ptr, "schedule", &["constant", "warmup", "cosine"])?;
    let schedule = match tag {
        "warmup" => o.req(cx, "warmup_steps", p_u64).map(|warmup_steps| Schedule::Warmup { warmup_steps }),
        "cosine" => o.opt(cx, "warmup_steps", p_u64).map(|warmup_steps| Schedule::Cosine { warmup_steps }),
        _ => Some(Schedule::Constant),
    };
    o.finish(cx);
    schedule
}

fn parse_probes(cx: &mut Collector, v: &Value, ptr: &str) -> Option<Probes> {
    let mut o = Obj::new(cx, v, ptr, "probe settings")?;
    let every = o.opt(cx, "every", p_u64);
    let histograms = o.opt(cx, "histograms", p_bool);
    let max_points = o.opt(cx, "max_points", p_u64);
    let parameters = o.opt(cx, "parameters", p_bool);
    o.finish(cx);
    Some(Probes { every: every?, histograms: histograms?, max_points: max_points?, parameters: parameters? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("unitz", "units"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("relu", "relu"), 0);
    }

    #[test]
    fn did_you_mean_suggests_only_close_names() {
        assert_eq!(did_you_mean("unitz", &["units", "init"]), Some("units"));
        assert_eq!(did_you_mean("zzzzzz", &["units", "init"]), None);
    }
}
