//! `cargo xtask bench-loadgen`: what the load engine costs. It runs the
//! engine against a minimal local HTTP server (a process of its own, on the
//! other core) and prints requests, CPU-seconds per 10,000 requests and peak
//! RSS — and the same for `wrk` when it is installed, measured in the same
//! run, so the ratio is what counts, not the machine.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::engine::{self, EngineInput};
use harness::suite::{Plan, PlanOptions};
use nix::sys::resource::{UsageWho, getrusage};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Connections (virtual users), each with its own connection.
    #[arg(long, default_value_t = 50)]
    connections: u32,
    /// How long each generator runs.
    #[arg(long, default_value = "10s")]
    duration: humantime::Duration,
    /// Serve on this port instead of starting the minimal server (for `serve-minimal`).
    #[arg(long, hide = true)]
    serve_only: Option<u16>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    if let Some(port) = args.serve_only {
        return serve_minimal(port).await;
    }
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
            ])
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
    let engine = measure_engine(&url, args.connections, *args.duration).await;
    let wrk = measure_wrk(&url, args.connections, *args.duration);
    let _ = server.kill();
    let _ = server.wait();
    let engine = engine?;
    println!(
        "load generator cost, {} connections, {} each, one core",
        args.connections, args.duration
    );
    println!(
        "  {:<10} {:>10} {:>14} {:>12}",
        "generator", "requests", "CPU-s/10k req", "peak RSS"
    );
    println!(
        "  {:<10} {:>10} {:>14.3} {:>9.1} MB",
        "ahsp-perf",
        engine.requests,
        engine.cpu_per_10k(),
        engine.peak_rss_mb
    );
    match wrk {
        Ok(wrk) => {
            println!(
                "  {:<10} {:>10} {:>14.3} {:>9.1} MB",
                "wrk",
                wrk.requests,
                wrk.cpu_per_10k(),
                wrk.peak_rss_mb
            );
            println!(
                "  ratio ahsp-perf / wrk: {:.2}× (goal ≤ 1.3×)",
                engine.cpu_per_10k() / wrk.cpu_per_10k()
            );
        }
        Err(error) => println!("  wrk: not measured ({error})"),
    }
    Ok(())
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

fn cpu_seconds(who: UsageWho) -> anyhow::Result<(f64, f64)> {
    let usage = getrusage(who)?;
    let seconds = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    // ru_maxrss is in kilobytes on Linux.
    Ok((
        seconds(usage.user_time()) + seconds(usage.system_time()),
        usage.max_rss() as f64 / 1024.0,
    ))
}

async fn measure_engine(url: &str, connections: u32, duration: Duration) -> anyhow::Result<Cost> {
    let suite = format!(
        "[suite]\nname = \"loadgen\"\n[target]\nurl = \"{url}\"\n[load]\nexecutor = \"constant-users\"\nusers = {connections}\nduration = \"{}\"\n[[task]]\nname = \"/\"\nget = \"/\"\n",
        humantime::format_duration(duration)
    );
    let plan = Plan::from_source(&suite, "bench-loadgen", &PlanOptions::default())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let input = EngineInput {
        plan: Arc::new(plan),
        base_url: url.to_owned(),
        users: Vec::new(),
        global: Arc::default(),
        seed: 1,
    };
    let (before, _) = cpu_seconds(UsageWho::RUSAGE_SELF)?;
    let output = engine::run(input, None, None).await?;
    let (after, peak_rss_mb) = cpu_seconds(UsageWho::RUSAGE_SELF)?;
    let requests = output.summary.total.requests
        + output
            .summary
            .warm_up
            .iter()
            .map(|e| e.requests)
            .sum::<u64>();
    anyhow::ensure!(
        output.summary.total.failures == 0,
        "the engine saw failures: {:?}",
        output.summary.failures()
    );
    Ok(Cost {
        requests,
        cpu_seconds: after - before,
        peak_rss_mb,
    })
}

fn measure_wrk(url: &str, connections: u32, duration: Duration) -> anyhow::Result<Cost> {
    // Children reaped before (none should be, but a delta cannot be fooled).
    let (before, _) = cpu_seconds(UsageWho::RUSAGE_CHILDREN)?;
    let output = std::process::Command::new("taskset")
        .args([
            "-c",
            "0",
            "wrk",
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{}s", duration.as_secs()),
        ])
        .arg(url)
        .output()
        .map_err(|e| anyhow::anyhow!("wrk is not installed ({e})"))?;
    anyhow::ensure!(
        output.status.success(),
        "wrk failed: {}",
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
    let (after, peak_rss_mb) = cpu_seconds(UsageWho::RUSAGE_CHILDREN)?;
    Ok(Cost {
        requests,
        cpu_seconds: after - before,
        peak_rss_mb,
    })
}

/// A server that answers every request with a short 200, as cheaply as hyper can.
async fn serve_minimal(port: u16) -> anyhow::Result<()> {
    use http_body_util::Full;
    use hyper::service::service_fn;
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
