//! How the workspace builds: what CI's clean build and `cargo xtask` cost
//! depends on the root manifest's profiles and on xtask's features, and
//! these rules keep both as the comments there say.

use std::path::Path;

use super::{project_root, read};

/// Each package of a `cargo tree -e features` listing with the features it
/// is built with (host and target uses shown together, as cargo tree does).
fn resolved_features(args: &[&str]) -> std::collections::BTreeMap<String, Vec<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = std::process::Command::new(cargo)
        .current_dir(project_root())
        .args(["tree", "--prefix", "none", "--format", "{p} {f}"])
        .args(args)
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "cargo tree {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut packages = std::collections::BTreeMap::<String, Vec<String>>::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        // "name vX.Y.Z [(path)] [feature,feature]"; feature edges ("serde feature \"std\"") have no version.
        let words: Vec<&str> = line.split_whitespace().collect();
        let [name, version, rest @ ..] = words.as_slice() else {
            continue;
        };
        if !version.starts_with('v') {
            continue;
        }
        let features = rest
            .iter()
            .find(|word| !word.starts_with('(') && !word.ends_with(')'));
        let entry = packages.entry(format!("{name} {version}")).or_default();
        for feature in features.into_iter().flat_map(|list| list.split(',')) {
            if !entry.iter().any(|known| known == feature) {
                entry.push(feature.to_string());
            }
        }
        entry.sort();
    }
    packages
}

/// `cargo xtask` is `cargo run -p xtask`: cargo resolves features for xtask
/// alone, and every crate whose features differ from the workspace's build
/// is built again, with all that depends on it (46 crates, about 3 minutes,
/// in CI's test phase). xtask's manifest names the workspace's features.
#[test]
fn cargo_xtask_reuses_the_workspace_build() {
    let alone = resolved_features(&["-p", "xtask", "-e", "normal,build,features"]);
    let workspace = resolved_features(&["--workspace", "-e", "features"]);
    let differ: Vec<String> = alone
        .iter()
        .filter_map(|(package, features)| {
            let wanted = workspace.get(package)?;
            (wanted != features).then(|| {
                let missing: Vec<&String> =
                    wanted.iter().filter(|f| !features.contains(f)).collect();
                format!("{package}: add features {missing:?}")
            })
        })
        .collect();
    assert!(
        differ.is_empty(),
        "`cargo xtask` would build these (and all that depends on them) again; \
         name them in xtask/Cargo.toml's [dependencies] with the workspace's features:\n{}",
        differ.join("\n")
    );
}

/// The dev profile optimises dependencies through `[profile.dev]` itself
/// and names each workspace crate (less optimised, with line tables): a
/// `[profile.dev.package."*"]` would outrank `build-override` and build
/// every proc macro optimised again (see the root Cargo.toml).
#[test]
fn every_workspace_crate_has_its_dev_profile() {
    let manifest: toml::Table = read(Path::new("Cargo.toml"))
        .parse()
        .expect("Cargo.toml parses");
    let members = manifest["workspace"]["members"]
        .as_array()
        .expect("workspace members");
    let dev = manifest["profile"]["dev"]
        .as_table()
        .expect("[profile.dev]");
    let packages = dev["package"].as_table().expect("[profile.dev.package.*]");
    assert!(
        !packages.contains_key("*"),
        "[profile.dev.package.\"*\"] outranks [profile.dev.build-override]: set what dependencies get in [profile.dev]"
    );
    assert_eq!(
        dev["build-override"]["opt-level"].as_integer(),
        Some(0),
        "proc macros and build scripts are built unoptimised"
    );
    for member in members {
        let name = member.as_str().expect("a member path");
        let profile = packages
            .get(name)
            .unwrap_or_else(|| panic!("[profile.dev.package.{name}] is missing: without it the crate builds at the dependencies' level"));
        assert_eq!(profile["opt-level"].as_integer(), Some(1), "{name}");
    }
}

/// Every cargo an xtask task starts goes through `cargo_command()`, which
/// leaves out the variables `cargo run` gave xtask (`CARGO_PKG_NAME`, …):
/// passed on, they rebuild ring and all above it in the nested cargo.
#[test]
fn nested_cargo_commands_leave_the_package_variables_out() {
    let mut found = Vec::new();
    for path in super::rust_files() {
        if !path.starts_with("xtask/src") {
            continue;
        }
        for (number, line) in super::code_lines(&read(&path)) {
            let spawns_cargo = [
                "Command::new(cargo())",
                "Command::new(crate::cargo())",
                "Command::new(\"cargo\")",
            ]
            .iter()
            .any(|pattern| line.contains(pattern));
            let the_helper =
                path == Path::new("xtask/src/main.rs") && line.contains("let mut command");
            if spawns_cargo && !the_helper {
                found.push(format!("{}:{number}: {}", path.display(), line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "use crate::cargo_command():\n{}",
        found.join("\n")
    );
}
