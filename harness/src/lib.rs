//! ahsp-perf's library: the infrastructure a run needs (PostgreSQL behind
//! PgBouncer, Redis), database access that is correct through PgBouncer, the
//! data catalog suites draw from, suite files and their validation, the load
//! engine, metrics, verdicts and reports.
//!
//! Data flows one way: suite → plan → infra → load engine → metrics →
//! verdict → reports.

pub mod baseline;
pub mod bench_budget;
pub mod browser;
pub mod builder;
pub mod capacity;
pub mod catalog;
pub mod correctness;
pub mod coverage;
pub mod db;
pub mod diagnosis;
pub mod engine;
pub mod infra;
pub mod integrity;
pub mod live;
pub mod metrics;
pub mod probe;
pub mod redact;
pub mod report;
pub mod run;
pub mod secret;
pub mod suite;
pub mod verdict;
