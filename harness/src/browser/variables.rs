//! A browser user's template variables: drawn from the catalog and
//! `[data.sql]` consistently with their parents (a `{pekerjaan_id}` of the
//! project `{project_id}` names), and the values its pages extracted for
//! the pages after them.

use std::collections::HashMap;

use fantoccini::{Client, Locator};
use rand::seq::IndexedRandom as _;

use crate::catalog::Scope;
use crate::suite::plan::PageExtract;
use crate::suite::template::{Function, Variables, call_with};

/// Template variables for a browser user: drawn from the user's scope, then
/// the global one, consistently with their parents (a `{pekerjaan_id}` of
/// the `{project_id}` drawn).
pub(super) struct BrowserVars<'a, R: rand::Rng> {
    pub(super) scopes: [&'a Scope; 2],
    pub(super) chosen: HashMap<String, String>,
    pub(super) random: &'a mut R,
}

impl<R: rand::Rng> BrowserVars<'_, R> {
    fn lookup(&mut self, name: &str) -> Option<String> {
        if let Some(value) = self.chosen.get(name) {
            return Some(value.clone());
        }
        for scope in self.scopes {
            let Some(path) = scope.path_to(name) else {
                continue;
            };
            let mut here: &Scope = scope;
            let mut value = None;
            for step in &path {
                let choices = here.vars.get(step)?;
                let choice = match self.chosen.get(step) {
                    Some(v) => choices.iter().find(|c| &c.value == v)?,
                    None => choices.choose(self.random)?,
                };
                self.chosen.insert(step.clone(), choice.value.clone());
                value = Some(choice.value.clone());
                here = &choice.scope;
            }
            return value;
        }
        None
    }
}

impl<R: rand::Rng> Variables for BrowserVars<'_, R> {
    fn write_var(&mut self, name: &str, out: &mut String) -> bool {
        match self.lookup(name) {
            Some(value) => {
                out.push_str(&value);
                true
            }
            None => false,
        }
    }

    fn call(&mut self, function: &Function, out: &mut String) {
        call_with(function, self.random, out);
    }
}

/// A value the page offers: its first element matching the selector, an
/// attribute of it (or its text), the regex's first group (or match).
pub(super) async fn extract_value(
    client: &Client,
    extract: &PageExtract,
) -> Result<String, String> {
    let element = client
        .find(Locator::Css(&extract.css))
        .await
        .map_err(|_| format!("no element matches `{}`", extract.css))?;
    let raw = match &extract.attribute {
        Some(attribute) => element
            .attr(attribute)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("`{}` has no `{attribute}`", extract.css))?,
        None => element.text().await.map_err(|e| e.to_string())?,
    };
    match &extract.regex {
        Some(regex) => regex
            .captures(&raw)
            .and_then(|c| c.get(1).or_else(|| c.get(0)))
            .map(|m| m.as_str().to_owned())
            .ok_or_else(|| format!("`{regex}` does not match `{raw}`")),
        None => Ok(raw.trim().to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use rand::SeedableRng as _;

    use super::*;
    use crate::catalog::Choice;
    use crate::suite::template::Template;

    fn render(template: &Template, scope: &Scope) -> Option<String> {
        let mut random = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let empty = Scope::default();
        let mut vars = BrowserVars {
            scopes: [scope, &empty],
            chosen: HashMap::new(),
            random: &mut random,
        };
        template.render_to_string(&mut vars).ok()
    }

    #[test]
    fn variables_are_drawn_consistently_with_their_parents() {
        let project = |id: &str, pekerjaan: &str| Choice {
            value: id.into(),
            scope: Arc::new(Scope {
                vars: BTreeMap::from([("pekerjaan_id".to_owned(), vec![Choice::leaf(pekerjaan)])]),
            }),
        };
        let scope = Scope {
            vars: BTreeMap::from([(
                "project_id".to_owned(),
                vec![project("1", "11"), project("2", "22")],
            )]),
        };
        let template = Template::parse("/p/{project_id}/k/{pekerjaan_id}/").unwrap();
        for _ in 0..10 {
            let path = render(&template, &scope).unwrap();
            assert!(path == "/p/1/k/11/" || path == "/p/2/k/22/", "{path}");
        }
        let missing = Template::parse("/x/{nothing}/").unwrap();
        assert_eq!(render(&missing, &scope), None);
    }
}
