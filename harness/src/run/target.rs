//! The application under test as a process: an embedded service that
//! announces its URL, or the user's own command polled until it answers. It
//! receives the stack's URLs in its environment, is owned by a run (so a
//! killed runner's target is swept like its services), and its output goes
//! to the run's folder. A [`RunningTarget`] is its own guard: dropped on an
//! early return or a panic, it stops the process.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use crate::infra::listener::{command_name, listening_pid, taken_by_another};
use crate::infra::ownership::{OwnedProcess, RunGuard, STOP_GRACE, stop_process};
use crate::infra::proxy::FaultProxy;
use crate::infra::{ServiceName, StackUrls};
use crate::redact::Redactor;
use crate::secret::SecretUrl;
use anyhow::Context as _;
use nix::sys::signal::Signal;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

/// A running target.
#[derive(Debug)]
pub struct RunningTarget {
    /// Where it answers; a password in it only ever leaves masked.
    pub base_url: SecretUrl,
    pub pid: Option<u32>,
    /// Its standard output (the access log, for the reference service).
    pub log: Option<PathBuf>,
    /// Proxies on its paths to the stack, for network faults; they close
    /// with it.
    pub paths: BTreeMap<ServiceName, FaultProxy>,
    child: Option<tokio::process::Child>,
    run: Option<RunGuard>,
    copier: Option<tokio::task::JoinHandle<()>>,
    /// Copies standard error into `target.stderr.log`, masked.
    errors: Option<tokio::task::JoinHandle<()>>,
}

/// How long a target may take to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

impl RunningTarget {
    /// A target someone else runs.
    pub fn external(url: &SecretUrl) -> RunningTarget {
        RunningTarget {
            base_url: url.trim_end_slash(),
            pid: None,
            log: None,
            paths: BTreeMap::new(),
            child: None,
            run: None,
            copier: None,
            errors: None,
        }
    }

    /// Starts a service that prints a `TARGET_URL=http://…` line once it
    /// answers (the embedded reference service does), and waits for that line.
    pub async fn announced(
        program: &Path,
        args: &[String],
        env: &[(String, String)],
        dir: &Path,
    ) -> anyhow::Result<RunningTarget> {
        let mut process = tokio::process::Command::new(program);
        process.args(args);
        for (name, value) in env {
            process.env(name, value);
        }
        // The embedded service runs on a stack the harness made, with
        // throwaway credentials: nothing of its output is a user's secret.
        let redactor = Arc::new(Redactor::default());
        let (mut target, mut lines) = spawn(process, dir, redactor.clone()).await?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let line = tokio::time::timeout_at(deadline.into(), lines.next_line())
                .await
                .map_err(|_| {
                    anyhow::anyhow!(
                        "`{}` printed no TARGET_URL within {READY_TIMEOUT:?}",
                        program.display()
                    )
                })?
                .with_context(|| format!("reading the output of `{}`", program.display()))?;
            match line {
                Some(line) if line.starts_with("TARGET_URL=") => {
                    target.base_url =
                        SecretUrl::new(line["TARGET_URL=".len()..].trim().trim_end_matches('/'));
                    break;
                }
                Some(_) => {}
                None => {
                    // Stopping waits for its standard error to be copied.
                    target.stop().await;
                    let log =
                        std::fs::read_to_string(dir.join("target.stderr.log")).unwrap_or_default();
                    anyhow::bail!("`{}` exited before it answered:\n{log}", program.display());
                }
            }
        }
        target.copier = Some(tokio::spawn(copy_lines(
            lines,
            target.log.clone().expect("a log path"),
            redactor,
            Flush::WhenFull,
        )));
        Ok(target)
    }

    /// Starts the user's application on a free port (in `PORT`, and for
    /// `{port}` in its arguments and environment), in `workdir` when given,
    /// and polls `ready_path` until it answers 2xx or 3xx.
    pub async fn command(
        launch: &Launch<'_>,
        urls: Option<&StackUrls>,
        dir: &Path,
        redactor: Arc<Redactor>,
    ) -> anyhow::Result<RunningTarget> {
        let Launch {
            program,
            args,
            env,
            ready_path,
            workdir,
        } = *launch;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut process = tokio::process::Command::new(program);
        process
            .args(
                args.iter()
                    .map(|arg| arg.replace("{port}", &port.to_string())),
            )
            .env("PORT", port.to_string());
        if let Some(workdir) = workdir {
            process.current_dir(workdir);
        }
        if let Some(urls) = urls {
            for (name, value) in urls.env() {
                process.env(name, value);
            }
        }
        for (name, value) in env {
            process.env(name, value.replace("{port}", &port.to_string()));
        }
        let (mut target, lines) = spawn(process, dir, redactor.clone()).await?;
        target.base_url = SecretUrl::new(format!("http://127.0.0.1:{port}"));
        target.copier = Some(tokio::spawn(copy_lines(
            lines,
            target.log.clone().expect("a log path"),
            redactor,
            Flush::WhenFull,
        )));
        let ready_url = format!("{}{}", target.base_url.expose_secret(), ready_path);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(true) = answers(&ready_url).await {
                // The port was free when chosen; another process may have
                // taken it before the target bound it, and answered.
                if let (Some(owner), Some(pid)) = (listening_pid(port), target.pid)
                    && taken_by_another(owner, pid)
                {
                    target.stop().await;
                    anyhow::bail!(
                        "port {port} is answered by process {owner} ({}), not by `{program}`: another process took the port between its choice and the target's start, so the run would measure an application it did not start; run again",
                        command_name(owner)
                    );
                }
                return Ok(target);
            }
            if Instant::now() > deadline {
                target.stop().await;
                anyhow::bail!("`{program}` did not answer {ready_url} within {READY_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Its output files, for log capture: standard output (the access log of
    /// the reference service) and standard error.
    pub fn log_files(&self, dir: &Path) -> Vec<(String, PathBuf)> {
        match &self.log {
            Some(log) => vec![
                ("app".to_owned(), log.clone()),
                ("app-stderr".to_owned(), dir.join("target.stderr.log")),
            ],
            None => Vec::new(),
        }
    }

    /// Stops the process (SIGTERM, then SIGKILL) and flushes its log.
    pub async fn stop(mut self) {
        if let Some(run) = self.run.take() {
            let processes = run.record().processes.clone();
            let _ = tokio::task::spawn_blocking(move || {
                for process in &processes {
                    stop_process(process, STOP_GRACE);
                }
            })
            .await;
            run.forget();
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.wait().await;
        }
        if let Some(copier) = self.copier.take() {
            let _ = copier.await;
        }
        if let Some(errors) = self.errors.take() {
            let _ = errors.await;
        }
    }
}

impl Drop for RunningTarget {
    fn drop(&mut self) {
        // An early return or a panic between start and stop: the record
        // names the process, and cleaning up from it blocks briefly.
        if let Some(run) = self.run.take() {
            run.release();
        }
    }
}

/// How the user's application is started (`[target] command`).
#[derive(Debug, Clone, Copy)]
pub struct Launch<'a> {
    pub program: &'a str,
    pub args: &'a [String],
    pub env: &'a [(String, String)],
    pub ready_path: &'a str,
    pub workdir: Option<&'a Path>,
}

async fn spawn(
    mut process: tokio::process::Command,
    dir: &Path,
    redactor: Arc<Redactor>,
) -> anyhow::Result<(
    RunningTarget,
    tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
)> {
    std::fs::create_dir_all(dir)?;
    process
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut run = RunGuard::new()?;
    let mut child = process.spawn().context("starting the target")?;
    let pid = child.id().context("a target without a pid")?;
    run.update(|record| {
        record
            .processes
            .push(OwnedProcess::started("target", pid, Signal::SIGTERM))
    })?;
    let stdout = child.stdout.take().context("the target's output")?;
    // Standard error is copied line by line, masked as it is written: a
    // run killed with SIGKILL gets no sweep afterwards.
    let stderr = child.stderr.take().context("the target's errors")?;
    let errors = tokio::spawn(copy_lines(
        BufReader::new(stderr).lines(),
        dir.join("target.stderr.log"),
        redactor,
        Flush::EachLine,
    ));
    let target = RunningTarget {
        base_url: SecretUrl::new(String::new()),
        pid: Some(pid),
        log: Some(dir.join("target.log")),
        paths: BTreeMap::new(),
        child: Some(child),
        run: Some(run),
        copier: None,
        errors: Some(errors),
    };
    Ok((target, BufReader::new(stdout).lines()))
}

/// When a copied stream reaches its file: standard output (an access log,
/// a line per request) in blocks; standard error line by line, so the log
/// capture and an early exit's message see it at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flush {
    WhenFull,
    EachLine,
}

async fn copy_lines<R: tokio::io::AsyncRead + Unpin>(
    mut lines: tokio::io::Lines<BufReader<R>>,
    path: PathBuf,
    redactor: Arc<Redactor>,
    flush: Flush,
) {
    let Ok(file) = tokio::fs::File::create(&path).await else {
        return;
    };
    let mut writer = tokio::io::BufWriter::new(file);
    while let Ok(Some(line)) = lines.next_line().await {
        if writer
            .write_all(redactor.text(&line).as_bytes())
            .await
            .is_err()
            || writer.write_all(b"\n").await.is_err()
            || (flush == Flush::EachLine && writer.flush().await.is_err())
        {
            return;
        }
    }
    let _ = writer.flush().await;
}

/// A GET answered with 2xx.
async fn answers(url: &str) -> anyhow::Result<bool> {
    let url = url::Url::parse(url)?;
    let host = url.host_str().unwrap_or("127.0.0.1").to_owned();
    let port = url.port_or_known_default().unwrap_or(80);
    let mut stream = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await??;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n",
        url.path()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut status_line)).await??;
    Ok(status_line
        .split_whitespace()
        .nth(1)
        // A redirect (to a login page, say) is an application answering.
        .is_some_and(|code| code.starts_with('2') || code.starts_with('3')))
}
