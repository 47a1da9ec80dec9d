//! A bidirectional JSON-RPC 2.0 peer over newline-delimited JSON.
//!
//! Both ends of a Ferry connection are peers: the client calls the daemon, and the daemon calls a
//! client that registered as a job's callback, waiting for its answer. This crate does the
//! framing (one JSON object per line, bounded length), the id correlation of outgoing calls, and
//! the dispatch of incoming requests to a [`Service`]. It knows nothing about Ferry's methods;
//! those live in `ferry-proto`.
//!
//! The reader never waits on a handler: responses are routed as soon as they arrive, and
//! incoming requests are handled one at a time, in order, by a separate task. So a handler may
//! itself call the other side (or be called back) without deadlocking the connection. A server
//! facing untrusted peers serves them within [`Bounds`]: then reading and handling pause while
//! a peer leaves too much unread, and a peer that stalls or piles up too much is closed.

mod codec;
mod peer;

pub use codec::{Incoming, LineError, decode_line};
pub use peer::{
    Bounds, CallError, Handled, Peer, Service, serve, serve_bounded, serve_with_max_line,
};
