//! The service's configuration: command-line flags, each with an environment variable, and
//! embedded defaults, so that `gradscope` with no arguments serves on 127.0.0.1:8080.
//!
//! Precedence is flag > environment > default (clap's). `--help` lists every variable. Owns the
//! mapping from these settings to the job layer's [`JobsConfig`]; must not depend on `api` or
//! `cli` (they depend on it).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::jobs::service::StoreChoice;
use crate::jobs::{JobsConfig, WorkerPriority};
use crate::spec::experiment::ExperimentLimits;
use crate::spec::Limits;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line (for log collectors).
    Json,
}

/// How worker threads yield the CPU to requests (and to a database on the same machine).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WorkerPolicy {
    /// `SCHED_IDLE`: training runs only on CPU time nothing else wants (Linux; the default).
    Idle,
    /// The normal policy with `--worker-nice`.
    Normal,
}

/// Where the service keeps its jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// SQLite in `--data-dir` (one process; the default).
    Sqlite,
    /// PostgreSQL at `--database-url` (any number of replicas on one database).
    Postgres,
    /// In memory: every job is lost when the process ends (tests and demos).
    Memory,
}

/// `gradscope serve` settings.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Where jobs live: `sqlite` (default; `postgres` when `--database-url` is given), `postgres`
    /// or `memory`.
    #[arg(long, env = "GRADSCOPE_STORE", value_enum)]
    pub store: Option<StoreKind>,
    /// The SQLite store's directory (`gradscope.db` and a lock file; created on first start).
    /// One process per directory.
    #[arg(long, env = "GRADSCOPE_DATA_DIR", default_value = "gradscope-data")]
    pub data_dir: PathBuf,
    /// PostgreSQL (`postgres://user:password@host/db`): every replica given the same database is
    /// one service. Selects the PostgreSQL store.
    #[arg(long, env = "GRADSCOPE_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<Secret>,
    /// Relay cancels to other replicas with PostgreSQL NOTIFY (turn off behind poolers that
    /// break LISTEN, e.g. PgBouncer in transaction mode: cancels then travel with lease renewals).
    #[arg(long, env = "GRADSCOPE_PG_NOTIFY", default_value_t = true, action = clap::ArgAction::Set)]
    pub pg_notify: bool,
    /// A running job's lease lasts this long unless renewed; a replica that dies holding it
    /// loses the job to the rescuer after it.
    #[arg(long, env = "GRADSCOPE_LEASE_TTL_SECS", default_value_t = 60.0)]
    pub lease_ttl_secs: f64,
    /// Leases are renewed (and cancel requests read back) this often; at most half the TTL.
    #[arg(long, env = "GRADSCOPE_LEASE_RENEW_SECS", default_value_t = 10.0)]
    pub lease_renew_secs: f64,
    /// The rescuer looks for expired leases about this often (±20% jitter).
    #[arg(long, env = "GRADSCOPE_RESCUE_EVERY_SECS", default_value_t = 15.0)]
    pub rescue_every_secs: f64,
    /// Attempts a job may take; after that many lost workers it fails with `worker_lost`.
    #[arg(long, env = "GRADSCOPE_MAX_ATTEMPTS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: u32,
    /// Address to listen on. The default is loopback only; containers set 0.0.0.0:8080.
    #[arg(long, env = "GRADSCOPE_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// Worker threads that train jobs (0 = one per available core).
    #[arg(long, env = "GRADSCOPE_WORKERS", default_value_t = 0)]
    pub workers: usize,
    /// Jobs that may wait for a worker; beyond it `POST /v1/jobs` answers 503 + Retry-After.
    #[arg(long, env = "GRADSCOPE_QUEUE_CAPACITY", default_value_t = 1024)]
    pub queue_capacity: usize,
    /// Largest request body in bytes (413 beyond).
    #[arg(long, env = "GRADSCOPE_MAX_BODY_BYTES", default_value_t = 2 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Wall-clock limit of one job in seconds; a run still going fails with `timeout`.
    #[arg(long, env = "GRADSCOPE_JOB_TIMEOUT_SECS", default_value_t = 600.0)]
    pub job_timeout_secs: f64,
    /// Finished jobs kept by the memory store, with their reports (oldest forgotten first).
    #[arg(long, env = "GRADSCOPE_RETAIN_JOBS", default_value_t = 1000)]
    pub retain_jobs: usize,
    /// Finished jobs (reports, events), finished experiments and idempotency keys are removed
    /// after this many seconds.
    #[arg(long, env = "GRADSCOPE_RETENTION_SECS", default_value_t = 86_400)]
    pub retention_secs: u64,
    /// On SIGTERM/SIGINT, running jobs get this many seconds to finish before they are cancelled.
    #[arg(long, env = "GRADSCOPE_SHUTDOWN_GRACE_SECS", default_value_t = 20.0)]
    pub shutdown_grace_secs: f64,
    /// Analyses (`POST /v1/analyze`) that may run at once.
    #[arg(long, env = "GRADSCOPE_ANALYZE_SLOTS", default_value_t = 2)]
    pub analyze_slots: usize,
    /// Time limit of one analysis in seconds, waiting for a slot included.
    #[arg(long, env = "GRADSCOPE_ANALYZE_TIMEOUT_SECS", default_value_t = 30.0)]
    pub analyze_timeout_secs: f64,
    /// How worker threads yield the CPU: `idle` (SCHED_IDLE) or `normal` with `--worker-nice`.
    #[arg(long, env = "GRADSCOPE_WORKER_POLICY", value_enum, default_value_t = WorkerPolicy::Idle)]
    pub worker_policy: WorkerPolicy,
    /// Nice value (0-19) of the worker threads under `--worker-policy normal`.
    #[arg(long, env = "GRADSCOPE_WORKER_NICE", default_value_t = 10, value_parser = clap::value_parser!(i32).range(0..=19))]
    pub worker_nice: i32,
    /// Share of a job's compute that verifying its recommendations may take (each patched
    /// spec trained for a short budget against the baseline); 0 switches verification off.
    #[arg(long, env = "GRADSCOPE_VERIFY_SHARE", default_value_t = crate::analysis::verify::DEFAULT_VERIFY_SHARE)]
    pub verify_share: f64,
    /// Progress events kept per job for `Last-Event-ID` replay.
    #[arg(long, env = "GRADSCOPE_EVENT_BUFFER", default_value_t = 1024)]
    pub event_buffer: usize,
    /// Log format.
    #[arg(long, env = "GRADSCOPE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
    /// API tokens, one `TENANT:TOKEN` per line (`#` comments). With any token configured, every
    /// `/v1` route needs `Authorization: Bearer <token>` and each tenant sees only its own jobs
    /// and experiments. Without tokens the service is open (one tenant, `public`).
    #[arg(long, env = "GRADSCOPE_API_TOKENS_FILE")]
    pub api_tokens_file: Option<PathBuf>,
    /// API tokens as `TENANT:TOKEN` entries separated by commas (added to the file's). Prefer
    /// the variable or the file to the flag, which other users can read in `ps`.
    #[arg(long, env = "GRADSCOPE_API_TOKENS", hide_env_values = true)]
    pub api_tokens: Option<Secret>,
    /// A bearer token `/metrics` needs; without it `/metrics` is open.
    #[arg(long, env = "GRADSCOPE_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<Secret>,
    /// Requests per second one token may make on average (0: no limit); beyond it 429 with
    /// Retry-After. Applies only when tokens are configured.
    #[arg(long, env = "GRADSCOPE_RATE_LIMIT_PER_SECOND", default_value_t = 20.0)]
    pub rate_limit_per_second: f64,
    /// Requests one token may make at once before the rate applies.
    #[arg(long, env = "GRADSCOPE_RATE_LIMIT_BURST", default_value_t = 60)]
    pub rate_limit_burst: u32,
    /// Jobs one tenant may have queued (an experiment's runs count); beyond it 429 with
    /// Retry-After. 0: no bound but the queue's capacity.
    #[arg(long, env = "GRADSCOPE_MAX_QUEUED_PER_TENANT", default_value_t = 512)]
    pub max_queued_per_tenant: usize,
    /// Origins browsers may call the API from (CORS), comma-separated, or `*` for any. Off when
    /// empty (the default).
    #[arg(long, env = "GRADSCOPE_CORS_ALLOW_ORIGINS", value_delimiter = ',')]
    pub cors_allow_origins: Vec<String>,
    /// A client must send a request's line and headers within this many seconds once it has
    /// started (slow clients are disconnected).
    #[arg(long, env = "GRADSCOPE_HEADER_READ_TIMEOUT_SECS", default_value_t = 10.0)]
    pub header_read_timeout_secs: f64,
    /// A connection on which nothing moves either way for this many seconds is closed (an idle
    /// kept-alive connection; an event stream's keep-alive comments every 15 s count as
    /// traffic). Longer than `--analyze-timeout-secs`, so that no analysis is cut off.
    #[arg(long, env = "GRADSCOPE_IDLE_TIMEOUT_SECS", default_value_t = 75.0)]
    pub idle_timeout_secs: f64,
    /// A request body that stalls this many seconds between two of its chunks gets 408.
    #[arg(long, env = "GRADSCOPE_BODY_READ_TIMEOUT_SECS", default_value_t = 30.0)]
    pub body_read_timeout_secs: f64,
    /// Largest request head (request line and headers) in bytes; beyond it 431.
    #[arg(long, env = "GRADSCOPE_MAX_HEADER_BYTES", default_value_t = 16 * 1024)]
    pub max_header_bytes: usize,
    /// Longest request URL (path and query) in bytes; beyond it 414.
    #[arg(long, env = "GRADSCOPE_MAX_URI_BYTES", default_value_t = 4096)]
    pub max_uri_bytes: usize,
    /// Spec limits of submitted jobs.
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Parameters of an analysed spec, at most.
    #[arg(long, env = "GRADSCOPE_ANALYZE_MAX_PARAMS", default_value_t = 5_000_000)]
    pub analyze_max_params: u64,
    /// Samples of an analysed spec's data, at most.
    #[arg(long, env = "GRADSCOPE_ANALYZE_MAX_SAMPLES", default_value_t = 65_536)]
    pub analyze_max_samples: u64,
    /// Enable test-only hooks (a spec named `__gradscope_test_panic__` panics in its worker).
    /// Never set this in production.
    #[arg(long, env = "GRADSCOPE_TEST_HOOKS", hide = true, default_value_t = false)]
    pub test_hooks: bool,
}

/// A secret setting (a token): its `Debug` never shows it, so logging the configuration cannot
/// leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// Spec limits (see [`Limits`]); over any, a submission is refused with 422 and the figures.
#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// Layers after `mlp` expansion.
    #[arg(long, env = "GRADSCOPE_MAX_LAYERS", default_value_t = Limits::default().max_layers)]
    pub max_layers: u64,
    /// Units of one layer (also input and class counts).
    #[arg(long, env = "GRADSCOPE_MAX_UNITS", default_value_t = Limits::default().max_units)]
    pub max_units: u64,
    /// Trainable parameters.
    #[arg(long, env = "GRADSCOPE_MAX_PARAMS", default_value_t = Limits::default().max_params)]
    pub max_params: u64,
    /// Training steps.
    #[arg(long, env = "GRADSCOPE_MAX_STEPS", default_value_t = Limits::default().max_steps)]
    pub max_steps: u64,
    /// Batch size.
    #[arg(long, env = "GRADSCOPE_MAX_BATCH_SIZE", default_value_t = Limits::default().max_batch_size)]
    pub max_batch_size: u64,
    /// Samples of the data set.
    #[arg(long, env = "GRADSCOPE_MAX_SAMPLES", default_value_t = Limits::default().max_samples)]
    pub max_samples: u64,
    /// Time steps of a sequence.
    #[arg(long, env = "GRADSCOPE_MAX_SEQ_LEN", default_value_t = Limits::default().max_seq_len)]
    pub max_seq_len: u64,
    /// Compute budget: parameters x steps x batch size (x time steps for sequences).
    #[arg(long, env = "GRADSCOPE_MAX_COMPUTE", default_value_t = Limits::default().max_compute)]
    pub max_compute: u64,
    /// Variants of one experiment, the baseline included.
    #[arg(long, env = "GRADSCOPE_MAX_EXPERIMENT_VARIANTS", default_value_t = ExperimentLimits::default().max_variants)]
    pub max_experiment_variants: u64,
    /// Seeds of one experiment.
    #[arg(long, env = "GRADSCOPE_MAX_EXPERIMENT_SEEDS", default_value_t = ExperimentLimits::default().max_seeds)]
    pub max_experiment_seeds: u64,
    /// Compute of one experiment: the sum of its runs' compute (in the unit of `--max-compute`).
    #[arg(long, env = "GRADSCOPE_MAX_EXPERIMENT_COMPUTE", default_value_t = ExperimentLimits::default().max_compute)]
    pub max_experiment_compute: u128,
    /// Input values of a data set (samples x time steps x features).
    #[arg(long, env = "GRADSCOPE_MAX_DATA_VALUES", default_value_t = Limits::default().max_data_values)]
    pub max_data_values: u64,
    /// Estimated peak memory of one job, in bytes or as a size ("4GiB", "500MB"); default 80%
    /// of the machine's memory (the cgroup's limit when lower) divided by the runs that may be
    /// in flight at once (see [`default_job_memory`]).
    #[arg(long, env = "GRADSCOPE_MAX_JOB_MEMORY", value_parser = parse_bytes)]
    pub max_job_memory: Option<u64>,
}

// --- Memory admission: `--max-job-memory` and its default -------------------------------------

/// Share of the available memory the runs in flight may take together by default; the rest is
/// the process's own (the server, stored reports, the allocator's slack).
pub const JOB_MEMORY_SHARE: f64 = 0.8;

/// Memory assumed when the machine's cannot be read (not Linux, no `/proc`): 8 GiB.
pub const FALLBACK_MEMORY: u64 = 8 << 30;

/// A byte count: a plain number of bytes ("1000000000") or a size with a unit, decimal or
/// binary ("500MB", "4GiB"), as `parse-size` reads it.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    parse_size::parse_size(s.trim()).map_err(|e| format!("`{s}` is not a size in bytes: {e}"))
}

/// The default `--max-job-memory` when `runs` runs may be in flight at once:
/// `JOB_MEMORY_SHARE x available / runs`, with `available` = [`available_memory`] (or
/// [`FALLBACK_MEMORY`] when it cannot be read).
pub fn default_job_memory(runs: usize) -> u64 {
    let available = available_memory().unwrap_or(FALLBACK_MEMORY);
    (available as f64 * JOB_MEMORY_SHARE / runs.max(1) as f64) as u64
}

/// The memory this process may use: `MemTotal` of `/proc/meminfo`, or the cgroup v2
/// `memory.max` of the process's cgroup when it is set and lower. `None` off Linux.
pub fn available_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let total = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb.saturating_mul(1024))?;
    Some(cgroup_memory_max().map_or(total, |max| max.min(total)))
}

/// The cgroup v2 `memory.max` of this process (`/proc/self/cgroup`'s `0::PATH`), or of the
/// root of the cgroup mount (a container's own); `None` when unset (`max`) or absent.
fn cgroup_memory_max() -> Option<u64> {
    let read = |path: &str| std::fs::read_to_string(path).ok().and_then(|v| v.trim().parse::<u64>().ok());
    let own = std::fs::read_to_string("/proc/self/cgroup").ok().and_then(|c| {
        let path = c.lines().find_map(|l| l.strip_prefix("0::"))?.trim().to_owned();
        read(&format!("/sys/fs/cgroup{}/memory.max", path.trim_end_matches('/')))
    });
    own.or_else(|| read("/sys/fs/cgroup/memory.max"))
}

impl LimitArgs {
    /// `--max-job-memory`, or its default for `runs` runs in flight.
    pub fn job_memory(&self, runs: usize) -> u64 {
        self.max_job_memory.unwrap_or_else(|| default_job_memory(runs))
    }
}

// --- end of memory admission -------------------------------------------------------------------

impl LimitArgs {
    /// As spec limits.
    pub fn limits(&self) -> Limits {
        Limits {
            max_layers: self.max_layers,
            max_units: self.max_units,
            max_params: self.max_params,
            max_steps: self.max_steps,
            max_batch_size: self.max_batch_size,
            max_samples: self.max_samples,
            max_seq_len: self.max_seq_len,
            max_compute: self.max_compute,
            max_data_values: self.max_data_values,
            max_job_memory: self.job_memory(1),
        }
    }
}

impl ServeArgs {
    /// Parses `serve` flags from `args` (the first is the program name), with the environment
    /// and the embedded defaults filling the rest. For tests and tools.
    pub fn try_parse_from<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::Parser;
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            serve: ServeArgs,
        }
        Only::try_parse_from(args).map(|o| o.serve)
    }

    /// The job layer's configuration.
    pub fn jobs_config(&self) -> JobsConfig {
        let workers = match self.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        // Memory admission: every worker and every analysis slot may run at once.
        let in_flight = workers.saturating_add(self.analyze_slots.max(1));
        let limits = Limits { max_job_memory: self.limits.job_memory(in_flight), ..self.limits.limits() };
        let analyze_limits = Limits {
            max_params: self.analyze_max_params.min(limits.max_params),
            max_samples: self.analyze_max_samples.min(limits.max_samples),
            max_batch_size: limits.max_batch_size.min(crate::jobs::service::default_analyze_limits().max_batch_size),
            ..limits.clone()
        };
        let lease_ttl = secs(self.lease_ttl_secs).max(Duration::from_millis(100));
        JobsConfig {
            store: self.store_choice(),
            lease_ttl,
            lease_renew: secs(self.lease_renew_secs).clamp(Duration::from_millis(10), lease_ttl / 2),
            rescue_every: secs(self.rescue_every_secs).max(Duration::from_millis(10)),
            max_attempts: self.max_attempts.max(1),
            workers,
            queue_capacity: self.queue_capacity,
            max_queued_per_tenant: match self.max_queued_per_tenant {
                0 => usize::MAX,
                n => n,
            },
            retain_jobs: self.retain_jobs,
            retention: Duration::from_secs(self.retention_secs),
            job_timeout: secs(self.job_timeout_secs),
            limits,
            experiment_limits: ExperimentLimits {
                max_variants: self.limits.max_experiment_variants,
                max_seeds: self.limits.max_experiment_seeds,
                max_compute: self.limits.max_experiment_compute,
            },
            analyze_limits,
            analyze_slots: self.analyze_slots.max(1),
            analyze_timeout: secs(self.analyze_timeout_secs),
            event_buffer: self.event_buffer.max(2),
            worker_priority: match self.worker_policy {
                WorkerPolicy::Idle => WorkerPriority::Idle,
                WorkerPolicy::Normal => WorkerPriority::Nice(self.worker_nice),
            },
            verify_share: if self.verify_share.is_finite() { self.verify_share.max(0.0) } else { 0.0 },
            test_hooks: self.test_hooks,
            ..JobsConfig::default()
        }
    }

    /// The store the flags name.
    pub fn store_choice(&self) -> StoreChoice {
        let url = self.database_url.as_ref().map(|u| u.expose().to_owned());
        match (self.store, url) {
            (Some(StoreKind::Memory), _) => StoreChoice::Memory,
            (Some(StoreKind::Postgres), url) | (None, url @ Some(_)) => {
                StoreChoice::Postgres { url: url.unwrap_or_default(), notify: self.pg_notify }
            }
            (Some(StoreKind::Sqlite) | None, _) => StoreChoice::Sqlite { dir: self.data_dir.clone() },
        }
    }

    /// Grace period of a shutdown.
    pub fn shutdown_grace(&self) -> Duration {
        secs(self.shutdown_grace_secs)
    }

    /// How long a client may take to send a request's head.
    pub fn header_read_timeout(&self) -> Duration {
        secs(self.header_read_timeout_secs).max(Duration::from_millis(100))
    }

    /// How long a connection may be silent both ways.
    pub fn idle_timeout(&self) -> Duration {
        secs(self.idle_timeout_secs).max(Duration::from_millis(100))
    }

    /// How long a request body may stall.
    pub fn body_read_timeout(&self) -> Duration {
        secs(self.body_read_timeout_secs).max(Duration::from_millis(100))
    }
}

/// Seconds as a duration; negative, NaN or absurd values become 0 or a day.
fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s.clamp(0.0, 86_400.0)).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    /// README's "Operating the service" and docs/service.md quote these defaults.
    #[test]
    fn the_access_and_request_bound_defaults_are_the_documented_ones() {
        let args = ServeArgs::try_parse_from(["gradscope"]).unwrap();
        assert!(args.api_tokens_file.is_none() && args.api_tokens.is_none() && args.metrics_token.is_none());
        assert_eq!((args.rate_limit_per_second, args.rate_limit_burst), (20.0, 60));
        assert_eq!(args.max_queued_per_tenant, 512);
        assert!(args.cors_allow_origins.is_empty(), "CORS is off by default");
        assert_eq!(args.max_body_bytes, 2 * 1024 * 1024);
        assert_eq!((args.max_uri_bytes, args.max_header_bytes), (4096, 16 * 1024));
        assert_eq!(args.header_read_timeout(), Duration::from_secs(10));
        assert_eq!(args.body_read_timeout(), Duration::from_secs(30));
        assert_eq!(args.idle_timeout(), Duration::from_secs(75));
        assert!(args.idle_timeout() > secs(args.analyze_timeout_secs), "no analysis is cut off by the idle limit");
        assert_eq!(args.jobs_config().max_queued_per_tenant, 512);
    }

    /// README and docs/service.md quote these: SQLite in `gradscope-data` unless a database URL
    /// is given; leases of 60 s renewed every 10 s; a rescue about every 15 s; 3 attempts.
    #[test]
    fn the_store_defaults_are_the_documented_ones() {
        let args = ServeArgs::try_parse_from(["gradscope"]).unwrap();
        assert_eq!(args.store_choice(), StoreChoice::Sqlite { dir: PathBuf::from("gradscope-data") });
        let c = args.jobs_config();
        assert_eq!(
            (c.lease_ttl, c.lease_renew, c.rescue_every),
            (Duration::from_secs(60), Duration::from_secs(10), Duration::from_secs(15))
        );
        assert_eq!(c.max_attempts, 3);
        let pg = ServeArgs::try_parse_from(["gradscope", "--database-url", "postgres://db/x", "--pg-notify", "false"])
            .unwrap();
        assert_eq!(pg.store_choice(), StoreChoice::Postgres { url: "postgres://db/x".into(), notify: false });
        let mem = ServeArgs::try_parse_from(["gradscope", "--store", "memory"]).unwrap();
        assert_eq!(mem.store_choice(), StoreChoice::Memory);
    }

    /// docs/service.md: workers are SCHED_IDLE unless `--worker-policy normal` asks for a nice
    /// value (10 unless given).
    #[test]
    fn workers_yield_the_cpu_with_the_idle_policy_unless_told_otherwise() {
        let args = ServeArgs::try_parse_from(["gradscope"]).unwrap();
        assert_eq!(args.jobs_config().worker_priority, WorkerPriority::Idle);
        let normal = ServeArgs::try_parse_from(["gradscope", "--worker-policy", "normal"]).unwrap();
        assert_eq!(normal.jobs_config().worker_priority, WorkerPriority::Nice(10));
        let nice =
            ServeArgs::try_parse_from(["gradscope", "--worker-policy", "normal", "--worker-nice", "19"]).unwrap();
        assert_eq!(nice.jobs_config().worker_priority, WorkerPriority::Nice(19));
    }
}
