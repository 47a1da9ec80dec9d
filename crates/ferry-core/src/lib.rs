//! Ferry's pure domain logic.
//!
//! Everything here is plain code over plain data: no I/O, no async runtime, no clock (time is
//! passed in). The daemon (`ferryd`) and the transfer engine (`ferry-fetch`) call it to decide;
//! they do the I/O. That keeps the rules that matter most (BITS job states, which errors are
//! retried, who runs next, how a resumed body fits the bytes already on disk) small enough to be
//! tested exhaustively. [`transition`] (what a trigger does to a job), [`delivery`] (the
//! notifier's next step) and [`source`] (peers or origin) compose the smaller rules into the
//! decisions the daemon's shell executes.

pub mod bandwidth;
pub mod delivery;
pub mod hosts;
pub mod notify;
pub mod policy;
pub mod range;
pub mod retry;
pub mod schedule;
pub mod source;
pub mod state;
#[cfg(test)]
mod testing;
pub mod transition;
pub mod units;
pub mod upload;
