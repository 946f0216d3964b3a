//! Recommendations: for each diagnostic, ranked changes drawn from the known cures, each with
//! the mechanism (`why`, with its reference) and an RFC 6902 JSON Patch against the report's
//! expanded `spec` that applies it.
//!
//! Candidates are proposed from the diagnostic and the spec alone ([`recommend`]); the pipeline
//! then *measures* the ones whose effect shows at initialisation (the gradient ratio of
//! `vanishing_gradient` / `exploding_gradient`): it applies each patch, runs one forward/backward
//! on the patched spec and re-ranks by the measured ratio ([`rank_by_measurement`]). A cure that
//! only acts through training (a learning rate, a gated cell) keeps its documented rank.
//!
//! Where popular advice is wrong, the text says so: tiny initial weights cause vanishing in deep
//! networks, and clipping bounds exploding gradients but does nothing for vanishing ones.
//!
//! Reads the typed evidence of each diagnostic (`analysis/findings.rs`) and the hidden layers
//! as `analysis/measures.rs` defines them; each recommendation carries its [`Cure`], so cures
//! are told apart by type, not by title. Must not depend on jobs or HTTP.

use serde_json::{json, Value};

use super::diagnostics::DEAD_UNITS;
use super::findings::{Cure, Diagnostic, DiagnosticCode, Evidence, LayerEvidence, Measured, Recommendation, Severity};
use super::measures::hidden_weight_layers;
use super::report::LayerEntry;
use crate::engine::layers::LayerKind;

/// Adds the recommendations of every diagnostic (see the module doc).
pub fn recommend(diagnostics: &mut [Diagnostic], spec: &Value, layers: &[LayerEntry]) {
    let vanishing = diagnostics.iter().any(|d| {
        matches!(d.code, DiagnosticCode::VanishingGradient | DiagnosticCode::LongRangeVanishing)
            && d.severity >= Severity::Warning
    });
    let view = SpecView { spec, layers, vanishing };
    for d in diagnostics.iter_mut() {
        d.recommendations = view.for_diagnostic(d);
    }
}

/// Re-ranks the recommendations of ratio-based diagnostics by measurement: `measure` runs one
/// forward/backward on a patched spec and returns what it saw (or `None` when the patched spec
/// does not run). Recommendations that could not be measured keep their order after the
/// measured ones.
pub fn rank_by_measurement(
    diagnostics: &mut [Diagnostic],
    spec: &Value,
    measure: &mut dyn FnMut(&Value) -> Option<Measured>,
) {
    for d in diagnostics.iter_mut() {
        if !matches!(d.code, DiagnosticCode::VanishingGradient | DiagnosticCode::ExplodingGradient)
            || !matches!(d.evidence, Evidence::Depth(_))
        {
            continue;
        }
        for r in d.recommendations.iter_mut() {
            if let Some(patched) = apply(spec, &r.patch) {
                r.measured = measure(&patched);
            }
        }
        // Stable sort: measured first, closest to a ratio of 1 first; the rest keep their order.
        d.recommendations.sort_by(|a, b| {
            let key = |r: &Recommendation| r.measured.as_ref().map_or(f64::INFINITY, Measured::distance);
            key(a).total_cmp(&key(b))
        });
    }
}

/// Applies an RFC 6902 patch to a copy of `spec`; `None` if the patch does not apply.
pub fn apply(spec: &Value, patch: &[Value]) -> Option<Value> {
    let patch: json_patch::Patch = serde_json::from_value(Value::Array(patch.to_vec())).ok()?;
    let mut doc = spec.clone();
    json_patch::patch(&mut doc, &patch).ok()?;
    Some(doc)
}

const SATURATING: &[&str] = &["sigmoid", "tanh"];
const RELU_FAMILY: &[&str] = &["relu", "leaky_relu", "prelu", "elu", "gelu", "silu", "softplus"];

const WHY_RELU_HE: &str = "ReLU's derivative is 1 on every active unit, where sigmoid's is at most 1/4 and tanh's \
    falls below 1 away from 0, so a deep stack no longer multiplies the gradient by a factor < 1 per layer; He \
    init (variance 2/fan_in) keeps activation and gradient variance constant across ReLU layers (Glorot & Bengio \
    2010; He et al. 2015).";
const WHY_BATCH_NORM: &str = "Batch norm re-centres and re-scales each layer's pre-activations over the batch, so \
    they stay in the range where the activation's derivative is large and the gradient keeps its scale through \
    depth (Ioffe & Szegedy 2015).";
const WHY_RESIDUAL: &str = "An identity skip adds 1 to each block's Jacobian (dy/dx = I + dF/dx), so the gradient \
    reaches early layers through the skips even when the blocks' own Jacobians are small (He et al. 2016).";
const WHY_INIT: &str = "The weight variance decides the per-layer gain of both passes; matching it to the \
    activation (Xavier for tanh/sigmoid, He for the ReLU family, LeCun for SELU) keeps it near 1. Note: the \
    popular advice to initialise weights very small is wrong for deep networks — tiny weights shrink the \
    signal and the gradient at every layer, which is itself vanishing (Glorot & Bengio 2010; He et al. 2015).";
const WHY_CLIP: &str = "Rescaling the gradient when its global norm exceeds a threshold bounds every step while \
    keeping its direction (Pascanu et al. 2013). It stops an explosion; it does not cure vanishing gradients, \
    which are too small, not too large.";
const WHY_LR_DOWN: &str = "Each step moves the weights by lr x gradient; a step that is a large fraction of the \
    weights' norm (update_ratio >> 1e-3) overshoots, saturates units or kills ReLUs, and can diverge.";
const WHY_ORTHOGONAL_HH: &str = "The gradient through time is multiplied by W_hh^T diag(phi') at every step; its \
    norm is bounded by (gamma sigma_max(W_hh))^k over k steps (Pascanu et al. 2013). An orthogonal W_hh has every \
    singular value 1, so the bound neither explodes nor shrinks from the weights (Saxe et al. 2014).";
const WHY_LSTM: &str = "An LSTM's cell state is updated additively (c_t = f c_{t-1} + i g), so the gradient along \
    it is scaled by the forget gate rather than by a weight matrix and a squashing derivative at every step; with \
    the forget bias at 1 the gate starts open and the gradient reaches far back (Hochreiter & Schmidhuber 1997; \
    Jozefowicz et al. 2015). Clipping alone would not help: it cannot enlarge a vanishing gradient.";
const WHY_GRU: &str = "A GRU interpolates h_t = (1 - z) n + z h_{t-1}; where the update gate z is near 1 the \
    state and its gradient pass through almost unchanged (Cho et al. 2014).";
const WHY_IRNN: &str = "A ReLU RNN with W_hh initialised to the identity starts by copying its state, so the \
    gradient through time is the identity on active units; Le et al. (2015) pair it with gradient clipping.";

const WHY_STANDARDIZE: &str = "Initialisations are scaled for inputs of zero mean and unit variance (the variance \
    of a pre-activation is fan_in x Var(w) x E[x^2]); features with a standard deviation of 5 make the first \
    layer's pre-activations, the logits and the initial loss several times too large, and the first steps \
    overshoot. Standardizing each feature with the training split's mean and standard deviation restores the \
    scale the initialisation assumes (LeCun et al. 1998, Efficient BackProp).";

/// The largest factor one recommendation changes the learning rate by, either way.
pub const MAX_LR_FACTOR: f64 = 10.0;

struct SpecView<'a> {
    spec: &'a Value,
    layers: &'a [LayerEntry],
    /// The report has a vanishing-gradient finding (warning or critical): small updates are
    /// its effect, not the learning rate's.
    vanishing: bool,
}

const WHY_ATTENTION_SKIP: &str = "Pure attention averages tokens: each layer shrinks a sequence's distance from rank \
    one doubly exponentially (Dong et al. 2021), so after two or three layers every position carries the same vector; \
    a skip connection x + attention(x) keeps the tokens apart (above 0.9 through ten layers at init).";

const WHY_WARMUP: &str = "In a post-LN transformer the layer norm after each residual sum leaves the gradient of \
    the last blocks' parameters large at initialisation, independent of depth (Xiong et al. 2020), and Adam's first \
    steps are full-size whatever the gradient: the early updates are too large and a deep post-LN stack can collapse \
    to a constant prediction and stay there. Raising the learning rate linearly over the first steps (10% of the \
    run here) keeps those updates small until Adam's moment estimates settle (Liu et al. 2020). Clipping would \
    not do the same: it bounds the gradient, not Adam's normalised step.";
const WHY_PRE_LN: &str = "Pre-LN blocks (x + F(LN(x)), with a layer norm after the last block) keep an identity \
    path from every block to the output, so the gradient at initialisation is well-behaved and shrinks with depth \
    as 1/sqrt(L) instead of staying large at the last blocks; Xiong et al. (2020) train them without warm-up.";

const WHY_ATTENTION_INIT: &str = "The attention logits are q.k/sqrt(d_h); query and key projections much larger \
    than Xavier's make them large from the first step, the softmax puts all its weight on one token and its \
    Jacobian diag(p) - pp^T is near zero, so the projections receive almost no gradient to get out (Zhai et al. \
    2023). PyTorch's Xavier-uniform in_proj_weight starts near uniform attention.";
const WHY_ATTENTION_LR: &str = "Large steps grow the query and key weights until the attention logits saturate the \
    softmax (attention entropy collapse, Zhai et al. 2023); smaller steps keep the attention spread.";

fn add(path: &str, value: Value) -> Value {
    json!({"op": "add", "path": path, "value": value})
}

fn remove(path: &str) -> Value {
    json!({"op": "remove", "path": path})
}

fn rec(cure: Cure, title: impl Into<String>, why: &str, patch: Vec<Value>) -> Recommendation {
    Recommendation { cure, title: title.into(), why: why.into(), patch, measured: None, verification: None }
}

impl SpecView<'_> {
    /// The dense ones among the hidden weight layers (`analysis/measures.rs`).
    fn hidden_dense(&self) -> Vec<&LayerEntry> {
        hidden_weight_layers(self.layers.iter().map(|l| l.kind))
            .into_iter()
            .filter_map(|i| self.layers.get(i))
            .filter(|l| l.kind == LayerKind::Dense)
            .collect()
    }

    fn rnns(&self) -> Vec<&LayerEntry> {
        self.layers.iter().filter(|l| l.kind == LayerKind::Rnn).collect()
    }

    fn get(&self, pointer: &str) -> Option<&Value> {
        self.spec.pointer(pointer).filter(|v| !v.is_null())
    }

    fn str_at(&self, pointer: &str) -> Option<&str> {
        self.get(pointer).and_then(Value::as_str)
    }

    fn lr(&self) -> Option<f64> {
        self.get("/training/optimizer/lr").and_then(Value::as_f64)
    }

    fn has_clip(&self) -> bool {
        self.get("/training/clip").is_some()
    }

    /// Indices in `/model/layers` of the post-LN transformers (`norm_first` false) written at
    /// the top level of the spec.
    fn post_ln_transformers(&self) -> Vec<usize> {
        let Some(layers) = self.get("/model/layers").and_then(Value::as_array) else { return Vec::new() };
        layers
            .iter()
            .enumerate()
            .filter(|(_, l)| {
                l.get("type").and_then(Value::as_str) == Some("transformer")
                    && l.get("norm_first").and_then(Value::as_bool) != Some(true)
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// Xiong et al.'s two cures of a post-LN transformer that does not train: a linear
    /// warm-up over the first 10% of the steps (unless the spec already warms up) and pre-LN
    /// blocks with a final layer norm, for the post-LN `transformers` (from
    /// [`Self::post_ln_transformers`]). Empty without one.
    fn post_ln_cures(&self, transformers: &[usize]) -> Vec<Recommendation> {
        if transformers.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        let schedule = self.str_at("/training/schedule/type");
        let steps = self.get("/training/steps").and_then(Value::as_u64);
        if let (None | Some("constant"), Some(steps)) = (schedule, steps) {
            let warmup_steps = (steps / 10).max(1);
            out.push(rec(
                Cure::Warmup,
                format!("Warm the learning rate up linearly over the first {warmup_steps} steps"),
                WHY_WARMUP,
                vec![add("/training/schedule", json!({"type": "warmup", "warmup_steps": warmup_steps}))],
            ));
        }
        // Last transformer first, so that an inserted layer norm does not move the ones before.
        let mut pre_ln = Vec::new();
        for &i in transformers.iter().rev() {
            pre_ln.push(add(&format!("/model/layers/{i}/norm_first"), json!(true)));
            let next = self.get(&format!("/model/layers/{}", i + 1));
            let normed = next.is_some_and(|l| l == "layer_norm" || l.get("type") == Some(&json!("layer_norm")));
            if !normed {
                pre_ln.push(add(&format!("/model/layers/{}", i + 1), json!({"type": "layer_norm"})));
            }
        }
        out.push(rec(
            Cure::PreLn,
            "Use pre-LN transformer blocks (norm_first) with a final layer norm",
            WHY_PRE_LN,
            pre_ln,
        ));
        out
    }

    /// Whether the patch op changes a transformer layer written at the top level (whose
    /// sub-layers take no dense-layer cure: their activation, norms and skips are the block's).
    fn in_transformer(&self, op: &Value) -> bool {
        let Some(path) = op.get("path").and_then(Value::as_str) else { return false };
        let Some(rest) = path.strip_prefix("/model/layers/") else { return false };
        let index = rest.split('/').next().unwrap_or(rest);
        self.get(&format!("/model/layers/{index}/type")).and_then(Value::as_str) == Some("transformer")
    }

    fn by_name(&self, name: &str) -> Option<&LayerEntry> {
        self.layers.iter().find(|l| l.name == name)
    }

    fn for_diagnostic(&self, d: &Diagnostic) -> Vec<Recommendation> {
        let recurrent = !self.rnns().is_empty();
        let post_ln = self.post_ln_transformers();
        let out = match d.code {
            // The dense-layer cures do not reach a transformer's blocks.
            DiagnosticCode::VanishingGradient if !post_ln.is_empty() => Vec::new(),
            DiagnosticCode::VanishingGradient if !recurrent => self.vanishing_mlp(),
            DiagnosticCode::VanishingGradient | DiagnosticCode::LongRangeVanishing => self.vanishing_rnn(),
            DiagnosticCode::ExplodingGradient => self.exploding(d),
            DiagnosticCode::Saturation => self.saturation(d),
            DiagnosticCode::DeadUnits => self.dead_units(d),
            DiagnosticCode::NonFinite => self.non_finite(),
            DiagnosticCode::UpdateRatio => self.update_ratio(d),
            DiagnosticCode::NotLearning => self.not_learning(),
            DiagnosticCode::InputScale => self.standardize(),
            DiagnosticCode::RankCollapse => self.attention_skips(d),
            DiagnosticCode::AttentionEntropyCollapse => self.attention_entropy(d),
        };
        // A post-LN transformer that does not train, or whose gradient vanishes or explodes, is
        // Xiong et al.'s case: their cures first. Tokens collapsed in a network that learns
        // (a rank_collapse warning) are not.
        let transformer_case = match d.code {
            DiagnosticCode::VanishingGradient
            | DiagnosticCode::ExplodingGradient
            | DiagnosticCode::DeadUnits
            | DiagnosticCode::NotLearning => true,
            DiagnosticCode::RankCollapse | DiagnosticCode::AttentionEntropyCollapse => d.severity == Severity::Critical,
            _ => false,
        };
        let mut all = if transformer_case { self.post_ln_cures(&post_ln) } else { Vec::new() };
        all.extend(out.into_iter().filter(|r| !r.patch.iter().any(|op| self.in_transformer(op))));
        all.into_iter().filter(|r| !r.patch.is_empty()).collect()
    }

    /// Every collapsing attention layer written at the top level of the spec wrapped in a
    /// residual block (`x + attention(x)`), the skip Dong et al. show keeps the tokens apart.
    fn attention_skips(&self, d: &Diagnostic) -> Vec<Recommendation> {
        let mut patch = Vec::new();
        for l in d.layers.iter().filter_map(|n| self.by_name(n)) {
            let depth = l.pointer.matches("/layers/").count();
            if depth != 1 || l.kind != LayerKind::Attention {
                continue;
            }
            if let Some(layer) = self.spec.pointer(&l.pointer) {
                patch.push(
                    json!({"op": "replace", "path": l.pointer, "value": {"type": "residual", "layers": [layer]}}),
                );
            }
        }
        vec![rec(Cure::Residual, "wrap the attention layers in residual blocks", WHY_ATTENTION_SKIP, patch)]
    }

    /// Attention collapsed from the start: its explicit query/key projections make the logits
    /// too large, and PyTorch's init (the default) does not. Collapsed during training: smaller
    /// steps.
    fn attention_entropy(&self, d: &Diagnostic) -> Vec<Recommendation> {
        let Evidence::PerLayer(e) = &d.evidence else { return Vec::new() };
        let at_init = |name: &String| {
            matches!(e.per_layer.get(name), Some(LayerEvidence::AttentionEntropy { entropy_step0: Some(h), thresholds, .. })
                if *h < thresholds.warning)
        };
        let explicit: Vec<Value> = d
            .layers
            .iter()
            .filter(|n| at_init(n))
            .filter_map(|n| self.by_name(n))
            .filter(|l| l.kind == LayerKind::Attention && l.part.is_none())
            .map(|l| format!("{}/in_proj_weight", l.pointer))
            .filter(|p| self.get(p).is_some())
            .map(|p| remove(&p))
            .collect();
        let mut out = Vec::new();
        if !explicit.is_empty() {
            out.push(rec(
                Cure::MatchedInit,
                "Initialise the attention projections as PyTorch does (Xavier-uniform) instead of the explicit weights",
                WHY_ATTENTION_INIT,
                explicit,
            ));
        }
        out.push(self.lr_scaled(0.1, "Lower the learning rate 10x", WHY_ATTENTION_LR));
        out
    }

    /// `data.standardize: true`, unless the spec already standardizes.
    fn standardize(&self) -> Vec<Recommendation> {
        let already = self.get("/data/standardize").and_then(Value::as_bool) == Some(true);
        let patch = if already { Vec::new() } else { vec![add("/data/standardize", json!(true))] };
        vec![rec(
            Cure::Standardize,
            "Standardize the input features (zero mean, unit variance per feature)",
            WHY_STANDARDIZE,
            patch,
        )]
    }

    /// One patch op per hidden dense layer whose activation is in `from` (all when empty).
    fn per_hidden(&self, from: &[&str], ops: impl FnMut(&LayerEntry) -> Vec<Value>) -> Vec<Value> {
        self.hidden_dense()
            .into_iter()
            .filter(|l| from.is_empty() || l.activation.as_deref().is_some_and(|a| from.contains(&a)))
            .flat_map(ops)
            .collect()
    }

    fn relu_he(&self, from: &[&str]) -> Recommendation {
        let patch = self.per_hidden(from, |l| {
            vec![
                add(&format!("{}/activation", l.pointer), json!({"type": "relu"})),
                add(&format!("{}/init", l.pointer), json!({"type": "he_normal"})),
            ]
        });
        rec(Cure::ReluHe, "Use ReLU with He initialisation in the hidden layers", WHY_RELU_HE, patch)
    }

    fn batch_norm(&self) -> Recommendation {
        let patch = self.per_hidden(&[], |l| {
            if self.get(&format!("{}/norm", l.pointer)).is_some() {
                Vec::new()
            } else {
                vec![add(&format!("{}/norm", l.pointer), json!({"type": "batch"}))]
            }
        });
        rec(Cure::BatchNorm, "Add batch norm to each hidden dense layer", WHY_BATCH_NORM, patch)
    }

    /// Matched init where the current one differs from the activation's.
    fn matched_init(&self) -> Recommendation {
        let patch = self.per_hidden(&[], |l| {
            let want = match l.activation.as_deref() {
                Some(a) if RELU_FAMILY.contains(&a) => "he_normal",
                Some("selu") => "lecun_normal",
                _ => "xavier_normal",
            };
            let current = self.str_at(&format!("{}/init/type", l.pointer));
            let gain = self.get(&format!("{}/init/gain", l.pointer)).and_then(Value::as_f64).unwrap_or(1.0);
            let already = match (current, want) {
                (Some("he_normal" | "he_uniform"), "he_normal") => true,
                (Some("xavier_normal" | "xavier_uniform"), "xavier_normal") => true,
                (Some(c), w) => c == w,
                (None, _) => false,
            };
            if already && (gain - 1.0).abs() < 1e-12 {
                Vec::new()
            } else {
                vec![add(&format!("{}/init", l.pointer), json!({"type": want}))]
            }
        });
        rec(
            Cure::MatchedInit,
            "Initialise each layer's weights for its activation (Xavier / He / LeCun)",
            WHY_INIT,
            patch,
        )
    }

    /// Wraps runs of same-width hidden dense layers (top level only, after the first) into
    /// residual blocks of two.
    fn residual(&self) -> Recommendation {
        let Some(layers) = self.spec.pointer("/model/layers").and_then(Value::as_array) else {
            return rec(Cure::Residual, "", WHY_RESIDUAL, Vec::new());
        };
        let last_weight =
            layers.iter().rposition(|l| matches!(l.get("type").and_then(Value::as_str), Some("dense" | "rnn")));
        let mut out: Vec<Value> = Vec::new();
        let mut wrapped = 0;
        let mut i = 0;
        let width_in = |j: usize| -> Option<u64> {
            // The width entering layer j: the previous dense layer's units (or the input).
            layers[..j]
                .iter()
                .rev()
                .find_map(|l| (l.get("type")?.as_str()? == "dense").then(|| l.get("units")?.as_u64()).flatten())
                .or_else(|| self.spec.pointer("/model/input_dim")?.as_u64())
        };
        while i < layers.len() {
            let pair = (i + 1 < layers.len())
                && Some(i + 1) < last_weight
                && i > 0
                && [i, i + 1].iter().all(|&j| {
                    layers[j].get("type").and_then(Value::as_str) == Some("dense")
                        && layers[j].get("units").and_then(Value::as_u64) == width_in(i)
                });
            if pair {
                out.push(json!({"type": "residual", "layers": [layers[i].clone(), layers[i + 1].clone()]}));
                wrapped += 1;
                i += 2;
            } else {
                out.push(layers[i].clone());
                i += 1;
            }
        }
        if wrapped == 0 {
            return rec(Cure::Residual, "", WHY_RESIDUAL, Vec::new());
        }
        rec(
            Cure::Residual,
            format!("Wrap the hidden layers in {wrapped} residual blocks of two"),
            WHY_RESIDUAL,
            vec![json!({"op": "replace", "path": "/model/layers", "value": out})],
        )
    }

    fn vanishing_mlp(&self) -> Vec<Recommendation> {
        let mut out = Vec::new();
        if self.hidden_dense().iter().any(|l| l.activation.as_deref().is_some_and(|a| SATURATING.contains(&a))) {
            out.push(self.relu_he(SATURATING));
        }
        out.push(self.batch_norm());
        out.push(self.matched_init());
        out.push(self.residual());
        out
    }

    fn cell_patch(&self, l: &LayerEntry, cell: &str) -> Vec<Value> {
        let mut ops = vec![add(&format!("{}/cell", l.pointer), json!(cell))];
        if self.get(&format!("{}/activation", l.pointer)).is_some() {
            ops.push(remove(&format!("{}/activation", l.pointer)));
        }
        if cell == "lstm" {
            ops.push(add(&format!("{}/forget_bias", l.pointer), json!(1.0)));
        } else if self.get(&format!("{}/forget_bias", l.pointer)).is_some() {
            ops.push(remove(&format!("{}/forget_bias", l.pointer)));
        }
        ops.push(add(&format!("{}/recurrent_init", l.pointer), json!({"type": "orthogonal"})));
        ops
    }

    fn vanishing_rnn(&self) -> Vec<Recommendation> {
        let vanilla: Vec<&LayerEntry> = self
            .rnns()
            .into_iter()
            .filter(|l| self.str_at(&format!("{}/cell", l.pointer)).is_none_or(|c| c == "vanilla"))
            .collect();
        let mut out = Vec::new();
        if !vanilla.is_empty() {
            let lstm = vanilla.iter().flat_map(|l| self.cell_patch(l, "lstm")).collect();
            out.push(rec(Cure::Lstm, "Use an LSTM cell with forget-gate bias 1", WHY_LSTM, lstm));
            let gru = vanilla.iter().flat_map(|l| self.cell_patch(l, "gru")).collect();
            out.push(rec(Cure::Gru, "Use a GRU cell", WHY_GRU, gru));
            let mut irnn: Vec<Value> = vanilla
                .iter()
                .flat_map(|l| {
                    [
                        add(&format!("{}/activation", l.pointer), json!({"type": "relu"})),
                        add(&format!("{}/recurrent_init", l.pointer), json!({"type": "identity"})),
                    ]
                })
                .collect();
            if !self.has_clip() {
                irnn.push(add("/training/clip", json!({"type": "global_norm", "max": 1.0})));
            }
            out.push(rec(
                Cure::Irnn,
                "Use ReLU units with an identity-initialised W_hh (IRNN) and clipping",
                WHY_IRNN,
                irnn,
            ));
        } else {
            let lstm_bias: Vec<Value> = self
                .rnns()
                .into_iter()
                .filter(|l| {
                    self.str_at(&format!("{}/cell", l.pointer)) == Some("lstm")
                        && self.get(&format!("{}/forget_bias", l.pointer)).and_then(Value::as_f64).unwrap_or(0.0) < 1.0
                })
                .map(|l| add(&format!("{}/forget_bias", l.pointer), json!(1.0)))
                .collect();
            out.push(rec(Cure::ForgetBias, "Set the LSTM forget-gate bias to 1", WHY_LSTM, lstm_bias));
        }
        if let Some(k) = self.get("/training/bptt_truncate").and_then(Value::as_u64) {
            out.push(rec(
                Cure::FullBptt,
                format!("Back-propagate through the whole sequence (bptt_truncate is {k})"),
                "Truncated BPTT cuts the gradient k steps back by construction: no dependency longer than k steps \
                 can be learnt, whatever the cell.",
                vec![add("/training/bptt_truncate", Value::Null)],
            ));
        }
        out
    }

    /// The learning rate times `factor`, held to [`MAX_LR_FACTOR`] either way.
    fn lr_scaled(&self, factor: f64, title: &str, why: &str) -> Recommendation {
        let factor = factor.clamp(1.0 / MAX_LR_FACTOR, MAX_LR_FACTOR);
        match self.lr() {
            Some(lr) => {
                let new = round_sig(lr * factor);
                rec(
                    Cure::LearningRate,
                    format!("{title} (lr {lr} -> {new})"),
                    why,
                    vec![add("/training/optimizer/lr", json!(new))],
                )
            }
            None => rec(Cure::LearningRate, title, why, Vec::new()),
        }
    }

    fn clip(&self) -> Recommendation {
        if self.has_clip() {
            return rec(Cure::Clip, "", WHY_CLIP, Vec::new());
        }
        rec(
            Cure::Clip,
            "Clip the gradient by its global norm at 1.0",
            WHY_CLIP,
            vec![add("/training/clip", json!({"type": "global_norm", "max": 1.0}))],
        )
    }

    fn orthogonal_hh(&self) -> Recommendation {
        let patch = self
            .rnns()
            .into_iter()
            .filter(|l| {
                let init = self.get(&format!("{}/recurrent_init", l.pointer));
                let kind = init.and_then(|i| i.get("type")).and_then(Value::as_str);
                let gain = init.and_then(|i| i.get("gain")).and_then(Value::as_f64).unwrap_or(1.0);
                kind != Some("orthogonal") || gain > 1.0
            })
            .map(|l| add(&format!("{}/recurrent_init", l.pointer), json!({"type": "orthogonal", "gain": 1.0})))
            .collect();
        rec(Cure::OrthogonalRecurrent, "Initialise W_hh orthogonally with gain 1", WHY_ORTHOGONAL_HH, patch)
    }

    fn exploding(&self, d: &Diagnostic) -> Vec<Recommendation> {
        let mut out = Vec::new();
        if self.rnns().is_empty() {
            out.push(self.matched_init());
            out.push(self.batch_norm());
            out.push(self.clip());
            out.push(self.lr_scaled(0.1, "Lower the learning rate 10x", WHY_LR_DOWN));
        } else {
            out.push(self.orthogonal_hh());
            out.push(self.clip());
            let vanilla: Vec<&LayerEntry> = self
                .rnns()
                .into_iter()
                .filter(|l| self.str_at(&format!("{}/cell", l.pointer)).is_none_or(|c| c == "vanilla"))
                .collect();
            let lstm: Vec<Value> = vanilla.iter().flat_map(|l| self.cell_patch(l, "lstm")).collect();
            out.push(rec(Cure::Lstm, "Use an LSTM cell", WHY_LSTM, lstm));
            out.push(self.lr_scaled(0.1, "Lower the learning rate 10x", WHY_LR_DOWN));
        }
        // Clipping already acting on most steps: the cause is still there.
        if matches!(d.evidence, Evidence::Clipping(_)) {
            out.retain(|r| r.cure != Cure::Clip);
        }
        out
    }

    fn saturation(&self, d: &Diagnostic) -> Vec<Recommendation> {
        let saturated: Vec<&str> =
            d.layers.iter().filter_map(|n| self.by_name(n)).filter_map(|l| l.activation.as_deref()).collect();
        let mut out = vec![self.relu_he(SATURATING), self.batch_norm(), self.matched_init()];
        if saturated.is_empty() {
            out.remove(0);
        }
        out.push(self.lr_scaled(0.1, "Lower the learning rate 10x", WHY_LR_DOWN));
        out
    }

    fn dead_units(&self, d: &Diagnostic) -> Vec<Recommendation> {
        let affected: Vec<&LayerEntry> = d.layers.iter().filter_map(|n| self.by_name(n)).collect();
        // Dead from the start: the initialisation did it, not the steps.
        let dead_at_init = match &d.evidence {
            Evidence::PerLayer(e) => {
                let dead0 = e
                    .per_layer
                    .values()
                    .filter(|l| {
                        matches!(l, LayerEvidence::Dead { dead_fraction_step0: Some(f), .. } if *f > DEAD_UNITS.warning)
                    })
                    .count();
                dead0 * 2 > e.per_layer.len()
            }
            _ => false,
        };
        let mut out = vec![self.lr_scaled(
            0.1,
            "Lower the learning rate 10x",
            "A large step can push a ReLU unit's pre-activation below zero for every input; its gradient is \
             then zero and it never recovers (the 'dying ReLU'). Smaller steps avoid it.",
        )];
        let leaky: Vec<Value> = affected
            .iter()
            .filter(|l| l.activation.as_deref() == Some("relu"))
            .map(|l| add(&format!("{}/activation", l.pointer), json!({"type": "leaky_relu", "slope": 0.01})))
            .collect();
        out.push(rec(
            Cure::LeakyRelu,
            "Use leaky ReLU in the affected layers",
            "Leaky ReLU keeps a small slope for negative inputs, so a unit pushed below zero still gets a gradient \
             and can recover (Maas et al. 2013).",
            leaky,
        ));
        let bias: Vec<Value> = affected
            .iter()
            .filter(|l| {
                self.get(&format!("{}/bias_init/value", l.pointer)).and_then(Value::as_f64).is_some_and(|b| b < 0.0)
            })
            .map(|l| add(&format!("{}/bias_init", l.pointer), json!({"type": "constant", "value": 0.0})))
            .collect();
        out.push(rec(
            Cure::ZeroBias,
            "Initialise the biases at 0",
            "A negative bias starts units below zero for most inputs: they are dead before training begins.",
            bias,
        ));
        out.push(self.matched_init());
        if dead_at_init {
            // [lr, leaky, bias, init] -> [bias, init, leaky]: a smaller step cannot revive units
            // that were dead before the first one.
            out.remove(0);
            out.rotate_left(1);
        }
        out
    }

    fn non_finite(&self) -> Vec<Recommendation> {
        let mut out = vec![self.clip(), self.lr_scaled(0.1, "Lower the learning rate 10x", WHY_LR_DOWN)];
        if !self.rnns().is_empty() {
            out.push(self.orthogonal_hh());
        } else {
            out.push(self.matched_init());
        }
        out
    }

    fn update_ratio(&self, d: &Diagnostic) -> Vec<Recommendation> {
        let medians: Vec<f64> = match &d.evidence {
            Evidence::PerLayer(e) => e
                .per_layer
                .values()
                .filter_map(|l| match l {
                    LayerEvidence::UpdateRatio { median_update_ratio, .. } => Some(*median_update_ratio),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        let Some(median) = median_of(medians) else { return Vec::new() };
        // Scale the learning rate towards a median ratio of 1e-3, at most MAX_LR_FACTOR per
        // recommendation. Tiny updates under a vanishing gradient are its effect: a larger
        // learning rate would blow up the layers whose gradient still arrives, not revive the
        // others, so the learning rate is not offered then.
        let factor = (1e-3 / median).clamp(1.0 / MAX_LR_FACTOR, MAX_LR_FACTOR);
        let why = "The update ratio ||dW||/||W|| is about 1e-3 in networks that train well (Karpathy's rule of \
                   thumb, CS231n): far below, the weights barely move; far above, each step rewrites them.";
        let mut out = Vec::new();
        if factor < 1.0 || !self.vanishing {
            out.push(self.lr_scaled(
                factor,
                if factor < 1.0 { "Lower the learning rate" } else { "Raise the learning rate" },
                why,
            ));
        }
        if self.str_at("/training/optimizer/type") == Some("sgd") {
            out.push(rec(
                Cure::Adam,
                "Use Adam (lr 1e-3)",
                "Adam divides each parameter's step by a running RMS of its gradient, so every layer moves at a \
                 similar relative rate whatever its gradient scale (Kingma & Ba 2015).",
                vec![add("/training/optimizer", json!({"type": "adam", "lr": 1e-3}))],
            ));
        }
        out
    }

    fn not_learning(&self) -> Vec<Recommendation> {
        let mut out = Vec::new();
        if self.str_at("/training/optimizer/type") == Some("sgd") {
            out.push(rec(
                Cure::Adam,
                "Use Adam (lr 1e-3)",
                "Adam's per-parameter step sizes make progress where plain SGD's single learning rate is too small \
                 for some layers and too large for others (Kingma & Ba 2015).",
                vec![add("/training/optimizer", json!({"type": "adam", "lr": 1e-3}))],
            ));
        }
        // The plateau is a recurrent network's (a long-range task); an MLP that does not learn
        // has a cause more steps do not remove.
        let steps = self.get("/training/steps").and_then(Value::as_u64);
        if let (Some(steps), false) = (steps, self.rnns().is_empty()) {
            out.push(rec(
                Cure::TrainLonger,
                format!("Train longer ({steps} -> {} steps)", steps * 4),
                "Recurrent networks on long-range tasks (and gated cells) often sit on a plateau at the constant \
                 prediction before the loss drops: the LSTM on the adding problem leaves it only after ~1500 steps.",
                vec![add("/training/steps", json!(steps * 4))],
            ));
        }
        out
    }
}

fn median_of(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite() && *x > 0.0);
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

/// Rounds to two significant digits (a learning rate a person would write).
fn round_sig(x: f64) -> f64 {
    if !x.is_finite() || x == 0.0 {
        return x;
    }
    let scale = 10f64.powf(x.abs().log10().floor() - 1.0);
    (x / scale).round() * scale
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::findings::{PerLayerEvidence, Thresholds, Verdict};

    fn entry(index: usize, kind: LayerKind, activation: Option<&str>) -> LayerEntry {
        LayerEntry {
            index,
            name: format!("{}_{index}", kind.name()),
            kind,
            params: 0,
            units: 4,
            activation: activation.map(Into::into),
            pointer: format!("/model/layers/{index}"),
            block: None,
            part: None,
        }
    }

    fn dense(units: u64, activation: &str) -> Value {
        json!({"type": "dense", "units": units, "activation": {"type": activation}, "init": {"type": "xavier_uniform", "gain": 1.0}, "norm": null, "bias_init": {"type": "constant", "value": 0.0}})
    }

    fn sigmoid_stack() -> (Value, Vec<LayerEntry>) {
        let mut layers: Vec<Value> = (0..5).map(|_| dense(4, "sigmoid")).collect();
        layers.push(dense(2, "linear"));
        let spec = json!({"model": {"input_dim": 4, "layers": layers}, "training": {"optimizer": {"type": "sgd", "lr": 0.1}, "clip": null, "steps": 100}});
        let mut entries: Vec<LayerEntry> = (0..5).map(|i| entry(i, LayerKind::Dense, Some("sigmoid"))).collect();
        entries.push(entry(5, LayerKind::Dense, Some("linear")));
        (spec, entries)
    }

    fn diagnostic(code: DiagnosticCode, layers: &[&str]) -> Diagnostic {
        Diagnostic {
            code,
            severity: Severity::Critical,
            layers: layers.iter().map(|s| s.to_string()).collect(),
            message: String::new(),
            evidence: Evidence::PerLayer(PerLayerEvidence { per_layer: Default::default() }),
            recommendations: Vec::new(),
            consequence_of: None,
            cause: None,
        }
    }

    fn depth(grad_ratio_first_last: f64) -> Evidence {
        Evidence::Depth(crate::analysis::findings::DepthEvidence {
            delta_ratio_first_last: None,
            grad_ratio_first_last,
            layers_between: 4.0,
            per_layer_factor: grad_ratio_first_last.powf(0.25),
            probe_step: 0,
            ratio: crate::analysis::findings::RatioKind::GradNorm,
            thresholds: Thresholds { critical: 1e-4, warning: 1e-2 },
        })
    }

    #[test]
    fn every_vanishing_patch_applies_and_leaves_the_output_layer_alone() {
        let (spec, entries) = sigmoid_stack();
        let mut d = vec![diagnostic(DiagnosticCode::VanishingGradient, &["dense_0"])];
        recommend(&mut d, &spec, &entries);
        let titles: Vec<&str> = d[0].recommendations.iter().map(|r| r.title.as_str()).collect();
        assert_eq!(titles[0], "Use ReLU with He initialisation in the hidden layers");
        assert!(titles.iter().any(|t| t.contains("batch norm")));
        assert!(titles.iter().any(|t| t.contains("residual")));
        for r in &d[0].recommendations {
            let patched = apply(&spec, &r.patch).expect(&r.title);
            let last = |v: &Value| v["model"]["layers"].as_array().and_then(|l| l.last()).cloned();
            assert_eq!(last(&patched), last(&spec), "{}", r.title);
            assert!(!r.why.is_empty());
        }
        let relu = apply(&spec, &d[0].recommendations[0].patch).unwrap();
        assert_eq!(relu.pointer("/model/layers/0/activation/type"), Some(&json!("relu")));
        assert_eq!(relu.pointer("/model/layers/4/init/type"), Some(&json!("he_normal")));
    }

    #[test]
    fn residual_blocks_pair_equal_width_layers_after_the_first() {
        let (spec, entries) = sigmoid_stack();
        let r = SpecView { spec: &spec, layers: &entries, vanishing: false }.residual();
        let patched = apply(&spec, &r.patch).unwrap();
        let layers = patched.pointer("/model/layers").unwrap().as_array().unwrap();
        // dense_0, [dense_1, dense_2], [dense_3, dense_4], output
        assert_eq!(layers.len(), 4);
        assert_eq!(layers[1]["type"], "residual");
        assert_eq!(layers[2]["type"], "residual");
        assert_eq!(layers[3], spec["model"]["layers"][5]);
    }

    #[test]
    fn clipping_is_never_offered_for_vanishing_and_says_it_does_not_cure_it() {
        let (spec, entries) = sigmoid_stack();
        let mut d = vec![diagnostic(DiagnosticCode::VanishingGradient, &["dense_0"])];
        recommend(&mut d, &spec, &entries);
        assert!(d[0].recommendations.iter().all(|r| !r.title.to_lowercase().contains("clip")));
        assert!(WHY_CLIP.contains("does not cure vanishing"));
        assert!(WHY_INIT.contains("very small is wrong"));
    }

    #[test]
    fn recurrent_cell_swap_removes_the_vanilla_activation() {
        let spec = json!({"model": {"input_dim": 2, "layers": [
            {"type": "rnn", "cell": "vanilla", "units": 8, "activation": {"type": "tanh"}, "recurrent_init": {"type": "orthogonal", "gain": 1.5}},
            dense(1, "linear")]}, "training": {"clip": null, "bptt_truncate": null, "optimizer": {"type": "adam", "lr": 0.01}}});
        let entries = vec![entry(0, LayerKind::Rnn, Some("tanh")), entry(1, LayerKind::Dense, Some("linear"))];
        let mut d = vec![
            diagnostic(DiagnosticCode::LongRangeVanishing, &["rnn_0"]),
            diagnostic(DiagnosticCode::ExplodingGradient, &[]),
        ];
        recommend(&mut d, &spec, &entries);
        let lstm = apply(&spec, &d[0].recommendations[0].patch).unwrap();
        assert_eq!(lstm["model"]["layers"][0]["cell"], "lstm");
        assert!(lstm["model"]["layers"][0].get("activation").is_none());
        assert_eq!(lstm["model"]["layers"][0]["forget_bias"], 1.0);
        let titles: Vec<&str> = d[1].recommendations.iter().map(|r| r.title.as_str()).collect();
        assert_eq!(titles[0], "Initialise W_hh orthogonally with gain 1");
        assert!(titles.contains(&"Clip the gradient by its global norm at 1.0"));
    }

    #[test]
    fn update_ratio_scales_the_learning_rate_towards_1e_3() {
        let (spec, entries) = sigmoid_stack();
        let mut d = vec![Diagnostic {
            evidence: Evidence::PerLayer(PerLayerEvidence {
                per_layer: ["dense_0", "dense_1"]
                    .map(|n| {
                        (n.to_string(), LayerEvidence::UpdateRatio { median_update_ratio: 0.1, range: [1e-5, 1e-1] })
                    })
                    .into(),
            }),
            ..diagnostic(DiagnosticCode::UpdateRatio, &["dense_0", "dense_1"])
        }];
        recommend(&mut d, &spec, &entries);
        // 0.1 -> 0.001 would be 100x: one recommendation changes it by MAX_LR_FACTOR at most.
        let patched = apply(&spec, &d[0].recommendations[0].patch).unwrap();
        assert!((patched["training"]["optimizer"]["lr"].as_f64().unwrap() - 0.01).abs() < 1e-12);
    }

    #[test]
    fn ranking_puts_the_measured_best_first() {
        let (spec, entries) = sigmoid_stack();
        let mut d =
            vec![Diagnostic { evidence: depth(1e-12), ..diagnostic(DiagnosticCode::VanishingGradient, &["dense_0"]) }];
        recommend(&mut d, &spec, &entries);
        // Pretend batch norm measures best: only the patch that adds a norm gets ratio 0.5.
        rank_by_measurement(&mut d, &spec, &mut |s| {
            let bn = s.pointer("/model/layers/0/norm").is_some_and(|n| !n.is_null());
            Some(Measured {
                grad_ratio_first_last: Some(if bn { 0.5 } else { 1e-6 }),
                delta_ratio_first_last: None,
                verdict: Verdict::Healthy,
            })
        });
        assert!(d[0].recommendations[0].title.contains("batch norm"));
        assert!(d[0].recommendations.iter().all(|r| r.measured.is_some()));
    }

    #[test]
    fn round_sig_keeps_two_digits() {
        assert_eq!(round_sig(0.0123456), 0.012);
        assert!((round_sig(0.1 * 0.01 / 0.037) - 0.027).abs() < 1e-15);
    }
}
