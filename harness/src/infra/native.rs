//! The native provider: PostgreSQL, PgBouncer and Redis from local binaries,
//! in a temporary directory, on free loopback ports. PostgreSQL and PgBouncer
//! refuse to run as root, so as root every service runs as the `postgres`
//! user (or `nobody` where that does not exist).

use std::fmt;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Context as _;
use nix::sys::signal::Signal;
use nix::unistd::{Gid, Uid, User, chown};

use super::ownership::{OwnedProcess, ProcessId, RunGuard, STOP_GRACE, stop_process};
use super::settings::{DATABASE, PASSWORD, PgBouncerSettings, PgBouncerTopology, USER};
use super::{InfraConfig, ServiceInfo, ServiceLocation, ServiceName, StackUrls, readiness};

/// The local binaries the provider needs.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub initdb: PathBuf,
    pub postgres: PathBuf,
    pub pgbouncer: PathBuf,
    pub redis_server: PathBuf,
}

/// The binaries that could not be found, and how to get them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingBinaries(pub Vec<&'static str>);

impl fmt::Display for MissingBinaries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the native provider needs {} (not found on PATH or under /usr/lib/postgresql/*/bin); \
             install them (Debian/Ubuntu: `sudo apt-get install postgresql pgbouncer redis-server`; \
             macOS: `brew install postgresql pgbouncer redis`), start a Docker daemon, \
             or give a running stack's URLs with --infra external",
            self.0.join(", ")
        )
    }
}

impl Binaries {
    /// Finds the binaries on PATH, under `/usr/lib/postgresql/*/bin` (newest
    /// major version first) and in `/usr/sbin`.
    pub fn locate() -> Result<Binaries, MissingBinaries> {
        let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
            .map(|path| std::env::split_paths(&path).collect())
            .unwrap_or_default();
        dirs.extend(postgres_lib_dirs());
        dirs.extend(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from));
        let find = |name: &str| {
            dirs.iter()
                .map(|dir| dir.join(name))
                .find(|path| is_executable(path))
        };
        // initdb and postgres must come from the same installation.
        let postgres_pair = dirs.iter().find_map(|dir| {
            let (initdb, postgres) = (dir.join("initdb"), dir.join("postgres"));
            (is_executable(&initdb) && is_executable(&postgres)).then_some((initdb, postgres))
        });
        let pgbouncer = find("pgbouncer");
        let redis_server = find("redis-server");
        match (postgres_pair, pgbouncer, redis_server) {
            (Some((initdb, postgres)), Some(pgbouncer), Some(redis_server)) => Ok(Binaries {
                initdb,
                postgres,
                pgbouncer,
                redis_server,
            }),
            (postgres_pair, pgbouncer, redis_server) => {
                let mut missing = Vec::new();
                if postgres_pair.is_none() {
                    missing.extend(["initdb", "postgres"]);
                }
                if pgbouncer.is_none() {
                    missing.push("pgbouncer");
                }
                if redis_server.is_none() {
                    missing.push("redis-server");
                }
                Err(MissingBinaries(missing))
            }
        }
    }
}

fn postgres_lib_dirs() -> Vec<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort_by_key(|version| std::cmp::Reverse(version.0));
    versions.into_iter().map(|(_, dir)| dir).collect()
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Installs the missing binaries with apt-get on Debian or Ubuntu, as root or
/// through passwordless sudo, saying so first; otherwise explains what to do.
pub async fn install_with_apt(missing: &MissingBinaries) -> anyhow::Result<()> {
    let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let debian_like = os_release.lines().any(|line| {
        (line.starts_with("ID=") || line.starts_with("ID_LIKE="))
            && (line.contains("debian") || line.contains("ubuntu"))
    });
    let is_root = Uid::effective().is_root();
    let sudo = !is_root
        && tokio::process::Command::new("sudo")
            .args(["-n", "true"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .is_ok_and(|s| s.success());
    if !debian_like || !(is_root || sudo) {
        anyhow::bail!("no Docker daemon answers, and {missing}");
    }
    let packages = ["postgresql", "pgbouncer", "redis-server"];
    eprintln!(
        "ahsp-perf: no Docker daemon answers and {} missing; installing {} with apt-get{} \
         (set AHSP_PERF_NO_INSTALL=1 to refuse)",
        missing.0.join(", "),
        packages.join(" "),
        if sudo { " through sudo" } else { "" }
    );
    let apt = |args: Vec<&str>| {
        let mut command = if sudo {
            let mut c = tokio::process::Command::new("sudo");
            c.args(["-n", "env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]);
            c
        } else {
            let mut c = tokio::process::Command::new("apt-get");
            c.env("DEBIAN_FRONTEND", "noninteractive");
            c
        };
        command.args(args);
        command
    };
    let status = apt(vec!["update", "-qq"])
        .status()
        .await
        .context("running apt-get update")?;
    anyhow::ensure!(status.success(), "apt-get update failed ({status})");
    let mut install = vec!["install", "-y", "-qq", "--no-install-recommends"];
    install.extend(packages);
    let status = apt(install)
        .status()
        .await
        .context("running apt-get install")?;
    anyhow::ensure!(
        status.success(),
        "apt-get install {} failed ({status})",
        packages.join(" ")
    );
    Ok(())
}

/// A running native stack.
#[derive(Debug)]
pub struct Running {
    processes: std::sync::Mutex<Vec<(OwnedProcess, tokio::process::Child)>>,
    /// How each service was launched, to launch it again on a restart.
    launches: Vec<Launch>,
    dir: PathBuf,
}

impl Running {
    fn new(
        processes: Vec<(OwnedProcess, tokio::process::Child)>,
        launches: Vec<Launch>,
        dir: PathBuf,
    ) -> Running {
        Running {
            processes: std::sync::Mutex::new(processes),
            launches,
            dir,
        }
    }

    /// The process of each service, by name.
    pub fn pids(&self) -> Vec<(String, u32)> {
        self.processes
            .lock()
            .expect("not poisoned")
            .iter()
            .map(|(process, _)| (process.name.clone(), process.id.pid))
            .collect()
    }

    /// Signals the process group of `service`.
    pub fn disturb(&self, service: ServiceName, what: super::Disturbance) -> anyhow::Result<()> {
        let processes = self.processes.lock().expect("not poisoned");
        let (process, _) = processes
            .iter()
            .find(|(process, _)| process.name == service.as_str())
            .with_context(|| format!("no process runs {service}"))?;
        let signal = match what {
            super::Disturbance::Kill => Signal::SIGKILL,
            super::Disturbance::Pause => Signal::SIGSTOP,
            super::Disturbance::Resume => Signal::SIGCONT,
        };
        nix::sys::signal::killpg(nix::unistd::Pid::from_raw(process.id.pid as i32), signal)
            .with_context(|| format!("sending {signal} to {service}"))?;
        Ok(())
    }

    /// Stops `service` on its own signal and launches it again, its output
    /// appended to the same log; the run's record follows the new process.
    pub async fn restart(&self, service: ServiceName, run: &mut RunGuard) -> anyhow::Result<()> {
        let (process, mut child) = {
            let mut processes = self.processes.lock().expect("not poisoned");
            let index = processes
                .iter()
                .position(|(process, _)| process.name == service.as_str())
                .with_context(|| format!("no process runs {service}"))?;
            processes.remove(index)
        };
        let stopping = process.clone();
        tokio::task::spawn_blocking(move || stop_process(&stopping, STOP_GRACE))
            .await
            .context("stopping a service")?;
        let _ = child.wait().await;
        run.update(|record| record.processes.retain(|p| p != &process))?;
        let launch = self
            .launches
            .iter()
            .find(|launch| launch.name == service)
            .with_context(|| format!("no launch of {service} to repeat"))?;
        let started = spawn(launch, run, true)?;
        self.processes.lock().expect("not poisoned").push(started);
        Ok(())
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        let Running { processes, dir, .. } = self;
        let processes = processes.into_inner().expect("not poisoned");
        let mut children = Vec::new();
        let mut owned = Vec::new();
        for (process, child) in processes {
            owned.push(process);
            children.push(child);
        }
        let stop = tokio::task::spawn_blocking(move || {
            std::thread::scope(|scope| {
                for process in &owned {
                    scope.spawn(|| stop_process(process, STOP_GRACE));
                }
            });
        });
        // Reap the children while they stop, so they do not linger as zombies.
        let reap = futures::future::join_all(children.iter_mut().map(|child| child.wait()));
        let (stopped, _) = tokio::join!(stop, reap);
        stopped.context("stopping native services")?;
        tokio::fs::remove_dir_all(&dir)
            .await
            .with_context(|| format!("removing {}", dir.display()))?;
        Ok(())
    }
}

/// The unprivileged user the services run as, when we are root.
fn service_user() -> anyhow::Result<Option<User>> {
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    for name in ["postgres", "nobody"] {
        if let Some(user) = User::from_name(name).context("reading the user database")? {
            return Ok(Some(user));
        }
    }
    anyhow::bail!(
        "running as root, and neither user `postgres` nor `nobody` exists to run PostgreSQL as"
    )
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

#[derive(Debug, Clone)]
struct Launch {
    name: ServiceName,
    program: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    user: Option<User>,
    stop_signal: Signal,
}

/// Starts a launch; `again` appends to its log instead of creating it.
fn spawn(
    launch: &Launch,
    run: &mut RunGuard,
    again: bool,
) -> anyhow::Result<(OwnedProcess, tokio::process::Child)> {
    let log = std::fs::File::options()
        .create(true)
        .append(again)
        .write(true)
        .truncate(!again)
        .open(&launch.log)
        .with_context(|| format!("creating {}", launch.log.display()))?;
    let mut command = tokio::process::Command::new(&launch.program);
    command
        .args(&launch.args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Each service leads its own process group: a terminal's Ctrl-C
        // reaches us, not them, and stopping one stops its children too.
        .process_group(0);
    if let Some(user) = &launch.user {
        command
            .uid(user.uid.as_raw())
            .gid(user.gid.as_raw())
            .env("HOME", &user.dir);
    }
    let child = command
        .spawn()
        .with_context(|| format!("starting {}", launch.program.display()))?;
    let pid = child.id().context("a child without a pid")?;
    let process = OwnedProcess {
        name: launch.name.as_str().to_owned(),
        id: ProcessId::of(pid).unwrap_or(ProcessId {
            pid,
            start_ticks: 0,
        }),
        stop_signal: launch.stop_signal as i32,
    };
    run.update(|record| record.processes.push(process.clone()))?;
    Ok((process, child))
}

/// Starts the three services and waits until each answers.
pub async fn start(
    config: &InfraConfig,
    run: &mut RunGuard,
) -> anyhow::Result<(StackUrls, Vec<ServiceInfo>, Running)> {
    let started = std::time::Instant::now();
    let binaries = Binaries::locate().map_err(|missing| anyhow::anyhow!("{missing}"))?;
    let user = service_user()?;
    let dir = std::env::temp_dir().join(format!("ahsp-perf-{}", run.run_id()));
    run.update(|record| record.dirs.push(dir.clone()))?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let data = dir.join("pgdata");
    std::fs::create_dir_all(&data)?;
    let own = |path: &Path| -> anyhow::Result<()> {
        if let Some(user) = &user {
            chown(path, Some(user.uid), Some(Gid::from_raw(user.gid.as_raw())))
                .with_context(|| format!("chown {} to {}", path.display(), user.name))?;
        }
        Ok(())
    };
    own(&dir)?;
    own(&data)?;
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700))?;
    }
    let write = |name: &str, text: &str| -> anyhow::Result<PathBuf> {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        own(&path)?;
        Ok(path)
    };
    let pwfile = write("pwfile", &format!("{PASSWORD}\n"))?;

    let postgres_port = free_port()?;
    let pgbouncer_port = free_port()?;
    let redis_port = free_port()?;

    let ini = config.pgbouncer.ini(&PgBouncerTopology {
        listen_addr: "127.0.0.1",
        listen_port: pgbouncer_port,
        server_host: "127.0.0.1",
        server_port: postgres_port,
        auth_file: &dir.join("userlist.txt").to_string_lossy(),
        unix_socket_dir: "",
    });
    write("userlist.txt", &PgBouncerSettings::userlist())?;
    let ini_path = write("pgbouncer.ini", &ini)?;

    // PgBouncer and Redis need nothing from PostgreSQL to start (PgBouncer
    // connects to it lazily), so they start while initdb runs.
    let mut processes = Vec::new();
    let mut launches = Vec::new();
    launches.push(Launch {
        name: ServiceName::Pgbouncer,
        program: binaries.pgbouncer.clone(),
        args: vec![ini_path.to_string_lossy().into_owned()],
        log: dir.join("pgbouncer.log"),
        user: user.clone(),
        stop_signal: Signal::SIGKILL,
    });
    processes.push(spawn(launches.last().expect("pushed"), run, false)?);
    let mut redis_args = config.redis.server_args("127.0.0.1", redis_port);
    redis_args.extend(["--dir".to_owned(), dir.to_string_lossy().into_owned()]);
    launches.push(Launch {
        name: ServiceName::Redis,
        program: binaries.redis_server.clone(),
        args: redis_args,
        log: dir.join("redis.log"),
        user: user.clone(),
        stop_signal: Signal::SIGTERM,
    });
    processes.push(spawn(launches.last().expect("pushed"), run, false)?);

    let mut initdb = tokio::process::Command::new(&binaries.initdb);
    initdb
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            USER,
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C",
        ])
        .args(["--no-sync", "--no-instructions"])
        .arg(format!("--pwfile={}", pwfile.display()))
        .stdin(Stdio::null());
    if let Some(user) = &user {
        initdb
            .uid(user.uid.as_raw())
            .gid(user.gid.as_raw())
            .env("HOME", &user.dir);
    }
    let output = initdb.output().await.context("running initdb")?;
    if !output.status.success() {
        let running = Running::new(processes, launches, dir);
        let _ = running.stop().await;
        anyhow::bail!(
            "initdb failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }

    let mut postgres_args = vec![
        "-D".to_owned(),
        data.to_string_lossy().into_owned(),
        "-p".to_owned(),
        postgres_port.to_string(),
        "-c".to_owned(),
        "listen_addresses=127.0.0.1".to_owned(),
        "-c".to_owned(),
        format!("unix_socket_directories={}", dir.display()),
    ];
    postgres_args.extend(config.postgres.server_args());
    launches.push(Launch {
        name: ServiceName::Postgres,
        program: binaries.postgres.clone(),
        args: postgres_args,
        log: dir.join("postgres.log"),
        user: user.clone(),
        stop_signal: Signal::SIGINT,
    });
    processes.push(spawn(launches.last().expect("pushed"), run, false)?);

    let host = "127.0.0.1";
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
        async {
            // initdb made only the `postgres` database; ours comes next.
            let maintenance =
                format!("postgres://{USER}:{PASSWORD}@{host}:{postgres_port}/postgres");
            let ready = readiness::poll("postgres", started, timeout, || {
                readiness::postgres_answers(&maintenance)
            })
            .await?;
            create_database(&maintenance).await?;
            Ok::<_, anyhow::Error>(ready)
        },
        readiness::poll("pgbouncer", started, timeout, || async {
            readiness::postgres_answers(&urls.pgbouncer_url).await?;
            readiness::pgbouncer_admin_answers(&urls.pgbouncer_admin_url).await
        }),
        readiness::poll("redis", started, timeout, || readiness::redis_answers(
            &urls.redis_url
        )),
    );
    let ((_, postgres_ready), (_, pgbouncer_ready), (_, redis_ready)) = match ready {
        Ok(ready) => ready,
        Err(error) => {
            let logs = ["postgres.log", "pgbouncer.log", "redis.log"]
                .iter()
                .map(|name| format!("--- {name} ---\n{}", tail(&dir.join(name), 15)))
                .collect::<Vec<_>>()
                .join("\n");
            let running = Running::new(processes, launches, dir);
            let _ = running.stop().await;
            return Err(error.context(format!("service logs:\n{logs}")));
        }
    };
    let pid_of = |name: ServiceName| {
        processes
            .iter()
            .find(|(p, _)| p.name == name.as_str())
            .map(|(p, _)| p.id.pid)
            .unwrap_or(0)
    };
    let services = [
        (ServiceName::Postgres, postgres_ready),
        (ServiceName::Pgbouncer, pgbouncer_ready),
        (ServiceName::Redis, redis_ready),
    ]
    .into_iter()
    .map(|(name, ready_after)| ServiceInfo {
        name,
        location: ServiceLocation::Process {
            pid: pid_of(name),
            log: dir.join(format!("{name}.log")),
        },
        ready_after,
    })
    .collect();
    Ok((urls, services, Running::new(processes, launches, dir)))
}

async fn create_database(maintenance_url: &str) -> anyhow::Result<()> {
    use sqlx::Connection as _;
    let mut connection =
        sqlx::PgConnection::connect_with(&crate::db::connect_options(maintenance_url)?).await?;
    sqlx::raw_sql(&format!("CREATE DATABASE \"{DATABASE}\""))
        .execute(&mut connection)
        .await
        .with_context(|| format!("creating database {DATABASE}"))?;
    Ok(())
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let kept: Vec<&str> = text.lines().rev().take(lines).collect();
    kept.into_iter().rev().collect::<Vec<_>>().join("\n")
}
