//! SVG plots of an experiment, drawn from its [`ExperimentResult`] alone (so a stored result
//! draws the same), with the frame, palette and helpers of the report's plots
//! (`analysis/plots.rs`).
//!
//! | name | what |
//! |---|---|
//! | `grad_norm_init` | per-layer weight `grad_norm` at step 0 (geometric mean over seeds), log scale, one line per variant |
//! | `loss` | mean training loss per variant over the probe steps, with the seeds' min-max band |
//! | `heatmap` | grids: mean final loss over two axes, one coloured cell per pair of values with its value written in it |
//!
//! `null` values (and, on log scales, values that are not positive) are skipped, never drawn
//! at a made-up coordinate; a plot with nothing to draw says so in its area.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use super::result::{ExperimentResult, Heatmap};
use crate::analysis::plots::{
    bounds, decades, draw_line, every_kth, fail, footnote, framed, index_label, legend, log10, note, pow10_label, runs,
    step_mesh, svg, viridis, PlotError, FONT, MISSING, PALETTE, SIZE, TITLE_PX,
};

/// A plot of an experiment, by the name in its file name (`loss` for `loss.svg`).
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
pub enum ExperimentPlot {
    /// Per-layer weight grad_norm at step 0 (geometric mean over seeds), one line per variant.
    GradNormInit,
    /// Mean training loss per variant over the probe steps, with the seeds' range.
    Loss,
    /// Grids: mean final loss over two axes.
    Heatmap,
}

impl ExperimentPlot {
    /// Every plot, in the order the HTML page shows them.
    pub const ALL: [ExperimentPlot; 3] = [ExperimentPlot::GradNormInit, ExperimentPlot::Loss, ExperimentPlot::Heatmap];

    /// The name (`grad_norm_init`).
    pub fn name(self) -> &'static str {
        self.into()
    }

    /// The plot called `name`, if any.
    pub fn from_name(name: &str) -> Option<ExperimentPlot> {
        name.parse().ok()
    }

    /// The plot's title.
    pub fn title(self) -> &'static str {
        match self {
            ExperimentPlot::GradNormInit => "Weight-gradient norm per layer at step 0 (geometric mean over seeds)",
            ExperimentPlot::Loss => "Training loss per variant (mean over seeds, band: min to max)",
            ExperimentPlot::Heatmap => "Mean final loss over two axes of the grid",
        }
    }
}

/// Why an experiment plot was not drawn.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ExperimentPlotError {
    /// No plot has this name.
    #[error("unknown plot `{0}`; the experiment plots are grad_norm_init, loss and heatmap")]
    UnknownPlot(String),
    /// The plot exists but the result has nothing it shows (a heatmap without two axes).
    #[error("plot `{plot}` does not apply to this experiment: {reason}")]
    NotApplicable {
        /// The plot.
        plot: ExperimentPlot,
        /// Why not, in words.
        reason: String,
    },
    /// plotters failed (not expected: the SVG backend writes to a string).
    #[error("drawing failed: {0}")]
    Drawing(String),
}

impl From<PlotError> for ExperimentPlotError {
    fn from(e: PlotError) -> Self {
        match e {
            PlotError::Drawing(m) => ExperimentPlotError::Drawing(m),
            other => ExperimentPlotError::Drawing(other.to_string()),
        }
    }
}

/// The plot called `name` ([`ExperimentPlotError::UnknownPlot`] otherwise).
pub fn plot_named(name: &str) -> Result<ExperimentPlot, ExperimentPlotError> {
    ExperimentPlot::from_name(name).ok_or_else(|| ExperimentPlotError::UnknownPlot(name.to_owned()))
}

/// The plots that apply to `result`, in [`ExperimentPlot::ALL`] order: the heatmap only when
/// the result has one.
pub fn available(result: &ExperimentResult) -> Vec<ExperimentPlot> {
    ExperimentPlot::ALL.into_iter().filter(|p| *p != ExperimentPlot::Heatmap || result.heatmap.is_some()).collect()
}

/// Draws `plot` of `result` as an SVG document.
pub fn render(result: &ExperimentResult, plot: ExperimentPlot) -> Result<String, ExperimentPlotError> {
    match plot {
        ExperimentPlot::GradNormInit => grad_norm_init(result),
        ExperimentPlot::Loss => loss(result),
        ExperimentPlot::Heatmap => match &result.heatmap {
            Some(h) => heatmap(h),
            None => Err(ExperimentPlotError::NotApplicable {
                plot,
                reason: "the experiment has no heatmap: it needs a grid with two axes chosen for it".to_owned(),
            }),
        },
    }
}

fn grad_norm_init(result: &ExperimentResult) -> Result<String, ExperimentPlotError> {
    let lines: Vec<(&str, Vec<Option<f64>>)> = result
        .variants
        .iter()
        .map(|v| (v.name.as_str(), v.grad_norm_init.geo_mean.iter().map(|g| log10(*g)).collect()))
        .collect();
    let names: Vec<String> =
        result.variants.iter().map(|v| &v.grad_norm_init.layers).max_by_key(|l| l.len()).cloned().unwrap_or_default();
    let m = names.len().max(1);
    let all: Vec<f64> = lines.iter().flat_map(|(_, l)| l.iter().flatten().copied()).collect();
    let (lo, hi) = decades(all.iter().copied());
    Ok(svg(SIZE, |root| {
        let body = root.titled(ExperimentPlot::GradNormInit.title(), (FONT, TITLE_PX)).map_err(fail)?;
        let mut chart = framed(&body, 28, 75, -0.5..(m as f64 - 0.5), lo..hi)?;
        chart
            .configure_mesh()
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .disable_x_mesh()
            .x_desc("weight layer (input side first)")
            .y_desc("grad_norm at step 0 (log scale)")
            .x_labels(m.clamp(1, 30))
            .x_label_formatter(&|x| if every_kth(*x, m, 11) { index_label(*x, &names) } else { String::new() })
            .y_label_formatter(&|y| pow10_label(*y))
            .draw()
            .map_err(fail)?;
        for (i, (name, ys)) in lines.iter().enumerate() {
            let xs: Vec<f64> = (0..ys.len()).map(|k| k as f64).collect();
            draw_line(&mut chart, &xs, ys, name, PALETTE[i % PALETTE.len()])?;
        }
        // The legend goes where the lines are low: left when the gradient vanishes towards the
        // input, right otherwise.
        let half = |left: bool| {
            let v: Vec<f64> = lines
                .iter()
                .flat_map(|(_, ys)| ys.iter().enumerate().filter(|(k, _)| (2 * k < m) == left).filter_map(|(_, y)| *y))
                .collect();
            if v.is_empty() {
                lo
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            }
        };
        let position =
            if half(true) < half(false) { SeriesLabelPosition::UpperLeft } else { SeriesLabelPosition::UpperRight };
        legend(&mut chart, position)?;
        if all.is_empty() {
            note(&chart.plotting_area().strip_coord_spec(), "no finite positive grad_norm at step 0 to show")?;
        }
        Ok(())
    })?)
}

/// A variant's loss curve as plotted: steps, mean, min, max (log10 of each on a log scale).
struct Curve<'a> {
    name: &'a str,
    xs: Vec<f64>,
    mean: Vec<Option<f64>>,
    min: Vec<Option<f64>>,
    max: Vec<Option<f64>>,
}

fn loss(result: &ExperimentResult) -> Result<String, ExperimentPlotError> {
    let values: Vec<f64> = result
        .variants
        .iter()
        .flat_map(|v| v.loss_curve.mean.iter().chain(&v.loss_curve.min).chain(&v.loss_curve.max))
        .flatten()
        .copied()
        .filter(|x| x.is_finite())
        .collect();
    // A log scale when the losses are positive and span more than two decades (a solved
    // variant next to a stuck one), linear otherwise.
    let (vmin, vmax) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    let log = vmin > 0.0 && vmax / vmin > 100.0;
    let map = |v: &Option<f64>| if log { log10(*v) } else { v.filter(|x| x.is_finite()) };
    let curves: Vec<Curve<'_>> = result
        .variants
        .iter()
        .map(|v| Curve {
            name: &v.name,
            xs: v.loss_curve.steps.iter().map(|&s| s as f64).collect(),
            mean: v.loss_curve.mean.iter().map(map).collect(),
            min: v.loss_curve.min.iter().map(map).collect(),
            max: v.loss_curve.max.iter().map(map).collect(),
        })
        .collect();
    let (x0, x1) = bounds(curves.iter().flat_map(|c| c.xs.iter().copied()), 0.0);
    let ys: Vec<f64> =
        curves.iter().flat_map(|c| c.min.iter().chain(&c.max).chain(&c.mean)).flatten().copied().collect();
    let (y0, y1) = if log { decades(ys.iter().copied()) } else { bounds(ys.iter().copied(), 0.05) };
    let y0 = if !log && y0 < 0.0 && ys.iter().all(|v| *v >= 0.0) { 0.0 } else { y0 };
    Ok(svg(SIZE, |root| {
        let body = root.titled(ExperimentPlot::Loss.title(), (FONT, TITLE_PX)).map_err(fail)?;
        let mut chart = framed(&body, 10, 75, x0..x1, y0..y1)?;
        if log {
            chart
                .configure_mesh()
                .label_style((FONT, 13))
                .axis_desc_style((FONT, 14))
                .x_desc("training step")
                .y_desc("loss (log scale)")
                .x_label_formatter(&|x| format!("{x:.0}"))
                .y_label_formatter(&|y| pow10_label(*y))
                .draw()
                .map_err(fail)?;
        } else {
            step_mesh(&mut chart, "loss")?;
        }
        for (i, c) in curves.iter().enumerate() {
            let colour = PALETTE[i % PALETTE.len()];
            // The band: min over the steps, then max back, for each stretch where both exist.
            let both: Vec<Option<f64>> = c.min.iter().zip(&c.max).map(|(a, b)| a.and(*b)).collect();
            for stretch in runs(&c.xs, &both) {
                let at = |x: f64, ys: &[Option<f64>]| c.xs.iter().position(|s| *s == x).and_then(|k| ys[k]);
                let lower: Vec<(f64, f64)> =
                    stretch.iter().filter_map(|&(x, _)| at(x, &c.min).map(|y| (x, y))).collect();
                let upper: Vec<(f64, f64)> =
                    stretch.iter().rev().filter_map(|&(x, _)| at(x, &c.max).map(|y| (x, y))).collect();
                let polygon: Vec<(f64, f64)> = lower.into_iter().chain(upper).collect();
                chart.draw_series(std::iter::once(Polygon::new(polygon, colour.mix(0.15).filled()))).map_err(fail)?;
            }
            draw_line(&mut chart, &c.xs, &c.mean, c.name, colour)?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        if ys.is_empty() {
            note(&chart.plotting_area().strip_coord_spec(), "no finite loss values to show (no finished run yet)")?;
        }
        Ok(())
    })?)
}

/// An axis value as a short label: strings bare, anything else as JSON.
fn value_label(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A loss as cell text: three significant digits.
fn cell_text(v: f64) -> String {
    if v != 0.0 && !(1e-3..1e4).contains(&v.abs()) {
        format!("{v:.2e}")
    } else {
        format!("{v:.3}")
    }
}

fn heatmap(h: &Heatmap) -> Result<String, ExperimentPlotError> {
    let (nx, ny) = (h.x.values.len(), h.y.values.len());
    let x_labels: Vec<String> = h.x.values.iter().map(value_label).collect();
    let y_labels: Vec<String> = h.y.values.iter().map(value_label).collect();
    let cells: Vec<(usize, usize, Option<f64>)> = h
        .mean_final_loss
        .iter()
        .enumerate()
        .flat_map(|(j, row)| row.iter().enumerate().map(move |(i, v)| (i, j, v.filter(|x| x.is_finite()))))
        .filter(|(i, j, _)| *i < nx && *j < ny)
        .collect();
    let finite: Vec<f64> = cells.iter().filter_map(|c| c.2).collect();
    let (lo, hi) = finite.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    let span = hi - lo;
    // Bright = lower loss (better); equal values sit mid-scale.
    let shade = |v: f64| viridis(if span > 0.0 && span.is_finite() { 1.0 - (v - lo) / span } else { 0.5 });
    let missing = cells.iter().filter(|c| c.2.is_none()).count() + (nx * ny).saturating_sub(cells.len());
    Ok(svg(SIZE, |root| {
        let body = root.titled(ExperimentPlot::Heatmap.title(), (FONT, TITLE_PX)).map_err(fail)?;
        let mut chart = framed(&body, 28, 95, -0.5..(nx.max(1) as f64 - 0.5), -0.5..(ny.max(1) as f64 - 0.5))?;
        chart
            .configure_mesh()
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .disable_mesh()
            .x_desc(h.x.pointer.as_str())
            .y_desc(h.y.pointer.as_str())
            .x_labels(nx.clamp(1, 20))
            .y_labels(ny.clamp(1, 20))
            .x_label_formatter(&|x| if every_kth(*x, nx, 12) { index_label(*x, &x_labels) } else { String::new() })
            .y_label_formatter(&|y| if every_kth(*y, ny, 20) { index_label(*y, &y_labels) } else { String::new() })
            .draw()
            .map_err(fail)?;
        chart
            .draw_series(cells.iter().map(|&(i, j, v)| {
                let (x, y) = (i as f64, j as f64);
                Rectangle::new([(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)], v.map_or(MISSING, shade).filled())
            }))
            .map_err(fail)?;
        let centre = Pos::new(HPos::Center, VPos::Center);
        chart
            .draw_series(cells.iter().map(|&(i, j, v)| {
                // Dark text on the bright end of the scale, white on the dark end.
                let dark = v.is_none_or(|v| span <= 0.0 || !span.is_finite() || (v - lo) / span < 0.5);
                let colour: &'static RGBColor = if dark { &BLACK } else { &WHITE };
                let style = TextStyle::from((FONT, 14).into_font()).color(colour).pos(centre);
                Text::new(v.map_or_else(|| "–".to_owned(), cell_text), (i as f64, j as f64), style)
            }))
            .map_err(fail)?;
        if finite.is_empty() {
            note(&chart.plotting_area().strip_coord_spec(), "no cell has a finished run yet")?;
        }
        let mut foot = "colour: mean final loss over the seeds and the other axes (bright = lower)".to_owned();
        if missing > 0 {
            foot.push_str(&format!("; grey: {missing} cell(s) without a finished run"));
        }
        footnote(root, &foot)?;
        Ok(())
    })?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::analysis::experiment::input::RunState;
    use crate::analysis::experiment::summary::summarize;
    use crate::analysis::experiment::tests::{cures, grid};

    /// Every `<text>` of an SVG, after checking that it parses as XML and that no attribute is
    /// NaN or infinite.
    fn check(svg: &str, labels: &[&str]) {
        let doc = roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("not XML: {e}\n{svg}"));
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        let texts: Vec<String> = doc
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .map(|n| n.descendants().filter(|t| t.is_text()).filter_map(|t| t.text()).collect())
            .collect();
        for label in labels {
            assert!(texts.iter().any(|t| t.contains(label)), "no text `{label}` in {texts:?}");
        }
        for node in doc.descendants() {
            for a in node.attributes() {
                let v = a.value().to_ascii_lowercase();
                assert!(!v.contains("nan") && !v.contains("inf"), "{}=\"{}\"", a.name(), a.value());
            }
        }
        assert!(!svg.contains("NaN"));
    }

    #[test]
    fn names_round_trip_and_the_heatmap_needs_a_grid() {
        for p in ExperimentPlot::ALL {
            assert_eq!(ExperimentPlot::from_name(p.name()), Some(p));
        }
        assert_eq!(ExperimentPlot::GradNormInit.name(), "grad_norm_init");
        assert_eq!(plot_named("nope"), Err(ExperimentPlotError::UnknownPlot("nope".into())));
        let cures = summarize(&cures());
        assert_eq!(available(&cures), vec![ExperimentPlot::GradNormInit, ExperimentPlot::Loss]);
        assert!(matches!(
            render(&cures, ExperimentPlot::Heatmap),
            Err(ExperimentPlotError::NotApplicable { plot: ExperimentPlot::Heatmap, .. })
        ));
        assert_eq!(available(&summarize(&grid())), ExperimentPlot::ALL.to_vec());
    }

    #[test]
    fn every_plot_is_well_formed_xml_without_nan_and_names_the_variants() {
        let mut input = cures();
        input.variants[1].name = "<better> & \"more\"".into();
        let r = summarize(&input);
        check(&render(&r, ExperimentPlot::GradNormInit).unwrap(), &["weight layer", "dense_1", "baseline", "diverges"]);
        check(&render(&r, ExperimentPlot::Loss).unwrap(), &["training step", "loss", "<better> & \"more\""]);
        let g = summarize(&grid());
        check(
            &render(&g, ExperimentPlot::Heatmap).unwrap(),
            &["/training/optimizer/lr", "0.01", "8", "1.000", "4.000"],
        );
        for p in available(&g) {
            check(&render(&g, p).unwrap(), &[p.title()]);
        }
    }

    #[test]
    fn pending_runs_and_empty_cells_draw_without_nan() {
        let mut input = grid();
        for v in &mut input.variants[2..] {
            v.runs.iter_mut().for_each(|r| r.state = RunState::Pending);
        }
        let r = summarize(&input);
        check(&render(&r, ExperimentPlot::Heatmap).unwrap(), &["1.000", "grey: 3 cell(s)"]);
        let mut input = cures();
        for v in &mut input.variants {
            v.runs.iter_mut().for_each(|r| r.state = RunState::Pending);
        }
        let r = summarize(&input);
        check(&render(&r, ExperimentPlot::Loss).unwrap(), &["no finite loss values"]);
        check(&render(&r, ExperimentPlot::GradNormInit).unwrap(), &["no finite positive grad_norm"]);
    }

    #[test]
    fn losses_spanning_decades_are_drawn_on_a_log_scale() {
        let mut input = cures();
        input.variants[2].runs.iter_mut().for_each(|r| r.state = super::super::tests::finished(1e-5, 1.0, 1.0));
        let svg = render(&summarize(&input), ExperimentPlot::Loss).unwrap();
        check(&svg, &["loss (log scale)", "1e-5"]);
    }
}
