//! `[benchmarks]`: budgets of criterion benchmarks, checked on criterion's
//! saved estimates beside the SLAs ([`crate::bench_budget`]).

use indexmap::IndexMap;
use toml::Spanned;

use super::checker::Checker;
use crate::bench_budget::{BenchBudget, BudgetRule, BudgetValue};

/// Every rule of every benchmark, parsed.
pub(super) fn check_benchmarks(
    checker: &mut Checker<'_>,
    benchmarks: &IndexMap<Spanned<String>, Spanned<BudgetValue>>,
) -> Vec<BenchBudget> {
    let mut budgets = Vec::new();
    for (key, value) in benchmarks {
        let benchmark = key.get_ref().trim();
        if benchmark.is_empty() {
            checker.at(
                key.span(),
                "a benchmark budget needs criterion's full id, e.g. \"queries/kurva_s\"",
            );
            continue;
        }
        for rule in value.get_ref().rules() {
            match rule.parse::<BudgetRule>() {
                Ok(parsed) => budgets.push(BenchBudget {
                    benchmark: benchmark.to_owned(),
                    rule: parsed,
                    source: format!("{benchmark}: {}", rule.trim()),
                }),
                Err(message) => {
                    checker.at(
                        value.span(),
                        format!("in the budget of benchmark `{benchmark}`: {message}"),
                    );
                }
            }
        }
    }
    budgets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(benchmarks: &str, expect: &str) {
        let source = format!("[suite]\nname = \"b\"\n[benchmarks]\n{benchmarks}\n");
        let file = crate::suite::parse(&source, "b.toml").unwrap();
        let mut checker = Checker::new("b.toml", &source);
        let budgets = check_benchmarks(&mut checker, &file.benchmarks);
        let mut got: Vec<String> = budgets.iter().map(|b| b.source.clone()).collect();
        got.extend(
            checker
                .errors
                .iter()
                .map(|e| format!("{}:{} {}", e.line, e.column, e.message)),
        );
        assert_eq!(got.join("\n"), expect);
    }

    #[test]
    fn budgets_are_read_per_benchmark_and_rule() {
        check(
            "\"queries/rab\" = [\"mean < 5ms\", \"no-regression against main\"]",
            "queries/rab: mean < 5ms\nqueries/rab: no-regression against main",
        );
        check(
            "\" \" = \"mean < 5ms\"",
            "4:1 a benchmark budget needs criterion's full id, e.g. \"queries/kurva_s\"",
        );
    }

    #[test]
    fn a_bad_rule_names_its_benchmark() {
        let source = "[suite]\nname = \"b\"\n[benchmarks]\n\"queries/rab\" = \"fastest\"\n";
        let file = crate::suite::parse(source, "b.toml").unwrap();
        let mut checker = Checker::new("b.toml", source);
        assert!(check_benchmarks(&mut checker, &file.benchmarks).is_empty());
        assert_eq!(checker.errors.len(), 1);
        assert!(
            checker.errors[0]
                .message
                .starts_with("in the budget of benchmark `queries/rab`: "),
            "{}",
            checker.errors[0].message
        );
        assert_eq!((checker.errors[0].line, checker.errors[0].column), (4, 17));
    }
}
