//! `cargo xtask up`: a stack for a shell, until Ctrl-C.

use std::io::Write as _;

use harness::infra::{InfraConfig, ProviderChoice, Stack};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// auto, containers, native or external.
    #[arg(long, value_parser = clap::builder::ValueParser::new(|s: &str| s.parse::<ProviderChoice>()))]
    infra: Option<ProviderChoice>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut config = InfraConfig::default();
    config.apply_env()?;
    if let Some(choice) = args.infra {
        config.provider = choice;
    }
    let stack = Stack::start(&config).await?;
    let mut stdout = std::io::stdout().lock();
    if let Some(run) = stack.run_id() {
        writeln!(stdout, "AHSP_PERF_RUN={run}")?;
    }
    for (name, value) in stack.urls().env() {
        writeln!(stdout, "{name}={value}")?;
    }
    stdout.flush()?;
    drop(stdout);
    let each: Vec<String> = stack
        .services()
        .iter()
        .map(|s| format!("{} {:.1}s", s.name, s.ready_after.as_secs_f64()))
        .collect();
    eprintln!(
        "stack ready in {:.1}s via {} ({}); Ctrl-C stops it and removes everything",
        stack.time_to_ready().as_secs_f64(),
        stack.provider(),
        each.join(", ")
    );
    // The signal handler the stack armed removes everything and exits.
    std::future::pending::<()>().await;
    stack.stop().await
}
