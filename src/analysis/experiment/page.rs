//! The experiment's page and table: [`render_html`], one self-contained HTML page (inline SVG
//! plots, no external CSS, scripts or fonts) like the report's (`analysis/html.rs`), and
//! [`markdown_table`], the ranked rows for a README or the command line. Both read only the
//! [`ExperimentResult`]; every user string (variant and experiment names, pointers, values,
//! reasons) is escaped.

use std::fmt::Write as _;

use serde_json::Value;

use super::plots::{available, render, ExperimentPlot};
use super::result::{ExperimentResult, GRID_RULE, LOSS_FLOOR};
use super::stats::{GeoStat, MeanStat, PairedDiff};
use crate::analysis::html::{esc, STYLE};

/// A number with four significant digits, trailing zeros dropped (scientific notation when very
/// small or large).
fn num(x: f64) -> String {
    if x == 0.0 {
        "0".to_owned()
    } else if !(1e-3..1e5).contains(&x.abs()) {
        format!("{x:.3e}")
    } else {
        let decimals = (3 - x.abs().log10().floor() as i32).max(0) as usize;
        let s = format!("{x:.decimals$}");
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            s
        }
    }
}

fn opt(x: Option<f64>) -> String {
    x.map_or_else(|| "–".to_owned(), num)
}

/// `mean ± half-width [low, high] (n)`, or the mean alone without an interval.
fn mean_text(s: &MeanStat) -> String {
    match (s.mean, s.low, s.high) {
        (Some(m), Some(lo), Some(hi)) => format!("{} [{}, {}] (n={})", num(m), num(lo), num(hi), s.n),
        (Some(m), _, _) => format!("{} (n={})", num(m), s.n),
        _ => "–".to_owned(),
    }
}

fn geo_text(s: &GeoStat) -> String {
    match (s.geo_mean, s.low, s.high) {
        (Some(g), Some(lo), Some(hi)) => format!("{} [{}, {}]", num(g), num(lo), num(hi)),
        (Some(g), _, _) => num(g),
        _ => "–".to_owned(),
    }
}

fn diff_text(d: &PairedDiff) -> String {
    match (d.mean, d.low, d.high) {
        (Some(m), Some(lo), Some(hi)) => {
            let verdict = if d.excludes_zero { "excludes 0" } else { "includes 0" };
            format!("{} [{}, {}], {verdict} ({} pairs)", signed(m), signed(lo), signed(hi), d.n_pairs)
        }
        (Some(m), _, _) => format!("{} ({} pair)", signed(m), d.n_pairs),
        _ => "–".to_owned(),
    }
}

fn signed(x: f64) -> String {
    if x > 0.0 {
        format!("+{}", num(x))
    } else {
        num(x)
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The self-contained HTML page of `result`; `title` heads it (the experiment's name, or its id
/// when it has none).
pub fn render_html(result: &ExperimentResult, title: &str) -> String {
    let mut page = String::with_capacity(64 * 1024);
    let heading = format!("gradscope experiment: {}", esc(title));
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{heading}</title>\n<style>{STYLE}main{{max-width:1200px}}</style>\n</head>\n<body>\n<main>\n<h1>{heading}</h1>\n"
    );
    let runs: usize = result.variants.iter().map(|v| v.runs.len()).sum();
    let done: usize = result.variants.iter().map(|v| v.n + v.missing).sum();
    let _ = writeln!(
        page,
        "<p>{} variants &times; {} seeds; {done} of {runs} runs ended{}.</p>",
        result.variants.len(),
        result.seeds.len(),
        if result.complete { "" } else { " (partial result: some runs are still pending)" },
    );
    table(&mut page, result);
    more(&mut page, result);
    grid(&mut page, result);
    plots(&mut page, result);
    method(&mut page, result);
    page.push_str("</main>\n</body>\n</html>\n");
    page
}

fn table(page: &mut String, result: &ExperimentResult) {
    page.push_str(
        "<section id=\"variants\">\n<h2>Variants, best first</h2>\n<table>\n<tr><th>rank</th><th>variant</th>\
         <th>runs</th><th>final loss, mean [95% interval]</th><th>final accuracy</th><th>grad ratio at init</th>\
         <th>grad ratio at end</th><th>verdicts</th><th>final loss vs baseline</th><th>distinguishable from best</th></tr>\n",
    );
    for name in &result.ranking {
        let Some(v) = result.variants.iter().find(|v| &v.name == name) else { continue };
        let mut label = format!("<code>{}</code>", esc(&v.name));
        if v.baseline {
            label.push_str(" <small>(baseline)</small>");
        }
        if v.best {
            label.push_str(" <strong>best</strong>");
        }
        let mut runs = format!("{} finished", v.n.saturating_sub(v.non_finite));
        for (count, what) in [(v.non_finite, "non-finite"), (v.missing, "missing"), (v.pending, "pending")] {
            if count > 0 {
                let _ = write!(runs, ", {count} {what}");
            }
        }
        let verdicts: Vec<String> =
            v.verdicts.iter().map(|c| format!("{} &times;{}", esc(c.verdict.name()), c.count)).collect();
        let vs = match &v.vs_baseline {
            None => "–".to_owned(),
            Some(d) => esc(&diff_text(&d.final_loss)),
        };
        let _ = writeln!(
            page,
            "<tr><td class=\"num\">{}</td><td>{label}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{vs}</td><td>{}</td></tr>",
            v.rank,
            esc(&runs),
            esc(&mean_text(&v.final_loss)),
            esc(&v.final_accuracy.as_ref().map_or_else(|| "–".to_owned(), mean_text)),
            esc(&geo_text(&v.grad_ratio_init)),
            esc(&geo_text(&v.grad_ratio_end)),
            verdicts.join(", "),
            if v.best { "(best)" } else if v.distinguishable_from_best { "yes" } else { "no" },
        );
    }
    page.push_str("</table>\n");
    let missing: Vec<String> = result
        .variants
        .iter()
        .flat_map(|v| v.runs.iter().map(move |r| (v, r)))
        .filter_map(|(v, r)| {
            r.reason
                .as_ref()
                .map(|why| format!("<li><code>{}</code>, seed {}: {}</li>", esc(&v.name), r.seed, esc(why)))
        })
        .collect();
    if !missing.is_empty() {
        let _ = writeln!(page, "<p>Runs without a report:</p>\n<ul>\n{}\n</ul>", missing.join("\n"));
    }
    page.push_str("</section>\n");
}

/// The figures the ranked table leaves out: diagnostic codes, the other paired differences,
/// steps to the loss threshold and wall time.
fn more(page: &mut String, result: &ExperimentResult) {
    let threshold = result.loss_threshold.map(|t| format!("<th>steps to loss &le; {}</th>", esc(&num(t))));
    let _ = writeln!(
        page,
        "<section id=\"details\">\n<h2>More per variant</h2>\n<table>\n<tr><th>variant</th><th>diagnostic codes (runs)</th>\
         <th>accuracy vs baseline</th><th>log10 grad ratio at init vs baseline</th>{}<th>wall time per run (ms)</th></tr>",
        threshold.unwrap_or_default()
    );
    for v in &result.variants {
        let codes: Vec<String> =
            v.codes.iter().map(|c| format!("<code>{}</code> &times;{}", esc(c.code.name()), c.count)).collect();
        let diff = |d: Option<&PairedDiff>| esc(&d.map_or_else(|| "–".to_owned(), diff_text));
        let steps = match (result.loss_threshold, &v.steps_to_threshold) {
            (Some(_), Some(s)) => {
                format!("<td class=\"num\">{} ({} of {} reached)</td>", esc(&opt(s.mean)), s.reached, s.of)
            }
            (Some(_), None) => "<td>–</td>".to_owned(),
            _ => String::new(),
        };
        let _ = writeln!(
            page,
            "<tr><td><code>{}</code></td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>{steps}\
             <td class=\"num\">{} <small>(total {})</small></td></tr>",
            esc(&v.name),
            if codes.is_empty() { "–".to_owned() } else { codes.join(", ") },
            diff(v.vs_baseline.as_ref().and_then(|d| d.final_accuracy.as_ref())),
            diff(v.vs_baseline.as_ref().map(|d| &d.log10_grad_ratio_init)),
            esc(&opt(v.wall_time_ms.mean)),
            v.wall_time_ms.total,
        );
    }
    page.push_str("</table>\n</section>\n");
}

fn grid(page: &mut String, result: &ExperimentResult) {
    if result.main_effects.is_empty() && result.best_cell.is_none() {
        return;
    }
    page.push_str("<section id=\"grid\">\n<h2>Grid</h2>\n");
    if let Some(best) = &result.best_cell {
        let settings: Vec<String> = best
            .settings
            .iter()
            .map(|s| format!("<code>{}</code> = <code>{}</code>", esc(&s.pointer), esc(&value_text(&s.value))))
            .collect();
        let spec = serde_json::to_string_pretty(&best.spec).unwrap_or_default();
        let _ = writeln!(
            page,
            "<p><strong>Best cell:</strong> <code>{}</code>: {}</p>\n<details><summary>Its spec</summary><pre>{}</pre></details>",
            esc(&best.name),
            settings.join(", "),
            esc(&spec)
        );
    }
    for effect in &result.main_effects {
        let _ = writeln!(
            page,
            "<h3>Main effect of <code>{}</code></h3>\n<table>\n<tr><th>value</th><th>mean final loss over its cells</th><th>cells</th></tr>",
            esc(&effect.pointer)
        );
        for level in &effect.levels {
            let _ = writeln!(
                page,
                "<tr><td><code>{}</code></td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                esc(&value_text(&level.value)),
                esc(&opt(level.mean_final_loss)),
                level.n
            );
        }
        page.push_str("</table>\n");
    }
    let _ = writeln!(page, "<p><small>{}</small></p>\n</section>", esc(GRID_RULE));
}

fn plots(page: &mut String, result: &ExperimentResult) {
    page.push_str("<section id=\"plots\">\n<h2>Plots</h2>\n");
    for plot in available(result) {
        match render(result, plot) {
            Ok(svg) => {
                let body = svg.find("<svg").map_or(svg.as_str(), |i| &svg[i..]);
                let _ = write!(
                    page,
                    "<figure id=\"plot-{}\">\n{body}\n<figcaption>{}</figcaption>\n</figure>\n",
                    plot.name(),
                    esc(caption(plot))
                );
            }
            Err(e) => {
                let _ = writeln!(
                    page,
                    "<p>Plot <code>{}</code> could not be drawn: {}</p>",
                    plot.name(),
                    esc(&e.to_string())
                );
            }
        }
    }
    page.push_str("</section>\n");
}

fn caption(plot: ExperimentPlot) -> &'static str {
    match plot {
        ExperimentPlot::GradNormInit => {
            "Each variant's weight-gradient norm per layer before training; a flat line is even gradient flow, a \
             line rising to the right is vanishing towards the input."
        }
        ExperimentPlot::Loss => "Mean training loss over the seeds at each probe step; the band spans the seeds.",
        ExperimentPlot::Heatmap => "Mean final loss per pair of values, averaged over the seeds and the other axes.",
    }
}

fn method(page: &mut String, result: &ExperimentResult) {
    let m = &result.method;
    let _ = writeln!(
        page,
        "<section id=\"method\">\n<h2>Method</h2>\n<ul>\n<li>Confidence {}.</li>\n<li>{}</li>\n<li>{}</li>\n\
         <li>{}</li>\n<li>{}</li>\n<li>{}</li>\n</ul>\n</section>",
        esc(&num(m.confidence)),
        esc(&m.means),
        esc(&m.ratios),
        esc(&m.paired),
        esc(&m.ranking),
        esc(&m.distinguishable),
    );
}

/// Escapes text for a Markdown table cell (`|` and line breaks would end the cell).
fn md(s: &str) -> String {
    s.replace('\\', "\\\\").replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// The ranked rows of `result` as a Markdown table: rank, variant, final loss with its 95%
/// interval, accuracy, gradient ratios, non-finite runs, the paired difference with the
/// baseline.
pub fn markdown_table(result: &ExperimentResult) -> String {
    let mut out = String::from(
        "| rank | variant | final loss [95% CI] | accuracy | grad ratio init | grad ratio end | non-finite | loss vs baseline [95% CI] |\n\
         |---:|---|---|---|---|---|---:|---|\n",
    );
    for name in &result.ranking {
        let Some(v) = result.variants.iter().find(|v| &v.name == name) else { continue };
        let mut label = format!("`{}`", v.name.replace('`', "'"));
        if v.baseline {
            label.push_str(" (baseline)");
        }
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} of {} | {} |",
            v.rank,
            md(&label),
            md(&mean_text(&v.final_loss)),
            md(&v.final_accuracy.as_ref().map_or_else(|| "–".to_owned(), mean_text)),
            md(&geo_text(&v.grad_ratio_init)),
            md(&geo_text(&v.grad_ratio_end)),
            v.non_finite,
            v.n,
            md(&v.vs_baseline.as_ref().map_or_else(|| "–".to_owned(), |d| diff_text(&d.final_loss))),
        );
    }
    let _ = writeln!(out, "\nMean final losses below {} count as equal in the ranking.", num(LOSS_FLOOR));
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::analysis::experiment::input::RunState;
    use crate::analysis::experiment::summary::summarize;
    use crate::analysis::experiment::tests::{cures, grid};

    #[test]
    fn the_page_shows_the_ranked_table_the_plots_and_the_method() {
        let page = render_html(&summarize(&cures()), "cures");
        assert!(page.starts_with("<!DOCTYPE html>") && page.ends_with("</html>\n"));
        let better = page.find("<code>better</code>").unwrap();
        let baseline = page.find("<code>baseline</code>").unwrap();
        assert!(better < baseline, "ranked order");
        assert!(page.contains("1.1 [0.8516, 1.348] (n=3)"), "mean and interval");
        assert!(page.contains("-0.5 [-0.7484, -0.2516], excludes 0 (3 pairs)"), "paired difference");
        assert!(page.contains("2 finished, 1 non-finite"));
        for id in ["plot-grad_norm_init", "plot-loss", "id=\"method\""] {
            assert!(page.contains(id), "{id}");
        }
        assert!(!page.contains("plot-heatmap") && !page.contains("id=\"grid\""));
        assert!(page.contains("Student t"));
        assert!(page.contains("<code>non_finite</code> &times;1"), "diagnostic codes with counts");
        assert!(!page.contains("steps to loss"), "no threshold, no column");
        for external in ["<link", "<script", "src=\"http", "href=\"http", "@import", "url("] {
            assert!(!page.contains(external), "{external}");
        }
    }

    #[test]
    fn a_loss_threshold_adds_the_steps_to_reach_it() {
        let mut input = cures();
        input.loss_threshold = Some(0.8);
        let page = render_html(&summarize(&input), "cures");
        assert!(page.contains("<th>steps to loss &le; 0.8</th>"));
        assert!(page.contains("13.33 (3 of 3 reached)"), "better: steps 10, 10, 20");
    }

    #[test]
    fn the_page_of_a_grid_shows_main_effects_best_cell_and_heatmap() {
        let page = render_html(&summarize(&grid()), "grid");
        assert!(page.contains("Main effect of <code>/training/optimizer/lr</code>"));
        assert!(page.contains("<strong>Best cell:</strong> <code>lr=0.1,depth=4</code>"));
        assert!(page.contains("plot-heatmap"));
    }

    #[test]
    fn user_strings_are_escaped_in_the_page_and_the_table() {
        let mut input = cures();
        input.variants[1].name = "<b>x</b> | y".into();
        input.variants[2].runs[1].state = RunState::Missing { reason: "<script>alert(1)</script>".into() };
        let r = summarize(&input);
        let page = render_html(&r, "a <title> & more");
        assert!(page.contains("a &lt;title&gt; &amp; more"));
        assert!(page.contains("&lt;b&gt;x&lt;/b&gt; | y"));
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!page.contains("<b>x") && !page.contains("<script>"));
        let md = markdown_table(&r);
        assert!(md.contains("`<b>x</b> \\| y`"), "{md}");
    }

    #[test]
    fn numbers_keep_four_significant_digits() {
        let cases = [(2165.1993, "2165"), (0.63481, "0.6348"), (1.5103, "1.51"), (-0.5, "-0.5"), (1e-5, "1.000e-5")];
        for (x, text) in cases {
            assert_eq!(num(x), text);
        }
        assert_eq!((num(0.0), num(100.0), num(12345.6)), ("0".into(), "100".into(), "12346".into()));
    }

    #[test]
    fn the_markdown_table_has_a_row_per_variant_in_rank_order() {
        let md = markdown_table(&summarize(&cures()));
        let lines: Vec<&str> = md.lines().collect();
        assert!(lines[0].starts_with("| rank | variant |"));
        assert!(lines[2].starts_with("| 1 | `better` |") && lines[3].starts_with("| 2 | `baseline` (baseline) |"));
        assert!(lines[4].starts_with("| 3 | `diverges` |") && lines[4].contains("| 1 of 3 |"));
        assert!(lines[2].ends_with("| -0.5 [-0.7484, -0.2516], excludes 0 (3 pairs) |"), "{}", lines[2]);
        assert!(lines[3].ends_with("| – |"));
    }
}
