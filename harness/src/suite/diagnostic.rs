//! Errors in suite files, pointing at file:line:col with the offending line
//! and a hint — the way a compiler would, so a bad suite never runs.

use std::fmt;
use std::ops::Range;

/// One problem in a suite file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub struct SuiteError {
    pub path: String,
    /// 1-based; 0 when the problem has no place in the file (e.g. an environment variable).
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub hint: Option<String>,
    /// The source line, for display.
    pub source_line: String,
    /// How many characters to underline.
    pub width: usize,
}

impl SuiteError {
    /// An error at a byte span of `source`.
    pub fn at(
        path: &str,
        source: &str,
        span: Range<usize>,
        message: impl Into<String>,
    ) -> SuiteError {
        let start = span.start.min(source.len());
        let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = source[start..]
            .find('\n')
            .map_or(source.len(), |i| start + i);
        let line = source[..start].matches('\n').count() + 1;
        let column = source[line_start..start].chars().count() + 1;
        let end = span.end.clamp(start, line_end.max(start));
        SuiteError {
            path: path.to_owned(),
            line,
            column,
            message: message.into(),
            hint: None,
            source_line: source[line_start..line_end].to_owned(),
            width: source[start..end].chars().count().max(1),
        }
    }

    /// An error without a place in the file.
    pub fn general(path: &str, message: impl Into<String>) -> SuiteError {
        SuiteError {
            path: path.to_owned(),
            line: 0,
            column: 0,
            message: message.into(),
            hint: None,
            source_line: String::new(),
            width: 0,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> SuiteError {
        self.hint = Some(hint.into());
        self
    }

    pub(crate) fn from_toml(path: &str, source: &str, error: &toml::de::Error) -> SuiteError {
        let message = error.message().trim().to_owned();
        match error.span() {
            Some(span) => SuiteError::at(path, source, span, message),
            None => SuiteError::general(path, message),
        }
    }
}

impl fmt::Display for SuiteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.path, self.message)?;
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.path, self.line, self.column, self.message
            )?;
            let number = self.line.to_string();
            let pad = " ".repeat(number.len());
            write!(
                f,
                "\n{pad} |\n{number} | {}\n{pad} | {}{}",
                self.source_line,
                " ".repeat(self.column - 1),
                "^".repeat(self.width)
            )?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  = hint: {hint}")?;
        }
        Ok(())
    }
}

/// Every problem found in one pass over a suite.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SuiteErrors(pub Vec<SuiteError>);

impl fmt::Display for SuiteErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n\n")?;
            }
            write!(f, "error: {error}")?;
        }
        Ok(())
    }
}

impl From<SuiteError> for SuiteErrors {
    fn from(error: SuiteError) -> Self {
        SuiteErrors(vec![error])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_at_line_and_column() {
        let source = "[suite]\nname = \"x\"\ntags = \"api,page\"\n";
        let start = source.find("\"api").unwrap();
        let error = SuiteError::at("s.toml", source, start..start + 10, "tags must be a list")
            .with_hint("write [\"api\", \"page\"]");
        assert_eq!(
            error.to_string(),
            "s.toml:3:8: tags must be a list\n  |\n3 | tags = \"api,page\"\n  |        ^^^^^^^^^^\n  = hint: write [\"api\", \"page\"]"
        );
    }
}
