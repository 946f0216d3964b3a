//! `gradscope experiment`: an experiment on an in-process job service (the same admission, pool
//! and summary as the server), with progress on stderr, and the summary, the Markdown table or
//! the JSON on stdout.

use std::time::Duration;

use serde_json::Value;

use super::args::{Outputs, ProgressArgs};
use super::failure::{Done, Failure};
use super::files;
use super::progress::{ExperimentBar, Mode};
use super::summary;
use crate::analysis::experiment as exp;
use crate::jobs::{JobService, JobsConfig, JobsError, Tenant, WorkerPriority};
use crate::problem::Problem;

/// The flags of `gradscope experiment` besides the file.
pub struct ExperimentArgs {
    /// Worker threads.
    pub workers: Option<usize>,
    /// `--progress` / `--no-progress`.
    pub progress: ProgressArgs,
    /// Print the Markdown table.
    pub table: bool,
    /// `--max-job-memory`.
    pub max_job_memory: Option<u64>,
    /// Where the experiment goes.
    pub outputs: Outputs,
}

/// Runs the experiment of `body` and returns what to print.
pub fn experiment(body: &[u8], args: &ExperimentArgs) -> Result<Done, Failure> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| Failure::Problem(Problem::malformed_json(e.to_string())))?;
    // The output paths are checked before any training, so a typo does not cost the runs.
    files::check(&args.outputs, None)?;
    let defaults = JobsConfig::default();
    let workers = args.workers.unwrap_or(defaults.workers).max(1);
    let max_job_memory = args.max_job_memory.unwrap_or_else(|| crate::config::default_job_memory(workers));
    let config = JobsConfig {
        workers,
        limits: crate::spec::Limits { max_job_memory, ..defaults.limits.clone() },
        job_timeout: Duration::from_secs(24 * 3600),
        queue_capacity: usize::MAX / 2,
        worker_priority: WorkerPriority::Nice(0),
        ..defaults
    };
    // The job layer's store and upkeep are async: a small runtime beside the worker threads.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| Failure::Io(format!("starting the runtime: {e}")))?;
    let service =
        runtime.block_on(JobService::start(config)).map_err(|e| Failure::Io(format!("starting the workers: {e}")))?;
    let to_failure = |e: JobsError| match e {
        JobsError::Invalid(p) => Failure::from(p),
        JobsError::NotFound { id } => Failure::Problem(Problem::new(
            "job-not-found",
            "Job not found",
            404,
            format!("no job with id `{id}`: `remedies_of` needs the server that ran the job"),
        )),
        other => Failure::Io(other.to_string()),
    };
    let submitted = runtime.block_on(service.submit_experiment(&Tenant::open(), &value)).map_err(to_failure)?;
    let id = submitted.id.clone();
    let mut shown = ExperimentBar::start(Mode::of(args.progress));
    let done = loop {
        let e = match runtime.block_on(service.get_experiment(&Tenant::open(), &id)) {
            Ok(e) => e,
            Err(e) => {
                shown.end("failed");
                return Err(to_failure(e));
            }
        };
        shown.update(e.progress);
        if e.status.is_terminal() {
            shown.end(e.status.name());
            break e;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    runtime.block_on(service.finish_shutdown(Duration::ZERO));
    let result = done.result.as_ref().ok_or_else(|| Failure::Io("the experiment ended without a result".into()))?;
    let json = serde_json::to_string_pretty(&done).map_err(|e| Failure::Io(e.to_string()))?;
    let mut written = Vec::new();
    if let Some(path) = &args.outputs.output {
        written.push(files::write("JSON experiment", path, &format!("{json}\n"))?);
    }
    if let Some(dir) = &args.outputs.plots {
        let svgs = exp::available(result)
            .into_iter()
            .map(|plot| {
                let svg = exp::render(result, plot).map_err(|e| Failure::Io(format!("plot {}: {e}", plot.name())))?;
                Ok((plot.name(), svg))
            })
            .collect::<Result<Vec<_>, Failure>>()?;
        written.push(files::write_plots(dir, svgs)?);
    }
    if let Some(path) = &args.outputs.html {
        let page = exp::render_html(result, result.name.as_deref().unwrap_or(&id));
        written.push(files::write("HTML page", path, &page)?);
    }
    let stdout = if args.table {
        exp::markdown_table(result)
    } else if files::stdout_gets_json(&args.outputs) {
        json
    } else {
        summary::experiment(&done, &written)
    };
    Ok(Done { stdout, failed_on: None })
}
