//! `routerctl completions SHELL` prints a completion script that the shell itself accepts.
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn script(shell: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_routerctl"))
        .args(["completions", shell])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn completion_scripts_name_the_commands() {
    for shell in ["bash", "zsh", "fish"] {
        let text = script(shell);
        for word in ["route", "plugin", "match", "health", "admin", "token-file"] {
            assert!(text.contains(word), "{shell} script lacks {word}");
        }
    }
}

/// bash parses the script and, once sourced, completes `routerctl pl` to `plugin`.
#[test]
fn bash_completes_subcommands() {
    let text = script("bash");
    let dir = std::env::temp_dir().join(format!("routerctl-completions-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("routerctl.bash");
    std::fs::write(&file, text).unwrap();
    let probe = format!(
        "source {}; COMP_WORDS=(routerctl pl); COMP_CWORD=1; COMP_LINE='routerctl pl'; COMP_POINT=12; _routerctl routerctl pl routerctl; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        file.display()
    );
    let out = Command::new("bash").args(["-c", &probe]).output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replies = String::from_utf8_lossy(&out.stdout);
    assert!(replies.lines().any(|l| l == "plugin"), "{replies}");
}
