//! The second phase: the load, with the probes sampling once a second and
//! every service's log captured beside it; the target is stopped when the
//! load ends, whatever its outcome.

use std::path::Path;
use std::time::{Duration, Instant};

use super::target::RunningTarget;
use crate::engine::stop::StopSignal;
use crate::engine::{self, EngineInput, EngineOutput, LiveStatus};
use crate::infra::Stack;
use crate::infra::interrupt::InterruptListener;
use crate::metrics::RunSummary;
use crate::metrics::summary::{FaultWindow, RunHeader};
use crate::probe::ProbeReport;
use crate::probe::logs::{LogCapture, LogSource, SignatureHit};
use crate::probe::{ProbeTargets, Sampler};
use crate::report::Reporter as _;
use crate::report::progress::ProgressReporter;
use crate::suite::plan::Plan;
use crate::verdict;

/// What the load and its watchers saw.
#[derive(Debug)]
pub(super) struct Measured {
    pub output: EngineOutput,
    pub probes: ProbeReport,
    pub log_signatures: Vec<SignatureHit>,
    /// Interrupts received while the load ran (1: stopped gracefully, 2:
    /// the graceful stop skipped).
    pub interrupts: u32,
    /// Each fault's window, as it happened.
    pub faults: Vec<FaultWindow>,
    /// A capacity search's steps, judged as they ended.
    pub capacity: Option<crate::capacity::Searched>,
    /// What each receiver of the live series got.
    pub exports: Vec<crate::report::ExportReport>,
}

/// Where the run writes, and the secrets every line it writes is masked of
/// as it is written (service logs are captured line by line).
pub(super) struct Folder<'a> {
    pub dir: &'a Path,
    pub redactor: std::sync::Arc<crate::redact::Redactor>,
}

/// Who watches the run while it runs.
pub(super) struct Watchers {
    /// The progress line on the terminal.
    pub progress: bool,
    /// The run's name on its live series (`--run-id`, or the folder's name).
    pub run_id: String,
    /// Where the live page is served (`--live`).
    pub page: Option<std::net::SocketAddr>,
}

pub(super) async fn measure(
    plan: &Plan,
    target: RunningTarget,
    input: EngineInput,
    stack: Option<&Stack>,
    folder: Folder<'_>,
    watchers: Watchers,
    interrupts: &mut InterruptListener,
) -> anyhow::Result<Measured> {
    let Folder { dir, redactor } = folder;
    let Watchers {
        progress,
        run_id,
        page,
    } = watchers;
    // Of a sharded run, one shard watches the stack: probes once, not N times.
    let stack = stack.filter(|_| plan.shard.is_none_or(|s| s.shard.owns_probes()));
    let mut processes = match stack {
        Some(stack) => stack.processes().await,
        None => Vec::new(),
    };
    if let Some(pid) = target.pid {
        processes.push(("app".to_owned(), pid));
    }
    // The browsers' chromedriver, whose process group holds every Chromium:
    // the probes measure what the browsers cost the machine.
    let driver = if plan.browsers.is_empty() {
        None
    } else {
        Some(crate::browser::driver::Driver::start().await?)
    };
    if let Some(driver) = &driver {
        processes.push(("browser".to_owned(), driver.pid));
    }
    // Built only for a suite with browsers: it clones the user pool.
    let browser_input = driver.as_ref().map(|_| browser_input(plan, &input, dir));
    let mut sources = stack.map(Stack::log_sources).unwrap_or_default();
    sources.extend(
        target
            .log_files(dir)
            .into_iter()
            .map(|(name, path)| (name, LogSource::file(path))),
    );
    let logs = LogCapture::start(sources, dir, Instant::now(), redactor.clone())?;
    let sampler = Sampler::start(
        ProbeTargets {
            urls: stack.map(|s| s.urls().clone()),
            processes,
        },
        Instant::now(),
    );

    let (live_sender, mut live_receiver) = tokio::sync::watch::channel(LiveStatus::default());
    let progress_task = progress.then(|| {
        let label = plan.name.clone();
        tokio::spawn(async move {
            let mut progress = ProgressReporter::new(&label);
            while live_receiver.changed().await.is_ok() {
                let status = live_receiver.borrow().clone();
                progress.progress(&status);
            }
            progress.clear();
        })
    });
    let stop = StopSignal::default();
    forward_interrupts(interrupts.count(), &stop);
    let faults_stop = StopSignal::default();
    let (browsers_stop, browsers_stopped) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let browser_watch = browser_input.as_ref().map(|input| input.watch(started));
    let browsers = async {
        match (&driver, browser_input, &browser_watch) {
            (Some(driver), Some(input), Some(watch)) => {
                Some(crate::browser::driver::run(driver, input, watch, browsers_stopped).await)
            }
            _ => None,
        }
    };
    // A capacity search steers the load once a second instead of judging
    // abort-on-fail thresholds on the whole run.
    let searched = plan.capacity.as_ref().map(|_| Default::default());
    let (live, feed) = start_live(plan, run_id, page, &input).await?;
    let feed = feed.map(|feed| feed.with_browsers(browser_watch.clone()));
    let each_second =
        crate::live::each_second(each_second(plan, searched.as_ref()), feed, sampler.latest());
    let load = async {
        let engine = engine::run_until(input, Some(live_sender), each_second, stop.clone());
        tokio::pin!(engine);
        let result = loop {
            tokio::select! {
                result = &mut engine => break result,
                count = interrupts.changed() => forward_interrupts(count, &stop),
            }
        };
        // A load that ended early (abort, interrupt) ends its faults too.
        faults_stop.stop_now();
        let _ = browsers_stop.send(true);
        result
    };
    let scope = super::faults::FaultScope {
        stack,
        target_pid: target.pid,
        paths: &target.paths,
    };
    let (result, faults, browsers) = tokio::join!(
        load,
        super::faults::inject(scope, &plan.faults, Instant::now(), &faults_stop),
        browsers
    );
    if let Some(driver) = driver {
        driver.stop().await;
    }
    let mut result = result;
    if let Ok(output) = result.as_mut() {
        output.summary.browser = browsers;
    }
    if let Some(task) = progress_task {
        let _ = task.await;
    }
    let probes = sampler.stop().await;
    target.stop().await;
    let log_files = logs.stop().await;
    let output = result?;
    let exports = match live {
        Some(live) => finish_live(live, plan, &output.summary, &probes).await,
        None => Vec::new(),
    };
    Ok(Measured {
        output,
        probes,
        log_signatures: crate::probe::logs::scan(&log_files),
        interrupts: interrupts.count(),
        faults,
        capacity: searched.map(
            |searched: std::sync::Arc<std::sync::Mutex<crate::capacity::Searched>>| {
                std::mem::take(&mut *searched.lock().expect("not poisoned"))
            },
        ),
        exports,
    })
}

fn browser_input(
    plan: &Plan,
    input: &EngineInput,
    dir: &Path,
) -> crate::browser::driver::BrowserInput {
    crate::browser::driver::BrowserInput {
        plans: plan.browsers.clone(),
        base_url: input.base_url.clone(),
        auth: plan.auth.clone(),
        users: input.users.clone(),
        global: input.global.clone(),
        seed: input.seed,
        dir: dir.to_path_buf(),
        warm_up: plan.load.warm_up,
    }
}

/// The live series' senders and the live page, when the run has any, and
/// the feed the engine's hook pushes into.
async fn start_live(
    plan: &Plan,
    run_id: String,
    page: Option<std::net::SocketAddr>,
    input: &EngineInput,
) -> anyhow::Result<(Option<crate::live::Live>, Option<crate::live::Feed>)> {
    let Some(live) =
        crate::live::Live::start(&plan.metrics_out, &run_labels(plan, run_id), page).await?
    else {
        return Ok((None, None));
    };
    if let Some(url) = live.page_url() {
        eprintln!("live: {url}");
    }
    let feed = live.feed(
        &plan.name,
        &input.base_url.to_string(),
        &plan.endpoints,
        &plan.thresholds,
        plan.load.warm_up,
        plan.load.executor.duration(),
    );
    Ok((Some(live), Some(feed)))
}

/// The run's own figures sent last to what watched it; what each receiver got.
async fn finish_live(
    live: crate::live::Live,
    plan: &Plan,
    summary: &RunSummary,
    probes: &ProbeReport,
) -> Vec<crate::report::ExportReport> {
    let thresholds = verdict::evaluate(summary, &plan.thresholds);
    live.finish(crate::live::Last {
        summary,
        probes,
        thresholds: &thresholds,
    })
    .await
}

/// Who the live series belong to.
fn run_labels(plan: &Plan, run_id: String) -> crate::live::RunLabels {
    crate::live::RunLabels {
        suite: plan.name.clone(),
        run_id,
        shard: plan.shard.map(|s| s.shard.to_string()),
        labels: plan.metrics_out.labels.clone(),
    }
}

/// What the engine calls once a second: a capacity search's controller
/// (into `searched`), or the abort-on-fail thresholds.
fn each_second(
    plan: &Plan,
    searched: Option<&std::sync::Arc<std::sync::Mutex<crate::capacity::Searched>>>,
) -> Option<engine::AbortCheck> {
    match (&plan.capacity, searched) {
        (Some(capacity), Some(searched)) => {
            let mut controller = crate::capacity::Controller::start(
                capacity,
                &plan.thresholds,
                &plan.endpoints,
                std::sync::Arc::clone(searched),
            );
            Some(Box::new(
                move |aggregator: &crate::metrics::Aggregator, elapsed| {
                    controller.second(aggregator, elapsed)
                },
            ))
        }
        _ => abort_check(plan),
    }
}

/// The first interrupt stops the load gracefully, the second at once.
fn forward_interrupts(count: u32, stop: &StopSignal) {
    match count {
        0 => {}
        1 => stop.stop_gracefully(),
        _ => stop.stop_now(),
    }
}

/// Judges the `abort-on-fail` thresholds while the load runs.
fn abort_check(plan: &Plan) -> Option<engine::AbortCheck> {
    let thresholds: Vec<_> = plan
        .thresholds
        .iter()
        .filter(|t| t.abort_on_fail)
        .cloned()
        .collect();
    if thresholds.is_empty() {
        return None;
    }
    let endpoints = plan.endpoints.clone();
    let warm_up = plan.load.warm_up;
    Some(Box::new(move |aggregator, elapsed| {
        // Judge only with some measured data behind the verdict.
        if elapsed < warm_up + Duration::from_secs(5) {
            return false;
        }
        let header = RunHeader {
            warm_up_seconds: warm_up.as_secs_f64(),
            measured_seconds: (elapsed - warm_up).as_secs_f64(),
            ..RunHeader::default()
        };
        let summary = RunSummary::build(
            header,
            &endpoints,
            aggregator.warm_up(),
            aggregator.measured(),
            Vec::new(),
        );
        verdict::evaluate(&summary, &thresholds)
            .iter()
            .any(|r| !r.passed && r.observed.is_some())
    }))
}
