//! The target: the embedded reference service, a URL, or a command that
//! starts the application; load goes only to loopback or allowed hosts.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::PlanOptions;
use super::checker::Checker;
use crate::suite::TargetSpec;
use crate::suite::defaults::Defaults;

/// What the load runs against.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum TargetPlan {
    /// The reference service of this workspace, started by the runner.
    Embedded { switches: Vec<String> },
    Url {
        /// Shows and serializes with its password masked.
        url: crate::secret::SecretUrl,
    },
    Command {
        program: String,
        args: Vec<String>,
        ready_path: String,
        env: Vec<(String, String)>,
        /// Where it runs: the suite file's directory for a command the
        /// file names (a relative program with a `/` is found there too),
        /// the current directory for one given on the command line.
        workdir: Option<PathBuf>,
    },
}

/// The target the load goes to, and the hosts allowed besides loopback. A
/// URL or a command on the command line overrides the file's target.
pub(super) fn check_target(
    checker: &mut Checker<'_>,
    spec: &TargetSpec,
    options: &PlanOptions,
    defaults: &Defaults,
) -> (TargetPlan, Vec<String>) {
    let mut allow_hosts = spec.allow_hosts.clone();
    allow_hosts.extend(options.allow_hosts.iter().cloned());
    let command = if options.target_command.is_empty() {
        spec.command
            .as_ref()
            .map(|c| (c.get_ref().clone(), Some(c.span())))
    } else {
        Some((options.target_command.clone(), None))
    };
    let suite_dir = match Path::new(checker.path).parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let target = match (&options.target_url, &spec.url, command) {
        (Some(url), _, _) => {
            // Planning a finished run again to judge it sends no load: the
            // shards were allowed their target when they ran.
            if !options.judging_only {
                check_target_url(checker, url.expose_secret(), None, &allow_hosts);
            }
            TargetPlan::Url {
                url: url.trim_end_slash(),
            }
        }
        (None, Some(_), Some((_, Some(span)))) => {
            checker.at(span, "a target has a `url` or a `command`, not both");
            TargetPlan::Embedded {
                switches: Vec::new(),
            }
        }
        (None, Some(url), None) => {
            check_target_url(checker, url.get_ref(), Some(url.span()), &allow_hosts);
            TargetPlan::Url {
                url: crate::secret::SecretUrl::new(url.get_ref().trim_end_matches('/')),
            }
        }
        (None, _, Some((command, span))) => match command.split_first() {
            Some((program, args)) => TargetPlan::Command {
                program: match &span {
                    Some(span) => file_program(checker, program, &suite_dir, span.clone()),
                    None => program.clone(),
                },
                workdir: span.is_some().then(|| suite_dir.clone()),
                args: args.to_vec(),
                ready_path: spec
                    .ready_url
                    .clone()
                    .unwrap_or_else(|| defaults.target.ready_url.clone()),
                env: spec
                    .env
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            },
            None => {
                let message = "the target command is empty";
                match span {
                    Some(span) => checker.at(span, message),
                    None => checker.general(message),
                };
                TargetPlan::Embedded {
                    switches: Vec::new(),
                }
            }
        },
        (None, None, None) => {
            let mut switches = spec.switches.clone();
            switches.extend(options.switches.iter().cloned());
            TargetPlan::Embedded { switches }
        }
    };
    if !matches!(target, TargetPlan::Embedded { .. })
        && (!spec.switches.is_empty() || !options.switches.is_empty())
    {
        checker
            .general("pathology switches apply to the embedded reference service only")
            .hint = Some("remove target.switches, or drop target.url/command".into());
    }
    allow_hosts.dedup();
    (target, allow_hosts)
}

/// A program the suite file names: a relative path with a `/` in it is the
/// suite directory's, made absolute (a child's working directory does not
/// portably apply to its own program path); a bare name is looked up in
/// `PATH` when the command starts.
fn file_program(
    checker: &mut Checker<'_>,
    program: &str,
    suite_dir: &Path,
    span: Range<usize>,
) -> String {
    if !program.contains('/') || Path::new(program).is_absolute() {
        return program.to_owned();
    }
    let resolved =
        std::path::absolute(suite_dir.join(program)).unwrap_or_else(|_| suite_dir.join(program));
    if !resolved.is_file() {
        checker
            .at(
                span,
                format!(
                    "the target command `{program}` is not a file (looked for {})",
                    resolved.display()
                ),
            )
            .hint = Some("a relative program is found from the suite file's directory".into());
    }
    resolved.to_string_lossy().into_owned()
}

fn check_target_url(
    checker: &mut Checker<'_>,
    url: &str,
    span: Option<Range<usize>>,
    allow_hosts: &[String],
) {
    let report = |checker: &mut Checker<'_>, message: String, hint: Option<String>| {
        let error = match &span {
            Some(span) => checker.at(span.clone(), message),
            None => checker.general(message),
        };
        error.hint = hint;
    };
    match url::Url::parse(url) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {
            let host = parsed
                .host_str()
                .unwrap_or_default()
                .trim_matches(['[', ']'])
                .to_owned();
            if !is_loopback(&host) && !allow_hosts.iter().any(|h| h == &host) {
                report(
                    checker,
                    format!("target host `{host}` is not loopback"),
                    Some(format!(
                        "load goes only to 127.0.0.0/8, ::1, localhost or hosts in target.allow-hosts; add \"{host}\" there if you mean it"
                    )),
                );
            }
        }
        Ok(parsed) => report(
            checker,
            format!(
                "target URL scheme `{}` is not http or https",
                parsed.scheme()
            ),
            None,
        ),
        Err(error) => report(
            checker,
            format!(
                "`{}` is not a URL ({error})",
                crate::secret::mask_password(url)
            ),
            None,
        ),
    }
}

/// Loopback: 127.0.0.0/8, ::1 and localhost.
pub fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(target: &str, options: &PlanOptions, expect: &str) {
        let source = format!("[suite]\nname = \"t\"\n[target]\n{target}\n");
        let file = crate::suite::parse(&source, "t.toml").unwrap();
        let mut checker = Checker::new("t.toml", &source);
        let (plan, allow_hosts) =
            check_target(&mut checker, &file.target, options, Defaults::embedded());
        let mut got = format!("{plan:?} allow={allow_hosts:?}");
        for error in &checker.errors {
            got.push_str(&format!(
                "\n{}:{} {}",
                error.line, error.column, error.message
            ));
        }
        assert_eq!(got, expect);
    }

    #[test]
    fn targets_resolve_with_the_command_line_first() {
        let none = PlanOptions::default();
        check(
            "switches = [\"slow_query\"]",
            &PlanOptions {
                switches: vec!["leak".into()],
                ..PlanOptions::default()
            },
            r#"Embedded { switches: ["slow_query", "leak"] } allow=[]"#,
        );
        check(
            "url = \"http://127.0.0.1:8000/\"",
            &none,
            r#"Url { url: "http://127.0.0.1:8000" } allow=[]"#,
        );
        check(
            "url = \"http://127.0.0.1:8000/\"",
            &PlanOptions {
                target_url: Some("http://localhost:9000".into()),
                ..PlanOptions::default()
            },
            r#"Url { url: "http://localhost:9000" } allow=[]"#,
        );
        check(
            "command = [\"app\", \"--port\", \"0\"]\nenv = { A = \"1\" }",
            &none,
            r#"Command { program: "app", args: ["--port", "0"], ready_path: "/", env: [("A", "1")], workdir: Some(".") } allow=[]"#,
        );
    }

    #[test]
    fn a_file_command_runs_in_the_suite_directory_and_its_relative_program_is_found_there() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("serve"), "#!/bin/sh\n").unwrap();
        let path = dir.path().join("suite.toml");
        let path = path.to_str().unwrap();
        let plan = |program: &str, options: &PlanOptions| {
            let source = format!("[suite]\nname = \"t\"\n[target]\ncommand = [\"{program}\"]\n");
            let file = crate::suite::parse(&source, path).unwrap();
            let mut checker = Checker::new(path, &source);
            let (plan, _) = check_target(&mut checker, &file.target, options, Defaults::embedded());
            let errors: Vec<String> = checker.errors.iter().map(|e| e.message.clone()).collect();
            (plan, errors)
        };
        let none = PlanOptions::default();
        let (found, errors) = plan("./serve", &none);
        assert!(errors.is_empty(), "{errors:?}");
        let TargetPlan::Command {
            program, workdir, ..
        } = found
        else {
            panic!("{found:?}")
        };
        assert_eq!(Path::new(&program), dir.path().join("serve"));
        assert_eq!(workdir.as_deref(), Some(dir.path()));
        // A bare name is PATH's.
        let (bare, _) = plan("gunicorn", &none);
        assert!(matches!(bare, TargetPlan::Command { ref program, .. } if program == "gunicorn"));
        // A missing one is named before anything starts.
        let (_, errors) = plan("./missing", &none);
        assert!(
            errors
                .iter()
                .any(|e| e.contains("the target command `./missing` is not a file")),
            "{errors:?}"
        );
        // One given on the command line runs where the user is.
        let (cli, _) = plan(
            "./serve",
            &PlanOptions {
                target_command: vec!["./other".into()],
                ..PlanOptions::default()
            },
        );
        assert!(
            matches!(cli, TargetPlan::Command { ref program, workdir: None, .. } if program == "./other")
        );
    }

    #[test]
    fn a_target_is_refused_when_it_is_ambiguous_empty_or_remote() {
        let none = PlanOptions::default();
        check(
            "url = \"http://127.0.0.1/\"\ncommand = [\"app\"]",
            &none,
            "Embedded { switches: [] } allow=[]\n5:11 a target has a `url` or a `command`, not both",
        );
        check(
            "command = []",
            &none,
            "Embedded { switches: [] } allow=[]\n4:11 the target command is empty",
        );
        check(
            "url = \"http://example.com/\"",
            &none,
            "Url { url: \"http://example.com\" } allow=[]\n4:7 target host `example.com` is not loopback",
        );
        check(
            "url = \"http://example.com/\"\nallow-hosts = [\"example.com\", \"example.com\"]",
            &none,
            "Url { url: \"http://example.com\" } allow=[\"example.com\"]",
        );
        check(
            "url = \"ftp://127.0.0.1/\"\nswitches = [\"leak\"]",
            &none,
            "Url { url: \"ftp://127.0.0.1\" } allow=[]\n4:7 target URL scheme `ftp` is not http or https\n0:0 pathology switches apply to the embedded reference service only",
        );
    }

    #[test]
    fn loopback_is_localhost_127_and_ipv6_one() {
        for host in ["localhost", "127.0.0.1", "127.9.9.9", "::1"] {
            assert!(is_loopback(host), "{host}");
        }
        for host in ["example.com", "10.0.0.1", "::2", "localhost.example.com"] {
            assert!(!is_loopback(host), "{host}");
        }
    }
}
