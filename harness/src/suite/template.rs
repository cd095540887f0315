//! Templates for paths, headers and bodies: `/detail_project/{project_id}/`,
//! `{pekerjaan_id|int}` (a JSON number), `{random_decimal(1, 500, 2)}`.
//! Parsed once when the suite is planned; rendered per request into a
//! reused buffer.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// How a variable's text becomes a JSON value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Filter {
    /// As text.
    Text,
    /// As a JSON integer.
    Int,
    /// As a JSON number.
    Num,
}

/// A generator of fresh values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Function {
    RandomInt { low: i64, high: i64 },
    RandomDecimal { low: f64, high: f64, places: u32 },
    Uuid,
    NowMillis,
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Segment {
    Literal(String),
    Var { name: String, filter: Filter },
    Call { function: Function, filter: Filter },
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Template {
    pub segments: Vec<Segment>,
}

/// A template error with its byte offset in the source text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    pub offset: usize,
    pub message: String,
}

/// Variables every virtual user has without a catalog.
pub const BUILTIN_VARIABLES: [&str; 3] = ["vu", "iteration", "user"];

impl Template {
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut segments = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if chars.peek().is_some_and(|(_, n)| *n == '{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().is_some_and(|(_, n)| *n == '}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let close = text[i..].find('}').ok_or_else(|| TemplateError {
                        offset: i,
                        message: "`{` without a closing `}` (write `{{` for a literal brace)"
                            .into(),
                    })?;
                    let inner = &text[i + 1..i + close];
                    if !literal.is_empty() {
                        segments.push(Segment::Literal(std::mem::take(&mut literal)));
                    }
                    segments.push(parse_placeholder(inner, i + 1)?);
                    while chars.peek().is_some_and(|(j, _)| *j <= i + close) {
                        chars.next();
                    }
                }
                '}' => {
                    return Err(TemplateError {
                        offset: i,
                        message: "`}` without an opening `{` (write `}}` for a literal brace)"
                            .into(),
                    });
                }
                other => literal.push(other),
            }
        }
        if !literal.is_empty() {
            segments.push(Segment::Literal(literal));
        }
        Ok(Template { segments })
    }

    /// Variables the template reads, with their offsets, for validation.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Var { name, .. } => Some(name.as_str()),
            _ => None,
        })
    }

    pub fn is_literal(&self) -> bool {
        self.segments
            .iter()
            .all(|s| matches!(s, Segment::Literal(_)))
    }

    /// A template that is exactly one placeholder with a numeric filter
    /// renders as a JSON number.
    pub fn numeric_filter(&self) -> Option<Filter> {
        match self.segments.as_slice() {
            [Segment::Var { filter, .. } | Segment::Call { filter, .. }]
                if *filter != Filter::Text =>
            {
                Some(*filter)
            }
            _ => None,
        }
    }

    /// Renders into `out` (cleared first).
    pub fn render(&self, vars: &mut dyn Variables, out: &mut String) -> Result<(), RenderError> {
        out.clear();
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => out.push_str(text),
                Segment::Var { name, .. } => {
                    if !vars.write_var(name, out) {
                        return Err(RenderError::Missing(name.clone()));
                    }
                }
                Segment::Call { function, .. } => vars.call(function, out),
            }
        }
        Ok(())
    }

    pub fn render_to_string(&self, vars: &mut dyn Variables) -> Result<String, RenderError> {
        let mut out = String::new();
        self.render(vars, &mut out)?;
        Ok(out)
    }
}

fn parse_placeholder(inner: &str, offset: usize) -> Result<Segment, TemplateError> {
    let (expression, filter) = match inner.rsplit_once('|') {
        Some((expression, filter)) => {
            let filter = match filter.trim() {
                "int" => Filter::Int,
                "num" => Filter::Num,
                "text" => Filter::Text,
                other => {
                    return Err(TemplateError {
                        offset: offset + expression.len() + 1,
                        message: format!("unknown filter `{other}` (use int, num or text)"),
                    });
                }
            };
            (expression.trim(), filter)
        }
        None => (inner.trim(), Filter::Text),
    };
    if let Some(open) = expression.find('(') {
        let name = &expression[..open];
        let args_text = expression[open + 1..]
            .strip_suffix(')')
            .ok_or_else(|| TemplateError {
                offset: offset + expression.len(),
                message: format!("missing `)` in `{expression}`"),
            })?;
        let args: Vec<&str> = args_text
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .collect();
        let number = |i: usize| -> Result<f64, TemplateError> {
            args.get(i)
                .and_then(|a| a.parse().ok())
                .ok_or_else(|| TemplateError {
                    offset,
                    message: format!("`{name}` needs numeric arguments (got `{args_text}`)"),
                })
        };
        let function = match (name, args.len()) {
            ("random_int", 2) => {
                let (low, high) = (number(0)? as i64, number(1)? as i64);
                if low > high {
                    return Err(TemplateError {
                        offset,
                        message: format!("random_int({low}, {high}): low > high"),
                    });
                }
                Function::RandomInt { low, high }
            }
            ("random_decimal", 3) => {
                let (low, high, places) = (number(0)?, number(1)?, number(2)? as u32);
                if low > high || places > 9 {
                    return Err(TemplateError {
                        offset,
                        message: format!("random_decimal({args_text}) is out of range"),
                    });
                }
                Function::RandomDecimal { low, high, places }
            }
            ("uuid", 0) => Function::Uuid,
            ("now_ms", 0) => Function::NowMillis,
            _ => {
                return Err(TemplateError {
                    offset,
                    message: format!(
                        "unknown function `{name}` with {} argument(s) (use random_int(low, high), \
                         random_decimal(low, high, places), uuid() or now_ms())",
                        args.len()
                    ),
                });
            }
        };
        return Ok(Segment::Call { function, filter });
    }
    if expression.is_empty()
        || !expression
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    {
        return Err(TemplateError {
            offset,
            message: format!("`{expression}` is not a variable name"),
        });
    }
    Ok(Segment::Var {
        name: expression.to_owned(),
        filter,
    })
}

/// Why a template could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("no value for `{{{0}}}`")]
    Missing(String),
}

/// Where rendering finds values: the virtual user's variables, its catalog
/// user, built-ins and generators.
pub trait Variables {
    /// Writes the variable's value; false if it has none.
    fn write_var(&mut self, name: &str, out: &mut String) -> bool;
    /// Writes a generated value.
    fn call(&mut self, function: &Function, out: &mut String);
}

/// Writes a generated value with `random` as the source.
pub fn call_with(function: &Function, random: &mut impl rand::Rng, out: &mut String) {
    match function {
        Function::RandomInt { low, high } => {
            let _ = write!(out, "{}", random.random_range(*low..=*high));
        }
        Function::RandomDecimal { low, high, places } => {
            let value = if low == high {
                *low
            } else {
                random.random_range(*low..*high)
            };
            let _ = write!(out, "{value:.*}", *places as usize);
        }
        Function::Uuid => {
            let bytes: [u8; 16] = random.random();
            for (i, byte) in bytes.iter().enumerate() {
                if matches!(i, 4 | 6 | 8 | 10) {
                    out.push('-');
                }
                let _ = write!(out, "{byte:02x}");
            }
        }
        Function::NowMillis => {
            let millis = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0);
            let _ = write!(out, "{millis}");
        }
    }
}

/// A JSON body template: a JSON value whose strings are templates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum JsonTemplate {
    Fixed(serde_json::Value),
    Text(Template),
    Array(Vec<JsonTemplate>),
    Object(Vec<(String, JsonTemplate)>),
}

impl JsonTemplate {
    /// Compiles a TOML value, parsing every string as a template.
    pub fn compile(value: &toml::Value) -> Result<JsonTemplate, TemplateError> {
        Ok(match value {
            toml::Value::String(text) => {
                let template = Template::parse(text)?;
                if template.is_literal() {
                    JsonTemplate::Fixed(serde_json::Value::String(text.clone()))
                } else {
                    JsonTemplate::Text(template)
                }
            }
            toml::Value::Integer(n) => JsonTemplate::Fixed((*n).into()),
            toml::Value::Float(n) => JsonTemplate::Fixed(serde_json::json!(n)),
            toml::Value::Boolean(b) => JsonTemplate::Fixed((*b).into()),
            toml::Value::Datetime(d) => JsonTemplate::Fixed(d.to_string().into()),
            toml::Value::Array(items) => JsonTemplate::Array(
                items
                    .iter()
                    .map(JsonTemplate::compile)
                    .collect::<Result<_, _>>()?,
            ),
            toml::Value::Table(table) => JsonTemplate::Object(
                table
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), JsonTemplate::compile(v)?)))
                    .collect::<Result<_, TemplateError>>()?,
            ),
        })
    }

    pub fn variables(&self) -> Vec<&str> {
        let mut names = Vec::new();
        self.collect_variables(&mut names);
        names
    }

    fn collect_variables<'a>(&'a self, into: &mut Vec<&'a str>) {
        match self {
            JsonTemplate::Fixed(_) => {}
            JsonTemplate::Text(template) => into.extend(template.variables()),
            JsonTemplate::Array(items) => items.iter().for_each(|i| i.collect_variables(into)),
            JsonTemplate::Object(fields) => {
                fields.iter().for_each(|(_, v)| v.collect_variables(into))
            }
        }
    }

    pub fn render(&self, vars: &mut dyn Variables) -> Result<serde_json::Value, RenderError> {
        Ok(match self {
            JsonTemplate::Fixed(value) => value.clone(),
            JsonTemplate::Text(template) => {
                let text = template.render_to_string(vars)?;
                match template.numeric_filter() {
                    Some(Filter::Int) => text
                        .parse::<i64>()
                        .map(Into::into)
                        .unwrap_or(serde_json::Value::String(text)),
                    Some(Filter::Num) => serde_json::from_str::<serde_json::Number>(&text)
                        .map(serde_json::Value::Number)
                        .unwrap_or(serde_json::Value::String(text)),
                    _ => serde_json::Value::String(text),
                }
            }
            JsonTemplate::Array(items) => serde_json::Value::Array(
                items
                    .iter()
                    .map(|i| i.render(vars))
                    .collect::<Result<_, _>>()?,
            ),
            JsonTemplate::Object(fields) => serde_json::Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), v.render(vars)?)))
                    .collect::<Result<_, RenderError>>()?,
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use rand::SeedableRng as _;

    use super::*;

    struct Map(HashMap<&'static str, &'static str>, rand_chacha::ChaCha8Rng);

    impl Variables for Map {
        fn write_var(&mut self, name: &str, out: &mut String) -> bool {
            self.0.get(name).map(|v| out.push_str(v)).is_some()
        }
        fn call(&mut self, function: &Function, out: &mut String) {
            call_with(function, &mut self.1, out);
        }
    }

    fn vars() -> Map {
        Map(
            HashMap::from([
                ("project_id", "7"),
                ("pekerjaan_id", "42"),
                ("version", "3"),
            ]),
            rand_chacha::ChaCha8Rng::seed_from_u64(1),
        )
    }

    #[test]
    fn templates_render() {
        let t = Template::parse("/detail_project/{project_id}/rekap-rab/?x={{y}}").unwrap();
        assert_eq!(
            t.render_to_string(&mut vars()).unwrap(),
            "/detail_project/7/rekap-rab/?x={y}"
        );
        let t = Template::parse("{missing}").unwrap();
        assert_eq!(
            t.render_to_string(&mut vars()),
            Err(RenderError::Missing("missing".into()))
        );
    }

    #[test]
    fn template_errors_point_inside_the_text() {
        let error = Template::parse("/x/{project_id").unwrap_err();
        assert_eq!(
            (error.offset, error.message.as_str()),
            (
                3,
                "`{` without a closing `}` (write `{{` for a literal brace)"
            )
        );
        let error = Template::parse("{a|float}").unwrap_err();
        assert_eq!(
            error.message,
            "unknown filter `float` (use int, num or text)"
        );
        let error = Template::parse("{random(1,2)}").unwrap_err();
        assert!(
            error.message.starts_with("unknown function `random`"),
            "{}",
            error.message
        );
    }

    #[test]
    fn json_bodies_render_typed_values() {
        let toml: toml::Value = toml::from_str(
            r#"pekerjaan = [{ id = "{pekerjaan_id|int}", volume = "{random_decimal(1, 2, 2)}", version = "{version|int}", note = "p{project_id}" }]"#,
        )
        .unwrap();
        let template = JsonTemplate::compile(&toml).unwrap();
        let value = template.render(&mut vars()).unwrap();
        let row = &value["pekerjaan"][0];
        assert_eq!(row["id"], 42);
        assert_eq!(row["version"], 3);
        assert_eq!(row["note"], "p7");
        let volume: f64 = row["volume"].as_str().unwrap().parse().unwrap();
        assert!((1.0..2.0).contains(&volume));
        assert_eq!(
            template.variables(),
            ["pekerjaan_id", "version", "project_id"]
        );
    }
}
