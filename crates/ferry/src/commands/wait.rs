//! `ferry wait JOB`: blocks until the job is transferred (or final), failed or cancelled.
//!
//! Waiting follows the job's events (`events.follow`) and re-reads the job when its state may
//! have changed; it never polls.

use std::time::Duration;

use anyhow::{Context as _, bail};
use ferry_client::proto::{EventKind, JobState};
use tokio::signal::unix::{SignalKind, signal};

use super::Ctx;
use crate::cli::{Until, WaitArgs};
use crate::exit_code;
use crate::progress::TransferBar;
use crate::resolve::resolve_job;

/// What to do about a job in a given state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Keep waiting.
    Wait,
    /// Call `job.complete`, then exit 0.
    Complete,
    /// Stop with this exit code.
    Exit(u8),
}

/// The rule of `ferry wait`: transferred/acknowledged → 0, error → 3, cancelled → 1; with
/// `--until final` only acknowledged and cancelled end the wait (an error can still be resumed).
pub fn verdict(until: Until, state: JobState, complete: bool) -> Verdict {
    match state {
        JobState::Acknowledged => Verdict::Exit(exit_code::OK),
        JobState::Cancelled => Verdict::Exit(exit_code::FAILURE),
        JobState::Transferred if complete => Verdict::Complete,
        JobState::Transferred if until == Until::Transferred => Verdict::Exit(exit_code::OK),
        JobState::Error if until == Until::Transferred => Verdict::Exit(exit_code::JOB_ERROR),
        _ => Verdict::Wait,
    }
}

/// Waits, then prints the final state (`--json`: the job object).
pub async fn run(ctx: &Ctx, a: WaitArgs) -> anyhow::Result<u8> {
    let mut sigint = signal(SignalKind::interrupt()).context("cannot watch for Ctrl-C")?;
    let client = ctx.client().await?;
    let id = resolve_job(&client, &a.job).await?;
    // Following before the first read means no state change can slip between the two.
    super::follow_job(&client, &id).await?;
    let deadline = a
        .timeout
        .map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let mut told_error = false;
    let mut grace: Option<tokio::time::Instant> = None;
    let mut bar = TransferBar::new(!ctx.json);
    let mut redraw = tokio::time::interval(Duration::from_secs(1));
    loop {
        let (raw, job) = super::get_job_raw(&client, &id).await?;
        bar.update(&job);
        let now = tokio::time::Instant::now();
        let mut next = verdict(a.until, job.state, a.complete);
        if next == Verdict::Complete && job.settings.auto_complete && grace.is_none_or(|g| now < g)
        {
            // The daemon is handing the files over; wait for it rather than race it.
            grace.get_or_insert(now + super::AUTO_COMPLETE_GRACE);
            next = Verdict::Wait;
        }
        if next != Verdict::Wait {
            bar.clear();
        }
        match next {
            Verdict::Wait => {
                if job.state == JobState::Error && !told_error {
                    told_error = true;
                    let why = job.error.as_ref().map_or("", |e| e.description.as_str());
                    errln!(
                        "ferry: job {id} is in error ({why}); still waiting for it to become final"
                    );
                }
            }
            Verdict::Complete => {
                let (state, partial) = super::complete_transferred(&client, &id).await?;
                return super::print_state(ctx, &id, state, Some(partial));
            }
            Verdict::Exit(code) if code == exit_code::JOB_ERROR => {
                return super::report_job_error(ctx, &client, &job).await;
            }
            Verdict::Exit(code) => {
                if ctx.json {
                    crate::output::json(&raw)?;
                } else {
                    outln!("{}", job.state)?;
                }
                if job.state == JobState::Cancelled {
                    errln!("ferry: job {id} was cancelled");
                }
                return Ok(code);
            }
        }
        // Sleep until an event that can change the state, Ctrl-C, or the deadline.
        loop {
            let timeout = super::sleep_until(deadline);
            let grace_over = super::sleep_until(grace);
            tokio::select! {
                ev = client.next_event() => match ev {
                    None => bail!("the connection to ferryd closed while waiting for job {id}"),
                    Some(ev) if matches!(
                        ev.kind,
                        EventKind::State { .. }
                            | EventKind::Error { .. }
                            | EventKind::Progress { .. }
                            | EventKind::FileTransferred { .. }
                    ) => break,
                    Some(_) => {}
                },
                () = grace_over => break,
                _ = redraw.tick() => bar.refresh(),
                _ = sigint.recv() => {
                    bar.clear();
                    errln!("{}", interrupted_note(&id, job.state));
                    return Ok(exit_code::INTERRUPTED);
                }
                () = timeout => return Err(exit_code::Coded::timed_out(format!(
                    "timed out after {} s waiting for job {id} (it is {})",
                    a.timeout.unwrap_or_default(),
                    job.state
                )).into()),
            }
        }
    }
}

/// The one line Ctrl-C leaves: waiting stopped, the job itself was left alone.
pub fn interrupted_note(id: &str, state: JobState) -> String {
    let short = crate::output::short_id(id);
    format!(
        "ferry: stopped waiting; job {short} is still {state} (`ferry wait {short}` waits again)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interrupted_notes_are_one_short_line() {
        let n = interrupted_note(
            "0a1b2c3d-0000-4000-8000-000000000001",
            JobState::Transferring,
        );
        assert_eq!(
            n,
            "ferry: stopped waiting; job 0a1b2c3d is still transferring (`ferry wait 0a1b2c3d` waits again)"
        );
    }

    #[test]
    fn verdicts() {
        use JobState::*;
        let t = Until::Transferred;
        assert_eq!(verdict(t, Transferring, false), Verdict::Wait);
        assert_eq!(verdict(t, Transferred, false), Verdict::Exit(0));
        assert_eq!(verdict(t, Transferred, true), Verdict::Complete);
        assert_eq!(verdict(t, Error, false), Verdict::Exit(3));
        assert_eq!(verdict(t, Cancelled, false), Verdict::Exit(1));
        assert_eq!(verdict(t, Acknowledged, false), Verdict::Exit(0));
        assert_eq!(verdict(t, TransientError, false), Verdict::Wait);
        let f = Until::Final;
        assert_eq!(verdict(f, Transferred, false), Verdict::Wait);
        assert_eq!(verdict(f, Transferred, true), Verdict::Complete);
        assert_eq!(verdict(f, Error, false), Verdict::Wait);
        assert_eq!(verdict(f, Acknowledged, false), Verdict::Exit(0));
    }
}
