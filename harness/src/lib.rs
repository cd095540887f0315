//! ahsp-perf's library: the infrastructure a run needs (PostgreSQL behind
//! PgBouncer, Redis), database access that is correct through PgBouncer, the
//! data catalog suites draw from, and — in later layers — the load engine,
//! metrics, verdicts and reports.
//!
//! Data flows one way: infra → load engine → metrics → verdict → reports.

pub mod catalog;
pub mod db;
pub mod infra;
