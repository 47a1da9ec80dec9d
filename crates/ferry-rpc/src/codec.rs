//! Decoding one line into a JSON-RPC message, with the error the protocol prescribes for each
//! kind of garbage.

use ferry_proto::{ErrorCode, ProtoError};
use serde_json::Value;

/// One decoded message.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A request that expects a response.
    Request {
        /// The caller's id, echoed in the response.
        id: Value,
        /// Method name.
        method: String,
        /// Params, if any.
        params: Option<Value>,
    },
    /// A request without id: no response is sent.
    Notification {
        /// Method name.
        method: String,
        /// Params, if any.
        params: Option<Value>,
    },
    /// A response to one of our calls.
    Response {
        /// The id we sent.
        id: Value,
        /// The result or the error.
        result: Result<Value, ProtoError>,
    },
}

/// Why a line is not a message; carries the id to answer with (`null` when unknown).
#[derive(Debug, Clone, PartialEq)]
pub struct LineError {
    /// The id to put in the error response.
    pub id: Value,
    /// The error to send back.
    pub error: ProtoError,
}

fn invalid(id: Value, message: &str) -> LineError {
    LineError {
        id,
        error: ProtoError::new(ErrorCode::INVALID_REQUEST, message),
    }
}

fn valid_id(id: &Value) -> bool {
    id.is_string() || id.is_i64() || id.is_u64()
}

/// Decodes one line (without its newline).
pub fn decode_line(line: &[u8]) -> Result<Incoming, LineError> {
    let value: Value = serde_json::from_slice(line).map_err(|e| LineError {
        id: Value::Null,
        error: ProtoError::new(ErrorCode::PARSE_ERROR, format!("parse error: {e}")),
    })?;
    let Value::Object(mut obj) = value else {
        return Err(invalid(
            Value::Null,
            "invalid request: a message must be a JSON object (batches are not supported)",
        ));
    };
    let id = obj.remove("id");
    let answer_id = id.clone().filter(valid_id).unwrap_or(Value::Null);
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(invalid(
            answer_id,
            "invalid request: \"jsonrpc\" must be \"2.0\"",
        ));
    }
    if let Some(method) = obj.remove("method") {
        let Value::String(method) = method else {
            return Err(invalid(
                answer_id,
                "invalid request: \"method\" must be a string",
            ));
        };
        let params = obj.remove("params");
        if let Some(p) = &params
            && !(p.is_object() || p.is_array() || p.is_null())
        {
            return Err(invalid(
                answer_id,
                "invalid request: \"params\" must be an object or an array",
            ));
        }
        return match id {
            None => Ok(Incoming::Notification { method, params }),
            Some(id) if valid_id(&id) => Ok(Incoming::Request { id, method, params }),
            Some(_) => Err(invalid(
                Value::Null,
                "invalid request: \"id\" must be a number or a string",
            )),
        };
    }
    let Some(id) = id else {
        return Err(invalid(
            Value::Null,
            "invalid request: a message needs \"method\", or \"id\" with \"result\" or \"error\"",
        ));
    };
    if let Some(err) = obj.remove("error") {
        let error = serde_json::from_value::<ProtoError>(err)
            .map_err(|_| invalid(Value::Null, "invalid response: malformed \"error\" object"))?;
        return Ok(Incoming::Response {
            id,
            result: Err(error),
        });
    }
    match obj.remove("result") {
        Some(result) => Ok(Incoming::Response {
            id,
            result: Ok(result),
        }),
        None => Err(invalid(
            answer_id,
            "invalid request: a message needs \"method\", or \"id\" with \"result\" or \"error\"",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_notification_response() {
        let r = decode_line(br#"{"jsonrpc":"2.0","id":1,"method":"a","params":{}}"#).unwrap();
        assert!(matches!(r, Incoming::Request { .. }));
        let n = decode_line(br#"{"jsonrpc":"2.0","method":"a"}"#).unwrap();
        assert!(matches!(n, Incoming::Notification { .. }));
        let ok = decode_line(br#"{"jsonrpc":"2.0","id":"x","result":{}}"#).unwrap();
        assert_eq!(
            ok,
            Incoming::Response {
                id: json!("x"),
                result: Ok(json!({}))
            }
        );
        let err = decode_line(br#"{"jsonrpc":"2.0","id":2,"error":{"code":-32000,"message":"m"}}"#)
            .unwrap();
        assert!(matches!(err, Incoming::Response { result: Err(_), .. }));
    }

    #[test]
    fn garbage_gets_the_documented_codes() {
        assert_eq!(decode_line(b"{").unwrap_err().error.code, -32700);
        assert_eq!(decode_line(b"[1]").unwrap_err().error.code, -32600);
        let e = decode_line(br#"{"jsonrpc":"1.0","id":5,"method":"a"}"#).unwrap_err();
        assert_eq!((e.error.code, e.id), (-32600, json!(5)));
        assert_eq!(
            decode_line(br#"{"jsonrpc":"2.0","id":5,"method":7}"#)
                .unwrap_err()
                .error
                .code,
            -32600
        );
        assert_eq!(
            decode_line(br#"{"jsonrpc":"2.0","id":{},"method":"a"}"#)
                .unwrap_err()
                .id,
            Value::Null
        );
    }
}
