//! The training step loop does not allocate in proportion to steps (issue 2, must-show 5).
//!
//! A counting global allocator (per thread, so that tests running in parallel do not count each
//! other) measures the allocations of `Session::step`. After a warm-up (buffers take their
//! shapes on the first steps):
//! - without probes, a step allocates nothing at all: N and 2N steps make no allocation, and
//!   the memory in use after them is what it was before. That includes the matrix products:
//!   faer (`engine::linalg`) keeps its packing memory per thread. Allocations aligned to 32
//!   bytes or more (a GEMM's packing buffers; nothing in the engine asks for more than 16) are
//!   counted apart, so that a product that starts allocating again is named as such;
//! - probed every 10 steps, the steps between probes allocate nothing of their own, and a probe
//!   allocates a bounded amount (pushes onto the probe series; amortised `Vec` growth), no more
//!   in the second half of a run than in the first.
//!
//! Networks: an MLP (dense with batch and layer norm, dropout, a residual block; adam, clipping)
//! and the three recurrent cells.

#![allow(unsafe_code, clippy::expect_used, clippy::unwrap_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use gradscope::engine::config::RunConfig;
use gradscope::engine::train::{spectra_at, Session};
use gradscope::spec::{parse, Limits};
use serde_json::{json, Value};

struct Counting;

/// What this thread allocated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    /// Allocations (and reallocations) other than a GEMM's packing buffers.
    allocs: u64,
    /// Their bytes.
    bytes: u64,
    /// Allocations aligned to 32 bytes or more: a GEMM's packing buffers.
    packing: u64,
    /// Bytes allocated minus bytes freed (any kind).
    live: i64,
}

thread_local! {
    static COUNT: Cell<Counts> = const { Cell::new(Counts { allocs: 0, bytes: 0, packing: 0, live: 0 }) };
}

fn count(layout: Layout, freed: usize) {
    // `try_with`: the allocator may run while this thread's locals are being torn down.
    let _ = COUNT.try_with(|c| {
        let mut n = c.get();
        if layout.align() >= 32 {
            n.packing += 1;
        } else {
            n.allocs += 1;
            n.bytes += layout.size() as u64;
        }
        n.live += layout.size() as i64 - freed as i64;
        c.set(n);
    });
}

fn uncount(layout: Layout) {
    let _ = COUNT.try_with(|c| {
        let mut n = c.get();
        n.live -= layout.size() as i64;
        c.set(n);
    });
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout, 0);
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout, 0);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if let Ok(grown) = Layout::from_size_align(new_size, layout.align()) {
            count(grown, layout.size());
        }
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        uncount(layout);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn counts() -> Counts {
    COUNT.with(Cell::get)
}

fn since(before: Counts) -> Counts {
    let now = counts();
    Counts {
        allocs: now.allocs - before.allocs,
        bytes: now.bytes - before.bytes,
        packing: now.packing - before.packing,
        live: now.live - before.live,
    }
}

fn config(spec: Value) -> RunConfig {
    parse(&spec).expect("spec parses").validate(&Limits::default()).expect("spec is valid")
}

fn mlp() -> RunConfig {
    config(json!({
        "model": {"input_dim": 8, "layers": [
            {"type": "dense", "units": 32, "activation": "tanh", "norm": "batch"},
            {"type": "dropout", "rate": 0.1},
            {"type": "residual", "layers": [{"type": "dense", "units": 32, "activation": "relu"}]},
            {"type": "dense", "units": 16, "activation": "sigmoid", "norm": "layer"},
            {"type": "dense", "units": 3}
        ]},
        "data": {"type": "blobs", "samples": 512, "classes": 3, "dims": 8},
        "training": {"steps": 1000, "batch_size": 32, "optimizer": {"type": "adam", "lr": 0.001},
                     "clip": {"type": "global_norm", "max": 1.0}},
        "probes": {"every": 10}
    }))
}

fn rnn(cell: &str) -> RunConfig {
    config(json!({
        "model": {"input_dim": 2, "layers": [
            {"type": "rnn", "cell": cell, "units": 16},
            {"type": "dense", "units": 1}
        ]},
        "data": {"type": "adding", "length": 20, "samples": 256},
        "training": {"steps": 1000, "batch_size": 16, "loss": "mse", "optimizer": {"type": "sgd", "lr": 0.01}},
        "probes": {"every": 10}
    }))
}

/// Allocations of `n` steps from `*step` on, unprobed, on a record kept alive meanwhile.
fn run(session: &mut Session<'_, f32>, step: &mut usize, n: usize, every: usize) -> Counts {
    let mut record = session.empty_record();
    let before = counts();
    for _ in 0..n {
        let probe = every > 0 && (*step).is_multiple_of(every);
        session.step(&mut record, *step, probe).expect("step");
        *step += 1;
    }
    let used = since(before);
    drop(record);
    used
}

/// `blocks`: recurrent blocks of `W_hh` (0 for the MLP).
fn check(name: &str, config: &RunConfig, blocks: u64) {
    const N: usize = 40;
    let mut session = Session::<f32>::new(config).expect("session");
    let mut step = 0;
    // Warm-up, probed once, so that every buffer (probe buffers too) has its shape.
    run(&mut session, &mut step, 20, 10);

    // Without probes: no allocation, no memory kept, no packing buffer.
    let once = run(&mut session, &mut step, N, 0);
    let twice = run(&mut session, &mut step, 2 * N, 0);
    for (steps, c) in [(N, once), (2 * N, twice)] {
        assert_eq!((c.allocs, c.bytes, c.live), (0, 0, 0), "{name}: {steps} unprobed steps allocated {c:?}");
    }
    assert_eq!((once.packing, twice.packing), (0, 0), "{name}: the products allocated packing buffers");

    // Probed every 10 steps: the steps between probes allocate nothing of their own; a probe's
    // allocations (the series it pushes) do not grow with the step count. Probes that also
    // compute the W_hh spectra (`train::spectra_at` decides where) allocate the eigenvalue
    // solvers' workspaces besides: they are kept out of the halves (where they fall would tip
    // them) and must stay within a fixed number of allocations per W_hh block of the others.
    let (total, every, gap) = (config.training.steps, config.probes.every, session.spectra_gap());
    let mut record = session.empty_record();
    let (mut per_probe, mut per_spectra) = (Vec::new(), Vec::new());
    for _ in 0..200 {
        let probe = step % 10 == 0;
        let before = counts();
        session.step(&mut record, step, probe).expect("step");
        let c = since(before);
        if probe && blocks > 0 && spectra_at(step, total, every, gap) {
            per_spectra.push(c.allocs);
        } else if probe {
            per_probe.push(c.allocs);
        } else {
            assert_eq!((c.allocs, c.live), (0, 0), "{name}: unprobed step {step} allocated {c:?}");
        }
        step += 1;
    }
    let half = per_probe.len() / 2;
    let (first, second): (u64, u64) = (per_probe[..half].iter().sum(), per_probe[half..].iter().sum());
    assert!(second <= first, "{name}: probes allocate more as the run goes on: {per_probe:?}");
    let most = per_probe.iter().copied().max().unwrap_or(0);
    let bound = most + 8 * blocks;
    assert!(
        per_spectra.iter().all(|&n| n <= bound),
        "{name}: a probe with spectra allocated more than {bound}: {per_spectra:?} (others {per_probe:?})"
    );
    eprintln!(
        "{name}: {N} unprobed steps: {} allocations of its own, {} packing buffers (freed), live bytes {:+}; \
         allocations per probe {per_probe:?}, per probe with spectra {per_spectra:?}",
        once.allocs, once.packing, once.live
    );
}

#[test]
fn training_steps_do_not_allocate_in_proportion_to_steps() {
    check("mlp", &mlp(), 0);
    for (cell, blocks) in [("vanilla", 1), ("lstm", 4), ("gru", 3)] {
        check(cell, &rnn(cell), blocks);
    }
}
