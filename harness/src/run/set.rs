//! A set of suites, as `cargo xtask perf` runs them: each suite run (once,
//! `--repeat N` times, or as an interleaved A/B pair) and, with a baseline,
//! gated; their figures saved as a baseline when asked; the outcome of the
//! whole mapped to one exit code.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::gate::{Against, FIGURES_FILE, Gate, GateOptions, GateOutcome};
use super::outcome::SetOutcome;
use super::{Domain, RunError, RunOptions, SuiteRun, run_suite};
use crate::baseline::{CapacityFigures, Comparison, Fingerprint, RunFigures};

/// Choices for a set of suites.
#[derive(Debug, Clone)]
pub struct SetOptions {
    pub run: RunOptions,
    /// The baseline each suite is judged against or saved into.
    pub gate: GateOptions,
    /// How many times each suite runs (each side, with `ab`).
    pub repeat: usize,
    /// Judge arm B against arm A, run interleaved on this machine.
    pub ab: Option<(Arm, Arm)>,
}

impl SetOptions {
    pub fn new(run: RunOptions, baseline_dir: PathBuf) -> SetOptions {
        SetOptions {
            run,
            gate: GateOptions::new(baseline_dir),
            repeat: 1,
            ab: None,
        }
    }
}

/// One side of an A/B comparison: the target it runs against.
#[derive(Debug, Clone, PartialEq)]
pub enum Arm {
    /// An application someone else runs.
    Url(crate::secret::SecretUrl),
    /// The embedded reference service, with these pathology switches.
    Reference { switches: Vec<String> },
    /// A command that starts the application (as a suite's `target.command`).
    Command(Vec<String>),
}

impl std::str::FromStr for Arm {
    type Err = String;

    /// `http://…`, `reference`, `reference+SWITCH+SWITCH…`, or a command line.
    fn from_str(text: &str) -> Result<Arm, String> {
        let text = text.trim();
        if text.starts_with("http://") || text.starts_with("https://") {
            Ok(Arm::Url(text.into()))
        } else if text == "reference" {
            Ok(Arm::Reference {
                switches: Vec::new(),
            })
        } else if let Some(switches) = text.strip_prefix("reference+") {
            Ok(Arm::Reference {
                switches: switches.split('+').map(str::to_owned).collect(),
            })
        } else {
            let words = shell_words::split(text)
                .map_err(|e| format!("`{text}` is not a command line: {e}"))?;
            if words.is_empty() {
                return Err(
                    "an arm is a URL, `reference[+SWITCH…]` or a command that starts the app"
                        .to_owned(),
                );
            }
            Ok(Arm::Command(words))
        }
    }
}

impl std::fmt::Display for Arm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Arm::Url(url) => write!(f, "{url}"),
            Arm::Reference { switches } if switches.is_empty() => write!(f, "reference"),
            Arm::Reference { switches } => write!(f, "reference+{}", switches.join("+")),
            Arm::Command(words) => write!(f, "{}", shell_words::join(words)),
        }
    }
}

impl Arm {
    /// The run options of this arm.
    pub fn apply(&self, run: &RunOptions) -> RunOptions {
        let mut run = run.clone();
        match self {
            Arm::Url(url) => {
                run.target_url = Some(url.clone());
                run.target_command.clear();
            }
            Arm::Reference { switches } => {
                run.target_url = None;
                run.target_command.clear();
                run.switches.extend(switches.iter().cloned());
            }
            Arm::Command(words) => {
                run.target_url = None;
                run.target_command = words.clone();
            }
        }
        run
    }
}

/// One suite's runs: what the gate and a saved baseline need.
struct SuiteRuns {
    suite: String,
    /// Arm A's runs with `ab`; otherwise every run.
    first: Vec<RunFigures>,
    /// Arm B's runs with `ab`.
    second: Vec<RunFigures>,
    /// The last run's folder, where the gate's table goes.
    last_dir: PathBuf,
    failed: bool,
    /// The figures the suite asks the gate to judge.
    gate: Option<Vec<crate::baseline::Metric>>,
    /// With `--until-decided`: the confidence of the last look, and what
    /// the looks were.
    sequential: Option<(f64, String)>,
}

/// Runs every suite file in turn. A missing baseline is an error before any
/// suite runs; a suite that cannot run is recorded and the next one runs.
pub async fn run_set(
    domain: &dyn Domain,
    paths: &[PathBuf],
    options: &SetOptions,
) -> anyhow::Result<SetOutcome> {
    let gate = Gate::open(&options.gate)?;
    let say = |line: &str| {
        if options.run.print_summary {
            eprintln!("{line}");
        }
    };
    let mut outcome = SetOutcome::default();
    let mut saved = Vec::new();
    for path in paths {
        if let Some(signal) = crate::infra::interrupt::interrupted_by() {
            outcome.interrupted_by = Some(signal);
            say(&format!(
                "interrupted: {} suite(s) not run",
                paths.len() - outcome.ran.len() - outcome.broken.len() - outcome.skipped.len()
            ));
            break;
        }
        match run_repeated(domain, path, options, &gate, &say).await {
            Ok(runs) => {
                let suite = runs.suite.clone();
                if runs.failed {
                    outcome.failed.push(suite.clone());
                }
                let ab_note = ab_note(options);
                let (judged, against) = sides(&runs, ab_note.as_deref());
                let mut settings = gate.settings_for(runs.gate.as_deref());
                if let Some((confidence, _)) = &runs.sequential {
                    settings.confidence = *confidence;
                }
                let looks: Vec<String> = runs.sequential.iter().map(|(_, l)| l.clone()).collect();
                let gated =
                    gate.judge(&suite, judged, against, &runs.last_dir, &settings, &looks)?;
                match gated {
                    Some(GateOutcome::NotInBaseline) => say(&gate.not_in_baseline(&suite)),
                    Some(GateOutcome::Compared { comparison, table }) => {
                        say(&table);
                        if !comparison.passed() {
                            outcome.regressed.push(suite.clone());
                        } else if comparison.inconclusive() {
                            outcome.inconclusive.push(suite.clone());
                        }
                        outcome
                            .comparisons
                            .push((runs.last_dir.clone(), *comparison));
                    }
                    None => {}
                }
                saved.push((suite.clone(), runs.first));
                outcome.ran.push(suite);
            }
            Err(RunError::NotInProfile { suite, only }) => {
                say(&format!(
                    "skipped {suite}: it runs only under profile {}\n",
                    only.join(", ")
                ));
                outcome.skipped.push(suite);
            }
            Err(error) => {
                say(&format!("error: {}: {error:#}\n", path.display()));
                outcome.broken.push((path.clone(), format!("{error:#}")));
            }
        }
    }
    outcome.interrupted_by = crate::infra::interrupt::interrupted_by();
    say(&outcome.tally());
    if let Some(saved) = gate.save(saved)? {
        say(&saved);
    }
    if !outcome.regressed.is_empty() {
        say(&format!(
            "regressed against {} in: {}",
            match &options.ab {
                Some(_) => "arm A".to_owned(),
                None => format!(
                    "baseline `{}`",
                    options.gate.baseline.as_deref().unwrap_or_default()
                ),
            },
            outcome.regressed.join(", ")
        ));
    }
    if !outcome.inconclusive.is_empty() {
        say(&format!(
            "the gate could not judge (the machine differs from the baseline's) in: {}",
            outcome.inconclusive.join(", ")
        ));
    }
    if !outcome.failed.is_empty() {
        say(&format!(
            "thresholds failed in: {}",
            outcome.failed.join(", ")
        ));
    }
    if outcome.ran.is_empty() && outcome.broken.is_empty() {
        say("error: no suite ran");
    }
    Ok(outcome)
}

/// The name a suite's runs are judged and saved under: a capacity search
/// of a suite apart from its ordinary runs (`SUITE (capacity)`), as the two
/// are never compared.
fn baseline_key(report: &crate::report::RunReport) -> String {
    let suite = &report.summary.suite;
    match report.capacity {
        Some(_) => format!("{suite} (capacity)"),
        None => suite.clone(),
    }
}

/// What the gate keeps of a capacity search.
fn capacity_figures(capacity: &crate::capacity::CapacityReport) -> CapacityFigures {
    CapacityFigures {
        rate: capacity.rate,
        low: capacity.low,
        high: capacity.high,
    }
}

fn ab_note(options: &SetOptions) -> Option<String> {
    options
        .ab
        .as_ref()
        .map(|(a, b)| format!("A is `{a}`, B is `{b}`, run interleaved"))
}

/// The runs judged, and what they are judged against.
fn sides<'a>(runs: &'a SuiteRuns, ab_note: Option<&'a str>) -> (&'a [RunFigures], Against<'a>) {
    match ab_note {
        Some(note) => (
            &runs.second,
            Against::ArmA {
                runs: &runs.first,
                note,
            },
        ),
        None => (&runs.first, Against::Saved),
    }
}

/// Runs one suite `repeat` times (A then B each time, with `ab`), each run
/// with the machine's fingerprint and its `figures.json`; with
/// `--until-decided`, on until the gate decides every gated figure or the
/// budget is spent (`Looks`).
async fn run_repeated(
    domain: &dyn Domain,
    path: &Path,
    options: &SetOptions,
    gate: &Gate<'_>,
    say: &dyn Fn(&str),
) -> Result<SuiteRuns, RunError> {
    let arms: Vec<(Option<&Arm>, RunOptions)> = match &options.ab {
        Some((a, b)) => vec![
            (Some(a), a.apply(&options.run)),
            (Some(b), b.apply(&options.run)),
        ],
        None => vec![(None, options.run.clone())],
    };
    let repeat = options.repeat.max(1);
    let mut runs = SuiteRuns {
        suite: String::new(),
        first: Vec::new(),
        second: Vec::new(),
        last_dir: PathBuf::new(),
        failed: false,
        gate: None,
        sequential: None,
    };
    let mut looks = options
        .gate
        .until_decided
        .map(|budget| Looks::new(budget, options.gate.settings.confidence, repeat.max(2)));
    let started = std::time::Instant::now();
    let ab_note = ab_note(options);
    for round in 0.. {
        if looks.is_none() && round == repeat {
            break;
        }
        for (side, (arm, run_options)) in arms.iter().enumerate() {
            if round > 0 || side > 0 {
                if crate::infra::interrupt::interrupted_by().is_some() {
                    return Ok(runs);
                }
                let arm = arm.map(|arm| format!(" of `{arm}`")).unwrap_or_default();
                match &looks {
                    Some(_) => say(&format!("run {} (until decided){arm}", round + 1)),
                    None => say(&format!("run {} of {repeat}{arm}", round + 1)),
                }
            }
            let before = Fingerprint::measure().await.ok();
            let run = run_suite(domain, path, run_options).await?;
            let after = Fingerprint::measure().await.ok();
            let machine = match (before, after) {
                (Some(before), Some(after)) => Some(before.busier(after)),
                (one, other) => one.or(other),
            };
            let figures = RunFigures::from_run(&run.report.summary, machine)
                .with_capacity(run.report.capacity.as_ref().map(capacity_figures));
            write_figures(&run, &figures)?;
            say(&format!("reports: {}\n", run.dir.display()));
            runs.suite = baseline_key(&run.report);
            runs.failed |= !run.report.passed;
            runs.last_dir = run.dir.clone();
            runs.gate = run.gate.clone();
            if side == 0 {
                runs.first.push(figures);
            } else {
                runs.second.push(figures);
            }
        }
        let Some(looks) = &mut looks else { continue };
        let (judged, against) = sides(&runs, ab_note.as_deref());
        if !gate.judges(against) {
            // Nothing to decide against: the runs asked for, then stop.
            if round + 1 >= repeat {
                break;
            }
            continue;
        }
        let Some(confidence) = looks.at(round + 1, started.elapsed()) else {
            continue;
        };
        let mut settings = gate.settings_for(runs.gate.as_deref());
        settings.confidence = confidence;
        let comparison = gate.compare(&runs.suite, judged, against, &settings);
        let decided = comparison.as_ref().is_none_or(Comparison::decided);
        // Futility: what is undecided would need more runs than the budget holds.
        let futile = !decided
            && comparison
                .as_ref()
                .is_some_and(|c| !c.decidable_within(looks.rounds_in_budget()));
        let stop = if decided {
            Stop::Decided
        } else if futile {
            Stop::OutOfReach
        } else {
            Stop::Spent
        };
        runs.sequential = Some((confidence, looks.describe(stop)));
        if decided || futile || looks.spent() {
            break;
        }
    }
    Ok(runs)
}

/// Why `--until-decided` stopped.
#[derive(Debug, Clone, Copy)]
enum Stop {
    Decided,
    /// What is undecided needs more runs than the budget holds.
    OutOfReach,
    Spent,
}

/// When `--until-decided` looks at the comparison, and at what confidence:
/// a group-sequential design with looks at doubling run counts (2, 4, 8, …
/// runs a side) and a last look when the budget would not fit another
/// round. The false-alarm rate α = 1 − confidence is split by Bonferroni:
/// half to the last look, half shared by the looks before it. The union
/// bound holds whatever the looks' correlation, so the chance of any false
/// WORSE over all looks stays within α; stopping because every figure is
/// decided cannot raise it. An always-valid test (a mixture SPRT) would let
/// every round be a look, but its validity rests on a known variance that
/// two to ten runs cannot give; exact group-sequential boundaries would
/// spend α less wastefully but need the looks' number fixed in advance,
/// which a time budget does not fix.
#[derive(Debug)]
struct Looks {
    budget: std::time::Duration,
    alpha: f64,
    /// The next look, in rounds.
    next: usize,
    /// The looks before the last one, once the first round's length is known.
    before_last: Option<usize>,
    /// α spent so far.
    spent: f64,
    /// `(rounds, confidence)` of each look taken.
    taken: Vec<(usize, f64)>,
    last: bool,
    /// Rounds that fit in the budget, at the pace so far.
    rounds_in_budget: usize,
}

impl Looks {
    fn new(budget: std::time::Duration, confidence: f64, first: usize) -> Looks {
        Looks {
            budget,
            alpha: 1.0 - confidence,
            next: first,
            before_last: None,
            spent: 0.0,
            taken: Vec::new(),
            last: false,
            rounds_in_budget: first,
        }
    }

    /// After `rounds` rounds and `elapsed` time: the confidence to judge at
    /// if this is a look.
    fn at(&mut self, rounds: usize, elapsed: std::time::Duration) -> Option<f64> {
        let per_round = elapsed.as_secs_f64() / rounds as f64;
        let rounds_in_budget = (self.budget.as_secs_f64() / per_round).floor() as usize;
        self.rounds_in_budget = rounds_in_budget.max(rounds);
        let before_last = *self.before_last.get_or_insert_with(|| {
            // The doublings of the first look that fit before the budget's last round.
            let mut count = 0;
            let mut look = self.next;
            while look < rounds_in_budget {
                count += 1;
                look *= 2;
            }
            count.max(1)
        });
        // Another round would not fit: this is the last look.
        let last = elapsed.as_secs_f64() + per_round > self.budget.as_secs_f64();
        if !last && rounds < self.next {
            return None;
        }
        let alpha = if last || self.taken.len() + 1 > before_last {
            self.last = true;
            self.alpha - self.spent
        } else {
            self.alpha / 2.0 / before_last as f64
        };
        self.spent += alpha;
        self.taken.push((rounds, 1.0 - alpha));
        while self.next <= rounds {
            self.next *= 2;
        }
        Some(1.0 - alpha)
    }

    fn spent(&self) -> bool {
        self.last
    }

    fn rounds_in_budget(&self) -> usize {
        self.rounds_in_budget
    }

    fn describe(&self, stop: Stop) -> String {
        let looks: Vec<String> = self
            .taken
            .iter()
            .map(|(rounds, confidence)| {
                format!(
                    "{rounds} at {} %",
                    crate::report::gate::percent(*confidence)
                )
            })
            .collect();
        format!(
            "until decided (budget {}): looked after {} run(s) a side; {}; the false-alarm \
             rate over all looks stays within {:.1} % (Bonferroni over looks at doubling run counts)",
            humantime::format_duration(self.budget),
            looks.join(", "),
            match stop {
                Stop::Decided => "every gated figure decided".to_owned(),
                Stop::OutOfReach => format!(
                    "stopped: the figures still undecided would need more than the {} run(s) a \
                     side the budget holds",
                    self.rounds_in_budget
                ),
                Stop::Spent => "the budget is spent with gated figures undecided".to_owned(),
            },
            self.alpha * 100.0
        )
    }
}

/// `figures.json` beside a run's reports: what a baseline keeps of it, so
/// that runs can be compared after the fact (`perf compare`).
fn write_figures(run: &SuiteRun, figures: &RunFigures) -> Result<(), RunError> {
    let path = run.dir.join(FIGURES_FILE);
    let json = serde_json::to_vec(figures).map_err(anyhow::Error::from)?;
    std::fs::write(&path, json)
        .with_context(|| format!("writing {}", path.display()))
        .map_err(RunError::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Looks of a 20-minute budget at `minutes_per_round`, every round asked.
    fn looks_over(rounds: usize, minutes_per_round: u64) -> (Looks, Vec<(usize, f64)>) {
        let mut looks = Looks::new(Duration::from_secs(20 * 60), 0.99, 2);
        let mut taken = Vec::new();
        for round in 1..=rounds {
            let elapsed = Duration::from_secs(round as u64 * minutes_per_round * 60);
            if let Some(confidence) = looks.at(round, elapsed) {
                taken.push((round, confidence));
            }
            if looks.spent() {
                break;
            }
        }
        (looks, taken)
    }

    #[test]
    fn until_decided_looks_at_doubling_run_counts_and_spends_at_most_alpha() {
        let (looks, taken) = looks_over(100, 1);
        let rounds: Vec<usize> = taken.iter().map(|(r, _)| *r).collect();
        // 2, 4, 8, 16, then the last round that fits the budget.
        assert_eq!(rounds, [2, 4, 8, 16, 20]);
        let alpha: f64 = taken.iter().map(|(_, c)| 1.0 - c).sum();
        assert!((alpha - 0.01).abs() < 1e-12, "{alpha}");
        // Half of α is kept for the last look.
        assert!((1.0 - taken[4].1 - 0.005).abs() < 1e-12, "{taken:?}");
        assert!(looks.spent());
    }

    #[test]
    fn a_budget_that_holds_few_rounds_looks_once_before_the_last() {
        // Five minutes a round: the budget holds four rounds, so the look
        // after two is the only one before the last, and the last (after
        // four) spends what is left.
        let (_, taken) = looks_over(100, 5);
        let rounds: Vec<usize> = taken.iter().map(|(r, _)| *r).collect();
        assert_eq!(rounds, [2, 4]);
        assert!((1.0 - taken[1].1 - 0.005).abs() < 1e-12, "{taken:?}");
        let alpha: f64 = taken.iter().map(|(_, c)| 1.0 - c).sum();
        assert!((alpha - 0.01).abs() < 1e-12, "{alpha}");
    }
}
