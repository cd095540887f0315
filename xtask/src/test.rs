//! `cargo xtask test`: the README's test command. Makes sure what the tests
//! need exists (service images when a Docker daemon answers, the native
//! binaries), then runs the whole test suite.

use harness::infra::images::{ImagesOutcome, ensure_local_images};
use harness::infra::native::{self, Binaries};
use harness::infra::ownership::docker_if_answering;

use crate::{cargo, project_root};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Arguments for `cargo test` (after `--`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    rest: Vec<String>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    match docker_if_answering().await {
        Some(docker) => {
            match ensure_local_images(&docker, &project_root().join("target/ahsp-perf-images"))
                .await
            {
                Ok(ImagesOutcome::AlreadyPresent(_)) => {}
                Ok(ImagesOutcome::Built { images, seconds }) => {
                    eprintln!("built {} in {seconds:.0}s", images.join(", "))
                }
                Err(error) => eprintln!(
                    "warning: cannot build local images ({error:#}); containers will use public images"
                ),
            }
        }
        None => eprintln!(
            "no Docker daemon answers: the containers-provider tests will fail (start `dockerd`)"
        ),
    }
    if let Err(missing) = Binaries::locate() {
        native::install_with_apt(&missing).await?;
    }
    let status = std::process::Command::new(cargo())
        .current_dir(project_root())
        .args(["test", "--workspace", "--all-targets"])
        .args(&args.rest)
        .status()?;
    anyhow::ensure!(status.success(), "tests failed ({status})");
    Ok(())
}
