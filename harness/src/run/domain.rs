//! What a run needs from the application's domain and nothing else does: the
//! data set it seeds and the catalog of what it wrote, and the embedded
//! target. The AHSP crate (`suites`) implements it; the harness stays free of
//! any one application's schema.

use std::collections::BTreeSet;
use std::path::Path;

use futures::future::LocalBoxFuture;

use super::target::RunningTarget;
use crate::catalog::Catalog;
use crate::infra::StackUrls;

/// The domain hooks of a run. Their futures need not be `Send` (sqlx's
/// are not, in general): a run is driven by one task.
pub trait Domain: Send + Sync {
    /// Template variables a seeded catalog offers, known before seeding so
    /// that a suite naming an unknown one is refused before any load.
    fn catalog_variables(&self) -> BTreeSet<String>;

    /// Seeds `data_set` (from the generator's `seed`) through the direct
    /// database URL and returns the catalog of what it wrote.
    fn seed<'a>(
        &'a self,
        database_url: &'a str,
        data_set: &'a str,
        seed: u64,
        password_iterations: Option<u32>,
    ) -> LocalBoxFuture<'a, anyhow::Result<Catalog>>;

    /// Where the embedded target lists its routes (method, path, name and
    /// category, as `coverage::parse_inventory` reads them), for endpoint
    /// coverage by category; `None` when it lists none.
    fn route_inventory_path(&self) -> Option<&str>;

    /// Starts the embedded target on the stack, with the suite's switches,
    /// its output in `dir`.
    fn start_embedded<'a>(
        &'a self,
        urls: &'a StackUrls,
        switches: &'a [String],
        dir: &'a Path,
    ) -> LocalBoxFuture<'a, anyhow::Result<RunningTarget>>;
}

/// No domain: nothing to seed and no embedded target. A suite runs against
/// a URL or a command that starts the application, as a user's own app does
/// when it is driven from Rust rather than from `cargo xtask perf`.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoDomain;

impl Domain for NoDomain {
    fn catalog_variables(&self) -> BTreeSet<String> {
        BTreeSet::new()
    }

    fn seed<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: u64,
        _: Option<u32>,
    ) -> LocalBoxFuture<'a, anyhow::Result<Catalog>> {
        Box::pin(async { anyhow::bail!("this run has no domain: it seeds nothing") })
    }

    fn route_inventory_path(&self) -> Option<&str> {
        None
    }

    fn start_embedded<'a>(
        &'a self,
        _: &'a StackUrls,
        _: &'a [String],
        _: &'a Path,
    ) -> LocalBoxFuture<'a, anyhow::Result<RunningTarget>> {
        Box::pin(async {
            anyhow::bail!(
                "this run has no domain: it has no embedded target, give [target] url or command"
            )
        })
    }
}
