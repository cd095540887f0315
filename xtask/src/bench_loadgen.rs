//! `cargo xtask bench-loadgen`: what the load engine costs, beside wrk. It
//! runs the engine against a minimal local HTTP server (a process of its
//! own, on the other core) and prints requests, CPU-seconds per 10,000
//! requests and peak RSS, and the same for `wrk` measured in the same run,
//! so the ratio is what counts, not the machine. Each round is a pair (the
//! engine and wrk, their order alternating), so drift on a shared machine
//! falls on both.
//!
//! Two paths: `fast` (the server answers at once: the engine's own cost per
//! request) and `slow` (after 20 ms: what waiting costs). `--check` judges
//! the ratios against `benches/loadgen-budget.toml` for the build it runs
//! in (the judgement is `harness::engine::cost`); `cargo xtask test` runs
//! it on the dev build, so CI fails when the engine gets costlier.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::engine::cost::{CostBudget, CostPath, RatioEstimate};
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
    /// Rounds (pairs of the engine and wrk) on each path.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// The paths measured: `fast` (answered at once), `slow` (after 20 ms), or both.
    #[arg(long, value_enum, default_value = "both")]
    path: PathChoice,
    /// Judge each path's ratio to wrk against `benches/loadgen-budget.toml`
    /// for this build's profile; exits 1 when it is provably above. Measures
    /// the build it runs in (a dev build is not re-run as release).
    #[arg(long)]
    check: bool,
    /// Also measure the engine split into N shards (`--shard I/N` each,
    /// run together, their seconds kept for a merge) at the same total load.
    #[arg(long, value_name = "N")]
    shards: Option<u32>,
    /// Stream the engine's live series while it runs (`prometheus-rw=URL`,
    /// as `perf --metrics-out`): what watching a run costs the engine.
    #[arg(
        long = "metrics-out",
        value_name = "KIND=URL",
        conflicts_with = "shards"
    )]
    metrics_out: Vec<String>,
    /// Serve on this port instead of starting the minimal server (for `serve-minimal`).
    #[arg(long, hide = true)]
    serve_only: Option<u16>,
    /// With `--serve-only`: answer after this many milliseconds.
    #[arg(long, hide = true, default_value_t = 0)]
    serve_delay_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum PathChoice {
    Fast,
    Slow,
    Both,
}

impl PathChoice {
    fn paths(self) -> Vec<CostPath> {
        match self {
            PathChoice::Fast => vec![CostPath::Fast],
            PathChoice::Slow => vec![CostPath::Slow],
            PathChoice::Both => vec![CostPath::Fast, CostPath::Slow],
        }
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    if let Some(port) = args.serve_only {
        return serve_minimal(port, Duration::from_millis(args.serve_delay_ms)).await;
    }
    anyhow::ensure!(args.rounds >= 1, "--rounds must be at least 1");
    anyhow::ensure!(
        !args.check || args.rounds >= 2,
        "--check needs at least 2 rounds: one pair has no spread to judge by"
    );
    if cfg!(debug_assertions) && !args.check {
        // A dev build measures the optimiser's absence, not the engine.
        return rerun_in_release(&args);
    }
    let budget = if args.check {
        Some(CostBudget::load(
            &crate::project_root().join(CostBudget::FILE),
        )?)
    } else {
        None
    };
    // The generator on core 0, the server on core 1.
    let mut cpus = nix::sched::CpuSet::new();
    let _ = cpus.set(0);
    let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &cpus);
    let mut over = Vec::new();
    for path in args.path.paths() {
        let measured = measure_path(&args, path).await?;
        measured.print(&args);
        if let Some(budget) = &budget
            && let Some(name) = measured.judge(budget)?
        {
            over.push(name);
        }
    }
    anyhow::ensure!(
        over.is_empty(),
        "the load engine's CPU per request rose beyond its budget on the {} path ({}): \
         profile it (README, The load engine's own cost) before raising the budget",
        over.join(" and "),
        CostBudget::FILE
    );
    Ok(())
}

fn rerun_in_release(args: &Args) -> anyhow::Result<()> {
    let mut command = crate::cargo_command();
    command
        .current_dir(crate::project_root())
        .args(["run", "--quiet", "--release", "--package", "xtask", "--"])
        .args(["bench-loadgen", "--connections"])
        .arg(args.connections.to_string())
        .arg("--duration")
        .arg(args.duration.to_string())
        .arg("--rounds")
        .arg(args.rounds.to_string())
        .arg("--path")
        .arg(
            clap::ValueEnum::to_possible_value(&args.path)
                .expect("every path choice has a name")
                .get_name(),
        );
    if let Some(n) = args.shards {
        command.arg("--shards").arg(n.to_string());
    }
    for out in &args.metrics_out {
        command.arg("--metrics-out").arg(out);
    }
    let status = command.status()?;
    std::process::exit(status.code().unwrap_or(1));
}

/// One path's rounds: the engine's cost and wrk's in each.
struct Measured {
    path: CostPath,
    engine: Vec<Cost>,
    wrk: Vec<Cost>,
    sharded: Vec<Cost>,
    wrk_missing: Option<String>,
}

async fn measure_path(args: &Args, path: CostPath) -> anyhow::Result<Measured> {
    let server = MinimalServer::start(path.server_delay()).await?;
    let url = format!("http://{}/", server.address);
    let duration = *args.duration;
    let mut measured = Measured {
        path,
        engine: Vec::new(),
        wrk: Vec::new(),
        sharded: Vec::new(),
        wrk_missing: None,
    };
    for round in 1..=args.rounds {
        // The order alternates, so neither generator always runs second
        // (after the other has warmed the server, or heated the machine).
        let wrk_first = round % 2 == 0;
        let mut wrk = None;
        if wrk_first {
            wrk = measured.measure_wrk(&url, args.connections, duration).await;
        }
        let engine =
            measure_engine(&url, args.connections, duration, None, &args.metrics_out).await?;
        if let Some(n) = args.shards {
            let sharded = measure_engine(&url, args.connections, duration, Some(n), &[]).await?;
            measured.sharded.push(sharded);
        }
        if !wrk_first {
            wrk = measured.measure_wrk(&url, args.connections, duration).await;
        }
        eprintln!(
            "{} path, round {round}/{}: ahsp-perf {:.3}{}",
            path.label(),
            args.rounds,
            engine.cpu_per_10k(),
            wrk.as_ref()
                .map(|w| format!(", wrk {:.3} CPU-s/10k req", w.cpu_per_10k()))
                .unwrap_or_default()
        );
        measured.engine.push(engine);
        measured.wrk.extend(wrk);
    }
    Ok(measured)
}

impl Measured {
    /// wrk's cost, or `None` (and why, once) when it cannot run.
    async fn measure_wrk(
        &mut self,
        url: &str,
        connections: u32,
        duration: Duration,
    ) -> Option<Cost> {
        if self.wrk_missing.is_some() {
            return None;
        }
        match measure_wrk(url, connections, duration).await {
            Ok(cost) => Some(cost),
            Err(error) => {
                self.wrk_missing = Some(error.to_string());
                None
            }
        }
    }

    /// Each round's ratio of the engine's CPU per request to wrk's.
    fn ratios(&self) -> Vec<f64> {
        self.engine
            .iter()
            .zip(&self.wrk)
            .map(|(engine, wrk)| engine.cpu_per_10k() / wrk.cpu_per_10k())
            .collect()
    }

    fn print(&self, args: &Args) {
        println!(
            "{} path ({}): {} connections, {} × {} rounds each, one core",
            self.path.label(),
            match self.path {
                CostPath::Fast => "answered at once".to_owned(),
                CostPath::Slow => format!(
                    "answered after {}",
                    humantime::format_duration(self.path.server_delay())
                ),
            },
            args.connections,
            args.duration,
            args.rounds
        );
        println!(
            "  {:<10} {:>12} {:>20} {:>10} {:>14} {:>14}",
            "generator", "requests", "CPU-s/10k (median)", "p99 ms", "peak RSS", "of it, anon"
        );
        print_row("ahsp-perf", &self.engine);
        if let Some(n) = args.shards {
            print_row(&format!("{n} shards"), &self.sharded);
            let ratios: Vec<f64> = self
                .engine
                .iter()
                .zip(&self.sharded)
                .map(|(one, sharded)| sharded.cpu_per_10k() / one.cpu_per_10k())
                .collect();
            println!(
                "  ratio {n} shards / one: {:.2}× median of {} rounds",
                median(ratios.clone()),
                ratios.len()
            );
        }
        if self.wrk.is_empty() {
            let why = self.wrk_missing.as_deref().unwrap_or_default();
            println!("  wrk: not measured ({why})");
            return;
        }
        print_row("wrk", &self.wrk);
        let ratios = self.ratios();
        let (low, high) = ratios
            .iter()
            .fold((f64::MAX, f64::MIN), |(l, h), r| (l.min(*r), h.max(*r)));
        println!(
            "  ratio ahsp-perf / wrk: {:.2}× median of {} pairs (range {low:.2}–{high:.2})",
            median(ratios.clone()),
            ratios.len()
        );
        // The tail beside wrk's, pair by pair: both saw the same server in
        // the same minute, so the ratio is what the engine adds or saves.
        let p99_ratios: Vec<f64> = self
            .engine
            .iter()
            .zip(&self.wrk)
            .map(|(engine, wrk)| engine.p99_ms / wrk.p99_ms)
            .collect();
        if let Some(p99) = RatioEstimate::of(&p99_ratios) {
            println!(
                "  p99 ahsp-perf / wrk: {:.2}× ({:.2}–{:.2}, one-sided 97.5 % over {} pairs)",
                p99.ratio, p99.low, p99.high, p99.pairs
            );
        }
    }

    /// Prints the judgement against the budget; the path's name when it is over.
    fn judge(&self, budget: &CostBudget) -> anyhow::Result<Option<&'static str>> {
        let profile = CostBudget::this_build_profile();
        let Some(limit) = budget.for_this_build(self.path) else {
            anyhow::bail!(
                "{} has no {profile}.{} budget",
                CostBudget::FILE,
                self.path.label()
            );
        };
        anyhow::ensure!(
            self.wrk_missing.is_none(),
            "--check measures the engine against wrk, which did not run: {}",
            self.wrk_missing.as_deref().unwrap_or_default()
        );
        let estimate = RatioEstimate::of(&self.ratios())
            .ok_or_else(|| anyhow::anyhow!("fewer than two pairs were measured"))?;
        let verdict = estimate.judge(limit);
        println!(
            "  budget ({profile} build): ≤ {limit:.2}× wrk; measured {:.2}× ({:.2}–{:.2}, one-sided 97.5 % over {} pairs): {}",
            estimate.ratio,
            estimate.low,
            estimate.high,
            estimate.pairs,
            verdict.label()
        );
        Ok(verdict.failed().then_some(self.path.label()))
    }
}

fn print_row(name: &str, costs: &[Cost]) {
    let requests: u64 = costs.iter().map(|c| c.requests).sum();
    let per_10k = median(costs.iter().map(Cost::cpu_per_10k).collect());
    let p99 = median(costs.iter().map(|c| c.p99_ms).collect());
    let peak = costs
        .iter()
        .map(|c| c.memory.peak_rss_mb)
        .fold(0.0, f64::max);
    let anon = costs
        .iter()
        .map(|c| c.memory.peak_anon_mb)
        .fold(0.0, f64::max);
    println!(
        "  {name:<10} {requests:>12} {per_10k:>20.3} {p99:>10.2} {peak:>11.1} MB {anon:>11.1} MB"
    );
}

fn median(mut values: Vec<f64>) -> f64 {
    values.retain(|v| !v.is_nan());
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
    p99_ms: f64,
    memory: MemoryPeaks,
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

/// A process's memory, in MB: its peak resident set (`VmHWM`), and the
/// anonymous part of its resident set now (`RssAnon`: what it allocated,
/// without the pages of its own code and libraries, which for the 20 MB of
/// code of this binary are most of the rest). Not `ru_maxrss`: Linux carries
/// that across `exec` from the parent's memory (cargo's, or this process's
/// when it spawns wrk), which would report the parent's peak.
fn memory_mb(pid: &str) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kilobytes: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kilobytes / 1024.0)
    };
    Some((field("VmHWM:")?, field("RssAnon:")?))
}

/// The highest readings of [`memory_mb`] taken every 100 ms.
#[derive(Default)]
struct MemoryPeaks {
    peak_rss_mb: f64,
    peak_anon_mb: f64,
}

impl MemoryPeaks {
    fn sample(&mut self, pid: &str) {
        if let Some((rss, anon)) = memory_mb(pid) {
            self.peak_rss_mb = self.peak_rss_mb.max(rss);
            self.peak_anon_mb = self.peak_anon_mb.max(anon);
        }
    }
}

const MEMORY_SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// The minimal server, in a process of its own on core 1, killed on drop.
struct MinimalServer {
    child: std::process::Child,
    address: SocketAddr,
}

impl MinimalServer {
    async fn start(delay: Duration) -> anyhow::Result<MinimalServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let exe = std::env::current_exe()?;
        let serve_args = [
            "bench-loadgen".to_owned(),
            "--serve-only".to_owned(),
            port.to_string(),
            "--serve-delay-ms".to_owned(),
            delay.as_millis().to_string(),
        ];
        let child = match std::process::Command::new("taskset")
            .args(["-c", "1"])
            .arg(&exe)
            .args(&serve_args)
            .spawn()
        {
            Ok(child) => child,
            Err(_) => std::process::Command::new(&exe).args(&serve_args).spawn()?,
        };
        let server = MinimalServer {
            child,
            address: ([127, 0, 0, 1], port).into(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(server.address)
            .await
            .is_err()
        {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the minimal server did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(server)
    }
}

impl Drop for MinimalServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The engine's cost at `connections` users; with `shards`, the same total
/// split into that many shards running together in this process (each
/// keeping its seconds for a merge).
async fn measure_engine(
    url: &str,
    connections: u32,
    duration: Duration,
    shards: Option<u32>,
    metrics_out: &[String],
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
            metrics_out: metrics_out.to_vec(),
            ..PlanOptions::default()
        };
        let plan = Plan::from_source(&suite, "bench-loadgen", &options)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let live = harness::live::Live::start(
            &plan.metrics_out,
            &harness::live::RunLabels {
                suite: plan.name.clone(),
                run_id: "bench-loadgen".to_owned(),
                shard: None,
                labels: Default::default(),
            },
            None,
        )
        .await?;
        let feed = live.as_ref().map(|live| {
            live.feed(
                &plan.name,
                url,
                &plan.endpoints,
                &plan.thresholds,
                plan.load.warm_up,
                plan.load.executor.duration(),
            )
        });
        let hook = harness::live::each_second(None, feed, tokio::sync::watch::channel(None).1);
        let input = EngineInput {
            plan: Arc::new(plan),
            base_url: url.into(),
            users: Vec::new(),
            global: Arc::default(),
            seed: 1,
            custom_tasks: Default::default(),
        };
        runs.spawn(async move {
            let output = engine::run(input, None, hook).await?;
            if let Some(live) = live {
                let exports = live
                    .finish(harness::live::Last {
                        summary: &output.summary,
                        probes: &Default::default(),
                        thresholds: &[],
                    })
                    .await;
                for export in exports.iter().filter_map(|e| e.line()) {
                    eprintln!("{export}");
                }
            }
            anyhow::Ok(output)
        });
    }
    let mut requests = 0;
    let mut p99_ms = f64::NAN;
    let mut memory = MemoryPeaks::default();
    let mut sampling = tokio::time::interval(MEMORY_SAMPLE_EVERY);
    loop {
        let output = tokio::select! {
            output = runs.join_next() => match output {
                Some(output) => output??,
                None => break,
            },
            _ = sampling.tick() => {
                memory.sample("self");
                continue;
            }
        };
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
        p99_ms = output.summary.total.latency_ms.p99;
    }
    let after = cpu_seconds(UsageWho::RUSAGE_SELF)?;
    Ok(Cost {
        requests,
        cpu_seconds: after - before,
        p99_ms,
        memory,
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
            "--latency",
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
    let mut memory = MemoryPeaks::default();
    let output = {
        let wait = child.wait_with_output();
        tokio::pin!(wait);
        loop {
            tokio::select! {
                output = &mut wait => break output?,
                _ = tokio::time::sleep(MEMORY_SAMPLE_EVERY) => memory.sample(&pid),
            }
        }
    };
    anyhow::ensure!(
        output.status.success(),
        "wrk is not installed or failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let after = cpu_seconds(UsageWho::RUSAGE_CHILDREN)?;
    Ok(Cost {
        requests: wrk_requests(&text)?,
        cpu_seconds: after - before,
        p99_ms: wrk_p99_ms(&text).unwrap_or(f64::NAN),
        memory,
    })
}

/// "  123456 requests in 10.00s, …"
fn wrk_requests(text: &str) -> anyhow::Result<u64> {
    text.lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("cannot read wrk's output: {text}"))
}

/// "     99%    1.27ms" in wrk's `--latency` distribution.
fn wrk_p99_ms(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.trim_start().starts_with("99%"))?;
    let value = line.split_whitespace().nth(1)?;
    let (number, scale) = if let Some(n) = value.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = value.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = value.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return None;
    };
    number.parse::<f64>().ok().map(|n| n * scale)
}

/// A server that answers every request with a short 200, as cheaply as
/// hyper can, after `delay` when it is not zero.
async fn serve_minimal(port: u16, delay: Duration) -> anyhow::Result<()> {
    use http_body_util::Full;
    use hyper::service::service_fn;
    engine::raise_open_file_limit();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = service_fn(|_request| async move {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_output_is_read() {
        let text = "Running 2s test @ http://127.0.0.1:1/\n  Latency Distribution\n     50%  200.00us\n     99%    1.27ms\n  123456 requests in 2.00s, 10.00MB read\n";
        assert_eq!(wrk_requests(text).unwrap(), 123_456);
        assert_eq!(wrk_p99_ms(text), Some(1.27));
        assert_eq!(wrk_p99_ms("     99%  850.00us\n"), Some(0.85));
        assert!(wrk_requests("nothing").is_err());
    }
}
