//! Every kind of bad suite file is refused before any load, with
//! file:line:col, the offending line, and a hint. Snapshots keep the messages
//! what a person reads.

use std::collections::BTreeSet;

use harness::suite::{Plan, PlanOptions};

const GOOD: &str = r#"
[suite]
name = "core"

[auth]
login-url = "/accounts/login/"
success = { status = 302, location = "/dashboard/", cookie = "sessionid" }
failure-kinds = { rate-limited = "Terlalu banyak percobaan" }
users = { from = "catalog", count = 10 }

[load]
executor = "constant-users"
users = 5
duration = "10s"

[[task]]
name = "/dashboard/"
tags = ["page"]
get = "/dashboard/"

[[task]]
name = "/detail_project/[id]/rekap-rab/"
tags = ["page"]
get = "/detail_project/{project_id}/rekap-rab/"

[thresholds]
"auth.success" = "rate > 99%"
"http.duration{name:/dashboard/}" = "p(95) < 200ms"
"#;

fn options() -> PlanOptions {
    PlanOptions {
        catalog_variables: BTreeSet::from(["project_id".to_owned(), "pekerjaan_id".to_owned()]),
        ..PlanOptions::default()
    }
}

#[track_caller]
fn refuse(source: &str, options: &PlanOptions) -> String {
    match Plan::from_source(source, "suites/core.toml", options) {
        Ok(_) => panic!("the suite should have been refused"),
        Err(errors) => errors.to_string(),
    }
}

#[test]
fn the_good_suite_plans() {
    let plan = Plan::from_source(GOOD, "suites/core.toml", &options()).unwrap();
    assert_eq!(plan.tasks.len(), 2);
    // Its two, and the stall, nothing-succeeded and error-rate thresholds
    // every suite gets by default.
    assert_eq!(plan.thresholds.len(), 5);
    // Two tasks and the two login endpoints.
    assert_eq!(plan.endpoints.len(), 4);
}

#[test]
fn unknown_key() {
    let source = GOOD.replace("duration = \"10s\"", "duration = \"10s\"\nramp-up = \"5s\"");
    insta::assert_snapshot!(refuse(&source, &options()));
}

#[test]
fn tags_as_a_comma_string() {
    let source = GOOD.replace(
        "tags = [\"page\"]\nget = \"/dashboard/\"",
        "tags = \"api,page\"\nget = \"/dashboard/\"",
    );
    insta::assert_snapshot!(refuse(&source, &options()));
}

#[test]
fn unknown_tag_on_the_command_line() {
    let options = PlanOptions {
        include_tags: vec!["api,page".into()],
        ..options()
    };
    insta::assert_snapshot!(refuse(GOOD, &options));
}

#[test]
fn variable_the_catalog_lacks() {
    let source = GOOD.replace("{project_id}/rekap-rab", "{projct_id}/rekap-rab");
    insta::assert_snapshot!(refuse(&source, &options()));
}

#[test]
fn threshold_on_an_endpoint_no_task_names() {
    let source = GOOD.replace("{name:/dashboard/}", "{name:/dashbord/}");
    insta::assert_snapshot!(refuse(&source, &options()));
}

#[test]
fn malformed_threshold_expression() {
    let source = GOOD.replace("p(95) < 200ms", "p95 < 200ms");
    insta::assert_snapshot!(refuse(&source, &options()));
}

#[test]
fn empty_user_pool() {
    let source = GOOD.replace("count = 10", "count = 0");
    insta::assert_snapshot!(refuse(&source, &options()));
}

#[test]
fn malformed_user_pool_file() {
    // Fixed width: the caret line under the error spans the path.
    let file = std::env::temp_dir().join(format!("ahsp-perf-users-{:010}.csv", std::process::id()));
    std::fs::write(&file, "budi,rahasia\nsiti\n").unwrap();
    let source = GOOD.replace(
        "users = { from = \"catalog\", count = 10 }",
        &format!(
            "users = {{ from = \"file\", path = \"{}\" }}",
            file.display()
        ),
    );
    let message = refuse(&source, &options());
    std::fs::remove_file(&file).unwrap();
    insta::assert_snapshot!(message.replace(&file.display().to_string(), "USERS.csv"));
}

#[test]
fn user_pool_variable_not_set() {
    let source = GOOD.replace(
        "users = { from = \"catalog\", count = 10 }",
        "users = { from = \"env\", var = \"AHSP_PERF_TEST_USERS_NEVER_SET\" }",
    );
    insta::assert_snapshot!(refuse(&source, &options()));
}

#[test]
fn a_login_judged_by_status_alone() {
    let source = GOOD.replace(
        "success = { status = 302, location = \"/dashboard/\", cookie = \"sessionid\" }",
        "success = { status = 200 }",
    );
    insta::assert_snapshot!(refuse(&source, &options()));
}

#[test]
fn every_task_excluded() {
    let options = PlanOptions {
        exclude_tags: vec!["page".into()],
        ..options()
    };
    insta::assert_snapshot!(refuse(GOOD, &options));
}

#[test]
fn non_loopback_target() {
    let source = GOOD.replace(
        "[suite]\nname = \"core\"",
        "[suite]\nname = \"core\"\n\n[target]\nurl = \"http://example.com:8000\"",
    );
    insta::assert_snapshot!(refuse(&source, &options()));
}

#[test]
fn thresholds_that_cannot_fail_or_cannot_hold() {
    let source = GOOD.replace(
        "\"auth.success\" = \"rate > 99%\"",
        "\"auth.success\" = \"rate > 99%\"\n\"http.failed\" = [\"rate < 200%\", \"rate >= 0%\"]\n\"http.requests\" = \"count >= 0\"\n\"checks\" = \"rate > 100%\"",
    );
    insta::assert_snapshot!(refuse(&source, &options()));
}

#[test]
fn a_variable_of_the_catalog_on_an_app_the_harness_does_not_seed() {
    let source = GOOD.replace(
        "[suite]\nname = \"core\"",
        "[suite]\nname = \"core\"\n\n[target]\ncommand = [\"gunicorn\", \"app.wsgi\"]",
    );
    insta::assert_snapshot!(refuse(&source, &options()));
}

#[test]
fn several_problems_at_once() {
    let source = GOOD
        .replace("{project_id}/rekap-rab", "{projct_id}/rekap-rab")
        .replace("p(95) < 200ms", "p(95) < 200 ms");
    insta::assert_snapshot!(refuse(&source, &options()));
}

#[test]
fn data_profile_is_now_set() {
    // "profile" means the load profile only; the data set has its own key.
    let source = GOOD.replace("[auth]", "[data]\nprofile = \"ci\"\n\n[auth]");
    insta::assert_snapshot!(refuse(&source, &options()));
    let renamed = GOOD.replace("[auth]", "[data]\nset = \"production\"\n\n[auth]");
    let plan = Plan::from_source(&renamed, "suites/core.toml", &options()).unwrap();
    assert_eq!(plan.data_set.as_deref(), Some("production"));
}
