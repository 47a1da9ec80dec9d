//! Integration tests of the real `ferry` binary: each test runs `ferry` as a subprocess (the
//! binary cargo built for this package) against a real `ferryd` in a temp dir
//! (`ferry_testkit::daemon`) and a real HTTP server on 127.0.0.1 (`ferry_testkit::http`), and
//! checks exit codes, stdout, stderr and the files on disk.
//!
//! Topic modules: `transfer` (`ferry transfer`: content, naming, list files, usage errors),
//! `errors` (a failing job), `interrupt` (Ctrl-C suspends), `addressing` (id prefixes and
//! display names), `verbs` (create/add/files/set/info/resume/wait/list/cancel), `autostart`
//! (starting a per-user daemon, `--no-autostart`), `cache` (`ferry cache` and `ferry peers`: the
//! peer cache off, on with a static peer, and a download published to it), `security_socket`
//! (another user's socket posing as ferryd is refused before a byte is sent), `everyday` (issue 13:
//! no silent overwrite, exit codes, names, transfer options, a closed terminal keeps the file),
//! `docs` (issue 13: completions, man pages and a `--help` example for every verb),
//! `daemon_admin` (issue 13: `ferry daemon status/stop/logs`, the log file, `--version`), `paths`
//! (issue 13: one socket and the real cause without `XDG_RUNTIME_DIR` or a usable home).
//!
//! `ferryd` must have been built (`cargo build -p ferryd`, or any workspace build).

// Test code: a failed expectation should panic with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod addressing;
mod autostart;
mod cache;
mod daemon_admin;
mod docs;
mod errors;
mod everyday;
mod interrupt;
mod notify;
mod paths;
mod security_socket;
mod settings;
mod support;
mod transfer;
mod verbs;
