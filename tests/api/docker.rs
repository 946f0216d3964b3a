//! The container files, run without a container engine.
//!
//! - docker/Dockerfile: the binary gets exactly the ENV, ENTRYPOINT + CMD and HEALTHCHECK of its
//!   final stage, must become healthy, and must exit 0 on SIGTERM within `docker stop`'s default
//!   10 s with a job running.
//! - docker/compose.yaml: its structure (two replicas on PostgreSQL, one published port through
//!   the proxy of docker/nginx.conf, the database's named volume, health checks, start order,
//!   stop grace), and each replica run with exactly its compose command, environment and health
//!   check on a real PostgreSQL (`compose_` tests; skipped with a note without one, see
//!   tests/cluster_postgres.rs): both become ready and form one cluster; with an nginx binary
//!   (`GRADSCOPE_TEST_NGINX` or /usr/sbin/nginx) docker/nginx.conf runs in front of them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

use crate::common::TestDb;
use crate::helpers::{minutes_long_spec, tiny_spec};

/// How long `docker stop` waits after SIGTERM before it sends SIGKILL (its `--time` default).
const DOCKER_STOP_DEFAULT: Duration = Duration::from_secs(10);

/// What a stop needs beyond the grace: giving the stopped jobs back to the queue (one write
/// each) and closing the listener. The grace plus this must fit the orchestrator's timeout.
const STOP_MARGIN: Duration = Duration::from_secs(2);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What the runtime stage of the Dockerfile gives the process.
#[derive(Debug, Default, Clone)]
struct Runtime {
    env: Vec<(String, String)>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    healthcheck: Vec<String>,
    expose: Vec<u16>,
    volumes: Vec<String>,
}

impl Runtime {
    fn env(&self, key: &str) -> Option<&str> {
        lookup(&self.env, key)
    }
}

fn lookup<'a>(env: &'a [(String, String)], key: &str) -> Option<&'a str> {
    env.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Sets `key` in `env` (replacing it when present), as a later `environment:` entry does.
fn set(env: &mut Vec<(String, String)>, key: &str, value: &str) {
    match env.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = value.to_owned(),
        None => env.push((key.to_owned(), value.to_owned())),
    }
}

fn json_array(s: &str) -> Vec<String> {
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("not an exec-form JSON array: {s}: {e}"))
}

fn runtime_stage() -> Runtime {
    let text = std::fs::read_to_string(root().join("docker/Dockerfile")).unwrap();
    // Join continuation lines, keep the instructions after the last FROM.
    let joined = text.replace("\\\n", " ");
    let lines: Vec<&str> = joined.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    let last_from = lines.iter().rposition(|l| l.starts_with("FROM ")).expect("a FROM");
    let mut rt = Runtime::default();
    for line in &lines[last_from..] {
        let (instr, rest) = line.split_once(' ').unwrap_or((line, ""));
        match instr {
            "ENV" => {
                for pair in rest.split_whitespace() {
                    let (k, v) = pair.split_once('=').expect("ENV key=value");
                    rt.env.push((k.to_owned(), v.to_owned()));
                }
            }
            "ENTRYPOINT" => rt.entrypoint = json_array(rest),
            "CMD" => rt.cmd = json_array(rest),
            "EXPOSE" => rt.expose.extend(rest.split_whitespace().map(|p| p.parse::<u16>().unwrap())),
            "VOLUME" => rt.volumes.extend(json_array(rest)),
            "HEALTHCHECK" => {
                let cmd = rest.split_once("CMD").expect("HEALTHCHECK CMD").1;
                rt.healthcheck = json_array(cmd);
            }
            _ => {}
        }
    }
    rt
}

/// The shutdown grace `env` gives the server: `GRADSCOPE_SHUTDOWN_GRACE_SECS`, which the image
/// and the compose file set explicitly (the binary's own default, 20 s, is longer than
/// `docker stop` waits).
fn grace(env: &[(String, String)]) -> Duration {
    let secs = lookup(env, "GRADSCOPE_SHUTDOWN_GRACE_SECS").expect("GRADSCOPE_SHUTDOWN_GRACE_SECS is set");
    Duration::from_secs_f64(secs.parse().unwrap_or_else(|e| panic!("grace `{secs}`: {e}")))
}

/// Runs `argv` (whose first element is the image's binary path) with our binary instead.
fn command(argv: &[String], env: &[(String, String)]) -> Command {
    assert_eq!(argv[0], "/usr/local/bin/gradscope", "the image runs the gradscope binary");
    let mut c = Command::new(env!("CARGO_BIN_EXE_gradscope"));
    c.args(&argv[1..]).env_clear().envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    c
}

/// Runs `healthcheck` until it passes; panics (with the server's log) after `within`.
async fn wait_healthy(healthcheck: &[String], env: &[(String, String)], within: Duration, log: impl Fn() -> String) {
    let deadline = Instant::now() + within;
    loop {
        let status = command(healthcheck, env).stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap();
        if status.success() {
            return;
        }
        assert!(Instant::now() < deadline, "the health check never passed; log:\n{}", log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends SIGTERM to `child` and waits for its exit, at most `within`; the exit and how long it
/// took.
async fn terminate(child: &mut Child, within: Duration) -> (std::process::ExitStatus, Duration) {
    let kill = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, start.elapsed());
        }
        if start.elapsed() > within {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no exit within {within:?} of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn client() -> Client {
    Client::builder().timeout(Duration::from_secs(10)).build().unwrap()
}

async fn wait_job(client: &Client, base: &str, id: &str, within: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let res = client.get(format!("{base}/v1/jobs/{id}")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{base}/v1/jobs/{id}");
        let job: Value = res.json().await.unwrap();
        if done(&job) {
            return job;
        }
        assert!(Instant::now() < deadline, "job {id} on {base} not as expected within {within:?}: {job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn submit(client: &Client, base: &str, spec: &Value) -> String {
    let res = client.post(format!("{base}/v1/jobs")).json(spec).send().await.unwrap();
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, StatusCode::ACCEPTED, "submit to {base}: {body}");
    body["id"].as_str().unwrap().to_owned()
}

/// A free port on loopback (bound, read and released: the server binds it next).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test]
async fn the_binary_serves_with_exactly_the_dockerfile_arguments_and_environment() {
    let rt = runtime_stage();
    assert!(!rt.entrypoint.is_empty() && !rt.healthcheck.is_empty(), "{rt:?}");
    let bind = rt.env("GRADSCOPE_BIND").expect("GRADSCOPE_BIND").to_owned();
    let port: u16 = bind.rsplit(':').next().unwrap().parse().unwrap();
    assert!(rt.expose.contains(&port), "EXPOSE {:?} must include the bound port {port}", rt.expose);
    assert!(
        std::net::TcpListener::bind(("0.0.0.0", port)).is_ok(),
        "port {port} is busy: stop whatever listens on it (this test runs the image's exact command line)"
    );
    // The grace fits `docker stop`'s default timeout, with room to give the jobs back.
    let grace = grace(&rt.env);
    assert!(grace + STOP_MARGIN <= DOCKER_STOP_DEFAULT, "grace {grace:?} + {STOP_MARGIN:?} > {DOCKER_STOP_DEFAULT:?}");

    // The job store lives in the image's volume; here, in a fresh directory standing in for it.
    let data = rt.env.iter().position(|(k, _)| k == "GRADSCOPE_DATA_DIR").expect("GRADSCOPE_DATA_DIR");
    assert!(
        rt.volumes.contains(&rt.env[data].1),
        "the data directory {} is a VOLUME: {:?}",
        rt.env[data].1,
        rt.volumes
    );
    let mut env = rt.env.clone();
    let dir = std::env::temp_dir().join(format!("gradscope-docker-test-{}", std::process::id()));
    env[data].1 = dir.display().to_string();
    let rt = Runtime { env, ..rt };

    let argv: Vec<String> = rt.entrypoint.iter().chain(&rt.cmd).cloned().collect();
    let mut server = command(&argv, &rt.env).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    wait_healthy(&rt.healthcheck, &rt.env, Duration::from_secs(20), String::new).await;

    // A job that trains far longer than the grace: the stop must still fit `docker stop`.
    let base = format!("http://127.0.0.1:{port}");
    let client = client();
    let id = submit(&client, &base, &minutes_long_spec()).await;
    wait_job(&client, &base, &id, Duration::from_secs(20), |j| j["status"] == "running").await;

    // SIGTERM (the image's STOPSIGNAL) ends it cleanly; exec-form ENTRYPOINT means the binary
    // itself receives it. It waits out the grace for the running job, then gives it back.
    let (status, took) = terminate(&mut server, DOCKER_STOP_DEFAULT).await;
    let mut log = String::new();
    std::io::Read::read_to_string(server.stderr.as_mut().unwrap(), &mut log).unwrap();
    assert!(status.success(), "exit {status}: {log}");
    assert!(took >= grace.mul_f64(0.9), "the running job got {took:?}, less than the grace {grace:?}: {log}");
    assert!(took <= grace + STOP_MARGIN, "the stop took {took:?}: {log}");
    assert!(log.contains("giving them back to the queue"), "{log}");
    // GRADSCOPE_LOG_FORMAT=json: one JSON object per line.
    let first = log.lines().next().expect("a log line");
    assert!(serde_json::from_str::<Value>(first).is_ok(), "not JSON: {first}");
    // And the health check fails once it is gone.
    assert!(!command(&rt.healthcheck, &rt.env).stderr(Stdio::null()).status().unwrap().success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `COPY . .` sends the build context: `.dockerignore` keeps the build outputs, the git history
/// and local data out of it, and everything the build reads in it.
#[test]
fn the_build_context_leaves_out_target_git_and_data_but_not_what_the_build_reads() {
    let root = root();
    let text = std::fs::read_to_string(root.join(".dockerignore")).expect(".dockerignore");
    let patterns: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    let excluded = |path: &str| patterns.iter().any(|p| path.starts_with(p.trim_end_matches('/')));
    for out in ["target", ".git", "gradscope-data"] {
        assert!(excluded(out), "{out} is sent to the builder");
    }
    for needed in ["Cargo.toml", "Cargo.lock", ".cargo", "src", "migrations", "benches", "tests", "examples"] {
        assert!(!excluded(needed), "{needed} is needed by the build");
        assert!(root.join(needed).exists(), "{needed}");
    }
}

// ---------------------------------------------------------------------------------------------
// docker/compose.yaml

/// docker/compose.yaml as Compose reads it: `<<` merge keys applied, `${VAR:-default}`
/// interpolated with the defaults (as in a shell where none of them is set).
fn compose() -> Value {
    let text = std::fs::read_to_string(root().join("docker/compose.yaml")).expect("docker/compose.yaml");
    let mut yaml: yaml_serde::Value = yaml_serde::from_str(&interpolate(&text)).expect("compose.yaml is YAML");
    yaml.apply_merge().expect("merge keys");
    serde_json::to_value(&yaml).expect("compose.yaml as JSON")
}

/// Compose's interpolation with every variable unset: `${VAR:-default}` and `${VAR-default}`
/// become the default, `$$` a `$`. A `${VAR}` without a default would be empty: refused.
fn interpolate(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(a) = after.strip_prefix('$') {
            out.push('$');
            rest = a;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').expect("closing brace");
            let expr = &body[..end];
            let default =
                expr.split_once(":-").or_else(|| expr.split_once('-')).map(|(_, d)| d).unwrap_or_else(|| {
                    panic!("`${{{expr}}}` has no default: a fresh checkout would get an empty value")
                });
            out.push_str(default);
            rest = &body[end + 1..];
        } else {
            panic!("bare `$` in compose.yaml: write `${{VAR:-default}}` or `$$`");
        }
    }
    out.push_str(rest);
    out
}

/// A service's `environment` (a map or a list of `KEY=VALUE`).
fn environment(service: &Value) -> Vec<(String, String)> {
    match &service["environment"] {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), v)
            })
            .collect(),
        Value::Array(list) => list
            .iter()
            .map(|e| {
                let (k, v) = e.as_str().unwrap().split_once('=').expect("KEY=VALUE");
                (k.to_owned(), v.to_owned())
            })
            .collect(),
        Value::Null => Vec::new(),
        other => panic!("environment: {other}"),
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap_or_else(|| panic!("not a string: {s}")).to_owned())
        .collect()
}

/// A Compose duration (`25s`, `1m30s`, `500ms`).
fn duration(v: &Value) -> Duration {
    let s = v.as_str().unwrap_or_else(|| panic!("not a duration: {v}"));
    let mut total = Duration::ZERO;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let n: f64 = num.parse().unwrap_or_else(|e| panic!("duration `{s}`: {e}"));
        num.clear();
        let unit = match (c, chars.peek()) {
            ('m', Some('s')) => {
                chars.next();
                0.001
            }
            ('h', _) => 3600.0,
            ('m', _) => 60.0,
            ('s', _) => 1.0,
            _ => panic!("duration `{s}`: unit `{c}`"),
        };
        total += Duration::from_secs_f64(n * unit);
    }
    assert!(num.is_empty(), "duration `{s}` without a unit");
    total
}

/// The replicas: the services built from docker/Dockerfile, by name.
fn replicas(compose: &Value) -> BTreeMap<String, Value> {
    compose["services"]
        .as_object()
        .expect("services")
        .iter()
        .filter(|(_, s)| s["build"]["dockerfile"] == "docker/Dockerfile")
        .map(|(name, s)| (name.clone(), s.clone()))
        .collect()
}

/// What a replica's process gets: the image's ENV with the service's `environment` over it, the
/// image's ENTRYPOINT with the service's `command` (or the image's CMD), and the service's
/// health check (`CMD` form) or the image's.
fn replica_runtime(image: &Runtime, service: &Value) -> Runtime {
    let mut env = image.env.clone();
    for (k, v) in environment(service) {
        set(&mut env, &k, &v);
    }
    assert!(service.get("entrypoint").is_none(), "the replicas keep the image's ENTRYPOINT");
    let cmd = match &service["command"] {
        Value::Null => image.cmd.clone(),
        c @ Value::Array(_) => strings(c),
        other => panic!("command must be exec form (a list), not {other}"),
    };
    let healthcheck = match &service["healthcheck"]["test"] {
        Value::Null => image.healthcheck.clone(),
        t => {
            let t = strings(t);
            assert_eq!(t[0], "CMD", "exec-form health check (the image has no shell): {t:?}");
            t[1..].to_vec()
        }
    };
    Runtime { env, cmd, healthcheck, ..image.clone() }
}

/// `postgres://USER:PASSWORD@HOST:PORT/DB` split into its parts.
fn url_parts(url: &str) -> (String, String, String, u16, String) {
    let rest = url.strip_prefix("postgres://").unwrap_or_else(|| panic!("not a postgres:// URL: {url}"));
    let (userinfo, rest) = rest.split_once('@').expect("user@host");
    let (user, password) = userinfo.split_once(':').expect("user:password");
    let (hostport, db) = rest.split_once('/').expect("/database");
    let (host, port) = hostport.split_once(':').map_or((hostport, 5432), |(h, p)| (h, p.parse().unwrap()));
    (user.to_owned(), password.to_owned(), host.to_owned(), port, db.to_owned())
}

/// The published ports of a service, as `(host, container)`.
fn published(service: &Value) -> Vec<(u16, u16)> {
    match &service["ports"] {
        Value::Null => Vec::new(),
        Value::Array(ports) => ports
            .iter()
            .map(|p| {
                let s = p.as_str().unwrap_or_else(|| panic!("short syntax \"HOST:CONTAINER\": {p}"));
                let mut parts = s.rsplit(':');
                let container = parts.next().unwrap().parse().unwrap();
                let host = parts.next().unwrap_or_else(|| panic!("{s}: publish on a fixed host port")).parse().unwrap();
                (host, container)
            })
            .collect(),
        other => panic!("ports: {other}"),
    }
}

/// The proxy's configuration file: the one the service mounts (read-only) over the official
/// image's `conf.d/default.conf`.
fn proxy_conf(proxy: &Value) -> String {
    let file = strings(&proxy["volumes"])
        .iter()
        .find_map(|m| m.strip_suffix(":/etc/nginx/conf.d/default.conf:ro").map(str::to_owned))
        .expect("the proxy's configuration, mounted read-only");
    std::fs::read_to_string(root().join("docker").join(file)).expect("the proxy's configuration file")
}

/// nginx directives: `(enclosing blocks, name, arguments)` of every simple directive, and of
/// every block opener (arguments without the brace), in order. One directive per line.
fn nginx_directives(text: &str) -> Vec<(Vec<String>, String, Vec<String>)> {
    let mut out = Vec::new();
    let mut stack: Vec<String> = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap().trim();
        if line.is_empty() {
            continue;
        }
        if line == "}" {
            stack.pop().expect("balanced braces");
            continue;
        }
        let (body, opens) = match line.strip_suffix('{') {
            Some(b) => (b.trim(), true),
            None => (line.strip_suffix(';').unwrap_or_else(|| panic!("one directive per line: `{line}`")), false),
        };
        let mut words = body.split_whitespace().map(str::to_owned);
        let name = words.next().unwrap();
        let args: Vec<String> = words.map(|w| w.trim_matches('"').to_owned()).collect();
        out.push((stack.clone(), name.clone(), args));
        if opens {
            stack.push(name);
        }
    }
    assert!(stack.is_empty(), "unclosed block");
    out
}

/// An nginx size (`4m`, `16k`, `1024`) in bytes.
fn nginx_size(s: &str) -> u64 {
    let (n, mult) = match s.chars().last() {
        Some('k' | 'K') => (&s[..s.len() - 1], 1 << 10),
        Some('m' | 'M') => (&s[..s.len() - 1], 1 << 20),
        Some('g' | 'G') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    n.parse::<u64>().unwrap_or_else(|e| panic!("size `{s}`: {e}")) * mult
}

/// An nginx time (`60s`, `1h`, `90`) in seconds.
fn nginx_time(s: &str) -> u64 {
    let (n, mult) = match s.chars().last() {
        Some('s') => (&s[..s.len() - 1], 1),
        Some('m') => (&s[..s.len() - 1], 60),
        Some('h') => (&s[..s.len() - 1], 3600),
        Some('d') => (&s[..s.len() - 1], 86_400),
        _ => (s, 1),
    };
    n.parse::<u64>().unwrap_or_else(|e| panic!("time `{s}`: {e}")) * mult
}

#[test]
fn compose_runs_two_replicas_on_postgres_behind_one_published_port() {
    let compose = compose();
    let image = runtime_stage();
    let services = compose["services"].as_object().expect("services");

    // PostgreSQL: the official image, its data on a named volume, a health check.
    let (db_name, db) = services
        .iter()
        .find(|(_, s)| s["image"].as_str().is_some_and(|i| i.starts_with("postgres:")))
        .expect("a service on the official postgres image");
    let mounts = strings(&db["volumes"]);
    let volume = mounts
        .iter()
        .find_map(|m| m.strip_suffix(":/var/lib/postgresql/data"))
        .unwrap_or_else(|| panic!("the database's data directory is a volume: {mounts:?}"));
    assert!(compose["volumes"].as_object().is_some_and(|v| v.contains_key(volume)), "`{volume}` is a named volume");
    assert!(db["healthcheck"]["test"].is_array(), "the database has a health check");
    let db_env = environment(db);
    let db_var = |k: &str| lookup(&db_env, k).unwrap_or_else(|| panic!("{db_name}: {k}")).to_owned();

    // Two replicas of the image, on that database.
    let replicas = replicas(&compose);
    assert_eq!(replicas.len(), 2, "two replicas: {:?}", replicas.keys());
    let mut bind_ports = Vec::new();
    for (name, service) in &replicas {
        assert!(root().join("docker").join(service["build"]["context"].as_str().unwrap()).join("Cargo.toml").exists());
        assert_eq!(published(service), vec![], "{name} is reached through the proxy only");
        let rt = replica_runtime(&image, service);
        assert_eq!(rt.cmd, image.cmd, "{name} serves");
        assert_eq!(rt.healthcheck, image.healthcheck, "{name}: the image's health check");
        let url = lookup(&rt.env, "GRADSCOPE_DATABASE_URL").unwrap_or_else(|| panic!("{name}: GRADSCOPE_DATABASE_URL"));
        let (user, password, host, port, database) = url_parts(url);
        assert_eq!(
            (user, password, host.as_str(), port, database),
            (db_var("POSTGRES_USER"), db_var("POSTGRES_PASSWORD"), db_name.as_str(), 5432, db_var("POSTGRES_DB")),
            "{name} connects to the database service with its credentials"
        );
        assert!(lookup(&rt.env, "GRADSCOPE_STORE").is_none_or(|s| s == "postgres"), "{name}");
        assert_eq!(service["depends_on"][db_name]["condition"], "service_healthy", "{name} starts after the database");
        let stop = duration(&service["stop_grace_period"]);
        let grace = grace(&rt.env);
        assert!(grace + STOP_MARGIN <= stop, "{name}: grace {grace:?} + {STOP_MARGIN:?} > stop_grace_period {stop:?}");
        let bind = lookup(&rt.env, "GRADSCOPE_BIND").unwrap();
        assert!(bind.starts_with("0.0.0.0:"), "{name} listens beyond loopback: {bind}");
        bind_ports.push(bind.rsplit(':').next().unwrap().parse::<u16>().unwrap());
    }

    // One published port in the whole file: the proxy's.
    let exposed: Vec<(&String, Vec<(u16, u16)>)> =
        services.iter().map(|(n, s)| (n, published(s))).filter(|(_, p)| !p.is_empty()).collect();
    assert_eq!(exposed.len(), 1, "one service publishes: {exposed:?}");
    let (proxy_name, ports) = &exposed[0];
    assert_eq!(ports.len(), 1, "one port: {ports:?}");
    let (_, container_port) = ports[0];
    let proxy = &services[proxy_name.as_str()];
    assert!(proxy["image"].as_str().unwrap().starts_with("nginx:"), "the official nginx image");
    for name in replicas.keys() {
        assert_eq!(proxy["depends_on"][name]["condition"], "service_healthy", "the proxy starts after {name}");
    }
    let conf = proxy_conf(proxy);

    // The proxy: listens on the published port, round robin over exactly the replicas, passes
    // event streams through.
    let d = nginx_directives(&conf);
    let find =
        |name: &str| -> Vec<&Vec<String>> { d.iter().filter(|(_, n, _)| n == name).map(|(_, _, a)| a).collect() };
    let one = |name: &str| -> &Vec<String> {
        let all = find(name);
        assert_eq!(all.len(), 1, "`{name}` once");
        all[0]
    };
    assert_eq!(one("listen"), &vec![container_port.to_string()]);
    let upstream = &one("upstream")[0];
    let servers: Vec<String> = d
        .iter()
        .filter(|(ctx, n, _)| n == "server" && ctx.last().map(String::as_str) == Some("upstream"))
        .map(|(_, _, a)| a[0].clone())
        .collect();
    let expected: Vec<String> = replicas.keys().zip(&bind_ports).map(|(n, p)| format!("{n}:{p}")).collect();
    assert_eq!(servers, expected, "the upstream is the replicas");
    assert!(
        !d.iter().any(|(ctx, n, _)| ctx.last().map(String::as_str) == Some("upstream")
            && ["hash", "ip_hash", "least_conn", "random"].contains(&n.as_str())),
        "round robin"
    );
    assert_eq!(one("proxy_pass"), &vec![format!("http://{upstream}")]);
    assert_eq!(one("proxy_buffering"), &vec!["off".to_owned()], "events reach the client as they come");
    // Longer than an event stream's keep-alive interval (15 s) and an analysis (30 s).
    assert!(nginx_time(&one("proxy_read_timeout")[0]) >= 60);
    // Bodies up to gradscope's own limit reach it (it answers 413 itself).
    let max_body = gradscope::config::ServeArgs::try_parse_from(["gradscope"]).unwrap().max_body_bytes as u64;
    assert!(nginx_size(&one("client_max_body_size")[0]) >= max_body);
}

/// A replica process: the service's exact command line and environment, but for the database
/// URL (the test's database), the data directory (a temporary one) and the port (two replicas
/// on one host cannot both bind 8080, as they do in their own containers).
struct Replica {
    name: String,
    child: Child,
    rt: Runtime,
    base: String,
    log: PathBuf,
    data: PathBuf,
}

impl Replica {
    fn spawn(name: &str, rt: &Runtime, database_url: &str, dir: &Path) -> Replica {
        let mut rt = rt.clone();
        set(&mut rt.env, "GRADSCOPE_DATABASE_URL", database_url);
        let data = dir.join(format!("data-{name}"));
        set(&mut rt.env, "GRADSCOPE_DATA_DIR", &data.display().to_string());
        let port = free_port();
        let host = lookup(&rt.env, "GRADSCOPE_BIND").unwrap().rsplit_once(':').unwrap().0.to_owned();
        set(&mut rt.env, "GRADSCOPE_BIND", &format!("{host}:{port}"));
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let argv: Vec<String> = rt.entrypoint.iter().chain(&rt.cmd).cloned().collect();
        let child = command(&argv, &rt.env)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        Replica { name: name.to_owned(), child, rt, base: format!("http://127.0.0.1:{port}"), log, data }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn compose_replicas_run_with_their_exact_command_and_form_one_cluster_on_postgres() {
    let Some(admin) = gradscope::jobs::store::postgres::test_database_url() else {
        eprintln!("skipped: no PostgreSQL (set GRADSCOPE_TEST_DATABASE_URL or run under pg_virtualenv)");
        return;
    };
    let db = TestDb::create(&admin, "compose").await;
    let compose = compose();
    let image = runtime_stage();
    let dir = std::env::temp_dir().join(format!("gradscope-compose-test-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();

    let mut replicas: Vec<(Replica, Duration)> = replicas(&compose)
        .iter()
        .map(|(name, service)| {
            let rt = replica_runtime(&image, service);
            (Replica::spawn(name, &rt, &db.url, &dir), duration(&service["stop_grace_period"]))
        })
        .collect();
    assert_eq!(replicas.len(), 2);
    let client = client();
    for (r, _) in &replicas {
        // The compose health check passes (it reads /readyz on GRADSCOPE_BIND) ...
        wait_healthy(&r.rt.healthcheck, &r.rt.env, Duration::from_secs(30), || r.log_text()).await;
        // ... and /readyz answers 200: the store (PostgreSQL) answers.
        let res = client.get(format!("{}/readyz", r.base)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{}: {}", r.name, r.log_text());
        assert!(!r.data.join("gradscope.db").exists(), "{} uses PostgreSQL, not SQLite", r.name);
    }

    // One cluster: a job submitted to either replica is read, followed and reported by the other.
    let (a, b) = (&replicas[0].0.base, &replicas[1].0.base);
    let first = submit(&client, a, &tiny_spec(40)).await;
    let second = submit(&client, b, &tiny_spec(30)).await;
    for (id, other) in [(&first, b), (&second, a)] {
        let job = wait_job(&client, other, id, Duration::from_secs(60), |j| j["status"] == "succeeded").await;
        assert_eq!(job["id"], json!(id));
        let report = client.get(format!("{other}/v1/jobs/{id}/report")).send().await.unwrap();
        assert_eq!(report.status(), StatusCode::OK, "{id} on {other}");
    }
    let list: Value = client.get(format!("{a}/v1/jobs")).send().await.unwrap().json().await.unwrap();
    let ids: Vec<&str> = list["jobs"].as_array().unwrap().iter().filter_map(|j| j["id"].as_str()).collect();
    assert!(ids.contains(&first.as_str()) && ids.contains(&second.as_str()), "{list}");

    // The proxy, when an nginx binary is at hand: its configuration, as mounted, in front of them.
    match nginx_binary() {
        Some(nginx) => {
            through_the_proxy(&nginx, &compose, &replicas.iter().map(|(r, _)| r).collect::<Vec<_>>(), &dir).await
        }
        None => eprintln!("proxy not run: no nginx (set GRADSCOPE_TEST_NGINX to an nginx binary, see .ci/run)"),
    }

    // Each stops on SIGTERM, cleanly, within its stop_grace_period.
    for (r, stop) in &mut replicas {
        let (status, took) = terminate(&mut r.child, *stop).await;
        assert!(status.success(), "{}: exit {status}: {}", r.name, r.log_text());
        eprintln!("{} ({}): ready on {}, stopped in {took:?}", r.name, r.base, db.name);
    }
    drop(replicas);
    let _ = std::fs::remove_dir_all(&dir);
}

/// An nginx binary: `GRADSCOPE_TEST_NGINX`, or `nginx` where Debian installs it.
fn nginx_binary() -> Option<PathBuf> {
    let path = std::env::var_os("GRADSCOPE_TEST_NGINX")
        .map(PathBuf::from)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/nginx"));
    path.is_file().then_some(path)
}

/// nginx, stopped (SIGKILL) when dropped.
struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs docker/nginx.conf (as the proxy service mounts it, with the replicas' addresses and the
/// listening port of this host put in for the compose names) in a minimal main configuration,
/// and checks through it: readiness, round robin over both replicas, an event stream whose
/// events arrive while its job runs.
async fn through_the_proxy(nginx: &Path, compose: &Value, replicas: &[&Replica], dir: &Path) {
    let mut conf = proxy_conf(&compose["services"]["proxy"]);
    for r in replicas {
        let bind = lookup(&compose_env(compose, &r.name), "GRADSCOPE_BIND").unwrap().to_owned();
        let port = bind.rsplit(':').next().unwrap();
        let here = r.base.trim_start_matches("http://");
        let server = format!("server {}:{port} ", r.name);
        assert!(conf.contains(&server), "{server}");
        conf = conf.replace(&server, &format!("server {here} "));
    }
    let (_, container_port) = published(&compose["services"]["proxy"])[0];
    let port = free_port();
    let listen = format!("listen {container_port};");
    assert!(conf.contains(&listen));
    conf = conf.replace(&listen, &format!("listen 127.0.0.1:{port};"));
    let prefix = dir.join("nginx");
    std::fs::create_dir_all(&prefix).unwrap();
    std::fs::write(prefix.join("default.conf"), conf).unwrap();
    let p = prefix.display();
    // The official image's main configuration reduced to what this needs: one process in the
    // foreground, every path in the test's directory.
    let main = format!(
        "daemon off;\nmaster_process off;\npid {p}/nginx.pid;\nerror_log {p}/error.log info;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {p}/body;\n  proxy_temp_path {p}/proxy;\n\
         fastcgi_temp_path {p}/fastcgi;\n  uwsgi_temp_path {p}/uwsgi;\n  scgi_temp_path {p}/scgi;\n\
         include {p}/default.conf;\n}}\n"
    );
    std::fs::write(prefix.join("nginx.conf"), main).unwrap();
    let error_log = prefix.join("error.log");
    let child = Command::new(nginx)
        .arg("-p")
        .arg(&prefix)
        .arg("-e")
        .arg(&error_log)
        .arg("-c")
        .arg(prefix.join("nginx.conf"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx");
    let _nginx = Nginx(child);
    let base = format!("http://127.0.0.1:{port}");
    let log = || std::fs::read_to_string(&error_log).unwrap_or_default();
    let client = client();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client.get(format!("{base}/readyz")).send().await {
            Ok(r) if r.status() == StatusCode::OK => break,
            _ => {}
        }
        assert!(Instant::now() < deadline, "the proxy never answered /readyz 200; nginx log:\n{}", log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Round robin: submissions through the one port are queued by both replicas.
    let mut ids = Vec::new();
    for steps in [10, 11, 12, 13] {
        ids.push(submit(&client, &base, &tiny_spec(steps)).await);
    }
    for r in replicas {
        let log = r.log_text();
        let queued =
            ids.iter().filter(|id| log.lines().any(|l| l.contains("job queued") && l.contains(id.as_str()))).count();
        assert!(queued >= 1, "{} queued none of {ids:?} sent through the proxy", r.name);
    }

    // An event stream through the proxy: its first progress event arrives while the job still
    // trains (not only when the stream ends), then the job is cancelled. (nginx 1.22 passed these
    // small events on even with `proxy_buffering on`: the structure test holds the setting.)
    let id = submit(&client, &base, &minutes_long_spec()).await;
    let stream_client = Client::builder().build().unwrap();
    let mut res = stream_client.get(format!("{base}/v1/jobs/{id}/events")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !text.contains("event: progress") {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk =
            tokio::time::timeout(left, res.chunk()).await.unwrap_or_else(|_| panic!("no progress event: {text}"));
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap().expect("the stream ended")));
    }
    let job: Value = client.get(format!("{base}/v1/jobs/{id}")).send().await.unwrap().json().await.unwrap();
    assert_eq!(job["status"], "running", "the event came while the job ran: {job}");
    let cancel = client.post(format!("{base}/v1/jobs/{id}/cancel")).send().await.unwrap();
    assert!(cancel.status().is_success(), "{}", cancel.status());
    drop(res);
    wait_job(&client, &base, &id, Duration::from_secs(20), |j| j["status"] == "cancelled").await;
    eprintln!("proxy (nginx {}): ready, round robin over both replicas, events while the job runs", nginx.display());
}

/// The environment of compose service `name` (the image's ENV with the service's over it).
fn compose_env(compose: &Value, name: &str) -> Vec<(String, String)> {
    replica_runtime(&runtime_stage(), &compose["services"][name]).env
}
