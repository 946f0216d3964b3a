//! What `/metrics` shows beside the job and HTTP metrics, and how it is written: the process
//! metrics ([`ProcessCollector`], read from `/proc/self` on Linux at each scrape), the build
//! ([`register_build_info`]: `gradscope_build_info{version,...} 1`), and the two exposition
//! formats with their negotiation ([`Format`], [`encode`]).
//!
//! The registry is `prometheus-client`'s, whose encoder writes OpenMetrics 1.0.0 text only. The
//! Prometheus text format 0.0.4, the default (scrapers and `promtool` that do not ask for
//! OpenMetrics), differs from it in the metadata alone: a counter's `# HELP`/`# TYPE` name its
//! samples' name (`x_total`), there is no `# UNIT`, no `info` type (a gauge `x_info`) and no
//! `# EOF`. [`to_prometheus_text`] rewrites exactly those lines; samples are the same in both.
//!
//! Depends on no other file of `api` (the state in `app` registers these; `health` serves them).

use std::fmt::Write as _;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

/// An exposition format of `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4: the default.
    Prometheus,
    /// OpenMetrics 1.0.0 text, for a client whose `Accept` asks for it.
    OpenMetrics,
}

impl Format {
    /// The format for an `Accept` header: OpenMetrics when the header accepts
    /// `application/openmetrics-text` (version 1.0.0, 0.0.1 or none) with a quality at least
    /// that of `text/plain` (version 0.0.4 or none; `text/*` and `*/*` count as it), else the
    /// Prometheus text format, also when nothing offered is acceptable (as Prometheus's own
    /// client libraries do).
    pub fn negotiate(accept: Option<&str>) -> Format {
        let (mut openmetrics, mut text) = (0.0_f32, 0.0_f32);
        for range in accept.unwrap_or("").split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let (mut q, mut version) = (Some(1.0_f32), None);
            for param in parts {
                let Some((k, v)) = param.split_once('=') else { continue };
                let v = v.trim().trim_matches('"');
                match k.trim().to_ascii_lowercase().as_str() {
                    "q" => q = v.parse::<f32>().ok().filter(|q| (0.0..=1.0).contains(q)),
                    "version" => version = Some(v.to_owned()),
                    _ => {}
                }
            }
            // A range with an unreadable quality is ignored.
            let Some(q) = q else { continue };
            let version = version.as_deref();
            match media.as_str() {
                "application/openmetrics-text" if matches!(version, None | Some("1.0.0" | "0.0.1")) => {
                    openmetrics = openmetrics.max(q);
                }
                "text/plain" if matches!(version, None | Some("0.0.4")) => text = text.max(q),
                "text/*" | "*/*" => text = text.max(q),
                _ => {}
            }
        }
        if openmetrics > 0.0 && openmetrics >= text {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        }
    }

    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Every metric of `registry` in `format`.
pub fn encode(registry: &Registry, format: Format) -> Result<String, std::fmt::Error> {
    let mut openmetrics = String::new();
    prometheus_client::encoding::text::encode(&mut openmetrics, registry)?;
    Ok(match format {
        Format::OpenMetrics => openmetrics,
        Format::Prometheus => to_prometheus_text(&openmetrics),
    })
}

/// Rewrites the OpenMetrics text of `prometheus-client` as Prometheus text 0.0.4 (see the module
/// doc): the metadata of counters and infos name their samples, `# UNIT` and `# EOF` go.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    // `prometheus-client` writes `# HELP` before `# TYPE`; the name the HELP line needs is
    // known at the TYPE line.
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest);
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let Some((name, kind)) = rest.rsplit_once(' ') else { continue };
            let (sample_name, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "info" => (format!("{name}_info"), "gauge"),
                "unknown" => (name.to_owned(), "untyped"),
                other => (name.to_owned(), other),
            };
            if let Some(text) = help.take().and_then(|h| h.strip_prefix(name)) {
                // OpenMetrics escapes `"` in HELP; 0.0.4 knows only `\\` and `\n`.
                let _ = writeln!(out, "# HELP {sample_name} {}", text.trim_start().replace("\\\"", "\""));
            }
            let _ = writeln!(out, "# TYPE {sample_name} {kind}");
        } else if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Labels of `gradscope_build_info`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    /// The crate's version (`Cargo.toml`).
    version: &'static str,
    /// `debug` (debug assertions on) or `release`.
    profile: &'static str,
    /// The target architecture (`x86_64`, ...).
    arch: &'static str,
    /// The target operating system.
    os: &'static str,
}

/// Registers `gradscope_build_info{version, profile, arch, os} 1`.
pub fn register_build_info(registry: &mut Registry) {
    let labels = BuildLabels {
        version: env!("CARGO_PKG_VERSION"),
        profile: if cfg!(debug_assertions) { "debug" } else { "release" },
        arch: std::env::consts::ARCH,
        os: std::env::consts::OS,
    };
    registry.register("gradscope_build", "The build of the running gradscope (always 1)", Info::new(labels));
}

/// The standard process metrics (the names Prometheus's client libraries share), read at each
/// scrape: `process_cpu_seconds_total`, `process_resident_memory_bytes`,
/// `process_virtual_memory_bytes`, `process_start_time_seconds`, `process_open_fds`,
/// `process_max_fds`. On Linux only (`/proc/self`); elsewhere, or for a value `/proc` does not
/// give, the metric is left out.
#[derive(Debug, Default)]
pub struct ProcessCollector;

/// One reading of the process metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessStats {
    /// User and system CPU time, seconds.
    pub cpu_seconds: Option<f64>,
    /// Resident set size, bytes.
    pub resident_bytes: Option<u64>,
    /// Virtual memory size, bytes.
    pub virtual_bytes: Option<u64>,
    /// Start time, seconds since the Unix epoch.
    pub start_time_seconds: Option<f64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
    /// The soft limit of file descriptors.
    pub max_fds: Option<u64>,
}

/// The fields of `/proc/<pid>/stat` the process metrics use.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stat {
    /// Clock ticks in user and in kernel mode (`utime` + `stime`).
    cpu_ticks: u64,
    /// Clock ticks from boot to the start of the process.
    start_ticks: u64,
    /// Bytes of virtual memory.
    vsize: u64,
    /// Resident pages.
    rss_pages: u64,
}

/// Parses `/proc/<pid>/stat` (proc(5)): the command name in parentheses may hold spaces and
/// parentheses, so the fields are counted from after its last `)`; field 3 (`state`) is the
/// first one there.
fn parse_stat(text: &str) -> Option<Stat> {
    let (_, rest) = text.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field N of proc(5) is fields[N - 3].
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    Some(Stat { cpu_ticks: field(14)? + field(15)?, start_ticks: field(22)?, vsize: field(23)?, rss_pages: field(24)? })
}

/// The `btime` line of `/proc/stat`: the boot time, seconds since the Unix epoch.
fn parse_boot_time(text: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse().ok())
}

impl ProcessStats {
    /// Reads this process's figures from `/proc` (all `None` where there is none).
    #[cfg(target_os = "linux")]
    pub fn read() -> ProcessStats {
        let ticks = rustix::param::clock_ticks_per_second() as f64;
        let page = rustix::param::page_size() as u64;
        let stat = std::fs::read_to_string("/proc/self/stat").ok().as_deref().and_then(parse_stat);
        let boot = std::fs::read_to_string("/proc/stat").ok().as_deref().and_then(parse_boot_time);
        let open_fds = std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as u64);
        let max_fds = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
        ProcessStats {
            cpu_seconds: stat.filter(|_| ticks > 0.0).map(|s| s.cpu_ticks as f64 / ticks),
            resident_bytes: stat.map(|s| s.rss_pages.saturating_mul(page)),
            virtual_bytes: stat.map(|s| s.vsize),
            start_time_seconds: stat
                .zip(boot)
                .filter(|_| ticks > 0.0)
                .map(|(s, boot)| boot as f64 + s.start_ticks as f64 / ticks),
            open_fds,
            max_fds,
        }
    }

    /// No `/proc` to read: every figure is absent.
    #[cfg(not(target_os = "linux"))]
    pub fn read() -> ProcessStats {
        ProcessStats::default()
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = ProcessStats::read();
        if let Some(v) = stats.cpu_seconds {
            let counter = ConstCounter::new(v);
            let help = "Total user and system CPU time spent.";
            counter.encode(encoder.encode_descriptor(
                "process_cpu",
                help,
                Some(&Unit::Seconds),
                counter.metric_type(),
            )?)?;
        }
        if let Some(v) = stats.start_time_seconds {
            let gauge = ConstGauge::new(v);
            let help = "Start time of the process since the Unix epoch.";
            gauge.encode(encoder.encode_descriptor(
                "process_start_time",
                help,
                Some(&Unit::Seconds),
                gauge.metric_type(),
            )?)?;
        }
        let whole: [(&str, &str, Option<Unit>, Option<u64>); 4] = [
            ("process_resident_memory", "Resident memory size.", Some(Unit::Bytes), stats.resident_bytes),
            ("process_virtual_memory", "Virtual memory size.", Some(Unit::Bytes), stats.virtual_bytes),
            ("process_open_fds", "Open file descriptors.", None, stats.open_fds),
            ("process_max_fds", "Maximum number of open file descriptors.", None, stats.max_fds),
        ];
        for (name, help, unit, value) in whole {
            if let Some(v) = value {
                let gauge = ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
                gauge.encode(encoder.encode_descriptor(name, help, unit.as_ref(), gauge.metric_type())?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_is_asked_for_by_accept_and_text_is_the_default() {
        let prometheus_scraper = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prometheus_scraper)), Format::OpenMetrics);
        assert_eq!(Format::negotiate(Some("application/openmetrics-text")), Format::OpenMetrics);
        assert_eq!(Format::negotiate(Some("Application/OpenMetrics-Text; version=\"1.0.0\"")), Format::OpenMetrics);
        for text in [
            None,
            Some(""),
            Some("*/*"),
            Some("text/plain"),
            Some("text/plain;version=0.0.4"),
            Some("application/json"),
            Some("text/plain, application/openmetrics-text;q=0.5"),
            Some("application/openmetrics-text;version=2.0.0"),
            Some("application/openmetrics-text;q=0"),
            Some("application/openmetrics-text;q=nonsense"),
        ] {
            assert_eq!(Format::negotiate(text), Format::Prometheus, "{text:?}");
        }
    }

    #[test]
    fn the_text_format_names_counters_by_their_samples_and_drops_unit_info_and_eof() {
        let om = "# HELP a_requests Requests \"served\".\n# TYPE a_requests counter\na_requests_total{x=\"1\"} 3\n\
                  # HELP a_latency_seconds Latency.\n# TYPE a_latency_seconds histogram\n# UNIT a_latency_seconds seconds\n\
                  a_latency_seconds_sum 0.5\na_latency_seconds_count 1\na_latency_seconds_bucket{le=\"+Inf\"} 1\n\
                  # HELP a_build The build.\n# TYPE a_build info\na_build_info{version=\"1\"} 1\n\
                  # HELP a_depth Depth.\n# TYPE a_depth gauge\na_depth 2\n# EOF\n";
        let text = to_prometheus_text(om);
        assert_eq!(
            text,
            "# HELP a_requests_total Requests \"served\".\n# TYPE a_requests_total counter\na_requests_total{x=\"1\"} 3\n\
             # HELP a_latency_seconds Latency.\n# TYPE a_latency_seconds histogram\n\
             a_latency_seconds_sum 0.5\na_latency_seconds_count 1\na_latency_seconds_bucket{le=\"+Inf\"} 1\n\
             # HELP a_build_info The build.\n# TYPE a_build_info gauge\na_build_info{version=\"1\"} 1\n\
             # HELP a_depth Depth.\n# TYPE a_depth gauge\na_depth 2\n"
        );
    }

    #[test]
    fn the_stat_fields_are_counted_after_the_last_parenthesis_of_the_name() {
        // proc(5): pid (comm) state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
        // cmajflt utime stime cutime cstime priority nice num_threads itrealvalue starttime vsize rss ...
        let line = "4242 (a (b) c) S 1 2 3 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0 12345 104857600 2560 18446744073709551615";
        let stat = parse_stat(line).unwrap();
        assert_eq!(stat, Stat { cpu_ticks: 300, start_ticks: 12345, vsize: 104_857_600, rss_pages: 2560 });
        assert_eq!(parse_stat("4242 (x) S 1"), None);
        assert_eq!(parse_boot_time("cpu  1 2 3\nbtime 1700000000\nprocesses 5\n"), Some(1_700_000_000));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_reads_plausible_figures() {
        // Spin until the kernel has charged this process a clock tick (10 ms at 100 Hz).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut x = 0_u64;
        while ProcessStats::read().cpu_seconds.unwrap() == 0.0 && std::time::Instant::now() < deadline {
            for i in 0..1_000_000_u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
        }
        let s = ProcessStats::read();
        assert!(s.cpu_seconds.unwrap() > 0.0, "{s:?}");
        assert!(s.resident_bytes.unwrap() > 1 << 20, "{s:?}");
        assert!(s.virtual_bytes.unwrap() >= s.resident_bytes.unwrap(), "{s:?}");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        let started = s.start_time_seconds.unwrap();
        assert!(started <= now + 1.0 && started > now - 86_400.0 * 365.0, "{s:?}");
        assert!(s.open_fds.unwrap() >= 3 && s.open_fds.unwrap() <= s.max_fds.unwrap(), "{s:?}");
    }
}
