//! The AHSP domain of a run: the production-like data set seeded by
//! `fixtures` and its catalog, and the reference AHSP service as the
//! embedded target, started as a command that announces its URL.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use futures::future::LocalBoxFuture;
use harness::catalog::Catalog;
use harness::infra::StackUrls;
use harness::run::{Domain, RunningTarget};

/// How to start the reference service: a program whose output includes a
/// `TARGET_URL=http://…` line once it answers.
#[derive(Debug, Clone)]
pub struct EmbeddedCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
}

/// The AHSP application's hooks.
#[derive(Debug, Clone)]
pub struct Ahsp {
    pub embedded: EmbeddedCommand,
}

/// Variables the AHSP catalog offers, known before seeding.
pub fn catalog_variables() -> BTreeSet<String> {
    [
        "project_id",
        "pekerjaan_id",
        "harga_item_id",
        "sub_klasifikasi_id",
        "template_id",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect()
}

impl Domain for Ahsp {
    fn catalog_variables(&self) -> BTreeSet<String> {
        catalog_variables()
    }

    fn seed<'a>(
        &'a self,
        database_url: &'a str,
        data_set: &'a str,
        seed: u64,
        password_iterations: Option<u32>,
    ) -> LocalBoxFuture<'a, anyhow::Result<Catalog>> {
        Box::pin(async move {
            let defaults = fixtures::SeedOptions::default();
            let options = fixtures::SeedOptions {
                profile: data_set.parse().map_err(|e| anyhow::anyhow!("{e}"))?,
                seed,
                password_iterations: password_iterations.unwrap_or(defaults.password_iterations),
                ..defaults
            };
            let outcome = fixtures::seed(database_url, &options)
                .await
                .context("seeding the AHSP data set")?;
            tracing::info!(
                rows = outcome.total_rows(),
                seconds = outcome.total_seconds,
                "seeded"
            );
            Ok(outcome.catalog)
        })
    }

    fn route_inventory_path(&self) -> Option<&str> {
        Some(fixtures::service::ROUTE_LISTING)
    }

    fn start_embedded<'a>(
        &'a self,
        urls: &'a StackUrls,
        switches: &'a [String],
        dir: &'a Path,
    ) -> LocalBoxFuture<'a, anyhow::Result<RunningTarget>> {
        Box::pin(async move {
            let mut env: Vec<(String, String)> = urls
                .env()
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect();
            env.push(("AHSP_SWITCHES".to_owned(), switches.join(",")));
            RunningTarget::announced(&self.embedded.program, &self.embedded.args, &env, dir)
                .await
                .context("starting the reference AHSP service")
        })
    }
}

impl Ahsp {
    /// The `ahsp-target` binary (or `xtask serve`) on a free loopback port.
    pub fn target_binary(program: PathBuf, args: &[&str]) -> Ahsp {
        let mut all = vec!["--listen".to_owned(), "127.0.0.1:0".to_owned()];
        all.extend(args.iter().map(|a| a.to_string()));
        Ahsp {
            embedded: EmbeddedCommand { program, args: all },
        }
    }
}
