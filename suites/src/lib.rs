//! The AHSP suites: the suite files (`ahsp/`, `proof/`), the AHSP domain
//! the harness's run pipeline needs ([`ahsp::Ahsp`]: seeding and the
//! embedded reference service), and the tests that run them. `cargo xtask
//! perf` and the SLA test target (`tests/sla.rs`) both run suites through
//! `harness::run` with this domain.

pub mod ahsp;

use std::path::PathBuf;

/// The folder of the AHSP suite files.
pub fn suite_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("ahsp")
}

/// Every suite file, sorted by name.
pub fn suite_files() -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(suite_dir())?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    Ok(files)
}

/// A suite by name (`core`) or path.
pub fn find_suite(name: &str) -> Option<PathBuf> {
    let path = PathBuf::from(name);
    if path.is_file() {
        return Some(path);
    }
    let candidate = suite_dir().join(format!("{name}.toml"));
    candidate.is_file().then_some(candidate)
}
