//! The containers provider: testcontainers (async runner) on one network per
//! run, every container and the network labelled with the run that owns them.
//! Services are configured only by command line, environment variables of the
//! public images' contract, and copied config files.

use std::collections::HashMap;

use anyhow::Context as _;
use testcontainers::bollard::Docker;
use testcontainers::bollard::models::{HostConfig, NetworkCreateRequest, PortBinding};
use testcontainers::bollard::query_parameters::RemoveContainerOptionsBuilder;
use testcontainers::core::{IntoContainerPort as _, WaitFor};
use testcontainers::runners::AsyncRunner as _;
use testcontainers::{
    ContainerAsync, ContainerRequest, CopyTargetOptions, GenericImage, ImageExt as _,
};

use super::images::split_image;
use super::ownership::{LABEL_SERVICE, RunGuard};
use super::settings::{DATABASE, PASSWORD, PgBouncerSettings, PgBouncerTopology, USER};
use super::{InfraConfig, ServiceInfo, ServiceLocation, ServiceName, StackUrls, readiness};

const POSTGRES_PORT: u16 = 5432;
const PGBOUNCER_PORT: u16 = 6432;
const REDIS_PORT: u16 = 6379;

/// A running container stack.
#[derive(Debug)]
pub struct Running {
    docker: Docker,
    network: String,
    containers: Vec<ContainerAsync<GenericImage>>,
}

impl Running {
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// Stops the container `id` on its service's own shutdown signal (a
    /// PostgreSQL fast shutdown writes its checkpoint), SIGKILL after ten
    /// seconds, and starts it again; its host port stays, since it was
    /// chosen at creation. Done as kill-with-signal, wait, start: `docker
    /// restart` takes a signal only from API 1.42, and Debian's Docker
    /// speaks 1.41 (the default SIGTERM is PostgreSQL's smart shutdown,
    /// which waits for PgBouncer's connections until the SIGKILL).
    pub async fn restart(&self, id: &str, service: ServiceName) -> anyhow::Result<()> {
        use testcontainers::bollard::query_parameters::KillContainerOptions;
        let signal = match service {
            ServiceName::Postgres => "SIGINT",
            // Safe shutdown: queries in flight finish.
            ServiceName::Pgbouncer => "SIGINT",
            ServiceName::Redis => "SIGTERM",
        };
        self.docker
            .kill_container(
                id,
                Some(KillContainerOptions {
                    signal: signal.to_owned(),
                }),
            )
            .await
            .with_context(|| format!("stopping container {id} with {signal}"))?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let running = self
                .docker
                .inspect_container(id, None)
                .await
                .with_context(|| format!("inspecting container {id}"))?
                .state
                .and_then(|state| state.running)
                .unwrap_or(false);
            if !running {
                break;
            }
            if std::time::Instant::now() > deadline {
                let _ = self.docker.kill_container(id, None).await;
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        self.docker
            .start_container(id, None)
            .await
            .with_context(|| format!("starting container {id} again"))
    }

    /// Kills, pauses or unpauses the container `id`.
    pub async fn disturb(&self, id: &str, what: super::Disturbance) -> anyhow::Result<()> {
        let result = match what {
            super::Disturbance::Kill => self.docker.kill_container(id, None).await,
            super::Disturbance::Pause => self.docker.pause_container(id).await,
            super::Disturbance::Resume => self.docker.unpause_container(id).await,
        };
        result.with_context(|| format!("{what} container {id}"))
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        let removals = self.containers.into_iter().map(|container| async move {
            let id = container.id().to_owned();
            container
                .rm()
                .await
                .with_context(|| format!("removing container {id}"))
        });
        let results = futures::future::join_all(removals).await;
        let network = self.docker.remove_network(&self.network).await;
        for result in results {
            result?;
        }
        network.with_context(|| format!("removing network {}", self.network))?;
        Ok(())
    }
}

/// Starts the three containers in parallel and waits until each answers.
pub async fn start(
    config: &InfraConfig,
    run: &mut RunGuard,
) -> anyhow::Result<(StackUrls, Vec<ServiceInfo>, Running)> {
    let started = std::time::Instant::now();
    let docker = Docker::connect_with_defaults().context("connecting to the Docker daemon")?;
    run.update(|record| record.docker = true)?;
    let run_id = run.run_id().to_owned();
    let labels = run.record().labels();
    let network = format!("ahsp-perf-{run_id}");
    docker
        .create_network(NetworkCreateRequest {
            name: network.clone(),
            labels: Some(labels.clone()),
            ..Default::default()
        })
        .await
        .with_context(|| format!("creating network {network}"))?;

    let images = [
        ServiceName::Postgres,
        ServiceName::Pgbouncer,
        ServiceName::Redis,
    ];
    let mut resolved = HashMap::new();
    for service in images {
        resolved.insert(service, config.images.resolve(&docker, service).await);
    }
    let name_of = |service: ServiceName| format!("ahsp-perf-{run_id}-{service}");
    // Host ports are chosen here rather than by Docker, so that a restarted
    // container comes back on the same one (see `start_published`).
    let request = |service: ServiceName, port: u16, host_port: u16| {
        let (name, tag) = split_image(&resolved[&service]);
        let mut labels = labels.clone();
        labels.insert(LABEL_SERVICE.to_owned(), service.as_str().to_owned());
        GenericImage::new(name, tag)
            .with_exposed_port(port.tcp())
            // Readiness is a real connection, polled below.
            .with_wait_for(WaitFor::Nothing)
            .with_network(network.clone())
            .with_container_name(name_of(service))
            .with_labels(labels)
            .with_startup_timeout(config.ready_timeout)
            .with_host_config_modifier(move |host: &mut HostConfig| {
                publish_on_loopback(host, port, host_port)
            })
    };

    let postgres = |host_port| {
        request(ServiceName::Postgres, POSTGRES_PORT, host_port)
            .with_env_var("POSTGRES_USER", USER)
            .with_env_var("POSTGRES_PASSWORD", PASSWORD)
            .with_env_var("POSTGRES_DB", DATABASE)
            .with_env_var("POSTGRES_HOST_AUTH_METHOD", "scram-sha-256")
            .with_env_var(
                "POSTGRES_INITDB_ARGS",
                "--auth-host=scram-sha-256 --no-sync",
            )
            .with_cmd(std::iter::once("postgres".to_owned()).chain(config.postgres.server_args()))
    };

    let ini = config.pgbouncer.ini(&PgBouncerTopology {
        listen_addr: "0.0.0.0",
        listen_port: PGBOUNCER_PORT,
        server_host: &name_of(ServiceName::Postgres),
        server_port: POSTGRES_PORT,
        auth_file: "/etc/pgbouncer/userlist.txt",
        unix_socket_dir: "",
    });
    let pgbouncer = |host_port| {
        request(ServiceName::Pgbouncer, PGBOUNCER_PORT, host_port)
            .with_copy_to(
                CopyTargetOptions::new("/etc/pgbouncer/pgbouncer.ini").with_mode(0o644),
                ini.clone().into_bytes(),
            )
            .with_copy_to(
                CopyTargetOptions::new("/etc/pgbouncer/userlist.txt").with_mode(0o644),
                PgBouncerSettings::userlist().into_bytes(),
            )
            .with_cmd(["pgbouncer", "/etc/pgbouncer/pgbouncer.ini"])
    };
    let redis = |host_port| {
        request(ServiceName::Redis, REDIS_PORT, host_port).with_cmd(
            std::iter::once("redis-server".to_owned())
                .chain(config.redis.server_args("0.0.0.0", REDIS_PORT)),
        )
    };

    let (postgres, pgbouncer, redis) = tokio::try_join!(
        start_published(&docker, name_of(ServiceName::Postgres), free_port, postgres),
        start_published(
            &docker,
            name_of(ServiceName::Pgbouncer),
            free_port,
            pgbouncer
        ),
        start_published(&docker, name_of(ServiceName::Redis), free_port, redis),
    )
    .map_err(|error| {
        error.context(format!(
            "(images: {}, {}, {}; without a registry, build local ones with `cargo xtask images`)",
            resolved[&ServiceName::Postgres],
            resolved[&ServiceName::Pgbouncer],
            resolved[&ServiceName::Redis]
        ))
    })?;

    let host = "127.0.0.1";
    let postgres_port = postgres.get_host_port_ipv4(POSTGRES_PORT).await?;
    let pgbouncer_port = pgbouncer.get_host_port_ipv4(PGBOUNCER_PORT).await?;
    let redis_port = redis.get_host_port_ipv4(REDIS_PORT).await?;
    let urls = StackUrls {
        database_url: format!("postgres://{USER}:{PASSWORD}@{host}:{postgres_port}/{DATABASE}"),
        pgbouncer_url: format!("postgres://{USER}:{PASSWORD}@{host}:{pgbouncer_port}/{DATABASE}"),
        pgbouncer_admin_url: format!(
            "postgres://{USER}:{PASSWORD}@{host}:{pgbouncer_port}/pgbouncer"
        ),
        redis_url: format!("redis://{host}:{redis_port}/0"),
    };

    let timeout = config.ready_timeout;
    let ready = tokio::try_join!(
        readiness::poll(
            "postgres",
            started,
            timeout,
            || readiness::postgres_answers(&urls.database_url)
        ),
        readiness::poll("pgbouncer", started, timeout, || async {
            readiness::postgres_answers(&urls.pgbouncer_url).await?;
            readiness::pgbouncer_admin_answers(&urls.pgbouncer_admin_url).await
        }),
        readiness::poll("redis", started, timeout, || readiness::redis_answers(
            &urls.redis_url
        )),
    );
    let containers = vec![postgres, pgbouncer, redis];
    let ((_, postgres_ready), (_, pgbouncer_ready), (_, redis_ready)) = match ready {
        Ok(ready) => ready,
        Err(error) => {
            let logs = log_tails(&containers).await;
            return Err(error.context(format!("service logs:\n{logs}")));
        }
    };
    let services = [
        (ServiceName::Postgres, postgres_ready),
        (ServiceName::Pgbouncer, pgbouncer_ready),
        (ServiceName::Redis, redis_ready),
    ]
    .into_iter()
    .zip(&containers)
    .map(|((name, ready_after), container)| ServiceInfo {
        name,
        location: ServiceLocation::Container {
            id: container.id().to_owned(),
            name: name_of(name),
            image: resolved[&name].clone(),
        },
        ready_after,
    })
    .collect();
    Ok((
        urls,
        services,
        Running {
            docker,
            network,
            containers,
        },
    ))
}

/// Publishes `port` on 127.0.0.1 only: a test database with a well-known
/// password is nobody else's business.
fn publish_on_loopback(host: &mut HostConfig, port: u16, host_port: u16) {
    let binding = PortBinding {
        host_ip: Some("127.0.0.1".to_owned()),
        host_port: Some(host_port.to_string()),
    };
    host.publish_all_ports = Some(false);
    host.port_bindings = Some(HashMap::from([(
        format!("{port}/tcp"),
        Some(vec![binding]),
    )]));
}

async fn log_tails(containers: &[ContainerAsync<GenericImage>]) -> String {
    let mut text = String::new();
    for container in containers {
        let stdout = container.stdout_to_vec().await.unwrap_or_default();
        let stderr = container.stderr_to_vec().await.unwrap_or_default();
        let all = [stdout, stderr].concat();
        let all = String::from_utf8_lossy(&all);
        let tail: Vec<&str> = all.lines().rev().take(15).collect();
        text.push_str(&format!("--- {} ---\n", container.id()));
        for line in tail.into_iter().rev() {
            text.push_str(line);
            text.push('\n');
        }
    }
    text
}

/// How many host ports a container is offered before its start fails.
const PORT_ATTEMPTS: usize = 5;

/// Starts the container `name` with its port published on a free loopback
/// port. The port is free when chosen, not when Docker binds it: another run
/// (or anything else on the machine) can take it in between, and Docker then
/// refuses with "port is already allocated". Such a start is retried on a
/// fresh port after the container it created is removed (testcontainers
/// leaves a created container behind when its start fails, and its name
/// would clash; it is removed when the start fails for good as well).
async fn start_published(
    docker: &Docker,
    name: String,
    mut ports: impl FnMut() -> anyhow::Result<u16>,
    request: impl Fn(u16) -> ContainerRequest<GenericImage>,
) -> anyhow::Result<ContainerAsync<GenericImage>> {
    let mut attempt = 1;
    loop {
        let error = match request(ports()?).start().await {
            Ok(container) => return Ok(container),
            Err(error) => anyhow::Error::new(error),
        };
        let message = format!("{error:#}");
        // Docker's words when another container holds the port, and the
        // kernel's when any other process does.
        let taken = message.contains("port is already allocated")
            || message.contains("address already in use");
        let options = RemoveContainerOptionsBuilder::new().force(true).build();
        let removed = docker.remove_container(&name, Some(options)).await;
        if !taken || attempt == PORT_ATTEMPTS {
            // Whether a container was created before the failure or not.
            drop(removed);
            return Err(error.context(format!("starting container {name}")));
        }
        removed.with_context(|| format!("removing {name}, whose host port was taken"))?;
        attempt += 1;
    }
}

fn free_port() -> anyhow::Result<u16> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("finding a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two containers offered the same host port: the second is refused by
    /// Docker, and comes up on the next port offered, under its own name.
    #[tokio::test]
    async fn a_container_whose_host_port_was_taken_starts_on_another() -> anyhow::Result<()> {
        let docker = Docker::connect_with_defaults()?;
        let image = InfraConfig::default()
            .images
            .resolve(&docker, ServiceName::Redis)
            .await;
        let (name, tag) = split_image(&image);
        let suffix = std::process::id();
        let request = |label: &'static str| {
            move |host_port: u16| {
                GenericImage::new(name, tag)
                    .with_exposed_port(REDIS_PORT.tcp())
                    .with_wait_for(WaitFor::Nothing)
                    .with_container_name(format!("ahsp-perf-port-test-{suffix}-{label}"))
                    .with_cmd(["redis-server", "--port", "6379"])
                    .with_host_config_modifier(move |host: &mut HostConfig| {
                        publish_on_loopback(host, REDIS_PORT, host_port)
                    })
            }
        };
        let first_port = free_port()?;
        let first = start_published(
            &docker,
            format!("ahsp-perf-port-test-{suffix}-first"),
            || Ok(first_port),
            request("first"),
        )
        .await?;
        let mut offered = vec![first_port, free_port()?].into_iter();
        let second = start_published(
            &docker,
            format!("ahsp-perf-port-test-{suffix}-second"),
            || offered.next().context("no port left to offer"),
            request("second"),
        )
        .await?;
        assert_eq!(first.get_host_port_ipv4(REDIS_PORT).await?, first_port);
        assert_ne!(second.get_host_port_ipv4(REDIS_PORT).await?, first_port);
        assert_eq!(offered.next(), None, "the second port was never offered");
        Ok(())
    }
}
