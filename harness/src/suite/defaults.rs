//! The defaults of every suite setting, in one embedded TOML file
//! (`defaults.toml`), and the one rule that layers them under the suite
//! file, its profile and the command line.

use std::sync::OnceLock;
use std::time::Duration;

use serde::Deserialize;

use super::{CsrfSpec, LoginFields, ThinkTime};

/// The embedded defaults, as written.
pub const DEFAULTS_TOML: &str = include_str!("defaults.toml");

/// Every default a suite can lean on.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Defaults {
    pub data: DataDefaults,
    pub auth: AuthDefaults,
    pub task: TaskDefaults,
    pub target: TargetDefaults,
    pub load: LoadDefaults,
    pub truth: TruthDefaults,
    pub capacity: CapacityDefaults,
    /// Thresholds every suite has unless it names the same key.
    pub thresholds: indexmap::IndexMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DataDefaults {
    pub seed: u64,
    /// The data set seeded for the embedded reference service.
    pub embedded_target_set: String,
}

/// The login flow's names, as Django's login form has them; a suite's
/// `[auth]` overrides them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AuthDefaults {
    pub name: String,
    pub fields: LoginFields,
    pub csrf: CsrfSpec,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TaskDefaults {
    pub weight: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TargetDefaults {
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub ready_url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LoadDefaults {
    pub think_time: ThinkTime,
    #[serde(with = "humantime_serde")]
    pub warm_up: Duration,
    #[serde(with = "humantime_serde")]
    pub graceful_stop: Duration,
    pub workers: u32,
    #[serde(with = "humantime_serde")]
    pub max_lateness: Duration,
    #[serde(with = "humantime_serde")]
    pub time_unit: Duration,
    #[serde(with = "humantime_serde")]
    pub iterations_max_duration: Duration,
    pub pre_allocated_users_cap: u32,
    pub max_users_per_pre_allocated: u32,
}

/// A capacity search's settings (`[capacity]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CapacityDefaults {
    pub start: f64,
    pub growth: f64,
    pub resolution: super::Percent,
    pub max_rate: f64,
    #[serde(with = "humantime_serde")]
    pub step: Duration,
    #[serde(with = "humantime_serde")]
    pub settle: Duration,
    #[serde(with = "humantime_serde")]
    pub max_time: Duration,
    pub pre_allocated_users: u32,
    pub max_users: u32,
    pub confidence: super::Percent,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TruthDefaults {
    pub every: u32,
    pub tolerance: f64,
}

impl Defaults {
    /// The embedded defaults, parsed once. A unit test parses the same text,
    /// so a mistake in it fails the tests, not a run.
    pub fn embedded() -> &'static Defaults {
        static DEFAULTS: OnceLock<Defaults> = OnceLock::new();
        DEFAULTS.get_or_init(|| {
            toml::from_str(DEFAULTS_TOML).expect("defaults.toml is checked by a unit test")
        })
    }
}

/// The value a setting takes. This function is the one place that orders
/// the layers: the command line over the profile over the suite file over
/// the defaults.
pub fn layered<T>(default: T, file: Option<T>, profile: Option<T>, command_line: Option<T>) -> T {
    command_line.or(profile).or(file).unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_defaults_parse_with_no_unknown_keys() {
        let mut unknown = Vec::new();
        let deserializer = toml::Deserializer::parse(DEFAULTS_TOML).unwrap();
        let defaults: Defaults =
            serde_ignored::deserialize(deserializer, |path| unknown.push(path.to_string()))
                .unwrap();
        assert_eq!(unknown, Vec::<String>::new());
        assert_eq!(&defaults, Defaults::embedded());
        assert_eq!(defaults.data.seed, 42);
        assert_eq!(defaults.load.workers, 1);
        assert_eq!(defaults.target.timeout, Duration::from_secs(120));
        assert_eq!(defaults.auth.fields.user, "login");
        assert_eq!(defaults.task.weight, 1);
        for (key, expression) in &defaults.thresholds {
            key.parse::<crate::suite::threshold::Selector>().unwrap();
            expression
                .parse::<crate::suite::threshold::Expression>()
                .unwrap();
        }
    }

    #[track_caller]
    fn check(file: Option<u32>, profile: Option<u32>, command_line: Option<u32>, expect: u32) {
        assert_eq!(layered(1, file, profile, command_line), expect);
    }

    #[test]
    fn the_command_line_beats_the_profile_beats_the_file_beats_the_defaults() {
        check(None, None, None, 1);
        check(Some(2), None, None, 2);
        check(Some(2), Some(3), None, 3);
        check(Some(2), Some(3), Some(4), 4);
        check(None, None, Some(4), 4);
        check(Some(2), None, Some(4), 4);
    }
}
