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
fn kick_jobs_of(daemon: &Daemon, uid: u32, name: &str) -> Vec<String> {
    let inner = daemon.lock();
    let ids: Vec<String> = inner
        .jobs()
        .resident()
        .map(|(_, e)| e)
        .filter(|e| e.row.owner_uid == uid && !e.row.state.is_final())
        .filter(|e| e.row.settings.notify_handler.as_deref() == Some(name))
        .map(|e| e.row.id.clone())
        .collect();
    drop(inner);
    for id in &ids {
        daemon.kick(id, true);
    }
    ids
}

/// `handler.register`
pub fn register(
    daemon: &Arc<Daemon>,
    caller: &Caller,
    params: HandlerRegisterParams,
) -> ApiResult<ferry_proto::method::HandlerRegister> {
    check_name(&params.name)?;
    match params.argv.first() {
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
    let timeout = params.activation_timeout_s.unwrap_or(30);
    if !(1..=3600).contains(&timeout) {
        return Err(ProtoError::invalid_params(
            "activation_timeout_s",
            "activation_timeout_s must be between 1 and 3600",
        ));
    }
    let bytes = limits::argv_bytes(&params.argv);
    let row = HandlerRow {
        uid: caller.uid,
        name: params.name.clone(),
        argv: params.argv,
        activation_timeout_s: timeout,
    };
    let commit = {
        let mut inner = daemon.lock();
        let others = inner.handlers_mut().usage_except(caller.uid, &params.name);
        limits::check_handler(&daemon.opts().limits, caller.uid, others, bytes)?;
        inner
            .handlers_mut()
            .slot(caller.uid, &params.name)
            .registered = Some(row.clone());
        daemon.store().submit(move |tx| tx.put_handler(&row))
    };
    kick_jobs_of(daemon, caller.uid, &params.name);
    Answer::after(ferry_proto::params::Ack {}, commit)
}

/// `handler.unregister`
pub fn unregister(
    daemon: &Arc<Daemon>,
    caller: &Caller,
    params: HandlerNameParams,
) -> ApiResult<ferry_proto::method::HandlerUnregister> {
    check_name(&params.name)?;
    let uid = caller.uid;
    let mut inner = daemon.lock();
    inner.handlers_mut().slot(uid, &params.name).registered = None;
    let commit = daemon
        .store()
        .submit(move |tx| tx.delete_handler(uid, &params.name).map(drop));
    Answer::after(ferry_proto::params::Ack {}, commit)
}

/// `handler.list`
pub fn list(
    daemon: &Arc<Daemon>,
    caller: &Caller,
    _p: Empty,
) -> ApiResult<ferry_proto::method::HandlerList> {
    let handlers = daemon
        .lock()
        .handlers()
        .registered_by(caller.uid)
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
    daemon: &Arc<Daemon>,
    caller: &Caller,
    peer: &Arc<Peer>,
    params: HandlerAttachParams,
) -> ApiResult<ferry_proto::method::HandlerAttach> {
    check_name(&params.name)?;
    {
        let mut inner = daemon.lock();
        let slot = inner.handlers_mut().slot(caller.uid, &params.name);
        if let Some(token) = &params.token {
            let matches = slot.activation.as_ref().is_some_and(|(t, _)| t == token);
            if !matches {
                return Err(ProtoError::kind(
                    ErrorKind::AccessDenied,
                    format!(
                        "the activation token for handler {:?} is wrong or already used; attach without a token, or let ferryd start the handler",
                        params.name
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
    let jobs = kick_jobs_of(daemon, caller.uid, &params.name);
    Answer::now(HandlerAttachResult { jobs })
}
