//! Test support shared by Ferry's test suites.
//!
//! `http` is a hand-written HTTP/1.1 server with per-path fault knobs and a request log;
//! `content` makes deterministic test payloads;
//! `daemon` boots the real `ferryd` binary in a temp dir; `upload` starts real upload servers
//! (`ferry-upload-server`, and a tus server from npm). This crate is a dev-dependency only: nothing in
//! it is meant for production code, and it is never published.

pub mod content;
pub mod daemon;
pub mod http;
pub mod upload;
