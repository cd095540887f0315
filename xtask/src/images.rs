//! `cargo xtask images`: the service images, built from Debian packages.

use harness::infra::images::{ImagesOutcome, ensure_local_images};
use harness::infra::ownership::docker_if_answering;

use crate::project_root;

pub async fn run() -> anyhow::Result<()> {
    let docker = docker_if_answering()
        .await
        .ok_or_else(|| anyhow::anyhow!("no Docker daemon answers (start one: `dockerd &`)"))?;
    match ensure_local_images(&docker, &project_root().join("target/ahsp-perf-images")).await? {
        ImagesOutcome::AlreadyPresent(images) => eprintln!("images present: {}", images.join(", ")),
        ImagesOutcome::Built { images, seconds } => {
            eprintln!("built {} in {seconds:.0}s", images.join(", "))
        }
    }
    Ok(())
}
