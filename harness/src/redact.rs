//! One redaction layer for everything a run writes. The run collects the
//! secrets it was given (passwords in the target's and the stack's URLs, the
//! user pool's passwords, the values of sensitive headers its tasks send, the
//! suite's own `[secrets] patterns`); when the run ends, every file in its
//! folder (the reports, the service logs, the target's output) is rewritten
//! with them masked, whatever the outcome, and the terminal summary is
//! masked as it is printed. Each secret is also masked in the forms JSON,
//! HTML and URLs give it. What is redacted becomes
//! `***`. Besides the known values, patterns catch what only the traffic
//! carries: URL userinfo, `Authorization`, `Cookie` and `Set-Cookie` values,
//! session ids and CSRF tokens.
//!
//! Secrets shorter than four characters are not redacted (they would blank
//! ordinary text) and are listed instead.

use std::borrow::Cow;
use std::path::Path;

use regex::Regex;

/// What replaces a secret.
pub const MASK: &str = "***";

/// Percent-encoding of everything but URL-unreserved characters: how a
/// password is written in a URL's userinfo.
const URL_UNRESERVED_KEPT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The shortest value redacted as a secret.
const SHORTEST: usize = 4;

/// Header names whose values are secrets.
pub const SENSITIVE_HEADERS: [&str; 6] = [
    "authorization",
    "cookie",
    "proxy-authorization",
    "x-api-key",
    "x-csrftoken",
    "x-csrf-token",
];

/// Patterns for what only the traffic carries, each keeping its first group.
const PATTERNS: [&str; 4] = [
    // userinfo of any URL
    r"(?i)([a-z][a-z0-9+.\-]*://[^/\s:@]+:)[^@\s/]+(@)",
    // header lines and JSON/TOML keys of sensitive headers
    r#"(?i)((?:authorization|proxy-authorization|cookie|set-cookie|x-api-key|x-csrftoken|x-csrf-token)["']?\s*[:=]\s*["']?)[^"'\r\n]+"#,
    // session ids, CSRF tokens and passwords in forms, cookies and query strings
    r#"(?i)((?:sessionid|session_id|csrftoken|csrfmiddlewaretoken|csrf_token|password|passwd)["']?\s*[=:]\s*["']?)[^"'&;\s<>,]+"#,
    // a CSRF token in a hidden input: name="csrfmiddlewaretoken" value="…"
    r#"(?i)(name=["']?(?:csrfmiddlewaretoken|csrf_token|_csrf|authenticity_token)["']?\s+value=["']?)[^"'\s>]+"#,
];

/// The secrets of one run.
#[derive(Debug, Clone)]
pub struct Redactor {
    values: Vec<String>,
    /// The values as one automaton (a user pool has thousands), built when
    /// first needed after the last value was added.
    automaton: std::sync::OnceLock<Option<aho_corasick::AhoCorasick>>,
    patterns: Vec<Regex>,
    /// Secrets too short to redact, for a note.
    pub too_short: usize,
}

impl Default for Redactor {
    fn default() -> Self {
        Redactor {
            values: Vec::new(),
            automaton: std::sync::OnceLock::new(),
            patterns: PATTERNS
                .iter()
                .map(|p| Regex::new(p).expect("a valid built-in pattern"))
                .collect(),
            too_short: 0,
        }
    }
}

impl Redactor {
    /// A secret value, and the forms it takes in JSON, HTML and URLs.
    pub fn secret(&mut self, value: &str) {
        if value.is_empty() {
            return;
        }
        if value.chars().count() < SHORTEST {
            self.too_short += 1;
            return;
        }
        let json = serde_json::to_string(value).unwrap_or_default();
        let json = json.trim_matches('"').to_owned();
        let html = html_escape::encode_text(value).into_owned();
        let html_attribute = html_escape::encode_double_quoted_attribute(value).into_owned();
        let url: String = url::form_urlencoded::byte_serialize(value.as_bytes()).collect();
        let percent = percent_encoding::utf8_percent_encode(value, URL_UNRESERVED_KEPT).to_string();
        for form in [value.to_owned(), json, html, html_attribute, url, percent] {
            if !self.values.contains(&form) {
                self.values.push(form);
            }
        }
        self.automaton = std::sync::OnceLock::new();
    }

    /// The password of a URL's userinfo (as written and decoded).
    pub fn url(&mut self, url: &str) {
        if let Ok(parsed) = url::Url::parse(url)
            && let Some(password) = parsed.password()
        {
            self.secret(password);
            if let Ok(decoded) = percent_encoding::percent_decode_str(password).decode_utf8() {
                self.secret(&decoded);
            }
        }
    }

    /// A suite's own pattern: whatever it matches is redacted.
    pub fn pattern(&mut self, pattern: &str) -> Result<(), regex::Error> {
        let regex = Regex::new(pattern)?;
        // As a group-less pattern: the whole match goes.
        self.patterns
            .push(Regex::new(&format!("()(?:{})", regex.as_str()))?);
        Ok(())
    }

    /// `text` with every secret and pattern match replaced by [`MASK`].
    pub fn text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let automaton = self.automaton.get_or_init(|| {
            // Leftmost-longest: a secret inside another leaves no tail.
            aho_corasick::AhoCorasick::builder()
                .match_kind(aho_corasick::MatchKind::LeftmostLongest)
                .build(&self.values)
                .ok()
        });
        let mut out = Cow::Borrowed(text);
        if let Some(automaton) = automaton
            && automaton.is_match(text)
        {
            let masks = vec![MASK; self.values.len()];
            out = Cow::Owned(automaton.replace_all(text, &masks));
        }
        for pattern in &self.patterns {
            if let Cow::Owned(replaced) = pattern.replace_all(&out, |c: &regex::Captures<'_>| {
                let kept = c.get(1).map_or("", |m| m.as_str());
                let tail = c.get(2).map_or("", |m| m.as_str());
                format!("{kept}{MASK}{tail}")
            }) {
                out = Cow::Owned(replaced);
            }
        }
        out
    }

    /// Rewrites every text file under `dir` redacted; returns how many changed.
    pub fn sweep(&self, dir: &Path) -> std::io::Result<usize> {
        self.sweep_except(dir, &[])
    }

    /// [`Redactor::sweep`], leaving out files named in `structured`: data
    /// whose strings were redacted one by one as it was written (a mask
    /// inside base64 or a schema name would corrupt it).
    pub fn sweep_except(&self, dir: &Path, structured: &[&str]) -> std::io::Result<usize> {
        let mut changed = 0;
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_dir() {
                changed += self.sweep_except(&path, structured)?;
                continue;
            }
            if path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|name| structured.contains(&name))
            {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue; // not text
            };
            if let Cow::Owned(redacted) = self.text(&text) {
                std::fs::write(&path, redacted)?;
                changed += 1;
            }
        }
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_and_traffic_patterns_are_masked() {
        let mut redactor = Redactor::default();
        redactor.secret("pool-pass-1");
        redactor.url("postgres://app:db%2Fsecret@127.0.0.1:5432/app");
        redactor.pattern(r"tok_[a-z0-9]{8}").unwrap();
        redactor.secret("abc");
        assert_eq!(redactor.too_short, 1);
        let text = r#"login with pool-pass-1; url postgres://app:db%2Fsecret@h/app and db/secret
Authorization: Bearer eyJhbGciOi.x.y
Set-Cookie: sessionid=k2j3h4; HttpOnly
<input type="hidden" name="csrfmiddlewaretoken" value="Zx9Y8w7V6u">
body {"password": "hunter22", "key": "tok_abcd1234"}
http://user:pw1234@example.test/"#;
        let out = redactor.text(text);
        for secret in [
            "pool-pass-1",
            "db%2Fsecret",
            "db/secret",
            "eyJhbGciOi",
            "k2j3h4",
            "Zx9Y8w7V6u",
            "hunter22",
            "tok_abcd1234",
            "pw1234",
        ] {
            assert!(!out.contains(secret), "{secret} left in:\n{out}");
        }
        assert!(out.contains("Set-Cookie: ***"), "{out}");
        assert!(out.contains("http://user:***@example.test/"), "{out}");
        // Ordinary text is left alone.
        assert_eq!(
            redactor.text("p95 of /dashboard/ 12 ms"),
            "p95 of /dashboard/ 12 ms"
        );
    }

    #[test]
    fn escaped_forms_are_masked_too() {
        let mut redactor = Redactor::default();
        redactor.secret(r#"a"b<c>&d"#);
        let json = serde_json::to_string(r#"x a"b<c>&d y"#).unwrap();
        assert!(!redactor.text(&json).contains(r#"a\"b<c>&d"#));
        let html = html_escape::encode_text(r#"x a"b<c>&d y"#).into_owned();
        assert!(redactor.text(&html).contains(MASK), "{html}");
    }
}
