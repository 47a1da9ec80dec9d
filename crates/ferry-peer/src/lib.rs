//! The peer cache's contract between Ferry hosts (issue 6), shared by the daemon's cache server,
//! its peer client, the tests and the benchmark.
//!
//! - [`key`]: which content a peer is asked for (URL + the origin's validator + size).
//! - [`auth`]: every peer request carries an HMAC of the fleet secret; nothing is served without it.
//! - [`wire`]: paths and header names of the HTTP exchange.
//! - [`evict`]: which entries leave the cache (age, then least recently used beyond the size limit).
//! - [`health`]: which peers are skipped for a while after failing.
//!
//! Pure logic: no I/O, no clock (callers pass `now`), no async. The HTTP server and client live in
//! `ferryd`.

pub mod auth;
pub mod evict;
pub mod health;
pub mod key;
pub mod wire;
