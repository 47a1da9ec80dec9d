//! The durable event log's entries (`events.read`, `events.follow`).

use serde::{Deserialize, Serialize};

use crate::job::{ErrorInfo, JobState};

/// One entry of the event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Monotonically increasing sequence number, unique per daemon state dir.
    pub seq: u64,
    /// When it happened (RFC 3339).
    pub time: String,
    /// The job concerned.
    pub job_id: String,
    /// What happened, with its own fields flattened in.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What an event says happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    /// The job was created.
    Created,
    /// The job changed state.
    State {
        /// Previous state.
        from: JobState,
        /// New state.
        to: JobState,
    },
    /// Bytes moved (coalesced).
    Progress {
        /// Bytes transferred so far.
        bytes_transferred: u64,
        /// Total, when known.
        bytes_total: Option<u64>,
    },
    /// One file finished.
    FileTransferred {
        /// The file's index.
        file_index: u64,
    },
    /// Properties changed.
    Modified {
        /// Names of the changed fields.
        fields: Vec<String>,
    },
    /// The job hit an error.
    Error {
        /// The error info.
        error: ErrorInfo,
    },
    /// A notification delivery attempt.
    Notification {
        /// `job_transferred`, `file_transferred`, …
        callback: String,
        /// `interface`, `handler` or `cmdline`.
        target: String,
        /// `ok`, `failed` or `unreachable`.
        outcome: String,
        /// 1 for the first attempt.
        attempt: u64,
        /// Why it failed, when it did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// The peer cache did something for this job (only emitted when the cache is enabled).
    PeerCache {
        /// `published`, `evicted`, `from_peer`, `peer_failed`.
        action: String,
        /// The file concerned.
        file_index: u64,
        /// The content key, when one is involved.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
        /// The peer's `address:port`, when one is involved.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peer: Option<String>,
        /// Bytes concerned (fetched from the peer, or the entry's size).
        #[serde(default)]
        bytes: u64,
        /// Milliseconds spent on the peer before this (e.g. before falling back to the origin).
        #[serde(default)]
        waited_ms: u64,
        /// Why, in words (eviction reason, peer failure).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// A kind this version does not know (sent by a newer daemon): clients skip it.
    #[serde(other)]
    Other,
}

impl EventKind {
    /// The wire name of the kind.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Created => "created",
            EventKind::State { .. } => "state",
            EventKind::Progress { .. } => "progress",
            EventKind::FileTransferred { .. } => "file_transferred",
            EventKind::Modified { .. } => "modified",
            EventKind::Error { .. } => "error",
            EventKind::Notification { .. } => "notification",
            EventKind::PeerCache { .. } => "peer_cache",
            EventKind::Other => "other",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_kinds_from_a_newer_daemon_are_not_an_error() {
        let e: Event = serde_json::from_value(serde_json::json!({"seq": 1, "time": "t",
            "job_id": "j", "kind": "from_the_future", "field": 1}))
        .unwrap();
        assert_eq!(e.kind, EventKind::Other);
    }

    #[test]
    fn state_event_wire_form() {
        let e = Event {
            seq: 7,
            time: "2026-01-01T00:00:00Z".into(),
            job_id: "j".into(),
            kind: EventKind::State {
                from: JobState::Suspended,
                to: JobState::Queued,
            },
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"seq": 7, "time": "2026-01-01T00:00:00Z", "job_id": "j",
                "kind": "state", "from": "suspended", "to": "queued"})
        );
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }
}
