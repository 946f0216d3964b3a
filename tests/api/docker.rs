//! The container's command line, run without a container engine: the binary gets exactly the
//! ENV, ENTRYPOINT + CMD and HEALTHCHECK of docker/Dockerfile's final stage, must become
//! healthy, and must exit 0 on SIGTERM.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What the runtime stage of the Dockerfile gives the process.
#[derive(Debug, Default)]
struct Runtime {
    env: Vec<(String, String)>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    healthcheck: Vec<String>,
    expose: Vec<u16>,
    volumes: Vec<String>,
}

fn json_array(s: &str) -> Vec<String> {
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("not an exec-form JSON array: {s}: {e}"))
}

fn runtime_stage() -> Runtime {
    let text = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docker/Dockerfile")).unwrap();
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

/// Runs `argv` (whose first element is the image's binary path) with our binary instead.
fn command(argv: &[String], env: &[(String, String)]) -> Command {
    assert_eq!(argv[0], "/usr/local/bin/gradscope", "the image runs the gradscope binary");
    let mut c = Command::new(env!("CARGO_BIN_EXE_gradscope"));
    c.args(&argv[1..]).env_clear().envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    c
}

#[test]
fn the_binary_serves_with_exactly_the_dockerfile_arguments_and_environment() {
    let rt = runtime_stage();
    assert!(!rt.entrypoint.is_empty() && !rt.healthcheck.is_empty(), "{rt:?}");
    let bind = rt.env.iter().find(|(k, _)| k == "GRADSCOPE_BIND").map(|(_, v)| v.clone()).expect("GRADSCOPE_BIND");
    let port: u16 = bind.rsplit(':').next().unwrap().parse().unwrap();
    assert!(rt.expose.contains(&port), "EXPOSE {:?} must include the bound port {port}", rt.expose);
    assert!(
        std::net::TcpListener::bind(("0.0.0.0", port)).is_ok(),
        "port {port} is busy: stop whatever listens on it (this test runs the image's exact command line)"
    );

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

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = command(&rt.healthcheck, &rt.env).stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap();
        if status.success() {
            break;
        }
        if Instant::now() > deadline {
            let _ = server.kill();
            panic!("HEALTHCHECK never passed");
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    // SIGTERM (the image's STOPSIGNAL) ends it cleanly; exec-form ENTRYPOINT means the binary
    // itself receives it.
    let kill = Command::new("kill").args(["-TERM", &server.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = server.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit within 20 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut log = String::new();
    std::io::Read::read_to_string(server.stderr.as_mut().unwrap(), &mut log).unwrap();
    assert!(status.success(), "exit {status}: {log}");
    // GRADSCOPE_LOG_FORMAT=json: one JSON object per line.
    let first = log.lines().next().expect("a log line");
    assert!(serde_json::from_str::<serde_json::Value>(first).is_ok(), "not JSON: {first}");
    // And the health check fails once it is gone.
    assert!(!command(&rt.healthcheck, &rt.env).stderr(Stdio::null()).status().unwrap().success());
}

/// `COPY . .` sends the build context: `.dockerignore` keeps the build outputs, the git history
/// and local data out of it, and everything the build reads in it.
#[test]
fn the_build_context_leaves_out_target_git_and_data_but_not_what_the_build_reads() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
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
