//! SVG plots of a report, drawn with `plotters` (SVG backend only, no font library: the SVG
//! holds `<text>` elements the viewer renders, and plotters estimates their extents itself).
//!
//! The plots (names as in `/v1/jobs/{id}/plots/{name}.svg`, [`PlotName`]):
//!
//! | name | what |
//! |---|---|
//! | `grad_flow` | heatmap: weight layer x probe step, colour = log10 `grad_norm`, with a colour bar |
//! | `grad_norms` | per-layer bars of `grad_norm`, first vs last probe, log scale |
//! | `loss` | training (and validation) loss vs step, with the loss of the best constant prediction as a baseline; accuracy in a second panel when classified |
//! | `timesteps` | recurrent networks: ‖dL/dh_t‖ vs t, log scale, one line per chosen probe step |
//! | `theory` | predicted vs measured ln(delta_norm_l / delta_norm_L) per hidden layer, from `theory.profile` |
//!
//! The plots read the report's JSON (the names `openapi/openapi.json` documents), so the same code draws a [`Report`]
//! just built and one a job store kept as bytes. `null` (a NaN/Inf measurement) and, on log
//! scales, values that are not positive are skipped — never drawn at a made-up coordinate — and
//! a plot with nothing left to draw says so in its area. Every plot has a title and axis labels.
//!
//! Degenerate reports still get readable axes: with a single probe step (an analysis, a run of
//! one step) the step axis spans one step either side of it with whole-step ticks, one layer or
//! one time step is one labelled category, and no tick is ever labelled `-0`. Axes of whole
//! numbers (steps, time steps) are labelled at whole numbers only.

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use super::Report;

/// A plot, by the name in its file name (`grad_flow` for `grad_flow.svg`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::Display,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum PlotName {
    /// Heatmap: weight layer x probe step, colour = log10 grad_norm, with a colour bar.
    GradFlow,
    /// Per-layer bars of grad_norm, first vs last probe, log scale.
    GradNorms,
    /// Training (and validation) loss and accuracy vs step.
    Loss,
    /// Recurrent networks: ||dL/dh_t|| vs t, log scale, at several probe steps.
    Timesteps,
    /// Predicted vs measured ln(delta_norm_l / delta_norm_L) per hidden layer (MLP stacks).
    Theory,
}

impl PlotName {
    /// Every plot, in the order the HTML report shows them: the one list of plots.
    pub const ALL: [PlotName; 5] =
        [PlotName::GradFlow, PlotName::GradNorms, PlotName::Loss, PlotName::Timesteps, PlotName::Theory];

    /// The name (`grad_flow`).
    pub fn name(self) -> &'static str {
        self.into()
    }

    /// The plot called `name`, if any.
    pub fn from_name(name: &str) -> Option<PlotName> {
        name.parse().ok()
    }
}

/// Why a plot was not drawn.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum PlotError {
    /// No plot has this name.
    #[error("unknown plot `{0}`; the plots are grad_flow, grad_norms, loss, timesteps and theory")]
    UnknownPlot(String),
    /// The plot exists but the report has nothing it shows (timesteps of an MLP, ...).
    #[error("plot `{plot}` does not apply to this report: {reason}")]
    NotApplicable {
        /// The plot.
        plot: PlotName,
        /// Why not, in words.
        reason: String,
    },
    /// plotters failed (not expected: the SVG backend writes to a string).
    #[error("drawing failed: {0}")]
    Drawing(String),
}

/// Draws `plot` of `report` as an SVG document.
pub fn render(report: &Report, plot: PlotName) -> Result<String, PlotError> {
    render_json(&report_json(report)?, plot)
}

/// The plots that apply to `report`, in [`PlotName::ALL`] order.
pub fn available(report: &Report) -> Vec<PlotName> {
    report_json(report).map(|v| available_json(&v)).unwrap_or_default()
}

/// The plot called `name` ([`PlotError::UnknownPlot`] otherwise).
pub fn plot_named(name: &str) -> Result<PlotName, PlotError> {
    PlotName::from_name(name).ok_or_else(|| PlotError::UnknownPlot(name.to_owned()))
}

/// [`render`] on the report's JSON.
pub fn render_json(report: &Value, plot: PlotName) -> Result<String, PlotError> {
    applies(report, plot)?;
    match plot {
        PlotName::GradFlow => grad_flow(report),
        PlotName::GradNorms => grad_norms(report),
        PlotName::Loss => loss(report),
        PlotName::Timesteps => timesteps(report),
        PlotName::Theory => theory(report),
    }
}

/// [`available`] on the report's JSON.
pub fn available_json(report: &Value) -> Vec<PlotName> {
    PlotName::ALL.into_iter().filter(|p| applies(report, *p).is_ok()).collect()
}

fn report_json(report: &Report) -> Result<Value, PlotError> {
    serde_json::to_value(report).map_err(|e| PlotError::Drawing(format!("the report did not serialise: {e}")))
}

/// Whether `plot` has something to show in `report`.
fn applies(report: &Value, plot: PlotName) -> Result<(), PlotError> {
    use PlotName::*;
    let na = |reason: &str| Err(PlotError::NotApplicable { plot, reason: reason.to_owned() });
    match plot {
        GradFlow | GradNorms if weight_layers(report).is_empty() => na("no layer has a weight gradient (`grad_norm`)"),
        GradFlow | GradNorms | Loss if steps(report).is_empty() => na("the report has no probe steps"),
        Timesteps if timestep_rows(report).is_empty() => {
            na("`timesteps` is measured for recurrent networks only, and this report has none")
        }
        Theory if theory_profile(report).is_none() => {
            na("the report's theory has no per-layer profile (`theory.profile`); it is predicted for MLP stacks at \
             initialisation")
        }
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// Reading the report's JSON

/// A series of numbers and nulls; anything that is not a finite number becomes `None`.
fn series(v: &Value) -> Vec<Option<f64>> {
    v.as_array().map(|a| a.iter().map(|x| x.as_f64().filter(|f| f.is_finite())).collect()).unwrap_or_default()
}

fn steps(report: &Value) -> Vec<f64> {
    series(&report["steps"]).into_iter().flatten().collect()
}

fn step_label(v: f64) -> String {
    format!("{}", v.round() as i64)
}

/// `(layer name, grad_norm series)` of every layer that has a weight gradient.
fn weight_layers(report: &Value) -> Vec<(String, Vec<Option<f64>>)> {
    report["layer_stats"]
        .as_array()
        .map(|layers| {
            layers
                .iter()
                .filter(|l| l["grad_norm"].is_array())
                .map(|l| (l["layer"].as_str().unwrap_or("?").to_owned(), series(&l["grad_norm"])))
                .collect()
        })
        .unwrap_or_default()
}

/// `(probe step, ‖dL/dh_t‖ for t = 1..T)` rows of `timesteps`, and the layer measured.
fn timestep_rows(report: &Value) -> Vec<(f64, Vec<Option<f64>>)> {
    let ts = &report["timesteps"];
    let steps = series(&ts["steps"]);
    ts["grad_norm"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .enumerate()
                .map(|(i, r)| (steps.get(i).copied().flatten().unwrap_or(i as f64), series(r)))
                .filter(|(_, r)| !r.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// The per-layer decay profile the theory predicts at init, and the one measured at step 0.
struct Profile {
    layers: Vec<String>,
    predicted: Vec<Option<f64>>,
    measured: Vec<Option<f64>>,
}

fn theory_profile(report: &Value) -> Option<Profile> {
    let p = report.get("theory")?.get("profile")?;
    let predicted = series(p.get("predicted_log_delta_ratio")?);
    if predicted.is_empty() {
        return None;
    }
    let measured = p.get("measured_log_delta_ratio").map(series).unwrap_or_default();
    let mut layers: Vec<String> = p
        .get("layers")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|l| l.as_str().unwrap_or("?").to_owned()).collect())
        .unwrap_or_default();
    let n = predicted.len().max(measured.len());
    for i in layers.len()..n {
        layers.push(format!("{i}"));
    }
    Some(Profile { layers, predicted, measured })
}

// ---------------------------------------------------------------------------------------------
// Drawing helpers

pub(crate) type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
pub(crate) type Drawn = Result<(), String>;
pub(crate) type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

pub(crate) const FONT: &str = "sans-serif";
pub(crate) const SIZE: (u32, u32) = (900, 520);
pub(crate) const TITLE_PX: u32 = 22;
/// Ticks a linear y axis asks for (plotters' default is 11); its labels' decimals follow from it.
pub(crate) const Y_TICKS: usize = 10;
pub(crate) const MISSING: RGBColor = RGBColor(215, 215, 215);
/// Distinct series colours (Okabe-Ito, readable by colour-blind viewers).
pub(crate) const PALETTE: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(213, 94, 0),
    RGBColor(120, 120, 120),
];

/// A chart on `area` with the plots' common frame: 10 px margins (`bottom` below), room for the
/// x labels and `y_label` px for the y labels.
pub(crate) fn framed<'a, 'b>(
    area: &'a Area<'b>,
    bottom: u32,
    y_label: u32,
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
) -> Result<Chart<'a, 'b>, String> {
    ChartBuilder::on(area)
        .margin(10)
        .margin_bottom(bottom)
        .x_label_area_size(45)
        .y_label_area_size(y_label)
        .build_cartesian_2d(x, y)
        .map_err(fail)
}

/// The mesh of a chart over training steps (x labels at whole steps only) in the plots' fonts.
pub(crate) fn step_mesh(chart: &mut Chart<'_, '_>, y_desc: &str) -> Drawn {
    let x_labels = whole_labels(&chart.x_range());
    let y_range = chart.y_range();
    chart
        .configure_mesh()
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .x_desc("training step")
        .y_desc(y_desc)
        .x_labels(x_labels)
        .x_label_formatter(&|x| whole_label(*x, 0.0))
        .y_labels(Y_TICKS)
        .y_label_formatter(&|y| linear_label(*y, &y_range, Y_TICKS))
        .draw()
        .map_err(fail)
}

/// The x range of a chart over training steps: the steps' span or, with fewer than two distinct
/// steps, one step either side of the lone one (of 0 when there is none). A unit-wide range
/// around one step would be cut into tenths, each labelled `-0`, `0` or the step.
pub(crate) fn step_range(steps: impl IntoIterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = steps
        .into_iter()
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() {
        return (-1.0, 1.0);
    }
    if hi - lo < 0.5 {
        return (lo - 1.0, lo + 1.0);
    }
    (lo, hi)
}

/// The label of a tick on an axis of whole numbers (training steps, time steps): the number at
/// a whole tick from `min` on, nothing between whole numbers or below `min`; never `-0`.
pub(crate) fn whole_label(x: f64, min: f64) -> String {
    let r = x.round();
    if !x.is_finite() || (x - r).abs() > 1e-6 * r.abs().max(1.0) || r < min {
        return String::new();
    }
    format!("{}", r as i64)
}

/// How many ticks an axis of whole numbers over `range` asks for: one per whole number, at most
/// 10 (plotters then picks round steps: 1, 2, 5, 10, ...).
pub(crate) fn whole_labels(range: &std::ops::Range<f64>) -> usize {
    let span = range.end - range.start;
    if span.is_finite() {
        (span.floor().max(0.0) as usize).saturating_add(1).clamp(2, 10)
    } else {
        2
    }
}

/// `v` with `decimals` decimals, without the sign of a zero (`-0.00` for a tick a rounding error
/// below 0 is `0.00`).
pub(crate) fn fixed(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    match s.strip_prefix('-') {
        Some(unsigned) if unsigned.chars().all(|c| c == '0' || c == '.') => unsigned.to_owned(),
        _ => s,
    }
}

/// `v` to four significant figures, for values written into a legend (`1.099`, `0.02513`).
pub(crate) fn sig4(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let magnitude = v.abs().log10().floor();
    if !(-4.0..6.0).contains(&magnitude) {
        return format!("{v:.3e}");
    }
    fixed(v, (3.0 - magnitude).max(0.0) as usize)
}

pub(crate) fn fail<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// Runs `draw` on a fresh white SVG canvas and returns the document.
pub(crate) fn svg(size: (u32, u32), draw: impl FnOnce(&Area<'_>) -> Drawn) -> Result<String, PlotError> {
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| PlotError::Drawing(e.to_string()))?;
        draw(&root).map_err(PlotError::Drawing)?;
        root.present().map_err(|e| PlotError::Drawing(e.to_string()))?;
    }
    Ok(buf)
}

/// `[lo, hi]` around `values` (finite ones), padded by `pad` of the span. Values that differ
/// by less than 1% of their magnitude (one value; a loss at its chance level) get 5% of the
/// magnitude either side of their middle instead of an axis magnifying rounding noise; values
/// all about 0, a unit-wide range; none, `[0, 1]`.
pub(crate) fn bounds(values: impl IntoIterator<Item = f64>, pad: f64) -> (f64, f64) {
    let (lo, hi) = values
        .into_iter()
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let magnitude = lo.abs().max(hi.abs());
    if hi - lo < 0.01 * magnitude || hi - lo < 1e-12 {
        let (mid, half) = ((lo + hi) / 2.0, 0.05 * magnitude);
        return if half > 1e-12 { (mid - half, mid + half) } else { (mid - 0.5, mid + 0.5) };
    }
    let p = (hi - lo) * pad;
    (lo - p, hi + p)
}

/// The label of a tick at `v` on a linear axis over `range` with at most `ticks` ticks: the
/// decimals their spacing needs (plotters spaces ticks 1, 2 or 5 times a power of ten apart, the
/// finest that keeps to `ticks`), in scientific notation for magnitudes below 1e-3 or from 1e6;
/// never `-0`.
pub(crate) fn linear_label(v: f64, range: &std::ops::Range<f64>, ticks: usize) -> String {
    let span = (range.end - range.start).abs();
    let magnitude = range.start.abs().max(range.end.abs());
    if !v.is_finite() || !span.is_finite() || span <= 0.0 {
        return fixed(v, 2);
    }
    // The finest spacing plotters may choose, rounded up to 1, 2 or 5 times a power of ten.
    let finest = span / ticks.max(1) as f64;
    let power = 10f64.powf(finest.log10().floor());
    let nice = [1.0, 2.0, 5.0, 10.0].into_iter().find(|m| finest <= m * power * (1.0 + 1e-9)).unwrap_or(10.0);
    let step = (nice * power).log10().floor();
    if !(1e-3..1e6).contains(&magnitude) {
        // A tick a rounding error off 0 is 0, not `-1.0e-22`.
        let unit = 10f64.powf(step);
        if (v / unit).round() == 0.0 {
            return "0".into();
        }
        let digits = (magnitude.log10().floor() - step).clamp(0.0, 12.0) as usize;
        return format!("{v:.digits$e}");
    }
    fixed(v, (-step).clamp(0.0, 12.0) as usize)
}

/// Bounds on a log10 axis, widened to whole decades.
pub(crate) fn decades(values: impl IntoIterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = bounds(values, 0.0);
    let (lo, hi) = (lo.floor(), hi.ceil());
    if hi - lo < 1.0 {
        (lo, lo + 1.0)
    } else {
        (lo, hi)
    }
}

/// log10 of a positive finite value.
pub(crate) fn log10(v: Option<f64>) -> Option<f64> {
    v.filter(|x| x.is_finite() && *x > 0.0).map(f64::log10).filter(|x| x.is_finite())
}

/// The label of a tick on a log10 axis: `1e-3` on whole decades, `3.2e-3` between them.
pub(crate) fn pow10_label(y: f64) -> String {
    if (y - y.round()).abs() < 1e-6 {
        format!("1e{}", y.round() as i64)
    } else {
        format!("{:.1e}", 10f64.powf(y))
    }
}

/// The label of the category at a tick of an index axis (empty between categories).
pub(crate) fn index_label(x: f64, labels: &[String]) -> String {
    let r = x.round();
    if (x - r).abs() > 1e-6 || r < 0.0 {
        return String::new();
    }
    labels.get(r as usize).cloned().unwrap_or_default()
}

/// Whether the category at tick `x` gets a label when `m` categories share the axis and at most
/// about `max` labels fit without overlapping.
pub(crate) fn every_kth(x: f64, m: usize, max: usize) -> bool {
    let k = m.div_ceil(max.max(1)).max(1);
    let r = x.round();
    r >= 0.0 && (r as usize).is_multiple_of(k)
}

/// Contiguous runs of finite points (a `null` breaks the line).
pub(crate) fn runs(xs: &[f64], ys: &[Option<f64>]) -> Vec<Vec<(f64, f64)>> {
    let mut out = vec![Vec::new()];
    for (x, y) in xs.iter().zip(ys) {
        match y {
            Some(y) if y.is_finite() && x.is_finite() => {
                if let Some(run) = out.last_mut() {
                    run.push((*x, *y));
                }
            }
            _ => {
                if out.last().is_some_and(|r| !r.is_empty()) {
                    out.push(Vec::new());
                }
            }
        }
    }
    out.retain(|r| !r.is_empty());
    out
}

/// Writes `msg` in the middle of a chart's plotting area (unit coordinates 0..1 assumed by
/// the caller's ranges being mapped through `at`).
pub(crate) fn note<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, msg: &str) -> Drawn {
    let (w, h) = area.dim_in_pixel();
    let style =
        TextStyle::from((FONT, 16).into_font()).color(&RGBColor(90, 90, 90)).pos(Pos::new(HPos::Center, VPos::Center));
    area.draw_text(msg, &style, (w as i32 / 2, h as i32 / 2)).map_err(fail)
}

/// A small line of text at the bottom left of the canvas.
pub(crate) fn footnote(root: &Area<'_>, msg: &str) -> Drawn {
    let (_, h) = root.dim_in_pixel();
    let style = TextStyle::from((FONT, 13).into_font()).color(&RGBColor(90, 90, 90));
    root.draw_text(msg, &style, (12, h as i32 - 18)).map_err(fail)
}

/// A colour on a viridis-like sequential scale, `t` in [0, 1].
pub(crate) fn viridis(t: f64) -> RGBColor {
    const STOPS: [(u8, u8, u8); 5] = [(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)];
    let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.0 };
    let x = t * (STOPS.len() - 1) as f64;
    let i = (x.floor() as usize).min(STOPS.len() - 2);
    let f = x - i as f64;
    let mix = |a: u8, b: u8| (a as f64 + (b as f64 - a as f64) * f).round().clamp(0.0, 255.0) as u8;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

// ---------------------------------------------------------------------------------------------
// The plots

/// Title of each plot (also what the tests look for).
pub fn title(plot: PlotName) -> &'static str {
    match plot {
        PlotName::GradFlow => "Gradient flow: log10 grad_norm by layer and step",
        PlotName::GradNorms => "Gradient norm per layer: first vs last probe",
        PlotName::Loss => "Training curves",
        PlotName::Timesteps => "Gradient through time: ||dL/dh_t|| vs t",
        PlotName::Theory => "Theory at init: predicted vs measured gradient decay",
    }
}

fn grad_flow(report: &Value) -> Result<String, PlotError> {
    let steps = steps(report);
    let layers = weight_layers(report);
    let (n, m) = (steps.len(), layers.len());
    let logs: Vec<Vec<Option<f64>>> =
        layers.iter().map(|(_, s)| (0..n).map(|i| log10(s.get(i).copied().flatten())).collect()).collect();
    let finite: Vec<f64> = logs.iter().flatten().flatten().copied().collect();
    let missing = n * m - finite.len();
    let (lo, hi) = bounds(finite.iter().copied(), 0.0);
    let step_labels: Vec<String> = steps.iter().map(|s| step_label(*s)).collect();
    let names: Vec<String> = layers.iter().map(|(name, _)| name.clone()).collect();
    svg(SIZE, |root| {
        let body = root.titled(title(PlotName::GradFlow), (FONT, TITLE_PX)).map_err(fail)?;
        let (main, bar) = body.split_horizontally(SIZE.0 - 115);
        let mut chart = framed(&main, 28, 95, -0.5..(n as f64 - 0.5), -0.5..(m as f64 - 0.5))?;
        chart
            .configure_mesh()
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .disable_mesh()
            .x_desc("training step")
            .y_desc("layer (input side at the bottom)")
            .x_labels(n.clamp(1, 12))
            .y_labels(m.clamp(1, 30))
            .x_label_formatter(&|x| index_label(*x, &step_labels))
            .y_label_formatter(&|y| if every_kth(*y, m, 25) { index_label(*y, &names) } else { String::new() })
            .draw()
            .map_err(fail)?;
        let span = hi - lo;
        chart
            .draw_series(logs.iter().enumerate().flat_map(|(j, row)| {
                row.iter().enumerate().map(move |(i, v)| {
                    let colour = v.map_or(MISSING, |v| viridis((v - lo) / span));
                    let (x, y) = (i as f64, j as f64);
                    Rectangle::new([(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)], colour.filled())
                })
            }))
            .map_err(fail)?;
        if finite.is_empty() {
            note(
                &chart.plotting_area().strip_coord_spec(),
                "no finite grad_norm values to show (every probe was null)",
            )?;
        }
        if missing > 0 {
            footnote(
                root,
                &format!("grey: {missing} cell(s) with no finite positive grad_norm (null, NaN/Inf, or 0)"),
            )?;
        }
        // The colour bar.
        let mut cb = framed(&bar, 28, 62, 0.0..1.0, lo..hi)?;
        cb.configure_mesh()
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .disable_mesh()
            .disable_x_axis()
            .y_desc("log10 grad_norm")
            .y_labels(6)
            .y_label_formatter(&|y| linear_label(*y, &(lo..hi), 6))
            .draw()
            .map_err(fail)?;
        let k = 64;
        cb.draw_series((0..k).map(|i| {
            let (a, b) = (i as f64 / k as f64, (i + 1) as f64 / k as f64);
            Rectangle::new([(0.0, lo + span * a), (1.0, lo + span * b)], viridis((a + b) / 2.0).filled())
        }))
        .map_err(fail)?;
        Ok(())
    })
}

fn grad_norms(report: &Value) -> Result<String, PlotError> {
    let steps = steps(report);
    let layers = weight_layers(report);
    let m = layers.len();
    let last_idx = steps.len().saturating_sub(1);
    let first: Vec<Option<f64>> = layers.iter().map(|(_, s)| log10(s.first().copied().flatten())).collect();
    let last: Vec<Option<f64>> = if last_idx > 0 {
        layers.iter().map(|(_, s)| log10(s.get(last_idx).copied().flatten())).collect()
    } else {
        Vec::new()
    };
    let all: Vec<f64> = first.iter().chain(&last).flatten().copied().collect();
    let (lo, hi) = decades(all.iter().copied());
    let names: Vec<String> = layers.iter().map(|(name, _)| name.clone()).collect();
    let label = |i: usize| format!("step {}", steps.get(i).map_or_else(|| "?".to_owned(), |s| step_label(*s)));
    svg(SIZE, |root| {
        let body = root.titled(title(PlotName::GradNorms), (FONT, TITLE_PX)).map_err(fail)?;
        let mut chart = framed(&body, 28, 75, -0.5..(m as f64 - 0.5), lo..hi)?;
        chart
            .configure_mesh()
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .disable_x_mesh()
            .x_desc("layer")
            .y_desc("grad_norm (log scale)")
            .x_labels(m.clamp(1, 30))
            .x_label_formatter(&|x| if every_kth(*x, m, 11) { index_label(*x, &names) } else { String::new() })
            .y_label_formatter(&|y| pow10_label(*y))
            .draw()
            .map_err(fail)?;
        let two = !last.is_empty();
        let bars = |values: &[Option<f64>], offset: (f64, f64), colour: RGBColor| {
            values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| v.map(|v| (i as f64, v)))
                .map(move |(x, v)| Rectangle::new([(x + offset.0, lo), (x + offset.1, v)], colour.filled()))
                .collect::<Vec<_>>()
        };
        let (c0, c1) = (PALETTE[0], PALETTE[1]);
        let first_offset = if two { (-0.4, 0.0) } else { (-0.35, 0.35) };
        chart
            .draw_series(bars(&first, first_offset, c0))
            .map_err(fail)?
            .label(label(0))
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c0.filled()));
        if two {
            chart
                .draw_series(bars(&last, (0.0, 0.4), c1))
                .map_err(fail)?
                .label(label(last_idx))
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c1.filled()));
        }
        // The legend goes where the bars are low: left for vanishing, right for exploding.
        let half = |range: std::ops::Range<usize>| {
            let v: Vec<f64> = range.filter_map(|i| first.get(i).copied().flatten()).collect();
            if v.is_empty() {
                lo
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            }
        };
        let position = if half(0..m / 2) < half(m / 2..m) {
            SeriesLabelPosition::UpperLeft
        } else {
            SeriesLabelPosition::UpperRight
        };
        chart
            .configure_series_labels()
            .position(position)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(fail)?;
        if all.is_empty() {
            note(&chart.plotting_area().strip_coord_spec(), "no finite positive grad_norm values to show")?;
        }
        let skipped = first.iter().chain(&last).filter(|v| v.is_none()).count();
        if skipped > 0 {
            footnote(root, &format!("{skipped} bar(s) left out: grad_norm null (NaN/Inf) or 0"))?;
        }
        Ok(())
    })
}

/// One labelled line (with markers when the series is short) on a chart over f64 ranges.
pub(crate) fn draw_line(
    chart: &mut Chart<'_, '_>,
    xs: &[f64],
    ys: &[Option<f64>],
    name: &str,
    colour: RGBColor,
) -> Drawn {
    let lines = runs(xs, ys);
    let points: Vec<(f64, f64)> = lines.iter().flatten().copied().collect();
    let style = colour.stroke_width(2);
    let anno = chart.draw_series(lines.into_iter().map(|run| PathElement::new(run, style))).map_err(fail)?;
    let label = if points.is_empty() { format!("{name} (no finite value)") } else { name.to_owned() };
    anno.label(label).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
    if points.len() <= 40 {
        chart.draw_series(points.into_iter().map(|p| Circle::new(p, 3, colour.filled()))).map_err(fail)?;
    }
    Ok(())
}

pub(crate) fn legend<'a, 'b: 'a>(chart: &mut Chart<'a, 'b>, position: SeriesLabelPosition) -> Drawn {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(fail)
}

/// The loss of the best constant prediction (`summary.baseline_loss`: what a network that
/// ignores its inputs reaches) and its legend entry.
fn baseline(report: &Value) -> Option<(f64, String)> {
    let b = report["summary"]["baseline_loss"].as_f64().filter(|v| v.is_finite())?;
    let what = match report["spec"]["training"]["loss"].as_str() {
        Some("cross_entropy") => "predict the class frequencies",
        Some("mse") => "predict the target mean",
        _ => "the best constant prediction",
    };
    Some((b, format!("chance level {}: {what}", sig4(b))))
}

fn loss(report: &Value) -> Result<String, PlotError> {
    let xs = steps(report);
    let (x0, x1) = step_range(xs.iter().copied());
    let train = series(&report["loss"]);
    let val = report.get("val_loss").map(series);
    let acc = report.get("accuracy").map(series);
    let val_acc = report.get("val_accuracy").map(series);
    let chance = baseline(report);
    let losses: Vec<f64> = train.iter().chain(val.iter().flatten()).flatten().copied().collect();
    // One probe is a point, not a curve: against an axis from 0 its distance to chance level
    // reads as it is, not magnified to the height of the plot.
    let lone = xs.first().is_none_or(|first| xs.iter().all(|x| (x - first).abs() < 0.5));
    let origin = if lone { Some(0.0) } else { None };
    let shown = losses.iter().copied().chain(chance.iter().map(|(b, _)| *b)).chain(origin);
    let (y0, y1) = bounds(shown.clone(), 0.05);
    let y0 = if y0 < 0.0 && shown.clone().all(|v| v >= 0.0) { 0.0 } else { y0 };
    let height = if acc.is_some() { SIZE.1 + 220 } else { SIZE.1 };
    svg((SIZE.0, height), |root| {
        let body = root.titled(title(PlotName::Loss), (FONT, TITLE_PX)).map_err(fail)?;
        let (top, bottom) = if acc.is_some() {
            let (t, b) = body.split_vertically(SIZE.1 - 60);
            (t, Some(b))
        } else {
            (body, None)
        };
        let mut chart = framed(&top, 10, 75, x0..x1, y0..y1)?;
        step_mesh(&mut chart, "loss")?;
        draw_line(&mut chart, &xs, &train, "training loss (batch)", PALETTE[0])?;
        if let Some(val) = &val {
            draw_line(&mut chart, &xs, val, "validation loss", PALETTE[1])?;
        }
        if let Some((b, label)) = &chance {
            let grey = PALETTE[6];
            chart
                .draw_series(DashedLineSeries::new([(x0, *b), (x1, *b)], 8, 5, grey.stroke_width(2)))
                .map_err(fail)?
                .label(label.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], grey.stroke_width(2)));
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        if losses.is_empty() {
            note(&chart.plotting_area().strip_coord_spec(), "no finite loss values to show (every probe was null)")?;
        }
        if let (Some(bottom), Some(acc)) = (bottom, &acc) {
            let mut chart = framed(&bottom, 20, 75, x0..x1, 0.0..1.0)?;
            step_mesh(&mut chart, "accuracy")?;
            draw_line(&mut chart, &xs, acc, "training accuracy (batch)", PALETTE[2])?;
            if let Some(val_acc) = &val_acc {
                draw_line(&mut chart, &xs, val_acc, "validation accuracy", PALETTE[3])?;
            }
            legend(&mut chart, SeriesLabelPosition::LowerRight)?;
        }
        Ok(())
    })
}

/// At most `k` evenly spaced indices of `0..n`, the first and the last always among them.
fn pick(n: usize, k: usize) -> Vec<usize> {
    if n <= k || k < 2 {
        return (0..n).collect();
    }
    let mut out: Vec<usize> = (0..k).map(|i| ((i * (n - 1)) as f64 / (k - 1) as f64).round() as usize).collect();
    out.dedup();
    out
}

fn timesteps(report: &Value) -> Result<String, PlotError> {
    let rows = timestep_rows(report);
    let layer = report["timesteps"]["layer"].as_str().unwrap_or("the recurrent layer").to_owned();
    let t_max = rows.iter().map(|(_, r)| r.len()).max().unwrap_or(1);
    let chosen = pick(rows.len(), 6);
    let logs: Vec<(f64, Vec<Option<f64>>)> =
        chosen.iter().map(|&i| (rows[i].0, rows[i].1.iter().map(|v| log10(*v)).collect())).collect();
    let all: Vec<f64> = logs.iter().flat_map(|(_, r)| r.iter().flatten().copied()).collect();
    let (lo, hi) = decades(all.iter().copied());
    // One time step: one step either side of it, labelled at t = 1 only.
    let (x0, x1) = if t_max > 1 { (1.0, t_max as f64) } else { (0.0, 2.0) };
    let xs: Vec<f64> = (1..=t_max).map(|t| t as f64).collect();
    svg(SIZE, |root| {
        let body = root.titled(&format!("{} ({layer})", title(PlotName::Timesteps)), (FONT, TITLE_PX)).map_err(fail)?;
        let mut chart = framed(&body, 28, 75, x0..x1, lo..hi)?;
        chart
            .configure_mesh()
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .x_desc("time step t (the loss reads h_T)")
            .y_desc("||dL/dh_t|| (log scale)")
            .x_labels(whole_labels(&(x0..x1)))
            .x_label_formatter(&|x| if *x <= t_max as f64 { whole_label(*x, 1.0) } else { String::new() })
            .y_label_formatter(&|y| pow10_label(*y))
            .draw()
            .map_err(fail)?;
        let k = logs.len().max(2) - 1;
        for (i, (step, row)) in logs.iter().enumerate() {
            // Early probes light, late ones dark, on the same sequential scale as the heatmap.
            let colour = viridis(0.85 - 0.85 * i as f64 / k as f64);
            draw_line(&mut chart, &xs, row, &format!("step {}", step_label(*step)), colour)?;
        }
        legend(&mut chart, SeriesLabelPosition::LowerRight)?;
        if all.is_empty() {
            note(&chart.plotting_area().strip_coord_spec(), "no finite positive ||dL/dh_t|| values to show")?;
        }
        let skipped = logs.iter().flat_map(|(_, r)| r).filter(|v| v.is_none()).count();
        if skipped > 0 {
            footnote(root, &format!("{skipped} point(s) left out: null (NaN/Inf) or 0"))?;
        }
        Ok(())
    })
}

fn theory(report: &Value) -> Result<String, PlotError> {
    let Some(p) = theory_profile(report) else {
        return Err(PlotError::NotApplicable { plot: PlotName::Theory, reason: "no theory profile".into() });
    };
    let n = p.layers.len();
    let xs: Vec<f64> = (0..n).map(|i| i as f64).collect();
    let all: Vec<f64> = p.predicted.iter().chain(&p.measured).flatten().copied().collect();
    let (lo, hi) = bounds(all.iter().copied(), 0.08);
    svg(SIZE, |root| {
        let body = root.titled(title(PlotName::Theory), (FONT, TITLE_PX)).map_err(fail)?;
        let mut chart = framed(&body, 28, 75, -0.5..(n as f64 - 0.5), lo..hi)?;
        chart
            .configure_mesh()
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .x_desc("hidden layer l")
            .y_desc("ln(delta_norm_l / delta_norm_L)")
            .x_labels(n.clamp(1, 20))
            .x_label_formatter(&|x| if every_kth(*x, n, 11) { index_label(*x, &p.layers) } else { String::new() })
            .y_labels(Y_TICKS)
            .y_label_formatter(&|y| linear_label(*y, &(lo..hi), Y_TICKS))
            .draw()
            .map_err(fail)?;
        draw_line(&mut chart, &xs, &p.predicted, "predicted at init (mean field)", PALETTE[0])?;
        draw_line(&mut chart, &xs, &p.measured, "measured at step 0", PALETTE[1])?;
        legend(&mut chart, SeriesLabelPosition::LowerRight)?;
        let skipped = p.measured.iter().filter(|v| v.is_none()).count() + n.saturating_sub(p.measured.len());
        if skipped > 0 {
            footnote(root, &format!("{skipped} layer(s) without a finite measured value"))?;
        }
        Ok(())
    })
}

#[cfg(test)]
pub(crate) mod tests;
