//! The data catalog: what a suite's virtual users may log in as and draw
//! template variables from. The seeder of a data set produces it (for AHSP:
//! users with passwords, the projects each can see, the pekerjaan and harga
//! items of each project); suites sample from it.
//!
//! It is a tree of scopes so that a variable is always drawn consistently
//! with its parents: a `{pekerjaan_id}` comes from the project that
//! `{project_id}` names, and that project is one the user can see.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use crate::secret::Secret;

/// Variables available at one level of the tree: each name has a list of
/// possible values, and each value opens a scope of its own.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Scope {
    pub vars: BTreeMap<String, Vec<Choice>>,
}

/// One possible value of a variable, with the variables it makes available.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    pub value: String,
    /// Shared between users who see the same entity (a project's scope).
    #[serde(default, skip_serializing_if = "scope_is_empty")]
    pub scope: Arc<Scope>,
}

fn scope_is_empty(scope: &Arc<Scope>) -> bool {
    scope.vars.is_empty()
}

impl Choice {
    pub fn leaf(value: impl Into<String>) -> Choice {
        Choice {
            value: value.into(),
            scope: Arc::new(Scope::default()),
        }
    }
}

/// A user a virtual user can log in as.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogUser {
    pub login: String,
    pub password: Secret,
    /// What this user can see (e.g. `project_id` → the projects they own or
    /// are a member of).
    pub scope: Scope,
}

/// Everything a data set offers to suites.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    pub users: Vec<CatalogUser>,
    /// Variables the same for every user (e.g. a unit list).
    #[serde(default)]
    pub global: Scope,
}

impl Scope {
    /// Every variable name reachable from this scope, at any depth.
    pub fn names(&self, into: &mut std::collections::BTreeSet<String>) {
        for (name, choices) in &self.vars {
            into.insert(name.clone());
            // Children of one choice are representative of all of them in a
            // well-formed catalog, but a sparse one (a project without
            // pekerjaan) is possible, so look at every distinct scope.
            let mut seen = std::collections::HashSet::new();
            for choice in choices {
                if seen.insert(Arc::as_ptr(&choice.scope)) {
                    choice.scope.names(into);
                }
            }
        }
    }

    /// The chain of variable names from this scope down to `target`, e.g.
    /// `["project_id", "pekerjaan_id"]`, or `None` if it is not reachable.
    pub fn path_to(&self, target: &str) -> Option<Vec<String>> {
        if self.vars.contains_key(target) {
            return Some(vec![target.to_owned()]);
        }
        for (name, choices) in &self.vars {
            for choice in choices {
                if let Some(mut rest) = choice.scope.path_to(target) {
                    rest.insert(0, name.clone());
                    return Some(rest);
                }
            }
        }
        None
    }
}

impl Catalog {
    /// Every variable a template may use with this catalog.
    pub fn variable_names(&self) -> std::collections::BTreeSet<String> {
        let mut names = std::collections::BTreeSet::new();
        self.global.names(&mut names);
        for user in &self.users {
            user.scope.names(&mut names);
        }
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(id: &str, pekerjaan: &[&str]) -> Choice {
        let scope = Scope {
            vars: BTreeMap::from([(
                "pekerjaan_id".to_owned(),
                pekerjaan.iter().map(|p| Choice::leaf(*p)).collect(),
            )]),
        };
        Choice {
            value: id.to_owned(),
            scope: Arc::new(scope),
        }
    }

    #[test]
    fn paths_and_names_reach_nested_variables() {
        let user = CatalogUser {
            login: "budi".into(),
            password: Secret::new("rahasia"),
            scope: Scope {
                vars: BTreeMap::from([(
                    "project_id".to_owned(),
                    vec![project("1", &["10", "11"])],
                )]),
            },
        };
        let catalog = Catalog {
            users: vec![user],
            global: Scope::default(),
        };
        assert_eq!(
            catalog.variable_names().into_iter().collect::<Vec<_>>(),
            ["pekerjaan_id", "project_id"]
        );
        assert_eq!(
            catalog.users[0].scope.path_to("pekerjaan_id").unwrap(),
            ["project_id", "pekerjaan_id"]
        );
        assert_eq!(catalog.users[0].scope.path_to("harga_item_id"), None);
    }

    #[test]
    fn passwords_never_print() {
        let secret = Secret::new("rahasia");
        assert_eq!(format!("{secret:?}"), "Secret(***)");
    }
}
