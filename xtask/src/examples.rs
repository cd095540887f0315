//! `cargo xtask examples`: what the example applications under `examples/`
//! need to run. Today one, `examples/django-ahsp`: a Python virtualenv
//! (`.venv` beside it) with its pinned requirements from PyPI. Idempotent: a
//! virtualenv whose installed requirements match the file is left alone.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;

use crate::project_root;

/// The example applications with a `requirements.txt`.
pub fn python_examples() -> Vec<PathBuf> {
    vec![project_root().join("examples/django-ahsp")]
}

pub fn run() -> anyhow::Result<()> {
    for example in python_examples() {
        match ensure_virtualenv(&example)? {
            Some(seconds) => eprintln!("{}: installed in {seconds:.0}s", example.display()),
            None => eprintln!("{}: up to date", example.display()),
        }
    }
    Ok(())
}

/// Makes `dir/.venv` hold `dir/requirements.txt`; the seconds it took, or
/// `None` when it already did.
pub fn ensure_virtualenv(dir: &Path) -> anyhow::Result<Option<f64>> {
    let requirements = dir.join("requirements.txt");
    let wanted = std::fs::read_to_string(&requirements)
        .with_context(|| format!("reading {}", requirements.display()))?;
    let venv = dir.join(".venv");
    // A copy of the requirements it was built from, written last: an
    // interrupted install is redone.
    let installed = venv.join("requirements.installed");
    if std::fs::read_to_string(&installed).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(None);
    }
    let started = std::time::Instant::now();
    if !venv.join("bin/python").exists() {
        run_checked(
            Command::new("python3").args(["-m", "venv"]).arg(&venv),
            "python3 -m venv (on Debian the venv module is the package python3-venv)",
        )?;
    }
    run_checked(
        Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(&requirements),
        "pip install -r requirements.txt",
    )?;
    std::fs::write(&installed, wanted)?;
    Ok(Some(started.elapsed().as_secs_f64()))
}

fn run_checked(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("running {what}"))?;
    anyhow::ensure!(status.success(), "{what} failed ({status})");
    Ok(())
}
