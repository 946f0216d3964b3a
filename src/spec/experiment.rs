//! The experiment request (`POST /v1/experiments`, `gradscope experiment FILE`): a base spec,
//! the variants to compare (a grid of settings, named patches, or the recommendations of a
//! finished job) and the seeds every variant runs on.
//!
//! ```text
//! Value --parse--> ExperimentRequest --plan(remedies?)--> Vec<Variant> (specs as JSON)
//!                                     --admit(&Limits, &ExperimentLimits)--> Vec<AdmittedVariant>
//! ```
//!
//! Every problem is reported at once, each with a JSON Pointer into the request body: a bad
//! pointer of `vary` at `/vary/<pointer, escaped>`, a patch that does not apply at
//! `/variants/<i>/patch`, a variant whose spec is invalid at `/variants/<i>` (the detail names
//! the variant and the pointer inside its spec), a base spec's own problems under `/base`.
//!
//! Design rules (docs/experiments.md states them for users):
//! - The base spec unchanged is always a variant, the baseline, named `baseline` — unless a grid
//!   cell is identical to it, in which case that cell is the baseline.
//! - A grid (`vary`) is the full product of its axes, in axis order (axes sorted by pointer,
//!   values in request order); each cell is the base with `add`/`replace` operations at the axes'
//!   pointers (`replace` where the member exists, `add` where only its parent does).
//! - `seeds` is a list of distinct seeds, or a count `n` meaning the base spec's seed (0 when it
//!   has none) and the `n - 1` after it; default [`DEFAULT_SEEDS`]. Each run's spec is its
//!   variant's with the top-level `seed` replaced, so every variant sees the same data and the
//!   same initial draws for a seed (a paired design).
//! - Limits: at most `max_variants` variants, `max_seeds` seeds, and a total compute (the sum of
//!   every run's compute as [`Limits::max_compute`] counts it) of `max_compute`.

use crate::engine::units::thousands;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::error::{index, join, Collector, SpecError, SpecErrors};
use super::presets::{self, experiment_presets, find_experiment_preset, ExperimentPreset};
use super::validate::Limits;
use super::{parse, Spec};

/// Seeds of an experiment that does not say.
pub const DEFAULT_SEEDS: u64 = 3;
/// The baseline's name (unless a grid cell is the baseline).
pub const BASELINE: &str = "baseline";

/// What an experiment may cost. Over any of these, a request is refused (`422`) with the
/// computed figure beside the limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExperimentLimits {
    /// Variants, the baseline included.
    pub max_variants: u64,
    /// Seeds per variant.
    pub max_seeds: u64,
    /// The sum over every (variant, seed) run of its compute (parameters x steps x batch, x time
    /// steps for sequences), in the unit of [`Limits::max_compute`].
    pub max_compute: u128,
}

impl Default for ExperimentLimits {
    fn default() -> Self {
        ExperimentLimits { max_variants: 32, max_seeds: 10, max_compute: 4 * Limits::default().max_compute as u128 }
    }
}

/// A named RFC 6902 patch of the base spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NamedPatch {
    /// The variant's name (unique in the experiment; not `baseline`).
    pub name: String,
    /// RFC 6902 operations applied to the base spec.
    #[schema(value_type = Vec<Object>)]
    pub patch: Value,
}

/// The two axes of a grid the score heatmap is drawn over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HeatmapAxes {
    /// The pointer (a key of `vary`) across.
    pub x: String,
    /// The pointer (a key of `vary`) down.
    pub y: String,
}

/// The body of `POST /v1/experiments` (or `{"preset": NAME}` naming an experiment preset).
/// Exactly one of `vary`, `variants` and `remedies_of`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(example = json!({
    "name": "init x activation",
    "base": {"preset": "deep-sigmoid-vanishing"},
    "vary": {"/model/layers/0/activation": ["sigmoid", "tanh", "relu"], "/model/layers/0/init": ["xavier_uniform", "he_normal"]},
    "seeds": 3
}))]
pub struct ExperimentRequest {
    /// Free-form label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What the experiment shows, for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The base spec, or `{"preset": NAME}` naming a job preset. Absent with `remedies_of` (the
    /// job's spec is the base).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<super::schema::SubmitRequest>)]
    pub base: Option<Value>,
    /// A full grid: JSON Pointer into the spec -> the values it takes.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<std::collections::BTreeMap<String, Vec<Value>>>)]
    pub vary: Option<Value>,
    /// Named RFC 6902 patches of the base spec, one variant each.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variants: Option<Vec<NamedPatch>>,
    /// A finished job's id: its spec is the baseline and each of its report's recommendations
    /// a variant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remedies_of: Option<String>,
    /// A list of distinct seeds, or how many (default 3).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Seeds>)]
    pub seeds: Option<Value>,
    /// Report, per run, the first probe step whose training loss is at or below this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss_threshold: Option<f64>,
    /// The axes of the score heatmap (default: the first two axes of `vary`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heatmap: Option<HeatmapAxes>,
}

/// The seeds of an experiment: how many (from the base spec's seed on), or which.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(untagged)]
pub enum Seeds {
    /// How many (at least 1).
    Count(u64),
    /// Which (distinct).
    List(Vec<u64>),
}

/// How the variants are made.
#[derive(Debug, Clone, PartialEq)]
pub enum Design {
    /// A full grid over these axes (sorted by pointer).
    Grid(Vec<GridAxis>),
    /// Named patches.
    Patches(Vec<NamedPatch>),
    /// The recommendations of this job.
    RemediesOf(String),
}

/// One axis of a grid.
#[derive(Debug, Clone, PartialEq)]
pub struct GridAxis {
    /// JSON Pointer into the spec.
    pub pointer: String,
    /// The values, in request order.
    pub values: Vec<Value>,
}

/// A parsed request: everything but the variants' specs.
#[derive(Debug, Clone, PartialEq)]
pub struct ExperimentPlan {
    /// The request as parsed (echoed back to clients).
    pub request: ExperimentRequest,
    /// The base spec as JSON (a preset expanded); `None` for `remedies_of` until resolved.
    pub base: Option<Value>,
    /// How the variants are made.
    pub design: Design,
    /// Every variant runs on each, in this order.
    pub seeds: SeedsChoice,
    /// Pointers of the heatmap's axes (grid only).
    pub heatmap: Option<(usize, usize)>,
}

/// The seeds as requested: a list, or a count resolved against the base spec's seed.
#[derive(Debug, Clone, PartialEq)]
pub enum SeedsChoice {
    /// These seeds.
    List(Vec<u64>),
    /// This many, from the base spec's seed on.
    Count(u64),
}

/// A variant with its full spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    /// Unique name.
    pub name: String,
    /// The base unchanged.
    pub baseline: bool,
    /// A grid cell's value of each axis (axis order); empty otherwise.
    pub settings: Vec<Value>,
    /// The RFC 6902 patch from the base (an array).
    pub patch: Value,
    /// The full spec (its own `seed` is replaced per run).
    pub spec: Value,
    /// Where problems with this variant are reported in the request body.
    pub pointer: String,
}

/// A variant whose spec passed validation, and the runs it makes.
#[derive(Debug, Clone)]
pub struct AdmittedVariant {
    /// The variant.
    pub variant: Variant,
    /// One spec per seed (the experiment's seed order), validated.
    pub runs: Vec<AdmittedRun>,
}

/// One (variant, seed) run.
#[derive(Debug, Clone)]
pub struct AdmittedRun {
    /// The seed.
    pub seed: u64,
    /// The spec with that seed.
    pub spec: Spec,
    /// Steps it will take.
    pub total_steps: u64,
    /// Its probe interval.
    pub probe_every: u64,
    /// Its compute (parameters x steps x batch [x time steps]).
    pub compute: u128,
}

/// Parses an experiment request body (or `{"preset": NAME}` naming an experiment preset),
/// reporting every problem.
pub fn parse_experiment(body: &Value) -> Result<ExperimentPlan, SpecErrors> {
    if let Some(preset) = experiment_preset_request(body)? {
        return parse_experiment(&preset.request);
    }
    let mut cx = Collector::new();
    let Value::Object(map) = body else {
        cx.push("", "expected an experiment: an object with `base` and one of `vary`, `variants`, `remedies_of`");
        return cx.finish(None);
    };
    const FIELDS: [&str; 9] =
        ["name", "description", "base", "vary", "variants", "remedies_of", "seeds", "loss_threshold", "heatmap"];
    for key in map.keys().filter(|k| !FIELDS.contains(&k.as_str())) {
        cx.push(join("", key), format!("unknown field `{key}`; expected one of {}", FIELDS.join(", ")));
    }
    let name = optional_string(&mut cx, map, "name");
    let description = optional_string(&mut cx, map, "description");
    let remedies_of = optional_string(&mut cx, map, "remedies_of");

    let designs: Vec<&str> = ["vary", "variants", "remedies_of"].into_iter().filter(|k| map.contains_key(*k)).collect();
    match designs.as_slice() {
        [] => cx.push("", "give one of `vary` (a grid), `variants` (named patches) or `remedies_of` (a job id)"),
        [_] => {}
        [_, second, ..] => cx.push(join("", second), format!("give only one of {}", designs.join(", "))),
    }

    // The base: a spec, or a job preset; `remedies_of` brings its own.
    let base = match (map.get("base"), &remedies_of) {
        (Some(_), Some(_)) => {
            cx.push("/base", "`remedies_of` takes the job's spec as the base; leave `base` out");
            None
        }
        (None, Some(_)) => None,
        (None, None) => {
            cx.push("/base", "missing: the spec every variant starts from (a spec, or {\"preset\": NAME})");
            None
        }
        (Some(b), None) => base_spec(&mut cx, b),
    };

    let vary = map.get("vary").map(|v| parse_vary(&mut cx, v, base.as_ref()));
    let variants = map.get("variants").map(|v| parse_variants(&mut cx, v));
    let seeds = parse_seeds(&mut cx, map.get("seeds"));
    let loss_threshold = match map.get("loss_threshold") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_f64() {
            Some(x) if x.is_finite() && x >= 0.0 => Some(x),
            _ => {
                cx.push("/loss_threshold", format!("expected a loss (a number >= 0), got {v}"));
                None
            }
        },
    };
    let heatmap_axes: Option<HeatmapAxes> = match map.get("heatmap") {
        None | Some(Value::Null) => None,
        Some(v) => match serde_json::from_value::<HeatmapAxes>(v.clone()) {
            Ok(h) => Some(h),
            Err(e) => {
                cx.push("/heatmap", format!("expected {{\"x\": POINTER, \"y\": POINTER}} (two keys of `vary`): {e}"));
                None
            }
        },
    };

    let design = match (vary.flatten(), variants.flatten(), remedies_of.clone()) {
        (Some(axes), None, None) => Some(Design::Grid(axes)),
        (None, Some(patches), None) => Some(Design::Patches(patches)),
        (None, None, Some(job)) => Some(Design::RemediesOf(job)),
        _ => None,
    };
    let heatmap = match (&design, &heatmap_axes) {
        (Some(Design::Grid(axes)), Some(h)) => {
            let find = |p: &str, field: &str, cx: &mut Collector| {
                let i = axes.iter().position(|a| a.pointer == p);
                if i.is_none() {
                    cx.push(join("/heatmap", field), format!("`{p}` is not a key of `vary`"));
                }
                i
            };
            let x = find(&h.x, "x", &mut cx);
            let y = find(&h.y, "y", &mut cx);
            match (x, y) {
                (Some(x), Some(y)) if x != y => Some((x, y)),
                (Some(_), Some(_)) => {
                    cx.push("/heatmap", "`x` and `y` must be two different axes");
                    None
                }
                _ => None,
            }
        }
        (Some(Design::Grid(axes)), None) if axes.len() >= 2 => Some((0, 1)),
        (Some(_), Some(_)) => {
            cx.push("/heatmap", "a heatmap needs a grid (`vary`) with two axes");
            None
        }
        _ => None,
    };
    let request = ExperimentRequest {
        name,
        description,
        base: map.get("base").cloned(),
        vary: map.get("vary").cloned(),
        variants: match &design {
            Some(Design::Patches(p)) => Some(p.clone()),
            _ => None,
        },
        remedies_of,
        seeds: map.get("seeds").cloned(),
        loss_threshold,
        heatmap: heatmap_axes,
    };
    let plan = match (design, seeds) {
        (Some(design), Some(seeds)) => Some(ExperimentPlan { request, base, design, seeds, heatmap }),
        _ => None,
    };
    cx.finish(plan)
}

/// `Ok(Some(preset))` for a body `{"preset": NAME}` naming an experiment preset.
fn experiment_preset_request(body: &Value) -> Result<Option<&'static ExperimentPreset>, SpecErrors> {
    let Value::Object(map) = body else { return Ok(None) };
    let Some(name) = map.get("preset") else { return Ok(None) };
    let mut cx = Collector::new();
    for key in map.keys().filter(|k| *k != "preset") {
        cx.push(join("", key), format!("unknown field `{key}`: a preset request has only `preset`"));
    }
    let found = match name.as_str() {
        Some(n) => {
            let p = find_experiment_preset(n);
            if p.is_none() {
                let names: Vec<String> = experiment_presets().iter().map(|p| format!("`{}`", p.name)).collect();
                cx.push("/preset", format!("unknown experiment preset `{n}`; expected one of {}", names.join(", ")));
            }
            p
        }
        None => {
            cx.push("/preset", format!("expected a preset name (a string), got {name}"));
            None
        }
    };
    cx.finish(found).map(Some)
}

fn optional_string(cx: &mut Collector, map: &Map<String, Value>, key: &str) -> Option<String> {
    match map.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            cx.push(join("", key), format!("expected a string, got {other}"));
            None
        }
    }
}

/// The base as spec JSON (a job preset expanded), checked to parse; its problems under `/base`.
fn base_spec(cx: &mut Collector, base: &Value) -> Option<Value> {
    let expanded = match presets::expand_request(base.clone()) {
        Ok(v) => v,
        Err(e) => {
            for err in SpecErrors::from(e).0 {
                cx.push(format!("/base{}", err.pointer), err.detail);
            }
            return None;
        }
    };
    match parse(&expanded) {
        Ok(_) => Some(expanded),
        Err(errors) => {
            // A preset's spec always parses, so these pointers are into the body's `base`.
            for err in errors.0 {
                cx.push(format!("/base{}", err.pointer), err.detail);
            }
            None
        }
    }
}

fn parse_vary(cx: &mut Collector, vary: &Value, base: Option<&Value>) -> Option<Vec<GridAxis>> {
    let Value::Object(axes) = vary else {
        cx.push(
            "/vary",
            format!("expected an object mapping JSON Pointers into the spec to lists of values, got {vary}"),
        );
        return None;
    };
    if axes.is_empty() {
        cx.push("/vary", "expected at least one axis (a JSON Pointer into the spec -> a list of values)");
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    for (pointer, values) in axes {
        let at = join("/vary", pointer);
        if !(pointer.starts_with('/')) {
            cx.push(&at, format!("`{pointer}` is not a JSON Pointer (RFC 6901: empty, or starting with `/`)"));
            ok = false;
            continue;
        }
        if let Some(base) = base {
            if let Err(why) = pointer_target(base, pointer) {
                cx.push(&at, format!("`{pointer}` does not point into the base spec: {why}"));
                ok = false;
            }
        }
        match values {
            Value::Array(vs) if !vs.is_empty() => {
                let mut distinct: Vec<Value> = Vec::new();
                for v in vs {
                    if distinct.contains(v) {
                        cx.push(&at, format!("the value {v} is listed twice"));
                        ok = false;
                    } else {
                        distinct.push(v.clone());
                    }
                }
                out.push(GridAxis { pointer: pointer.clone(), values: distinct });
            }
            other => {
                cx.push(&at, format!("expected a non-empty list of values, got {other}"));
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

/// Whether `pointer` names a member that exists in `doc` (`Ok(true)`), one that can be added
/// because its parent object exists (`Ok(false)`), or neither (`Err`).
fn pointer_target(doc: &Value, pointer: &str) -> Result<bool, String> {
    if doc.pointer(pointer).is_some() {
        return Ok(true);
    }
    let (parent, last) = pointer.rsplit_once('/').unwrap_or(("", pointer));
    match doc.pointer(parent) {
        Some(Value::Object(_)) => Ok(false),
        Some(Value::Array(a)) => Err(format!("`{last}` is not an index of the list at `{parent}` ({} items)", a.len())),
        Some(_) => Err(format!("`{parent}` is not an object")),
        None => Err(format!("nothing at `{parent}`")),
    }
}

fn parse_variants(cx: &mut Collector, variants: &Value) -> Option<Vec<NamedPatch>> {
    let Value::Array(items) = variants else {
        cx.push(
            "/variants",
            format!("expected a list of {{\"name\": ..., \"patch\": [RFC 6902 operations]}}, got {variants}"),
        );
        return None;
    };
    if items.is_empty() {
        cx.push("/variants", "expected at least one variant (the baseline is added by itself)");
        return None;
    }
    let mut out = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = index("/variants", i);
        let name = match item.get("name") {
            Some(Value::String(n)) if !n.trim().is_empty() => Some(n.clone()),
            other => {
                cx.push(join(&at, "name"), format!("expected the variant's name (a string), got {}", show(other)));
                None
            }
        };
        if let Some(n) = &name {
            if n == BASELINE {
                cx.push(join(&at, "name"), "`baseline` is the base spec's own name; choose another");
            } else if names.contains(n) {
                cx.push(join(&at, "name"), format!("the name `{n}` is used twice"));
            }
            names.push(n.clone());
        }
        if let Value::Object(m) = item {
            for key in m.keys().filter(|k| *k != "name" && *k != "patch") {
                cx.push(join(&at, key), format!("unknown field `{key}`; a variant has `name` and `patch`"));
            }
        }
        let patch = match item.get("patch") {
            Some(p) => match serde_json::from_value::<json_patch::Patch>(p.clone()) {
                Ok(_) => Some(p.clone()),
                Err(e) => {
                    cx.push(join(&at, "patch"), format!("not an RFC 6902 patch: {e}"));
                    None
                }
            },
            None => {
                cx.push(join(&at, "patch"), "missing: the RFC 6902 operations that make this variant");
                None
            }
        };
        if let (Some(name), Some(patch)) = (name, patch) {
            out.push(NamedPatch { name, patch });
        }
    }
    (out.len() == items.len()).then_some(out)
}

fn show(v: Option<&Value>) -> String {
    v.map_or_else(|| "nothing".to_owned(), Value::to_string)
}

fn parse_seeds(cx: &mut Collector, seeds: Option<&Value>) -> Option<SeedsChoice> {
    match seeds {
        None | Some(Value::Null) => Some(SeedsChoice::Count(DEFAULT_SEEDS)),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(k) if k >= 1 => Some(SeedsChoice::Count(k)),
            _ => {
                cx.push("/seeds", format!("expected a count of seeds (an integer >= 1) or a list of seeds, got {n}"));
                None
            }
        },
        Some(Value::Array(items)) => {
            let mut out: Vec<u64> = Vec::new();
            for (i, v) in items.iter().enumerate() {
                match v.as_u64() {
                    Some(s) if out.contains(&s) => cx.push(index("/seeds", i), format!("the seed {s} is listed twice")),
                    Some(s) => out.push(s),
                    None => cx.push(index("/seeds", i), format!("expected a seed (an integer >= 0), got {v}")),
                }
            }
            if items.is_empty() {
                cx.push("/seeds", "expected at least one seed");
            }
            (out.len() == items.len() && !out.is_empty()).then_some(SeedsChoice::List(out))
        }
        Some(other) => {
            cx.push("/seeds", format!("expected a count of seeds or a list of seeds, got {other}"));
            None
        }
    }
}

impl ExperimentPlan {
    /// The seeds every variant runs on; more than `limits.max_seeds` are refused before a count
    /// is expanded into a list.
    pub fn seeds(&self, base: &Value, limits: &ExperimentLimits) -> Result<Vec<u64>, SpecErrors> {
        let n = match &self.seeds {
            SeedsChoice::List(s) => s.len() as u64,
            SeedsChoice::Count(n) => *n,
        };
        if n > limits.max_seeds {
            let detail = format!("{n} seeds; at most {} are allowed", limits.max_seeds);
            return Err(SpecErrors(vec![SpecError { pointer: "/seeds".into(), detail }]));
        }
        Ok(match &self.seeds {
            SeedsChoice::List(s) => s.clone(),
            SeedsChoice::Count(n) => {
                let first = base.get("seed").and_then(Value::as_u64).unwrap_or(0);
                (0..*n).map(|k| first.saturating_add(k)).collect()
            }
        })
    }

    /// The grid's axes (empty for other designs).
    pub fn axes(&self) -> &[GridAxis] {
        match &self.design {
            Design::Grid(axes) => axes,
            _ => &[],
        }
    }

    /// The variants with their specs, baseline first. For `remedies_of`, `remedies` is the
    /// job's spec and its recommendations (title, patch) in report order; other designs ignore
    /// it. Refuses grids larger than `limits.max_variants` before building them.
    pub fn variants(
        &self,
        remedies: Option<(Value, Vec<NamedPatch>)>,
        limits: &ExperimentLimits,
    ) -> Result<(Value, Vec<Variant>), SpecErrors> {
        let mut cx = Collector::new();
        let (base, patches) = match (&self.design, &self.base, remedies) {
            (Design::RemediesOf(_), _, Some((spec, recs))) => (spec, recs),
            (Design::RemediesOf(job), _, None) => {
                cx.push("/remedies_of", format!("the job `{job}` has no report to take recommendations from"));
                return cx.finish(None);
            }
            (Design::Patches(p), Some(base), _) => (base.clone(), p.clone()),
            (Design::Grid(axes), Some(base), _) => {
                let cells = axes.iter().fold(1u64, |n, a| n.saturating_mul(a.values.len() as u64));
                if cells > limits.max_variants {
                    let sizes: Vec<String> = axes.iter().map(|a| a.values.len().to_string()).collect();
                    cx.push(
                        "/vary",
                        format!(
                            "the grid has {} = {cells} cells; at most {} variants are allowed",
                            sizes.join(" x "),
                            limits.max_variants
                        ),
                    );
                    return cx.finish(None);
                }
                (base.clone(), grid_patches(axes, base))
            }
            (_, None, _) => {
                cx.push("/base", "missing");
                return cx.finish(None);
            }
        };
        let mut variants = Vec::new();
        let grid = matches!(self.design, Design::Grid(_));
        for (i, np) in patches.iter().enumerate() {
            let pointer = match self.design {
                Design::Grid(_) => "/vary".to_owned(),
                Design::Patches(_) => index("/variants", i),
                Design::RemediesOf(_) => "/remedies_of".to_owned(),
            };
            let spec = match apply(&base, &np.patch) {
                Ok(s) => s,
                Err(e) => {
                    cx.push(join(&pointer, "patch"), format!("variant `{}`: the patch does not apply: {e}", np.name));
                    continue;
                }
            };
            let settings = match &self.design {
                Design::Grid(axes) => {
                    axes.iter().map(|a| spec.pointer(&a.pointer).cloned().unwrap_or(Value::Null)).collect()
                }
                _ => Vec::new(),
            };
            let baseline = grid && spec == base;
            variants.push(Variant {
                name: np.name.clone(),
                baseline,
                settings,
                patch: np.patch.clone(),
                spec,
                pointer,
            });
        }
        if !variants.iter().any(|v| v.baseline) {
            let settings =
                self.axes().iter().map(|a| base.pointer(&a.pointer).cloned().unwrap_or(Value::Null)).collect();
            variants.insert(
                0,
                Variant {
                    name: BASELINE.into(),
                    baseline: true,
                    settings,
                    patch: Value::Array(Vec::new()),
                    spec: base.clone(),
                    pointer: if matches!(self.design, Design::RemediesOf(_)) { "/remedies_of" } else { "/base" }.into(),
                },
            );
        } else if let Some(i) = variants.iter().position(|v| v.baseline) {
            let b = variants.remove(i);
            variants.insert(0, b);
        }
        if variants.len() as u64 > limits.max_variants {
            cx.push(
                "",
                format!(
                    "{} variants (the baseline included); at most {} are allowed",
                    variants.len(),
                    limits.max_variants
                ),
            );
        }
        cx.finish(Some((base, variants)))
    }
}

/// One `add`/`replace` patch per grid cell, named after its settings.
fn grid_patches(axes: &[GridAxis], base: &Value) -> Vec<NamedPatch> {
    // A short name per axis: the pointer's last token, or the whole pointer when two axes share it.
    let last = |p: &str| p.rsplit('/').next().unwrap_or(p).to_owned();
    let labels: Vec<String> = axes
        .iter()
        .map(|a| {
            let l = last(&a.pointer);
            if axes.iter().filter(|b| last(&b.pointer) == l).count() > 1 {
                a.pointer.clone()
            } else {
                l
            }
        })
        .collect();
    let mut cells: Vec<Vec<usize>> = vec![Vec::new()];
    for axis in axes {
        cells = cells
            .into_iter()
            .flat_map(|c| (0..axis.values.len()).map(move |j| [c.clone(), vec![j]].concat()))
            .collect();
    }
    cells
        .into_iter()
        .map(|cell| {
            let mut ops = Vec::new();
            let mut name = Vec::new();
            for ((axis, label), &j) in axes.iter().zip(&labels).zip(&cell) {
                let value = &axis.values[j];
                let op = if base.pointer(&axis.pointer).is_some() { "replace" } else { "add" };
                ops.push(serde_json::json!({"op": op, "path": axis.pointer, "value": value}));
                let shown = match value {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                name.push(format!("{label}={shown}"));
            }
            NamedPatch { name: name.join(", "), patch: Value::Array(ops) }
        })
        .collect()
}

/// `base` with the RFC 6902 `patch` applied.
pub fn apply(base: &Value, patch: &Value) -> Result<Value, String> {
    let patch: json_patch::Patch = serde_json::from_value(patch.clone()).map_err(|e| e.to_string())?;
    let mut doc = base.clone();
    json_patch::patch(&mut doc, &patch).map_err(|e| e.to_string())?;
    Ok(doc)
}

/// Validates every variant on every seed against the job limits and the experiment's, and
/// returns the runs. Problems name the variant and the pointer inside its spec.
pub fn admit(
    variants: Vec<Variant>,
    seeds: &[u64],
    limits: &Limits,
    experiment: &ExperimentLimits,
) -> Result<Vec<AdmittedVariant>, SpecErrors> {
    let mut cx = Collector::new();
    if seeds.len() as u64 > experiment.max_seeds {
        cx.push("/seeds", format!("{} seeds; at most {} are allowed", seeds.len(), experiment.max_seeds));
        return cx.finish(None);
    }
    let mut out = Vec::new();
    let mut total: u128 = 0;
    for variant in variants {
        let mut runs = Vec::new();
        for &seed in seeds {
            let mut json = variant.spec.clone();
            if let Value::Object(m) = &mut json {
                m.insert("seed".into(), Value::from(seed));
            }
            let spec = match parse(&json) {
                Ok(s) => s,
                Err(errors) => {
                    report_variant(&mut cx, &variant, errors);
                    break;
                }
            };
            match spec.validate_measured(limits) {
                Ok((config, compute)) => {
                    total = total.saturating_add(compute);
                    runs.push(AdmittedRun {
                        seed,
                        total_steps: config.training.steps as u64,
                        probe_every: config.probes.every as u64,
                        compute,
                        spec,
                    });
                }
                Err(errors) => {
                    report_variant(&mut cx, &variant, errors);
                    break;
                }
            }
        }
        out.push(AdmittedVariant { variant, runs });
    }
    if total > experiment.max_compute {
        let jobs = out.iter().map(|v| v.runs.len()).sum::<usize>();
        cx.push(
            "",
            format!(
                "the experiment's compute is {} over its {jobs} runs ({} variants x {} seeds; a run's compute is parameters x steps x batch, x time steps for sequences); at most {} is allowed",
                thousands(total),
                out.len(),
                seeds.len(),
                thousands(experiment.max_compute)
            ),
        );
    }
    cx.finish(Some(out))
}

fn report_variant(cx: &mut Collector, variant: &Variant, errors: SpecErrors) {
    for SpecError { pointer, detail } in errors.0 {
        let inner = if pointer.is_empty() { "(the spec)".to_owned() } else { pointer };
        cx.push(&variant.pointer, format!("variant `{}`: {inner}: {detail}", variant.name));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Value {
        json!({
            "seed": 5,
            "model": {"input_dim": 2, "layers": [{"type": "dense", "units": 4, "activation": "tanh"}, {"type": "dense", "units": 2}]},
            "data": {"type": "xor", "samples": 32},
            "training": {"steps": 10, "batch_size": 8}
        })
    }

    fn plan(body: Value) -> ExperimentPlan {
        parse_experiment(&body).unwrap()
    }

    #[test]
    fn a_grid_is_the_full_product_in_axis_order_and_the_cell_equal_to_the_base_is_the_baseline() {
        let p = plan(json!({"base": base(), "vary": {
            "/model/layers/0/activation": ["relu", "tanh"],
            "/training/clip": [{"type": "global_norm", "max": 1.0}, null]
        }}));
        let (_, variants) = p.variants(None, &ExperimentLimits::default()).unwrap();
        let names: Vec<&str> = variants.iter().map(|v| v.name.as_str()).collect();
        // `null` for an absent member is not the base (which has no `clip` at all).
        assert_eq!(names[0], "baseline");
        assert_eq!(variants.len(), 5);
        assert!(names.contains(&"activation=relu, clip={\"max\":1.0,\"type\":\"global_norm\"}"), "{names:?}");
        let relu = variants.iter().find(|v| v.name == "activation=relu, clip=null").unwrap();
        assert_eq!(relu.spec["training"]["clip"], Value::Null);
        assert_eq!(relu.settings, vec![json!("relu"), Value::Null]);
    }

    #[test]
    fn a_grid_cell_identical_to_the_base_is_the_baseline_and_comes_first() {
        let p = plan(json!({"base": base(), "vary": {"/model/layers/0/activation": ["relu", "tanh"]}}));
        let (_, variants) = p.variants(None, &ExperimentLimits::default()).unwrap();
        let names: Vec<(&str, bool)> = variants.iter().map(|v| (v.name.as_str(), v.baseline)).collect();
        assert_eq!(names, [("activation=tanh", true), ("activation=relu", false)]);
        assert_eq!(p.heatmap, None, "one axis: no heatmap");
    }

    #[test]
    fn a_seed_count_starts_at_the_base_spec_seed_and_a_list_is_kept_as_given() {
        let p = plan(json!({"base": base(), "vary": {"/model/layers/0/units": [2, 3]}, "seeds": 3}));
        assert_eq!(p.seeds(&base(), &ExperimentLimits::default()).unwrap(), [5, 6, 7]);
        let p = plan(json!({"base": base(), "vary": {"/model/layers/0/units": [2, 3]}, "seeds": [9, 1]}));
        assert_eq!(p.seeds(&base(), &ExperimentLimits::default()).unwrap(), [9, 1]);
        let p = plan(json!({"base": base(), "vary": {"/model/layers/0/units": [2, 3]}}));
        assert_eq!(p.seeds(&base(), &ExperimentLimits::default()).unwrap().len() as u64, DEFAULT_SEEDS);
        // A huge count is refused before it is expanded.
        let p = plan(json!({"base": base(), "vary": {"/model/layers/0/units": [2, 3]}, "seeds": u64::MAX}));
        let err = p.seeds(&base(), &ExperimentLimits::default()).unwrap_err();
        assert_eq!(err.pointers(), ["/seeds"]);
        assert!(err.0[0].detail.contains("18446744073709551615 seeds"), "{err}");
    }

    #[test]
    fn every_run_gets_its_seed_and_the_total_compute_is_the_sum_of_the_runs() {
        let p = plan(json!({"base": base(), "vary": {"/model/layers/0/units": [4, 8]}, "seeds": [1, 2]}));
        let (_, variants) = p.variants(None, &ExperimentLimits::default()).unwrap();
        let admitted = admit(variants, &[1, 2], &Limits::default(), &ExperimentLimits::default()).unwrap();
        let seeds: Vec<Option<u64>> = admitted.iter().flat_map(|v| v.runs.iter().map(|r| r.spec.seed)).collect();
        assert_eq!(seeds, [Some(1), Some(2), Some(1), Some(2)]);
        // 4 units: 2*4+4 + 4*2+2 = 22 parameters; 8 units: 24+18 = 42; x 10 steps x 8 per batch.
        let compute: Vec<u128> = admitted.iter().map(|v| v.runs[0].compute).collect();
        assert_eq!(compute, [22 * 80, 42 * 80]);
        let tight = ExperimentLimits { max_compute: 2 * 22 * 80 + 42 * 80, ..ExperimentLimits::default() };
        let (_, variants) = p.variants(None, &tight).unwrap();
        let err = admit(variants, &[1, 2], &Limits::default(), &tight).unwrap_err();
        assert!(err.0[0].detail.contains("10,240") && err.0[0].detail.contains("4 runs"), "{err}");
    }

    #[test]
    fn problems_are_all_reported_with_pointers_into_the_request() {
        let err = parse_experiment(&json!({
            "base": base(),
            "vary": {"model/x": [1], "/model/layers/7/units": [], "/model/layers/0/units": [2, 2]},
            "variants": [],
            "seeds": [1, 1],
            "loss_threshold": -1,
            "colour": "blue"
        }))
        .unwrap_err();
        let pointers = err.pointers();
        for expected in [
            "/colour",
            "/variants",
            "/vary/model~1x",
            "/vary/~1model~1layers~17~1units",
            "/vary/~1model~1layers~10~1units",
            "/seeds/1",
            "/loss_threshold",
        ] {
            assert!(pointers.contains(&expected), "{expected} missing from {pointers:?}");
        }
    }

    #[test]
    fn a_base_preset_is_expanded_and_its_problems_are_under_base() {
        let p = plan(json!({"base": {"preset": "relu-he-30"}, "variants": [{"name": "x", "patch": []}]}));
        assert_eq!(p.base.as_ref().unwrap()["model"]["input_dim"], 16);
        let err = parse_experiment(&json!({"base": {"preset": "nope"}, "variants": [{"name": "x", "patch": []}]}))
            .unwrap_err();
        assert_eq!(err.pointers(), ["/base/preset"]);
        let err =
            parse_experiment(&json!({"base": {"model": 3}, "variants": [{"name": "x", "patch": []}]})).unwrap_err();
        assert!(err.pointers().iter().all(|p| p.starts_with("/base")), "{err}");
    }

    #[test]
    fn every_experiment_preset_parses_plans_and_admits() {
        for preset in experiment_presets() {
            assert!(!preset.title.is_empty() && !preset.description.is_empty(), "{}", preset.name);
            let p =
                parse_experiment(&json!({"preset": preset.name})).unwrap_or_else(|e| panic!("{}: {e}", preset.name));
            let (base, variants) = p.variants(None, &ExperimentLimits::default()).unwrap();
            admit(
                variants,
                &p.seeds(&base, &ExperimentLimits::default()).unwrap(),
                &Limits::default(),
                &ExperimentLimits::default(),
            )
            .unwrap_or_else(|e| panic!("{}: {e}", preset.name));
        }
    }
}
