//! `cargo xtask seed`: loads an AHSP data set into a running stack's
//! PostgreSQL over the direct URL (COPY), prints rows and rows/s per table,
//! and writes the data catalog suites draw from. `--compare-pgbench` runs
//! `pgbench -i` on the same database right after, for the speed goal: the
//! seed should load at least as many rows per second.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::Context as _;
use fixtures::{Profile, SeedOptions};

use crate::project_root;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The data set: ci, production or large (`--profile` is its old name).
    #[arg(long = "set", alias = "profile", value_enum, default_value_t = Profile::Ci)]
    profile: Profile,
    /// Seed of the generator: the same seed gives the same data.
    #[arg(long, default_value_t = harness::suite::defaults::Defaults::embedded().data.seed)]
    seed: u64,
    /// PostgreSQL directly (not PgBouncer).
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    /// PBKDF2 iterations of the password hashes (the real application: 1000000).
    #[arg(long, default_value_t = fixtures::password::DEFAULT_ITERATIONS)]
    password_iterations: u32,
    /// Where to write the catalog (default: target/perf/catalog.json).
    #[arg(long)]
    catalog: Option<PathBuf>,
    /// Direct connections that load and index concurrently.
    #[arg(long, default_value_t = SeedOptions::default().connections)]
    connections: usize,
    /// Also run `pgbench -i` on the same database and compare rows/s.
    #[arg(long)]
    compare_pgbench: bool,
    /// pgbench's scale factor (100,000 accounts each).
    #[arg(long, default_value_t = 10)]
    pgbench_scale: u32,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let options = SeedOptions {
        profile: args.profile,
        seed: args.seed,
        password_iterations: args.password_iterations,
        connections: args.connections,
    };
    let outcome = fixtures::seed(&args.database_url, &options)
        .await
        .with_context(|| format!("seeding {}", harness::infra::redact(&args.database_url)))?;
    println!(
        "{:<22} {:>10} {:>9} {:>12}",
        "table", "rows", "seconds", "rows/s"
    );
    for table in &outcome.tables {
        println!(
            "{:<22} {:>10} {:>9.3} {:>12.0}",
            table.table,
            table.rows,
            table.seconds,
            table.rows as f64 / table.seconds.max(f64::EPSILON)
        );
    }
    let phases = &outcome.phases;
    println!(
        "{:<22} {:>10} {:>9.3} {:>12.0}",
        "total",
        outcome.total_rows(),
        outcome.total_seconds,
        outcome.rows_per_second()
    );
    println!(
        "phases: generate {:.3}s beside schema {:.3}s, load (COPY, ANALYZE, indexes) {:.3}s, constraints {:.3}s",
        phases.generate, phases.schema, phases.load, phases.constraints
    );
    let catalog_path = args
        .catalog
        .unwrap_or_else(|| project_root().join("target/perf/catalog.json"));
    fixtures::seed::write_catalog(&outcome.catalog, &catalog_path)?;
    println!(
        "catalog: {} users → {}",
        outcome.catalog.users.len(),
        catalog_path.display()
    );

    if args.compare_pgbench {
        let pgbench = pgbench_rows_per_second(&args.database_url, args.pgbench_scale)?;
        let ours = outcome.rows_per_second();
        println!(
            "pgbench -i -s {}: {} rows in {:.3}s → {:.0} rows/s",
            args.pgbench_scale, pgbench.rows, pgbench.seconds, pgbench.rows_per_second
        );
        println!(
            "seed --set {}: {} rows in {:.3}s → {:.0} rows/s ({:.2}× pgbench)",
            args.profile,
            outcome.total_rows(),
            outcome.total_seconds,
            ours,
            ours / pgbench.rows_per_second
        );
    }
    Ok(())
}

#[derive(Debug)]
struct PgbenchLoad {
    rows: u64,
    seconds: f64,
    rows_per_second: f64,
}

/// pgbench on PATH, or in a Debian PostgreSQL installation.
fn find_pgbench() -> anyhow::Result<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("pgbench"))
        .find(|candidate| candidate.is_file());
    if let Some(found) = on_path {
        return Ok(found);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin/pgbench"))
        .filter(|candidate| candidate.is_file())
        .collect();
    versions.sort();
    versions
        .pop()
        .context("pgbench not found on PATH or in /usr/lib/postgresql/*/bin (install postgresql-contrib or the postgresql client)")
}

/// Runs `pgbench -i -s SCALE` (drop, create, client-side generate, vacuum,
/// primary keys) into pgbench's own tables, timed from start to exit, then
/// drops those tables again.
fn pgbench_rows_per_second(database_url: &str, scale: u32) -> anyhow::Result<PgbenchLoad> {
    let pgbench = find_pgbench()?;
    let started = Instant::now();
    let output = Command::new(&pgbench)
        .args(["-i", "-s", &scale.to_string(), database_url])
        .output()
        .with_context(|| format!("running {}", pgbench.display()))?;
    let seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        output.status.success(),
        "pgbench -i failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    // pgbench's own account of its steps, for the reader.
    if let Some(done) = String::from_utf8_lossy(&output.stderr)
        .lines()
        .find(|line| line.starts_with("done in"))
    {
        println!("pgbench: {done}");
    }
    let drop = Command::new(&pgbench)
        .args(["-i", "-I", "d", database_url])
        .output()
        .context("dropping pgbench's tables")?;
    anyhow::ensure!(
        drop.status.success(),
        "pgbench -i -I d failed ({})",
        drop.status
    );
    // pgbench_accounts, pgbench_tellers and pgbench_branches.
    let rows = u64::from(scale) * (100_000 + 10 + 1);
    Ok(PgbenchLoad {
        rows,
        seconds,
        rows_per_second: rows as f64 / seconds.max(f64::EPSILON),
    })
}
