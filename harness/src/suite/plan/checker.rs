//! The collector of a suite's errors: each at file:line:col, pointing
//! inside a string value where it can, so every problem is reported at once.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use crate::suite::diagnostic::{SuiteError, SuiteErrors};
use crate::suite::template::{Template, TemplateError};

/// The errors of one suite so far, and the text they point into.
pub(super) struct Checker<'a> {
    pub(super) path: &'a str,
    pub(super) source: &'a str,
    pub(super) errors: Vec<SuiteError>,
    /// Variables that exist somewhere but cannot be filled where they are
    /// used, with why and what to do instead (a catalog variable in a
    /// suite that seeds nothing, a task's extract in a browser page).
    pub(super) unfillable: BTreeMap<String, (String, String)>,
}

impl<'a> Checker<'a> {
    pub(super) fn new(path: &'a str, source: &'a str) -> Checker<'a> {
        Checker {
            path,
            source,
            errors: Vec::new(),
            unfillable: BTreeMap::new(),
        }
    }

    pub(super) fn at(&mut self, span: Range<usize>, message: impl Into<String>) -> &mut SuiteError {
        self.errors
            .push(SuiteError::at(self.path, self.source, span, message));
        self.errors.last_mut().expect("just pushed")
    }

    pub(super) fn general(&mut self, message: impl Into<String>) -> &mut SuiteError {
        self.errors.push(SuiteError::general(self.path, message));
        self.errors.last_mut().expect("just pushed")
    }

    /// The span of a table header such as `[load]`, for errors about tables
    /// whose fields carry no span of their own.
    pub(super) fn header_span(&self, header: &str) -> Range<usize> {
        match self.source.find(header) {
            Some(start) => start..start + header.len(),
            None => 0..0,
        }
    }

    /// A byte position inside a spanned string value, when the source holds
    /// it verbatim between quotes (no escapes); else the value's start.
    pub(super) fn inside(&self, span: &Range<usize>, value: &str, offset: usize) -> Range<usize> {
        let raw = &self.source[span.clone()];
        for quote in ["\"\"\"", "'''", "\"", "'"] {
            if raw.starts_with(quote)
                && raw.len() >= 2 * quote.len()
                && &raw[quote.len()..raw.len() - quote.len()] == value
            {
                let at = span.start + quote.len() + offset;
                return at..at + 1;
            }
        }
        span.clone()
    }

    pub(super) fn template(&mut self, text: &Spanned<String>) -> Option<Template> {
        match Template::parse(text.get_ref()) {
            Ok(template) => Some(template),
            Err(TemplateError { offset, message }) => {
                let span = self.inside(&text.span(), text.get_ref(), offset);
                self.at(span, message);
                None
            }
        }
    }

    /// A duration as humantime reads it (`4s`, `250ms`), or an error at its span.
    pub(super) fn duration(&mut self, text: &Spanned<String>) -> Option<Duration> {
        match humantime::parse_duration(text.get_ref()) {
            Ok(duration) => Some(duration),
            Err(error) => {
                self.at(
                    text.span(),
                    format!("`{}` is not a duration: {error}", text.get_ref()),
                );
                None
            }
        }
    }

    pub(super) fn finish(self) -> Result<(), SuiteErrors> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(SuiteErrors(self.errors))
        }
    }
}

/// Reports every variable `used` in `text` that is not among `variables`.
pub(super) fn check_variables<'a>(
    checker: &mut Checker<'_>,
    text: &Spanned<String>,
    used: impl Iterator<Item = &'a str>,
    variables: &BTreeSet<String>,
) {
    for variable in used {
        if !variables.contains(variable) {
            let offset = text
                .get_ref()
                .find(&format!("{{{variable}"))
                .map_or(0, |i| i + 1);
            let span = checker.inside(&text.span(), text.get_ref(), offset);
            let span = span.start..span.start + variable.len();
            unknown_variable(checker, span, variable, variables);
        }
    }
}

pub(super) fn unknown_variable(
    checker: &mut Checker<'_>,
    span: Range<usize>,
    variable: &str,
    variables: &BTreeSet<String>,
) {
    if let Some((why, instead)) = checker.unfillable.get(variable).cloned() {
        checker
            .at(span, format!("no value can fill `{variable}`: {why}"))
            .hint = Some(instead);
        return;
    }
    checker
        .at(
            span,
            format!(
                "no variable `{variable}`: the catalog does not offer it and no task extracts it"
            ),
        )
        .hint = Some(format!(
        "available: {}",
        variables.iter().cloned().collect::<Vec<_>>().join(", ")
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: &str = "[load]\nname = \"/a/{b}/\"\nraw = \"x\\ty\"\n";

    #[track_caller]
    fn check(errors: Vec<SuiteError>, expect: &[&str]) {
        let lines: Vec<String> = errors
            .iter()
            .map(|e| format!("{}:{} {}", e.line, e.column, e.message))
            .collect();
        assert_eq!(lines, expect);
    }

    fn spanned(text: &str, value: &str) -> Spanned<String> {
        let start = SOURCE.find(text).unwrap();
        Spanned::new(start..start + text.len(), value.to_owned())
    }

    #[test]
    fn errors_point_inside_verbatim_strings() {
        let mut checker = Checker::new("suite.toml", SOURCE);
        let value = spanned("\"/a/{b}/\"", "/a/{b}/");
        let span = checker.inside(&value.span(), value.get_ref(), 3);
        checker.at(span, "here");
        // An escaped string is not verbatim: the error falls on its start.
        let escaped = spanned("\"x\\ty\"", "x\ty");
        let span = checker.inside(&escaped.span(), escaped.get_ref(), 2);
        checker.at(span, "start");
        let header = checker.header_span("[load]");
        checker.at(header, "header");
        checker.general("nowhere");
        check(
            checker.errors,
            &["2:12 here", "3:7 start", "1:1 header", "0:0 nowhere"],
        );
    }

    #[test]
    fn unknown_variables_are_named_with_what_is_available() {
        let mut checker = Checker::new("suite.toml", SOURCE);
        let value = spanned("\"/a/{b}/\"", "/a/{b}/");
        let template = checker.template(&value).unwrap();
        let known = BTreeSet::from(["project_id".to_owned()]);
        check_variables(&mut checker, &value, template.variables(), &known);
        assert_eq!(
            checker.errors[0].hint.as_deref(),
            Some("available: project_id")
        );
        assert_eq!(checker.errors[0].width, 1);
        check(
            checker.errors,
            &["2:13 no variable `b`: the catalog does not offer it and no task extracts it"],
        );
    }

    #[test]
    fn a_checker_without_errors_finishes_well() {
        assert!(Checker::new("suite.toml", SOURCE).finish().is_ok());
        let mut checker = Checker::new("suite.toml", SOURCE);
        checker.general("one");
        assert_eq!(checker.finish().unwrap_err().0.len(), 1);
    }
}
