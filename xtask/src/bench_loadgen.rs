//! `cargo xtask bench-loadgen`: what the load engine costs. It runs the
//! engine against a minimal local HTTP server (a process of its own, on the
//! other core) and prints requests, CPU-seconds per 10,000 requests and peak
//! RSS — and the same for `wrk` when it is installed, measured in the same
//! run, so the ratio is what counts, not the machine. Rounds alternate the
//! two and the median ratio is reported, so drift on a shared machine falls
//! on both.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::engine::{self, EngineInput};
use harness::suite::plan::{Shard, ShardPlan};
use harness::suite::{Plan, PlanOptions};
use nix::sys::resource::{UsageWho, getrusage};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Connections (virtual users), each with its own connection.
    #[arg(long, default_value_t = 50)]
    connections: u32,
    /// How long each generator runs in each round.
    #[arg(long, default_value = "5s")]
    duration: humantime::Duration,
    /// Rounds, alternating the engine and wrk; the median is reported.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Also measure the engine split into N shards (`--shard I/N` each,
    /// run together, their seconds kept for a merge) at the same total load.
    #[arg(long, value_name = "N")]
    shards: Option<u32>,
    /// Serve on this port instead of starting the minimal server (for `serve-minimal`).
    #[arg(long, hide = true)]
    serve_only: Option<u16>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    if let Some(port) = args.serve_only {
        return serve_minimal(port).await;
    }
    anyhow::ensure!(args.rounds >= 1, "--rounds must be at least 1");
    if cfg!(debug_assertions) {
        // A dev build measures the optimiser's absence, not the engine.
        let status = std::process::Command::new(crate::cargo())
            .current_dir(crate::project_root())
            .args([
                "run",
                "--quiet",
                "--release",
                "--package",
                "xtask",
                "--",
                "bench-loadgen",
            ])
            .args([
                "--connections",
                &args.connections.to_string(),
                "--duration",
                &args.duration.to_string(),
                "--rounds",
                &args.rounds.to_string(),
            ])
            .args(
                args.shards
                    .map(|n| vec!["--shards".to_owned(), n.to_string()])
                    .unwrap_or_default(),
            )
            .status()?;
        std::process::exit(status.code().unwrap_or(1));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut server = std::process::Command::new("taskset");
    server
        .args(["-c", "1"])
        .arg(std::env::current_exe()?)
        .args(["bench-loadgen", "--serve-only", &port.to_string()]);
    let mut server = match server.spawn() {
        Ok(child) => child,
        Err(_) => std::process::Command::new(std::env::current_exe()?)
            .args(["bench-loadgen", "--serve-only", &port.to_string()])
            .spawn()?,
    };
    let address: SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(address).await.is_err() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the minimal server did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The generator on core 0, the server on core 1.
    let mut cpus = nix::sched::CpuSet::new();
    let _ = cpus.set(0);
    let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &cpus);

    let url = format!("http://{address}/");
    // Rounds alternate the two generators, so drift on a shared machine
    // (another tenant, a compile) falls on both; the median ratio is reported.
    let mut rounds = Vec::new();
    let mut sharded_rounds = Vec::new();
    let mut wrk_missing = None;
    for round in 1..=args.rounds {
        let engine = measure_engine(&url, args.connections, *args.duration, None).await;
        let sharded = match args.shards {
            Some(n) => Some(measure_engine(&url, args.connections, *args.duration, Some(n)).await?),
            None => None,
        };
        let engine = match engine {
            Ok(engine) => engine,
            Err(error) => {
                let _ = server.kill();
                let _ = server.wait();
                return Err(error);
            }
        };
        let wrk = if wrk_missing.is_none() {
            match measure_wrk(&url, args.connections, *args.duration).await {
                Ok(wrk) => Some(wrk),
                Err(error) => {
                    wrk_missing = Some(error);
                    None
                }
            }
        } else {
            None
        };
        eprintln!(
            "round {round}/{}: ahsp-perf {:.3}{}{}",
            args.rounds,
            engine.cpu_per_10k(),
            sharded
                .as_ref()
                .map(|s| format!(", sharded {:.3}", s.cpu_per_10k()))
                .unwrap_or_default(),
            wrk.as_ref()
                .map(|w| format!(", wrk {:.3} CPU-s/10k req", w.cpu_per_10k()))
                .unwrap_or_default()
        );
        if let Some(sharded) = sharded {
            sharded_rounds.push(sharded);
        }
        rounds.push((engine, wrk));
    }
    let _ = server.kill();
    let _ = server.wait();
    println!(
        "load generator cost, {} connections, {} × {} rounds each, one core",
        args.connections, args.duration, args.rounds
    );
    println!(
        "  {:<10} {:>12} {:>20} {:>14}",
        "generator", "requests", "CPU-s/10k (median)", "peak RSS"
    );
    let engines: Vec<&Cost> = rounds.iter().map(|(e, _)| e).collect();
    print_row("ahsp-perf", &engines);
    if let Some(n) = args.shards {
        print_row(
            &format!("{n} shards"),
            &sharded_rounds.iter().collect::<Vec<_>>(),
        );
        let ratios: Vec<f64> = rounds
            .iter()
            .zip(&sharded_rounds)
            .map(|((e, _), s)| s.cpu_per_10k() / e.cpu_per_10k())
            .collect();
        println!(
            "  ratio {n} shards / one: {:.2}× median of {} rounds",
            median(ratios.clone()),
            ratios.len()
        );
    }
    let wrks: Vec<&Cost> = rounds.iter().filter_map(|(_, w)| w.as_ref()).collect();
    if wrks.is_empty() {
        let why = wrk_missing.map(|e| e.to_string()).unwrap_or_default();
        println!("  wrk: not measured ({why})");
        return Ok(());
    }
    print_row("wrk", &wrks);
    let ratios: Vec<f64> = rounds
        .iter()
        .filter_map(|(e, w)| w.as_ref().map(|w| e.cpu_per_10k() / w.cpu_per_10k()))
        .collect();
    let (low, high) = ratios
        .iter()
        .fold((f64::MAX, f64::MIN), |(l, h), r| (l.min(*r), h.max(*r)));
    println!(
        "  ratio ahsp-perf / wrk: {:.2}× median of {} rounds (range {low:.2}–{high:.2}; goal ≤ 1.3×)",
        median(ratios.clone()),
        ratios.len()
    );
    Ok(())
}

fn print_row(name: &str, costs: &[&Cost]) {
    let requests: u64 = costs.iter().map(|c| c.requests).sum();
    let per_10k = median(costs.iter().map(|c| c.cpu_per_10k()).collect());
    let peak = costs.iter().map(|c| c.peak_rss_mb).fold(0.0, f64::max);
    println!("  {name:<10} {requests:>12} {per_10k:>20.3} {peak:>11.1} MB");
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

struct Cost {
    requests: u64,
    cpu_seconds: f64,
    peak_rss_mb: f64,
}

impl Cost {
    fn cpu_per_10k(&self) -> f64 {
        self.cpu_seconds / self.requests.max(1) as f64 * 10_000.0
    }
}

fn cpu_seconds(who: UsageWho) -> anyhow::Result<f64> {
    let usage = getrusage(who)?;
    let seconds = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    Ok(seconds(usage.user_time()) + seconds(usage.system_time()))
}

/// A process's peak resident set (`VmHWM`), in MB. Not `ru_maxrss`: Linux
/// carries that across `exec` from the parent's memory (cargo's, or this
/// process's when it spawns wrk), which would report the parent's peak.
fn peak_rss_mb(pid: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kilobytes: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kilobytes / 1024.0)
}

/// The engine's cost at `connections` users; with `shards`, the same total
/// split into that many shards running together in this process (each
/// keeping its seconds for a merge).
async fn measure_engine(
    url: &str,
    connections: u32,
    duration: Duration,
    shards: Option<u32>,
) -> anyhow::Result<Cost> {
    let suite = format!(
        "[suite]\nname = \"loadgen\"\n[target]\nurl = \"{url}\"\n[load]\nexecutor = \"constant-users\"\nusers = {connections}\nduration = \"{}\"\n[[task]]\nname = \"/\"\nget = \"/\"\n",
        humantime::format_duration(duration)
    );
    let count = shards.unwrap_or(1);
    let before = cpu_seconds(UsageWho::RUSAGE_SELF)?;
    let mut runs = tokio::task::JoinSet::new();
    for index in 0..count {
        let options = PlanOptions {
            shard: shards.map(|count| ShardPlan {
                shard: Shard { index, count },
                start_at_unix_ms: None,
            }),
            ..PlanOptions::default()
        };
        let plan = Plan::from_source(&suite, "bench-loadgen", &options)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let input = EngineInput {
            plan: Arc::new(plan),
            base_url: url.into(),
            users: Vec::new(),
            global: Arc::default(),
            seed: 1,
            custom_tasks: Default::default(),
        };
        runs.spawn(engine::run(input, None, None));
    }
    let mut requests = 0;
    while let Some(output) = runs.join_next().await {
        let output = output??;
        anyhow::ensure!(
            output.summary.total.failures == 0,
            "the engine saw failures: {:?}",
            output.summary.failures()
        );
        requests += output.summary.total.requests
            + output
                .summary
                .warm_up
                .iter()
                .map(|e| e.requests)
                .sum::<u64>();
    }
    let after = cpu_seconds(UsageWho::RUSAGE_SELF)?;
    Ok(Cost {
        requests,
        cpu_seconds: after - before,
        peak_rss_mb: peak_rss_mb("self").unwrap_or(f64::NAN),
    })
}

async fn measure_wrk(url: &str, connections: u32, duration: Duration) -> anyhow::Result<Cost> {
    // Children reaped before (none should be, but a delta cannot be fooled).
    let before = cpu_seconds(UsageWho::RUSAGE_CHILDREN)?;
    let child = tokio::process::Command::new("taskset")
        .args([
            "-c",
            "0",
            "wrk",
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{}s", duration.as_secs().max(1)),
        ])
        .arg(url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| anyhow::anyhow!("taskset is not installed ({e})"))?;
    // taskset execs wrk in place: the pid is wrk's. Its VmHWM only grows,
    // so the last reading before it exits is its peak.
    let pid = child.id().map(|p| p.to_string()).unwrap_or_default();
    let mut peak = 0.0f64;
    let output = {
        let wait = child.wait_with_output();
        tokio::pin!(wait);
        loop {
            tokio::select! {
                output = &mut wait => break output?,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {
                    if let Some(mb) = peak_rss_mb(&pid) {
                        peak = peak.max(mb);
                    }
                }
            }
        }
    };
    anyhow::ensure!(
        output.status.success(),
        "wrk is not installed or failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    // "  123456 requests in 10.00s, …"
    let requests = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("cannot read wrk's output: {text}"))?;
    let after = cpu_seconds(UsageWho::RUSAGE_CHILDREN)?;
    Ok(Cost {
        requests,
        cpu_seconds: after - before,
        peak_rss_mb: peak,
    })
}

/// A server that answers every request with a short 200, as cheaply as hyper can.
async fn serve_minimal(port: u16) -> anyhow::Result<()> {
    use http_body_util::Full;
    use hyper::service::service_fn;
    engine::raise_open_file_limit();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = service_fn(|_request| async {
                Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                    bytes::Bytes::from_static(b"ok"),
                )))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}
