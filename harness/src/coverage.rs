//! Endpoint coverage: which of the target's routes the suites exercised, by
//! category. The history's table showed 59 % overall and 29 % of writes;
//! thresholds such as `coverage.write` keep that number from sliding back.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::metrics::summary::EndpointSummary;

/// Route categories, in report order.
pub const CATEGORIES: [&str; 6] = ["read", "write", "export", "template", "batch", "health"];

/// One route of the target's inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Route {
    pub method: String,
    pub path: String,
    pub category: String,
}

/// A route and whether the run exercised it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RouteCoverage {
    #[serde(flatten)]
    pub route: Route,
    pub requests: u64,
}

/// Coverage of one category.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CategoryCoverage {
    pub category: String,
    pub routes: u64,
    pub exercised: u64,
    pub fraction: f64,
}

/// The coverage table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CoverageReport {
    pub routes: Vec<RouteCoverage>,
    pub categories: Vec<CategoryCoverage>,
    pub overall: f64,
}

/// Names of the values coverage adds, for plan validation.
pub fn metric_names() -> Vec<String> {
    std::iter::once("coverage.overall".to_owned())
        .chain(CATEGORIES.iter().map(|c| format!("coverage.{c}")))
        .collect()
}

/// A path with every parameter written the same way: `/p/{id}/x/` and
/// `/p/[id]/x/` are one route.
fn normalize(path: &str) -> String {
    let path = path.split('?').next().unwrap_or(path);
    path.split('/')
        .map(|segment| {
            let parameter = (segment.starts_with('{') && segment.ends_with('}'))
                || (segment.starts_with('[') && segment.ends_with(']'));
            if parameter { "{}" } else { segment }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// A category for routes that do not say theirs.
pub fn guess_category(method: &str, path: &str) -> &'static str {
    let lower = path.to_ascii_lowercase();
    if lower.contains("health") {
        "health"
    } else if lower.contains("export") {
        "export"
    } else if lower.contains("template") {
        "template"
    } else if lower.contains("copy") || lower.contains("batch") || lower.contains("bulk") {
        "batch"
    } else if method.eq_ignore_ascii_case("GET") {
        "read"
    } else {
        "write"
    }
}

impl CoverageReport {
    /// Matches the run's endpoints (by method and name) against the inventory.
    pub fn compute(routes: &[Route], endpoints: &[&EndpointSummary]) -> CoverageReport {
        let routes = routes
            .iter()
            .map(|route| {
                let key = normalize(&route.path);
                let requests = endpoints
                    .iter()
                    .filter(|e| {
                        e.meta.method.eq_ignore_ascii_case(&route.method)
                            && normalize(&e.meta.name) == key
                    })
                    .map(|e| e.requests)
                    .sum();
                RouteCoverage {
                    route: route.clone(),
                    requests,
                }
            })
            .collect();
        CoverageReport::from_routes(routes)
    }

    fn from_routes(routes: Vec<RouteCoverage>) -> CoverageReport {
        let mut categories = Vec::new();
        for category in CATEGORIES {
            let in_category: Vec<&RouteCoverage> = routes
                .iter()
                .filter(|r| r.route.category == category)
                .collect();
            if in_category.is_empty() {
                continue;
            }
            let exercised = in_category.iter().filter(|r| r.requests > 0).count() as u64;
            categories.push(CategoryCoverage {
                category: category.to_owned(),
                routes: in_category.len() as u64,
                exercised,
                fraction: exercised as f64 / in_category.len() as f64,
            });
        }
        let exercised = routes.iter().filter(|r| r.requests > 0).count();
        let overall = if routes.is_empty() {
            0.0
        } else {
            exercised as f64 / routes.len() as f64
        };
        CoverageReport {
            routes,
            categories,
            overall,
        }
    }

    /// Several runs' coverage together (a route exercised by any counts).
    pub fn merge(reports: &[&CoverageReport]) -> CoverageReport {
        let mut routes: Vec<RouteCoverage> = Vec::new();
        for report in reports {
            for route in &report.routes {
                match routes.iter_mut().find(|r| r.route == route.route) {
                    Some(existing) => existing.requests += route.requests,
                    None => routes.push(route.clone()),
                }
            }
        }
        CoverageReport::from_routes(routes)
    }

    pub fn values(&self) -> BTreeMap<String, f64> {
        let mut values = BTreeMap::from([("coverage.overall".to_owned(), self.overall)]);
        for category in &self.categories {
            values.insert(format!("coverage.{}", category.category), category.fraction);
        }
        values
    }
}

/// Reads an inventory: a JSON list of `{method, path, category?}`, an OpenAPI
/// document (`paths`), or plain lines `METHOD /path [category]`.
pub fn parse_inventory(text: &str) -> anyhow::Result<Vec<Route>> {
    if let Ok(json) = serde_json::from_str::<serde_json::Value>(text) {
        if let Some(items) = json.as_array() {
            return items
                .iter()
                .map(|item| {
                    let method = item["method"]
                        .as_str()
                        .context("a route without `method`")?
                        .to_ascii_uppercase();
                    let path = item["path"]
                        .as_str()
                        .context("a route without `path`")?
                        .to_owned();
                    let category = item["category"]
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| guess_category(&method, &path).to_owned());
                    Ok(Route {
                        method,
                        path,
                        category,
                    })
                })
                .collect();
        }
        if let Some(paths) = json["paths"].as_object() {
            let mut routes = Vec::new();
            for (path, operations) in paths {
                for (method, operation) in operations.as_object().into_iter().flatten() {
                    if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                        continue;
                    }
                    let method = method.to_ascii_uppercase();
                    let category = operation["x-category"]
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| guess_category(&method, path).to_owned());
                    routes.push(Route {
                        method,
                        path: path.clone(),
                        category,
                    });
                }
            }
            return Ok(routes);
        }
        anyhow::bail!("a JSON inventory is a list of routes or an OpenAPI document");
    }
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            let mut words = line.split_whitespace();
            let method = words.next().context("empty line")?.to_ascii_uppercase();
            let path = words
                .next()
                .with_context(|| format!("`{line}` has no path"))?
                .to_owned();
            let category = words
                .next()
                .map(str::to_owned)
                .unwrap_or_else(|| guess_category(&method, &path).to_owned());
            Ok(Route {
                method,
                path,
                category,
            })
        })
        .collect()
}

pub fn read_inventory(path: &Path) -> anyhow::Result<Vec<Route>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_inventory(&text)
        .with_context(|| format!("reading the route inventory {}", path.display()))
}

/// A running target's own listing of its routes, at `listing` (a path the
/// domain names: the reference service's is `/__ahsp/routes`).
pub async fn fetch_inventory(base_url: &str, listing: &str) -> anyhow::Result<Vec<Route>> {
    let url = format!("{}{listing}", base_url.trim_end_matches('/'));
    let text = reqwest::get(&url).await?.error_for_status()?.text().await?;
    parse_inventory(&text).with_context(|| format!("reading {url}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::EndpointStats;
    use crate::metrics::summary::EndpointMeta;

    #[test]
    fn covers_by_category_whatever_the_parameter_spelling() {
        let routes = parse_inventory("GET /detail_project/{id}/rekap-rab/\nPOST /api/project/{id}/list-pekerjaan/save/\nPOST /api/project/{id}/harga-items/save/\nGET /health/\n").unwrap();
        let meta = |name: &str, method: &str| EndpointMeta {
            name: name.into(),
            method: method.into(),
            tags: vec![],
        };
        let mut stats = EndpointStats::new();
        stats.requests = 3;
        let rab = EndpointSummary::of(meta("/detail_project/[id]/rekap-rab/", "GET"), &stats, 1.0);
        let save = EndpointSummary::of(
            meta("/api/project/[id]/list-pekerjaan/save/", "POST"),
            &stats,
            1.0,
        );
        let report = CoverageReport::compute(&routes, &[&rab, &save]);
        let fractions: Vec<(&str, f64)> = report
            .categories
            .iter()
            .map(|c| (c.category.as_str(), c.fraction))
            .collect();
        assert_eq!(fractions, [("read", 1.0), ("write", 0.5), ("health", 0.0)]);
        assert_eq!(report.overall, 0.5);
    }
}
