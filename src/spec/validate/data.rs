//! Validation of `data`: one function per data source kind, each checking its fields in the
//! order they are reported and recording what the model and training checks need to know
//! ([`DataInfo`]); then the bound on the data's size and the samples left after the validation
//! split. Inline samples and sequences are validated here once, completely (the engine only
//! re-checks what it needs not to panic): empty data, ragged rows, sequences and time steps,
//! non-finite values, target counts, negative labels and class counts, per-step targets.

use super::super::error::index;
use super::super::expand::*;
use super::super::types::*;
use super::{DataInfo, Target, Validator};
use crate::engine::config as e;
use crate::engine::data::{COPY_INPUTS, COPY_SYMBOLS, TEMPORAL_ORDER_INPUTS};

impl Validator<'_> {
    /// Checks `d` (defaults filled) and converts it; `loss` decides how decimal inline labels
    /// are read.
    pub(super) fn data(&mut self, d: &Data, loss: Loss) -> DataInfo {
        use DataSource as S;
        let split = d.validation_split.unwrap_or(VALIDATION_SPLIT);
        let split_ok = self.fraction("/data/validation_split", "validation_split", split, false);
        let mut info = DataInfo { kind: data_kind(&d.source), targets_ptr: "/data/type", ..DataInfo::default() };

        let n_samples = match &d.source {
            S::Xor { samples, noise } => {
                self.planar(&mut info, *samples, *noise, |samples, noise| e::DataConfig::Xor { samples, noise })
            }
            S::Moons { samples, noise } => {
                self.planar(&mut info, *samples, *noise, |samples, noise| e::DataConfig::Moons { samples, noise })
            }
            S::Spirals { samples, noise, classes } => self.spirals(&mut info, *samples, *noise, *classes),
            S::Circles { samples, noise, factor } => self.circles(&mut info, *samples, *noise, *factor),
            S::Blobs { samples, classes, dims, std } => self.blobs(&mut info, *samples, *classes, *dims, *std),
            S::Sine { samples, noise } => self.sine(&mut info, *samples, *noise),
            S::Teacher { samples, dims, classes, outputs, hidden } => {
                self.teacher(&mut info, *samples, *dims, *classes, *outputs, *hidden)
            }
            S::Adding { samples, length } => self.adding(&mut info, *samples, *length),
            S::TemporalOrder { samples, length } => self.temporal_order(&mut info, *samples, *length),
            S::Parity { samples, length } => self.parity(&mut info, *samples, *length),
            S::MarkedRecall { samples, length, vocab } => self.marked_recall(&mut info, *samples, *length, *vocab),
            S::SineSequence { samples, length, noise } => self.sine_sequence(&mut info, *samples, *length, *noise),
            S::Copy { samples, length, delay } => self.copy(&mut info, *samples, *length, *delay),
            S::Inline { x, y } => self.inline(&mut info, x, y, loss),
            S::InlineSequences { x, y } => self.inline_sequences(&mut info, x, y, loss),
        };

        // The generated data lives in memory for the whole run: bound its size, not just its
        // sample count (a million sequences of 10,000 steps would need ~160 GB).
        if let (Some(n), Some(f)) = (n_samples, info.features) {
            let values = n as u128 * f as u128 * info.seq_len.unwrap_or(1) as u128;
            if self.over_limit(
                "/data",
                "the data",
                values,
                "input values (samples x steps x features)",
                self.limits.max_data_values,
            ) {
                info.config = None;
            }
        }

        if let (Some(n), true) = (n_samples, split_ok) {
            // Validation samples are floor(n * split); `split < 1` leaves at least one for training.
            let held_out = (n as f64 * split).floor() as usize;
            info.train_samples = Some(n.saturating_sub(held_out).max(1));
        }
        // A standard deviation needs two samples; with one, every input would become 0.
        if d.standardize == Some(true) && info.train_samples == Some(1) {
            self.cx.push(
                "/data/standardize",
                "`standardize` needs at least 2 training samples to measure each feature's standard deviation, got 1"
                    .to_string(),
            );
            info.config = None;
        }
        info
    }

    // -----------------------------------------------------------------------------------------
    // Fields several kinds share.

    /// `samples`: at least 1, at most `max_samples`.
    fn samples(&mut self, n: Option<u64>) -> Option<usize> {
        let n = self.at_least("/data/samples", "samples", n.unwrap_or(SAMPLES), 1)?;
        (!self.over_limit("/data/samples", "the data", n as u128, "samples", self.limits.max_samples)).then_some(n)
    }

    /// `noise` of the generators whose default is [`NOISE`]: finite and >= 0.
    fn noise(&mut self, z: Option<f64>) -> bool {
        self.non_negative("/data/noise", "noise", z.unwrap_or(NOISE))
    }

    /// `classes`: at least 2, at most `max_units`.
    fn classes(&mut self, n: Option<u64>, default: u64) -> Option<usize> {
        let n = self.at_least("/data/classes", "classes", n.unwrap_or(default), 2)?;
        (!self.over_limit("/data/classes", "the data", n as u128, "classes", self.limits.max_units)).then_some(n)
    }

    // -----------------------------------------------------------------------------------------
    // Generated points. Each returns the sample count when valid.

    /// `xor` and `moons`: 2-D points in 2 classes, made by `config` from samples and noise.
    fn planar(
        &mut self,
        info: &mut DataInfo,
        n: Option<u64>,
        z: Option<f64>,
        config: fn(usize, f64) -> e::DataConfig,
    ) -> Option<usize> {
        let n_samples = self.samples(n);
        let z_ok = self.noise(z);
        info.features = Some(2);
        info.target = Some(Target::Classes(2));
        if let (Some(samples), true) = (n_samples, z_ok) {
            info.config = Some(config(samples, z.unwrap_or(NOISE)));
        }
        n_samples
    }

    fn spirals(&mut self, info: &mut DataInfo, n: Option<u64>, z: Option<f64>, c: Option<u64>) -> Option<usize> {
        let n_samples = self.samples(n);
        let z_ok = self.noise(z);
        let c = self.classes(c, SPIRALS_CLASSES);
        info.features = Some(2);
        info.target = c.map(Target::Classes);
        if let (Some(samples), true, Some(classes)) = (n_samples, z_ok, c) {
            info.config = Some(e::DataConfig::Spirals { samples, noise: z.unwrap_or(NOISE), classes });
        }
        n_samples
    }

    fn circles(&mut self, info: &mut DataInfo, n: Option<u64>, z: Option<f64>, factor: Option<f64>) -> Option<usize> {
        let n_samples = self.samples(n);
        let z_ok = self.noise(z);
        let factor = factor.unwrap_or(CIRCLES_FACTOR);
        let f_ok = factor > 0.0 && factor < 1.0;
        if !f_ok {
            self.cx.push(
                "/data/factor",
                format!("`factor` (inner radius / outer radius) must be in (0, 1), got {factor}"),
            );
        }
        info.features = Some(2);
        info.target = Some(Target::Classes(2));
        if let (Some(samples), true, true) = (n_samples, z_ok, f_ok) {
            info.config = Some(e::DataConfig::Circles { samples, noise: z.unwrap_or(NOISE), factor });
        }
        n_samples
    }

    fn blobs(
        &mut self,
        info: &mut DataInfo,
        n: Option<u64>,
        c: Option<u64>,
        dims: Option<u64>,
        std: Option<f64>,
    ) -> Option<usize> {
        let n_samples = self.samples(n);
        let c = self.classes(c, BLOBS_CLASSES);
        let dims = self.width("/data/dims", "dims", dims.unwrap_or(BLOBS_DIMS), "the data");
        let std = std.unwrap_or(BLOBS_STD);
        let std_ok = self.non_negative("/data/std", "std", std);
        info.features = dims;
        info.target = c.map(Target::Classes);
        if let (Some(samples), Some(classes), Some(dims), true) = (n_samples, c, dims, std_ok) {
            info.config = Some(e::DataConfig::Blobs { samples, classes, dims, std });
        }
        n_samples
    }

    fn sine(&mut self, info: &mut DataInfo, n: Option<u64>, z: Option<f64>) -> Option<usize> {
        let n_samples = self.samples(n);
        let z = z.unwrap_or(SINE_NOISE);
        let z_ok = self.non_negative("/data/noise", "noise", z);
        info.features = Some(1);
        info.target = Some(Target::Values { width: 1, unit: false });
        if let (Some(samples), true) = (n_samples, z_ok) {
            info.config = Some(e::DataConfig::Sine { samples, noise: z });
        }
        n_samples
    }

    fn teacher(
        &mut self,
        info: &mut DataInfo,
        n: Option<u64>,
        dims: Option<u64>,
        c: Option<u64>,
        outputs: Option<u64>,
        hidden: Option<u64>,
    ) -> Option<usize> {
        let n_samples = self.samples(n);
        let dims = self.width("/data/dims", "dims", dims.unwrap_or(TEACHER_DIMS), "the data");
        let hidden = self.width("/data/hidden", "hidden", hidden.unwrap_or(TEACHER_HIDDEN), "the teacher");
        let c = c.unwrap_or(TEACHER_CLASSES);
        let outputs_n = outputs.unwrap_or(TEACHER_OUTPUTS);
        let (target, classes, outputs) = if c == 0 {
            let o = self.width("/data/outputs", "outputs", outputs_n, "the teacher");
            (o.map(|width| Target::Values { width, unit: false }), Some(0), o)
        } else {
            let k = if c == 1 {
                self.cx.push("/data/classes", "`classes` must be 0 (regression) or at least 2, got 1");
                None
            } else {
                self.classes(Some(c), TEACHER_CLASSES)
            };
            // `outputs` is unused for classification; the engine still gets a value.
            (k.map(Target::Classes), k, usize::try_from(outputs_n).ok())
        };
        info.features = dims;
        info.target = target;
        if let (Some(samples), Some(dims), Some(classes), Some(outputs), Some(hidden)) =
            (n_samples, dims, classes, outputs, hidden)
        {
            info.config = Some(e::DataConfig::Teacher { samples, dims, classes, outputs, hidden });
        }
        n_samples
    }

    // -----------------------------------------------------------------------------------------
    // Sequence tasks.

    fn adding(&mut self, info: &mut DataInfo, n: Option<u64>, length: Option<u64>) -> Option<usize> {
        let n_samples = self.samples(n);
        let t = self.seq_len("/data/length", length.unwrap_or(SEQUENCE_LENGTH), 2, "the adding problem");
        self.sequence(info, t, 2, Target::Values { width: 1, unit: false }, false);
        if let (Some(samples), Some(length)) = (n_samples, t) {
            info.config = Some(e::DataConfig::Adding { samples, length });
        }
        n_samples
    }

    fn temporal_order(&mut self, info: &mut DataInfo, n: Option<u64>, length: Option<u64>) -> Option<usize> {
        let n_samples = self.samples(n);
        let t = self.seq_len("/data/length", length.unwrap_or(SEQUENCE_LENGTH), 10, "the temporal-order problem");
        self.sequence(info, t, TEMPORAL_ORDER_INPUTS, Target::Classes(4), false);
        if let (Some(samples), Some(length)) = (n_samples, t) {
            info.config = Some(e::DataConfig::TemporalOrder { samples, length });
        }
        n_samples
    }

    fn parity(&mut self, info: &mut DataInfo, n: Option<u64>, length: Option<u64>) -> Option<usize> {
        let n_samples = self.samples(n);
        let t = self.seq_len("/data/length", length.unwrap_or(PARITY_LENGTH), 1, "a sequence");
        self.sequence(info, t, 1, Target::Classes(2), false);
        if let (Some(samples), Some(length)) = (n_samples, t) {
            info.config = Some(e::DataConfig::Parity { samples, length });
        }
        n_samples
    }

    fn marked_recall(
        &mut self,
        info: &mut DataInfo,
        n: Option<u64>,
        length: Option<u64>,
        vocab: Option<u64>,
    ) -> Option<usize> {
        let n_samples = self.samples(n);
        let t = self.seq_len("/data/length", length.unwrap_or(RECALL_LENGTH), 1, "a sequence");
        let v = self.at_least("/data/vocab", "vocab", vocab.unwrap_or(RECALL_VOCAB), 2);
        let v = v
            .filter(|&v| !self.over_limit("/data/vocab", "the vocabulary", v as u128, "tokens", self.limits.max_units));
        match v {
            Some(v) => self.sequence(info, t, v + 1, Target::Classes(v), false),
            // Still sequence data: the layers are checked as for any sequence.
            None => (info.sequence, info.seq_len) = (true, t),
        }
        if let (Some(samples), Some(length), Some(vocab)) = (n_samples, t, v) {
            info.config = Some(e::DataConfig::MarkedRecall { samples, length, vocab });
        }
        n_samples
    }

    fn sine_sequence(
        &mut self,
        info: &mut DataInfo,
        n: Option<u64>,
        length: Option<u64>,
        z: Option<f64>,
    ) -> Option<usize> {
        let n_samples = self.samples(n);
        let t = self.seq_len("/data/length", length.unwrap_or(SEQUENCE_LENGTH), 1, "a sequence");
        let z = z.unwrap_or(SINE_NOISE);
        let z_ok = self.non_negative("/data/noise", "noise", z);
        self.sequence(info, t, 1, Target::Values { width: 1, unit: false }, true);
        if let (Some(samples), Some(length), true) = (n_samples, t, z_ok) {
            info.config = Some(e::DataConfig::SineSequence { samples, length, noise: z });
        }
        n_samples
    }

    fn copy(&mut self, info: &mut DataInfo, n: Option<u64>, length: Option<u64>, delay: Option<u64>) -> Option<usize> {
        let n_samples = self.samples(n);
        let length = self.at_least("/data/length", "length", length.unwrap_or(COPY_LENGTH), 1);
        // The delimiter takes the last step of the gap, so there must be one.
        let delay = self.at_least("/data/delay", "delay", delay.unwrap_or(COPY_DELAY), 1);
        let mut t = None;
        if let (Some(length), Some(delay)) = (length, delay) {
            // Symbols, blanks, then the recall: the whole input is length + delay + length.
            let total = (length as u128) * 2 + delay as u128;
            let over = self.over_limit(
                "/data/delay",
                "a sequence",
                total,
                "time steps (length + delay + length)",
                self.limits.max_seq_len,
            );
            t = usize::try_from(total).ok().filter(|_| !over);
        }
        self.sequence(info, t, COPY_INPUTS, Target::Classes(COPY_SYMBOLS + 1), true);
        if let (Some(samples), Some(length), Some(delay), Some(_)) = (n_samples, length, delay, t) {
            info.config = Some(e::DataConfig::Copy { samples, length, delay });
        }
        n_samples
    }

    // -----------------------------------------------------------------------------------------
    // Inline data.

    fn inline(&mut self, info: &mut DataInfo, x: &[Vec<f64>], y: &InlineTargets, loss: Loss) -> Option<usize> {
        let n_samples = self.inline_x(x);
        if let Some(features) = self.rows_width("/data/x", "x", x.iter().map(Vec::len)) {
            info.features = Some(features);
        }
        let finite = self.all_finite(
            "/data/x",
            "x",
            x.iter()
                .enumerate()
                .flat_map(|(i, r)| r.iter().enumerate().map(move |(j, v)| (format!("/data/x/{i}/{j}"), v))),
        );
        let targets = self.inline_targets(y, x.len(), loss);
        if let Some((targets, target)) = targets {
            info.target = Some(target);
            if finite && info.features.is_some() && n_samples.is_some() {
                info.config = Some(e::DataConfig::Inline { x: x.to_vec(), y: targets });
            }
        }
        n_samples
    }

    fn inline_sequences(
        &mut self,
        info: &mut DataInfo,
        x: &[Vec<Vec<f64>>],
        y: &InlineSequenceTargets,
        loss: Loss,
    ) -> Option<usize> {
        let n_samples = self.inline_x(x);
        info.sequence = true;
        info.targets_ptr = "/data/y";
        let steps = self.inline_steps(x);
        info.features = self.step_width(x);
        let finite = self.all_finite(
            "/data/x",
            "x",
            x.iter().enumerate().flat_map(|(i, s)| {
                s.iter()
                    .enumerate()
                    .flat_map(move |(t, r)| r.iter().enumerate().map(move |(j, v)| (format!("/data/x/{i}/{t}/{j}"), v)))
            }),
        );
        let targets = match (y, steps) {
            (InlineSequenceTargets::PerSequence(y), _) => self
                .inline_targets(y, x.len(), loss)
                .map(|(t, target)| (e::InlineSequenceTargets::PerSequence(t), target)),
            (InlineSequenceTargets::ClassesPerStep(rows), Some(steps)) => {
                info.per_step = true;
                self.step_labels(rows, x.len(), steps)
            }
            (InlineSequenceTargets::ValuesPerStep(rows), Some(steps)) => {
                info.per_step = true;
                self.step_values(rows, x.len(), steps)
            }
            // Per-step targets cannot be checked against an unknown length.
            (_, None) => {
                info.per_step = true;
                None
            }
        };
        info.seq_len = steps;
        if let Some((targets, target)) = targets {
            info.target = Some(target);
            if finite && info.features.is_some() && steps.is_some() && n_samples.is_some() {
                info.config = Some(e::DataConfig::InlineSequences { x: x.to_vec(), y: targets });
            }
        }
        n_samples
    }

    /// A sequence length: at least `min` (`what` needs that many, e.g. "the adding problem")
    /// and at most `max_seq_len`.
    fn seq_len(&mut self, ptr: &str, n: u64, min: u64, what: &str) -> Option<usize> {
        if n < min {
            let steps = if min == 1 { "time step" } else { "time steps" };
            self.cx.push(ptr, format!("{what} needs at least {min} {steps}, got `length` {n}"));
            return None;
        }
        if self.over_limit(ptr, "a sequence", n.into(), "time steps", self.limits.max_seq_len) {
            return None;
        }
        usize::try_from(n).ok()
    }

    /// Records what a generated sequence task gives: `steps` steps (`None` if invalid) of
    /// `features` inputs, `target` (per step or per sequence).
    fn sequence(&mut self, info: &mut DataInfo, steps: Option<usize>, features: usize, target: Target, per_step: bool) {
        info.sequence = true;
        info.seq_len = steps;
        info.features = Some(features);
        info.target = Some(target);
        info.per_step = per_step;
    }

    /// The common length `T` of inline sequences: the first one's, at least 1 and within
    /// `max_seq_len`; every other sequence must match it (ragged ones are reported each at its
    /// pointer, since nothing is padded or masked). `None` when any of that fails.
    fn inline_steps(&mut self, x: &[Vec<Vec<f64>>]) -> Option<usize> {
        let steps = x.first()?.len();
        if steps == 0 {
            self.cx.push("/data/x/0", "a sequence needs at least one time step");
            return None;
        }
        let mut ok = !self.over_limit("/data/x/0", "a sequence", steps as u128, "time steps", self.limits.max_seq_len);
        for (i, seq) in x.iter().enumerate().skip(1) {
            if seq.len() != steps {
                self.cx.push(
                    index("/data/x", i),
                    format!(
                        "sequence {i} has {} time steps but sequence 0 has {steps}; all sequences must have \
                         the same length (ragged sequences are not padded or masked)",
                        seq.len()
                    ),
                );
                ok = false;
            }
        }
        ok.then_some(steps)
    }

    /// The common number of features of every time step of inline sequences, reporting empty
    /// and ragged steps at `/data/x/i/t`.
    fn step_width(&mut self, x: &[Vec<Vec<f64>>]) -> Option<usize> {
        let width = x.first()?.first()?.len();
        if width == 0 {
            self.cx.push("/data/x/0/0", "time steps of `x` need at least one value");
            return None;
        }
        let mut ok = true;
        for (i, seq) in x.iter().enumerate() {
            for (t, step) in seq.iter().enumerate() {
                if step.len() != width {
                    self.cx.push(
                        format!("/data/x/{i}/{t}"),
                        format!(
                            "time step {t} of sequence {i} has {} features but the first step has {width}",
                            step.len()
                        ),
                    );
                    ok = false;
                }
            }
        }
        if self.over_limit("/data/x", "each time step", width as u128, "features", self.limits.max_units) {
            return None;
        }
        ok.then_some(width)
    }

    /// Checks that `y` has one entry per sequence.
    fn target_count(&mut self, count: usize, samples: usize) -> bool {
        if count != samples {
            self.cx.push("/data/y", format!("`y` has {count} targets but `x` has {samples} sequences"));
        }
        count == samples
    }

    /// Checks that sequence `i` has one per-step target per time step.
    fn step_count(&mut self, i: usize, got: usize, steps: usize, what: &str, hint: &str) -> bool {
        if got != steps {
            self.cx.push(
                index("/data/y", i),
                format!("sequence {i} has {got} {what} but {steps} time steps; per-step targets need one per time step{hint}"),
            );
        }
        got == steps
    }

    /// Per-step class labels (`[[c_0, ..., c_T-1], ...]`).
    fn step_labels(
        &mut self,
        rows: &[Vec<i64>],
        samples: usize,
        steps: usize,
    ) -> Option<(e::InlineSequenceTargets, Target)> {
        let mut ok = self.target_count(rows.len(), samples);
        let hint = " (a list of integer lists is read as class labels per time step; write per-sequence \
                    regression rows with decimal points, e.g. [[1.0, 2.0]])";
        let mut out = Vec::with_capacity(rows.len());
        let mut classes = 0usize;
        for (i, row) in rows.iter().enumerate() {
            ok &= self.step_count(i, row.len(), steps, "labels", hint);
            let mut labels = Vec::with_capacity(row.len());
            for (t, &l) in row.iter().enumerate() {
                match usize::try_from(l) {
                    Ok(l) => {
                        classes = classes.max(l.saturating_add(1));
                        labels.push(l);
                    }
                    Err(_) => {
                        ok = false;
                        self.cx.push(
                            format!("/data/y/{i}/{t}"),
                            format!("class label {l} is negative; labels are 0, 1, 2, ..."),
                        );
                    }
                }
            }
            out.push(labels);
        }
        if self.over_limit("/data/y", "the data", classes as u128, "classes (largest label + 1)", self.limits.max_units)
        {
            return None;
        }
        ok.then_some((e::InlineSequenceTargets::ClassesPerStep(out), Target::Classes(classes)))
    }

    /// Per-step regression rows (`[[[..K..] x T], ...]`).
    fn step_values(
        &mut self,
        rows: &[Vec<Vec<f64>>],
        samples: usize,
        steps: usize,
    ) -> Option<(e::InlineSequenceTargets, Target)> {
        let mut ok = self.target_count(rows.len(), samples);
        for (i, seq) in rows.iter().enumerate() {
            ok &= self.step_count(i, seq.len(), steps, "target rows", "");
        }
        let width = match rows.first().and_then(|s| s.first()).map(Vec::len) {
            Some(0) | None => {
                self.cx.push("/data/y/0", "per-step targets need at least one value per time step");
                None
            }
            Some(w) => Some(w),
        };
        if let Some(w) = width {
            for (i, seq) in rows.iter().enumerate() {
                for (t, row) in seq.iter().enumerate() {
                    if row.len() != w {
                        self.cx.push(
                            format!("/data/y/{i}/{t}"),
                            format!("this time step has {} target values but the first has {w}", row.len()),
                        );
                        ok = false;
                    }
                }
            }
            ok &= !self.over_limit("/data/y", "each target", w as u128, "values", self.limits.max_units);
        }
        let finite = self.all_finite(
            "/data/y",
            "y",
            rows.iter().enumerate().flat_map(|(i, s)| {
                s.iter()
                    .enumerate()
                    .flat_map(move |(t, r)| r.iter().enumerate().map(move |(k, v)| (format!("/data/y/{i}/{t}/{k}"), v)))
            }),
        );
        let unit = rows.iter().flatten().flatten().all(|v| (0.0..=1.0).contains(v));
        let width = width.filter(|_| ok && finite)?;
        Some((e::InlineSequenceTargets::ValuesPerStep(rows.to_vec()), Target::Values { width, unit }))
    }

    /// Count of inline samples: at least one, within the limit.
    fn inline_x<T>(&mut self, x: &[T]) -> Option<usize> {
        if x.is_empty() {
            self.cx.push("/data/x", "inline data needs at least one sample");
            return None;
        }
        (!self.over_limit("/data/x", "the data", x.len() as u128, "samples", self.limits.max_samples))
            .then_some(x.len())
    }

    /// The common width of rows, reporting empty and ragged ones (at `ptr/i`).
    fn rows_width(&mut self, ptr: &str, name: &str, widths: impl Iterator<Item = usize>) -> Option<usize> {
        let mut first = None;
        let mut ok = true;
        for (i, w) in widths.enumerate() {
            match first {
                None if w == 0 => {
                    self.cx.push(index(ptr, i), format!("rows of `{name}` need at least one value"));
                    return None;
                }
                None => first = Some(w),
                Some(f) if f != w => {
                    self.cx.push(index(ptr, i), format!("row {i} of `{name}` has {w} values but the first has {f}"));
                    ok = false;
                }
                Some(_) => {}
            }
        }
        let f = first?;
        if self.over_limit(ptr, "each sample", f as u128, "features", self.limits.max_units) {
            return None;
        }
        ok.then_some(f)
    }

    /// Inline targets as the engine takes them, and what the output layer must produce.
    fn inline_targets(&mut self, y: &InlineTargets, samples: usize, loss: Loss) -> Option<(e::InlineTargets, Target)> {
        let count = match y {
            InlineTargets::Labels(v) => v.len(),
            InlineTargets::Scalars(v) => v.len(),
            InlineTargets::Rows(v) => v.len(),
        };
        let count_ok = count == samples;
        if !count_ok {
            self.cx.push("/data/y", format!("`y` has {count} targets but `x` has {samples} samples"));
        }
        let labels = |v: &mut Self, labels: Vec<usize>| -> Option<(e::InlineTargets, Target)> {
            let classes = labels.iter().max().map_or(0, |m| m.saturating_add(1));
            if v.over_limit("/data/y", "the data", classes as u128, "classes (largest label + 1)", v.limits.max_units) {
                return None;
            }
            Some((e::InlineTargets::Classes(labels), Target::Classes(classes)))
        };
        let out = match y {
            InlineTargets::Labels(v) => {
                let mut ok = true;
                let mut out = Vec::with_capacity(v.len());
                for (i, &l) in v.iter().enumerate() {
                    match usize::try_from(l) {
                        Ok(l) => out.push(l),
                        Err(_) => {
                            ok = false;
                            self.cx.push(
                                index("/data/y", i),
                                format!("class label {l} is negative; labels are 0, 1, 2, ... (write regression targets with a decimal point, e.g. {l}.0, or as arrays)"),
                            );
                        }
                    }
                }
                if ok {
                    labels(self, out)
                } else {
                    None
                }
            }
            // Decimal targets with an explicit cross_entropy: accept integral ones as labels
            // (`1.0` is what numpy-based clients send), name the others.
            InlineTargets::Scalars(v) if loss == Loss::CrossEntropy => {
                let mut ok = true;
                let mut out = Vec::with_capacity(v.len());
                for (i, &x) in v.iter().enumerate() {
                    if x.is_finite() && x >= 0.0 && x.fract() == 0.0 && x < 9.0e15 {
                        out.push(x as usize);
                    } else {
                        ok = false;
                        self.cx.push(
                            index("/data/y", i),
                            format!("label {x} is not a class index (an integer >= 0), which cross_entropy needs"),
                        );
                    }
                }
                if ok {
                    labels(self, out)
                } else {
                    None
                }
            }
            InlineTargets::Scalars(v) => {
                let finite =
                    self.all_finite("/data/y", "y", v.iter().enumerate().map(|(i, x)| (index("/data/y", i), x)));
                let unit = v.iter().all(|x| (0.0..=1.0).contains(x));
                finite.then(|| {
                    (e::InlineTargets::Values(v.iter().map(|x| vec![*x]).collect()), Target::Values { width: 1, unit })
                })
            }
            InlineTargets::Rows(rows) => {
                let width = self.rows_width("/data/y", "y", rows.iter().map(Vec::len));
                let finite = self.all_finite(
                    "/data/y",
                    "y",
                    rows.iter()
                        .enumerate()
                        .flat_map(|(i, r)| r.iter().enumerate().map(move |(j, x)| (format!("/data/y/{i}/{j}"), x))),
                );
                let unit = rows.iter().flatten().all(|x| (0.0..=1.0).contains(x));
                match (width, finite) {
                    (Some(width), true) => {
                        Some((e::InlineTargets::Values(rows.clone()), Target::Values { width, unit }))
                    }
                    _ => None,
                }
            }
        };
        out.filter(|_| count_ok)
    }
}

/// The data's `type` name, for messages.
fn data_kind(s: &DataSource) -> &'static str {
    use DataSource as S;
    match s {
        S::Xor { .. } => "xor",
        S::Spirals { .. } => "spirals",
        S::Circles { .. } => "circles",
        S::Moons { .. } => "moons",
        S::Blobs { .. } => "blobs",
        S::Sine { .. } => "sine",
        S::Teacher { .. } => "teacher",
        S::Adding { .. } => "adding",
        S::Copy { .. } => "copy",
        S::TemporalOrder { .. } => "temporal_order",
        S::Parity { .. } => "parity",
        S::MarkedRecall { .. } => "marked_recall",
        S::SineSequence { .. } => "sine_sequence",
        S::Inline { .. } => "inline",
        S::InlineSequences { .. } => "inline_sequences",
    }
}
