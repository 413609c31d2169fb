//! `l2sm completions SHELL` and `l2sm man`: generated from the same clap definition that
//! parses the command line, so every verb is in them. The verbs are read from `l2sm --help`
//! (not from a list here), and the bash script is run by bash to complete `l2sm <TAB>`.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_l2sm");

fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env_remove("L2SM_CONTROLLER_URL")
        .env_remove("L2SM_LAB")
        .stdin(Stdio::null())
        .output()
        .expect("cannot run l2sm")
}

fn stdout_of(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "l2sm {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("output is not UTF-8")
}

/// The top-level verbs of `l2sm --help` ("Commands:" section, without `help`).
fn verbs() -> BTreeSet<String> {
    let help = stdout_of(&["--help"]);
    let verbs: BTreeSet<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|v| *v != "help")
        .map(str::to_owned)
        .collect();
    // The help must have been read: these verbs exist.
    for known in [
        "controller",
        "agent",
        "lab",
        "network",
        "completions",
        "man",
    ] {
        assert!(verbs.contains(known), "{known} not found in:\n{help}");
    }
    verbs
}

#[test]
fn bash_completion_offers_every_top_level_verb() {
    let script = stdout_of(&["completions", "bash"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l2sm.bash");
    std::fs::write(&path, &script).unwrap();
    // What bash offers after `l2sm ` (the completion function, called as readline would).
    let probe = format!(
        "source {}; COMP_WORDS=(l2sm ''); COMP_CWORD=1; COMP_LINE='l2sm '; COMP_POINT=5; \
         _l2sm l2sm '' l2sm; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        path.display()
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &probe])
        .output()
        .expect("bash is needed to run the completion script");
    assert!(
        out.status.success(),
        "bash: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let offered: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    let missing: Vec<_> = verbs()
        .into_iter()
        .filter(|v| !offered.contains(v))
        .collect();
    assert!(
        missing.is_empty(),
        "bash does not offer {missing:?}; it offers {offered:?}"
    );
    // One level down too: `l2sm network <TAB>` offers network's verbs.
    let probe = format!(
        "source {}; COMP_WORDS=(l2sm network ''); COMP_CWORD=2; _l2sm l2sm '' network; \
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        path.display()
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &probe])
        .output()
        .unwrap();
    let offered = String::from_utf8_lossy(&out.stdout);
    for verb in ["create", "delete", "list"] {
        assert!(
            offered.lines().any(|l| l == verb),
            "{verb} not in {offered}"
        );
    }
}

#[test]
fn zsh_and_fish_completions_name_every_verb() {
    let verbs = verbs();
    let zsh = stdout_of(&["completions", "zsh"]);
    assert!(
        zsh.starts_with("#compdef l2sm"),
        "{}",
        &zsh[..80.min(zsh.len())]
    );
    let fish = stdout_of(&["completions", "fish"]);
    for verb in &verbs {
        assert!(
            zsh.contains(&format!("'{verb}:")),
            "zsh completion lacks {verb}"
        );
        assert!(
            fish.contains(&format!("-a \"{verb}\"")),
            "fish completion lacks {verb}"
        );
    }
}

#[test]
fn an_unknown_shell_is_refused_and_prints_nothing() {
    let out = run(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid value 'tcsh'"));
}

#[test]
fn the_man_page_lists_every_verb() {
    let page = stdout_of(&["man"]);
    assert!(
        page.lines().any(|l| l.starts_with(".TH l2sm 1")),
        "no title line"
    );
    assert!(page.contains(&format!("l2sm {}", env!("CARGO_PKG_VERSION"))));
    for verb in verbs() {
        // roff escapes the hyphens of the verbs' page names.
        let name = format!("l2sm\\-{}(1)", verb.replace('-', "\\-"));
        assert!(page.contains(&name), "{name} missing from the man page");
    }
}

#[test]
fn man_dir_writes_a_page_per_verb_and_refuses_a_missing_dir() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    stdout_of(&["man", "--dir", d]);
    for page in [
        "l2sm.1",
        "l2sm-controller.1",
        "l2sm-network-create.1",
        "l2sm-lab-up.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page))
            .unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".TH "), "{page} is not a man page");
    }
    let missing = dir.path().join("nope");
    let out = run(&["man", "--dir", missing.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a directory"));
    assert!(!missing.exists());
}
