//! `ferry peers list`: the peers this host fetches cached content from, their health and what
//! came from each (bitsadmin `/peers`). `--json` prints the daemon's answer as it is.

use ferry_client::proto::cache::{PeerInfo, PeersListResult};
use ferry_client::proto::method;
use ferry_client::proto::params::Empty;
use serde_json::Value;

use super::Ctx;
use super::cache::{OFF_HINT, call_both};
use crate::cli::{PeersArgs, PeersCommand};
use crate::exit_code;
use crate::output::{self, bytes_text};

/// Runs `ferry peers …`.
pub async fn run(ctx: &Ctx, a: PeersArgs) -> anyhow::Result<u8> {
    match a.command {
        PeersCommand::List => list(ctx).await,
    }
}

/// One row of `ferry peers list`.
pub fn peer_row(p: &PeerInfo) -> Vec<String> {
    let files = if p.files_fetched == 1 {
        "file"
    } else {
        "files"
    };
    vec![
        p.addr.clone(),
        p.source.clone(),
        p.state.clone(),
        p.bad_until.clone().unwrap_or_else(|| "-".to_owned()),
        p.last_error.clone().unwrap_or_else(|| "-".to_owned()),
        format!(
            "{}, {} {files}",
            bytes_text(p.bytes_fetched),
            p.files_fetched
        ),
    ]
}

/// Prints the known peers, or why there are none when the cache is off.
async fn list(ctx: &Ctx) -> anyhow::Result<u8> {
    let client = ctx.client().await?;
    let (raw, r): (Value, PeersListResult) =
        call_both::<method::PeersList>(&client, Empty {}, "list peers").await?;
    if ctx.json {
        output::json(&raw)?;
    } else if !r.enabled {
        outln!("{OFF_HINT}")?;
    } else {
        let rows: Vec<Vec<String>> = r.peers.iter().map(peer_row).collect();
        outln!(
            "{}",
            output::table(
                &[
                    "ADDR",
                    "SOURCE",
                    "STATE",
                    "BAD UNTIL",
                    "LAST ERROR",
                    "FETCHED"
                ],
                &rows
            )
        )?;
    }
    Ok(exit_code::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows() {
        let p = PeerInfo {
            addr: "10.0.0.2:7580".into(),
            source: "static".into(),
            state: "bad".into(),
            bad_until: Some("2025-01-01T00:05:00Z".into()),
            last_error: Some("connection refused".into()),
            bytes_fetched: 2048,
            files_fetched: 1,
        };
        assert_eq!(
            peer_row(&p),
            [
                "10.0.0.2:7580",
                "static",
                "bad",
                "2025-01-01T00:05:00Z",
                "connection refused",
                "2.00 KiB, 1 file"
            ]
        );
        let fresh = PeerInfo {
            state: "unknown".into(),
            bad_until: None,
            last_error: None,
            bytes_fetched: 0,
            files_fetched: 0,
            ..p
        };
        assert_eq!(peer_row(&fresh)[3..], ["-", "-", "0 B, 0 files"]);
    }
}
