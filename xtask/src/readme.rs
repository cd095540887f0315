//! The README is a contract: every `cargo xtask …` command it shows, in a
//! code block or inline, parses with this CLI. A README that names a flag
//! or a subcommand the CLI lacks fails here, not in a user's terminal.

use clap::Parser as _;

use crate::Cli;

/// Every `cargo xtask …` command line of `markdown`: indented code lines,
/// and inline code spans (which may wrap across lines of a paragraph).
fn commands(markdown: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in markdown.lines() {
        if let Some(code) = line.strip_prefix("    ")
            && code.trim_start().starts_with("cargo xtask")
        {
            found.push(code.trim().to_owned());
        }
    }
    // Inline spans: a paragraph's lines joined, then every `…` span.
    for paragraph in markdown.split("\n\n") {
        let joined = paragraph
            .lines()
            .filter(|l| !l.starts_with("    "))
            .collect::<Vec<_>>()
            .join(" ");
        for (i, span) in joined.split('`').enumerate() {
            if i % 2 == 1 && span.trim_start().starts_with("cargo xtask") {
                found.push(span.trim().to_owned());
            }
        }
    }
    found
}

/// The words clap sees: a trailing `# comment` and whatever follows a
/// shell operator (`2>&1`, `|`, `>`) are the shell's, not the CLI's.
fn words(command: &str) -> Result<Vec<String>, String> {
    let mut words = shell_words::split(command).map_err(|e| e.to_string())?;
    if let Some(end) = words
        .iter()
        .position(|w| w.starts_with('#') || w.starts_with('|') || w.contains('>'))
    {
        words.truncate(end);
    }
    // `cargo xtask` is the program's name.
    words.drain(..2);
    words.insert(0, "xtask".to_owned());
    Ok(words)
}

/// Whether the only arguments missing are ones the environment gives
/// (`cargo xtask seed` reads `DATABASE_URL`, as the README says).
fn missing_only_what_the_environment_gives(error: &clap::Error, words: &[String]) -> bool {
    use clap::CommandFactory as _;
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if error.kind() != ErrorKind::MissingRequiredArgument {
        return false;
    }
    let cli = Cli::command();
    let Some(subcommand) = words.get(1).and_then(|name| cli.find_subcommand(name)) else {
        return false;
    };
    let Some(ContextValue::Strings(missing)) = error.get(ContextKind::InvalidArg) else {
        return false;
    };
    missing.iter().all(|arg| {
        let long = arg
            .trim_start_matches("--")
            .split([' ', '=', '<'])
            .next()
            .unwrap_or_default();
        subcommand
            .get_arguments()
            .any(|a| a.get_long() == Some(long) && a.get_env().is_some())
    })
}

#[test]
fn every_command_the_readme_shows_parses() {
    let readme = std::fs::read_to_string(crate::project_root().join("README.md")).unwrap();
    let commands = commands(&readme);
    assert!(
        commands.len() >= 40,
        "found only {} commands: {commands:#?}",
        commands.len()
    );
    let mut refused = Vec::new();
    for command in &commands {
        let parsed = words(command).and_then(|words| match Cli::try_parse_from(&words) {
            Ok(_) => Ok(()),
            Err(error) if missing_only_what_the_environment_gives(&error, &words) => Ok(()),
            Err(error) => Err(error.to_string()),
        });
        if let Err(error) = parsed {
            refused.push(format!(
                "{command}\n    {}",
                error.lines().next().unwrap_or("")
            ));
        }
    }
    assert!(
        refused.is_empty(),
        "README commands the CLI refuses:\n{}",
        refused.join("\n")
    );
}

#[test]
fn a_flag_the_cli_lacks_is_caught() {
    let readme = "Run it:\n\n    cargo xtask perf --target-commandz ./serve\n\nor `cargo xtask\nperf --profile ci`.\n";
    let commands = commands(readme);
    assert_eq!(
        commands,
        [
            "cargo xtask perf --target-commandz ./serve",
            "cargo xtask perf --profile ci"
        ]
    );
    assert!(Cli::try_parse_from(words(&commands[0]).unwrap()).is_err());
    assert!(Cli::try_parse_from(words(&commands[1]).unwrap()).is_ok());
}

/// The README's TOML blocks: suite files or parts of one.
fn toml_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_start()) {
            (None, "```toml") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line.trim_start_matches("  "));
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn every_suite_key_the_readme_shows_exists() {
    let readme = std::fs::read_to_string(crate::project_root().join("README.md")).unwrap();
    let blocks = toml_blocks(&readme);
    assert!(blocks.len() >= 3, "found {} TOML blocks", blocks.len());
    let mut refused = Vec::new();
    for block in &blocks {
        // A part of a suite is read as a suite with the part in it.
        let source = if block.contains("[suite]") {
            block.clone()
        } else {
            format!("[suite]\nname = \"readme\"\n{block}")
        };
        if let Err(error) = harness::suite::parse(&source, "README.md") {
            refused.push(format!("{error}\n{block}"));
        }
    }
    assert!(refused.is_empty(), "{}", refused.join("\n---\n"));
}
