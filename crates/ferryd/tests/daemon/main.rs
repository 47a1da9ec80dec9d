//! Integration tests of the real `ferryd` binary: each test boots a daemon in a temp dir
//! (`ferry_testkit::daemon`) and a real HTTP server on 127.0.0.1 (`ferry_testkit::http`).
//!
//! Topic modules: `transfer` (downloads, resume, restarts from zero), `errors` (error
//! classification and timeouts), `control` (complete/cancel/state rules), `crash` (kill -9 and
//! restart), `protocol` (wire-level error codes), `access` (other users), `ranges` (ranged
//! files), `hostile` (servers that misbehave on purpose; see docs/RELIABILITY.md), `garbage`
//! (random lines on many connections), `load` (1 000 clients, the per-user connection limit),
//! `peer_cache` (several daemons sharing validated files on 127.0.0.x), `resident` (cold jobs left
//! in the store), `security_limits` (per-user quotas and unread answers bounded),
//! `security_bounds` (attacks across the daemon's boundaries: other uids on a per-user socket,
//! spawned programs and the daemon's terminal, headers on redirects, `take_ownership`, secrets
//! left in the store, dead internal tasks), `security_fs` (attacks through user-named paths:
//! FIFOs, swapped directories, magic links, stat oracles), `security_peer`
//! (attacks on the peer cache: poisoned publications, impostor peers, replayed requests),
//! `typed_errors` (a client's deadline reported as a timeout, missing jobs as `not_found`),
//! `runtime_threads` (a slow store read of one job does not stall calls about others),
//! `net_policy` (network cost and power policy against fake NetworkManager, UPower,
//! power-profiles-daemon and logind on a private system bus),
//! `everyday_fixes` (bugs found against real servers; `file.set_remote_url`), `uploads` (upload
//! jobs against the real `ferry-upload-server` and a tus server from npm),
//! `daemon_config` (ferryd.toml's daemon-wide `[daemon]` settings: connections per host, a shared
//! bandwidth limit, the retry floor).

// Test code: a failed expectation should panic with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod access;
mod callbacks;
mod client;
mod control;
mod crash;
mod crash_loop;
mod daemon_config;
mod disk_full;
mod errors;
mod everyday_fixes;
mod garbage;
mod hostile;
mod http_options;
mod load;
mod net_policy;
mod notify;
mod peer_cache;
mod protocol;
mod ranges;
mod resident;
mod runtime_threads;
mod schedule;
mod security_bounds;
mod security_fs;
mod security_limits;
mod security_peer;
mod settings;
mod support;
mod system_mode;
mod systemd;
mod transfer;
mod typed_errors;
mod uploads;
