//! Validation of `model`: the layers as the user wrote them (`mlp` depths, the layer budget),
//! then the shape walk through the expanded layers (widths, residual blocks, sequences through
//! recurrent layers and what they return), each layer's settings and explicit parameters, the
//! parameter count, and whether the last layer's width fits the loss and the targets. Problems
//! in a layer an `mlp` produced point at the `mlp`.

use super::super::error::{index, join};
use super::super::expand::*;
use super::super::types::*;
use super::{DataInfo, Target, Validator};
use crate::engine::config as e;

impl Validator<'_> {
    // -----------------------------------------------------------------------------------------
    // Activations, inits, norms.

    /// `ptr` is the activation's own pointer.
    fn activation(&mut self, ptr: &str, a: Activation) {
        match a.to_engine() {
            e::Activation::LeakyRelu { slope } => {
                self.finite(&join(ptr, "slope"), "slope", slope);
            }
            e::Activation::Elu { alpha } => {
                self.finite(&join(ptr, "alpha"), "alpha", alpha);
            }
            e::Activation::Prelu { init } => {
                self.finite(&join(ptr, "init"), "init", init);
            }
            _ => {}
        }
    }

    /// `ptr` is the init's own pointer.
    fn init(&mut self, ptr: &str, i: Init) {
        match i.to_engine() {
            e::Init::Normal { std } => {
                self.non_negative(&join(ptr, "std"), "std", std);
            }
            e::Init::Uniform { limit } => {
                self.non_negative(&join(ptr, "limit"), "limit", limit);
            }
            e::Init::Constant { value } => {
                self.finite(&join(ptr, "value"), "value", value);
            }
            e::Init::XavierUniform { gain }
            | e::Init::XavierNormal { gain }
            | e::Init::HeUniform { gain, .. }
            | e::Init::HeNormal { gain, .. }
            | e::Init::LecunNormal { gain, .. }
            | e::Init::Orthogonal { gain }
            | e::Init::Identity { gain } => {
                self.non_negative(&join(ptr, "gain"), "gain", gain);
            }
        }
    }

    /// Norm settings; `at` maps a field name to its pointer.
    fn norm_settings(&mut self, at: impl Fn(&str) -> String, config: &e::NormConfig, batch: bool) {
        self.positive(&at("eps"), "eps", config.eps);
        if batch {
            self.fraction(&at("momentum"), "momentum", config.momentum, true);
        }
    }

    // -----------------------------------------------------------------------------------------
    // Model.

    pub(super) fn model(&mut self, spec: &Spec, data: &DataInfo, loss: Loss) -> Option<e::NetworkConfig> {
        let input_dim = self.width("/model/input_dim", "input_dim", spec.model.input_dim, "the input");
        if let (Some(i), Some(f)) = (input_dim, data.features) {
            if i != f {
                let each = if data.sequence { "time step" } else { "sample" };
                self.cx.push(
                    "/model/input_dim",
                    format!("`input_dim` is {i} but each {each} of the `{}` data has {f} features", data.kind),
                );
            }
        }
        if spec.model.layers.is_empty() {
            self.cx.push("/model/layers", "the model needs at least one layer");
            return None;
        }

        // Count (and check mlp depths) on the spec as written, so that an absurd depth is
        // refused before anything is expanded.
        self.check_mlp_depths(&spec.model.layers, "/model/layers");
        let count = expanded_layer_count(&spec.model.layers);
        let max_layers = self.limits.max_layers.min(MAX_EXPANDED_LAYERS);
        if self.over_limit("/model/layers", "the network", count, "layers (with mlp expanded)", max_layers) {
            return None;
        }

        let (layers, placed) = spec.expanded_layers();
        if data.sequence && !reads_across_steps(&layers) {
            self.cx.push(
                "/data/type",
                format!(
                    "`{}` is sequence data (samples x time steps x features), which needs a layer that reads \
                     across the time steps: a recurrent (`rnn`) or `attention` layer, or a `pool` layer",
                    data.kind
                ),
            );
        }

        let flow = if data.sequence { Flow::Steps } else { Flow::Samples };
        let mut walk = Walk { flow, last_reader: None, in_residual: false, kind: data.kind, steps: data.seq_len };
        let (configs, out_width) = self.layers(&layers, &placed, input_dim, &mut walk);
        if data.sequence {
            self.per_step_output(data, &walk);
        }

        if self.over_limit("/model", "the network", self.params, "parameters", self.limits.max_params) {
            return None;
        }
        if let (Some(w), Some(target), Some(last_layer), Some(last_origin)) =
            (out_width, data.target, layers.last(), placed.last())
        {
            let ptr = match last_layer {
                Layer::Dense(_) | Layer::Rnn(_) => last_origin.origin.at("units"),
                _ => last_origin.origin.ptr().to_owned(),
            };
            self.task(w, target, loss, &ptr, data.kind);
        }
        Some(e::NetworkConfig { input_dim: input_dim?, layers: configs? })
    }

    /// Checks the `mlp` depths as written (a depth-0 mlp expands to nothing, leaving no layer to
    /// point at later).
    fn check_mlp_depths(&mut self, layers: &[Layer], base: &str) {
        for (i, layer) in layers.iter().enumerate() {
            let ptr = index(base, i);
            match layer {
                Layer::Mlp(m) => {
                    self.at_least(&join(&ptr, "depth"), "depth", m.depth, 1);
                }
                Layer::Residual(r) => self.check_mlp_depths(&r.layers, &join(&ptr, "layers")),
                Layer::Transformer(t) => {
                    self.at_least(&join(&ptr, "depth"), "depth", t.depth.unwrap_or(TRANSFORMER_DEPTH), 1);
                }
                _ => {}
            }
        }
    }

    /// Does the network's output match the data's targets: one per time step (the layers keep
    /// the time steps) or one per sequence (the last rnn returns only its last step, or a pool
    /// layer made one row per sequence)? Reported where the fix goes (the last rnn's
    /// `return_sequences`, the pool layer, or the layers), naming where the targets are.
    fn per_step_output(&mut self, data: &DataInfo, walk: &Walk) {
        let (kind, at) = (data.kind, data.targets_ptr);
        match (&walk.flow, data.per_step, &walk.last_reader) {
            (Flow::Collapsed(Reducer::Rnn(rnn)), true, _) => self.cx.push(
                join(rnn, "return_sequences"),
                format!("`{kind}` has a target at every time step (see {at}); set return_sequences to true on the last rnn layer"),
            ),
            (Flow::Collapsed(Reducer::Pool(pool)), true, _) => self.cx.push(
                pool.clone(),
                format!("`{kind}` has a target at every time step (see {at}), but this pool layer keeps one row per sequence; remove it"),
            ),
            (Flow::Steps, false, Some(Reader::Rnn(rnn))) => self.cx.push(
                join(rnn, "return_sequences"),
                format!(
                    "`{kind}` has one target per sequence (see {at}), but the last rnn layer returns every time step; \
                     set return_sequences to false on the last rnn layer (false is the default)"
                ),
            ),
            (Flow::Steps, false, Some(Reader::Attention(attention))) => self.cx.push(
                attention.clone(),
                format!(
                    "`{kind}` has one target per sequence (see {at}), but attention keeps every time step; add a \
                     `pool` layer (mode `last` or `mean`) after the last attention layer"
                ),
            ),
            _ => {}
        }
    }

    /// Walks expanded layers fed `width` features (`None`: unknown after an earlier problem).
    fn layers(
        &mut self,
        layers: &[Layer],
        placed: &[Placed],
        mut width: Option<usize>,
        walk: &mut Walk,
    ) -> (Option<Vec<e::LayerConfig>>, Option<usize>) {
        let mut out = Some(Vec::with_capacity(layers.len()));
        for (layer, at) in layers.iter().zip(placed) {
            let (config, w) = self.layer(layer, at, width, walk);
            width = w;
            match (config, out.as_mut()) {
                (Some(c), Some(o)) => o.push(c),
                _ => out = None,
            }
        }
        (out, width)
    }

    fn layer(
        &mut self,
        layer: &Layer,
        at: &Placed,
        width: Option<usize>,
        walk: &mut Walk,
    ) -> (Option<e::LayerConfig>, Option<usize>) {
        let o = &at.origin;
        match layer {
            Layer::Dense(d) => {
                let (config, units) = self.dense(d, o, width);
                (config.map(e::LayerConfig::Dense), units)
            }
            Layer::BatchNorm(b) => {
                let config = e::NormConfig {
                    eps: b.eps.unwrap_or(NORM_EPS),
                    momentum: b.momentum.unwrap_or(NORM_MOMENTUM),
                    params: e::ExplicitParams::new(),
                };
                self.norm_settings(|f| o.at(f), &config, true);
                let given = [
                    ("weight", &b.weight),
                    ("bias", &b.bias),
                    ("running_mean", &b.running_mean),
                    ("running_var", &b.running_var),
                ];
                let params = self.feature_params(o, width, &given);
                if let Some(w) = width {
                    self.add_params(2 * w as u128);
                }
                let config = params.map(|params| e::LayerConfig::BatchNorm(e::NormConfig { params, ..config }));
                (config.filter(|_| width.is_some()), width)
            }
            Layer::LayerNorm(l) => {
                let config = e::NormConfig {
                    eps: l.eps.unwrap_or(NORM_EPS),
                    momentum: NORM_MOMENTUM,
                    params: e::ExplicitParams::new(),
                };
                self.norm_settings(|f| o.at(f), &config, false);
                let params = self.feature_params(o, width, &[("weight", &l.weight), ("bias", &l.bias)]);
                if let Some(w) = width {
                    self.add_params(2 * w as u128);
                }
                let config = params.map(|params| e::LayerConfig::LayerNorm(e::NormConfig { params, ..config }));
                (config.filter(|_| width.is_some()), width)
            }
            Layer::Dropout(d) => {
                let rate = d.rate.unwrap_or(DROPOUT_RATE);
                let ok = self.fraction(&o.at("rate"), "rate", rate, false);
                (ok.then_some(e::LayerConfig::Dropout { rate }), width)
            }
            Layer::Activation(a) => {
                self.activation(&o.at("activation"), a.activation);
                let activation = a.activation.to_engine();
                let mut params = Some(e::ExplicitParams::new());
                let is_prelu = matches!(activation, e::Activation::Prelu { .. });
                if let Some(w) = width {
                    if is_prelu {
                        self.add_params(w as u128);
                    }
                    params = self.prelu_weight(o, is_prelu, a.prelu_weight.as_deref(), w);
                }
                let config = params.map(|params| e::LayerConfig::Activation { activation, params });
                (config.filter(|_| width.is_some()), width)
            }
            Layer::Residual(r) => {
                if r.layers.is_empty() {
                    self.cx.push(o.at("layers"), "a residual block needs at least one layer");
                    return (None, width);
                }
                // input + f(input): the rows must stay what they are, which rules out an rnn
                // inside (reported there); the flow after the block is the flow before it.
                let outer = (walk.flow.clone(), walk.in_residual);
                walk.in_residual = true;
                let (inner, out) = self.layers(&r.layers, &at.inner, width, walk);
                (walk.flow, walk.in_residual) = outer;
                if let (Some(i), Some(w)) = (width, out) {
                    if i != w {
                        self.cx.push(o.ptr(), format!("residual block output has {w} units but its input has {i}"));
                        return (None, width);
                    }
                }
                (inner.map(e::LayerConfig::Residual), width)
            }
            Layer::Rnn(r) => self.rnn(r, o, width, walk),
            Layer::Attention(a) => self.attention(a, o, width, walk),
            Layer::Transformer(t) => self.transformer(t, o, width, walk),
            Layer::Positional(p) => {
                let placed_ok = self.needs_steps(o, "a `positional` layer", walk);
                let encoding = p.encoding.unwrap_or(POSITIONAL_ENCODING);
                let (Some(w), Some(steps)) = (width, walk.steps) else { return (None, width) };
                let kind = match encoding {
                    PositionalEncoding::Sinusoidal => e::PositionalKind::Sinusoidal,
                    PositionalEncoding::Learned => e::PositionalKind::Learned,
                };
                let mut params = Some(e::ExplicitParams::new());
                match (&p.weight, encoding) {
                    (Some(_), PositionalEncoding::Sinusoidal) => {
                        self.cx.push(
                            o.at("weight"),
                            "`weight` is the table of a `learned` encoding; a sinusoidal one has none",
                        );
                        params = None;
                    }
                    (Some(table), PositionalEncoding::Learned) => {
                        let value = self.matrix(&o.at("weight"), "weight", table, steps, w, "steps x width");
                        params = value.zip(params).map(|(v, mut p)| {
                            p.insert("weight".to_owned(), v);
                            p
                        });
                    }
                    (None, _) => {}
                }
                if encoding == PositionalEncoding::Learned {
                    self.add_params((steps as u128) * (w as u128));
                }
                let config = params
                    .filter(|_| placed_ok)
                    .map(|params| e::LayerConfig::Positional(e::PositionalConfig { kind, steps, params }));
                (config, width)
            }
            Layer::Pool(p) => {
                let placed_ok = self.needs_steps(o, "a `pool` layer", walk);
                if placed_ok && !walk.in_residual {
                    walk.flow = Flow::Collapsed(Reducer::Pool(o.ptr().to_owned()));
                    walk.last_reader = Some(Reader::Pool);
                }
                if walk.in_residual {
                    self.cx.push(
                        o.ptr(),
                        "a `pool` layer changes the rows (one per sequence), so it cannot sit inside a residual block",
                    );
                    return (None, width);
                }
                let kind = match p.mode.unwrap_or(POOL_MODE) {
                    PoolMode::Last => e::PoolKind::Last,
                    PoolMode::Mean => e::PoolKind::Mean,
                };
                (placed_ok.then_some(e::LayerConfig::Pool(kind)), width)
            }
            Layer::Mlp(_) => {
                // `expanded_layers` leaves none; say so rather than panic if that ever changes.
                self.cx.push(o.ptr(), "internal: an `mlp` was not expanded");
                (None, None)
            }
        }
    }

    /// A recurrent layer fed `input` features per time step: its settings, where it sits in the
    /// flow of sequences, and its explicit parameters (PyTorch's layout: `weight_ih` is
    /// (gates x units) x inputs, `weight_hh` (gates x units) x units, `bias_ih` and `bias_hh`
    /// gates x units, gate blocks in the cell's order).
    fn rnn(
        &mut self,
        r: &Rnn,
        o: &Origin,
        input: Option<usize>,
        walk: &mut Walk,
    ) -> (Option<e::LayerConfig>, Option<usize>) {
        let cell = r.cell.unwrap_or(RNN_CELL);
        let units = self.width(&o.at("units"), "units", r.units, "the layer");
        let return_sequences = r.return_sequences.unwrap_or(false);

        // Where it sits: it needs a sequence, and not inside a residual block.
        let mut placed_ok = self.needs_steps(o, "an `rnn` layer", walk);
        if walk.in_residual {
            placed_ok = false;
            self.cx.push(
                o.ptr(),
                "`rnn` layers inside residual blocks are not supported yet; put the recurrent layers \
                 before or after the residual block",
            );
        }
        if !walk.in_residual {
            walk.flow = if return_sequences { Flow::Steps } else { Flow::Collapsed(Reducer::Rnn(o.ptr().to_owned())) };
            walk.last_reader = Some(Reader::Rnn(o.ptr().to_owned()));
        }

        let ecell = match cell {
            Cell::Vanilla => e::CellKind::Vanilla,
            Cell::Lstm => e::CellKind::Lstm,
            Cell::Gru => e::CellKind::Gru,
        };
        let (gate_order, fixed_activations) = match cell {
            Cell::Vanilla => ("", ""),
            Cell::Lstm => ("4 gates (i, f, g, o) x ", "sigmoid gates, tanh cell input and output"),
            Cell::Gru => ("3 gates (r, z, n) x ", "sigmoid gates, tanh candidate"),
        };

        let activation = match (cell, r.activation) {
            (Cell::Vanilla, a) => {
                let a = a.unwrap_or(RNN_ACTIVATION).to_engine();
                match a {
                    e::Activation::Tanh | e::Activation::Relu | e::Activation::Sigmoid => Some(a),
                    other => {
                        self.cx.push(
                            o.at("activation"),
                            format!(
                                "a vanilla rnn cell's activation must be tanh, relu or sigmoid, got `{}`",
                                activation_name(other)
                            ),
                        );
                        None
                    }
                }
            }
            (_, Some(_)) => {
                self.cx.push(
                    o.at("activation"),
                    format!(
                        "`activation` applies to vanilla rnn cells only; an {} cell has fixed activations \
                         ({fixed_activations}); remove it",
                        cell.name()
                    ),
                );
                None
            }
            // Unused by gated cells.
            (_, None) => Some(e::Activation::Tanh),
        };
        let init = r.init.unwrap_or(WEIGHT_INIT);
        self.init(&o.at("init"), init);
        let recurrent_init = r.recurrent_init.unwrap_or(RECURRENT_INIT);
        self.init(&o.at("recurrent_init"), recurrent_init);
        let forget_bias = match (cell, r.forget_bias) {
            (Cell::Lstm, b) => {
                let b = b.unwrap_or(FORGET_BIAS);
                self.finite(&o.at("forget_bias"), "forget_bias", b).then_some(b)
            }
            (_, Some(_)) => {
                self.cx.push(
                    o.at("forget_bias"),
                    format!(
                        "`forget_bias` applies to lstm cells only (it is the initial bias of the forget gate); \
                         this layer's cell is `{}`",
                        cell.name()
                    ),
                );
                None
            }
            (_, None) => Some(FORGET_BIAS),
        };

        let (Some(units), Some(inputs)) = (units, input) else {
            return (None, units);
        };
        let gates = ecell.gates();
        let rows = gates.saturating_mul(units);
        let per_gate = (gates as u128) * (units as u128);
        self.add_params(per_gate * (inputs as u128 + units as u128 + 2));

        let mut params = Some(e::ExplicitParams::new());
        let mut put = |name: &str, value: Option<Vec<f64>>| match (value, params.as_mut()) {
            (Some(v), Some(p)) => {
                p.insert(name.to_owned(), v);
            }
            _ => params = None,
        };
        if let Some(w) = &r.weight_ih {
            let layout = format!("{gate_order}units x inputs");
            put("weight_ih", self.matrix(&o.at("weight_ih"), "weight_ih", w, rows, inputs, &layout));
        }
        if let Some(w) = &r.weight_hh {
            let layout = format!("{gate_order}units x units");
            put("weight_hh", self.matrix(&o.at("weight_hh"), "weight_hh", w, rows, units, &layout));
        }
        for (name, given) in [("bias_ih", &r.bias_ih), ("bias_hh", &r.bias_hh)] {
            if let Some(b) = given {
                let per = format!("{gate_order}units");
                put(name, self.vector(&o.at(name), name, b, rows, &per));
            }
        }

        let config = (|| {
            Some(e::RnnConfig {
                cell: ecell,
                units,
                activation: activation?,
                init: init.to_engine(),
                recurrent_init: recurrent_init.to_engine(),
                return_sequences,
                forget_bias: forget_bias?,
                params: params?,
            })
        })();
        (config.filter(|_| placed_ok).map(e::LayerConfig::Rnn), Some(units))
    }

    /// Whether a layer that reads a sequence (`what`: "an `rnn` layer") gets one here; reports
    /// at the layer why not (plain data, or the time steps were reduced before it).
    fn needs_steps(&mut self, o: &Origin, what: &str, walk: &Walk) -> bool {
        match &walk.flow {
            Flow::Steps => true,
            Flow::Samples => {
                self.cx.push(
                    o.ptr(),
                    format!(
                        "{what} needs sequence data (samples x time steps x features), but the `{}` data \
                         (see /data/type) has one row of features per sample; use adding, copy, temporal_order, \
                         parity, sine_sequence or inline_sequences data, or remove the layer",
                        walk.kind
                    ),
                );
                false
            }
            Flow::Collapsed(Reducer::Rnn(previous)) => {
                self.cx.push(
                    o.ptr(),
                    format!(
                        "{what} needs a sequence; the previous rnn layer ({previous}) has return_sequences \
                         false, so only its last time step reaches this layer; set return_sequences to true there"
                    ),
                );
                false
            }
            Flow::Collapsed(Reducer::Pool(previous)) => {
                self.cx.push(
                    o.ptr(),
                    format!(
                        "{what} needs a sequence; the pool layer ({previous}) keeps one row per sequence; move \
                         this layer before it"
                    ),
                );
                false
            }
        }
    }

    /// An attention layer fed `input` features per time step: its heads, where it sits, and its
    /// explicit parameters (PyTorch's `nn.MultiheadAttention` layout: `in_proj_weight` 3d x d
    /// with q, k, v stacked, `in_proj_bias` 3d, `out_proj.weight` d x d, `out_proj.bias` d).
    fn attention(
        &mut self,
        a: &Attention,
        o: &Origin,
        input: Option<usize>,
        walk: &mut Walk,
    ) -> (Option<e::LayerConfig>, Option<usize>) {
        let placed_ok = self.needs_steps(o, "an `attention` layer", walk);
        if placed_ok {
            walk.last_reader = Some(Reader::Attention(o.ptr().to_owned()));
        }
        let heads = self.at_least(&o.at("heads"), "heads", a.heads, 1);
        let Some(d) = input else { return (None, input) };
        let heads = heads.filter(|&h| self.heads_divide(o, h, d));
        self.add_params(4 * (d as u128) * (d as u128 + 1));
        let mut params = Some(e::ExplicitParams::new());
        let mut put = |name: &str, value: Option<Vec<f64>>| match (value, params.as_mut()) {
            (Some(v), Some(p)) => {
                p.insert(name.to_owned(), v);
            }
            _ => params = None,
        };
        if let Some(w) = &a.in_proj_weight {
            put(
                "in_proj_weight",
                self.matrix(&o.at("in_proj_weight"), "in_proj_weight", w, 3 * d, d, "3 x d x d (q, k, v)"),
            );
        }
        if let Some(b) = &a.in_proj_bias {
            put("in_proj_bias", self.vector(&o.at("in_proj_bias"), "in_proj_bias", b, 3 * d, "3 x d (q, k, v)"));
        }
        if let Some(w) = &a.out_proj_weight {
            put("out_proj.weight", self.matrix(&o.at("out_proj.weight"), "out_proj.weight", w, d, d, "d x d"));
        }
        if let Some(b) = &a.out_proj_bias {
            put("out_proj.bias", self.vector(&o.at("out_proj.bias"), "out_proj.bias", b, d, "d"));
        }
        let causal = a.causal.unwrap_or(ATTENTION_CAUSAL);
        let config = match (heads, params) {
            (Some(heads), Some(params)) if placed_ok => {
                Some(e::LayerConfig::Attention(e::AttentionConfig { heads, causal, params }))
            }
            _ => None,
        };
        (config, input)
    }

    /// Whether `heads` divides the width `d` (reported at the layer's `heads` when not).
    fn heads_divide(&mut self, o: &Origin, heads: usize, d: usize) -> bool {
        let divides = d.is_multiple_of(heads);
        if !divides {
            self.cx.push(
                o.at("heads"),
                format!(
                    "`heads` must divide the layer's width d = {d} (each head gets d / heads features), got {heads}"
                ),
            );
        }
        divides
    }

    /// A transformer fed `input` features per time step: where it sits, its sizes, settings and
    /// explicit parameters (one object per block, `nn.TransformerEncoderLayer`'s names).
    fn transformer(
        &mut self,
        t: &Transformer,
        o: &Origin,
        input: Option<usize>,
        walk: &mut Walk,
    ) -> (Option<e::LayerConfig>, Option<usize>) {
        let placed_ok = self.needs_steps(o, "a `transformer` layer", walk);
        if placed_ok {
            walk.last_reader = Some(Reader::Attention(o.ptr().to_owned()));
        }
        let depth = self.at_least(&o.at("depth"), "depth", t.depth.unwrap_or(TRANSFORMER_DEPTH), 1);
        let heads = self.at_least(&o.at("heads"), "heads", t.heads, 1);
        let ffn = self.width(&o.at("ffn"), "ffn", t.ffn, "the feed-forward layer");
        let activation = t.activation.unwrap_or(TRANSFORMER_ACTIVATION).to_engine();
        let activation_ok = matches!(activation, e::Activation::Relu | e::Activation::Gelu);
        if !activation_ok {
            self.cx.push(
                o.at("activation"),
                format!(
                    "a transformer's feed-forward activation is `relu` or `gelu` (as nn.TransformerEncoderLayer's), \
                     got `{}`",
                    activation_name(activation)
                ),
            );
        }
        let alpha = t.alpha.unwrap_or(TRANSFORMER_ALPHA);
        let alpha_ok = self.positive(&o.at("alpha"), "alpha", alpha);
        let eps = t.eps.unwrap_or(NORM_EPS);
        let eps_ok = self.positive(&o.at("eps"), "eps", eps);
        let Some(d) = input else { return (None, input) };
        let heads = heads.filter(|&h| self.heads_divide(o, h, d));
        let (Some(depth), Some(f)) = (depth, ffn) else { return (None, input) };
        let (dd, ff) = (d as u128, f as u128);
        // self_attn 4d(d+1), linear1 f(d+1), linear2 d(f+1), two norms 4d.
        let per_block = 4 * dd * (dd + 1) + ff * (dd + 1) + dd * (ff + 1) + 4 * dd;
        self.add_params(per_block.saturating_mul(depth as u128));
        let mut blocks = Vec::new();
        let mut blocks_ok = true;
        if let Some(given) = &t.blocks {
            if given.len() != depth {
                self.cx.push(
                    o.at("blocks"),
                    format!("`blocks` has {} entries; expected one per block: depth = {depth}", given.len()),
                );
                blocks_ok = false;
            }
            for (i, b) in given.iter().enumerate() {
                let at = |name: &str| join(&index(&o.at("blocks"), i), name);
                let mut params = e::ExplicitParams::new();
                for (name, m) in b.matrices() {
                    let Some(m) = m else { continue };
                    let (rows, cols, per) = match name {
                        "self_attn.in_proj_weight" => (3 * d, d, "3 x d x d (q, k, v)"),
                        "self_attn.out_proj.weight" => (d, d, "d x d"),
                        "linear1.weight" => (f, d, "ffn x d"),
                        _ => (d, f, "d x ffn"),
                    };
                    match self.matrix(&at(name), name, m, rows, cols, per) {
                        Some(v) => {
                            params.insert(name.to_owned(), v);
                        }
                        None => blocks_ok = false,
                    }
                }
                for (name, v) in b.vectors() {
                    let Some(v) = v else { continue };
                    let (len, per) = match name {
                        "self_attn.in_proj_bias" => (3 * d, "3 x d (q, k, v)"),
                        "linear1.bias" => (f, "ffn"),
                        _ => (d, "d"),
                    };
                    match self.vector(&at(name), name, v, len, per) {
                        Some(v) => {
                            params.insert(name.to_owned(), v);
                        }
                        None => blocks_ok = false,
                    }
                }
                blocks.push(params);
            }
        }
        let config = match heads {
            Some(heads) if placed_ok && activation_ok && alpha_ok && eps_ok && blocks_ok => {
                Some(e::LayerConfig::Transformer(e::TransformerConfig {
                    depth,
                    heads,
                    ffn: f,
                    activation,
                    norm_first: t.norm_first.unwrap_or(TRANSFORMER_NORM_FIRST),
                    causal: t.causal.unwrap_or(ATTENTION_CAUSAL),
                    alpha,
                    eps,
                    blocks,
                }))
            }
            _ => None,
        };
        (config, input)
    }

    fn dense(&mut self, d: &Dense, o: &Origin, input: Option<usize>) -> (Option<e::DenseConfig>, Option<usize>) {
        let units = self.width(&o.at("units"), o.name("units"), d.units, "the layer");
        let activation = d.activation.unwrap_or(DENSE_ACTIVATION);
        self.activation(&o.at("activation"), activation);
        let init = d.init.unwrap_or(WEIGHT_INIT);
        self.init(&o.at("init"), init);
        let bias_init = d.bias_init.unwrap_or(BIAS_INIT);
        self.init(&o.at("bias_init"), bias_init);
        let norm = d.norm.map(Norm::to_engine);
        if let Some((kind, config)) = &norm {
            self.norm_settings(|f| o.at(&format!("norm/{f}")), config, *kind == e::NormKind::Batch);
        }
        let activation = activation.to_engine();
        let is_prelu = matches!(activation, e::Activation::Prelu { .. });

        let (Some(units), Some(inputs)) = (units, input) else {
            return (None, units);
        };
        let u = units as u128;
        let mut n = u * inputs as u128 + u;
        if norm.is_some() {
            n += 2 * u;
        }
        if is_prelu {
            n += u;
        }
        self.add_params(n);

        let mut params = Some(e::ExplicitParams::new());
        let mut put = |name: &str, value: Option<Vec<f64>>| match (value, params.as_mut()) {
            (Some(v), Some(p)) => {
                p.insert(name.to_owned(), v);
            }
            _ => params = None,
        };
        if let Some(w) = &d.weight {
            put("weight", self.matrix(&o.at("weight"), "weight", w, units, inputs, "units x inputs"));
        }
        if let Some(b) = &d.bias {
            put("bias", self.vector(&o.at("bias"), "bias", b, units, "one per unit"));
        }
        let batch = matches!(norm, Some((e::NormKind::Batch, _)));
        for (name, given, needs) in [
            ("norm_weight", &d.norm_weight, norm.is_some()),
            ("norm_bias", &d.norm_bias, norm.is_some()),
            ("running_mean", &d.running_mean, batch),
            ("running_var", &d.running_var, batch),
        ] {
            let Some(v) = given else { continue };
            let ptr = o.at(name);
            if !needs {
                let what = if name.starts_with("running") { "batch norm (`\"norm\": \"batch\"`)" } else { "`norm`" };
                self.cx.push(ptr, format!("`{name}` is given but the layer has no {what}"));
                put(name, None);
                continue;
            }
            let v = self.vector(&ptr, name, v, units, "one per unit");
            let v = v.filter(|v| name != "running_var" || self.variance_ok(&ptr, v));
            put(name, v);
        }
        match self.prelu_weight(o, is_prelu, d.prelu_weight.as_deref(), units) {
            Some(p) => {
                if let (Some(v), Some(all)) = (p.get("prelu_weight"), params.as_mut()) {
                    all.insert("prelu_weight".to_owned(), v.clone());
                }
            }
            None => params = None,
        }

        let (norm_kind, norm_config) = match norm {
            Some((kind, config)) => (Some(kind), config),
            None => (None, e::NormConfig::default()),
        };
        let config = params.map(|params| e::DenseConfig {
            units,
            activation,
            init: init.to_engine(),
            bias_init: bias_init.to_engine(),
            norm: norm_kind,
            norm_config,
            params,
        });
        (config, Some(units))
    }

    /// Running variances must not be negative (the norm takes their square root).
    fn variance_ok(&mut self, ptr: &str, v: &[f64]) -> bool {
        match v.iter().position(|x| *x < 0.0) {
            Some(i) => {
                self.cx.push(index(ptr, i), format!("`running_var` holds a negative variance ({})", v[i]));
                false
            }
            None => true,
        }
    }

    /// `prelu_weight`: one slope per unit, only with a `prelu` activation.
    fn prelu_weight(
        &mut self,
        o: &Origin,
        is_prelu: bool,
        given: Option<&[f64]>,
        width: usize,
    ) -> Option<e::ExplicitParams> {
        let mut params = e::ExplicitParams::new();
        let Some(v) = given else { return Some(params) };
        let ptr = o.at("prelu_weight");
        if !is_prelu {
            self.cx.push(ptr, "`prelu_weight` is given but the activation is not `prelu`");
            return None;
        }
        params.insert("prelu_weight".to_owned(), self.vector(&ptr, "prelu_weight", v, width, "one per unit")?);
        Some(params)
    }

    /// The explicit parameters of a standalone norm: one value per feature each.
    fn feature_params(
        &mut self,
        o: &Origin,
        width: Option<usize>,
        given: &[(&str, &Option<Vec<f64>>)],
    ) -> Option<e::ExplicitParams> {
        let mut params = Some(e::ExplicitParams::new());
        let Some(w) = width else { return params };
        for (name, v) in given {
            let Some(v) = v else { continue };
            let ptr = o.at(name);
            let v = self.vector(&ptr, name, v, w, "one per feature");
            let v = v.filter(|v| *name != "running_var" || self.variance_ok(&ptr, v));
            match (v, params.as_mut()) {
                (Some(v), Some(p)) => {
                    p.insert((*name).to_owned(), v);
                }
                _ => params = None,
            }
        }
        params
    }

    /// Does an output of `width` fit the loss and the targets? `ptr`: the last layer's width.
    fn task(&mut self, width: usize, target: Target, loss: Loss, ptr: &str, kind: &str) {
        let name = loss.name();
        match (loss, target) {
            (Loss::CrossEntropy, Target::Classes(n)) if width != n => self.cx.push(
                ptr,
                format!("the last layer has {width} units but cross_entropy over the {n} classes of the `{kind}` data needs {n}"),
            ),
            (Loss::CrossEntropy, Target::Values { .. }) => self.cx.push(
                "/training/loss",
                format!("cross_entropy needs class labels but the `{kind}` data has regression targets; use mse (or bce for targets in [0, 1])"),
            ),
            (Loss::Bce, Target::Classes(2)) if width != 1 => self.cx.push(
                ptr,
                format!("the last layer has {width} units but bce on 2 classes needs 1 (the logit of class 1)"),
            ),
            (Loss::Bce, Target::Classes(n)) if n != 2 => self.cx.push(
                "/training/loss",
                format!("bce on class labels needs exactly 2 classes but the `{kind}` data has {n}; use cross_entropy"),
            ),
            (Loss::Bce, Target::Values { unit: false, .. }) => self.cx.push(
                "/training/loss",
                format!("bce needs targets in [0, 1] but the `{kind}` data's targets are not all in [0, 1]; use mse"),
            ),
            (Loss::Mse, Target::Classes(n)) if width != n => self.cx.push(
                ptr,
                format!("the last layer has {width} units but mse on {n} class labels compares one-hot targets, so it needs {n} (one per class)"),
            ),
            (Loss::Mse | Loss::Bce, Target::Values { width: k, .. }) if width != k => self.cx.push(
                ptr,
                format!("the last layer has {width} units but {name} needs one per target value, and the `{kind}` data has {k}"),
            ),
            _ => {}
        }
    }
}

/// How the rows flowing between layers relate to samples.
#[derive(Debug, Clone, PartialEq)]
enum Flow {
    /// One row per sample: plain data.
    Samples,
    /// One row per time step of each sample: sequence data, or the output of an rnn with
    /// `return_sequences` (later dense, norm, dropout and activation layers apply per step).
    Steps,
    /// One row per sample after the time steps were reduced (by an rnn that returns only its
    /// last step, or by a pool layer).
    Collapsed(Reducer),
}

/// What reduced a sequence to one row per sample, with its pointer.
#[derive(Debug, Clone, PartialEq)]
enum Reducer {
    Rnn(String),
    Pool(String),
}

/// The last layer that read across the time steps, with its pointer (not needed for a pool:
/// its flow says it all).
#[derive(Debug, Clone, PartialEq)]
enum Reader {
    Rnn(String),
    Attention(String),
    Pool,
}

/// What the shape walk tracks besides the width.
struct Walk {
    flow: Flow,
    /// The last layer that read across the time steps.
    last_reader: Option<Reader>,
    /// Inside a residual block.
    in_residual: bool,
    /// The data's `type`, for messages.
    kind: &'static str,
    /// Time steps per sequence, when sequence data and valid.
    steps: Option<usize>,
}

/// The wire name of an activation, for messages.
fn activation_name(a: e::Activation) -> &'static str {
    match a {
        e::Activation::Linear => "linear",
        e::Activation::Sigmoid => "sigmoid",
        e::Activation::Tanh => "tanh",
        e::Activation::Relu => "relu",
        e::Activation::LeakyRelu { .. } => "leaky_relu",
        e::Activation::Elu { .. } => "elu",
        e::Activation::Prelu { .. } => "prelu",
        e::Activation::Selu => "selu",
        e::Activation::Gelu => "gelu",
        e::Activation::Softplus => "softplus",
        e::Activation::Silu => "silu",
    }
}

/// Whether a layer reads across the time steps: an rnn, attention, transformer or pool layer.
fn reads_across_steps(layers: &[Layer]) -> bool {
    layers.iter().any(|l| match l {
        Layer::Rnn(_) | Layer::Attention(_) | Layer::Pool(_) | Layer::Transformer(_) => true,
        Layer::Residual(r) => reads_across_steps(&r.layers),
        _ => false,
    })
}
