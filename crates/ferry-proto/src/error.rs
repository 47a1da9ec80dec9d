//! JSON-RPC error objects and Ferry's error codes (docs/protocol.md, Errors).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A JSON-RPC error code as a documented constant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorCode(pub i64);

impl ErrorCode {
    /// The line is not JSON.
    pub const PARSE_ERROR: ErrorCode = ErrorCode(-32700);
    /// The JSON is not a valid request (or the line is too long).
    pub const INVALID_REQUEST: ErrorCode = ErrorCode(-32600);
    /// No such method.
    pub const METHOD_NOT_FOUND: ErrorCode = ErrorCode(-32601);
    /// Params are malformed or out of range (`data.field` names the field).
    pub const INVALID_PARAMS: ErrorCode = ErrorCode(-32602);
    /// No such job for this caller.
    pub const NOT_FOUND: ErrorCode = ErrorCode(-32000);
    /// The job's state forbids the operation.
    pub const INVALID_STATE: ErrorCode = ErrorCode(-32001);
    /// The caller may not do this.
    pub const ACCESS_DENIED: ErrorCode = ErrorCode(-32002);
    /// A configured limit was reached.
    pub const LIMIT_EXCEEDED: ErrorCode = ErrorCode(-32003);
    /// Not supported (URL scheme, second upload file, …).
    pub const UNSUPPORTED: ErrorCode = ErrorCode(-32004);
    /// The local file system refused.
    pub const LOCAL_IO: ErrorCode = ErrorCode(-32005);
    /// The file has not finished yet (`E_PENDING`).
    pub const PENDING: ErrorCode = ErrorCode(-32006);
    /// A bug in the daemon.
    pub const INTERNAL: ErrorCode = ErrorCode(-32099);
}

/// Ferry's error kinds (`data.kind`), one per Ferry error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// -32000
    NotFound,
    /// -32001
    InvalidState,
    /// -32002
    AccessDenied,
    /// -32003
    LimitExceeded,
    /// -32004
    Unsupported,
    /// -32005
    LocalIo,
    /// -32006
    Pending,
    /// -32099
    Internal,
}

impl ErrorKind {
    /// The `data.kind` string.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::InvalidState => "invalid_state",
            ErrorKind::AccessDenied => "access_denied",
            ErrorKind::LimitExceeded => "limit_exceeded",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::LocalIo => "local_io",
            ErrorKind::Pending => "pending",
            ErrorKind::Internal => "internal",
        }
    }

    /// The JSON-RPC code that goes with the kind.
    pub fn code(self) -> ErrorCode {
        match self {
            ErrorKind::NotFound => ErrorCode::NOT_FOUND,
            ErrorKind::InvalidState => ErrorCode::INVALID_STATE,
            ErrorKind::AccessDenied => ErrorCode::ACCESS_DENIED,
            ErrorKind::LimitExceeded => ErrorCode::LIMIT_EXCEEDED,
            ErrorKind::Unsupported => ErrorCode::UNSUPPORTED,
            ErrorKind::LocalIo => ErrorCode::LOCAL_IO,
            ErrorKind::Pending => ErrorCode::PENDING,
            ErrorKind::Internal => ErrorCode::INTERNAL,
        }
    }
}

/// A JSON-RPC error object (`{code, message, data?}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProtoError {
    /// The numeric code.
    pub code: i64,
    /// A sentence that names the problem.
    pub message: String,
    /// Structured details (`kind`, `field`, `state`, `bits`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl std::fmt::Display for ProtoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (code {})", self.message, self.code)
    }
}

impl std::error::Error for ProtoError {}

impl ProtoError {
    /// A bare error with a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ProtoError {
        ProtoError {
            code: code.0,
            message: message.into(),
            data: None,
        }
    }

    /// A Ferry error whose `data.kind` is set.
    pub fn kind(kind: ErrorKind, message: impl Into<String>) -> ProtoError {
        let mut data = Map::new();
        data.insert("kind".into(), Value::from(kind.as_str()));
        ProtoError {
            code: kind.code().0,
            message: message.into(),
            data: Some(Value::Object(data)),
        }
    }

    /// `-32602` naming the offending field.
    pub fn invalid_params(field: &str, message: impl Into<String>) -> ProtoError {
        ProtoError::new(ErrorCode::INVALID_PARAMS, message).with("field", field)
    }

    /// Adds one `data` entry.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> ProtoError {
        let data = self.data.get_or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(map) = data {
            map.insert(key.into(), value.into());
        }
        self
    }

    /// The `data.kind` string, if any.
    pub fn data_kind(&self) -> Option<&str> {
        self.data.as_ref()?.get("kind")?.as_str()
    }

    /// Whether this error has the given Ferry kind.
    pub fn is(&self, kind: ErrorKind) -> bool {
        self.code == kind.code().0
    }
}

/// Decodes params strictly into `T`, turning serde's complaint into `-32602` with `data.field`.
///
/// Absent params (`None`) decode like `{}`.
pub fn decode_params<T: serde::de::DeserializeOwned>(
    params: Option<Value>,
) -> Result<T, ProtoError> {
    let value = match params {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(v @ Value::Object(_)) => v,
        Some(_) => {
            return Err(ProtoError::invalid_params(
                "params",
                "params must be a JSON object",
            ));
        }
    };
    serde_path_to_error::deserialize::<_, T>(value).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.inner().to_string();
        let field = unknown_or_missing_field(&inner)
            .map(|f| {
                if path == "." {
                    f
                } else if path == f || path.ends_with(&format!(".{f}")) {
                    path.clone()
                } else {
                    format!("{path}.{f}")
                }
            })
            .unwrap_or_else(|| {
                if path == "." {
                    "params".into()
                } else {
                    path.clone()
                }
            });
        ProtoError::invalid_params(&field, format!("invalid params: `{field}`: {inner}"))
    })
}

/// serde names unknown and missing fields only in its message (`unknown field `x``).
fn unknown_or_missing_field(message: &str) -> Option<String> {
    for prefix in ["unknown field `", "missing field `"] {
        if let Some(rest) = message.strip_prefix(prefix) {
            return rest.split('`').next().map(str::to_owned);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct P {
        job_id: String,
        #[serde(default)]
        limit: Option<u64>,
    }

    #[test]
    fn unknown_field_is_named() {
        let e = decode_params::<P>(Some(json!({"job_id": "a", "bogus": 1}))).unwrap_err();
        assert_eq!(e.code, -32602);
        assert_eq!(e.data.unwrap()["field"], "bogus");
    }

    #[test]
    fn wrong_type_is_named() {
        let e = decode_params::<P>(Some(json!({"job_id": "a", "limit": "x"}))).unwrap_err();
        assert_eq!(e.data.unwrap()["field"], "limit");
    }

    #[test]
    fn missing_field_is_named() {
        let e = decode_params::<P>(None).unwrap_err();
        assert_eq!(e.data.unwrap()["field"], "job_id");
    }

    #[test]
    fn non_object_params_are_refused() {
        let e = decode_params::<P>(Some(json!([1]))).unwrap_err();
        assert_eq!(e.code, -32602);
    }
}
