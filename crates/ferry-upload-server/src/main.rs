//! The `ferry-upload-server` binary: `--config PATH` runs the server; `hash-password` prints a
//! users-file line.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// A BITS Upload Protocol server.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// The configuration file (see dist/ferry-upload-server.toml.example).
    #[arg(long, env = "FERRY_UPLOAD_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Reads a password from standard input and prints `NAME:HASH` for the users file.
    HashPassword {
        /// The user name.
        name: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if let Some(Command::HashPassword { name }) = args.command {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        let pass = line.trim_end_matches(['\r', '\n']);
        let hash = ferry_upload_server::auth::hash_password(pass)
            .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))?;
        println!("{name}:{hash}");
        return Ok(());
    }
    let path = args.config.context(
        "no configuration: pass --config PATH (see dist/ferry-upload-server.toml.example)",
    )?;
    let config = ferry_upload_server::Config::load(&path)?;
    let shutdown = async {
        let mut term = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops the server");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    ferry_upload_server::run(config, shutdown).await?;
    Ok(())
}
