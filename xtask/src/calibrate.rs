//! `cargo xtask gate-calibration`: how often the gate cries wolf, and how
//! often it catches a real regression, measured on this machine against the
//! reference service in its `noisy` mode (the CPU-bound Django original's
//! run-to-run spread), or against `examples/django-ahsp` (`--app
//! django-ahsp`), slowed by its own `AHSP_EXAMPLE_SLOWDOWN`.
//!
//! Modes (each pair is one comparison, its runs used by no other pair):
//! - `interleaved`: A/A, both arms `reference+noisy`, `--runs` each, interleaved.
//! - `busy-baseline`: a baseline of `--runs` quiet runs saved once, then one
//!   candidate run per pair with a CPU-bound neighbour beside it.
//! - `detect-20`, `detect-50`: A/B interleaved, B slowed 20 % or 50 % on
//!   rekap-rab (`slowdown=rekap-rab:P%`).
//!
//! It prints, per mode, the false alarms per endpoint metric (WORSE on a
//! figure nothing changed), the pairs with any false alarm, and for the
//! detection modes how often rekap-rab's p50, p95 and p99 were WORSE, and
//! how often its p95 was caught when the row's stated resolution was
//! finer than the change; the figures go to
//! `target/perf/calibration/calibration-APP-MODES.json`. With
//! `--until-decided BUDGET` every comparison adds runs until decided.
//! Every comparison is also appended to a ledger as soon as it is judged
//! (`--ledger`, `benches/calibration.jsonl` by default, committed);
//! `--summary` totals the ledger into the README's table.

mod ledger;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use harness::baseline::{Comparison, Metric, Row, Verdict};
use harness::run::SetOutcome;
use harness::run::set::Arm;
use harness::run::{RunOptions, SetOptions, run_set};
use serde::{Deserialize, Serialize};
use suites::ahsp::{Ahsp, EmbeddedCommand};

use crate::project_root;

const SLOWED: &str = "GET /detail_project/[id]/rekap-rab/";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Comparisons per mode (the goal is judged over at least 20).
    #[arg(long, default_value_t = 20)]
    pairs: usize,
    /// Runs per side of each comparison (and in the saved baseline).
    #[arg(long, default_value_t = 2)]
    runs: usize,
    /// Modes to run (comma-separated): interleaved, busy-baseline, detect-20, detect-50.
    #[arg(long, value_delimiter = ',', default_values_t = ["interleaved".to_owned(), "busy-baseline".to_owned(), "detect-20".to_owned(), "detect-50".to_owned()])]
    modes: Vec<String>,
    /// Leave the reference service quiet (without the `noisy` switch).
    #[arg(long)]
    quiet_service: bool,
    /// The suite the runs use.
    #[arg(long)]
    suite: Option<PathBuf>,
    /// The application: `reference` (the embedded service) or
    /// `django-ahsp` (examples/django-ahsp, after `cargo xtask examples`).
    #[arg(long, default_value = "reference", value_parser = ["reference", "django-ahsp"])]
    app: String,
    /// The suites' profile (e.g. ci, for shorter runs).
    #[arg(long)]
    profile: Option<String>,
    /// Add runs to each comparison until every gated figure is decided, or
    /// this budget is spent.
    #[arg(long, value_name = "BUDGET", value_parser = humantime::parse_duration)]
    until_decided: Option<std::time::Duration>,
    /// The ledger each comparison is appended to as soon as it is judged
    /// (relative to the project root).
    #[arg(long, default_value = "benches/calibration.jsonl")]
    ledger: PathBuf,
    /// Run nothing: total the ledger per setting and print the table.
    #[arg(long)]
    summary: bool,
    /// Count the ledger's comparisons of the same setting towards
    /// `--pairs` and run only the ones missing: the same command, run
    /// again after an interruption or in another session, carries on.
    #[arg(long)]
    top_up: bool,
}

/// What one mode measured. A figure missing from a ledger line (written
/// before the figure was counted) reads as zero.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct ModeFigures {
    pairs: usize,
    /// Rows judged (not "not enough data") on figures nothing changed.
    judged: usize,
    false_alarms: usize,
    /// Pairs with at least one false alarm.
    pairs_with_false_alarm: usize,
    /// Rows the machine check held back ("machine differs").
    machine_differs: usize,
    /// Rows beyond the threshold the runs could not confirm ("unclear").
    unclear: usize,
    /// Detection modes: pairs where the slowed endpoint's p95 / p50 / p99 was WORSE.
    detected_p95: usize,
    detected_p50: usize,
    detected_p99: usize,
    /// Pairs where the slowed endpoint's p95 could be judged at all.
    judged_p95: usize,
    /// Pairs where the slowed endpoint's p95 stated a resolution finer
    /// than the change made, and of those, the pairs that caught it.
    p95_within_resolution: usize,
    p95_caught_within_resolution: usize,
    /// The same for p99.
    p99_within_resolution: usize,
    p99_caught_within_resolution: usize,
    /// Runs a side the comparisons used, all pairs together.
    runs_per_side: usize,
    /// False alarms by `endpoint metric`.
    by_figure: BTreeMap<String, usize>,
}

#[derive(Debug, Serialize)]
struct Calibration {
    confidence: f64,
    relative: f64,
    runs_per_side: usize,
    app: String,
    until_decided: Option<String>,
    noisy: bool,
    modes: BTreeMap<String, ModeFigures>,
}

impl ModeFigures {
    /// Adds another tally of the same setting to this one.
    fn add(&mut self, other: &ModeFigures) {
        self.pairs += other.pairs;
        self.judged += other.judged;
        self.false_alarms += other.false_alarms;
        self.pairs_with_false_alarm += other.pairs_with_false_alarm;
        self.machine_differs += other.machine_differs;
        self.unclear += other.unclear;
        self.detected_p95 += other.detected_p95;
        self.detected_p50 += other.detected_p50;
        self.detected_p99 += other.detected_p99;
        self.judged_p95 += other.judged_p95;
        self.p95_within_resolution += other.p95_within_resolution;
        self.p95_caught_within_resolution += other.p95_caught_within_resolution;
        self.p99_within_resolution += other.p99_within_resolution;
        self.p99_caught_within_resolution += other.p99_caught_within_resolution;
        self.runs_per_side += other.runs_per_side;
        for (figure, count) in &other.by_figure {
            *self.by_figure.entry(figure.clone()).or_default() += count;
        }
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let ledger_path = project_root().join(&args.ledger);
    if args.summary {
        return ledger::print_summary(&ledger_path);
    }
    let root = project_root().join("target/perf/calibration");
    let django = args.app == "django-ahsp";
    let suite = args.suite.clone().unwrap_or_else(|| {
        project_root().join(if django {
            "examples/django-ahsp/suite.toml"
        } else {
            "suites/calibration/gate.toml"
        })
    });
    let domain = Ahsp {
        embedded: EmbeddedCommand {
            program: std::env::current_exe()?,
            args: vec!["serve".into(), "--listen".into(), "127.0.0.1:0".into()],
        },
    };
    let noisy = if args.quiet_service { "" } else { "+noisy" };
    let serve = project_root().join("examples/django-ahsp/serve");
    let reference: Arm = if django {
        Arm::Command(vec![serve.display().to_string()])
    } else {
        format!("reference{noisy}")
            .parse()
            .map_err(anyhow::Error::msg)?
    };
    // The same application with rekap-rab `percent` % slower.
    let slowed_arm = |percent: u32| -> anyhow::Result<Arm> {
        Ok(if django {
            Arm::Command(vec![
                "env".into(),
                format!("AHSP_EXAMPLE_SLOWDOWN={percent}"),
                serve.display().to_string(),
            ])
        } else {
            format!("{reference}+slowdown=rekap-rab:{percent}%")
                .parse()
                .map_err(anyhow::Error::msg)?
        })
    };
    let mut base = SetOptions::new(RunOptions::quiet(root.join("runs")), root.join("baselines"));
    base.run.profile = args.profile.clone();
    base.gate.until_decided = args.until_decided;
    let mut calibration = Calibration {
        confidence: base.gate.settings.confidence,
        relative: base.gate.settings.relative,
        runs_per_side: args.runs,
        app: args.app.clone(),
        until_decided: args
            .until_decided
            .map(|budget| humantime::format_duration(budget).to_string()),
        noisy: !args.quiet_service && !django,
        modes: BTreeMap::new(),
    };
    for mode in &args.modes {
        let mut figures = ModeFigures::default();
        let slowed = match mode.as_str() {
            "detect-20" => Some(20),
            "detect-50" => Some(50),
            "interleaved" | "busy-baseline" => None,
            other => anyhow::bail!(
                "unknown mode `{other}` (interleaved, busy-baseline, detect-20, detect-50)"
            ),
        };
        let setting = setting_of(&args, &calibration, mode);
        let pairs = pairs_to_run(&args, &setting, &ledger_path)?;
        if pairs == 0 {
            continue;
        }
        if mode == "busy-baseline" {
            let _ = std::fs::remove_dir_all(root.join("baselines"));
            let mut saving = SetOptions {
                repeat: args.runs,
                ..arm_options(&base, &reference)
            };
            saving.gate.save_baseline = Some("calibration".into());
            check_ran(&run_set(&domain, std::slice::from_ref(&suite), &saving).await?)?;
        }
        for pair in 0..pairs {
            eprintln!("{mode}: pair {} of {pairs}", pair + 1);
            let outcome = match slowed {
                None if mode == "busy-baseline" => {
                    let _neighbour = Neighbour::start()?;
                    let mut gated = arm_options(&base, &reference);
                    gated.gate.baseline = Some("calibration".into());
                    run_set(&domain, std::slice::from_ref(&suite), &gated).await?
                }
                _ => {
                    let b = match slowed {
                        Some(percent) => slowed_arm(percent)?,
                        None => reference.clone(),
                    };
                    let ab = SetOptions {
                        ab: Some((reference.clone(), b)),
                        repeat: args.runs,
                        ..base.clone()
                    };
                    run_set(&domain, std::slice::from_ref(&suite), &ab).await?
                }
            };
            check_ran(&outcome)?;
            let mut this = ModeFigures::default();
            for (_, comparison) in &outcome.comparisons {
                tally(&mut this, comparison, slowed);
            }
            figures.add(&this);
            let rows = notable_rows(&outcome, slowed.is_some());
            ledger::append(
                &ledger_path,
                &ledger::Entry::now(setting.clone(), this, rows),
            )?;
        }
        print_mode(mode, &figures, slowed.is_some());
        calibration.modes.insert(mode.clone(), figures);
    }
    if calibration.modes.is_empty() {
        eprintln!("the ledger has every pair asked for: nothing to run (`--summary` totals it)");
        return Ok(());
    }
    std::fs::create_dir_all(&root)?;
    let path = root.join(format!(
        "calibration-{}-{}.json",
        args.app,
        args.modes.join("-")
    ));
    std::fs::write(&path, serde_json::to_vec_pretty(&calibration)?)?;
    eprintln!(
        "{}: confidence {:.0} % one-sided, relative threshold {:.0} %, {} run(s) a side{}, service {}: {}",
        args.app,
        calibration.confidence * 100.0,
        calibration.relative * 100.0,
        args.runs,
        calibration
            .until_decided
            .as_ref()
            .map(|budget| format!(" then until decided within {budget}"))
            .unwrap_or_default(),
        if calibration.noisy { "noisy" } else { "quiet" },
        path.display()
    );
    Ok(())
}

/// The rows a ledger line keeps whole: the slowed endpoint's quantiles and
/// every WORSE.
fn notable_rows(outcome: &SetOutcome, detecting: bool) -> Vec<Row> {
    outcome
        .comparisons
        .iter()
        .flat_map(|(_, comparison)| &comparison.rows)
        .filter(|row| {
            let slowed_quantile = detecting
                && row.endpoint == SLOWED
                && matches!(row.metric, Metric::P50 | Metric::P95 | Metric::P99);
            slowed_quantile || row.verdict == Verdict::Worse
        })
        .cloned()
        .collect()
}

/// What a ledger line of this mode is run with.
fn setting_of(args: &Args, calibration: &Calibration, mode: &str) -> ledger::Setting {
    ledger::Setting {
        app: args.app.clone(),
        noisy: calibration.noisy,
        profile: args.profile.clone(),
        mode: mode.to_owned(),
        runs: args.runs,
        until_decided: calibration.until_decided.clone(),
        confidence_permille: (calibration.confidence * 1000.0).round() as u32,
        relative_permille: (calibration.relative * 1000.0).round() as u32,
    }
}

/// `--pairs`, less those the ledger already has of this setting with `--top-up`.
fn pairs_to_run(args: &Args, setting: &ledger::Setting, ledger: &Path) -> anyhow::Result<usize> {
    if !args.top_up || !ledger.exists() {
        return Ok(args.pairs);
    }
    let done = ledger::read(ledger)?
        .get(setting)
        .map_or(0, |total| total.figures.pairs);
    eprintln!(
        "{}: the ledger has {done} of {} pair(s)",
        setting.mode, args.pairs
    );
    Ok(args.pairs.saturating_sub(done))
}

fn arm_options(base: &SetOptions, arm: &Arm) -> SetOptions {
    SetOptions {
        run: arm.apply(&base.run),
        ..base.clone()
    }
}

fn check_ran(outcome: &SetOutcome) -> anyhow::Result<()> {
    if let Some((path, why)) = outcome.broken.first() {
        anyhow::bail!("{}: {why}", path.display());
    }
    if let Some(signal) = outcome.interrupted_by {
        anyhow::bail!("interrupted by signal {signal}");
    }
    Ok(())
}

fn tally(figures: &mut ModeFigures, comparison: &Comparison, slowed_by: Option<u32>) {
    let detecting = slowed_by.is_some();
    figures.pairs += 1;
    figures.runs_per_side += comparison.rows.first().map_or(0, |row| row.current.runs);
    let mut alarmed = false;
    for row in &comparison.rows {
        let slowed = detecting && row.endpoint == SLOWED;
        if slowed {
            // Throughput and the other figures of the slowed endpoint did change.
            match (row.metric, row.verdict) {
                (Metric::P95, Verdict::Worse) => figures.detected_p95 += 1,
                (Metric::P50, Verdict::Worse) => figures.detected_p50 += 1,
                (Metric::P99, Verdict::Worse) => figures.detected_p99 += 1,
                _ => {}
            }
            if row.metric == Metric::P95 && row.verdict != Verdict::NotEnoughData {
                figures.judged_p95 += 1;
            }
            let change = f64::from(slowed_by.unwrap_or(0)) / 100.0;
            let caught = usize::from(row.verdict == Verdict::Worse);
            if row.resolution.is_some_and(|r| r < change) {
                match row.metric {
                    Metric::P95 => {
                        figures.p95_within_resolution += 1;
                        figures.p95_caught_within_resolution += caught;
                    }
                    Metric::P99 => {
                        figures.p99_within_resolution += 1;
                        figures.p99_caught_within_resolution += caught;
                    }
                    _ => {}
                }
            }
            continue;
        }
        // In a closed model a slower endpoint lowers everyone's throughput:
        // with a regression injected, throughput is not a false alarm.
        if detecting && row.metric == Metric::Throughput {
            continue;
        }
        match row.verdict {
            Verdict::NotEnoughData => continue,
            Verdict::MachineDiffers => figures.machine_differs += 1,
            Verdict::Unclear => figures.unclear += 1,
            Verdict::Worse => {
                figures.false_alarms += 1;
                alarmed = true;
                *figures
                    .by_figure
                    .entry(format!("{} {}", row.endpoint, row.metric.label()))
                    .or_default() += 1;
            }
            Verdict::Same | Verdict::Better => {}
        }
        figures.judged += 1;
    }
    if alarmed {
        figures.pairs_with_false_alarm += 1;
    }
}

fn print_mode(mode: &str, figures: &ModeFigures, detecting: bool) {
    let rate = |n: usize, of: usize| {
        if of == 0 {
            "n/a".to_owned()
        } else {
            format!("{:.1} %", n as f64 / of as f64 * 100.0)
        }
    };
    eprintln!(
        "{mode}: {} pair(s); false alarms {} of {} judged figures ({}), pairs with a false alarm {} ({}); machine differs {}; unclear {}",
        figures.pairs,
        figures.false_alarms,
        figures.judged,
        rate(figures.false_alarms, figures.judged),
        figures.pairs_with_false_alarm,
        rate(figures.pairs_with_false_alarm, figures.pairs),
        figures.machine_differs,
        figures.unclear,
    );
    if detecting {
        eprintln!(
            "{mode}: rekap-rab p95 WORSE in {} of {} pairs ({}; judged in {}), p99 WORSE in {} ({}), p50 WORSE in {} ({}); p95 caught in {} of the {} pairs whose stated resolution was finer than the change ({}), p99 in {} of {} ({})",
            figures.detected_p95,
            figures.pairs,
            rate(figures.detected_p95, figures.pairs),
            figures.judged_p95,
            figures.detected_p99,
            rate(figures.detected_p99, figures.pairs),
            figures.detected_p50,
            rate(figures.detected_p50, figures.pairs),
            figures.p95_caught_within_resolution,
            figures.p95_within_resolution,
            rate(
                figures.p95_caught_within_resolution,
                figures.p95_within_resolution
            ),
            figures.p99_caught_within_resolution,
            figures.p99_within_resolution,
            rate(
                figures.p99_caught_within_resolution,
                figures.p99_within_resolution
            ),
        );
    }
    eprintln!(
        "{mode}: {:.1} run(s) a side on average",
        figures.runs_per_side as f64 / figures.pairs.max(1) as f64
    );
    for (figure, count) in &figures.by_figure {
        eprintln!("  false alarm: {figure} ×{count}");
    }
}

/// A CPU-bound neighbour beside the runs: one core's worth of spinning, on
/// a thread of this process (so it cannot outlive the calibration), stopped
/// when dropped.
struct Neighbour {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Neighbour {
    fn start() -> anyhow::Result<Neighbour> {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("neighbour".into())
            .spawn(move || {
                let mut x = 0u64;
                // Relaxed: only the flag's eventual value matters.
                while !flag.load(Ordering::Relaxed) {
                    for i in 0..100_000u64 {
                        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
                    }
                }
            })?;
        Ok(Neighbour {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Neighbour {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
