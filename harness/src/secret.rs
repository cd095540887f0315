//! Secrets a run is given, held in types that cannot write them: a
//! password of the user pool, a URL with a password in it. Their `Debug`,
//! `Display` and `Serialize` write the secret masked, so a report, a
//! baseline, a shard file or a log line built from them is safe as it is
//! written; only `expose_secret` gives the value, at the one place that
//! sends it (the login form, a connection).
//!
//! The value itself lives in `secrecy`'s `SecretString` (zeroed on drop,
//! `[REDACTED]` in `Debug`, no `Serialize` of its own); these wrappers add
//! what a run's files need: a masked form that keeps the rest readable
//! (`http://bob:***@127.0.0.1:8000`), and deserializing from suite files
//! and the environment.

use std::fmt;

use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::redact::MASK;

/// A password that never prints.
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(SecretString::from(value.into()))
    }

    /// The value, for the one place that needs it: the login form.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Serialize for Secret {
    /// Masked: nothing serialized from a run may carry a password.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(MASK)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Secret, D::Error> {
        String::deserialize(deserializer).map(Secret::new)
    }
}

/// A URL that may carry a password (`http://bob:SECRET@127.0.0.1:8000`):
/// it shows, debugs and serializes as `http://bob:***@127.0.0.1:8000`.
#[derive(Clone)]
pub struct SecretUrl {
    masked: String,
    whole: SecretString,
}

impl SecretUrl {
    pub fn new(url: impl Into<String>) -> SecretUrl {
        let url = url.into();
        SecretUrl {
            masked: mask_password(&url),
            whole: SecretString::from(url),
        }
    }

    /// The URL as given, for the places that connect with it.
    pub fn expose_secret(&self) -> &str {
        self.whole.expose_secret()
    }

    /// The same URL without a trailing `/`.
    pub fn trim_end_slash(&self) -> SecretUrl {
        SecretUrl::new(self.expose_secret().trim_end_matches('/'))
    }
}

/// `url` with the password of its userinfo replaced by [`MASK`], the rest
/// kept as written (no re-serializing that would add a `/` or reorder).
pub fn mask_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let authority_start = scheme_end + 3;
    let authority_end = url[authority_start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| authority_start + i);
    let authority = &url[authority_start..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &authority[..at];
    let Some(colon) = userinfo.find(':') else {
        return url.to_owned();
    };
    format!(
        "{}{}:{MASK}{}",
        &url[..authority_start],
        &userinfo[..colon],
        &url[authority_start + at..]
    )
}

impl From<&str> for SecretUrl {
    fn from(url: &str) -> SecretUrl {
        SecretUrl::new(url)
    }
}

impl PartialEq for SecretUrl {
    fn eq(&self, other: &SecretUrl) -> bool {
        self.expose_secret() == other.expose_secret()
    }
}

impl Eq for SecretUrl {}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked)
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.masked, f)
    }
}

impl Serialize for SecretUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.masked)
    }
}

impl<'de> Deserialize<'de> for SecretUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<SecretUrl, D::Error> {
        String::deserialize(deserializer).map(SecretUrl::new)
    }
}

impl schemars::JsonSchema for SecretUrl {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SecretUrl".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        String::json_schema(generator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(url: &str, expect: &str) {
        let secret = SecretUrl::new(url);
        assert_eq!(secret.to_string(), expect);
        assert_eq!(format!("{secret:?}"), format!("{expect:?}"));
        assert_eq!(
            serde_json::to_string(&secret).unwrap(),
            serde_json::to_string(expect).unwrap()
        );
        assert_eq!(secret.expose_secret(), url);
    }

    #[test]
    fn a_url_shows_everything_but_its_password() {
        check(
            "http://bob:SECRET@127.0.0.1:8000/",
            "http://bob:***@127.0.0.1:8000/",
        );
        check(
            "postgres://app:p%40ss@h:5432/db?sslmode=disable",
            "postgres://app:***@h:5432/db?sslmode=disable",
        );
        check("http://bob@127.0.0.1/", "http://bob@127.0.0.1/");
        check("http://127.0.0.1:8000", "http://127.0.0.1:8000");
        check("http://127.0.0.1/a@b:c", "http://127.0.0.1/a@b:c");
        check("not a url", "not a url");
    }

    #[test]
    fn a_password_never_prints_and_serializes_masked() {
        let secret = Secret::new("rahasia");
        assert_eq!(format!("{secret:?}"), "Secret(***)");
        assert_eq!(serde_json::to_string(&secret).unwrap(), "\"***\"");
        let back: Secret = serde_json::from_str("\"rahasia\"").unwrap();
        assert_eq!(back.expose(), "rahasia");
    }
}
