//! Integration tests of `ferry-client`, one binary with topic modules: `callbacks` (the
//! callback plumbing against a fake daemon on a socket pair), `snapshots` (the JSON sent for
//! representative calls, shared with the Python client), `live` (against a real `ferryd` and
//! the testkit's HTTP server: autostart, `wait_for`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod callbacks;
mod live;
mod snapshots;
