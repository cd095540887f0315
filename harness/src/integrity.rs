//! Write integrity: every write the target acknowledged is checked against
//! the database after the run. The history never checked concurrent writes
//! for lost updates; here a lost update is a violation with its row, what was
//! expected and what was found.
//!
//! For each row written: no two acknowledged writes may start from the same
//! version (optimistic locking lets only one through); the version advanced
//! exactly once per acknowledged write; the row holds the values of the last
//! acknowledged write; and (with an audit table) one audit row was added per
//! acknowledged write.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::db::{self, Db};
use crate::engine::vu::AckedWrite;
use crate::suite::WriteSpec;

/// A row's state before the run (kept in a shard's result, for the merge
/// to check the writes of every shard against).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    versions: HashMap<String, i64>,
    audit_counts: HashMap<String, i64>,
}

/// One way a row is wrong.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Violation {
    pub table: String,
    pub key: String,
    pub problem: String,
    pub expected: String,
    pub found: String,
}

/// The integrity check's outcome.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct IntegrityReport {
    pub acknowledged_writes: u64,
    pub rows_checked: u64,
    pub lost_updates: u64,
    pub audit_mismatches: u64,
    pub violations: Vec<Violation>,
}

impl IntegrityReport {
    /// Named values for thresholds.
    pub fn values(&self) -> BTreeMap<String, f64> {
        BTreeMap::from([
            (
                "integrity.acknowledged-writes".to_owned(),
                self.acknowledged_writes as f64,
            ),
            (
                "integrity.lost-updates".to_owned(),
                self.lost_updates as f64,
            ),
            (
                "integrity.audit-mismatches".to_owned(),
                self.audit_mismatches as f64,
            ),
            (
                "integrity.violations".to_owned(),
                self.violations.len() as f64,
            ),
        ])
    }
}

/// Names of the values above, for plan validation.
pub const METRICS: [&str; 4] = [
    "integrity.acknowledged-writes",
    "integrity.lost-updates",
    "integrity.audit-mismatches",
    "integrity.violations",
];

/// `"name"`, quoted for SQL.
fn identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn audit_query(spec: &WriteSpec) -> Option<String> {
    let table = spec.audit_table.as_ref()?;
    let key = spec.audit_key.as_ref()?;
    let filter = spec
        .audit_where
        .as_ref()
        .map(|w| format!(" WHERE {w}"))
        .unwrap_or_default();
    Some(format!(
        "SELECT {key}::text, count(*)::int8 FROM {table}{filter} GROUP BY 1",
        key = identifier(key),
        table = identifier(table)
    ))
}

/// Records every row's version (and audit count) before the run.
pub async fn snapshot(db: &Db, spec: &WriteSpec) -> anyhow::Result<Snapshot> {
    let mut tx = db.begin().await?;
    let sql = format!(
        "SELECT {key}::text, {version}::int8 FROM {table}",
        key = identifier(&spec.key),
        version = identifier(&spec.version_column),
        table = identifier(&spec.table)
    );
    let versions: Vec<(String, i64)> = db::query_as(&sql).fetch_all(&mut *tx).await?;
    let audit_counts: Vec<(String, i64)> = match audit_query(spec) {
        Some(sql) => db::query_as(&sql).fetch_all(&mut *tx).await?,
        None => Vec::new(),
    };
    tx.commit().await?;
    Ok(Snapshot {
        versions: versions.into_iter().collect(),
        audit_counts: audit_counts.into_iter().collect(),
    })
}

fn same_value(a: &str, b: &str) -> bool {
    match (a.trim().parse::<f64>(), b.trim().parse::<f64>()) {
        (Ok(x), Ok(y)) => (x - y).abs() <= 1e-9 * x.abs().max(1.0),
        _ => a == b,
    }
}

/// Checks the acknowledged writes of one task against the database.
pub async fn check(
    db: &Db,
    spec: &WriteSpec,
    before: &Snapshot,
    writes: &[AckedWrite],
    report: &mut IntegrityReport,
) -> anyhow::Result<()> {
    let mut by_key: BTreeMap<&str, Vec<&AckedWrite>> = BTreeMap::new();
    for write in writes.iter().filter(|w| !w.key.is_empty()) {
        by_key.entry(&write.key).or_default().push(write);
    }
    report.acknowledged_writes += writes.len() as u64;
    let mut tx = db.begin().await?;
    let columns: Vec<String> = spec
        .fields
        .keys()
        .map(|c| format!("{}::text", identifier(c)))
        .collect();
    let select = format!(
        "SELECT {version}::int8{extra} FROM {table} WHERE {key}::text = $1",
        version = identifier(&spec.version_column),
        extra = if columns.is_empty() {
            String::new()
        } else {
            format!(", {}", columns.join(", "))
        },
        table = identifier(&spec.table),
        key = identifier(&spec.key)
    );
    let audit_after: HashMap<String, i64> = match audit_query(spec) {
        Some(sql) => db::query_as::<(String, i64)>(&sql)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect(),
        None => HashMap::new(),
    };
    for (key, mut acked) in by_key {
        use sqlx::Row as _;
        report.rows_checked += 1;
        let mut violation = |problem: &str, expected: String, found: String| {
            report.violations.push(Violation {
                table: spec.table.clone(),
                key: key.to_owned(),
                problem: problem.to_owned(),
                expected,
                found,
            });
        };
        // Two acknowledged writes from the same version: one overwrote the other.
        acked.sort_by_key(|w| (w.sent_version.parse::<i64>().unwrap_or(i64::MIN), w.at_ms));
        let mut lost_here = 0;
        for pair in acked.windows(2) {
            if pair[0].sent_version == pair[1].sent_version {
                lost_here += 1;
                violation(
                    "lost update: two acknowledged writes from the same version",
                    format!("one write from version {}", pair[0].sent_version),
                    format!(
                        "VU {} at {:.1}s and VU {} at {:.1}s",
                        pair[0].vu,
                        pair[0].at_ms as f64 / 1000.0,
                        pair[1].vu,
                        pair[1].at_ms as f64 / 1000.0
                    ),
                );
            }
        }
        report.lost_updates += lost_here;
        let row = db::query(&select)
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            violation("row missing", "a row".into(), "none".into());
            continue;
        };
        let final_version: i64 = row.try_get(0)?;
        if let Some(initial) = before.versions.get(key) {
            let expected = initial + acked.len() as i64;
            if final_version != expected {
                violation(
                    "versions did not advance once per acknowledged write",
                    format!("version {expected} ({initial} + {} writes)", acked.len()),
                    format!("version {final_version}"),
                );
            }
        }
        let last = acked.last().expect("non-empty");
        for (i, (column, sent)) in last.fields.iter().enumerate() {
            let found: Option<String> = row.try_get(i + 1)?;
            let found = found.unwrap_or_default();
            if !same_value(sent, &found) {
                violation(
                    &format!("`{column}` is not the last acknowledged write's"),
                    format!(
                        "{sent} (VU {} at {:.1}s)",
                        last.vu,
                        last.at_ms as f64 / 1000.0
                    ),
                    found,
                );
            }
        }
        if audit_query(spec).is_some() {
            let added = audit_after.get(key).copied().unwrap_or(0)
                - before.audit_counts.get(key).copied().unwrap_or(0);
            if added != acked.len() as i64 {
                report.audit_mismatches += 1;
                violation(
                    "audit rows do not match acknowledged writes",
                    format!("{} audit rows", acked.len()),
                    format!("{added}"),
                );
            }
        }
    }
    tx.commit().await?;
    Ok(())
}
