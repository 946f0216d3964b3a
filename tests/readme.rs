//! README.md, checked: its walkthrough is executed and its links lead somewhere.
//!
//! The walkthrough test reads README.md at test time, takes every ```` ```sh ```` block between
//! `<!-- walkthrough:begin -->` and `<!-- walkthrough:end -->` (no copy of the commands lives
//! here), starts a real `gradscope serve` on an ephemeral port (in-memory store, so nothing is
//! left behind), rewrites `localhost:8080` to that port and runs the commands in order in one
//! `bash` with `set -euo pipefail`, so that shell variables (the job's URL) carry over. Each
//! command is announced on stderr by a marker; the one that fails is named with its output.
//! Every `curl` must fail on an HTTP error (`--fail-with-body` or `-f`), and every command must
//! print something, but a variable assignment, and a download (`-o FILE`) must write a non-empty
//! file.

// Tests may panic on a broken expectation; the crate's unwrap/expect lints are for library code.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;

use serde_json::Value;

const BEGIN: &str = "<!-- walkthrough:begin -->";
const END: &str = "<!-- walkthrough:end -->";
/// The marker printed on stderr before each command: `::: command N`.
const MARKER: &str = "::: command ";

fn readme() -> String {
    std::fs::read_to_string(common::root().join("README.md")).expect("README.md")
}

/// The text between the walkthrough markers.
fn walkthrough(readme: &str) -> &str {
    let start = readme.find(BEGIN).unwrap_or_else(|| panic!("README.md has no `{BEGIN}`"));
    let end = readme[start..].find(END).unwrap_or_else(|| panic!("README.md has no `{END}` after `{BEGIN}`"));
    &readme[start + BEGIN.len()..start + end]
}

/// The shell commands of the walkthrough's ```` ```sh ```` blocks, in order: a line ending with
/// `\` continues on the next, and so does a line inside a single-quoted string; blank lines and
/// comment lines are left out.
fn commands(section: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_sh = false;
    let mut pending = String::new();
    for line in section.lines() {
        let trimmed = line.trim();
        if let Some(info) = trimmed.strip_prefix("```") {
            if in_sh {
                assert!(pending.is_empty(), "a ```sh block ends inside a continued command: {pending}");
                in_sh = false;
            } else {
                // Any other fence (an output excerpt) and its closing fence leave `in_sh` false.
                in_sh = info.trim() == "sh";
            }
            continue;
        }
        if !in_sh {
            continue;
        }
        if pending.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if line.ends_with('\\') {
            // Kept as written: bash joins the lines.
            pending.push_str(line);
            pending.push('\n');
        } else {
            pending.push_str(line);
            // A single-quoted string (a JSON body) may span lines: the command goes on until
            // its quotes are closed.
            if pending.matches('\'').count().is_multiple_of(2) {
                out.push(std::mem::take(&mut pending));
            } else {
                pending.push('\n');
            }
        }
    }
    out
}

/// The fenced blocks of a text toggle on every fence line; `commands` relies on a block's
/// closing fence being a bare ```` ``` ````, as every fence of README.md is.
fn fences_are_balanced(text: &str) -> bool {
    text.lines().filter(|l| l.trim().starts_with("```")).count().is_multiple_of(2)
}

/// Whether a command only assigns a shell variable (and so prints nothing).
fn is_assignment(command: &str) -> bool {
    let first = command.split_whitespace().next().unwrap_or("");
    first
        .split_once('=')
        .is_some_and(|(name, _)| !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
}

/// The file a command writes with curl's `-o FILE` (not `/dev/null`), if any.
fn written_file(command: &str) -> Option<String> {
    curl_invocations(command)
        .iter()
        .find_map(|args| args.windows(2).find(|w| w[0] == "-o" && w[1] != "/dev/null").map(|w| w[1].clone()))
}

/// Every `curl` invocation in a command: its words up to the end of its pipeline stage.
fn curl_invocations(command: &str) -> Vec<Vec<String>> {
    let words: Vec<&str> = command.split_whitespace().collect();
    let mut out = Vec::new();
    for (i, w) in words.iter().enumerate() {
        if w.rsplit("$(").next() == Some("curl") {
            let stage: Vec<String> = words[i + 1..]
                .iter()
                .take_while(|w| !matches!(**w, "|" | "&&" | ";" | "||"))
                .map(|w| w.to_string())
                .collect();
            out.push(stage);
        }
    }
    out
}

/// Whether a curl invocation turns an HTTP error into a failing exit status.
fn fails_on_http_error(args: &[String]) -> bool {
    args.iter().any(|a| {
        a == "--fail-with-body"
            || a == "--fail"
            || (a.starts_with('-')
                && !a.starts_with("--")
                && a[1..].chars().all(|c| c.is_ascii_alphabetic())
                && a.contains('f'))
    })
}

#[test]
fn the_walkthrough_is_found_and_every_curl_fails_on_an_http_error() {
    let readme = readme();
    assert!(fences_are_balanced(&readme), "README.md has an unclosed ``` fence");
    let commands = commands(walkthrough(&readme));
    assert!(commands.len() >= 8, "the walkthrough has only {} commands: {commands:#?}", commands.len());
    let all = commands.join("\n");
    // The researcher's path: a preset, its progress, verdict, page, a patched spec, an experiment.
    for route in ["/v1/presets", "/v1/jobs", "/events", "/report", "/report.html", "/v1/experiments"] {
        assert!(all.contains(route), "the walkthrough never uses {route}:\n{all}");
    }
    for tool in ["jq", "python", "python3", "node"] {
        assert!(
            !all.split(|c: char| !c.is_ascii_alphanumeric()).any(|w| w == tool),
            "the walkthrough uses `{tool}`; a fresh machine has only bash and curl:\n{all}"
        );
    }
    for command in &commands {
        let curls = curl_invocations(command);
        for args in &curls {
            assert!(fails_on_http_error(args), "a curl without --fail-with-body (or -f) in:\n{command}");
        }
    }
    assert!(commands.iter().any(|c| c.contains("localhost:8080")), "the walkthrough does not talk to localhost:8080");
}

#[test]
fn the_readme_walkthrough_runs_against_a_live_server() {
    let curl = Command::new("curl").arg("--version").output();
    let version = match curl {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
        _ => panic!("the README walkthrough test needs curl (7.84 or later) on PATH: apt-get install curl"),
    };
    let readme = readme();
    let commands = commands(walkthrough(&readme));

    let server = common::Server::start(&["--log-format", "json"]);
    let started: Vec<Value> =
        server.until_listening().iter().filter_map(|l| serde_json::from_str::<Value>(l).ok()).collect();
    let addr =
        started.last().expect("the server said where it listens")["fields"]["addr"].as_str().expect("addr").to_owned();

    let dir = std::env::temp_dir().join(format!("gradscope-readme-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join(".out")).expect("work dir");
    let mut script = String::from("set -euo pipefail\n");
    for (i, command) in commands.iter().enumerate() {
        let command = command.replace("localhost:8080", &addr);
        script.push_str(&format!("printf '{MARKER}{i}\\n' >&2\n{{\n{command}\n}} > .out/{i}\n"));
    }
    std::fs::write(dir.join(".out/script.sh"), &script).expect("write script");

    let t0 = std::time::Instant::now();
    let out = Command::new("timeout")
        .args(["300", "bash", ".out/script.sh"])
        .current_dir(&dir)
        .output()
        .expect("bash runs (coreutils' timeout)");
    let elapsed = t0.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let output_of = |i: usize| std::fs::read_to_string(dir.join(format!(".out/{i}"))).unwrap_or_default();

    if !out.status.success() {
        let failed: Option<usize> = stderr.lines().rev().find_map(|l| l.strip_prefix(MARKER)?.trim().parse().ok());
        let log = server.stop().join("\n");
        match failed {
            Some(i) => panic!(
                "README walkthrough command {} of {} failed ({}):\n\n{}\n\nits output:\n{}\nstderr:\n{stderr}\nserver log:\n{log}\n{version}",
                i + 1,
                commands.len(),
                out.status,
                commands[i],
                output_of(i)
            ),
            None => panic!("the walkthrough script did not start ({}): {stderr}", out.status),
        }
    }
    for (i, command) in commands.iter().enumerate() {
        let output = output_of(i);
        eprintln!(
            "$ {command}\n{}",
            output.lines().take(6).map(|l| l.chars().take(160).collect::<String>()).collect::<Vec<_>>().join("\n")
        );
        if let Some(file) = written_file(command) {
            let written = std::fs::metadata(dir.join(&file)).map(|m| m.len()).unwrap_or(0);
            assert!(written > 0, "README walkthrough command {} wrote nothing to {file}:\n{command}", i + 1);
        } else if !is_assignment(command) {
            assert!(!output.trim().is_empty(), "README walkthrough command {} printed nothing:\n{command}", i + 1);
        }
    }
    eprintln!("{} commands in {:.1} s", commands.len(), elapsed.as_secs_f64());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every relative link of README.md (`[text](path)`, `![alt](path)`, `src="path"`), anchors
/// removed, names a file or directory of the repository; no link leaves it.
#[test]
fn every_relative_link_in_the_readme_points_at_a_file_of_the_repository() {
    let readme = readme();
    let root = common::root();
    let mut targets = Vec::new();
    for (i, _) in readme.match_indices("](") {
        let rest = &readme[i + 2..];
        if let Some(end) = rest.find(')') {
            targets.push(rest[..end].to_owned());
        }
    }
    for (i, _) in readme.match_indices("src=\"") {
        let rest = &readme[i + 5..];
        if let Some(end) = rest.find('"') {
            targets.push(rest[..end].to_owned());
        }
    }
    assert!(!targets.is_empty(), "no links found in README.md");
    let mut broken = Vec::new();
    for target in &targets {
        if target.starts_with("http://")
            || target.starts_with("https://")
            || target.starts_with("mailto:")
            || target.starts_with('#')
        {
            continue;
        }
        let path = target.split('#').next().unwrap_or("");
        if path.starts_with('/') || path.contains("../") || !root.join(Path::new(path)).exists() {
            broken.push(target.clone());
        }
    }
    assert!(broken.is_empty(), "README.md links to what the repository does not have: {broken:?}");
    for forbidden in ["../shared", "/work/"] {
        assert!(!readme.contains(forbidden), "README.md mentions `{forbidden}`, a path outside the repository");
    }
}

#[test]
fn the_command_parser_joins_continued_lines_and_skips_comments_and_other_fences() {
    let text = "```sh\n# a comment\nA=$(curl -sf x \\\n  -d y)\necho \"$A\"\ncurl -f x -d '{\n  \"a\": 1}'\n```\n\n```text\nnot a command\n```\n";
    assert_eq!(
        commands(text),
        vec![
            "A=$(curl -sf x \\\n  -d y)".to_owned(),
            "echo \"$A\"".to_owned(),
            "curl -f x -d '{\n  \"a\": 1}'".to_owned()
        ]
    );
    assert!(is_assignment("A=$(curl -sf x)"));
    assert!(!is_assignment("curl -sf localhost:8080/v1/presets"));
    assert_eq!(written_file("curl -sf x -o report.json"), Some("report.json".to_owned()));
    assert_eq!(written_file("X=$(curl -sf -o /dev/null x)"), None);
    assert_eq!(written_file("curl -sf x | grep -o y"), None);
    assert!(fails_on_http_error(&["-sf".into()]));
    assert!(fails_on_http_error(&["-s".into(), "--fail-with-body".into()]));
    assert!(!fails_on_http_error(&["-s".into(), "-o".into(), "file".into()]));
    assert_eq!(curl_invocations("X=$(curl -s a | grep b) && curl -f c").len(), 2);
}
