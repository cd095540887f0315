//! The reference AHSP service as the suites' embedded target: the runner
//! starts this binary (or `cargo xtask serve`) with the stack's URLs in
//! `PGBOUNCER_URL` and `REDIS_URL`.

use clap::Parser as _;

#[derive(Debug, clap::Parser)]
#[command(name = "ahsp-target", about = "The reference AHSP service")]
struct Cli {
    #[command(flatten)]
    serve: fixtures::ServeArgs,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tokio::runtime::Runtime::new()?.block_on(fixtures::serve_main(cli.serve))
}
