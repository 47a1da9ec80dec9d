//! Handler registrations (`handler.register`, `handler.unregister`, `handler.list`), persisted
//! per uid. Activation and `handler.attach` belong to the notifier (issue #3).

use std::sync::Arc;

use ferry_proto::params::{
    Empty, HandlerAttachParams, HandlerInfo, HandlerListResult, HandlerNameParams,
    HandlerRegisterParams,
};
use ferry_proto::{ErrorKind, ProtoError};
use ferry_store::HandlerRow;

use super::{Answer, ApiResult};
use crate::daemon::{Caller, Daemon, store_failed};

fn check_name(name: &str) -> Result<(), ProtoError> {
    if name.is_empty() || name.len() > 256 || name.chars().any(char::is_control) {
        return Err(ProtoError::invalid_params(
            "name",
            "a handler name must be 1 to 256 printable characters",
        ));
    }
    Ok(())
}

/// `handler.register`
pub fn register(d: &Arc<Daemon>, c: &Caller, p: HandlerRegisterParams) -> ApiResult {
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
    let row = HandlerRow {
        uid: c.uid,
        name: p.name,
        argv: p.argv,
        activation_timeout_s: timeout,
    };
    let commit = d.store.submit(move |tx| tx.put_handler(&row));
    Answer::after(serde_json::json!({}), commit)
}

/// `handler.unregister`
pub fn unregister(d: &Arc<Daemon>, c: &Caller, p: HandlerNameParams) -> ApiResult {
    check_name(&p.name)?;
    let uid = c.uid;
    let commit = d
        .store
        .submit(move |tx| tx.delete_handler(uid, &p.name).map(drop));
    Answer::after(serde_json::json!({}), commit)
}

/// `handler.list`
pub fn list(d: &Arc<Daemon>, c: &Caller, _p: Empty) -> ApiResult {
    let handlers = d
        .reader
        .handlers()
        .map_err(store_failed)?
        .into_iter()
        .filter(|h| h.uid == c.uid)
        .map(|h| HandlerInfo {
            name: h.name,
            argv: h.argv,
            activation_timeout_s: h.activation_timeout_s,
        })
        .collect();
    Answer::now(HandlerListResult { handlers })
}

/// `handler.attach`: not served until the notifier lands (issue #3); says so plainly.
pub fn attach(_d: &Arc<Daemon>, _c: &Caller, p: HandlerAttachParams) -> ApiResult {
    check_name(&p.name)?;
    Err(ProtoError::kind(
        ErrorKind::Unsupported,
        "handler.attach is not available in this ferryd yet: notification delivery is not implemented",
    ))
}
