//! Tags: which tags exist (those tasks carry), which the file and the
//! command line include or exclude, and why a task is left out.

use std::collections::BTreeSet;
use std::ops::Range;

use super::PlanOptions;
use super::checker::Checker;
use crate::suite::{SuiteFile, TagList};

/// The tags of a suite and the choice among them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct TagChoice {
    /// Every tag some task carries.
    pub(super) known: BTreeSet<String>,
    pub(super) include: Vec<String>,
    pub(super) exclude: Vec<String>,
}

impl TagChoice {
    /// Why a task with `tags` does not run, if it does not.
    pub(super) fn excludes(&self, tags: &[String]) -> Option<String> {
        excluded_by(tags, &self.include, &self.exclude)
    }
}

/// The tags tasks carry, and the include and exclude lists of the file
/// then the command line, each tag checked against the known ones.
pub(super) fn choose_tags(
    checker: &mut Checker<'_>,
    file: &SuiteFile,
    options: &PlanOptions,
) -> TagChoice {
    let known: BTreeSet<String> = file
        .tasks
        .iter()
        .flat_map(|t| t.tags.0.iter().map(|tag| tag.get_ref().clone()))
        .chain(
            options
                .custom_tasks
                .iter()
                .flat_map(|t| t.tags.iter().cloned()),
        )
        .collect();
    let mut from_file = |list: &TagList| -> Vec<String> {
        let mut tags = Vec::new();
        for tag in &list.0 {
            if !known.contains(tag.get_ref()) {
                unknown_tag(checker, Some(tag.span()), tag.get_ref(), &known);
            }
            tags.push(tag.get_ref().clone());
        }
        tags
    };
    let mut include = from_file(&file.tags.include);
    let mut exclude = from_file(&file.tags.exclude);
    for tag in &options.include_tags {
        if !known.contains(tag) {
            unknown_tag(checker, None, tag, &known);
        }
        include.push(tag.clone());
    }
    for tag in &options.exclude_tags {
        if !known.contains(tag) {
            unknown_tag(checker, None, tag, &known);
        }
        exclude.push(tag.clone());
    }
    TagChoice {
        known,
        include,
        exclude,
    }
}

pub(super) fn unknown_tag(
    checker: &mut Checker<'_>,
    span: Option<Range<usize>>,
    tag: &str,
    known: &BTreeSet<String>,
) {
    let message = if tag.contains(',') {
        format!("unknown tag `{tag}` (one tag with a comma in it)")
    } else {
        format!("unknown tag `{tag}`")
    };
    let hint = if tag.contains(',') {
        format!(
            "give tags one by one: {}",
            tag.split(',')
                .map(|t| format!("`{}`", t.trim()))
                .collect::<Vec<_>>()
                .join(", ")
        )
    } else {
        format!(
            "tags used by tasks: {}",
            known.iter().cloned().collect::<Vec<_>>().join(", ")
        )
    };
    let error = match span {
        Some(span) => checker.at(span, message),
        None => checker.general(format!("{message} (from the command line)")),
    };
    error.hint = Some(hint);
}

/// Why a task with `tags` does not run, if it does not.
fn excluded_by(tags: &[String], include: &[String], exclude: &[String]) -> Option<String> {
    if let Some(tag) = tags.iter().find(|t| exclude.contains(t)) {
        return Some(format!("tag `{tag}` is excluded"));
    }
    if !include.is_empty() && !tags.iter().any(|t| include.contains(t)) {
        return Some(format!("has none of the included tags {include:?}"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUITE: &str = r#"
[suite]
name = "tags"
[tags]
include = ["page", "nope"]
[[task]]
name = "a"
tags = ["page"]
get = "/a/"
[[task]]
name = "b"
tags = ["api", "slow"]
get = "/b/"
"#;

    #[track_caller]
    fn check(options: &PlanOptions, expect_known: &[&str], expect_errors: &[&str]) -> TagChoice {
        let file = crate::suite::parse(SUITE, "tags.toml").unwrap();
        let mut checker = Checker::new("tags.toml", SUITE);
        let choice = choose_tags(&mut checker, &file, options);
        assert_eq!(choice.known.iter().collect::<Vec<_>>(), expect_known);
        let errors: Vec<String> = checker.errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(errors.len(), expect_errors.len(), "{errors:#?}");
        for (error, expect) in errors.iter().zip(expect_errors) {
            assert!(error.contains(expect), "{error}\nshould contain {expect}");
        }
        choice
    }

    #[test]
    fn tags_of_the_file_and_the_command_line_are_checked() {
        let options = PlanOptions {
            exclude_tags: vec!["slow".into(), "api,page".into()],
            ..PlanOptions::default()
        };
        let choice = check(
            &options,
            &["api", "page", "slow"],
            &[
                "unknown tag `nope`",
                "unknown tag `api,page` (one tag with a comma in it) (from the command line)",
            ],
        );
        assert_eq!(choice.include, ["page", "nope"]);
        assert_eq!(choice.exclude, ["slow", "api,page"]);
    }

    #[test]
    fn exclusion_wins_over_inclusion_and_says_why() {
        let choice = TagChoice {
            known: BTreeSet::new(),
            include: vec!["page".into()],
            exclude: vec!["slow".into()],
        };
        let tags = |list: &[&str]| list.iter().map(|t| t.to_string()).collect::<Vec<_>>();
        assert_eq!(choice.excludes(&tags(&["page"])), None);
        assert_eq!(
            choice.excludes(&tags(&["page", "slow"])).as_deref(),
            Some("tag `slow` is excluded")
        );
        assert_eq!(
            choice.excludes(&tags(&["api"])).as_deref(),
            Some(r#"has none of the included tags ["page"]"#)
        );
        assert_eq!(TagChoice::default().excludes(&tags(&["api"])), None);
    }

    #[test]
    fn custom_tasks_bring_their_tags() {
        let options = PlanOptions {
            custom_tasks: vec![super::super::CustomTaskDecl {
                name: "checkout".into(),
                method: "CUSTOM".into(),
                weight: 1,
                tags: vec!["nope".into()],
                on_start: false,
            }],
            ..PlanOptions::default()
        };
        check(&options, &["api", "nope", "page", "slow"], &[]);
    }
}
