//! `cargo xtask doctor`: what this machine has and lacks, per provider.

use harness::infra::ServiceName;
use harness::infra::images::{ImageConfig, local_image};
use harness::infra::native::Binaries;
use harness::infra::ownership::docker_if_answering;

pub async fn run() -> anyhow::Result<()> {
    let mut missing = Vec::new();
    println!("containers provider");
    match docker_if_answering().await {
        Some(docker) => {
            let version = docker.version().await.ok();
            println!(
                "  docker daemon: answers (engine {}, API {})",
                version
                    .as_ref()
                    .and_then(|v| v.version.clone())
                    .unwrap_or_default(),
                version
                    .as_ref()
                    .and_then(|v| v.api_version.clone())
                    .unwrap_or_default()
            );
            let mut config = ImageConfig::default();
            config.apply_env()?;
            for service in ServiceName::ALL {
                let local = local_image(service);
                let local_present = docker.inspect_image(&local).await.is_ok();
                let chosen = config.resolve(&docker, service).await;
                let chosen_present = docker.inspect_image(&chosen).await.is_ok();
                println!(
                    "  {service}: uses {chosen} ({}); local image {local} {}",
                    if chosen_present {
                        "present"
                    } else {
                        "absent: will be pulled"
                    },
                    if local_present { "present" } else { "absent" }
                );
                if !chosen_present {
                    missing.push(format!(
                        "image {chosen} (without a registry: `cargo xtask images`)"
                    ));
                }
            }
            match which("debootstrap") {
                Some(path) => println!("  debootstrap: {path} (builds local images)"),
                None => println!(
                    "  debootstrap: absent (`apt-get install debootstrap` to build local images)"
                ),
            }
        }
        None => {
            println!("  docker daemon: does not answer");
            missing.push(
                "a Docker daemon (Debian: `apt-get install docker.io`, then `dockerd &`)"
                    .to_owned(),
            );
        }
    }
    println!("native provider");
    match Binaries::locate() {
        Ok(binaries) => {
            for (name, path) in [
                ("initdb", &binaries.initdb),
                ("postgres", &binaries.postgres),
                ("pgbouncer", &binaries.pgbouncer),
                ("redis-server", &binaries.redis_server),
            ] {
                println!("  {name}: {} ({})", path.display(), version_of(path));
            }
        }
        Err(absent) => {
            println!("  {absent}");
            missing.push(format!("native binaries: {}", absent.0.join(", ")));
        }
    }
    if missing.is_empty() {
        println!("nothing missing");
    } else {
        println!("missing:");
        for item in missing {
            println!("  - {item}");
        }
    }
    Ok(())
}

fn which(name: &str) -> Option<String> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(std::path::PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .map(|p| p.display().to_string())
}

fn version_of(path: &std::path::Path) -> String {
    let output = std::process::Command::new(path).arg("--version").output();
    match output {
        Ok(output) => {
            let text = String::from_utf8_lossy(&output.stdout);
            text.lines().next().unwrap_or("").trim().to_owned()
        }
        Err(error) => format!("cannot run: {error}"),
    }
}
