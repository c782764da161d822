//! Every command the docs show is one our binaries accept: each `buildsrs`,
//! `buildsrs-coordinator`, `buildsrs-node` and `buildsrs-keys` line in a ```sh block of
//! `docs/*.md` and the README is parsed by that binary's real command-line definition. A
//! renamed or removed flag fails here instead of in a reader's terminal.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use clap::Parser;

/// The shell commands of the ```sh blocks in `file`, continuation lines joined, comments
/// and environment assignments dropped, optional `[...]` parts kept (brackets removed).
fn commands(file: &Path) -> Vec<(String, Vec<String>)> {
    let text = std::fs::read_to_string(file).unwrap();
    let mut found = Vec::new();
    let mut in_sh = false;
    let mut pending = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_sh = !in_sh && line.trim() == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        let code = match line.find(" #") {
            Some(at) => &line[..at],
            None => line,
        };
        let code = code.trim();
        if code.starts_with('#') || code.is_empty() {
            continue;
        }
        if let Some(start) = code.strip_suffix('\\') {
            pending.push_str(start);
            pending.push(' ');
            continue;
        }
        pending.push_str(code);
        let command = std::mem::take(&mut pending).replace(['[', ']'], "");
        let words: Vec<String> = shlex::split(&command).unwrap_or_default();
        let words: Vec<String> = words.into_iter().skip_while(|w| w.contains('=')).collect();
        if words.first().is_some_and(|w| w.starts_with("buildsrs")) {
            found.push((command, words));
        }
    }
    found
}

fn parses(words: &[String]) -> Option<Result<(), clap::Error>> {
    let binary = Path::new(&words[0]).file_name()?.to_str()?;
    Some(match binary {
        "buildsrs" => buildsrs_cli::Cli::try_parse_from(words).map(drop),
        "buildsrs-coordinator" => buildsrs_coordinator::cli::Cli::try_parse_from(words).map(drop),
        "buildsrs-node" => buildsrs_node::cli::Cli::try_parse_from(words).map(drop),
        "buildsrs-keys" => buildsrs_keys::cli::Cli::try_parse_from(words).map(drop),
        _ => return None,
    })
}

#[test]
fn every_documented_command_parses() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.push(root.join("README.md"));
    files.sort();
    let mut checked = 0;
    let mut failures = Vec::new();
    for file in &files {
        for (command, words) in commands(file) {
            match parses(&words) {
                Some(Ok(())) => checked += 1,
                Some(Err(error)) => failures.push(format!(
                    "{}: `{command}`:\n{}",
                    file.display(),
                    error.render()
                )),
                None => {}
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The user guide alone shows eight; a parser that found nothing would pass vacuously.
    assert!(checked >= 20, "only {checked} commands found");
}
