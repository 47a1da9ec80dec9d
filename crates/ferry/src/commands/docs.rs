//! `ferry completions SHELL` and `ferry man --out DIR`: shell completions and man pages, both
//! generated from the same clap definitions as the parser, so they cannot drift from it.

use std::io::Write as _;

use anyhow::Context as _;
use clap::CommandFactory as _;

use crate::cli::{Cli, CompletionsArgs, ManArgs, Shell};
use crate::exit_code;

/// Prints the completion script for `args.shell` on stdout.
pub fn completions(args: &CompletionsArgs) -> anyhow::Result<u8> {
    let mut cmd = Cli::command();
    let shell = match args.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "ferry", &mut script);
    let mut out = std::io::stdout().lock();
    out.write_all(&script)
        .and_then(|()| out.flush())
        .context("cannot write the completion script to stdout")?;
    Ok(exit_code::OK)
}

/// Writes `ferry.1` and one `ferry-VERB[-SUBVERB].1` per verb into `args.out`, then prints the
/// directory.
pub fn man(args: &ManArgs) -> anyhow::Result<u8> {
    let dir = &args.out;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the man page directory {}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir).with_context(|| {
        format!(
            "cannot write the man pages into {}; check that it is a writable directory",
            dir.display()
        )
    })?;
    outln!("{}", dir.display())?;
    Ok(exit_code::OK)
}
