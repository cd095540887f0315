//! The first phase: data (seeded, or drawn by SQL from a stack the harness
//! did not seed), the target started, the configuration in effect read back,
//! each task's queries per request measured alone, and the rows the suite
//! writes snapshotted before the load.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;

use super::domain::Domain;
use super::faults::FaultPaths;
use super::target::RunningTarget;
use crate::catalog::{Catalog, Choice, Scope};
use crate::db::Db;
use crate::engine::EngineInput;
use crate::engine::isolated::IsolatedMeasure;
use crate::engine::vu::EngineUser;
use crate::infra::proxy::FaultProxy;
use crate::infra::{InfraConfig, ServiceName, Stack, StackUrls};
use crate::integrity::Snapshot;
use crate::probe::config::{EffectiveConfig, Scope as SettingsScope};
use crate::suite::WriteSpec;
use crate::suite::plan::{Plan, TargetPlan, TaskKind, UserPool};

/// How often each task runs alone to measure its queries per request.
const BUDGET_REPETITIONS: u32 = 5;

/// Everything the load starts from.
#[derive(Debug)]
pub(super) struct Prepared {
    pub target: RunningTarget,
    pub input: EngineInput,
    pub before: Before,
}

/// What the judge needs from before the load.
#[derive(Debug)]
pub(super) struct Before {
    /// Things a reader of the report should know.
    pub notes: Vec<String>,
    pub effective_config: Option<EffectiveConfig>,
    /// A direct connection to the database, for integrity and correctness.
    pub direct: Option<Db>,
    pub query_budgets: Vec<IsolatedMeasure>,
    /// Per writing task: what it writes and the rows before the load.
    pub snapshots: Vec<(String, WriteSpec, Snapshot)>,
    /// The routes the target has, when it can say (for coverage).
    pub inventory: Option<Vec<crate::coverage::Route>>,
}

pub(super) async fn prepare(
    domain: &dyn Domain,
    plan: &Plan,
    dir: &Path,
    stack: Option<&Stack>,
    infra: &InfraConfig,
    redactor: &crate::redact::Redactor,
    custom_tasks: crate::engine::task::CustomTasks,
) -> anyhow::Result<Prepared> {
    let mut notes = Vec::new();
    let target_started = !matches!(plan.target, TargetPlan::Url { .. });
    super::faults::check(stack, target_started, &plan.faults)?;
    let catalog = data(domain, plan, stack).await?;
    let needed = super::faults::paths_needed(&plan.faults);
    let (paths, target_urls) = match stack {
        Some(stack) if !needed.is_empty() => {
            let (paths, urls) = route_through_proxies(stack.urls(), &needed).await?;
            notes.push(format!(
                "the target reaches {} through the harness's fault proxy",
                needed
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" and ")
            ));
            (paths, Some(urls))
        }
        Some(stack) => (FaultPaths::new(), Some(stack.urls().clone())),
        None => (FaultPaths::new(), None),
    };
    let mut target = match &plan.target {
        TargetPlan::Embedded { switches } => {
            let urls = target_urls
                .as_ref()
                .context("the embedded target needs a stack")?;
            domain.start_embedded(urls, switches, dir).await?
        }
        TargetPlan::Command {
            program,
            args,
            ready_path,
            env,
            workdir,
        } => {
            RunningTarget::command(
                &super::target::Launch {
                    program,
                    args,
                    env,
                    ready_path,
                    workdir: workdir.as_deref(),
                },
                target_urls.as_ref(),
                dir,
                Arc::new(redactor.clone()),
            )
            .await?
        }
        TargetPlan::Url { url } => RunningTarget::external(url),
    };
    target.paths = paths;
    // From here on an early return drops `target`, which stops it.
    let effective_config = match stack {
        Some(stack) => Some(effective_config(stack, plan, infra, &mut notes).await?),
        None => None,
    };
    let mut users = engine_users(plan, &catalog)?;
    let mut seed = plan.data_seed;
    if let Some(shard) = plan.shard.map(|s| s.shard) {
        let pool = users.len();
        let partitioned;
        (users, partitioned) = shard.partition(users);
        if plan.auth.is_some() {
            notes.push(if partitioned {
                format!("shard {shard}: {} of the pool's {pool} users, no user shared with another shard", users.len())
            } else {
                format!("shard {shard}: the pool's {pool} users are fewer than the {} shards, so shards share them", shard.count)
            });
        }
        seed = shard.seed(seed);
    }
    let input = EngineInput {
        plan: Arc::new(plan.clone()),
        base_url: target.base_url.clone(),
        users,
        global: Arc::new(catalog.global.clone()),
        seed,
        custom_tasks,
    };
    let direct = match stack {
        Some(stack) => Some(Db::connect(&stack.urls().database_url, 2).await?),
        None => None,
    };
    // Queries per request, each task alone, before the load and its probes.
    let mut query_budgets = Vec::new();
    if let Some(db) = &direct
        && infra.postgres.loads_pg_stat_statements()
        && !matches!(plan.target, TargetPlan::Url { .. })
    {
        match crate::engine::isolated::measure_each(input.clone(), BUDGET_REPETITIONS, || {
            statement_count(db)
        })
        .await
        {
            Ok(measures) => query_budgets = measures,
            Err(error) => notes.push(format!("queries per request not measured: {error:#}")),
        }
    }
    let mut snapshots = Vec::new();
    // Of a sharded run, shard 0 takes the snapshot before the shared start;
    // the merge checks every shard's acknowledged writes against it.
    if let Some(db) = direct
        .as_ref()
        .filter(|_| plan.shard.is_none_or(|s| s.shard.owns_probes()))
    {
        for task in &plan.tasks {
            if let TaskKind::Http(http) = &task.kind
                && let Some(spec) = &http.writes
            {
                let before = crate::integrity::snapshot(db, spec).await?;
                snapshots.push((task.name.clone(), spec.clone(), before));
            }
        }
    }
    let inventory = match (&plan.target, domain.route_inventory_path()) {
        (TargetPlan::Embedded { .. }, Some(listing)) => {
            crate::coverage::fetch_inventory(target.base_url.expose_secret(), listing)
                .await
                .ok()
        }
        _ => None,
    };
    Ok(Prepared {
        target,
        input,
        before: Before {
            notes,
            effective_config,
            direct,
            query_budgets,
            snapshots,
            inventory,
        },
    })
}

/// A proxy on the path to each of `services`, and the stack's URLs with
/// those services' pointed at their proxies (the harness's own probes keep
/// the direct ones, so a slow path and a slow service tell apart).
async fn route_through_proxies(
    urls: &StackUrls,
    services: &[ServiceName],
) -> anyhow::Result<(FaultPaths, StackUrls)> {
    let mut paths = FaultPaths::new();
    let mut routed = urls.clone();
    for service in services {
        let url = match service {
            ServiceName::Pgbouncer => &mut routed.pgbouncer_url,
            ServiceName::Redis => &mut routed.redis_url,
            ServiceName::Postgres => &mut routed.database_url,
        };
        let mut parsed = url::Url::parse(url).with_context(|| format!("the {service} URL"))?;
        let host = parsed
            .host_str()
            .context("a service URL without a host")?
            .to_owned();
        let port = parsed
            .port_or_known_default()
            .context("a service URL without a port")?;
        let upstream = tokio::net::lookup_host((host.as_str(), port))
            .await
            .with_context(|| format!("resolving {host}:{port}"))?
            .next()
            .with_context(|| format!("{host}:{port} resolves to nothing"))?;
        let proxy = FaultProxy::start(upstream).await?;
        parsed
            .set_host(Some("127.0.0.1"))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        parsed
            .set_port(Some(proxy.address().port()))
            .map_err(|()| anyhow::anyhow!("a URL that cannot take a port"))?;
        *url = parsed.to_string();
        paths.insert(*service, proxy);
    }
    Ok((paths, routed))
}

/// Seeds the plan's data set (the embedded target always has one); adds
/// variables from SQL for data the harness did not seed.
async fn data(domain: &dyn Domain, plan: &Plan, stack: Option<&Stack>) -> anyhow::Result<Catalog> {
    let mut catalog = Catalog::default();
    if let (Some(data_set), Some(stack)) = (&plan.data_set, stack) {
        catalog = domain
            .seed(
                &stack.urls().database_url,
                data_set,
                plan.data_seed,
                plan.data_password_iterations,
            )
            .await
            .context("seeding")?;
    }
    if !plan.data_sql.is_empty() {
        let stack = stack.context(
            "`data.sql` needs a database: run with the external provider and DATABASE_URL",
        )?;
        catalog.global = sql_variables(&stack.urls().database_url, &plan.data_sql).await?;
    }
    Ok(catalog)
}

/// What is in effect must be what the suite asked for; on a stack the
/// harness only visits, only the settings the suite's `[infra]` names are
/// compared, a difference is a note rather than a refusal, and what its
/// roles cannot read is named once with the grant for each.
async fn effective_config(
    stack: &Stack,
    plan: &Plan,
    infra: &InfraConfig,
    notes: &mut Vec<String>,
) -> anyhow::Result<EffectiveConfig> {
    let managed = stack.manages_services();
    if !managed {
        let missing = crate::probe::access::check(stack.urls()).await;
        notes.extend(crate::probe::access::note(&missing));
    }
    let scope = if managed {
        SettingsScope::Everything
    } else {
        SettingsScope::Asked(&plan.infra_asked)
    };
    let effective = crate::probe::config::read(stack.urls(), infra, scope)
        .await
        .context("reading back the effective configuration")?;
    let mismatches: Vec<String> = effective
        .mismatches()
        .iter()
        .map(|e| {
            format!(
                "{} {}: asked {}, in effect {}",
                e.service, e.setting, e.asked, e.effective
            )
        })
        .collect();
    anyhow::ensure!(
        !managed || effective.unread.is_empty(),
        "the stack's settings could not be read back: {}",
        effective.unread.join("; ")
    );
    if !mismatches.is_empty() {
        anyhow::ensure!(
            !managed,
            "the stack does not run with the suite's settings:\n  {}",
            mismatches.join("\n  ")
        );
        notes.push(format!(
            "the external stack differs from the suite's settings: {}",
            mismatches.join("; ")
        ));
    }
    if !effective.unread.is_empty() {
        notes.push(format!(
            "settings the suite asked for that could not be read back: {}",
            effective.unread.join("; ")
        ));
    }
    Ok(effective)
}

/// Statements PostgreSQL has run, the harness's own left out.
async fn statement_count(db: &Db) -> anyhow::Result<f64> {
    use sqlx::Row as _;
    let sql = format!(
        "SELECT coalesce(sum(calls), 0)::text FROM pg_stat_statements WHERE {}",
        crate::probe::OWN_STATEMENTS
    );
    let row = sqlx::Executor::fetch_one(db.pool(), sql.as_str()).await?;
    Ok(row.try_get_unchecked::<String, _>(0)?.parse()?)
}

fn engine_users(plan: &Plan, catalog: &Catalog) -> anyhow::Result<Vec<EngineUser>> {
    let from_catalog = |take: usize| -> Vec<EngineUser> {
        catalog
            .users
            .iter()
            .take(take)
            .map(|u| EngineUser {
                login: u.login.clone(),
                password: u.password.clone(),
                scope: Arc::new(u.scope.clone()),
            })
            .collect()
    };
    let Some(auth) = &plan.auth else {
        // Without a login, virtual users still draw variables from what
        // catalog users can see; nobody logs in.
        return Ok(from_catalog(catalog.users.len()));
    };
    let users: Vec<EngineUser> = match &auth.users {
        UserPool::Catalog { count } => {
            from_catalog(count.map_or(catalog.users.len(), |c| c as usize))
        }
        UserPool::Fixed(list) => list
            .iter()
            .map(|u| EngineUser {
                login: u.login.clone(),
                password: u.password.clone(),
                scope: Arc::new(Scope::default()),
            })
            .collect(),
    };
    anyhow::ensure!(
        !users.is_empty(),
        "the user pool is empty: the catalog has no users (was the data seeded?)"
    );
    if let UserPool::Catalog { count: Some(count) } = auth.users
        && (count as usize) > users.len()
    {
        tracing::warn!(
            asked = count,
            available = users.len(),
            "fewer catalog users than asked; users are shared"
        );
    }
    Ok(users)
}

/// Variables from SQL: the first column of each query's rows. The simple
/// protocol returns every value as text, whatever the column's type.
async fn sql_variables(database_url: &str, queries: &[(String, String)]) -> anyhow::Result<Scope> {
    use sqlx::Row as _;
    let db = Db::connect(database_url, 1).await?;
    let mut vars = BTreeMap::new();
    for (name, sql) in queries {
        let rows = sqlx::raw_sql(sql)
            .fetch_all(db.pool())
            .await
            .with_context(|| format!("data.sql.{name}"))?;
        let values: Vec<Choice> = rows
            .iter()
            .filter_map(|row| row.try_get_unchecked::<Option<String>, _>(0).ok().flatten())
            .map(Choice::leaf)
            .collect();
        anyhow::ensure!(!values.is_empty(), "data.sql.{name} returned no rows");
        vars.insert(name.clone(), values);
    }
    db.close().await;
    Ok(Scope { vars })
}
