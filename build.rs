//! Puts the git revision the binary is built from into `raypack --version`
//! (`RAYPACK_LONG_VERSION`): from `RAYPACK_GIT_REVISION` when set (builds from a source archive),
//! else from `git rev-parse`, else the version alone.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

fn main() {
    println!("cargo:rerun-if-env-changed=RAYPACK_GIT_REVISION");
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let revision = std::env::var("RAYPACK_GIT_REVISION")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            let dir = git(&["rev-parse", "--absolute-git-dir"])?;
            // Rebuild when HEAD moves (a checkout, or a commit on the current branch).
            println!("cargo:rerun-if-changed={dir}/HEAD");
            println!("cargo:rerun-if-changed={dir}/refs/heads");
            println!("cargo:rerun-if-changed={dir}/packed-refs");
            git(&["rev-parse", "--short=12", "HEAD"])
        });
    let long = match revision {
        Some(r) => format!("{version} ({r})"),
        None => version,
    };
    println!("cargo:rustc-env=RAYPACK_LONG_VERSION={long}");
}
