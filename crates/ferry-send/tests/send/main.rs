//! ferry-send's integration tests: real uploads over loopback to the real
//! `ferry-upload-server` (in-process), to a real tus server (`@tus/server` from npm, started
//! with node), and through a fault-injecting proxy in front of either.

// Test code: a failed expectation should panic with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod bits;
mod golden;
mod hostile;
mod reply;
mod support;
mod tus;
