//! The comparison's own tests (a module of `compare`).

use super::*;
use crate::baseline::figures::{CapacityFigures, Distribution, Source};
use rand::{Rng as _, SeedableRng as _};

/// A run of `GET /a`: 30 seconds of `per_second` requests, latencies
/// uniform in `ms ± 20 %`, seeded.
pub(crate) fn run_of(ms: f64, per_second: usize, seed: u64) -> RunFigures {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let figures = crate::baseline::statistics::tests::run(30, per_second, |_| {
        (ms * 1000.0 * rng.random_range(0.8..1.2)) as u64
    });
    RunFigures {
        profile: Some("ci".into()),
        source: Source::Run {
            started_at: "t".into(),
            target: "x".into(),
        },
        measured_seconds: 30.0,
        machine: None,
        endpoints: [("GET /a".to_owned(), figures)].into(),
        capacity: None,
    }
}

fn verdict(then: &[RunFigures], now: &[RunFigures], metric: Metric) -> Verdict {
    row(then, now, metric).verdict
}

fn row(then: &[RunFigures], now: &[RunFigures], metric: Metric) -> Row {
    let c = compare(
        "b",
        "s",
        then,
        now,
        &GateSettings::default(),
        Pairing::Saved,
    );
    c.rows.iter().find(|r| r.metric == metric).unwrap().clone()
}

#[test]
fn an_unchanged_rerun_is_the_same_and_a_slower_one_is_worse() {
    let then = [run_of(20.0, 20, 1)];
    assert_eq!(
        verdict(&then, &[run_of(20.0, 20, 2)], Metric::P95),
        Verdict::Same
    );
    assert_eq!(
        verdict(&then, &[run_of(60.0, 20, 3)], Metric::P95),
        Verdict::Worse
    );
    assert_eq!(
        verdict(&then, &[run_of(8.0, 20, 4)], Metric::P50),
        Verdict::Better
    );
}

#[test]
fn a_change_below_the_relative_threshold_is_the_same_however_sure() {
    let then = [run_of(100.0, 200, 1)];
    assert_eq!(
        verdict(&then, &[run_of(115.0, 200, 2)], Metric::P50),
        Verdict::Same
    );
}

#[test]
fn tiny_absolute_changes_never_fail_the_gate() {
    // 1 ms → 3 ms is +200 % and certain, but below the 5 ms floor.
    let then = [run_of(1.0, 50, 1)];
    assert_eq!(
        verdict(&then, &[run_of(3.0, 50, 2)], Metric::P95),
        Verdict::Same
    );
}

#[test]
fn tails_need_enough_requests_beyond_them() {
    // 3 requests a second for 30 s: ~1 beyond p99.
    let then = [run_of(20.0, 3, 1)];
    assert_eq!(
        verdict(&then, &[run_of(200.0, 3, 2)], Metric::P99),
        Verdict::NotEnoughData
    );
}

#[test]
fn runs_that_vary_between_themselves_widen_the_gate() {
    // Within each run the p95 is sharp, but main's own runs differ by
    // ±35 %: a candidate 50 % above the first run is within that spread.
    let main: Vec<_> = [20.0, 35.0, 14.0, 28.0]
        .iter()
        .enumerate()
        .map(|(i, ms)| run_of(*ms, 50, i as u64))
        .collect();
    let varying = row(&main, &[run_of(30.0, 50, 9)], Metric::P95);
    assert!(
        varying.verdict != Verdict::Worse && varying.undecided(),
        "{varying:#?}"
    );
    // Steady runs, and the same +50 %: worse, and sharper.
    let steady: Vec<_> = (0..4).map(|i| run_of(20.0, 50, i)).collect();
    let sharp = row(&steady, &[run_of(30.0, 50, 9)], Metric::P95);
    assert_eq!(sharp.verdict, Verdict::Worse);
    assert!(sharp.decided);
    assert!(
        sharp.resolution.unwrap() < varying.resolution.unwrap() / 2.0,
        "{sharp:#?} {varying:#?}"
    );
}

#[test]
fn pooled_runs_judge_a_tail_no_single_run_could() {
    // 4 requests a second for 30 s: 1.2 beyond p99 in a run, too few for
    // one run; five runs a side pool 6.
    let then: Vec<_> = (0..5).map(|i| run_of(20.0, 4, i)).collect();
    assert_eq!(
        verdict(&then[..1], &[run_of(20.0, 4, 10)], Metric::P99),
        Verdict::NotEnoughData
    );
    let now: Vec<_> = (0..5).map(|i| run_of(60.0, 4, 20 + i)).collect();
    assert_eq!(verdict(&then, &now, Metric::P99), Verdict::Worse);
}

#[test]
fn every_judged_row_states_its_resolution_and_the_runs_it_would_need() {
    // One run a side: the run-to-run spread is assumed (±10 %), so no
    // change below about +40 % can be caught, and more runs are asked.
    let c = compare(
        "b",
        "s",
        &[run_of(20.0, 20, 1)],
        &[run_of(20.0, 20, 2)],
        &GateSettings::default(),
        Pairing::Saved,
    );
    let p50 = c.rows.iter().find(|r| r.metric == Metric::P50).unwrap();
    assert!(p50.resolution.unwrap() > 0.35, "{p50:#?}");
    assert!(p50.runs_needed.unwrap() >= 3, "{p50:#?}");
    assert!(p50.undecided() && !c.decided());
    assert!(p50.resolution_text().unwrap().starts_with('+'));
    // Steady runs, four a side: the median is proven the same.
    let a: Vec<_> = (0..4).map(|i| run_of(20.0, 50, i)).collect();
    let b: Vec<_> = (0..4).map(|i| run_of(20.0, 50, 10 + i)).collect();
    let steady = row(&a, &b, Metric::P50);
    assert_eq!(steady.verdict, Verdict::Same);
    assert!(
        steady.decided && steady.runs_needed.is_none(),
        "{steady:#?}"
    );
}

/// A run whose level drifts from run to run (log-normal, `run_spread`)
/// and whose seconds move together (log-normal, `second_spread`): the
/// shape of a real app's runs, where the design effect was ×5–6.
fn clustered_run(ms: f64, run_spread: f64, second_spread: f64, seed: u64) -> RunFigures {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    // Box–Muller: a standard normal from two uniforms.
    let mut normal = move || -> f64 {
        let (u, v): (f64, f64) = (rng.random_range(f64::EPSILON..1.0), rng.random());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    };
    let level: f64 = ms * (run_spread * normal()).exp();
    let mut second_level = level;
    let mut current = usize::MAX;
    let figures = crate::baseline::statistics::tests::run(30, 10, |second| {
        if second != current {
            current = second;
            second_level = level * (second_spread * normal()).exp();
        }
        let own = normal();
        (second_level * 1000.0 * (0.3 * own).exp()) as u64
    });
    let mut run = run_of(ms, 1, seed);
    run.endpoints.insert("GET /a".to_owned(), figures);
    run
}

#[test]
fn pooled_tails_keep_the_false_alarm_rate_at_the_confidence() {
    // A/A, three runs a side, judged on significance alone (no
    // threshold, no floor): WORSE at most about 1 % of the time.
    let settings = GateSettings {
        relative: 0.0,
        latency_floor_ms: 0.0,
        metrics: vec![Metric::P95, Metric::P99],
        ..GateSettings::default()
    };
    let (mut judged, mut worse) = (0, 0);
    for pair in 0..100u64 {
        let side = |offset: u64| -> Vec<RunFigures> {
            (0..3)
                .map(|i| clustered_run(50.0, 0.08, 0.3, pair * 100 + offset + i))
                .collect()
        };
        let c = compare(
            "a",
            "s",
            &side(0),
            &side(10),
            &settings,
            Pairing::Interleaved,
        );
        for row in &c.rows {
            if row.verdict != Verdict::NotEnoughData {
                judged += 1;
            }
            if row.verdict == Verdict::Worse {
                worse += 1;
            }
        }
    }
    assert!(judged >= 170, "only {judged} of 200 figures judged");
    // 1 % of 200 is 2; 7 is beyond its binomial 99.5 % bound.
    assert!(worse <= 7, "{worse} false WORSE of {judged}");
}

#[test]
fn pooled_tails_catch_a_slowdown_beyond_their_stated_resolution() {
    // The same runs, B 80 % slower, five runs a side: the p95 is caught
    // at least as often as the power the resolution is stated at,
    // whenever the stated resolution is below the change.
    let settings = GateSettings {
        metrics: vec![Metric::P95],
        ..GateSettings::default()
    };
    let (mut within_resolution, mut caught) = (0, 0);
    for pair in 0..40u64 {
        let side = |ms: f64, offset: u64| -> Vec<RunFigures> {
            (0..5)
                .map(|i| clustered_run(ms, 0.08, 0.3, pair * 100 + offset + i))
                .collect()
        };
        let c = compare(
            "a",
            "s",
            &side(50.0, 0),
            &side(90.0, 10),
            &settings,
            Pairing::Interleaved,
        );
        let row = &c.rows[0];
        if row.resolution.is_some_and(|r| r < 0.8) {
            within_resolution += 1;
            caught += usize::from(row.verdict == Verdict::Worse);
        }
    }
    assert!(
        within_resolution >= 20,
        "the resolution was beyond +80 % in {} of 40",
        40 - within_resolution
    );
    assert!(
        caught * 10 >= within_resolution * 9,
        "caught {caught} of {within_resolution}"
    );
}

#[test]
fn only_the_gated_figures_are_judged() {
    let settings = GateSettings {
        metrics: vec![Metric::P95, Metric::ErrorRate],
        ..GateSettings::default()
    };
    let c = compare(
        "b",
        "s",
        &[run_of(20.0, 20, 1)],
        &[run_of(20.0, 20, 2)],
        &settings,
        Pairing::Saved,
    );
    let metrics: Vec<_> = c.rows.iter().map(|r| r.metric).collect();
    assert_eq!(metrics, [Metric::P95, Metric::ErrorRate]);
}

/// A 2-core machine whose CPU probe takes `cpu` ms.
fn machine(cpu: f64) -> Fingerprint {
    Fingerprint {
        cores: 2,
        kernel: "6.1".into(),
        load_average: 0.1,
        cpu_probe_ms: cpu,
        loopback_probe_us: 30.0,
    }
}

/// `run`, measured on a machine whose CPU probe takes `cpu` ms.
fn on(mut run: RunFigures, cpu: f64) -> RunFigures {
    run.machine = Some(machine(cpu));
    run
}

#[test]
fn a_busier_machine_makes_a_worse_figure_inconclusive() {
    let mut then = run_of(20.0, 20, 1);
    then.machine = Some(machine(10.0));
    let mut now = run_of(60.0, 20, 2);
    now.machine = Some(machine(25.0));
    let c = compare(
        "b",
        "s",
        &[then],
        &[now],
        &GateSettings::default(),
        Pairing::Saved,
    );
    assert!(c.passed() && c.inconclusive(), "{c:#?}");
    assert!(c.machine[0].contains("CPU probe"), "{:?}", c.machine);
}

/// Seen in CI: a CPU probe 1.5× slower than the baseline's turned a query
/// 44× slower into "machine differs", and the gate passed it.
#[test]
fn a_slower_machine_excuses_only_what_its_slowdown_could_explain() {
    let then = [on(run_of(20.0, 20, 1), 10.0)];
    let judged = |ms: f64| {
        compare(
            "b",
            "s",
            &then,
            &[on(run_of(ms, 20, 2), 15.0)],
            &GateSettings::default(),
            Pairing::Saved,
        )
    };
    let explained = judged(32.0);
    assert!(
        explained.passed() && explained.inconclusive(),
        "{explained:#?}"
    );
    let beyond = judged(800.0);
    assert!(!beyond.passed(), "{beyond:#?}");
    assert!(!beyond.machine.is_empty(), "the machine is still said");
}

#[test]
fn a_much_faster_machine_leaves_only_a_worse_verdict_standing() {
    let then = [on(run_of(20.0, 20, 1), 10.0)];
    let same = compare(
        "b",
        "s",
        &then,
        &[on(run_of(20.0, 20, 2), 4.0)],
        &GateSettings::default(),
        Pairing::Saved,
    );
    assert!(same.inconclusive(), "{same:#?}");
    assert!(
        same.machine[0].contains("much faster"),
        "{:?}",
        same.machine
    );
    let worse = compare(
        "b",
        "s",
        &then,
        &[on(run_of(60.0, 20, 3), 4.0)],
        &GateSettings::default(),
        Pairing::Saved,
    );
    assert!(!worse.passed(), "{worse:#?}");
}

#[test]
fn error_rates_compare_as_proportions() {
    let then = [run_of(20.0, 20, 1)];
    let failing = |seed: u64, seconds: usize, each: u64| {
        let mut run = run_of(20.0, 20, seed);
        let figures = run.endpoints.get_mut("GET /a").unwrap();
        figures.failures = seconds as u64 * each;
        if let Distribution::Recorded { seconds: kept, .. } = &mut figures.latency {
            for second in kept.iter_mut().take(seconds) {
                second.failures = each;
            }
        }
        run
    };
    // 10 %, spread over the run.
    assert_eq!(
        verdict(&then, &[failing(2, 30, 2)], Metric::ErrorRate),
        Verdict::Worse
    );
    // 0.5 %: below the floor.
    assert_eq!(
        verdict(&then, &[failing(3, 3, 1)], Metric::ErrorRate),
        Verdict::Same
    );
}

/// A capacity search that found `rate`, between the steps `rate` and
/// `rate × 1.1` (the default resolution).
fn searched(rate: f64) -> RunFigures {
    RunFigures {
        endpoints: Default::default(),
        capacity: Some(CapacityFigures {
            rate: Some(rate),
            low: Some(rate),
            high: Some(rate * 1.1),
        }),
        ..run_of(10.0, 1, 1)
    }
}

#[test]
fn a_capacity_30_percent_lower_is_worse_and_one_within_the_spread_is_the_same() {
    // Two searches a side, as `--ab --repeat 2` makes them, as far apart
    // as the pool proof's (19.0–19.9/s).
    let then = [searched(20.0), searched(19.3)];
    let lower = [searched(13.9), searched(13.3)];
    let lost = row(&then, &lower, Metric::Capacity);
    assert_eq!(lost.endpoint, "capacity");
    assert_eq!(lost.verdict, Verdict::Worse, "{lost:#?}");
    assert!(lost.resolution_text().unwrap().starts_with('−'));
    let alike = [searched(19.6), searched(19.0)];
    assert_eq!(verdict(&then, &alike, Metric::Capacity), Verdict::Same);
    let higher = [searched(26.0), searched(27.0)];
    assert_eq!(verdict(&then, &higher, Metric::Capacity), Verdict::Better);
    // As far apart as two searches of the example Django app (147 and
    // 174/s): two runs a side cannot tell a 30 % loss at 99 %, and say so.
    let then = [searched(147.0), searched(174.0)];
    let wide = row(&then, &[searched(107.0), searched(118.0)], Metric::Capacity);
    assert_eq!(wide.verdict, Verdict::Unclear, "{wide:#?}");
    assert!(wide.runs_needed.is_some_and(|runs| runs > 2), "{wide:#?}");
}

#[test]
fn a_capacity_search_is_compared_on_its_capacity_alone_and_only_with_searches() {
    let then = [searched(20.0)];
    let c = compare(
        "b",
        "s",
        &then,
        &[searched(19.0)],
        &GateSettings::default(),
        Pairing::Saved,
    );
    assert_eq!(c.rows.len(), 1, "{:#?}", c.rows);
    assert_eq!(c.rows[0].metric, Metric::Capacity);
    // One run a side: the spread between runs assumed, and said.
    assert!(c.spread.contains("assumed"), "{}", c.spread);
    // An ordinary run against a search: nothing compared, and said why.
    let c = compare(
        "b",
        "s",
        &then,
        &[run_of(10.0, 20, 2)],
        &GateSettings::default(),
        Pairing::Saved,
    );
    assert!(c.rows.is_empty());
    assert!(
        c.notes.iter().any(|n| n.contains("capacity search")),
        "{:?}",
        c.notes
    );
    // A search where nothing held cannot be judged on its rate.
    let nothing = RunFigures {
        capacity: Some(CapacityFigures {
            rate: None,
            low: None,
            high: Some(5.0),
        }),
        ..searched(1.0)
    };
    assert_eq!(
        verdict(&then, &[nothing], Metric::Capacity),
        Verdict::NotEnoughData
    );
}
