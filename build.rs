//! Records which commit a binary was built from (`asc --version`, and every epoch a run trains:
//! `metrics.jsonl`), so a result can be traced to the code that made it even when a run was
//! resumed by another build. "+changes" marks a tree with uncommitted edits; a build outside a
//! git checkout (a packaged crate) says "no git".

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    let commit = git(&["rev-parse", "--short=7", "HEAD"]);
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    let id = match commit {
        Some(c) if dirty => format!("{c}+changes"),
        Some(c) => c,
        None => "no git".into(),
    };
    println!("cargo:rustc-env=ASC_BUILD_COMMIT={id}");
    // Rerun when the commit or the tracked files change. The git folder is asked for, not
    // assumed: in a worktree `.git` is a file, and a path that never exists would rerun this
    // script (and rebuild the crate) on every build.
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=Cargo.toml");
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        for f in ["HEAD", "index"] {
            let p = std::path::Path::new(&dir).join(f);
            if p.exists() {
                println!("cargo:rerun-if-changed={}", p.display());
            }
        }
    }
}
