//! Which images the containers provider runs, and how the air-gapped ones are
//! built: a minimal Debian root filesystem made with debootstrap from Debian's
//! packages, given an entrypoint that honours the public images' contract
//! (`images/docker-entrypoint.sh`), and `docker import`ed once per service.
//!
//! Users elsewhere get the public images (`postgres:16-alpine`,
//! `edoburu/pgbouncer`, `redis:7-alpine`), pulled by testcontainers; machines
//! without a registry build these instead, and the harness drives both the
//! same way (command line and copied config files).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use testcontainers::bollard::Docker;

use super::ServiceName;

/// Which images to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageSource {
    /// The locally built images where they exist, else the public ones.
    #[default]
    Auto,
    /// The public images (pulled when missing).
    Public,
    /// The images `cargo xtask images` builds.
    Local,
}

impl std::str::FromStr for ImageSource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(ImageSource::Auto),
            "public" => Ok(ImageSource::Public),
            "local" => Ok(ImageSource::Local),
            other => Err(format!(
                "unknown image source `{other}` (use auto, public or local)"
            )),
        }
    }
}

/// The image for each service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ImageConfig {
    pub source: ImageSource,
    pub postgres: String,
    pub pgbouncer: String,
    pub redis: String,
}

impl Default for ImageConfig {
    fn default() -> Self {
        ImageConfig {
            source: ImageSource::Auto,
            postgres: "postgres:16-alpine".to_owned(),
            pgbouncer: "edoburu/pgbouncer:v1.24.1-p1".to_owned(),
            redis: "redis:7-alpine".to_owned(),
        }
    }
}

pub const ENV_IMAGES: &str = "AHSP_PERF_IMAGES";

/// The Debian release the local images come from. Bookworm gives PostgreSQL
/// 15, PgBouncer 1.18 and Redis 7.0: the versions the history ran, and the
/// PgBouncer whose prepared-statement behaviour the harness must survive.
pub const DEBIAN_SUITE: &str = "bookworm";
const POSTGRES_MAJOR: &str = "15";
const PACKAGES: &str = "postgresql,pgbouncer,redis-server";
const ENTRYPOINT: &str = include_str!("../../images/docker-entrypoint.sh");

/// The local image's name for a service.
pub fn local_image(service: ServiceName) -> String {
    format!("ahsp-perf/{}:{DEBIAN_SUITE}", service.as_str())
}

/// A label on the local images that changes with their recipe, so a changed
/// entrypoint or package list rebuilds them.
const LABEL_RECIPE: &str = "io.ahsp-perf.recipe";

fn recipe() -> String {
    // FNV-1a: stable across Rust versions, unlike `DefaultHasher`.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in [DEBIAN_SUITE, PACKAGES, ENTRYPOINT].concat().bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

impl ImageConfig {
    /// `AHSP_PERF_IMAGES` (auto, public, local) and `AHSP_PERF_POSTGRES_IMAGE`,
    /// `AHSP_PERF_PGBOUNCER_IMAGE`, `AHSP_PERF_REDIS_IMAGE`.
    pub fn apply_env(&mut self) -> anyhow::Result<()> {
        if let Ok(source) = std::env::var(ENV_IMAGES)
            && !source.is_empty()
        {
            self.source = source
                .parse()
                .map_err(anyhow::Error::msg)
                .context(ENV_IMAGES)?;
        }
        for (slot, name) in [
            (&mut self.postgres, "AHSP_PERF_POSTGRES_IMAGE"),
            (&mut self.pgbouncer, "AHSP_PERF_PGBOUNCER_IMAGE"),
            (&mut self.redis, "AHSP_PERF_REDIS_IMAGE"),
        ] {
            if let Ok(image) = std::env::var(name)
                && !image.is_empty()
            {
                *slot = image;
            }
        }
        Ok(())
    }

    fn public(&self, service: ServiceName) -> &str {
        match service {
            ServiceName::Postgres => &self.postgres,
            ServiceName::Pgbouncer => &self.pgbouncer,
            ServiceName::Redis => &self.redis,
        }
    }

    /// The image to run for `service`.
    pub async fn resolve(&self, docker: &Docker, service: ServiceName) -> String {
        match self.source {
            ImageSource::Public => self.public(service).to_owned(),
            ImageSource::Local => local_image(service),
            ImageSource::Auto => {
                let local = local_image(service);
                if docker.inspect_image(&local).await.is_ok() {
                    local
                } else {
                    self.public(service).to_owned()
                }
            }
        }
    }
}

/// Splits `name[:tag]` at the tag's colon (not a registry port's).
pub fn split_image(image: &str) -> (&str, &str) {
    let name_start = image.rfind('/').map_or(0, |i| i + 1);
    match image[name_start..].rfind(':') {
        Some(i) => (&image[..name_start + i], &image[name_start + i + 1..]),
        None => (image, "latest"),
    }
}

/// What [`ensure_local_images`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum ImagesOutcome {
    AlreadyPresent(Vec<String>),
    Built { images: Vec<String>, seconds: f64 },
}

/// Builds the local images unless images of the current recipe exist.
/// Needs root (debootstrap), `debootstrap`, `tar` and the `docker` CLI.
pub async fn ensure_local_images(
    docker: &Docker,
    work_dir: &Path,
) -> anyhow::Result<ImagesOutcome> {
    let recipe = recipe();
    let images: Vec<String> = ServiceName::ALL.iter().map(|s| local_image(*s)).collect();
    let mut current = true;
    for image in &images {
        let label = match docker.inspect_image(image).await {
            Ok(inspect) => inspect
                .config
                .and_then(|c| c.labels)
                .and_then(|l| l.get(LABEL_RECIPE).cloned()),
            Err(_) => None,
        };
        current &= label.as_deref() == Some(recipe.as_str());
    }
    if current {
        return Ok(ImagesOutcome::AlreadyPresent(images));
    }
    let started = Instant::now();
    let rootfs = build_rootfs(work_dir).await?;
    for service in ServiceName::ALL {
        import(&rootfs, service, &recipe).await?;
    }
    Ok(ImagesOutcome::Built {
        images,
        seconds: started.elapsed().as_secs_f64(),
    })
}

async fn build_rootfs(work_dir: &Path) -> anyhow::Result<PathBuf> {
    let rootfs = work_dir.join(format!("rootfs-{DEBIAN_SUITE}"));
    let marker = rootfs.join(".ahsp-perf-complete");
    if !marker.exists() {
        if rootfs.exists() {
            tokio::fs::remove_dir_all(&rootfs)
                .await
                .with_context(|| format!("removing {}", rootfs.display()))?;
        }
        tokio::fs::create_dir_all(work_dir).await?;
        let mirror = std::env::var("AHSP_PERF_DEBIAN_MIRROR")
            .unwrap_or_else(|_| "http://deb.debian.org/debian".into());
        tracing::info!(suite = DEBIAN_SUITE, %mirror, "debootstrap (about a minute)");
        let status = tokio::process::Command::new("debootstrap")
            .args([
                "--variant=minbase",
                &format!("--include={PACKAGES}"),
                DEBIAN_SUITE,
            ])
            .arg(&rootfs)
            .arg(&mirror)
            .stdout(Stdio::null())
            .status()
            .await
            .context("running debootstrap (install it: apt-get install debootstrap)")?;
        anyhow::ensure!(status.success(), "debootstrap failed ({status})");
        // What a server image does not need: package caches, docs, locales.
        for dir in [
            "var/cache/apt/archives",
            "var/lib/apt/lists",
            "usr/share/doc",
            "usr/share/man",
            "usr/share/locale",
        ] {
            let path = rootfs.join(dir);
            if path.exists() {
                tokio::fs::remove_dir_all(&path).await?;
                tokio::fs::create_dir_all(&path).await?;
            }
        }
        tokio::fs::write(&marker, recipe()).await?;
    }
    let entrypoint = rootfs.join("usr/local/bin/docker-entrypoint.sh");
    tokio::fs::write(&entrypoint, ENTRYPOINT).await?;
    set_executable(&entrypoint)?;
    Ok(rootfs)
}

fn set_executable(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod {}", path.display()))
}

async fn import(rootfs: &Path, service: ServiceName, recipe: &str) -> anyhow::Result<()> {
    let (default_server, port) = match service {
        ServiceName::Postgres => ("postgres", 5432),
        ServiceName::Pgbouncer => ("pgbouncer", 6432),
        ServiceName::Redis => ("redis-server", 6379),
    };
    let cmd = match service {
        ServiceName::Pgbouncer => r#"CMD ["pgbouncer", "/etc/pgbouncer/pgbouncer.ini"]"#.to_owned(),
        _ => format!(r#"CMD ["{default_server}"]"#),
    };
    let changes = [
        format!(
            "ENV PATH=/usr/lib/postgresql/{POSTGRES_MAJOR}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        ),
        "ENV PGDATA=/var/lib/postgresql/data".to_owned(),
        format!("ENV AHSP_PERF_DEFAULT_SERVER={default_server}"),
        r#"ENTRYPOINT ["docker-entrypoint.sh"]"#.to_owned(),
        cmd,
        format!("EXPOSE {port}"),
        format!("LABEL {LABEL_RECIPE}={recipe}"),
    ];
    let image = local_image(service);
    let mut command = tokio::process::Command::new("sh");
    let mut import = String::from("tar -C \"$1\" -c . | docker import");
    for (i, _) in changes.iter().enumerate() {
        import.push_str(&format!(" --change \"${}\"", i + 3));
    }
    import.push_str(" - \"$2\" >/dev/null");
    command
        .args(["-c", &import, "sh"])
        .arg(rootfs)
        .arg(&image)
        .args(&changes);
    let status = command
        .status()
        .await
        .context("running tar | docker import")?;
    anyhow::ensure!(
        status.success(),
        "docker import of {image} failed ({status})"
    );
    tracing::info!(%image, "imported");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_image_references() {
        assert_eq!(split_image("postgres:16-alpine"), ("postgres", "16-alpine"));
        assert_eq!(
            split_image("edoburu/pgbouncer"),
            ("edoburu/pgbouncer", "latest")
        );
        assert_eq!(
            split_image("registry:5000/team/redis:7"),
            ("registry:5000/team/redis", "7")
        );
    }
}
