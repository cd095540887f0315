//! `[metrics-out]` and `--metrics-out`/`--metrics-label`: the receivers a
//! run streams its per-second series to while it runs, and the static
//! labels on every series, checked before anything starts.

use std::collections::BTreeMap;

use super::PlanOptions;
use super::checker::Checker;
use crate::secret::SecretUrl;
use crate::suite::MetricsOutSpec;

/// Labels the harness sets on its series itself: a static label of the
/// same name would make two series one.
pub const RESERVED_LABELS: [&str; 8] = [
    "__name__", "job", "suite", "run_id", "shard", "endpoint", "quantile", "kind",
];

/// The receivers and labels of a run's live series.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsOutPlan {
    /// Prometheus remote-write endpoints; a password in one is masked
    /// wherever it is shown.
    pub remote_write: Vec<SecretUrl>,
    /// Static labels, by name.
    pub labels: BTreeMap<String, String>,
}

impl MetricsOutPlan {
    /// Whether the run sends its series anywhere.
    pub fn is_empty(&self) -> bool {
        self.remote_write.is_empty()
    }
}

pub(super) fn check_metrics_out(
    checker: &mut Checker<'_>,
    spec: &MetricsOutSpec,
    options: &PlanOptions,
) -> MetricsOutPlan {
    let mut plan = MetricsOutPlan::default();
    for url in &spec.prometheus_rw {
        match check_url(url.get_ref()) {
            Ok(url) => plan.remote_write.push(url),
            Err(message) => {
                checker.at(
                    url.span(),
                    format!("`[metrics-out] prometheus-rw`: {message}"),
                );
            }
        }
    }
    for given in &options.metrics_out {
        match given.split_once('=') {
            Some(("prometheus-rw", url)) => match check_url(url) {
                Ok(url) => plan.remote_write.push(url),
                Err(message) => {
                    checker.general(format!("--metrics-out prometheus-rw: {message}"));
                }
            },
            Some(("otlp", _)) => {
                checker.general("--metrics-out otlp: OpenTelemetry export is not built").hint = Some(
                    "no OTLP receiver can be installed on the machines this is tested on, so it is left out rather than shipped untested; send to Prometheus with prometheus-rw=URL".into(),
                );
            }
            _ => {
                checker.general(format!(
                    "--metrics-out `{}`: expected prometheus-rw=URL",
                    crate::secret::mask_password(given)
                ));
            }
        }
    }
    for (name, value) in &spec.labels {
        match check_label(name.get_ref()) {
            Ok(()) => {
                plan.labels.insert(name.get_ref().clone(), value.clone());
            }
            Err(message) => {
                checker.at(name.span(), format!("`[metrics-out] labels`: {message}"));
            }
        }
    }
    for given in &options.metrics_labels {
        let Some((name, value)) = given.split_once('=') else {
            checker.general(format!("--metrics-label `{given}`: expected KEY=VALUE"));
            continue;
        };
        match check_label(name) {
            Ok(()) => {
                plan.labels.insert(name.to_owned(), value.to_owned());
            }
            Err(message) => {
                checker.general(format!("--metrics-label: {message}"));
            }
        }
    }
    plan.remote_write
        .dedup_by(|a, b| a.expose_secret() == b.expose_secret());
    plan
}

fn check_url(url: &str) -> Result<SecretUrl, String> {
    match url::Url::parse(url) {
        Ok(parsed) if parsed.scheme() == "http" => Ok(SecretUrl::new(url)),
        // The harness's HTTP clients are built without TLS (the load speaks
        // plain HTTP to loopback, and images carry no CA certificates).
        Ok(parsed) if parsed.scheme() == "https" => Err(
            "https is not built into the harness: send to a plain-http receiver (a Prometheus beside the run, or a local proxy that adds TLS)".to_owned(),
        ),
        Ok(parsed) => Err(format!(
            "scheme `{}` is not http",
            parsed.scheme()
        )),
        Err(error) => Err(format!(
            "`{}` is not a URL ({error})",
            crate::secret::mask_password(url)
        )),
    }
}

/// Prometheus's label names: `[a-zA-Z_][a-zA-Z0-9_]*`, not the harness's own.
fn check_label(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "`{name}` is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)"
        ));
    }
    if RESERVED_LABELS.contains(&name) || name.starts_with("__") {
        return Err(format!(
            "`{name}` is a label the harness sets itself ({})",
            RESERVED_LABELS[1..].join(", ")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::suite::plan::{Plan, PlanOptions};

    const BASE: &str = r#"
[suite]
name = "live"
[target]
url = "http://127.0.0.1:8000"
[load]
users = 1
duration = "5s"
[[task]]
name = "home"
get = "/"
"#;

    fn plan(extra: &str, options: &PlanOptions) -> Result<Plan, String> {
        Plan::from_source(&format!("{BASE}{extra}"), "live.toml", options)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_file_and_the_command_line_both_name_receivers_and_labels() {
        let options = PlanOptions {
            metrics_out: vec!["prometheus-rw=http://u:pw@127.0.0.1:9091/api/v1/write".into()],
            metrics_labels: vec!["team=estimating".into()],
            ..PlanOptions::default()
        };
        let plan = plan(
            "[metrics-out]\nprometheus-rw = [\"http://127.0.0.1:9090/api/v1/write\"]\nlabels = { env = \"ci\" }\n",
            &options,
        )
        .expect("plans");
        let urls: Vec<String> = plan
            .metrics_out
            .remote_write
            .iter()
            .map(|u| u.to_string())
            .collect();
        assert_eq!(
            urls,
            [
                "http://127.0.0.1:9090/api/v1/write",
                "http://u:***@127.0.0.1:9091/api/v1/write"
            ]
        );
        assert_eq!(
            plan.metrics_out.labels.into_iter().collect::<Vec<_>>(),
            [
                ("env".to_owned(), "ci".to_owned()),
                ("team".to_owned(), "estimating".to_owned())
            ]
        );
    }

    #[test]
    fn a_bad_receiver_or_label_is_refused_where_it_is_written() {
        let error = plan(
            "[metrics-out]\nprometheus-rw = [\"ftp://x/\"]\nlabels = { endpoint = \"x\", \"9a\" = \"y\" }\n",
            &PlanOptions::default(),
        )
        .expect_err("refused");
        assert!(error.contains("live.toml:13"), "{error}");
        assert!(error.contains("scheme `ftp`"), "{error}");
        assert!(
            error.contains("`endpoint` is a label the harness sets itself"),
            "{error}"
        );
        assert!(
            error.contains("`9a` is not a Prometheus label name"),
            "{error}"
        );
        let options = PlanOptions {
            metrics_out: vec!["otlp=http://127.0.0.1:4318".into(), "graphite".into()],
            metrics_labels: vec!["novalue".into()],
            ..PlanOptions::default()
        };
        let error = plan("", &options).expect_err("refused");
        assert!(
            error.contains("OpenTelemetry export is not built"),
            "{error}"
        );
        assert!(
            error.contains("`graphite`: expected prometheus-rw=URL"),
            "{error}"
        );
        assert!(error.contains("`novalue`: expected KEY=VALUE"), "{error}");
    }
}
