//! Integration tests of `ferry-fetch` against the real test HTTP server on 127.0.0.1
//! (`ferry-testkit`): downloads, resume, restarts, error classification, redirects and
//! `file://` sources. One binary, one module per topic; nothing sleeps, tests wait on events.

// Test helpers outside #[test] functions may unwrap: a failing helper is a failing test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod download;
mod errors;
mod local;
mod ranged;
mod redirect;
mod resume;
mod support;
