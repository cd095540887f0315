//! Threshold expressions in k6's familiar form — `p(95) < 200ms`,
//! `rate > 99%`, `max < 100s`, `count == 0` — and the metric selectors they
//! apply to (`http.duration{name:/dashboard/}`).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::metric::Metric;

/// What is computed from a metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Aggregate {
    /// A percentile, 0–100.
    Percentile(f64),
    Avg,
    Min,
    Max,
    Med,
    /// A fraction (shown as a percentage): success rate, failure rate.
    Rate,
    Count,
    /// A single named value (probe peaks, budgets, coverage).
    Value,
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Comparison {
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
    Equal,
    NotEqual,
}

impl Comparison {
    pub fn holds(self, observed: f64, limit: f64) -> bool {
        match self {
            Comparison::Less => observed < limit,
            Comparison::LessOrEqual => observed <= limit,
            Comparison::Greater => observed > limit,
            Comparison::GreaterOrEqual => observed >= limit,
            Comparison::Equal => (observed - limit).abs() < 1e-9,
            Comparison::NotEqual => (observed - limit).abs() >= 1e-9,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Comparison::Less => "<",
            Comparison::LessOrEqual => "<=",
            Comparison::Greater => ">",
            Comparison::GreaterOrEqual => ">=",
            Comparison::Equal => "==",
            Comparison::NotEqual => "!=",
        }
    }
}

/// The unit a limit was written in, kept for display.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Unit {
    None,
    Micros,
    Millis,
    Seconds,
    Minutes,
    Percent,
}

/// A limit: its value in the metric's base unit (milliseconds for
/// durations, a fraction for rates) and how it was written.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Limit {
    pub written: f64,
    pub unit: Unit,
}

impl Limit {
    /// The limit in milliseconds (durations), as a fraction (percent), or as is.
    pub fn base(&self) -> f64 {
        match self.unit {
            Unit::None => self.written,
            Unit::Micros => self.written / 1000.0,
            Unit::Millis => self.written,
            Unit::Seconds => self.written * 1000.0,
            Unit::Minutes => self.written * 60_000.0,
            Unit::Percent => self.written / 100.0,
        }
    }
}

/// `aggregate comparison limit`, e.g. `p(99) < 2s`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Expression {
    pub aggregate: Aggregate,
    pub comparison: Comparison,
    pub limit: Limit,
}

/// A parse error with the byte offset inside the expression where it went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ExpressionError {
    pub offset: usize,
    pub message: String,
}

fn error(offset: usize, message: impl Into<String>) -> ExpressionError {
    ExpressionError {
        offset,
        message: message.into(),
    }
}

impl std::str::FromStr for Expression {
    type Err = ExpressionError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut cursor = Cursor { text, at: 0 };
        cursor.skip_spaces();
        // `<= 5` alone judges the metric's single value.
        let aggregate = if cursor.rest().starts_with(['<', '>', '=', '!']) {
            Aggregate::Value
        } else {
            cursor.aggregate()?
        };
        cursor.skip_spaces();
        let comparison = cursor.comparison()?;
        cursor.skip_spaces();
        let limit = cursor.limit()?;
        cursor.skip_spaces();
        if cursor.at != text.len() {
            return Err(error(
                cursor.at,
                format!("unexpected `{}` after the limit", &text[cursor.at..]),
            ));
        }
        Ok(Expression {
            aggregate,
            comparison,
            limit,
        })
    }
}

struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl Cursor<'_> {
    fn rest(&self) -> &str {
        &self.text[self.at..]
    }

    fn skip_spaces(&mut self) {
        let trimmed = self.rest().trim_start();
        self.at = self.text.len() - trimmed.len();
    }

    fn aggregate(&mut self) -> Result<Aggregate, ExpressionError> {
        let start = self.at;
        let word: String = self
            .rest()
            .chars()
            .take_while(|c| c.is_ascii_alphabetic())
            .collect();
        self.at += word.len();
        let aggregate = match word.as_str() {
            "p" => {
                if !self.rest().starts_with('(') {
                    return Err(error(self.at, "write a percentile as p(95)"));
                }
                let close = self
                    .rest()
                    .find(')')
                    .ok_or_else(|| error(self.at, "missing `)` in p(…)"))?;
                let number = &self.rest()[1..close];
                let percentile: f64 = number
                    .trim()
                    .parse()
                    .map_err(|_| error(self.at + 1, format!("`{number}` is not a percentile")))?;
                if !(0.0..=100.0).contains(&percentile) {
                    return Err(error(self.at + 1, "a percentile is between 0 and 100"));
                }
                self.at += close + 1;
                Aggregate::Percentile(percentile)
            }
            "avg" => Aggregate::Avg,
            "min" => Aggregate::Min,
            "max" => Aggregate::Max,
            "med" => Aggregate::Med,
            "rate" => Aggregate::Rate,
            "count" => Aggregate::Count,
            "value" => Aggregate::Value,
            "" => {
                return Err(error(
                    start,
                    "expected p(N), avg, min, max, med, rate, count or value",
                ));
            }
            other => {
                return Err(error(
                    start,
                    format!(
                        "unknown aggregate `{other}` (use p(N), avg, min, max, med, rate, count or value)"
                    ),
                ));
            }
        };
        Ok(aggregate)
    }

    fn comparison(&mut self) -> Result<Comparison, ExpressionError> {
        for (symbol, comparison) in [
            ("<=", Comparison::LessOrEqual),
            (">=", Comparison::GreaterOrEqual),
            ("==", Comparison::Equal),
            ("!=", Comparison::NotEqual),
            ("<", Comparison::Less),
            (">", Comparison::Greater),
        ] {
            if self.rest().starts_with(symbol) {
                self.at += symbol.len();
                return Ok(comparison);
            }
        }
        if self.rest().starts_with('=') {
            return Err(error(self.at, "write equality as `==`"));
        }
        Err(error(
            self.at,
            "expected a comparison (<, <=, >, >=, ==, !=)",
        ))
    }

    fn limit(&mut self) -> Result<Limit, ExpressionError> {
        let start = self.at;
        let number: String = self
            .rest()
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == '-' || *c == '_')
            .collect();
        if number.is_empty() {
            return Err(error(start, "expected a number"));
        }
        let written: f64 = number
            .replace('_', "")
            .parse()
            .map_err(|_| error(start, format!("`{number}` is not a number")))?;
        self.at += number.len();
        let unit_text: String = self
            .rest()
            .chars()
            .take_while(|c| !c.is_whitespace())
            .collect();
        let unit = match unit_text.as_str() {
            "" => Unit::None,
            "us" | "µs" => Unit::Micros,
            "ms" => Unit::Millis,
            "s" => Unit::Seconds,
            "m" | "min" => Unit::Minutes,
            "%" => Unit::Percent,
            other => {
                return Err(error(
                    self.at,
                    format!("unknown unit `{other}` (use us, ms, s, m or %)"),
                ));
            }
        };
        self.at += unit_text.len();
        Ok(Limit { written, unit })
    }
}

impl fmt::Display for Expression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.aggregate {
            Aggregate::Percentile(p) => write!(f, "p({p})")?,
            Aggregate::Avg => f.write_str("avg")?,
            Aggregate::Min => f.write_str("min")?,
            Aggregate::Max => f.write_str("max")?,
            Aggregate::Med => f.write_str("med")?,
            Aggregate::Rate => f.write_str("rate")?,
            Aggregate::Count => f.write_str("count")?,
            Aggregate::Value => f.write_str("value")?,
        }
        write!(f, " {} {}", self.comparison.symbol(), self.limit.written)?;
        f.write_str(match self.limit.unit {
            Unit::None => "",
            Unit::Micros => "us",
            Unit::Millis => "ms",
            Unit::Seconds => "s",
            Unit::Minutes => "m",
            Unit::Percent => "%",
        })
    }
}

/// A metric and its filters: `http.duration{name:/dashboard/,method:GET}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Selector {
    pub metric: Metric,
    pub filters: Vec<(String, String)>,
}

impl Selector {
    pub fn filter(&self, key: &str) -> Option<&str> {
        self.filters
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl std::str::FromStr for Selector {
    type Err = ExpressionError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        // The function form: `queries_per_request("/detail_project/[id]/rekap-rab/")`.
        if let Some((metric, rest)) = text.split_once("(\"") {
            let name = rest
                .strip_suffix("\")")
                .ok_or_else(|| error(text.len(), "write a named metric as metric(\"name\")"))?;
            return Ok(Selector {
                metric: metric_named(metric),
                filters: vec![("name".to_owned(), name.to_owned())],
            });
        }
        let Some(open) = text.find('{') else {
            if text.is_empty() {
                return Err(error(0, "empty metric name"));
            }
            return Ok(Selector {
                metric: metric_named(text),
                filters: Vec::new(),
            });
        };
        if !text.ends_with('}') {
            return Err(error(text.len(), "missing `}` after the filters"));
        }
        let metric = metric_named(&text[..open]);
        let inner = &text[open + 1..text.len() - 1];
        let mut filters = Vec::new();
        let mut offset = open + 1;
        // A filter value may hold commas and colons (a path); filters are
        // split on a comma followed by a known key.
        for part in split_filters(inner) {
            let (key, value) = part.split_once(':').ok_or_else(|| {
                error(
                    offset,
                    format!("`{part}` is not `key:value` (e.g. name:/dashboard/)"),
                )
            })?;
            filters.push((key.trim().to_owned(), value.trim().to_owned()));
            offset += part.len() + 1;
        }
        Ok(Selector { metric, filters })
    }
}

fn metric_named(name: &str) -> Metric {
    name.parse()
        .unwrap_or_else(|never: std::convert::Infallible| match never {})
}

/// Filter keys a selector understands.
pub const FILTER_KEYS: [&str; 6] = ["name", "tag", "method", "kind", "phase", "page"];

fn split_filters(inner: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    for (i, _) in inner.match_indices(',') {
        let next = &inner[i + 1..];
        if FILTER_KEYS
            .iter()
            .any(|k| next.trim_start().starts_with(&format!("{k}:")))
        {
            parts.push(&inner[start..i]);
            start = i + 1;
        }
    }
    parts.push(&inner[start..]);
    parts
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.metric.as_str())?;
        if !self.filters.is_empty() {
            let inner: Vec<String> = self
                .filters
                .iter()
                .map(|(k, v)| format!("{k}:{v}"))
                .collect();
            write!(f, "{{{}}}", inner.join(","))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[track_caller]
    fn check(text: &str, expect: &str) {
        match text.parse::<Expression>() {
            Ok(expression) => assert_eq!(expression.to_string(), expect),
            Err(e) => assert_eq!(format!("error at {}: {}", e.offset, e.message), expect),
        }
    }

    #[test]
    fn parses_k6_forms() {
        check("p(95) < 200ms", "p(95) < 200ms");
        check("p(99.9)<=2s", "p(99.9) <= 2s");
        check("rate > 99%", "rate > 99%");
        check("max < 100s", "max < 100s");
        check("count == 0", "count == 0");
        check("value <= 5", "value <= 5");
        check("p95 < 1s", "error at 1: write a percentile as p(95)");
        check("rate = 0", "error at 5: write equality as `==`");
        check("avg < 10 ms", "error at 9: unexpected `ms` after the limit");
        check(
            "mean < 1s",
            "error at 0: unknown aggregate `mean` (use p(N), avg, min, max, med, rate, count or value)",
        );
        check(
            "max < 1h",
            "error at 7: unknown unit `h` (use us, ms, s, m or %)",
        );
    }

    #[test]
    fn limits_convert_to_base_units() {
        let e: Expression = "p(99) < 2s".parse().unwrap();
        assert_eq!(e.limit.base(), 2000.0);
        let e: Expression = "rate > 99.5%".parse().unwrap();
        assert!((e.limit.base() - 0.995).abs() < 1e-12);
    }

    #[test]
    fn selectors_keep_paths_with_colons_and_commas() {
        let s: Selector = "http.duration{name:/api/v2/project/[id]/chart-data/,method:GET}"
            .parse()
            .unwrap();
        assert_eq!(s.metric, Metric::HttpDuration);
        assert_eq!(s.filter("name"), Some("/api/v2/project/[id]/chart-data/"));
        assert_eq!(s.filter("method"), Some("GET"));
        assert_eq!(
            s.to_string(),
            "http.duration{name:/api/v2/project/[id]/chart-data/,method:GET}"
        );
    }

    fn aggregate() -> impl Strategy<Value = Aggregate> {
        prop_oneof![
            (0u32..=1000).prop_map(|p| Aggregate::Percentile(f64::from(p) / 10.0)),
            Just(Aggregate::Avg),
            Just(Aggregate::Min),
            Just(Aggregate::Max),
            Just(Aggregate::Med),
            Just(Aggregate::Rate),
            Just(Aggregate::Count),
            Just(Aggregate::Value),
        ]
    }

    fn comparison() -> impl Strategy<Value = Comparison> {
        prop_oneof![
            Just(Comparison::Less),
            Just(Comparison::LessOrEqual),
            Just(Comparison::Greater),
            Just(Comparison::GreaterOrEqual),
            Just(Comparison::Equal),
            Just(Comparison::NotEqual),
        ]
    }

    fn unit() -> impl Strategy<Value = Unit> {
        prop_oneof![
            Just(Unit::None),
            Just(Unit::Micros),
            Just(Unit::Millis),
            Just(Unit::Seconds),
            Just(Unit::Minutes),
            Just(Unit::Percent),
        ]
    }

    proptest! {
        #[test]
        fn expressions_round_trip(aggregate in aggregate(), comparison in comparison(), n in 0u32..1_000_000, unit in unit()) {
            let expression = Expression { aggregate, comparison, limit: Limit { written: f64::from(n) / 100.0, unit } };
            let text = expression.to_string();
            let back: Expression = text.parse().unwrap();
            prop_assert_eq!(back, expression);
        }
    }
}
