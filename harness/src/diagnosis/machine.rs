//! Causes on the machine: a process that had all the CPU it could use.

/// The process that used all the CPU it could: the target or PostgreSQL
/// every core (`cores` × 100 %, at 85 % of it), PgBouncer or Redis their one
/// thread. Waiting for CPU looks like waiting for the stack from outside.
pub(crate) fn cpu_saturated(cpu_max: impl Fn(&str) -> Option<f64>, cores: usize) -> Option<String> {
    let cores = cores.max(1);
    [("app", cores), ("postgres", cores), ("pgbouncer", 1), ("redis", 1)]
        .into_iter()
        .filter_map(|(service, usable)| {
            let max = cpu_max(service)?;
            (max >= 85.0 * usable as f64).then_some((service, usable, max))
        })
        .max_by(|a, b| a.2.total_cmp(&b.2))
        .map(|(service, usable, max)| {
            let whole = if usable == 1 {
                "its one thread's worth".to_owned()
            } else {
                format!("all {usable} cores of the machine")
            };
            let name = if service == "app" { "the target" } else { service };
            format!(
                "{name} used up to {max:.0}% CPU, {whole}: requests waited for CPU (a CPU-bound step such as password hashing, or too little CPU for the load), not for a slow statement or a busy pool"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_process_that_had_all_the_cpu() {
        // The login storm at the application's PBKDF2 cost, measured.
        let storm = |service: &str| match service {
            "app" => Some(195.9),
            "pgbouncer" => Some(6.5),
            _ => Some(5.0),
        };
        let found = cpu_saturated(storm, 2).expect("the target had both cores");
        assert!(
            found.starts_with("the target used up to 196% CPU, all 2 cores"),
            "{found}"
        );
        assert_eq!(cpu_saturated(storm, 4), None);
        let pgbouncer = |service: &str| (service == "pgbouncer").then_some(99.0);
        assert!(
            cpu_saturated(pgbouncer, 2)
                .unwrap()
                .starts_with("pgbouncer used up to 99% CPU, its one thread")
        );
        assert_eq!(cpu_saturated(|_| None, 2), None);
    }
}
