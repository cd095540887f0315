//! `cargo xtask serve`: the reference AHSP service against a running stack
//! (PGBOUNCER_URL and REDIS_URL as `cargo xtask up` prints them, or flags).
//! Prints `TARGET_URL=…` once the service answers, then one access-log line
//! per request; Ctrl-C or SIGTERM stops it.

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    serve: fixtures::ServeArgs,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    fixtures::serve_main(args.serve).await
}
