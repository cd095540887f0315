//! The build's identity for `shard.json`: the crate's version and the git
//! commit it was built from (`0.1.0+g1a2b3c4d5e6f`), so that shards built
//! from different commits are not merged as one run. Rebuilt when the
//! checkout moves to another commit; without git (a source tarball) the
//! version alone. Uncommitted changes are not marked: watching the index
//! would rebuild on every `git status`.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .filter(|text| !text.is_empty())
}

fn main() {
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let build = match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(commit) => format!("{version}+g{commit}"),
        None => version,
    };
    println!("cargo:rustc-env=AHSP_PERF_BUILD={build}");
    // Relative relocations packed (DT_RELR, glibc 2.36 and binutils 2.38 or
    // later): the loader reads a few kilobytes at start instead of 1.4 MB of
    // `.rela.dyn`, which was most of the pages this binary touched before
    // `main` (`perf record -e page-faults -d -- xtask --version`: 57 % in
    // `_dl_relocate_object`).
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu")
    {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-changed=build.rs");
    if let Some(git_dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        let mut watched = vec![format!("{git_dir}/HEAD"), format!("{git_dir}/packed-refs")];
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watched.push(format!("{git_dir}/{branch}"));
        }
        for path in watched {
            // A path that does not exist would rerun this on every build.
            if std::path::Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
}
