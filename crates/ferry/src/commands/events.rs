//! `ferry events [JOB] [--follow] [--after SEQ]`: the durable event log, one line per event
//! (`--json`: one event object per line).
//!
//! Without `--follow` it reads pages with `events.read` until `next` stops moving; with it, it
//! follows (`events.follow`, replaying after `--after` first) until Ctrl-C.

use anyhow::{Context as _, bail};
use ferry_client::Client;
use ferry_client::proto::Event;
use ferry_client::proto::method;
use ferry_client::proto::params::{EventsFollowParams, EventsReadParams};
use serde_json::Value;
use tokio::signal::unix::{SignalKind, signal};

use super::Ctx;
use super::monitor::{Names, event_text};
use crate::cli::EventsArgs;
use crate::exit_code;
use crate::output::short_id;
use crate::resolve::resolve_job;

/// Prints the events, or follows them.
pub async fn run(ctx: &Ctx, a: EventsArgs) -> anyhow::Result<u8> {
    let client = ctx.client().await?;
    let job_id = match &a.job {
        Some(j) => Some(resolve_job(&client, j).await?),
        None => None,
    };
    let mut names = Names::default();
    if a.follow {
        follow(ctx, &client, &mut names, a.after, job_id).await
    } else {
        read(ctx, &client, &mut names, a.after, job_id).await
    }
}

/// Prints one event: `SEQ  TIME  JOB  NAME  WHAT`, or the daemon's object with `--json`.
async fn print(
    ctx: &Ctx,
    client: &Client,
    names: &mut Names,
    raw: &Value,
    ev: &Event,
) -> anyhow::Result<()> {
    if ctx.json {
        return crate::output::json_line(raw);
    }
    let name = names.get(client, ev).await;
    outln!(
        "{}  {}  {}  {}  {}",
        ev.seq,
        crate::output::local_time(&ev.time),
        short_id(&ev.job_id),
        name,
        event_text(&ev.kind)
    )?;
    Ok(())
}

/// Reads the log page by page until nothing new comes.
async fn read(
    ctx: &Ctx,
    client: &Client,
    names: &mut Names,
    mut after: Option<u64>,
    job_id: Option<String>,
) -> anyhow::Result<u8> {
    loop {
        let params = EventsReadParams {
            after,
            job_id: job_id.clone(),
            limit: None,
        };
        let page: Value = client
            .call_json::<method::EventsRead>(params)
            .await
            .context("cannot read events")?;
        let events = page
            .get("events")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for raw in &events {
            let ev: Event = serde_json::from_value(raw.clone())
                .context("unexpected event object from ferryd")?;
            print(ctx, client, names, raw, &ev).await?;
        }
        let next = page.get("next").and_then(Value::as_u64);
        // `next` equals `after` once nothing is new; an empty page ends it too, so a daemon
        // whose cursor does not move cannot make this loop forever.
        if events.is_empty() || next.is_none() || next == after {
            return Ok(exit_code::OK);
        }
        after = next;
    }
}

/// Follows new events (after replaying those after `after`) until Ctrl-C.
async fn follow(
    ctx: &Ctx,
    client: &Client,
    names: &mut Names,
    after: Option<u64>,
    job_id: Option<String>,
) -> anyhow::Result<u8> {
    let mut sigint = signal(SignalKind::interrupt()).context("cannot watch for Ctrl-C")?;
    client
        .follow_events(EventsFollowParams { after, job_id })
        .await
        .context("cannot follow events")?;
    loop {
        tokio::select! {
            ev = client.next_event() => {
                let Some(ev) = ev else {
                    bail!("the connection to ferryd closed (did the daemon stop?)");
                };
                let raw = serde_json::to_value(&ev)?;
                print(ctx, client, names, &raw, &ev).await?;
            }
            _ = sigint.recv() => return Ok(exit_code::INTERRUPTED),
        }
    }
}
