//! Fuzzes what the daemon does with one line from a client: `ferry_rpc::decode_line` on
//! arbitrary bytes (framed like the connection's reader frames them), then, for a request,
//! `ferry_proto::error::decode_params` into the params structs of the methods that take the
//! richest input.
//!
//! Checked beyond "no panic": every error carries an id the protocol allows (`null`, a string
//! or an integer) and serializes; a request's id is a string or an integer; params that decode
//! serialize and decode again to the same JSON.

#![no_main]

use ferry_proto::ProtoError;
use ferry_proto::error::decode_params;
use ferry_proto::params::{
    AddFilesParams, CreateParams, EventsReadParams, HandlerRegisterParams, HelloParams,
    JobIdParams, ListParams, SetParams, ValidationParams,
};
use ferry_rpc::{Incoming, decode_line};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn valid_id(id: &Value) -> bool {
    id.is_string() || id.is_i64() || id.is_u64()
}

fn check_error(e: &ProtoError) {
    assert!(e.code < 0, "error codes are negative: {e:?}");
    assert!(!e.message.is_empty(), "an error names its problem: {e:?}");
    if let Err(err) = serde_json::to_vec(e) {
        panic!("error object does not serialize: {err}");
    }
}

/// Decodes `params` as `T`; on success the value must round-trip through JSON unchanged.
fn params_as<T: DeserializeOwned + Serialize>(params: &Option<Value>) {
    match decode_params::<T>(params.clone()) {
        Ok(p) => {
            let Ok(once) = serde_json::to_value(&p) else {
                panic!("decoded params do not serialize");
            };
            let again = match decode_params::<T>(Some(once.clone())) {
                Ok(a) => a,
                Err(e) => panic!("params that decoded do not decode again: {e:?} from {once}"),
            };
            let Ok(twice) = serde_json::to_value(&again) else {
                panic!("re-decoded params do not serialize");
            };
            assert_eq!(once, twice, "params changed on a round trip");
        }
        Err(e) => {
            check_error(&e);
            assert_eq!(e.code, -32602, "bad params are -32602: {e:?}");
        }
    }
}

fn params_for(method: &str, params: &Option<Value>) {
    match method {
        "ferry.hello" => params_as::<HelloParams>(params),
        "job.create" => params_as::<CreateParams>(params),
        "job.add_files" => params_as::<AddFilesParams>(params),
        "job.set" => params_as::<SetParams>(params),
        "job.list" => params_as::<ListParams>(params),
        "job.get" | "job.files" | "job.resume" | "job.cancel" | "job.complete" => {
            params_as::<JobIdParams>(params)
        }
        "file.set_validation_state" => params_as::<ValidationParams>(params),
        "handler.register" => params_as::<HandlerRegisterParams>(params),
        "events.read" => params_as::<EventsReadParams>(params),
        // Any other method: try the structs with the most shapes.
        _ => {
            params_as::<CreateParams>(params);
            params_as::<SetParams>(params);
            params_as::<ListParams>(params);
        }
    }
}

fn one_line(line: &[u8]) {
    match decode_line(line) {
        Ok(Incoming::Request { id, method, params }) => {
            assert!(valid_id(&id), "request id {id}");
            params_for(&method, &params);
        }
        Ok(Incoming::Notification { method, params }) => params_for(&method, &params),
        Ok(Incoming::Response { result, .. }) => {
            if let Err(e) = result {
                // Whatever the other side sent; it only has to survive being logged.
                let _ = e.to_string();
            }
        }
        Err(e) => {
            assert!(e.id.is_null() || valid_id(&e.id), "error id {}", e.id);
            assert!(
                e.error.code == -32700 || e.error.code == -32600,
                "a line is either not JSON or not a request: {:?}",
                e.error
            );
            check_error(&e.error);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // The whole input as one line, then each `\n`-separated line the way the reader splits a
    // stream (a trailing `\r` dropped, blank lines skipped).
    one_line(data);
    for line in data.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if !line.iter().all(u8::is_ascii_whitespace) {
            one_line(line);
        }
    }
});
