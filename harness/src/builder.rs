//! Building a suite in Rust instead of TOML, with custom async tasks.
//!
//! The builder writes the same TOML a suite file would hold and plans it
//! through the same validation, so a suite built in code is refused for the
//! same reasons and in the same words as a file; tasks written in Rust are
//! planned beside the declarative ones, so thresholds and tags can name them.
//!
//! ```no_run
//! use harness::builder::{BuiltSuite, SuiteBuilder};
//! use harness::suite::PlanOptions;
//!
//! let BuiltSuite { plan, custom_tasks } = SuiteBuilder::new("checkout")
//!     .load(toml::toml! { executor = "constant-users"  users = 5  duration = "10s" })
//!     .task(toml::toml! { name = "/dashboard/"  get = "/dashboard/" })
//!     .custom_task("open two pages", |ctx| {
//!         Box::pin(async move {
//!             let first = ctx.get("/dashboard/").await;
//!             if first.is_ok() {
//!                 let _ = ctx.get("/profile/").await;
//!             }
//!         })
//!     })
//!     .threshold("http.duration{name:open two pages}", "p(95) < 300ms")
//!     .build(&PlanOptions::default())
//!     .expect("a valid suite");
//! // Both go to the engine: `EngineInput { plan, custom_tasks, .. }`.
//! # let _ = (plan, custom_tasks);
//! ```

use std::sync::Arc;

use futures::future::LocalBoxFuture;

use crate::engine::task::{CustomTask, CustomTasks, TaskContext};
use crate::suite::diagnostic::SuiteErrors;
use crate::suite::plan::{CustomTaskDecl, Plan, PlanOptions};

/// A suite under construction. Sections are TOML tables, exactly as in a file.
#[derive(Debug, Clone)]
pub struct SuiteBuilder {
    name: String,
    description: Option<String>,
    sections: toml::Table,
    tasks: Vec<toml::Value>,
    thresholds: toml::Table,
    custom_declarations: Vec<CustomTaskDecl>,
    custom_tasks: CustomTasks,
}

/// A built suite: the plan, and the implementations of its custom tasks,
/// which the engine takes beside the plan.
#[derive(Debug, Clone)]
pub struct BuiltSuite {
    pub plan: Plan,
    pub custom_tasks: CustomTasks,
}

impl SuiteBuilder {
    pub fn new(name: &str) -> SuiteBuilder {
        SuiteBuilder {
            name: name.to_owned(),
            description: None,
            sections: toml::Table::new(),
            tasks: Vec::new(),
            thresholds: toml::Table::new(),
            custom_declarations: Vec::new(),
            custom_tasks: CustomTasks::default(),
        }
    }

    pub fn description(mut self, text: &str) -> SuiteBuilder {
        self.description = Some(text.to_owned());
        self
    }

    /// Any top-level section of a suite file (`load`, `auth`, `data`,
    /// `target`, `infra`, `tags`, `profiles`, `benchmarks`).
    pub fn section(mut self, key: &str, table: toml::Table) -> SuiteBuilder {
        self.sections
            .insert(key.to_owned(), toml::Value::Table(table));
        self
    }

    pub fn load(self, table: toml::Table) -> SuiteBuilder {
        self.section("load", table)
    }

    pub fn auth(self, table: toml::Table) -> SuiteBuilder {
        self.section("auth", table)
    }

    pub fn data(self, table: toml::Table) -> SuiteBuilder {
        self.section("data", table)
    }

    /// Runs against `url` instead of the embedded reference service.
    pub fn target_url(self, url: &str) -> SuiteBuilder {
        let mut target = toml::Table::new();
        target.insert("url".into(), toml::Value::String(url.to_owned()));
        self.section("target", target)
    }

    /// A declarative `[[task]]`.
    pub fn task(mut self, table: toml::Table) -> SuiteBuilder {
        self.tasks.push(toml::Value::Table(table));
        self
    }

    /// A task written in Rust, of weight 1, without tags; its requests are
    /// recorded under its name.
    pub fn custom_task<F>(self, name: &str, task: F) -> SuiteBuilder
    where
        F: for<'a, 'b> Fn(&'a mut TaskContext<'b>) -> LocalBoxFuture<'a, ()>
            + Send
            + Sync
            + 'static,
    {
        self.custom_task_with(
            CustomTaskDecl {
                name: name.to_owned(),
                method: "CUSTOM".to_owned(),
                weight: 1,
                tags: Vec::new(),
                on_start: false,
            },
            Arc::new(task),
        )
    }

    /// A task written in Rust with its weight, tags and report label chosen.
    pub fn custom_task_with(
        mut self,
        declaration: CustomTaskDecl,
        task: Arc<dyn CustomTask>,
    ) -> SuiteBuilder {
        self.custom_tasks.insert(&declaration.name, task);
        self.custom_declarations.push(declaration);
        self
    }

    /// A threshold; several on one selector accumulate, as a list in a file.
    pub fn threshold(mut self, selector: &str, expression: &str) -> SuiteBuilder {
        let expression = toml::Value::String(expression.to_owned());
        match self.thresholds.get_mut(selector) {
            Some(toml::Value::Array(list)) => list.push(expression),
            Some(single) => {
                let first = single.clone();
                *single = toml::Value::Array(vec![first, expression]);
            }
            None => {
                self.thresholds.insert(selector.to_owned(), expression);
            }
        }
        self
    }

    /// The suite as a file would hold it (without the custom tasks).
    pub fn to_toml(&self) -> String {
        let mut suite = toml::Table::new();
        suite.insert("name".into(), toml::Value::String(self.name.clone()));
        if let Some(description) = &self.description {
            suite.insert(
                "description".into(),
                toml::Value::String(description.clone()),
            );
        }
        let mut file = toml::Table::new();
        file.insert("suite".into(), toml::Value::Table(suite));
        for (key, value) in &self.sections {
            file.insert(key.clone(), value.clone());
        }
        if !self.tasks.is_empty() {
            file.insert("task".into(), toml::Value::Array(self.tasks.clone()));
        }
        if !self.thresholds.is_empty() {
            file.insert(
                "thresholds".into(),
                toml::Value::Table(self.thresholds.clone()),
            );
        }
        toml::to_string(&file).expect("a TOML table serializes")
    }

    /// Plans the suite with the checks a file gets; errors name the
    /// generated TOML's lines (see [`SuiteBuilder::to_toml`]).
    pub fn build(&self, options: &PlanOptions) -> Result<BuiltSuite, SuiteErrors> {
        let mut options = options.clone();
        options
            .custom_tasks
            .extend(self.custom_declarations.iter().cloned());
        let plan = Plan::from_source(
            &self.to_toml(),
            &format!("<suite {} built in Rust>", self.name),
            &options,
        )?;
        Ok(BuiltSuite {
            plan,
            custom_tasks: self.custom_tasks.clone(),
        })
    }
}
