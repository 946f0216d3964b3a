//! The files a command reads (the spec, `-` for standard input) and writes (`-o`, `--html`,
//! `--plots`, `--params-out`): each output path is checked before anything runs, by creating or
//! opening what will be written, so that a typo or an unwritable directory fails at once
//! instead of after the training; then written, and listed for the summary. And where the JSON
//! goes: standard output gets it with `--json`, or when it is not a terminal and no `-o` was
//! given; otherwise the summary.

use std::fs::OpenOptions;
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use super::args::Outputs;
use super::failure::Failure;

/// A file (or directory of plots) a command wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    /// What it holds (`JSON report`, `HTML page`, `plots`, `parameters`).
    pub what: &'static str,
    /// Where.
    pub path: PathBuf,
    /// What is in it, when a path alone does not say (the plot files of a directory).
    pub detail: Option<String>,
}

/// Reads the input file, or standard input for `-`.
pub fn read(path: &str) -> Result<Vec<u8>, Failure> {
    let mut buf = Vec::new();
    let r = if path == "-" {
        std::io::stdin().read_to_end(&mut buf).map(|_| ())
    } else {
        std::fs::read(path).map(|b| buf = b)
    };
    r.map_err(|e| Failure::Io(format!("{path}: {e}")))?;
    Ok(buf)
}

/// Whether standard output gets the JSON (rather than the summary).
pub fn stdout_gets_json(outputs: &Outputs) -> bool {
    json_to_stdout(outputs, std::io::stdout().is_terminal())
}

fn json_to_stdout(outputs: &Outputs, terminal: bool) -> bool {
    outputs.json || (!terminal && outputs.output.is_none())
}

/// Checks every path of `outputs` (and `--params-out`) before anything runs: creates the plot
/// directory and a probe file in it, and opens (or creates, then removes) each output file
/// without changing an existing one.
pub fn check(outputs: &Outputs, params_out: Option<&Path>) -> Result<(), Failure> {
    // The plot directory first: `--plots DIR --html DIR/page.html` finds DIR created.
    if let Some(dir) = &outputs.plots {
        check_dir("--plots", dir)?;
    }
    let files = [("-o", outputs.output.as_deref()), ("--html", outputs.html.as_deref()), ("--params-out", params_out)];
    for (flag, path) in files {
        if let Some(path) = path {
            check_file(flag, path)?;
        }
    }
    Ok(())
}

fn refused(flag: &str, path: &Path, what: &str, e: std::io::Error) -> Failure {
    Failure::Io(format!("{flag} {}: cannot {what}: {e}; checked before running, so nothing was run", path.display()))
}

/// Opens `path` for writing without truncating it, or creates it and removes it again.
fn check_file(flag: &str, path: &Path) -> Result<(), Failure> {
    if path.is_dir() {
        let e = std::io::Error::new(std::io::ErrorKind::IsADirectory, "it is a directory");
        return Err(refused(flag, path, "write the file", e));
    }
    if path.exists() {
        return OpenOptions::new()
            .append(true)
            .open(path)
            .map(drop)
            .map_err(|e| refused(flag, path, "write the file", e));
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| refused(flag, path, "create the file", e))?;
    std::fs::remove_file(path).map_err(|e| refused(flag, path, "remove the probe file", e))
}

/// Creates `dir` (and its parents) and a probe file in it, removed again.
fn check_dir(flag: &str, dir: &Path) -> Result<(), Failure> {
    std::fs::create_dir_all(dir).map_err(|e| refused(flag, dir, "create the directory", e))?;
    let probe = dir.join(format!(".gradscope-write-check-{}", std::process::id()));
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&probe)
        .map_err(|e| refused(flag, dir, "write in the directory", e))?;
    std::fs::remove_file(&probe).map_err(|e| refused(flag, dir, "remove the probe file", e))
}

/// Writes `contents` to `path`.
pub fn write(what: &'static str, path: &Path, contents: &str) -> Result<Written, Failure> {
    std::fs::write(path, contents).map_err(|e| Failure::Io(format!("{}: {e}", path.display())))?;
    Ok(Written { what, path: path.to_path_buf(), detail: None })
}

/// Writes each `(name, svg)` as `dir/name.svg` (the directory exists: [`check`] made it).
pub fn write_plots(dir: &Path, plots: Vec<(&'static str, String)>) -> Result<Written, Failure> {
    std::fs::create_dir_all(dir).map_err(|e| Failure::Io(format!("{}: {e}", dir.display())))?;
    let mut names = Vec::new();
    for (name, svg) in plots {
        let file = format!("{name}.svg");
        let path = dir.join(&file);
        std::fs::write(&path, svg).map_err(|e| Failure::Io(format!("{}: {e}", path.display())))?;
        names.push(file);
    }
    let detail = if names.is_empty() { "no plot applies".to_owned() } else { names.join(", ") };
    Ok(Written { what: "plots", path: dir.to_path_buf(), detail: Some(detail) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("gradscope-cli-files-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_checked_new_file_is_not_left_behind_and_an_existing_one_is_unchanged() {
        let dir = temp("file");
        std::fs::create_dir_all(&dir).unwrap();
        let new = dir.join("new.json");
        check_file("-o", &new).unwrap();
        assert!(!new.exists(), "the probe is removed");
        let old = dir.join("old.json");
        std::fs::write(&old, "kept").unwrap();
        check_file("-o", &old).unwrap();
        assert_eq!(std::fs::read_to_string(&old).unwrap(), "kept");
    }

    #[test]
    fn a_missing_parent_or_a_directory_is_refused_naming_the_flag_and_the_path() {
        let dir = temp("refused");
        std::fs::create_dir_all(&dir).unwrap();
        let Err(Failure::Io(msg)) = check_file("--html", &dir.join("no/such/page.html")) else { panic!("accepted") };
        assert!(
            msg.starts_with("--html ") && msg.contains("no/such/page.html") && msg.contains("nothing was run"),
            "{msg}"
        );
        let Err(Failure::Io(msg)) = check_file("-o", &dir) else { panic!("a directory accepted as a file") };
        assert!(msg.contains("directory"), "{msg}");
        let file = dir.join("file");
        std::fs::write(&file, "").unwrap();
        let Err(Failure::Io(msg)) = check_dir("--plots", &file) else { panic!("a file accepted as a directory") };
        assert!(msg.starts_with("--plots "), "{msg}");
    }

    #[test]
    fn the_json_goes_to_stdout_when_asked_or_when_stdout_is_not_a_terminal_and_no_file_takes_it() {
        let with =
            |json, output: Option<&str>| Outputs { json, output: output.map(PathBuf::from), ..Outputs::default() };
        assert!(json_to_stdout(&with(false, None), false), "a pipe gets the JSON");
        assert!(!json_to_stdout(&with(false, None), true), "a terminal gets the summary");
        assert!(!json_to_stdout(&with(false, Some("r.json")), false), "-o takes the JSON; stdout the summary");
        assert!(json_to_stdout(&with(true, Some("r.json")), true), "--json wins");
    }

    #[test]
    fn the_plot_directory_is_created_and_left_empty() {
        let dir = temp("plots").join("a/b");
        check(&Outputs { plots: Some(dir.clone()), ..Outputs::default() }, None).unwrap();
        assert!(dir.is_dir());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    }
}
