//! Sets `GRADSCOPE_VERSION` for `gradscope --version`: the package version, followed by the git
//! commit the binary was built from when it is known: `0.1.0 (commit 4714bc5)`.
//!
//! The commit comes from `GRADSCOPE_GIT_COMMIT` when that is set at build time (a build without
//! the repository, such as the container image's), else from `git rev-parse` when the sources
//! are a git checkout and git is installed; otherwise the version is the package version alone.
//! Nothing here fails the build. The script reruns only when that variable or the checkout's
//! HEAD (or the branch it points to) changes, not on every edit of the sources.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let version = env("CARGO_PKG_VERSION").unwrap_or_default();
    println!("cargo:rerun-if-env-changed=GRADSCOPE_GIT_COMMIT");
    let commit = env("GRADSCOPE_GIT_COMMIT").filter(|c| !c.trim().is_empty()).or_else(git_commit);
    let long = match commit {
        Some(c) => format!("{version} (commit {})", c.trim()),
        None => version,
    };
    println!("cargo:rustc-env=GRADSCOPE_VERSION={long}");
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// `git rev-parse --short HEAD` of the checkout holding the manifest, with the files whose
/// change means another commit registered for a rerun; `None` without git or a checkout.
fn git_commit() -> Option<String> {
    let dir = PathBuf::from(env("CARGO_MANIFEST_DIR")?);
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").arg("-C").arg(&dir).args(args).output().ok()?;
        let text = String::from_utf8(out.stdout).ok()?;
        (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
    // Only paths that exist: cargo reruns a script on every build when one of its paths is missing.
    let watch = |path: &Path| {
        let path = if path.is_absolute() { path.to_path_buf() } else { dir.join(path) };
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    };
    let git_dir = git(&["rev-parse", "--git-dir"]).map(PathBuf::from);
    let common_dir = git(&["rev-parse", "--git-common-dir"]).map(PathBuf::from);
    if let Some(git_dir) = &git_dir {
        watch(&git_dir.join("HEAD"));
    }
    if let Some(common) = common_dir.as_ref().or(git_dir.as_ref()) {
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watch(&common.join(branch));
        }
        watch(&common.join("packed-refs"));
    }
    Some(commit)
}
