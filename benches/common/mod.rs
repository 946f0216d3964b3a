//! The timing harness the step benchmarks share: blocks of steps timed in wall and CPU time,
//! with the other processes' CPU use measured beside them (the machine is shared), contended
//! blocks retried, medians, the timing fields of every JSON line and its output.

// Each bench binary compiles this module and uses a part of it.
#![allow(dead_code)]

use std::fs::OpenOptions;
use std::io::Write;
use std::time::Instant;

use gradscope::engine::config::RunConfig;
use gradscope::engine::train::Session;
use serde::Serialize;

/// Other processes using more than this many cores during a block make it "contended".
pub const BUSY_THRESHOLD: f64 = 0.15;

/// Non-idle jiffies of all CPUs (/proc/stat) and of this process (/proc/self/stat); both are in
/// USER_HZ units.
pub fn jiffies() -> (f64, f64) {
    let machine = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            let v: Vec<f64> = s.lines().next()?.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
            let idle = v.get(3)? + v.get(4).copied().unwrap_or(0.0);
            Some(v.iter().take(8).sum::<f64>() - idle)
        })
        .unwrap_or(0.0);
    let own = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name (which may contain spaces) start at field 3.
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            // utime, stime, cutime, cstime are fields 14-17 (indices 11-14 of `rest`).
            f.get(11..15)?.iter().map(|x| x.parse::<f64>().ok()).sum()
        })
        .unwrap_or(0.0);
    (machine, own)
}

/// Seconds this thread has run on a CPU (/proc/thread-self/schedstat, in ns), or NaN.
pub fn thread_cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(f64::NAN, |ns| ns * 1e-9)
}

/// What a timed call measured.
pub struct Timed<R> {
    pub result: R,
    /// Wall seconds.
    pub wall: f64,
    /// Seconds on a CPU (excludes time the scheduler gave to other processes).
    pub cpu: f64,
    /// Cores' worth of CPU that other processes used meanwhile.
    pub other: f64,
}

pub fn timed<R>(f: impl FnOnce() -> R) -> Timed<R> {
    const USER_HZ: f64 = 100.0;
    let (m0, o0) = jiffies();
    let c0 = thread_cpu_seconds();
    let t0 = Instant::now();
    let result = f();
    let wall = t0.elapsed().as_secs_f64();
    let cpu = thread_cpu_seconds() - c0;
    let (m1, o1) = jiffies();
    let other = ((m1 - m0) - (o1 - o0)) / USER_HZ / wall.max(1e-9);
    Timed { result, wall, cpu, other: other.max(0.0) }
}

pub struct Mode<'c> {
    pub name: &'static str,
    pub probe: bool,
    pub session: Session<'c, f32>,
    pub step: usize,
    pub steps_per_block: usize,
    pub per_step: Vec<f64>,
    pub cpu_per_step: Vec<f64>,
    pub loads: Vec<f64>,
    pub last_loss: f64,
}

impl Mode<'_> {
    /// Runs `n` steps on a fresh record; returns the last loss.
    pub fn run(&mut self, n: usize) -> f64 {
        let mut record = self.session.empty_record();
        let mut loss = f64::NAN;
        for _ in 0..n {
            match self.session.step(&mut record, self.step, self.probe) {
                Ok(v) => loss = v.loss,
                Err(e) => panic!("step failed: {e}"),
            }
            self.step += 1;
        }
        std::hint::black_box(&record);
        loss
    }

    pub fn calibrate(&mut self, warmup: usize, block_sec: f64, fixed: usize) {
        self.run(warmup);
        if fixed > 0 {
            self.steps_per_block = fixed;
            return;
        }
        let mut n = 1;
        let per = loop {
            let t0 = Instant::now();
            self.run(n);
            let t = t0.elapsed().as_secs_f64();
            if t >= 0.05 || n >= 1 << 16 {
                break t / n as f64;
            }
            n *= 2;
        };
        self.steps_per_block = ((block_sec / per).round() as usize).max(3);
    }

    pub fn block(&mut self, retries: usize) {
        let n = self.steps_per_block as f64;
        let mut best: Option<Timed<f64>> = None;
        for attempt in 0..=retries {
            let t = timed(|| self.run(self.steps_per_block));
            self.last_loss = t.result;
            let other = t.other;
            if best.as_ref().is_none_or(|b| other < b.other) {
                best = Some(t);
            }
            if other < BUSY_THRESHOLD || attempt == retries {
                break;
            }
            std::thread::sleep(std::time::Duration::from_secs(2));
        }
        if let Some(t) = best {
            self.per_step.push(t.wall / n);
            self.cpu_per_step.push(t.cpu / n);
            self.loads.push(t.other);
        }
    }
}

pub fn round(x: f64, digits: i32) -> f64 {
    let s = 10f64.powi(digits);
    (x * s).round() / s
}

pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => 0.5 * (s[n / 2 - 1] + s[n / 2]),
    }
}

/// How the modes are timed.
pub struct Blocks {
    /// Untimed steps before calibration.
    pub warmup: usize,
    /// Target seconds per block.
    pub block_sec: f64,
    /// Fixed steps per block (0: calibrated from `block_sec`).
    pub steps_per_block: usize,
    /// Timed blocks per mode.
    pub blocks: usize,
    /// Re-runs of a contended block.
    pub retries: usize,
}

/// The modes of `wanted` (comma-separated: `plain`, `instrumented`) on `run`, each calibrated
/// after a warm-up, then timed in interleaved blocks (A B A B ...), so that a drift in the
/// machine's speed hits every mode alike.
pub fn measure<'c>(run: &'c RunConfig, wanted: &str, b: &Blocks) -> Vec<Mode<'c>> {
    let wanted: Vec<&str> = wanted.split(',').filter(|m| !m.is_empty()).collect();
    let mut modes: Vec<Mode<'c>> = [("plain", false), ("instrumented", true)]
        .into_iter()
        .filter(|(name, _)| wanted.contains(name))
        .map(|(name, probe)| Mode {
            name,
            probe,
            session: match Session::<f32>::new(run) {
                Ok(s) => s,
                Err(e) => panic!("invalid bench config: {e}"),
            },
            step: 0,
            steps_per_block: 0,
            per_step: Vec::new(),
            cpu_per_step: Vec::new(),
            loads: Vec::new(),
            last_loss: f64::NAN,
        })
        .collect();
    for m in &mut modes {
        m.calibrate(b.warmup, b.block_sec, b.steps_per_block);
    }
    for _ in 0..b.blocks {
        for m in &mut modes {
            m.block(b.retries);
        }
    }
    modes
}

/// What a mode's blocks measured: the fields every bench line shares.
#[derive(Serialize)]
pub struct Timing {
    pub steps_per_sec: f64,
    pub us_per_step: f64,
    pub us_per_step_min: f64,
    pub us_per_step_max: f64,
    pub spread_pct: f64,
    /// Median CPU time per step: unlike wall time, not inflated when the scheduler runs other
    /// processes on this core (shared caches still are).
    pub cpu_us_per_step: f64,
    pub steps_per_block: usize,
    pub blocks: usize,
    pub other_busy_cores_max: f64,
    pub contended_blocks: usize,
    /// Over the `plain` mode, for the instrumented one.
    pub overhead_pct: Option<f64>,
    /// `flops` per step over the median wall time.
    pub achieved_gflops: f64,
    pub last_batch_loss: f64,
}

impl Timing {
    /// Of mode `m` among `modes` (whose `plain` one gives the overhead), `flops` per step.
    pub fn of(m: &Mode<'_>, modes: &[Mode<'_>], flops: f64) -> Timing {
        let plain_us = modes.iter().find(|m| !m.probe).map(|m| median(&m.per_step) * 1e6);
        let med = median(&m.per_step);
        let (min, max) = m.per_step.iter().fold((f64::INFINITY, 0.0f64), |(a, b), &v| (a.min(v), b.max(v)));
        let us = med * 1e6;
        Timing {
            steps_per_sec: round(1.0 / med, 2),
            us_per_step: round(us, 1),
            us_per_step_min: round(min * 1e6, 1),
            us_per_step_max: round(max * 1e6, 1),
            spread_pct: round((max - min) / med * 100.0, 1),
            cpu_us_per_step: round(median(&m.cpu_per_step) * 1e6, 1),
            steps_per_block: m.steps_per_block,
            blocks: m.per_step.len(),
            other_busy_cores_max: round(m.loads.iter().copied().fold(0.0, f64::max), 2),
            contended_blocks: m.loads.iter().filter(|&&l| l >= BUSY_THRESHOLD).count(),
            overhead_pct: plain_us.filter(|_| m.probe).map(|p| round((us / p - 1.0) * 100.0, 1)),
            achieved_gflops: round(flops / us / 1e3, 2),
            last_batch_loss: round(m.last_loss, 4),
        }
    }
}

/// One JSON line of a gradscope bench, fields in the order of the PyTorch scripts' lines: what ran
/// (`config`, `mode`), how fast (`timing`, e.g. [`Timing`]) and the bench's own figures (`extra`,
/// e.g. [`MatmulFlops`]); `framework` is "gradscope" and `threads` 1.
#[derive(Serialize)]
pub struct Line<'a, C, M, X> {
    framework: &'static str,
    bench: &'static str,
    config: C,
    threads: usize,
    instrumented: bool,
    mode: &'static str,
    #[serde(flatten)]
    timing: M,
    #[serde(flatten)]
    extra: X,
    tag: &'a str,
}

impl<'a, C, M, X> Line<'a, C, M, X> {
    /// The line of `mode` (probed when `instrumented`) of `bench` on `config`.
    pub fn new(
        bench: &'static str,
        config: C,
        mode: &'static str,
        instrumented: bool,
        timing: M,
        extra: X,
        tag: &'a str,
    ) -> Self {
        Line { framework: "gradscope", bench, config, threads: 1, instrumented, mode, timing, extra, tag }
    }
}

/// The matrix-product FLOPs of one step, in GFLOP.
#[derive(Serialize)]
pub struct MatmulFlops {
    pub matmul_gflop_per_step: f64,
}

impl MatmulFlops {
    pub fn of(flops: f64) -> Self {
        MatmulFlops { matmul_gflop_per_step: round(flops / 1e9, 4) }
    }
}

/// Prints one JSON line and appends it to `out` when given.
pub fn emit(line: &impl Serialize, out: Option<&str>) {
    let text = match serde_json::to_string(line) {
        Ok(t) => t,
        Err(e) => panic!("serialising a bench line: {e}"),
    };
    println!("{text}");
    if let Some(path) = out {
        let written = OpenOptions::new().create(true).append(true).open(path).and_then(|mut f| writeln!(f, "{text}"));
        if let Err(e) = written {
            eprintln!("cannot append to {path}: {e}");
        }
    }
}
