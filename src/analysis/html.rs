//! The HTML report: one self-contained page (no external CSS, scripts or fonts; the plots are
//! inline SVG) with the summary, each diagnostic in plain words with its evidence and
//! recommendations, the plots that apply, and the layer table.
//!
//! Like [`super::plots`], it reads the report's JSON by its published names (`openapi/openapi.json`), so a report kept as
//! bytes renders the same as one just built. Everything taken from the report is HTML-escaped
//! (layer names and the spec's `name` come from the user); the SVG plots escape their own text.

use std::fmt::Write as _;

use serde_json::Value;

use super::findings::{DiagnosticCode, Verdict};
use super::plots;
use super::Report;

/// The page of `report`.
pub fn render(report: &Report) -> String {
    render_json(&serde_json::to_value(report).unwrap_or(Value::Null))
}

/// [`render`] on the report's JSON.
pub fn render_json(report: &Value) -> String {
    let mut page = String::with_capacity(64 * 1024);
    let name = report.pointer("/spec/name").and_then(Value::as_str).filter(|s| !s.is_empty());
    let heading = match name {
        Some(n) => format!("gradscope report: {}", esc(n)),
        None => "gradscope report".to_owned(),
    };
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{heading}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n<h1>{heading}</h1>\n"
    );
    summary(&mut page, report);
    diagnostics(&mut page, report);
    plots_section(&mut page, report);
    layers(&mut page, report);
    let engine = &report["engine"];
    let _ = write!(
        page,
        "<footer>gradscope {} &middot; seed {} &middot; {} &middot; report_version {}</footer>\n</main>\n</body>\n</html>\n",
        esc(&text(&engine["version"])),
        esc(&text(&engine["seed"])),
        esc(&text(&engine["precision"])),
        esc(&text(&report["report_version"])),
    );
    page
}

pub(crate) const STYLE: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#222;background:#fafafa;margin:0}\
main{max-width:980px;margin:0 auto;padding:1.5em}\
h1{font-size:1.6em;margin:.2em 0 .6em}h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #ddd}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}\
th{background:#f0f0f0}td.num{text-align:right;font-variant-numeric:tabular-nums}\
.verdict{display:inline-block;padding:.15em .6em;border-radius:.3em;font-weight:bold;color:#fff;background:#555}\
.verdict.healthy{background:#2a7d2a}.verdict.vanishing,.verdict.exploding,.verdict.diverged{background:#b3261e}\
.verdict.saturated,.verdict.dead_units,.verdict.not_learning{background:#b36b00}\
.diag{background:#fff;border:1px solid #ddd;border-left:6px solid #888;border-radius:.3em;padding:.6em 1em;margin:1em 0}\
.diag.critical{border-left-color:#b3261e}.diag.warning{border-left-color:#d08c00}.diag.info{border-left-color:#3a6fb0}\
.sev{font-size:.8em;text-transform:uppercase;letter-spacing:.05em;font-weight:bold}\
.sev.critical{color:#b3261e}.sev.warning{color:#a06c00}.sev.info{color:#3a6fb0}\
pre{background:#f4f4f4;padding:.5em;overflow-x:auto;font-size:.85em}\
figure{margin:1em 0;background:#fff;border:1px solid #ddd;padding:.5em}figure svg{max-width:100%;height:auto;display:block}\
li{margin-bottom:.6em}figcaption{font-size:.9em;color:#555}table.evidence{font-size:.85em}table.evidence code{word-break:break-all}footer{margin-top:2em;color:#777;font-size:.85em}";

/// HTML-escapes text for element content and double-quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A JSON value as short text: strings bare, numbers as written, `null` as a dash.
fn text(v: &Value) -> String {
    match v {
        Value::Null => "–".to_owned(),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.as_f64().filter(|_| n.is_f64()).map_or_else(|| n.to_string(), number),
        other => other.to_string(),
    }
}

/// A number with four significant digits (scientific notation when very small or large).
fn number(x: f64) -> String {
    if x == 0.0 {
        "0".to_owned()
    } else if !(1e-3..1e5).contains(&x.abs()) {
        format!("{x:.3e}")
    } else {
        let s = format!("{x:.4}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_owned()
    }
}

/// What a verdict or diagnostic code means, in words (`analysis/findings.rs` says it once).
fn explain(code: &str) -> &'static str {
    let name = Value::String(code.to_owned());
    if let Ok(verdict) = serde_json::from_value::<Verdict>(name.clone()) {
        verdict.meaning()
    } else if let Ok(code) = serde_json::from_value::<DiagnosticCode>(name) {
        code.meaning()
    } else {
        ""
    }
}

fn row(page: &mut String, label: &str, value: &str) {
    let _ = writeln!(page, "<tr><th>{}</th><td>{value}</td></tr>", esc(label));
}

fn summary(page: &mut String, report: &Value) {
    let s = &report["summary"];
    let verdict = s["verdict"].as_str().unwrap_or("unknown");
    let _ = write!(
        page,
        "<section id=\"summary\">\n<h2>Summary</h2>\n<p><span class=\"verdict {v}\">{v}</span> {}</p>\n<table>\n",
        esc(explain(verdict)),
        v = esc(verdict),
    );
    row(page, "final loss", &esc(&text(&s["final_loss"])));
    if s.get("final_accuracy").is_some() {
        row(page, "final accuracy", &esc(&text(&s["final_accuracy"])));
    }
    if s.get("final_val_loss").is_some() {
        row(page, "final validation loss", &esc(&text(&s["final_val_loss"])));
    }
    if s.get("final_val_accuracy").is_some() {
        row(page, "final validation accuracy", &esc(&text(&s["final_val_accuracy"])));
    }
    let steps = match s.get("total_steps") {
        Some(total) => format!("{} of {}", esc(&text(&s["steps"])), esc(&text(total))),
        None => esc(&text(&s["steps"])),
    };
    row(page, "steps", &steps);
    if let Some(outcome) = s.get("outcome") {
        row(page, "outcome", &esc(&text(outcome)));
    }
    let ratio = match s.get("grad_ratio_first_last") {
        Some(r) => format!(
            "{} <small>(grad_norm of the first weight layer / the last hidden one, at step 0; 1 is even flow)</small>",
            esc(&text(r))
        ),
        None => "– <small>(needs at least two hidden weight layers)</small>".to_owned(),
    };
    row(page, "grad_ratio_first_last", &ratio);
    if let Some(h) = s.get("memory_horizon") {
        let mut v = esc(&text(h));
        if let Some(t) = s.get("sequence_length") {
            let _ = write!(v, " of {} time steps", esc(&text(t)));
        }
        if let Some(h0) = s.get("memory_horizon_init") {
            let _ = write!(v, " (at step 0: {})", esc(&text(h0)));
        }
        row(page, "memory horizon", &v);
    }
    if let Some(nf) = s.get("non_finite") {
        row(
            page,
            "first non-finite value",
            &format!(
                "step {}, {} ({})",
                esc(&text(&nf["step"])),
                esc(&text(&nf["layer"])),
                esc(&text(&nf["location"]))
            ),
        );
    }
    for (key, label) in [("params", "parameters"), ("clipped_steps", "clipped steps"), ("duration_ms", "duration (ms)")]
    {
        if let Some(v) = s.get(key) {
            row(page, label, &esc(&text(v)));
        }
    }
    page.push_str("</table>\n</section>\n");
}

fn diagnostics(page: &mut String, report: &Value) {
    page.push_str("<section id=\"diagnostics\">\n<h2>Diagnostics</h2>\n");
    let list = report["diagnostics"].as_array().map(Vec::as_slice).unwrap_or_default();
    if list.is_empty() {
        page.push_str("<p>No problems found.</p>\n");
    }
    for d in list {
        let code = d["code"].as_str().unwrap_or("unknown");
        let severity = d["severity"].as_str().unwrap_or("info");
        let _ = write!(
            page,
            "<div class=\"diag {sev}\" id=\"diag-{code}\">\n<p><span class=\"sev {sev}\">{sev}</span> \
             <strong>{title}</strong> <code>{code}</code></p>\n",
            sev = esc(severity),
            code = esc(code),
            title = esc(&code.replace('_', " ")),
        );
        let meaning = explain(code);
        if !meaning.is_empty() {
            let _ = writeln!(page, "<p><em>What it means:</em> {}.</p>", esc(meaning));
        }
        if let Some(m) = d["message"].as_str() {
            let _ = writeln!(page, "<p>{}</p>", esc(m));
        }
        if let (Some(kind), Some(detail)) = (d["cause"]["kind"].as_str(), d["cause"]["detail"].as_str()) {
            let _ = writeln!(page, "<p><em>Cause ({}):</em> {}.</p>", esc(&kind.replace('_', " ")), esc(detail));
        }
        let layers: Vec<String> = d["layers"]
            .as_array()
            .map(|a| a.iter().map(|l| format!("<code>{}</code>", esc(&text(l)))).collect())
            .unwrap_or_default();
        if !layers.is_empty() {
            let _ = writeln!(page, "<p><em>Layers:</em> {}</p>", layers.join(", "));
        }
        if let Some(evidence) = d.get("evidence").filter(|e| !e.is_null()) {
            let _ = writeln!(page, "<details><summary>Evidence</summary>{}</details>", evidence_html(evidence));
        }
        recommendations(page, d);
        page.push_str("</div>\n");
    }
    page.push_str("</section>\n");
}

/// A diagnostic's evidence: one row per field, numbers rounded, nested values as compact JSON.
fn evidence_html(evidence: &Value) -> String {
    let Some(fields) = evidence.as_object() else {
        return format!("<pre>{}</pre>", esc(&evidence.to_string()));
    };
    let mut out = String::from("<table class=\"evidence\">");
    for (key, value) in fields {
        let shown = match value {
            Value::Object(_) | Value::Array(_) => format!("<code>{}</code>", esc(&compact(value).to_string())),
            other => esc(&text(other)),
        };
        let _ = write!(out, "<tr><th>{}</th><td>{shown}</td></tr>", esc(key));
    }
    out.push_str("</table>");
    out
}

/// `value` with every float rounded to four significant digits, for reading.
fn compact(value: &Value) -> Value {
    match value {
        Value::Number(n) if n.is_f64() => n
            .as_f64()
            .and_then(|x| number(x).parse::<f64>().ok())
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| value.clone(), Value::Number),
        Value::Array(a) => Value::Array(a.iter().map(compact).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), compact(v))).collect()),
        other => other.clone(),
    }
}

fn recommendations(page: &mut String, d: &Value) {
    let recs = d["recommendations"].as_array().map(Vec::as_slice).unwrap_or_default();
    if recs.is_empty() {
        return;
    }
    let tried = |r: &&Value| matches!(r["verification"]["status"].as_str(), Some("tried_worse" | "tried_no_change"));
    let (shown, rejected): (Vec<&Value>, Vec<&Value>) = recs.iter().partition(|r| !tried(r));
    if !shown.is_empty() {
        page.push_str("<p><em>What to change</em> (most effective first):</p>\n<ol>\n");
        recommendation_items(page, &shown);
        page.push_str("</ol>\n");
    }
    if !rejected.is_empty() {
        page.push_str("<p><em>Tried, not recommended</em> (no better than the unchanged network):</p>\n<ul>\n");
        recommendation_items(page, &rejected);
        page.push_str("</ul>\n");
    }
}

/// The effect of a verified change in words: "loss 0.69 -> 0.12 in 200 steps".
fn verification_words(v: &Value) -> Option<String> {
    let number = |x: &Value| x.as_f64().map_or_else(|| "NaN/Inf".to_owned(), |x| format!("{x:.3}"));
    let reason = |r: &str| match r {
        "over_budget" => "its run would exceed the verification share of the job's compute",
        "over_memory" => "its run would need more memory than the job may take",
        "patch_invalid" => "the patched spec does not validate",
        "changes_steps" => "it changes the number of steps, which a run at the budget fixes",
        _ => "its run did not finish",
    };
    let status = v["status"].as_str()?;
    if status == "not_verified" {
        return Some(format!("<em>Not verified:</em> {}.", reason(v["reason"].as_str().unwrap_or_default())));
    }
    let (b, p) = (&v["baseline"], &v["patched"]);
    let steps = v["steps"].as_u64()?;
    let mut words = format!("loss {} -> {} in {steps} steps", number(&b["final_loss"]), number(&p["final_loss"]));
    if let (Some(ba), Some(pa)) = (b["final_accuracy"].as_f64(), p["final_accuracy"].as_f64()) {
        let _ = write!(words, ", accuracy {ba:.2} -> {pa:.2}");
    }
    if let Some(verdict) = p["verdict"].as_str() {
        let _ = write!(words, ", verdict {verdict}");
    }
    let label = match status {
        "verified_better" => "Verified",
        "tried_worse" => "Tried, worse",
        _ => "Tried, no clear change",
    };
    Some(format!("<em>{label}:</em> {} (same data and seed).", esc(&words)))
}

fn recommendation_items(page: &mut String, recs: &[&Value]) {
    for r in recs {
        let title = r["title"].as_str().map_or_else(|| text(&r["title"]), str::to_owned);
        let _ = write!(page, "<li><strong>{}</strong>", esc(&title));
        if let Some(why) = r["why"].as_str() {
            let _ = write!(page, "<br>{}", esc(why));
        }
        if let Some(measured) = r.get("measured").and_then(Value::as_object).filter(|m| !m.is_empty()) {
            let parts: Vec<String> =
                measured.iter().map(|(k, v)| format!("<code>{}</code> {}", esc(k), esc(&text(&compact(v))))).collect();
            let _ = write!(page, "<br><em>Measured at initialisation with this change:</em> {}", parts.join(", "));
        }
        if let Some(words) = r.get("verification").and_then(verification_words) {
            let _ = write!(page, "<br>{words}");
        }
        if let Some(patch) = r.get("patch").filter(|p| !p.is_null()) {
            let _ = write!(
                page,
                "<details><summary>JSON Patch (RFC 6902) for the report's <code>spec</code></summary><pre>{}</pre></details>",
                esc(&patch_text(patch))
            );
        }
        page.push_str("</li>\n");
    }
}

/// A JSON Patch with one operation per line.
fn patch_text(patch: &Value) -> String {
    match patch.as_array() {
        Some(ops) if !ops.is_empty() => {
            let lines: Vec<String> = ops.iter().map(Value::to_string).collect();
            format!("[\n  {}\n]", lines.join(",\n  "))
        }
        _ => patch.to_string(),
    }
}

fn plots_section(page: &mut String, report: &Value) {
    page.push_str("<section id=\"plots\">\n<h2>Plots</h2>\n");
    let available = plots::available_json(report);
    if available.is_empty() {
        // A run stopped before its first probe (cancelled, or failed at once) measured nothing.
        page.push_str("<p>No plot applies: the report has no probe steps.</p>\n");
    }
    for name in available {
        match plots::render_json(report, name) {
            Ok(svg) => {
                let _ = write!(
                    page,
                    "<figure id=\"plot-{name}\">\n{}\n<figcaption>{}</figcaption>\n</figure>\n",
                    strip_prolog(&svg),
                    esc(caption(name))
                );
            }
            Err(e) => {
                let _ = writeln!(page, "<p>Plot <code>{name}</code> could not be drawn: {}</p>", esc(&e.to_string()));
            }
        }
    }
    page.push_str("</section>\n");
}

/// The SVG element itself (an XML declaration cannot stand inside HTML).
fn strip_prolog(svg: &str) -> &str {
    svg.find("<svg").map_or(svg, |i| &svg[i..])
}

fn caption(plot: plots::PlotName) -> &'static str {
    use plots::PlotName;
    match plot {
        PlotName::GradFlow => {
            "Each cell is one weight layer at one probe step; dark = small gradient. A dark band at the \
                        bottom (the layers near the input) is vanishing, a bright one exploding."
        }
        PlotName::GradNorms => {
            "The classic gradient-flow chart: bars of equal height mean the gradient reaches every layer \
                         at the same scale."
        }
        PlotName::Loss => {
            "Loss (and accuracy) of the training batch at each probe step. The dashed line is chance \
                   level: the loss of the best constant prediction, which ignores the inputs."
        }
        PlotName::Timesteps => {
            "How much the loss at the last time step depends on the hidden state at each earlier step; \
                        a steep fall to the left is a short memory."
        }
        PlotName::Theory => "The mean-field prediction at initialisation against what step 0 measured.",
    }
}

fn layers(page: &mut String, report: &Value) {
    let list = report["layers"].as_array().map(Vec::as_slice).unwrap_or_default();
    if list.is_empty() {
        return;
    }
    let stats = report["layer_stats"].as_array().map(Vec::as_slice).unwrap_or_default();
    page.push_str(
        "<section id=\"layers\">\n<h2>Layers</h2>\n<table>\n<tr><th>#</th><th>name</th><th>type</th>\
         <th>units</th><th>activation</th><th>params</th><th>grad_norm, first probe</th><th>grad_norm, last probe</th></tr>\n",
    );
    for (i, l) in list.iter().enumerate() {
        let name = l["name"].as_str().unwrap_or("");
        let s = stats.iter().find(|s| s["layer"].as_str() == Some(name)).or_else(|| stats.get(i));
        let grad = s.and_then(|s| s["grad_norm"].as_array());
        let first = grad.and_then(|g| g.first()).map_or_else(String::new, text);
        let last = grad.and_then(|g| g.last()).map_or_else(String::new, text);
        let _ = writeln!(
            page,
            "<tr><td class=\"num\">{}</td><td><code>{}</code></td><td>{}</td><td class=\"num\">{}</td><td>{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(&text(&l["index"])),
            esc(name),
            esc(&text(&l["type"])),
            esc(&l.get("units").map(text).unwrap_or_default()),
            esc(&l.get("activation").map(text).unwrap_or_default()),
            esc(&text(&l["params"])),
            esc(&first),
            esc(&last),
        );
    }
    page.push_str("</table>\n</section>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn report() -> Value {
        let mut r = plots::tests::mlp_report();
        r["spec"] = json!({"name": "deep <sigmoid> & \"friends\""});
        r["diagnostics"] = json!([
            {"code": "vanishing_gradient", "severity": "critical", "layers": ["dense_0", "dense_1"],
             "message": "grad_norm falls 1e5x from the last hidden layer to the first",
             "evidence": {"ratio_step0": 1e-5, "threshold_critical": 1e-4},
             "recommendations": [
                {"title": "Use ReLU with He init", "why": "sigmoid's derivative is at most 1/4 <so> it shrinks",
                 "patch": [{"op": "replace", "path": "/model/layers/0/activation", "value": "relu"},
                           {"op": "add", "path": "/model/layers/0/init", "value": "he_normal"}],
                 "measured": {"grad_ratio_first_last": 0.283153971, "verdict": "healthy"}},
                {"title": "Add batch norm"}
             ]},
            {"code": "saturation", "severity": "warning", "layers": ["dense_0"], "message": "units saturate",
             "evidence": {"saturation": 0.7}}
        ]);
        r
    }

    #[test]
    fn the_page_shows_the_summary_every_diagnostic_and_the_plots() {
        let page = render_json(&report());
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.contains("<span class=\"verdict vanishing\">vanishing</span>"));
        assert!(page.contains("grad_ratio_first_last") && page.contains("1.000e-5"), "the ratio is shown");
        for d in ["diag-vanishing_gradient", "diag-saturation"] {
            assert!(page.contains(d), "{d}");
        }
        assert!(page.contains("grad_norm falls 1e5x") && page.contains("units saturate"));
        assert!(page.contains("<code>dense_1</code>"), "affected layers listed");
        assert!(page.contains("Use ReLU with He init") && page.contains("Add batch norm"));
        assert!(page.contains("[\n  {&quot;op&quot;:&quot;replace&quot;"), "the patch, escaped, one op per line");
        assert!(page.contains("<code>grad_ratio_first_last</code> 0.2832, <code>verdict</code> healthy"), "measured");
        assert!(page.contains("<th>ratio_step0</th><td>1.000e-5</td>"), "the evidence");
        for plot in ["plot-grad_flow", "plot-grad_norms", "plot-loss", "plot-theory"] {
            assert!(page.contains(plot), "{plot}");
        }
        assert!(!page.contains("plot-timesteps"), "timesteps only for recurrent networks");
        assert!(page.contains("<svg"));
    }

    #[test]
    fn everything_from_the_report_is_escaped_and_the_page_is_self_contained() {
        let page = render_json(&report());
        assert!(page.contains("deep &lt;sigmoid&gt; &amp; &quot;friends&quot;"));
        assert!(!page.contains("<sigmoid>") && !page.contains("<so>"));
        assert!(page.contains("&lt;so&gt;"));
        for external in ["<link", "<script", "src=\"http", "href=\"http", "@import", "url("] {
            assert!(!page.contains(external), "{external}");
        }
    }

    #[test]
    fn a_report_without_diagnostics_or_recommendations_renders() {
        let mut r = report();
        r["diagnostics"] = json!([{"code": "not_learning", "severity": "warning"}]);
        let page = render_json(&r);
        assert!(page.contains("diag-not_learning"));
        r["diagnostics"] = json!([]);
        assert!(render_json(&r).contains("No problems found."));
        assert!(render_json(&json!({})).contains("</html>"), "even an empty object renders");
    }

    #[test]
    fn a_report_without_probe_steps_says_that_no_plot_applies_and_a_single_probe_one_shows_its_plots() {
        let mut r = report();
        r.as_object_mut().unwrap().remove("theory");
        for key in ["steps", "loss", "accuracy", "val_loss", "val_accuracy"] {
            r[key] = json!([]);
        }
        let page = render_json(&r);
        assert!(page.contains("No plot applies: the report has no probe steps."));
        assert!(!page.contains("<figure"));
        // One probe (an analysis): the plots are there, the loss with its chance level.
        let mut r = report();
        r["summary"]["baseline_loss"] = json!(2f64.ln());
        r["spec"]["training"] = json!({"loss": "cross_entropy"});
        r["steps"] = json!([0]);
        for key in ["loss", "accuracy", "val_loss", "val_accuracy"] {
            r[key] = json!([0.69]);
        }
        for l in r["layer_stats"].as_array_mut().unwrap() {
            if l["grad_norm"].is_array() {
                l["grad_norm"] = json!([0.1]);
            }
        }
        let page = render_json(&r);
        assert!(!page.contains("No plot applies"));
        for plot in ["plot-grad_flow", "plot-grad_norms", "plot-loss"] {
            assert!(page.contains(plot), "{plot}");
        }
        assert!(page.contains("chance level 0.6931: predict the class frequencies"));
    }

    #[test]
    fn html_escape_covers_the_five_characters() {
        assert_eq!(esc(r#"<a href="x">'&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }
}
