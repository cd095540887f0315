//! `cargo xtask down`: remove what dead runs left behind.

use std::time::{Duration, Instant};

use harness::infra::ownership;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Also stop live runs (asks their processes to stop with SIGTERM first).
    #[arg(long)]
    all: bool,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut report = ownership::sweep_orphans().await?;
    if args.all && !report.live_runs.is_empty() {
        let owners = ownership::live_owners();
        for owner in &owners {
            ownership::terminate(owner)?;
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while owners.iter().any(|o| o.is_alive()) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let second = ownership::sweep_orphans().await?;
        report.runs.extend(second.runs);
        report.containers += second.containers;
        report.networks += second.networks;
        report.process_groups += second.process_groups;
        report.dirs += second.dirs;
        report.live_runs = second.live_runs;
    }
    eprintln!(
        "removed {} run(s): {} container(s), {} network(s), {} process group(s), {} directory(ies)",
        report.runs.len(),
        report.containers,
        report.networks,
        report.process_groups,
        report.dirs
    );
    if !report.live_runs.is_empty() {
        eprintln!(
            "left {} live run(s) alone: {} (use --all to stop them)",
            report.live_runs.len(),
            report.live_runs.join(", ")
        );
    }
    Ok(())
}
