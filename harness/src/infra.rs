//! The infrastructure layer: PostgreSQL, PgBouncer in front of it, and Redis,
//! from one of three providers behind one interface ([`Stack`]).
//!
//! - containers: testcontainers, configured by command line and copied
//!   config files only, so any image that carries the binaries works;
//! - native: the same three from local binaries, in a temporary directory on
//!   free loopback ports, as an unprivileged user when run as root;
//! - external: URLs of a stack someone else runs; nothing started or stopped.
//!
//! Architecture invariant: nothing outside this module knows which provider
//! runs the stack; the rest of the harness sees [`StackUrls`] and
//! [`ServiceInfo`] only.

pub mod containers;
pub mod external;
pub mod images;
pub mod interrupt;
pub mod listener;
pub mod logs;
pub mod native;
pub mod ownership;
pub mod proxy;
pub mod readiness;
pub mod settings;

use logs::LogSource;
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

pub use self::images::{ImageConfig, ImageSource};
pub use self::ownership::{RunGuard, SweepReport, sweep_orphans};
pub use self::settings::{PgBouncerSettings, PostgresSettings, RedisSettings};

/// Which provider starts the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderChoice {
    /// Containers if a Docker daemon answers, else native binaries (installed
    /// with apt-get on Debian/Ubuntu when allowed and missing).
    #[default]
    Auto,
    Containers,
    Native,
    External,
}

impl std::str::FromStr for ProviderChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(ProviderChoice::Auto),
            "containers" => Ok(ProviderChoice::Containers),
            "native" => Ok(ProviderChoice::Native),
            "external" => Ok(ProviderChoice::External),
            other => Err(format!(
                "unknown infrastructure provider `{other}` (use auto, containers, native or external)"
            )),
        }
    }
}

/// The provider that actually runs a stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Provider {
    Containers,
    Native,
    External,
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Provider::Containers => "containers",
            Provider::Native => "native",
            Provider::External => "external",
        })
    }
}

/// URLs of a stack someone else runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ExternalUrls {
    pub database_url: Option<String>,
    pub pgbouncer_url: Option<String>,
    pub pgbouncer_admin_url: Option<String>,
    pub redis_url: Option<String>,
}

/// Everything that decides how a stack starts. Suite files carry it under
/// `[infra]`; [`InfraConfig::apply_env`] layers the environment on top.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct InfraConfig {
    pub provider: ProviderChoice,
    pub postgres: PostgresSettings,
    pub pgbouncer: PgBouncerSettings,
    pub redis: RedisSettings,
    pub images: ImageConfig,
    pub external: ExternalUrls,
    /// How long each service may take to answer.
    #[serde(with = "humantime_serde")]
    pub ready_timeout: Duration,
    /// Whether `auto` may install the native binaries with apt-get.
    pub install: bool,
}

impl Default for InfraConfig {
    fn default() -> Self {
        InfraConfig {
            provider: ProviderChoice::Auto,
            postgres: PostgresSettings::default(),
            pgbouncer: PgBouncerSettings::default(),
            redis: RedisSettings::default(),
            images: ImageConfig::default(),
            external: ExternalUrls::default(),
            ready_timeout: Duration::from_secs(90),
            install: true,
        }
    }
}

/// Environment variables [`InfraConfig::apply_env`] reads.
pub const ENV_PROVIDER: &str = "AHSP_PERF_INFRA";
pub const ENV_NO_INSTALL: &str = "AHSP_PERF_NO_INSTALL";

impl InfraConfig {
    /// Whether the user names a stack someone else runs (by URL) rather
    /// than one the harness starts.
    pub fn names_existing_stack(&self) -> bool {
        self.provider == ProviderChoice::External
    }

    /// Layers the environment over the file: `AHSP_PERF_INFRA`, the image
    /// variables of [`ImageConfig::apply_env`], `AHSP_PERF_NO_INSTALL`, and for
    /// the external provider `DATABASE_URL`, `PGBOUNCER_URL`,
    /// `PGBOUNCER_ADMIN_URL` and `REDIS_URL` where the file gives none.
    pub fn apply_env(&mut self) -> anyhow::Result<()> {
        if let Some(choice) = env_var(ENV_PROVIDER) {
            self.provider = choice
                .parse()
                .map_err(anyhow::Error::msg)
                .with_context(|| ENV_PROVIDER.to_string())?;
        }
        self.images.apply_env()?;
        if env_var(ENV_NO_INSTALL).is_some_and(|v| v != "0") {
            self.install = false;
        }
        let external = &mut self.external;
        for (slot, name) in [
            (&mut external.database_url, "DATABASE_URL"),
            (&mut external.pgbouncer_url, "PGBOUNCER_URL"),
            (&mut external.pgbouncer_admin_url, "PGBOUNCER_ADMIN_URL"),
            (&mut external.redis_url, "REDIS_URL"),
        ] {
            if slot.is_none() {
                *slot = env_var(name);
            }
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), settings::InvalidSetting> {
        settings::validate(&self.postgres, &self.pgbouncer, &self.redis)
    }
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The URLs a run needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackUrls {
    /// PostgreSQL directly: seeding, probes, ground truth.
    pub database_url: String,
    /// PgBouncer: what the application uses.
    pub pgbouncer_url: String,
    /// PgBouncer's admin console (database `pgbouncer`).
    pub pgbouncer_admin_url: String,
    pub redis_url: String,
}

impl StackUrls {
    /// `NAME=value` pairs, as `cargo xtask up` prints them and a target's
    /// environment receives them.
    pub fn env(&self) -> [(&'static str, &str); 4] {
        [
            ("DATABASE_URL", &self.database_url),
            ("PGBOUNCER_URL", &self.pgbouncer_url),
            ("PGBOUNCER_ADMIN_URL", &self.pgbouncer_admin_url),
            ("REDIS_URL", &self.redis_url),
        ]
    }
}

/// The three services.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceName {
    Postgres,
    Pgbouncer,
    Redis,
}

impl ServiceName {
    pub const ALL: [ServiceName; 3] = [
        ServiceName::Postgres,
        ServiceName::Pgbouncer,
        ServiceName::Redis,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ServiceName::Postgres => "postgres",
            ServiceName::Pgbouncer => "pgbouncer",
            ServiceName::Redis => "redis",
        }
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a service runs, for probes (CPU, memory) and log capture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum ServiceLocation {
    Container {
        id: String,
        name: String,
        image: String,
    },
    Process {
        pid: u32,
        log: PathBuf,
    },
    External,
}

/// What the harness may do to one service of a running stack. Everything
/// outside `infra` asks this instead of asking which provider runs it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Its processes are on this kernel (CPU and memory probes).
    pub processes: bool,
    /// Its output can be captured.
    pub logs: bool,
    pub kill: bool,
    /// Stop it without losing state (SIGSTOP or `docker pause`) and resume it.
    pub pause: bool,
    pub restart: bool,
}

/// What a fault does to a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disturbance {
    /// SIGKILL to its processes, `docker kill` to its container.
    Kill,
    /// SIGSTOP, `docker pause`: it keeps its connections and answers nothing.
    Pause,
    /// SIGCONT, `docker unpause`.
    Resume,
}

impl fmt::Display for Disturbance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Disturbance::Kill => "kill",
            Disturbance::Pause => "pause",
            Disturbance::Resume => "resume",
        })
    }
}

/// One running service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ServiceInfo {
    pub name: ServiceName,
    pub location: ServiceLocation,
    /// From the start of the stack to the first successful readiness check.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub ready_after: Duration,
}

/// A running PostgreSQL + PgBouncer + Redis stack. Stop it with
/// [`Stack::stop`]; dropping it (a panic) cleans up too, and so does a signal.
#[derive(Debug)]
pub struct Stack {
    provider: Provider,
    urls: StackUrls,
    services: Vec<ServiceInfo>,
    time_to_ready: Duration,
    backend: Backend,
    run_id: Option<String>,
    /// Locked while a restart relaunches a native service.
    run: Option<tokio::sync::Mutex<RunGuard>>,
}

#[derive(Debug)]
enum Backend {
    Containers(containers::Running),
    Native(native::Running),
    External,
}

impl Stack {
    /// Validates the settings, removes what dead runs left behind, picks the
    /// provider, starts the three services in parallel and waits until each
    /// answers.
    pub async fn start(config: &InfraConfig) -> anyhow::Result<Stack> {
        config
            .validate()
            .context("invalid infrastructure settings")?;
        let started = Instant::now();
        let provider = choose_provider(config).await?;
        if provider != Provider::External {
            match sweep_orphans().await {
                Ok(report) if !report.is_empty() => {
                    tracing::info!(?report, "removed what earlier runs left behind")
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "cannot sweep earlier runs"),
            }
        }
        let (urls, services, backend, run) = match provider {
            Provider::External => {
                let (urls, services) = external::connect(config).await?;
                (urls, services, Backend::External, None)
            }
            Provider::Containers => {
                let mut run = RunGuard::new()?;
                match containers::start(config, &mut run).await {
                    Ok((urls, services, running)) => {
                        (urls, services, Backend::Containers(running), Some(run))
                    }
                    Err(error) => {
                        run.release();
                        return Err(error);
                    }
                }
            }
            Provider::Native => {
                let mut run = RunGuard::new()?;
                match native::start(config, &mut run).await {
                    Ok((urls, services, running)) => {
                        (urls, services, Backend::Native(running), Some(run))
                    }
                    Err(error) => {
                        run.release();
                        return Err(error);
                    }
                }
            }
        };
        let stack = Stack {
            provider,
            urls,
            services,
            time_to_ready: started.elapsed(),
            backend,
            run_id: run.as_ref().map(|run| run.run_id().to_owned()),
            run: run.map(tokio::sync::Mutex::new),
        };
        if config.postgres.loads_pg_stat_statements() && provider != Provider::External {
            stack.create_pg_stat_statements().await?;
        }
        tracing::info!(provider = %stack.provider, time_to_ready = ?stack.time_to_ready, "stack ready");
        Ok(stack)
    }

    async fn create_pg_stat_statements(&self) -> anyhow::Result<()> {
        use sqlx::Connection as _;
        let mut connection =
            sqlx::PgConnection::connect_with(&crate::db::connect_options(&self.urls.database_url)?)
                .await?;
        sqlx::raw_sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .execute(&mut connection)
            .await
            .context("creating the pg_stat_statements extension")?;
        Ok(())
    }

    pub fn provider(&self) -> Provider {
        self.provider
    }

    pub fn urls(&self) -> &StackUrls {
        &self.urls
    }

    pub fn services(&self) -> &[ServiceInfo] {
        &self.services
    }

    /// From the start call to the moment every service answered.
    pub fn time_to_ready(&self) -> Duration {
        self.time_to_ready
    }

    /// The run that owns this stack's containers and processes.
    pub fn run_id(&self) -> Option<&str> {
        self.run_id.as_deref()
    }

    /// The Docker client of a container stack.
    fn docker(&self) -> Option<&testcontainers::bollard::Docker> {
        match &self.backend {
            Backend::Containers(running) => Some(running.docker()),
            _ => None,
        }
    }

    /// Whether the harness started these services (and so configured,
    /// seeded and may disturb them); an external stack is only visited.
    pub fn manages_services(&self) -> bool {
        self.provider != Provider::External
    }

    /// What the harness may do to a service of this stack.
    pub fn capabilities(&self, _service: ServiceName) -> Capabilities {
        match self.provider {
            Provider::Containers | Provider::Native => Capabilities {
                processes: true,
                logs: true,
                kill: true,
                pause: true,
                restart: true,
            },
            Provider::External => Capabilities::default(),
        }
    }

    /// Kills, pauses or resumes one service, as a fault of a suite does;
    /// refused where the provider cannot (an external stack).
    pub async fn disturb(&self, service: ServiceName, what: Disturbance) -> anyhow::Result<()> {
        let capabilities = self.capabilities(service);
        let allowed = match what {
            Disturbance::Kill => capabilities.kill,
            Disturbance::Pause | Disturbance::Resume => capabilities.pause,
        };
        anyhow::ensure!(
            allowed,
            "cannot {what} {service} on the {} stack: the harness only visits it (use the containers or native provider)",
            self.provider
        );
        match &self.backend {
            Backend::Native(running) => running.disturb(service, what),
            Backend::Containers(running) => {
                running.disturb(&self.container_of(service)?, what).await
            }
            Backend::External => anyhow::bail!("an external stack cannot be disturbed"),
        }
    }

    /// Stops `service` and starts it again, as a `restart` fault does, and
    /// waits until it answers (at most the stack's ready timeout); its data
    /// stays, its connections do not.
    pub async fn restart(&self, service: ServiceName) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.capabilities(service).restart,
            "cannot restart {service} on the {} stack: the harness only visits it (use the containers or native provider)",
            self.provider
        );
        match &self.backend {
            Backend::Native(running) => {
                let run = self
                    .run
                    .as_ref()
                    .context("a native stack without its run")?;
                running.restart(service, &mut *run.lock().await).await?;
            }
            Backend::Containers(running) => {
                running
                    .restart(&self.container_of(service)?, service)
                    .await?
            }
            Backend::External => anyhow::bail!("an external stack cannot be restarted"),
        }
        let started = Instant::now();
        let timeout = Duration::from_secs(60);
        let urls = &self.urls;
        match service {
            ServiceName::Postgres => {
                readiness::poll("postgres", started, timeout, || {
                    readiness::postgres_answers(&urls.database_url)
                })
                .await?;
            }
            ServiceName::Pgbouncer => {
                readiness::poll("pgbouncer", started, timeout, || {
                    readiness::pgbouncer_admin_answers(&urls.pgbouncer_admin_url)
                })
                .await?;
            }
            ServiceName::Redis => {
                readiness::poll("redis", started, timeout, || {
                    readiness::redis_answers(&urls.redis_url)
                })
                .await?;
            }
        }
        Ok(())
    }

    fn container_of(&self, service: ServiceName) -> anyhow::Result<String> {
        self.services
            .iter()
            .find_map(|s| match &s.location {
                ServiceLocation::Container { id, .. } if s.name == service => Some(id.clone()),
                _ => None,
            })
            .with_context(|| format!("no container runs {service}"))
    }

    /// Each service's output, by service name.
    pub fn log_sources(&self) -> Vec<(String, LogSource)> {
        let mut sources = Vec::new();
        for service in &self.services {
            let source = match (&service.location, self.docker()) {
                (ServiceLocation::Container { id, .. }, Some(docker)) => {
                    LogSource::container(docker.clone(), id.clone())
                }
                (ServiceLocation::Process { log, .. }, _) => LogSource::file(log.clone()),
                _ => continue,
            };
            sources.push((service.name.to_string(), source));
        }
        sources
    }

    /// The root process of each service on this kernel, for CPU and memory
    /// probes: a container's main process is a process here too.
    pub async fn processes(&self) -> Vec<(String, u32)> {
        if let Backend::Native(running) = &self.backend {
            // A restart gives a service a new process.
            return running.pids();
        }
        let mut processes = Vec::new();
        for service in &self.services {
            let pid = match &service.location {
                ServiceLocation::Process { pid, .. } => Some(*pid),
                ServiceLocation::Container { id, .. } => match self.docker() {
                    Some(docker) => docker
                        .inspect_container(id, None)
                        .await
                        .ok()
                        .and_then(|c| c.state)
                        .and_then(|s| s.pid)
                        .and_then(|p| u32::try_from(p).ok())
                        .filter(|p| *p > 0),
                    None => None,
                },
                ServiceLocation::External => None,
            };
            if let Some(pid) = pid {
                processes.push((service.name.to_string(), pid));
            }
        }
        processes
    }

    /// Stops every service and removes what the run created.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let backend = std::mem::replace(&mut self.backend, Backend::External);
        match backend {
            Backend::Containers(running) => running.stop().await?,
            Backend::Native(running) => running.stop().await?,
            Backend::External => {}
        }
        if let Some(run) = self.run.take() {
            run.into_inner().release();
        }
        Ok(())
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Some(run) = self.run.take() {
            let run = run.into_inner();
            // A panic or an early return: the record names everything, and
            // cleaning up from it works inside or outside a runtime.
            run.release();
        }
    }
}

/// Resolves `auto` to a provider, installing native binaries when it must
/// and may.
pub async fn choose_provider(config: &InfraConfig) -> anyhow::Result<Provider> {
    match config.provider {
        ProviderChoice::Containers => {
            anyhow::ensure!(
                ownership::docker_if_answering().await.is_some(),
                "no Docker daemon answers (start one, e.g. `dockerd &`, or choose --infra native)"
            );
            Ok(Provider::Containers)
        }
        ProviderChoice::Native => {
            native::Binaries::locate().map_err(|missing| anyhow::anyhow!("{missing}"))?;
            Ok(Provider::Native)
        }
        ProviderChoice::External => Ok(Provider::External),
        ProviderChoice::Auto => {
            if ownership::docker_if_answering().await.is_some() {
                return Ok(Provider::Containers);
            }
            match native::Binaries::locate() {
                Ok(_) => Ok(Provider::Native),
                Err(missing) if config.install => {
                    native::install_with_apt(&missing).await?;
                    native::Binaries::locate().map_err(|missing| anyhow::anyhow!("{missing}"))?;
                    Ok(Provider::Native)
                }
                Err(missing) => Err(anyhow::anyhow!("no Docker daemon answers, and {missing}")),
            }
        }
    }
}

/// `url` with its password replaced, for messages and reports.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}
