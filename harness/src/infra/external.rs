//! The external provider: a stack someone else runs, given by URL. Nothing is
//! started or stopped; every URL must answer before a run begins (PgBouncer's
//! console may answer with a refusal: an application's role is rarely in its
//! `stats_users`, and the probes do without it).

use std::time::Duration;

use anyhow::Context as _;

use super::{InfraConfig, ServiceInfo, ServiceLocation, ServiceName, StackUrls, readiness, redact};

/// How long an external service may take to answer: it is already running,
/// so a slow answer means a wrong URL or a firewall.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// Checks the four URLs and that each answers.
pub async fn connect(config: &InfraConfig) -> anyhow::Result<(StackUrls, Vec<ServiceInfo>)> {
    let external = &config.external;
    let require = |value: &Option<String>, variable: &str, key: &str| {
        value.clone().with_context(|| {
            format!("the external provider needs {variable} (set it, or `infra.external.{key}` in the suite)")
        })
    };
    let database_url = require(&external.database_url, "DATABASE_URL", "database-url")?;
    let pgbouncer_url = require(&external.pgbouncer_url, "PGBOUNCER_URL", "pgbouncer-url")?;
    let redis_url = require(&external.redis_url, "REDIS_URL", "redis-url")?;
    let pgbouncer_admin_url = match &external.pgbouncer_admin_url {
        Some(url) => url.clone(),
        None => admin_url_from(&pgbouncer_url)?,
    };
    for (variable, url, schemes) in [
        (
            "DATABASE_URL",
            &database_url,
            &["postgres", "postgresql"][..],
        ),
        (
            "PGBOUNCER_URL",
            &pgbouncer_url,
            &["postgres", "postgresql"][..],
        ),
        (
            "PGBOUNCER_ADMIN_URL",
            &pgbouncer_admin_url,
            &["postgres", "postgresql"][..],
        ),
        ("REDIS_URL", &redis_url, &["redis", "rediss"][..]),
    ] {
        let parsed = url::Url::parse(url)
            .with_context(|| format!("{variable} = {} is not a URL", redact(url)))?;
        anyhow::ensure!(
            schemes.contains(&parsed.scheme()),
            "{variable} = {} must start with {}://",
            redact(url),
            schemes[0]
        );
    }
    let urls = StackUrls {
        database_url,
        pgbouncer_url,
        pgbouncer_admin_url,
        redis_url,
    };
    let answer = |variable: &'static str, url: String, check: ServiceName| async move {
        let attempt = async {
            match check {
                ServiceName::Postgres => readiness::postgres_answers(&url).await,
                ServiceName::Pgbouncer => match readiness::pgbouncer_admin_answers(&url).await {
                    // The console answered and refused this role: the probes
                    // do without it, and the run names the grant.
                    Err(error) if refused(&error) => Ok(()),
                    answer => answer.map(drop),
                },
                ServiceName::Redis => readiness::redis_answers(&url).await,
            }
        };
        let started = std::time::Instant::now();
        match tokio::time::timeout(ANSWER_TIMEOUT, attempt).await {
            Ok(Ok(())) => Ok(started.elapsed()),
            Ok(Err(error)) => {
                Err(error.context(format!("{variable} = {} does not answer", redact(&url))))
            }
            Err(_) => Err(anyhow::anyhow!(
                "{variable} = {} gave no answer within {ANSWER_TIMEOUT:?}",
                redact(&url)
            )),
        }
    };
    let (postgres, _, pgbouncer, redis) = tokio::try_join!(
        answer(
            "DATABASE_URL",
            urls.database_url.clone(),
            ServiceName::Postgres
        ),
        answer(
            "PGBOUNCER_URL",
            urls.pgbouncer_url.clone(),
            ServiceName::Postgres
        ),
        answer(
            "PGBOUNCER_ADMIN_URL",
            urls.pgbouncer_admin_url.clone(),
            ServiceName::Pgbouncer
        ),
        answer("REDIS_URL", urls.redis_url.clone(), ServiceName::Redis),
    )?;
    let services = [
        (ServiceName::Postgres, postgres),
        (ServiceName::Pgbouncer, pgbouncer),
        (ServiceName::Redis, redis),
    ]
    .into_iter()
    .map(|(name, ready_after)| ServiceInfo {
        name,
        location: ServiceLocation::External,
        ready_after,
    })
    .collect();
    Ok((urls, services))
}

/// Whether a service answered and refused the role (an error from the
/// server), rather than not answering at all.
fn refused(error: &anyhow::Error) -> bool {
    error.chain().any(|e| {
        matches!(
            e.downcast_ref::<sqlx::Error>(),
            Some(sqlx::Error::Database(_))
        )
    })
}

/// PgBouncer's admin console is the database `pgbouncer` on the same address.
fn admin_url_from(pgbouncer_url: &str) -> anyhow::Result<String> {
    let mut url = url::Url::parse(pgbouncer_url)
        .with_context(|| format!("PGBOUNCER_URL = {}", redact(pgbouncer_url)))?;
    url.set_path("/pgbouncer");
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_url_is_the_pgbouncer_database() {
        assert_eq!(
            admin_url_from("postgres://u:p@127.0.0.1:6432/ahsp?sslmode=disable").unwrap(),
            "postgres://u:p@127.0.0.1:6432/pgbouncer?sslmode=disable"
        );
    }
}
