//! Progress on standard error, driven by the training callback (`gradscope run`) or the job
//! service's progress (`gradscope experiment`).
//!
//! When standard error is a terminal: an `indicatif` bar with the steps, the rate (steps/s), the
//! time left and the last loss, replaced by one line when the run ends. Otherwise, with
//! `--progress`: plain lines, at the first step, at every tenth of the run, after ten silent
//! seconds and at the last step, so that a short run shows its start and end and a long one
//! does not fill a log. `--no-progress`, or neither a terminal nor `--progress`: nothing.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use super::args::ProgressArgs;
use super::format::{duration, num, rate};
use crate::engine::train::Progress;
use crate::jobs::experiments::model::ExperimentProgress;

/// A plain line at least this often while something is running.
const LINE_EVERY: Duration = Duration::from_secs(10);
/// The spinner's tick while no step has been reported (data generation, the analysis).
const TICK: Duration = Duration::from_millis(100);

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Nothing.
    Off,
    /// An `indicatif` bar (standard error is a terminal that can draw one).
    Bar,
    /// Plain lines.
    Lines,
}

impl Mode {
    /// The mode `args` ask for, given where standard error goes.
    pub fn of(args: ProgressArgs) -> Mode {
        let terminal = std::io::stderr().is_terminal();
        // indicatif draws nothing on a terminal whose TERM is unset or `dumb`: lines there.
        let drawable = terminal && !ProgressDrawTarget::stderr().is_hidden();
        Mode::choose(args, terminal, drawable)
    }

    fn choose(args: ProgressArgs, terminal: bool, drawable: bool) -> Mode {
        match (args.no_progress, drawable, terminal || args.progress) {
            (true, _, _) => Mode::Off,
            (false, true, _) => Mode::Bar,
            (false, false, true) => Mode::Lines,
            (false, false, false) => Mode::Off,
        }
    }
}

/// A spinner with `message`, ticking until it is replaced.
fn spinner(message: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}").unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(message.to_owned());
    bar.enable_steady_tick(TICK);
    bar
}

/// Steps per second between two reports of progress.
fn per_sec(steps: u64, since: Instant) -> f64 {
    let secs = since.elapsed().as_secs_f64();
    if secs > 0.0 {
        steps as f64 / secs
    } else {
        f64::NAN
    }
}

/// A bar `[=====>    ] 120/500 steps · 1,234 steps/s · ETA 3s · {tail}`. The rate is the mean
/// since `since`, when the bar stood at `from` (the first reported step): a training step costs
/// about the same all run long, so the mean is steadier than a recent-window estimate and the
/// time left follows from it.
fn bar_style(since: Instant, from: u64, tail: &str) -> ProgressStyle {
    let template = format!("{{spinner}} [{{bar:30}}] {{pos}}/{{len}} steps · {{rate}} · {{left}} · {tail}");
    let mean = move |s: &ProgressState| per_sec(s.pos().saturating_sub(from), since);
    ProgressStyle::with_template(&template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key("rate", move |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = w.write_str(&rate(mean(s)));
        })
        .with_key("left", move |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = w.write_str(&eta(s.len().unwrap_or(0).saturating_sub(s.pos()), mean(s)));
        })
        .progress_chars("=> ")
}

/// `ETA 3s` from the steps left and the rate; `ETA –` without a rate.
fn eta(left: u64, per_sec: f64) -> String {
    if per_sec.is_finite() && per_sec > 0.0 {
        format!("ETA {}", duration(Duration::from_secs_f64((left as f64 / per_sec).min(1e7))))
    } else {
        "ETA –".to_owned()
    }
}

/// When a plain line is due: the first report, every tenth of `total`, the last, or after
/// [`LINE_EVERY`] of silence.
#[derive(Debug)]
struct LineClock {
    tenth: u64,
    last: Option<Instant>,
}

impl LineClock {
    fn new() -> LineClock {
        LineClock { tenth: 0, last: None }
    }

    fn due(&mut self, done: u64, total: u64) -> bool {
        let tenth = done.saturating_mul(10).checked_div(total).unwrap_or(0);
        let due = self.last.is_none_or(|t| t.elapsed() >= LINE_EVERY) || tenth > self.tenth || done >= total;
        if due {
            self.tenth = tenth;
            self.last = Some(Instant::now());
        }
        due
    }
}

/// The progress of one training run.
pub struct RunProgress {
    mode: Mode,
    bar: Option<ProgressBar>,
    /// The last loss, read by the bar's `{loss}` key (no allocation per step).
    loss: Arc<AtomicU64>,
    first_step: Option<Instant>,
    last_step: Option<(Instant, usize, usize)>,
    lines: LineClock,
}

impl RunProgress {
    /// Starts showing progress (a spinner until the first step, on a terminal).
    pub fn start(mode: Mode) -> RunProgress {
        let bar = (mode == Mode::Bar).then(|| spinner("preparing the run"));
        RunProgress {
            mode,
            bar,
            loss: Arc::new(AtomicU64::new(f64::NAN.to_bits())),
            first_step: None,
            last_step: None,
            lines: LineClock::new(),
        }
    }

    /// The training callback: one call per step.
    pub fn step(&mut self, p: Progress) {
        if self.mode == Mode::Off {
            return;
        }
        let now = Instant::now();
        let first = *self.first_step.get_or_insert(now);
        self.last_step = Some((now, p.step, p.total_steps));
        let (step, total) = (p.step as u64, p.total_steps as u64);
        if let Some(bar) = &self.bar {
            self.loss.store(p.loss.to_bits(), Ordering::Relaxed);
            if bar.length().is_none() {
                bar.disable_steady_tick();
                bar.set_style(self.bar_style(first, step));
                bar.set_length(total);
            }
            bar.set_position(step);
            if step >= total {
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_message(format!("trained {step}/{total} steps; analysing, verifying recommendations"));
                bar.reset_elapsed();
                bar.enable_steady_tick(TICK);
            }
        } else if self.lines.due(step, total) {
            let rate_now = if step > 1 { per_sec(step - 1, first) } else { f64::NAN };
            let pct = (step * 100).checked_div(total).unwrap_or(100);
            eprintln!(
                "step {step}/{total} ({pct}%) loss {} · {} · {}",
                num(p.loss),
                rate(rate_now),
                eta(total.saturating_sub(step), rate_now)
            );
        }
    }

    fn bar_style(&self, since: Instant, from: u64) -> ProgressStyle {
        let loss = Arc::clone(&self.loss);
        bar_style(since, from, "loss {loss}").with_key("loss", move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = w.write_str(&num(f64::from_bits(loss.load(Ordering::Relaxed))));
        })
    }

    /// The run (and its analysis) ended with `outcome`: one line that says how far it got.
    /// `None` (the spec was refused, the engine failed): the bar is cleared, nothing printed.
    pub fn end(&mut self, outcome: Option<&str>) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        let Some(outcome) = outcome.filter(|_| self.mode != Mode::Off) else { return };
        let Some((at, step, total)) = self.last_step else {
            eprintln!("training {outcome}: no step ran");
            return;
        };
        let took = self.first_step.map_or(Duration::ZERO, |f| at.duration_since(f));
        let per_sec = if step > 1 && took > Duration::ZERO { (step - 1) as f64 / took.as_secs_f64() } else { f64::NAN };
        eprintln!("training {outcome}: {step}/{total} steps in {} ({})", duration(took), rate(per_sec));
    }
}

/// The progress of an experiment, from the job service's counts.
pub struct ExperimentBar {
    mode: Mode,
    bar: Option<ProgressBar>,
    started: Instant,
    last: Option<ExperimentProgress>,
    lines: LineClock,
}

impl ExperimentBar {
    /// Starts showing progress.
    pub fn start(mode: Mode) -> ExperimentBar {
        let bar = (mode == Mode::Bar).then(|| spinner("queueing the runs"));
        ExperimentBar { mode, bar, started: Instant::now(), last: None, lines: LineClock::new() }
    }

    /// One poll of the experiment's progress.
    pub fn update(&mut self, p: ExperimentProgress) {
        if self.mode == Mode::Off || self.last == Some(p) {
            return;
        }
        let runs_changed = self.last.is_none_or(|l| l.runs_ended != p.runs_ended);
        self.last = Some(p);
        let runs = format!("runs {}/{} ended, {} running", p.runs_ended, p.runs, p.runs_running);
        if let Some(bar) = &self.bar {
            if bar.length().is_none() && p.total_steps > 0 {
                bar.disable_steady_tick();
                bar.set_style(bar_style(Instant::now(), p.step, "{msg}"));
                bar.set_length(p.total_steps);
                bar.enable_steady_tick(TICK);
            }
            bar.set_position(p.step);
            bar.set_message(runs);
        } else if self.lines.due(p.step, p.total_steps) || runs_changed {
            let per_sec = per_sec(p.step, self.started);
            eprintln!(
                "{runs}, steps {}/{} · {} · {}",
                p.step,
                p.total_steps,
                rate(per_sec),
                eta(p.total_steps.saturating_sub(p.step), per_sec)
            );
        }
    }

    /// The experiment ended with `status`.
    pub fn end(&mut self, status: &str) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if self.mode == Mode::Off {
            return;
        }
        let took = self.started.elapsed();
        match self.last {
            Some(p) => eprintln!(
                "experiment {status}: {}/{} runs ended, {} steps in {} ({})",
                p.runs_ended,
                p.runs,
                p.step,
                duration(took),
                rate(per_sec(p.step, self.started))
            ),
            None => eprintln!("experiment {status} in {}", duration(took)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_terminal_gets_the_bar_a_pipe_gets_lines_only_when_asked_and_no_progress_wins() {
        let args = |progress, no_progress| ProgressArgs { progress, no_progress };
        assert_eq!(Mode::choose(args(false, false), true, true), Mode::Bar);
        assert_eq!(Mode::choose(args(false, false), true, false), Mode::Lines, "a dumb terminal");
        assert_eq!(Mode::choose(args(false, false), false, false), Mode::Off);
        assert_eq!(Mode::choose(args(true, false), false, false), Mode::Lines);
        assert_eq!(Mode::choose(args(false, true), true, true), Mode::Off);
    }

    #[test]
    fn lines_come_at_the_first_step_every_tenth_and_the_last() {
        let mut clock = LineClock::new();
        let due: Vec<u64> = (1..=30).filter(|&s| clock.due(s, 30)).collect();
        assert_eq!(due, [1, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30]);
        let mut clock = LineClock::new();
        let due: Vec<u64> = (1..=3).filter(|&s| clock.due(s, 3)).collect();
        assert_eq!(due, [1, 2, 3], "a short run shows every step");
    }
}
