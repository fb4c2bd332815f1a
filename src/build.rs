//! Build script: the git commit the agent is built from, for `firebreak --version`
//! (`FIREBREAK_GIT_COMMIT`). Outside a git checkout, or without git, it is "unknown"; the
//! variable may also be set by whoever builds from a source tarball. Never fails the build.
//!
//! Design: the commit is a compile-time env of the whole package, so a new commit recompiles
//! the agent's own crate (not its dependencies); that is what makes the binary say which
//! commit it is.

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// A path inside the git directory (a worktree's own, or the common one for refs).
fn git_path(name: &str) -> Option<PathBuf> {
    git(&["rev-parse", "--path-format=absolute", "--git-path", name]).map(PathBuf::from)
}

fn main() {
    println!("cargo:rerun-if-changed=src/build.rs");
    println!("cargo:rerun-if-env-changed=FIREBREAK_GIT_COMMIT");
    let commit = match std::env::var("FIREBREAK_GIT_COMMIT") {
        Ok(c) if !c.trim().is_empty() => c.trim().to_string(),
        _ => {
            // HEAD moves on checkout; the branch's ref (loose, or in packed-refs) on commit.
            if let Some(head) = git_path("HEAD") {
                println!("cargo:rerun-if-changed={}", head.display());
            }
            if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
                if let Some(r) = git_path(&branch) {
                    if r.exists() {
                        println!("cargo:rerun-if-changed={}", r.display());
                    }
                }
                if let Some(packed) = git_path("packed-refs") {
                    if packed.exists() {
                        println!("cargo:rerun-if-changed={}", packed.display());
                    }
                }
            }
            git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into())
        }
    };
    println!("cargo:rustc-env=FIREBREAK_GIT_COMMIT={commit}");
}
