//! Handlers (BITS notification CLSID): `handler.register`, `handler.unregister`,
//! `handler.list` (persisted per uid) and `handler.attach` (a connection serves the uid's jobs
//! that name the handler).

use std::sync::Arc;

use ferry_proto::params::{
    Empty, HandlerAttachParams, HandlerAttachResult, HandlerInfo, HandlerListResult,
    HandlerNameParams, HandlerRegisterParams,
};
use ferry_proto::{ErrorKind, ProtoError};
use ferry_rpc::Peer;
use ferry_store::HandlerRow;

use super::{Answer, ApiResult};
use crate::daemon::{Caller, Daemon};
use crate::handlers::Activation;
use crate::limits;
use ferry_proto::method;
use ferry_proto::params::Ack;

fn check_name(name: &str) -> Result<(), ProtoError> {
    if name.is_empty() || name.len() > 256 || name.chars().any(char::is_control) {
        return Err(ProtoError::invalid_params(
            "name",
            "a handler name must be 1 to 256 printable characters",
        ));
    }
    Ok(())
}

/// Asks the notifier to retry at once every job of `uid` that names handler `name`.
fn kick_jobs_of(d: &Daemon, uid: u32, name: &str) -> Vec<String> {
    let inner = d.lock();
    let ids: Vec<String> = inner
        .jobs
        .resident()
        .map(|(_, e)| e)
        .filter(|e| e.row.owner_uid == uid && !e.row.state.is_final())
        .filter(|e| e.row.settings.notify_handler.as_deref() == Some(name))
        .map(|e| e.row.id.clone())
        .collect();
    drop(inner);
    for id in &ids {
        d.kick(id, true);
    }
    ids
}

/// `handler.register`
pub fn register(
    d: &Arc<Daemon>,
    c: &Caller,
    p: HandlerRegisterParams,
) -> ApiResult<method::HandlerRegister> {
    check_name(&p.name)?;
    match p.argv.first() {
        None => {
            return Err(ProtoError::invalid_params(
                "argv",
                "argv must name a program",
            ));
        }
        Some(prog) if !prog.starts_with('/') => {
            return Err(ProtoError::invalid_params(
                "argv",
                format!("argv[0] {prog:?} must be an absolute path (no PATH search)"),
            ));
        }
        Some(_) => {}
    }
    let timeout = p.activation_timeout_s.unwrap_or(30);
    if !(1..=3600).contains(&timeout) {
        return Err(ProtoError::invalid_params(
            "activation_timeout_s",
            "activation_timeout_s must be between 1 and 3600",
        ));
    }
    let bytes = limits::argv_bytes(&p.argv);
    let row = HandlerRow {
        uid: c.uid,
        name: p.name.clone(),
        argv: p.argv,
        activation_timeout_s: timeout,
    };
    let commit = {
        let mut inner = d.lock();
        let others = inner.handlers.usage_except(c.uid, &p.name);
        limits::check_handler(&d.opts.limits, c.uid, others, bytes)?;
        inner.handlers.slot(c.uid, &p.name).registered = Some(row.clone());
        d.store.submit(move |tx| tx.put_handler(&row))
    };
    kick_jobs_of(d, c.uid, &p.name);
    Answer::after(Ack {}, commit)
}

/// `handler.unregister`
pub fn unregister(
    d: &Arc<Daemon>,
    c: &Caller,
    p: HandlerNameParams,
) -> ApiResult<method::HandlerUnregister> {
    check_name(&p.name)?;
    let uid = c.uid;
    let mut inner = d.lock();
    inner.handlers.slot(uid, &p.name).registered = None;
    let commit = d
        .store
        .submit(move |tx| tx.delete_handler(uid, &p.name).map(drop));
    Answer::after(Ack {}, commit)
}

/// `handler.list`
pub fn list(d: &Arc<Daemon>, c: &Caller, _p: Empty) -> ApiResult<method::HandlerList> {
    let handlers = d
        .lock()
        .handlers
        .registered_by(c.uid)
        .into_iter()
        .map(|h| HandlerInfo {
            name: h.name,
            argv: h.argv,
            activation_timeout_s: h.activation_timeout_s,
        })
        .collect();
    Answer::now(HandlerListResult { handlers })
}

/// `handler.attach`: with the activation token of a program ferryd started, or without one
/// from any process of the same uid. The last connection to attach a name wins.
pub fn attach(
    d: &Arc<Daemon>,
    c: &Caller,
    peer: &Arc<Peer>,
    p: HandlerAttachParams,
) -> ApiResult<method::HandlerAttach> {
    check_name(&p.name)?;
    {
        let mut inner = d.lock();
        let slot = inner.handlers.slot(c.uid, &p.name);
        if let Some(token) = &p.token {
            let matches = slot.activation.as_ref().is_some_and(|(t, _)| t == token);
            if !matches {
                return Err(ProtoError::kind(
                    ErrorKind::AccessDenied,
                    format!(
                        "the activation token for handler {:?} is wrong or already used; attach without a token, or let ferryd start the handler",
                        p.name
                    ),
                ));
            }
        }
        slot.attached = Some(Arc::downgrade(peer));
        // Whoever attaches ends a pending activation: its waiters use this connection.
        if let Some((_, tx)) = slot.activation.take() {
            tx.send_replace(Activation::Attached);
        }
    }
    let jobs = kick_jobs_of(d, c.uid, &p.name);
    Answer::now(HandlerAttachResult { jobs })
}
