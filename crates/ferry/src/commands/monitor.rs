//! `ferry monitor [JOB]`: a line per job event as it happens (`--json`: one event per line).

use std::collections::HashMap;

use anyhow::{Context as _, bail};
use ferry_client::Client;
use ferry_client::proto::params::EventsFollowParams;
use ferry_client::proto::{Event, EventKind};
use tokio::signal::unix::{SignalKind, signal};

use super::Ctx;
use crate::cli::MonitorArgs;
use crate::exit_code;
use crate::output::{bytes_fraction, bytes_text, short_id, short_key};
use crate::resolve::resolve_job;

/// What an event says, in a few words.
pub fn event_text(kind: &EventKind) -> String {
    match kind {
        EventKind::Created => "created".to_owned(),
        EventKind::State { from, to } => format!("state {from} -> {to}"),
        EventKind::Progress {
            bytes_transferred,
            bytes_total,
        } => format!(
            "progress {}",
            bytes_fraction(*bytes_transferred, *bytes_total)
        ),
        EventKind::FileTransferred { file_index } => format!("file {file_index} transferred"),
        EventKind::Modified { fields } => format!("modified {}", fields.join(", ")),
        EventKind::Error { error } => format!(
            "error {}{}: {}",
            error.code,
            if error.transient { " (transient)" } else { "" },
            error.description
        ),
        EventKind::Notification {
            callback,
            target,
            outcome,
            attempt,
            detail,
        } => {
            let mut s =
                format!("notification {callback} via {target}: {outcome} (attempt {attempt})");
            if let Some(d) = detail {
                s.push_str(&format!(": {d}"));
            }
            s
        }
        EventKind::PeerCache {
            action,
            file_index,
            key,
            peer,
            bytes,
            waited_ms,
            detail,
        } => {
            let mut s = format!("peer cache {} file {file_index}", action.replace('_', " "));
            if let Some(k) = key {
                s.push_str(&format!(" key {}", short_key(k)));
            }
            if let Some(p) = peer {
                s.push_str(&format!(" peer {p}"));
            }
            if *bytes > 0 {
                s.push_str(&format!(" ({})", bytes_text(*bytes)));
            }
            if *waited_ms > 0 {
                s.push_str(&format!(" after {waited_ms}ms"));
            }
            if let Some(d) = detail {
                s.push_str(&format!(": {d}"));
            }
            s
        }
        EventKind::Other => "an event this ferry does not know (a newer ferryd)".to_owned(),
    }
}

/// Job display names, looked up once per job (and again when the name changes).
#[derive(Debug, Default)]
pub struct Names(HashMap<String, String>);

impl Names {
    /// The display name of the event's job (`-` when it cannot be read).
    pub async fn get(&mut self, client: &Client, ev: &Event) -> String {
        let renamed = matches!(&ev.kind, EventKind::Modified { fields } if fields.iter().any(|f| f == "display_name"));
        if renamed || !self.0.contains_key(&ev.job_id) {
            // A job that vanished or cannot be read still gets its events shown.
            let name = client
                .get(&ev.job_id)
                .await
                .map_or_else(|_| "-".to_owned(), |j| j.settings.display_name);
            self.0.insert(ev.job_id.clone(), name);
        }
        self.0.get(&ev.job_id).cloned().unwrap_or_default()
    }
}

/// Follows events until Ctrl-C or until the daemon goes away.
pub async fn run(ctx: &Ctx, a: MonitorArgs) -> anyhow::Result<u8> {
    let mut sigint = signal(SignalKind::interrupt()).context("cannot watch for Ctrl-C")?;
    let client = ctx.client().await?;
    let job_id = match &a.job {
        Some(j) => Some(resolve_job(&client, j).await?),
        None => None,
    };
    client
        .follow_events(EventsFollowParams {
            after: None,
            job_id,
        })
        .await
        .context("cannot follow events")?;
    let mut names = Names::default();
    loop {
        tokio::select! {
            ev = client.next_event() => {
                let Some(ev) = ev else {
                    bail!("the connection to ferryd closed (did the daemon stop?)");
                };
                if ctx.json {
                    crate::output::json_line(&ev)?;
                } else {
                    let name = names.get(&client, &ev).await;
                    outln!("{}  {}  {}  {}", crate::output::local_time(&ev.time), short_id(&ev.job_id), name, event_text(&ev.kind))?;
                }
            }
            _ = sigint.recv() => return Ok(exit_code::INTERRUPTED),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_client::proto::JobState;

    #[test]
    fn texts() {
        assert_eq!(
            event_text(&EventKind::State {
                from: JobState::Suspended,
                to: JobState::TransientError
            }),
            "state suspended -> transient_error"
        );
        assert_eq!(
            event_text(&EventKind::Progress {
                bytes_transferred: 0,
                bytes_total: Some(1024)
            }),
            "progress 0 B / 1.00 KiB"
        );
        assert_eq!(
            event_text(&EventKind::Notification {
                callback: "job_error".into(),
                target: "cmdline".into(),
                outcome: "failed".into(),
                attempt: 2,
                detail: Some("exit status 1".into()),
            }),
            "notification job_error via cmdline: failed (attempt 2): exit status 1"
        );
        assert_eq!(
            event_text(&EventKind::PeerCache {
                action: "peer_failed".into(),
                file_index: 0,
                key: Some("0123456789abcdef".into()),
                peer: Some("10.0.0.2:7580".into()),
                bytes: 0,
                waited_ms: 250,
                detail: Some("connection refused".into()),
            }),
            "peer cache peer failed file 0 key 0123456789ab peer 10.0.0.2:7580 after 250ms: \
             connection refused"
        );
    }
}
