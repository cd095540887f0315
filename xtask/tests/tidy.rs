//! House rules and ARCHITECTURE.md's invariants as a test, so the map
//! cannot drift from the code (rust-analyzer's `tidy.rs`): every source
//! file says what it is for, no file grows past what one head can hold
//! unless an entry below says why, and the layers keep to their rooms.

use std::path::{Path, PathBuf};

/// Rules on how the workspace builds (profiles, features).
#[path = "tidy/build.rs"]
mod build;

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the workspace")
        .to_path_buf()
}

/// Every `.rs` file of the workspace, as paths relative to its root.
fn rust_files() -> Vec<PathBuf> {
    let root = project_root();
    let mut files = Vec::new();
    let mut pending = vec![root.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("a readable directory") {
            let path = entry.expect("a directory entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if path.is_dir() {
                if !name.starts_with('.') && name != "target" {
                    pending.push(path);
                }
            } else if name.ends_with(".rs") {
                files.push(
                    path.strip_prefix(&root)
                        .expect("under the root")
                        .to_path_buf(),
                );
            }
        }
    }
    files.sort();
    assert!(files.len() > 50, "found only {} Rust files", files.len());
    files
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(project_root().join(path)).expect("a readable source file")
}

/// The source lines of a file, its `#[cfg(test)]` module and comments left out.
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let end = text.find("#[cfg(test)]").unwrap_or(text.len());
    text[..end]
        .lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line))
        .filter(|(_, line)| !line.trim_start().starts_with("//"))
}

fn under(path: &Path, prefix: &str) -> bool {
    path.starts_with(prefix)
}

/// Library and binary sources (not tests, benches' data or examples).
fn is_source(path: &Path) -> bool {
    path.components().any(|c| c.as_os_str() == "src")
}

#[test]
fn every_source_file_starts_with_a_doc_header() {
    let missing: Vec<_> = rust_files()
        .into_iter()
        .filter(|path| !read(path).trim_start().starts_with("//!"))
        .collect();
    assert!(
        missing.is_empty(),
        "files without a `//!` line saying what they are for: {missing:?}"
    );
}

/// Files allowed past [`MAX_LINES`], each with why.
const LONG_FILES: [(&str, &str); 2] = [
    (
        "fixtures/src/vocabulary.rs",
        "word lists of the AHSP domain (work items, resources, units): data, not logic",
    ),
    (
        "fixtures/tests/service_http.rs",
        "one black-box test per route of the reference service, sharing one stack",
    ),
];

const MAX_LINES: usize = 800;

#[test]
fn no_file_is_longer_than_one_head_can_hold() {
    let mut too_long = Vec::new();
    for path in rust_files() {
        let lines = read(&path).lines().count();
        let allowed = LONG_FILES
            .iter()
            .any(|(file, _)| Path::new(file) == path.as_path());
        if lines > MAX_LINES && !allowed {
            too_long.push(format!("{} ({lines} lines)", path.display()));
        }
    }
    assert!(
        too_long.is_empty(),
        "over {MAX_LINES} lines: {too_long:?} (split by concern, or add an entry to LONG_FILES saying why)"
    );
    for (file, _) in LONG_FILES {
        let lines = read(Path::new(file)).lines().count();
        assert!(
            lines > MAX_LINES,
            "{file} has {lines} lines now: remove its LONG_FILES entry"
        );
    }
}

/// Tools that ask the Docker daemon itself whether it answers.
const DOCKER_TOOLS: [&str; 3] = [
    "xtask/src/doctor.rs",
    "xtask/src/images.rs",
    "xtask/src/test.rs",
];

#[test]
fn nothing_outside_infra_knows_which_provider_runs_a_stack() {
    let forbidden = [
        "Provider::",
        "ServiceLocation::",
        "bollard",
        "docker_if_answering",
    ];
    let mut found = Vec::new();
    for path in rust_files() {
        if !is_source(&path)
            || under(&path, "harness/src/infra")
            || path == Path::new("harness/src/infra.rs")
        {
            continue;
        }
        let text = read(&path);
        for (number, line) in code_lines(&text) {
            for word in forbidden {
                let docker_tool = DOCKER_TOOLS.iter().any(|t| Path::new(t) == path);
                if line.contains(word) && !(docker_tool && word == "docker_if_answering") {
                    found.push(format!("{}:{number}: {}", path.display(), line.trim()));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "provider knowledge outside harness/src/infra (ask `Stack` for processes, log sources and capabilities):\n{}",
        found.join("\n")
    );
}

/// The module a source file is: `harness/src/engine/vu/login.rs` is
/// `crate::engine::vu::login` of its crate; a crate root is `crate`.
fn module_of(path: &Path) -> Vec<String> {
    let mut module = vec!["crate".to_owned()];
    let parts: Vec<String> = path
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let Some(src) = parts.iter().position(|p| p == "src") else {
        return module;
    };
    for (i, part) in parts[src + 1..].iter().enumerate() {
        let last = src + 1 + i == parts.len() - 1;
        let name = part.trim_end_matches(".rs");
        if last && matches!(name, "lib" | "main" | "mod") {
            break;
        }
        module.push(name.to_owned());
    }
    module
}

/// Every path a source file names outside its `#[cfg(test)]` items, as
/// the parser sees it: `use` trees flattened (`use a::{b, c::d}` is `a::b`
/// and `a::c::d`), `super` and `self` resolved to the crate root, and a
/// path that starts with a name the file imported expanded through that
/// import (`Stack::start` after `use harness::infra::Stack` is
/// `harness::infra::Stack::start`). A grouped import or an alias hides
/// nothing from it, as a substring search would.
fn named_paths(path: &Path) -> std::collections::BTreeSet<String> {
    use syn::visit::Visit;

    struct Names {
        module: Vec<String>,
        imports: std::collections::BTreeMap<String, Vec<String>>,
        paths: Vec<Vec<String>>,
    }

    fn resolve(module: &[String], segments: Vec<String>) -> Vec<String> {
        let mut resolved: Vec<String> = Vec::new();
        let mut rest = segments.into_iter().peekable();
        match rest.peek().map(String::as_str) {
            Some("self") => {
                resolved = module.to_vec();
                rest.next();
            }
            Some("super") => {
                resolved = module.to_vec();
                while rest.peek().map(String::as_str) == Some("super") {
                    rest.next();
                    resolved.pop();
                }
            }
            _ => {}
        }
        resolved.extend(rest);
        resolved
    }

    fn is_test(attrs: &[syn::Attribute]) -> bool {
        attrs.iter().any(|a| {
            a.path().is_ident("cfg")
                && a.meta.require_list().is_ok_and(|l| {
                    l.tokens
                        .to_string()
                        .split(|c: char| !c.is_alphanumeric() && c != '_')
                        .any(|w| w == "test")
                })
        })
    }

    impl Names {
        fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
            match tree {
                syn::UseTree::Path(p) => {
                    prefix.push(p.ident.to_string());
                    self.use_tree(prefix, &p.tree);
                    prefix.pop();
                }
                syn::UseTree::Name(n) => {
                    let mut full = prefix.clone();
                    if n.ident != "self" {
                        full.push(n.ident.to_string());
                    }
                    let full = resolve(&self.module, full);
                    let name = full.last().cloned().unwrap_or_default();
                    self.imports.insert(name, full.clone());
                    self.paths.push(full);
                }
                syn::UseTree::Rename(r) => {
                    let mut full = prefix.clone();
                    if r.ident != "self" {
                        full.push(r.ident.to_string());
                    }
                    let full = resolve(&self.module, full);
                    self.imports.insert(r.rename.to_string(), full.clone());
                    self.paths.push(full);
                }
                syn::UseTree::Glob(_) => self.paths.push(resolve(&self.module, prefix.clone())),
                syn::UseTree::Group(g) => {
                    for tree in &g.items {
                        self.use_tree(prefix, tree);
                    }
                }
            }
        }
    }

    impl<'ast> Visit<'ast> for Names {
        fn visit_item(&mut self, item: &'ast syn::Item) {
            let attrs: &[syn::Attribute] = match item {
                syn::Item::Mod(i) => &i.attrs,
                syn::Item::Fn(i) => &i.attrs,
                syn::Item::Impl(i) => &i.attrs,
                syn::Item::Use(i) => &i.attrs,
                syn::Item::Const(i) => &i.attrs,
                syn::Item::Static(i) => &i.attrs,
                syn::Item::Struct(i) => &i.attrs,
                syn::Item::Enum(i) => &i.attrs,
                syn::Item::Trait(i) => &i.attrs,
                _ => &[],
            };
            if is_test(attrs) {
                return;
            }
            if let syn::Item::Use(u) = item {
                self.use_tree(&mut Vec::new(), &u.tree);
                return;
            }
            syn::visit::visit_item(self, item);
        }

        fn visit_path(&mut self, path: &'ast syn::Path) {
            let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
            self.paths.push(resolve(&self.module, segments));
            syn::visit::visit_path(self, path);
        }
    }

    let file = syn::parse_file(&read(path))
        .unwrap_or_else(|e| panic!("{}: not Rust the parser reads: {e}", path.display()));
    let mut names = Names {
        module: module_of(path),
        imports: Default::default(),
        paths: Vec::new(),
    };
    names.visit_file(&file);
    names
        .paths
        .iter()
        .map(|segments| {
            // Expand through an import: `engine::run` after `use harness::engine`.
            let expanded = match segments.first().and_then(|first| names.imports.get(first)) {
                Some(import) if segments.len() > 1 => {
                    let mut full = import.clone();
                    full.extend(segments[1..].iter().cloned());
                    full
                }
                _ => segments.clone(),
            };
            expanded.join("::")
        })
        .collect()
}

/// Whether `named` is `forbidden` or inside it, segment by segment.
fn names_inside(named: &str, forbidden: &str) -> bool {
    named == forbidden || named.starts_with(&format!("{forbidden}::"))
}

/// `(room, what it must not use, why)`.
const LAYERS: [(&str, &str, &str); 12] = [
    (
        "harness/src/live",
        "crate::run",
        "what watches a run live reads what the run hands it; it never drives the run",
    ),
    (
        "harness/src/live",
        "crate::infra",
        "the live series carry what the probes read, not the stack itself",
    ),
    (
        "harness/src/engine",
        "crate::infra",
        "the load engine knows nothing about the stack",
    ),
    (
        "harness/src/suite",
        "crate::engine",
        "a suite and its plan know nothing of the engine that runs it (no import circle; a built suite's custom tasks reach the engine beside the plan, from `harness::builder`)",
    ),
    (
        "harness/src/suite",
        "crate::run",
        "a suite is read and planned before anything runs",
    ),
    (
        "harness/src/verdict.rs",
        "std::fs",
        "the verdict is a pure function of the summary",
    ),
    (
        "harness/src/verdict.rs",
        "tokio",
        "the verdict is a pure function of the summary",
    ),
    (
        "harness/src/metrics",
        "crate::report",
        "metrics aggregate; reports only read them",
    ),
    (
        "harness/src/metrics",
        "crate::suite",
        "metrics are data: what a metric's name means is the verdict's to read",
    ),
    (
        "harness/src/metrics",
        "crate::browser",
        "metrics hold what the browsers measured; they never reach back into the browser layer",
    ),
    (
        "harness/src/report",
        "crate::run",
        "reports only write what a run hands them",
    ),
    (
        "harness/src",
        "fixtures",
        "the harness knows no application's domain: it comes in through `run::Domain`",
    ),
];

#[test]
fn layers_pass_data_one_way() {
    let mut found = Vec::new();
    for path in rust_files() {
        if !is_source(&path) {
            continue;
        }
        let rooms: Vec<_> = LAYERS
            .iter()
            .filter(|(room, _, _)| under(&path, room) || path == Path::new(&format!("{room}.rs")))
            .collect();
        if rooms.is_empty() {
            continue;
        }
        let named = named_paths(&path);
        for (_, forbidden, why) in rooms {
            for name in named.iter().filter(|n| names_inside(n, forbidden)) {
                found.push(format!("{}: uses `{name}` ({why})", path.display()));
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// What `xtask` may not do itself: the run, the gate and the verdict live
/// in the library (criterion's `analysis::common`); a task parses its
/// arguments and maps outcomes to exit codes.
const PIPELINE: [&str; 7] = [
    "harness::engine::run",
    "harness::infra::Stack::start",
    "harness::verdict",
    "harness::baseline::compare",
    "harness::baseline::Baseline",
    "harness::baseline::SuiteBaseline",
    "harness::run::run_plan",
];

/// `(xtask file, what of PIPELINE it may use, why)`.
const PIPELINE_ALLOWED: [(&str, &str, &str); 2] = [
    (
        "xtask/src/bench_loadgen.rs",
        "harness::engine::run",
        "it measures the engine alone beside wrk: a stack, probes and reports would be what it measures",
    ),
    (
        "xtask/src/up.rs",
        "harness::infra::Stack::start",
        "starting a stack for the user's shell is the whole task",
    ),
];

#[test]
fn binaries_only_parse_arguments_and_map_outcomes() {
    let mut found = Vec::new();
    for path in rust_files() {
        if !under(&path, "xtask/src") {
            continue;
        }
        for name in named_paths(&path) {
            for forbidden in PIPELINE.iter().filter(|f| names_inside(&name, f)) {
                let allowed = PIPELINE_ALLOWED
                    .iter()
                    .any(|(file, what, _)| Path::new(file) == path && what == forbidden);
                if !allowed {
                    found.push(format!(
                        "{}: uses `{name}`: that belongs in harness::run",
                        path.display()
                    ));
                }
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
    // Each allowance is still needed, so the list cannot go stale.
    for (file, what, _) in PIPELINE_ALLOWED {
        assert!(
            named_paths(Path::new(file))
                .iter()
                .any(|n| names_inside(n, what)),
            "{file} no longer uses `{what}`: remove its PIPELINE_ALLOWED entry"
        );
    }
}

/// What only the gate's home does with a baseline: load, save, compare.
const GATE_ONLY: [&str; 3] = [
    "crate::baseline::compare",
    "crate::baseline::Baseline",
    "crate::baseline::SuiteBaseline",
];

/// The gate has one home: of the run, only `run/gate.rs` loads, saves or
/// compares against a baseline; a set and a merge hand it their runs.
#[test]
fn the_gate_has_one_home() {
    let mut found = Vec::new();
    for path in rust_files() {
        let in_run = under(&path, "harness/src/run") || path == Path::new("harness/src/run.rs");
        if !in_run || path == Path::new("harness/src/run/gate.rs") {
            continue;
        }
        for name in named_paths(&path) {
            if GATE_ONLY.iter().any(|gate| names_inside(&name, gate)) {
                found.push(format!(
                    "{}: uses `{name}`: the gate's home is harness/src/run/gate.rs",
                    path.display()
                ));
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// The rules read code as a parser does: the grouped import, the alias and
/// the relative path that a substring search missed are each caught.
#[test]
fn the_rules_see_through_groups_aliases_and_relative_paths() {
    let dir = project_root().join("target/tidy-probe/harness/src/engine");
    std::fs::create_dir_all(&dir).unwrap();
    let probe = dir.join("probe.rs");
    std::fs::write(
        &probe,
        "//! A probe.\nuse crate::{infra::{self as i}, metrics};\nuse super::super::baseline::{compare, Baseline};\nfn f() { let _ = i::Stack::start; }\n#[cfg(test)]\nmod tests { use crate::run::gate; }\n",
    )
    .unwrap();
    let relative = Path::new("target/tidy-probe/harness/src/engine/probe.rs");
    let named = named_paths(relative);
    for expected in [
        "crate::infra",
        "crate::infra::Stack::start",
        "crate::metrics",
        "crate::baseline::compare",
        "crate::baseline::Baseline",
    ] {
        assert!(named.contains(expected), "{expected} not in {named:?}");
    }
    assert!(
        !named.iter().any(|n| n.starts_with("crate::run")),
        "a test module is not the code: {named:?}"
    );
    assert!(names_inside("crate::infra::Stack::start", "crate::infra"));
    assert!(!names_inside("crate::infrastructure", "crate::infra"));
}

/// Every example application is run by a test through its own suite, and
/// `cargo xtask examples` knows how to set it up.
#[test]
fn every_example_has_a_suite_a_test_and_a_setup() {
    let root = project_root();
    let tests: String = std::fs::read_dir(root.join("suites/tests"))
        .expect("suites/tests")
        .map(|entry| std::fs::read_to_string(entry.expect("an entry").path()).unwrap_or_default())
        .collect();
    let setup = read(Path::new("xtask/src/examples.rs"));
    let mut examples = 0;
    for entry in std::fs::read_dir(root.join("examples")).expect("examples/") {
        let path = entry.expect("an entry").path();
        if !path.is_dir() {
            continue;
        }
        examples += 1;
        let name = path.file_name().and_then(|n| n.to_str()).expect("a name");
        assert!(
            path.join("suite.toml").is_file(),
            "examples/{name} has no suite.toml"
        );
        assert!(
            tests.contains(&format!("examples/{name}")),
            "no test under suites/tests runs examples/{name}"
        );
        if path.join("requirements.txt").is_file() {
            assert!(
                setup.contains(&format!("examples/{name}")),
                "cargo xtask examples does not set up examples/{name}"
            );
        }
    }
    assert!(examples > 0, "no example under examples/");
}

/// The longest a function may be: what one screen and one head can hold.
const MAX_FUNCTION_LINES: usize = 150;

/// `(file, function, why)`: functions longer than that, each with a reason.
const LONG_FUNCTIONS: [(&str, &str, &str); 10] = [
    (
        "fixtures/src/generate/project.rs",
        "generate_project",
        "one project generated table by table in foreign-key order; every step draws from the same random source and needs the ids of the steps before",
    ),
    (
        "fixtures/src/service/project_copy.rs",
        "copy_project",
        "one transaction copying a project's tables in foreign-key order; every step needs the id maps of the steps before",
    ),
    (
        "harness/src/engine/vu.rs",
        "run_http_task",
        "the engine's hot path for one HTTP request (send, checks, extracts, record) kept in one place while issue 22 profiles it",
    ),
    (
        "harness/src/infra/containers.rs",
        "start",
        "the services started in order on one network, each awaiting the one before and recorded in the run's ownership before it is created",
    ),
    (
        "harness/src/infra/native.rs",
        "start",
        "the services started in order from local binaries, each awaiting the one before and recorded in the run's ownership before it is spawned",
    ),
    (
        "harness/src/report/html/browser.rs",
        "section",
        "the browser section's tables in the order the page shows them, each a few lines",
    ),
    (
        "harness/src/suite/plan/load.rs",
        "check_load",
        "one arm per executor, each checking its own keys with their file positions",
    ),
    (
        "harness/src/suite/plan/task.rs",
        "compile_task",
        "one arm per kind of task (request, form, page, custom), each compiling its own keys",
    ),
    (
        "harness/src/suite/plan/thresholds.rs",
        "check_selector",
        "each filter of a selector checked in turn against what its metric allows",
    ),
    (
        "harness/src/suite/plan.rs",
        "plan",
        "the plan's concerns validated in their dependency order, each by its plan/<concern>.rs",
    ),
];

/// Every function of the sources outside `#[cfg(test)]` items, with its
/// length in lines (from `fn` to its closing brace).
fn function_lengths(path: &Path) -> Vec<(String, usize)> {
    use syn::spanned::Spanned as _;
    use syn::visit::Visit;

    struct Lengths(Vec<(String, usize)>);

    fn is_test(attrs: &[syn::Attribute]) -> bool {
        attrs.iter().any(|a| {
            (a.path().is_ident("cfg")
                && a.meta
                    .require_list()
                    .is_ok_and(|l| l.tokens.to_string().contains("test")))
                || a.path().is_ident("test")
        })
    }

    impl Lengths {
        fn add(&mut self, name: &syn::Ident, start: proc_macro2::Span, end: proc_macro2::Span) {
            self.0.push((
                name.to_string(),
                end.end().line.saturating_sub(start.start().line) + 1,
            ));
        }
    }

    impl<'ast> Visit<'ast> for Lengths {
        fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
            if !is_test(&item.attrs) {
                syn::visit::visit_item_mod(self, item);
            }
        }
        fn visit_item_fn(&mut self, item: &'ast syn::ItemFn) {
            if !is_test(&item.attrs) {
                self.add(&item.sig.ident, item.sig.span(), item.block.span());
                syn::visit::visit_item_fn(self, item);
            }
        }
        fn visit_impl_item_fn(&mut self, item: &'ast syn::ImplItemFn) {
            if !is_test(&item.attrs) {
                self.add(&item.sig.ident, item.sig.span(), item.block.span());
                syn::visit::visit_impl_item_fn(self, item);
            }
        }
        fn visit_trait_item_fn(&mut self, item: &'ast syn::TraitItemFn) {
            if let Some(block) = &item.default {
                self.add(&item.sig.ident, item.sig.span(), block.span());
            }
            syn::visit::visit_trait_item_fn(self, item);
        }
    }

    let text = std::fs::read_to_string(project_root().join(path)).unwrap();
    let file = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lengths = Lengths(Vec::new());
    lengths.visit_file(&file);
    lengths.0
}

/// One screen per function: none is longer than `MAX_FUNCTION_LINES`
/// unless `LONG_FUNCTIONS` says why.
#[test]
fn no_function_is_longer_than_one_screen() {
    let mut found = Vec::new();
    for path in rust_files().into_iter().filter(|p| is_source(p)) {
        for (name, lines) in function_lengths(&path) {
            let allowed = LONG_FUNCTIONS
                .iter()
                .any(|(file, function, _)| Path::new(file) == path && *function == name);
            if lines > MAX_FUNCTION_LINES && !allowed {
                found.push(format!(
                    "{}: fn {name} is {lines} lines (at most {MAX_FUNCTION_LINES}, or a reason in LONG_FUNCTIONS)",
                    path.display()
                ));
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
    for (file, function, _) in LONG_FUNCTIONS {
        assert!(
            function_lengths(Path::new(file))
                .iter()
                .any(|(name, lines)| name == function && *lines > MAX_FUNCTION_LINES),
            "{file}: fn {function} is no longer long: remove its LONG_FUNCTIONS entry"
        );
    }
}
