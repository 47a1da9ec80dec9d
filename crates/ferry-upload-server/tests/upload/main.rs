//! Integration tests of the real `ferry-upload-server` binary: each test starts it on
//! 127.0.0.1 with a config in a temp dir and talks raw HTTP/1.1 to it (curl is a second client).
//!
//! Topic modules: `golden` (transcripts built from the specification's examples, replayed byte for byte),
//! `bad_input` (malformed packets, changed totals, fragments past the end, missing
//! Content-Length, unknown sessions, paths outside the directory, a full disk: the error
//! table's answer, nothing at the destination, and the server keeps serving), `sessions`
//! (resume after `kill -9`, out-of-order and overlapping fragments, cancel, expiry, overwrite),
//! `notify` (the server application by reference and by value, upload-reply), `auth_tls`
//! (Basic authentication and HTTPS).

// Test code: a failed expectation should panic with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod auth_tls;
mod bad_input;
mod golden;
mod notify;
mod sessions;
mod support;
