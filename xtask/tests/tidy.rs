//! House rules and ARCHITECTURE.md's invariants as a test, so the map
//! cannot drift from the code (rust-analyzer's `tidy.rs`): every source
//! file says what it is for, no file grows past what one head can hold
//! unless an entry below says why, and the layers keep to their rooms.

use std::path::{Path, PathBuf};

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

/// `(room, what it must not use, why)`.
const LAYERS: [(&str, &str, &str); 5] = [
    (
        "harness/src/engine",
        "crate::infra",
        "the load engine knows nothing about the stack",
    ),
    (
        "harness/src/suite/plan",
        "crate::engine",
        "a plan knows nothing of the engine that runs it (no import circle; custom tasks reach the engine beside the plan)",
    ),
    (
        "harness/src/verdict.rs",
        "std::fs",
        "the verdict is a pure function of the summary",
    ),
    (
        "harness/src/metrics",
        "crate::report",
        "metrics aggregate; reports only read them",
    ),
    (
        "harness/src",
        "fixtures::",
        "the harness knows no application's domain: it comes in through `run::Domain`",
    ),
];

#[test]
fn layers_pass_data_one_way() {
    let mut found = Vec::new();
    for path in rust_files() {
        let text = read(&path);
        for (room, forbidden, why) in LAYERS {
            let in_room = under(&path, room) || path == Path::new(&format!("{room}.rs"));
            if !in_room {
                continue;
            }
            for (number, line) in code_lines(&text) {
                if line.contains(forbidden) {
                    found.push(format!(
                        "{}:{number}: uses `{forbidden}` ({why})",
                        path.display()
                    ));
                }
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn binaries_only_parse_arguments_and_map_outcomes() {
    // The run, the gate and baselines live in `harness::run`; xtask's `perf`
    // must not grow its own pipeline again.
    let perf = read(Path::new("xtask/src/perf.rs"));
    for pipeline in [
        "Stack::start",
        "engine::run",
        "verdict::",
        "baseline::compare",
    ] {
        assert!(
            !perf.contains(pipeline),
            "xtask/src/perf.rs uses `{pipeline}`: that belongs in harness::run"
        );
    }
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
