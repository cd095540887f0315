//! `cargo xtask`: the project's entry points. A flat match over subcommands,
//! one module per task.

#![allow(clippy::print_stdout)]

mod bench;
mod bench_loadgen;
mod calibrate;
mod doctor;
mod down;
mod examples;
mod images;
mod perf;
#[cfg(test)]
mod readme;
mod seed;
mod serve;
mod test;
mod up;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "ahsp-perf tasks", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Provision, seed, start the target, run the suites, write the reports.
    Perf(perf::Args),
    /// Run the criterion benchmarks, recording each run's mean (for `no-regression` budgets).
    Bench(bench::Args),
    /// Measure the load engine's CPU and memory per request, beside wrk's.
    BenchLoadgen(bench_loadgen::Args),
    /// Start PostgreSQL + PgBouncer + Redis, print their URLs, keep them until Ctrl-C.
    Up(up::Args),
    /// Remove what runs whose process is gone left behind (containers, networks, processes, directories).
    Down(down::Args),
    /// Build the service images locally from Debian packages (no registry needed).
    Images,
    /// Set up the example applications under `examples/` (a Python virtualenv each).
    Examples,
    /// Say what this machine has and lacks for each provider.
    Doctor,
    /// Make sure what the tests need exists, then run the whole test suite.
    Test(test::Args),
    /// Load an AHSP data set into a running stack's PostgreSQL (COPY) and write its catalog.
    Seed(seed::Args),
    /// Run the reference AHSP service against a running stack; prints TARGET_URL once it answers.
    Serve(serve::Args),
    /// Measure the gate's false-alarm and detection rates on this machine.
    GateCalibration(calibrate::Args),
}

fn main() -> anyhow::Result<()> {
    harness::run::shard::set_build(env!("AHSP_PERF_BUILD"));
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        match cli.command {
            Command::Perf(args) => perf::run(args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::BenchLoadgen(args) => bench_loadgen::run(args).await,
            Command::Up(args) => up::run(args).await,
            Command::Down(args) => down::run(args).await,
            Command::Images => images::run().await,
            Command::Examples => examples::run(),
            Command::Doctor => doctor::run().await,
            Command::Test(args) => test::run(args).await,
            Command::Seed(args) => seed::run(args).await,
            Command::Serve(args) => serve::run(args).await,
            Command::GateCalibration(args) => calibrate::run(args).await,
        }
    })
}

/// The workspace root.
pub fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// The cargo that runs us, for nested cargo commands.
pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// A `cargo` command for a task to run. `cargo xtask` is `cargo run`, which
/// gives this process the variables cargo sets for a running package
/// (`CARGO_PKG_NAME=xtask`, `CARGO_MANIFEST_DIR`, …). Passed on to a nested
/// cargo, they are what build scripts watching them see (ring's
/// `rerun-if-env-changed=CARGO_PKG_NAME`): ring ran again, and everything
/// above it (rustls, bollard, testcontainers, the workspace) was built again,
/// twice, about 6 minutes of CI's test phase.
pub fn cargo_command() -> std::process::Command {
    let mut command = std::process::Command::new(cargo());
    for (name, _) in std::env::vars_os() {
        if let Some(name) = name.to_str()
            && is_package_variable(name)
        {
            command.env_remove(name);
        }
    }
    command
}

/// The variables cargo sets for one package's build or run, not for a
/// workspace's (`CARGO`, `CARGO_HOME`, `CARGO_TARGET_DIR` and the like stay).
fn is_package_variable(name: &str) -> bool {
    name.starts_with("CARGO_PKG_")
        || name.starts_with("CARGO_MANIFEST_")
        || matches!(
            name,
            "CARGO_CRATE_NAME" | "CARGO_BIN_NAME" | "CARGO_PRIMARY_PACKAGE" | "OUT_DIR"
        )
}
