//! `wice completions`, `wice man` and `--log-format json`, as a user would run them (no root).

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

use crate::harness::*;

#[test]
fn bash_completion_is_valid_bash_and_completes_the_subcommands() {
    let out = run(WICE, &["completions", "bash"]);
    let script = String::from_utf8(out.stdout).expect("utf-8");
    assert!(
        script.contains("import") && script.contains("completions"),
        "{script}"
    );
    let dir = TempDir::new();
    let path = dir.path("wice.bash");
    std::fs::write(&path, &script).expect("write");
    let check = run("bash", &["-n", path.to_str().expect("path")]);
    assert!(check.status.success());
    for shell in ["zsh", "fish"] {
        let out = run(WICE, &["completions", shell]);
        assert!(!out.stdout.is_empty(), "{shell}");
    }
}

#[test]
fn man_writes_a_page_per_command() {
    let dir = TempDir::new();
    let man = dir.path("man");
    run(WICE, &["man", "--dir", man.to_str().expect("path")]);
    for page in ["wice.1", "wice-up.1", "wice-signal.1", "wice-import.1"] {
        let text = std::fs::read_to_string(man.join(page)).unwrap_or_default();
        assert!(text.contains(".TH wice"), "{page}: {text}");
    }
}

#[test]
fn json_logs_are_one_object_per_line() {
    let mut child = Command::new(WICE)
        .args(["--log-format", "json", "signal", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wice signal");
    let mut first = String::new();
    let stderr = child.stderr.take().expect("stderr");
    let _ = BufReader::new(stderr).read_line(&mut first);
    let _ = child.kill();
    let _ = child.wait();
    let line: serde_json::Value =
        serde_json::from_str(first.trim()).unwrap_or_else(|e| panic!("{e}: {first}"));
    assert_eq!(
        line["fields"]["message"], "signaling server listening",
        "{first}"
    );
    assert_eq!(line["level"], "INFO");
}
