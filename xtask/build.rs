//! The build's identity for `shard.json`: the crate's version and the git
//! commit it was built from (`0.1.0+g1a2b3c4d5e6f`), so that shards built
//! from different commits are not merged as one run. Rebuilt when the
//! checkout moves to another commit; without git (a source tarball) the
//! version alone. A build whose tracked sources differ from that commit is
//! marked (`0.1.0+g1a2b3c4d5e6f.dirty`), so a calibration ledger or a shard
//! never names a commit its binary was not built from: the sources the
//! binary is built from are watched, and a change to them reruns this as it
//! recompiles the crate anyway. New files not yet added to git are not seen.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .filter(|text| !text.is_empty())
}

/// What xtask's binaries are built from (the `include_str!`s included),
/// relative to the workspace root.
const SOURCES: [&str; 7] = [
    "xtask/build.rs",
    "harness/src",
    "harness/images",
    "fixtures/src",
    "fixtures/migrations",
    "xtask/src",
    "Cargo.lock",
];

/// Whether a tracked source file differs from HEAD (`git diff` refreshes
/// file stats in memory and writes nothing, so it cannot race the user's git).
fn sources_differ_from_head() -> bool {
    let sources: Vec<String> = SOURCES
        .iter()
        .map(|source| format!("../{source}"))
        .collect();
    let mut args = vec!["diff", "--name-only", "HEAD", "--"];
    args.extend(sources.iter().map(String::as_str));
    git(&args).is_some()
}

fn main() {
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let build = match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(commit) if sources_differ_from_head() => format!("{version}+g{commit}.dirty"),
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
    for source in SOURCES {
        println!("cargo:rerun-if-changed=../{source}");
    }
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
