//! Issue 13 item 14: shell completions and man pages come from the same definitions as the
//! parser, and every verb's `--help` carries an example. The verbs are read from the real
//! binary's own `--help`, so a verb added later is checked without editing this test.

use std::path::Path;

use crate::support::*;

/// `ferry ARGS…` with no daemon involved (these verbs never connect).
async fn ferry(args: &[&str]) -> Output {
    let state = tempfile::tempdir().unwrap();
    let mut c = command(state.path());
    c.args(args);
    run_command(c, WAIT).await
}

/// The names in the `Commands:` section of a `--help` text (clap's `help` excluded).
fn commands_in(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_owned)
        .collect()
}

/// Every verb and sub-verb as the words after `ferry`, found through `--help` recursively;
/// each one's `--help` must show an example of itself.
async fn verbs_with_examples() -> Vec<Vec<String>> {
    let mut todo: Vec<Vec<String>> = commands_in(&ferry(&["--help"]).await.expect_code(0).stdout)
        .into_iter()
        .map(|v| vec![v])
        .collect();
    let mut all = Vec::new();
    while let Some(path) = todo.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let out = ferry(&args).await;
        out.expect_code(0);
        let words = path.join(" ");
        assert!(
            out.stdout.contains(&format!("Example: ferry {words}")),
            "`ferry {words} --help` shows no example: {out:?}"
        );
        for sub in commands_in(&out.stdout) {
            let mut p = path.clone();
            p.push(sub);
            todo.push(p);
        }
        all.push(path);
    }
    all
}

#[tokio::test]
async fn issue_13_14_every_verb_has_an_example_a_completion_and_a_man_page() {
    let verbs = verbs_with_examples().await;
    for expected in ["transfer", "list", "daemon", "completions", "man"] {
        assert!(
            verbs.iter().any(|p| p == &[expected]),
            "verb {expected} missing from `ferry --help`: {verbs:?}"
        );
    }
    assert!(verbs.iter().any(|p| p == &["handler", "add"]), "{verbs:?}");

    // Completions: each shell's script names every verb; bash's loads and registers `ferry`.
    for shell in ["bash", "zsh", "fish"] {
        let out = ferry(&["completions", shell]).await;
        out.expect_code(0);
        for path in &verbs {
            let last = path.last().unwrap();
            assert!(
                out.stdout.contains(last.as_str()),
                "the {shell} completions lack `{}`",
                path.join(" ")
            );
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let bash_script = tmp.path().join("ferry.bash");
    std::fs::write(&bash_script, ferry(&["completions", "bash"]).await.stdout).unwrap();
    let loaded = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(format!("source {} && complete -p ferry", arg(&bash_script)))
        .output()
        .await
        .unwrap();
    assert!(
        loaded.status.success() && String::from_utf8_lossy(&loaded.stdout).contains("ferry"),
        "bash cannot load the completions: {loaded:?}"
    );
    assert_eq!(ferry(&["completions", "tcsh"]).await.code, Some(2));

    // Man pages: ferry.1 plus one page per verb, each with its example.
    let man = tmp.path().join("man/man1");
    ferry(&["man", "--out", arg(&man)]).await.expect_code(0);
    let page = |name: &str| {
        std::fs::read_to_string(man.join(format!("{name}.1")))
            .unwrap_or_else(|e| panic!("man page {name}.1: {e}"))
    };
    assert!(page("ferry").contains("transfer"));
    for path in &verbs {
        let name = format!("ferry-{}", path.join("-"));
        let text = page(&name);
        assert!(text.contains(".TH"), "{name}.1 is not a man page: {text}");
        assert!(text.contains("Example"), "{name}.1 has no example: {text}");
    }
    render_if_groff(&man.join("ferry-transfer.1")).await;
}

/// Renders a page with groff when it is installed (a roff syntax error shows as a warning).
async fn render_if_groff(page: &Path) {
    let Ok(out) = tokio::process::Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .arg(page)
        .output()
        .await
    else {
        return;
    };
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "groff rejects {}: {}",
        page.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}
