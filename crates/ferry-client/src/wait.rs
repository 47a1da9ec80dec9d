//! Waiting for a job to reach a state: [`Client::wait_for`].
//!
//! The wait follows the job's events (`events.follow`) and reads the job only when a state
//! change says it may be done, so it costs the daemon nothing while the job transfers and
//! notices a state the job passes through quickly (say `transferred` on an `auto_complete`
//! job), which polling could miss.

use std::fmt;
use std::time::Duration;

use ferry_proto::params::EventsFollowParams;
use ferry_proto::{EventKind, Job, JobState};

use crate::{Client, ClientError};

/// The `method` of the [`ClientError::Timeout`] that [`Client::wait_for`] returns.
pub const WAIT_FOR: &str = "wait_for";

/// What [`Client::wait_for`] waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Until {
    /// Any of these states.
    States(Vec<JobState>),
    /// A state the daemon does not leave by itself: final (`acknowledged`, `cancelled`) or
    /// waiting for the owner to act (`transferred`: complete it; `error`: resume or cancel
    /// it). `suspended` is not included: a job is created suspended, and a wait started
    /// before `job.resume` must not end at once.
    Settled,
}

impl Until {
    /// Exactly one state.
    pub fn state(state: JobState) -> Until {
        Until::States(vec![state])
    }

    /// Whether a job in `state` has arrived.
    pub fn is_met(&self, state: JobState) -> bool {
        match self {
            Until::States(states) => states.contains(&state),
            Until::Settled => {
                state.is_final() || matches!(state, JobState::Transferred | JobState::Error)
            }
        }
    }
}

impl fmt::Display for Until {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Until::Settled => {
                f.write_str("settled (transferred, error, acknowledged or cancelled)")
            }
            Until::States(states) => {
                let names: Vec<String> = states.iter().map(ToString::to_string).collect();
                f.write_str(&names.join(" or "))
            }
        }
    }
}

impl Client {
    /// Waits until job `job_id` reaches a state `until` accepts, and returns the job as read
    /// right after it did (it may have moved on since: an `auto_complete` job reported in
    /// `transferred` can already be `acknowledged`). Returns at once when the job is there
    /// already.
    ///
    /// Driven by events, never by polling: the wait follows the job's events on a second
    /// connection to the same socket (so this connection's own `events.follow`, if any, is
    /// left alone) and reads the job only after a state change `until` accepts. A client made
    /// with [`Client::from_stream`] has no socket to open a second connection to, so it
    /// follows on this connection, replacing any follow it had.
    ///
    /// Errors: [`ClientError::Timeout`] (`method` [`WAIT_FOR`]) when `timeout` passes first,
    /// [`ClientError::Daemon`] for a job the caller may not see, and
    /// [`ClientError::Disconnected`] when the connection closes meanwhile.
    pub async fn wait_for(
        &self,
        job_id: &str,
        until: Until,
        timeout: Duration,
    ) -> Result<Job, ClientError> {
        match tokio::time::timeout(timeout, self.wait_unbounded(job_id, &until)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(ClientError::Timeout {
                method: WAIT_FOR.to_owned(),
                after: timeout,
            }),
        }
    }

    async fn wait_unbounded(&self, job_id: &str, until: &Until) -> Result<Job, ClientError> {
        let watcher = if self.socket().as_os_str().is_empty() {
            self.clone()
        } else {
            Client::connect_to(self.socket()).await?
        };
        // Following before the first read: no state change can slip in between the two.
        watcher
            .follow_events(EventsFollowParams {
                after: None,
                job_id: Some(job_id.to_owned()),
            })
            .await?;
        let job = watcher.get(job_id).await?;
        if until.is_met(job.state) {
            return Ok(job);
        }
        loop {
            let Some(event) = watcher.next_event().await else {
                return Err(ClientError::Disconnected);
            };
            if let EventKind::State { to, .. } = event.kind
                && event.job_id == job_id
                && until.is_met(to)
            {
                return watcher.get(job_id).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settled_is_final_or_waiting_for_the_owner() {
        let settled: Vec<JobState> = JobState::ALL
            .into_iter()
            .filter(|s| Until::Settled.is_met(*s))
            .collect();
        assert_eq!(
            settled,
            [
                JobState::Error,
                JobState::Transferred,
                JobState::Acknowledged,
                JobState::Cancelled
            ]
        );
    }

    #[test]
    fn states_are_met_only_by_those_states() {
        let u = Until::States(vec![JobState::Transferred, JobState::Cancelled]);
        for s in JobState::ALL {
            assert_eq!(
                u.is_met(s),
                matches!(s, JobState::Transferred | JobState::Cancelled),
                "{s:?}"
            );
        }
        assert!(!Until::States(vec![]).is_met(JobState::Cancelled));
        assert_eq!(u.to_string(), "transferred or cancelled");
    }
}
