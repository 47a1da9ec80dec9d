//! The peer cache's contract between Ferry hosts, shared by the daemon's cache server,
//! its peer client, the tests and the benchmark.
//!
//! - [`key`]: which content a peer is asked for (URL + the origin's validator + size).
//! - [`tls`]: peer traffic runs over TLS 1.3, both sides authenticated by a key derived from the
//!   fleet secret; nothing is served to, or asked of, a host without it.
//! - [`auth`]: inside that channel every request also carries an HMAC of the fleet secret over
//!   its method, target, time and a nonce, accepted once.
//! - [`pieces`]: the SHA-256 of every piece of a file as it came from the network, which proves
//!   where the bytes of a staging file or a peer's answer came from.
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
pub mod pieces;
pub mod tls;
pub mod wire;
