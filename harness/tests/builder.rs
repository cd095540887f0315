//! A suite built in Rust, with a custom async task, runs through the same
//! planner and engine as a file: the custom task's requests are counted
//! under its name exactly as the server saw them, thresholds may name it, and
//! mistakes are refused as in a file.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::routing::get;
use harness::builder::{BuiltSuite, SuiteBuilder};
use harness::catalog::Catalog;
use harness::engine::{EngineInput, run};
use harness::run::domain::NoDomain;
use harness::suite::PlanOptions;

mod support;

#[derive(Default)]
struct Seen {
    cart: AtomicU64,
    pay: AtomicU64,
    home: AtomicU64,
}

fn server() -> (String, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let (cart, pay, home) = (seen.clone(), seen.clone(), seen.clone());
    let app = Router::new()
        .route(
            "/cart/",
            get(move || async move {
                cart.cart.fetch_add(1, Ordering::Relaxed);
                r#"{"total": 3}"#
            }),
        )
        .route(
            "/pay/",
            get(move || async move {
                pay.pay.fetch_add(1, Ordering::Relaxed);
                "paid"
            }),
        )
        .route(
            "/home/",
            get(move || async move {
                home.home.fetch_add(1, Ordering::Relaxed);
                "home"
            }),
        );
    (support::serve(app), seen)
}

fn checkout() -> SuiteBuilder {
    SuiteBuilder::new("checkout")
        .load(toml::toml! {
            executor = "constant-users"
            users = 3
            duration = "2s"
            think-time = "10ms..20ms"
        })
        .task(toml::toml! {
            name = "/home/"
            get = "/home/"
        })
        .custom_task("checkout", |ctx| {
            Box::pin(async move {
                // Two requests, the second only when the first says so.
                let cart = ctx.get("/cart/").await;
                let has_items = cart.as_ref().is_ok_and(|r| r.text().contains("total"));
                ctx.check(has_items);
                if has_items {
                    let _ = ctx.get("/pay/").await;
                }
            })
        })
        .threshold("http.duration{name:checkout}", "p(95) < 5s")
        .threshold("http.failed", "rate < 1%")
        .threshold("http.failed", "count == 0")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suite_built_in_rust_runs_its_custom_task_and_counts_every_request() {
    let (base, seen) = server();
    let BuiltSuite { plan, custom_tasks } = checkout()
        .build(&PlanOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    // Its three, and the stall and nothing-succeeded thresholds every
    // plan gets by default (it names its own error rate).
    assert_eq!(plan.thresholds.len(), 5);
    let plan = Arc::new(plan);
    let output = run(
        EngineInput {
            plan: plan.clone(),
            base_url: base.as_str().into(),
            users: Vec::new(),
            global: Arc::new(Catalog::default().global),
            seed: 1,
            custom_tasks,
        },
        None,
        None,
    )
    .await
    .unwrap();
    let summary = output.summary;
    let requests = |name: &str| -> u64 {
        summary
            .endpoints
            .iter()
            .chain(&summary.warm_up)
            .filter(|e| e.meta.name == name)
            .map(|e| e.requests)
            .sum()
    };
    let custom = seen.cart.load(Ordering::Relaxed) + seen.pay.load(Ordering::Relaxed);
    assert!(
        seen.pay.load(Ordering::Relaxed) > 0,
        "the custom task's second request ran"
    );
    assert_eq!(
        requests("checkout"),
        custom,
        "every request of the custom task is counted under it"
    );
    assert_eq!(requests("/home/"), seen.home.load(Ordering::Relaxed));
    let endpoint = summary.endpoint("checkout").unwrap();
    assert_eq!(endpoint.meta.method, "CUSTOM");
    let verdicts = harness::verdict::evaluate(&summary, &plan.thresholds);
    assert!(verdicts.iter().all(|v| v.passed), "{verdicts:#?}");
}

#[test]
fn a_built_suite_is_refused_like_a_file() {
    let unknown = checkout()
        .threshold("http.duration{name:chekout}", "p(95) < 1s")
        .build(&PlanOptions::default())
        .unwrap_err()
        .to_string();
    assert!(unknown.contains("no task is named `chekout`"), "{unknown}");
    assert!(unknown.contains("built in Rust"), "{unknown}");
    let no_tasks = SuiteBuilder::new("empty")
        .load(toml::toml! { users = 1  duration = "1s" })
        .build(&PlanOptions::default())
        .unwrap_err()
        .to_string();
    assert!(no_tasks.contains("no [[task]]"), "{no_tasks}");
    // Tags of custom tasks select like any other.
    let excluded = checkout()
        .build(&PlanOptions {
            exclude_tags: vec!["nope".into()],
            ..PlanOptions::default()
        })
        .unwrap_err()
        .to_string();
    assert!(excluded.contains("nope"), "{excluded}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_built_suite_runs_through_the_whole_run_and_its_thresholds_are_judged() {
    let (base, seen) = server();
    let suite = checkout()
        .target_url(&base)
        // A threshold no run of this server can hold: the verdict is real.
        .threshold("http.requests{name:checkout}", "count < 1")
        .build(&PlanOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let out = tempfile::tempdir().unwrap();
    let run = harness::run::run_plan(
        &NoDomain,
        suite,
        &harness::run::RunOptions::quiet(out.path().to_path_buf()),
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    let custom = seen.cart.load(Ordering::Relaxed) + seen.pay.load(Ordering::Relaxed);
    assert!(custom > 0, "the custom task never ran");
    let report = &run.report;
    let checkout = report.summary.endpoint("checkout").expect("its endpoint");
    assert_eq!(
        checkout.requests
            + report
                .summary
                .warm_up
                .iter()
                .filter(|e| e.meta.name == "checkout")
                .map(|e| e.requests)
                .sum::<u64>(),
        custom
    );
    let judged = |source: &str| {
        report
            .thresholds
            .iter()
            .find(|t| t.source == source)
            .unwrap_or_else(|| panic!("no `{source}`: {:#?}", report.thresholds))
            .passed
    };
    assert!(judged("http.duration{name:checkout}: p(95) < 5s"));
    assert!(!judged("http.requests{name:checkout}: count < 1"));
    assert!(!report.passed);
    // And it wrote its reports like any run.
    let result = std::fs::read_to_string(run.dir.join("result.json")).unwrap();
    assert!(result.contains("\"checkout\""));
}
