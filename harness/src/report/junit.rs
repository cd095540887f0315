//! JUnit XML: one test case per threshold, so any CI that reads JUnit shows
//! SLAs beside unit tests; a failure carries the observed value, the margin
//! and the likely cause.

use std::path::PathBuf;

use anyhow::Context as _;
use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};

use super::{Reporter, RunReport};

/// The JUnit document of one or more runs.
pub fn render(reports: &[&RunReport]) -> anyhow::Result<String> {
    let mut junit = Report::new("ahsp-perf");
    for report in reports {
        let suite_name = &report.summary.suite;
        let mut suite = TestSuite::new(suite_name.as_str());
        suite.set_time(std::time::Duration::from_secs_f64(
            report.summary.warm_up_seconds + report.summary.measured_seconds,
        ));
        for threshold in &report.thresholds {
            let status = if threshold.passed {
                TestCaseStatus::success()
            } else {
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                if let TestCaseStatus::NonSuccess {
                    message,
                    ty,
                    description,
                    ..
                } = &mut status
                {
                    *message = Some(format!("observed {}", threshold.observed_text).into());
                    *ty = Some("threshold".into());
                    let mut text = threshold.detail.clone();
                    for cause in &threshold.diagnosis {
                        text.push_str(&format!("\nlikely cause: {cause}"));
                    }
                    *description = Some(text.into());
                }
                status
            };
            let mut case = TestCase::new(threshold.source.as_str(), status);
            case.set_classname(format!("ahsp-perf.{suite_name}"));
            suite.add_test_case(case);
        }
        // The browsers' page timings, as properties CI tools show beside the cases.
        if let Some(browser) = &report.summary.browser {
            for row in browser.rows() {
                let figures = [
                    ("views", Some(row.views as f64)),
                    ("failed", Some(row.failed as f64)),
                    ("ttfb.p95", row.ttfb_p95),
                    ("dcl.p95", row.dcl_p95),
                    ("load.p95", row.load_p95),
                    ("lcp.p50", row.lcp_p50),
                    ("lcp.p95", row.lcp_p95),
                    ("tbt.p95", row.tbt_p95),
                    ("requests.p50", row.requests),
                    ("kilobytes.p50", row.kilobytes),
                ];
                for (name, value) in figures {
                    if let Some(value) = value {
                        suite.add_property(Property::new(
                            format!("browser.{name}{{page:{}}}", row.page),
                            format!("{value:.1}"),
                        ));
                    }
                }
            }
        }
        if let Some(interruption) = &report.interrupted {
            // A partial run is no verdict: CI must not read it as green.
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
            if let TestCaseStatus::NonSuccess { message, ty, .. } = &mut status {
                *message = Some(interruption.describe().into());
                *ty = Some("interrupted".into());
            }
            let mut case = TestCase::new("run completed", status);
            case.set_classname(format!("ahsp-perf.{suite_name}"));
            suite.add_test_case(case);
        }
        junit.add_test_suite(suite);
    }
    Ok(junit.to_string()?)
}

/// Writes `junit.xml`.
#[derive(Debug)]
pub struct JunitReporter {
    pub path: PathBuf,
}

impl Reporter for JunitReporter {
    fn finished(&mut self, report: &RunReport) -> anyhow::Result<()> {
        let xml = render(&[report])?;
        std::fs::write(&self.path, xml).with_context(|| format!("writing {}", self.path.display()))
    }
}
