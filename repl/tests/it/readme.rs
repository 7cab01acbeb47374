//! The README stays honest: every `tidemark …` command its tour and examples show names a
//! subcommand the binary has (checked with `--help`, so nothing runs), and the set-up block
//! is the two commands the project promises. (`.ci/run` runs the set-up commands themselves.)

use std::process::Command;

const README: &str = include_str!("../../../README.md");

/// The subcommand path of a command line: the words after `tidemark` (or `cargo run … --`)
/// up to the first flag, placeholder or argument.
fn subcommand(line: &str) -> Option<Vec<String>> {
    let rest = match line.trim().split_once("tidemark ") {
        Some(("", rest)) => rest,
        _ => line.trim().split_once(" -- ")?.1,
    };
    let words: Vec<String> = rest
        .split_whitespace()
        .take_while(|w| {
            w.chars().all(|c| c.is_ascii_lowercase() || c == '-') && !w.starts_with('-')
        })
        .map(str::to_string)
        .collect();
    (!words.is_empty()).then_some(words)
}

/// Every backtick span starting with `tidemark ` in the tour table.
fn tour_commands() -> Vec<String> {
    let tour = README
        .split("## A short tour")
        .nth(1)
        .expect("the README has a tour")
        .split("\n### ")
        .next()
        .unwrap();
    tour.lines()
        .filter(|l| l.starts_with("| `"))
        .flat_map(|l| {
            l.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter(|span| span.starts_with("tidemark "))
        .collect()
}

/// Every line of a code block that runs tidemark (directly, after a `$ ` prompt, or through
/// `cargo run --release --`).
fn example_commands() -> Vec<String> {
    let mut lines = Vec::new();
    let mut in_block = false;
    for line in README.lines() {
        if line.starts_with("```") {
            in_block = !in_block;
            continue;
        }
        let line = line.trim_start_matches("$ ");
        if in_block
            && (line.starts_with("tidemark ") || line.starts_with("cargo run --release -- "))
        {
            lines.push(line.to_string());
        }
    }
    lines
}

fn has_subcommand(words: &[String]) -> bool {
    Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(words)
        .arg("--help")
        .output()
        .expect("run tidemark")
        .status
        .success()
}

#[test]
fn the_tour_and_examples_name_commands_the_binary_has() {
    let tour = tour_commands();
    assert!(tour.len() >= 20, "the tour lost its commands: {tour:?}");
    let examples = example_commands();
    assert!(examples.len() >= 3, "{examples:?}");
    let mut checked = 0;
    for line in tour.iter().chain(&examples) {
        let words = subcommand(line).unwrap_or_else(|| panic!("no subcommand in {line:?}"));
        assert!(
            has_subcommand(&words),
            "README shows `{line}`, but `tidemark {}` is not a command",
            words.join(" ")
        );
        checked += 1;
    }
    // And the check itself can fail.
    assert!(!has_subcommand(&["no-such-command".to_string()]));
    assert!(checked >= 23, "{checked}");
}

#[test]
fn the_set_up_block_is_the_two_promised_commands() {
    let setup = README.split("## Set-up").nth(1).expect("a set-up section");
    let block = setup
        .split("```sh\n")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    let commands: Vec<&str> = block
        .lines()
        .map(|l| l.split('#').next().unwrap().trim())
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(commands, ["cargo run --release -- demo", "bash .ci/run"]);
}

#[test]
fn subcommand_paths_are_read_as_a_user_types_them() {
    let words = |l: &str| subcommand(l).unwrap().join(" ");
    assert_eq!(words("tidemark mart test [NAME…]"), "mart test");
    assert_eq!(words("tidemark history DAY [--table T]"), "history");
    assert_eq!(words("tidemark user add NAME --role reader"), "user add");
    assert_eq!(words("cargo run --release -- sql --warehouse x"), "sql");
}
