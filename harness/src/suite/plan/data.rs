//! The data: which set to seed and with which seed, or the SQL that lists
//! variables of a target the harness did not seed. `[data] set` names the
//! data set; the key's old name, `profile`, is refused so that "profile"
//! means only the load profile.

use super::TargetPlan;
use super::checker::Checker;
use crate::suite::DataSpec;
use crate::suite::defaults::{Defaults, layered};

/// The data of a plan, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DataPlan {
    /// The data set to seed, or `None` when nothing is seeded.
    pub(super) set: Option<String>,
    pub(super) seed: u64,
    /// PBKDF2 iterations of the seeded passwords, when the suite says.
    pub(super) password_iterations: Option<u32>,
    /// Variable name → SQL whose first column lists its values.
    pub(super) sql: Vec<(String, String)>,
}

/// The file's `[data]` with the profile's over it, on the defaults: the
/// embedded target always seeds a set.
pub(super) fn check_data(
    checker: &mut Checker<'_>,
    file: &DataSpec,
    profile: Option<&DataSpec>,
    target: &TargetPlan,
    defaults: &Defaults,
) -> DataPlan {
    for spec in [Some(file), profile].into_iter().flatten() {
        if let Some(retired) = &spec.retired_profile {
            let span = key_span(checker.source, retired.span().start, "profile")
                .unwrap_or_else(|| retired.span());
            checker.at(span, "`profile` under [data] is now `set`").hint = Some(format!(
                "write `set = {}`: `profile` names only the load profile (--profile)",
                retired.get_ref()
            ));
        }
    }
    let embedded_set = matches!(target, TargetPlan::Embedded { .. })
        .then(|| defaults.data.embedded_target_set.clone());
    let set = layered(
        embedded_set,
        file.set.clone().map(Some),
        profile.and_then(|p| p.set.clone()).map(Some),
        None,
    );
    let seed = layered(
        defaults.data.seed,
        file.seed,
        profile.and_then(|p| p.seed),
        None,
    );
    // SQL variables come as a whole table: a profile's list replaces the file's.
    let sql_table = match profile {
        Some(profile) if !profile.sql.is_empty() => &profile.sql,
        _ => &file.sql,
    };
    let password_iterations = profile
        .and_then(|p| p.password_iterations)
        .or(file.password_iterations);
    for spec in [Some(file), profile].into_iter().flatten() {
        if spec.password_iterations == Some(0) {
            let span = checker.header_span("[data");
            checker.at(span, "`password-iterations` must be at least 1");
        }
    }
    DataPlan {
        set,
        seed,
        password_iterations,
        sql: sql_table
            .iter()
            .map(|(name, sql)| (name.clone(), sql.get_ref().clone()))
            .collect(),
    }
}

/// The span of `key` written before `value_start` on the same line.
fn key_span(source: &str, value_start: usize, key: &str) -> Option<std::ops::Range<usize>> {
    let line_start = source[..value_start].rfind('\n').map_or(0, |i| i + 1);
    let start = line_start + source[line_start..value_start].find(key)?;
    Some(start..start + key.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(data: &str, profile: &str, target: &TargetPlan, expect: &str) {
        let source =
            format!("[suite]\nname = \"d\"\n[data]\n{data}\n[profiles.ci.data]\n{profile}\n");
        let file = crate::suite::parse(&source, "d.toml").unwrap();
        let mut checker = Checker::new("d.toml", &source);
        let profile = file.profiles.get("ci").and_then(|p| p.data.as_ref());
        let plan = check_data(
            &mut checker,
            &file.data,
            profile,
            target,
            Defaults::embedded(),
        );
        let mut got = format!("{:?} {} {:?}", plan.set, plan.seed, plan.sql);
        for error in &checker.errors {
            got.push_str(&format!(
                "\n{}:{} {} ({})",
                error.line,
                error.column,
                error.message,
                error.hint.as_deref().unwrap_or_default()
            ));
        }
        assert_eq!(got, expect);
    }

    fn embedded() -> TargetPlan {
        TargetPlan::Embedded {
            switches: Vec::new(),
        }
    }

    fn url() -> TargetPlan {
        TargetPlan::Url {
            url: "http://127.0.0.1:8000".into(),
        }
    }

    #[test]
    fn the_profile_overrides_the_file_over_the_defaults() {
        check("", "", &embedded(), r#"Some("ci") 42 []"#);
        check("", "", &url(), "None 42 []");
        check(
            "set = \"production\"",
            "",
            &url(),
            r#"Some("production") 42 []"#,
        );
        check(
            "set = \"production\"\nseed = 7",
            "set = \"large\"",
            &embedded(),
            r#"Some("large") 7 []"#,
        );
        check("seed = 7", "seed = 8", &url(), "None 8 []");
    }

    #[test]
    fn a_profile_replaces_the_sql_variables_as_a_whole() {
        check(
            "sql = { a = \"select 1\", b = \"select 2\" }",
            "",
            &url(),
            r#"None 42 [("a", "select 1"), ("b", "select 2")]"#,
        );
        check(
            "sql = { a = \"select 1\", b = \"select 2\" }",
            "sql = { c = \"select 3\" }",
            &url(),
            r#"None 42 [("c", "select 3")]"#,
        );
    }

    #[test]
    fn the_old_key_is_refused_at_its_place_with_the_new_one_named() {
        check(
            "profile = \"ci\"",
            "profile = 3",
            &url(),
            "None 42 []\n4:1 `profile` under [data] is now `set` (write `set = \"ci\"`: `profile` names only the load profile (--profile))\n6:1 `profile` under [data] is now `set` (write `set = 3`: `profile` names only the load profile (--profile))",
        );
    }
}
