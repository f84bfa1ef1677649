//! The one error shape on the wire.
//!
//! Every reply is a [`Reply`]: either `{"ok": …}` or `{"error": {code, message, details}}`.
//! Codes are stable; a client matches on [`ErrorCode`] to tell "denied by policy" from
//! "bad CSR" from "unavailable".

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Stable, matchable error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The request was malformed: bad JSON, unknown field, bad CSR, bad value.
    BadRequest,
    /// The request exceeded the size cap.
    TooLarge,
    /// The request's proof of who sent it is missing, malformed, expired, replayed,
    /// revoked or not signed by a key Sigil trusts.
    Unauthenticated,
    /// Policy refused the request; `details.reasons` says why.
    Denied,
    /// The named object does not exist.
    NotFound,
    /// The request conflicts with existing state.
    Conflict,
    /// A dependency (another service, the database, NATS) is unavailable; retry later.
    Unavailable,
    /// A bug or unexpected failure inside the service.
    Internal,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::Denied => "denied",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }

    /// Numeric status for the `Nats-Service-Error-Code` header (HTTP-like).
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::Denied => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict => 409,
            ErrorCode::TooLarge => 413,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable => 503,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A typed error as carried in a reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, thiserror::Error)]
#[serde(deny_unknown_fields)]
#[error("{code}: {message}")]
pub struct WireError {
    pub code: ErrorCode,
    pub message: String,
    /// Structured detail, e.g. `{"reasons": [...]}` for `denied`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

impl WireError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        WireError {
            code,
            message: message.into(),
            details: None,
        }
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthenticated, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    /// A policy denial carrying its reasons in `details.reasons`.
    pub fn denied(reasons: Vec<String>) -> Self {
        let message = if reasons.is_empty() {
            "denied by policy".to_owned()
        } else {
            format!("denied by policy: {}", reasons.join("; "))
        };
        Self::new(ErrorCode::Denied, message)
            .with_details(serde_json::json!({ "reasons": reasons }))
    }

    /// The reasons of a `denied` error, if any.
    pub fn reasons(&self) -> Vec<String> {
        self.details
            .as_ref()
            .and_then(|d| d.get("reasons"))
            .and_then(|r| r.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Every reply on the wire: a result or a typed error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Reply<T> {
    Ok(T),
    Error(WireError),
}

impl<T> Reply<T> {
    pub fn into_result(self) -> Result<T, WireError> {
        match self {
            Reply::Ok(v) => Ok(v),
            Reply::Error(e) => Err(e),
        }
    }
}

impl<T> From<Result<T, WireError>> for Reply<T> {
    fn from(r: Result<T, WireError>) -> Self {
        match r {
            Ok(v) => Reply::Ok(v),
            Err(e) => Reply::Error(e),
        }
    }
}

/// Parse a request body strictly: size cap, then JSON with unknown fields refused
/// (request types use `deny_unknown_fields`).
pub fn parse_request<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, WireError> {
    if body.len() > crate::MAX_REQUEST_BYTES {
        return Err(WireError::new(
            ErrorCode::TooLarge,
            format!(
                "request is {} bytes; the limit is {} bytes",
                body.len(),
                crate::MAX_REQUEST_BYTES
            ),
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| WireError::bad_request(format!("invalid request JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Probe {
        #[allow(dead_code)]
        a: u32,
    }

    #[test]
    fn reply_shape_is_ok_or_error() {
        let ok: Reply<u32> = Reply::Ok(3);
        assert_eq!(serde_json::to_string(&ok).unwrap(), r#"{"ok":3}"#);
        let err: Reply<u32> = Reply::Error(WireError::denied(vec!["x".into()]));
        let s = serde_json::to_string(&err).unwrap();
        assert!(s.starts_with(r#"{"error":{"code":"denied""#), "{s}");
        let back: Reply<u32> = serde_json::from_str(&s).unwrap();
        assert_eq!(
            back.into_result().unwrap_err().reasons(),
            vec!["x".to_owned()]
        );
    }

    #[test]
    fn parse_request_is_strict_and_capped() {
        assert!(parse_request::<Probe>(br#"{"a":1}"#).is_ok());
        let e = parse_request::<Probe>(br#"{"a":1,"b":2}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        let e = parse_request::<Probe>(b"{not json").unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        let big = vec![b' '; crate::MAX_REQUEST_BYTES + 1];
        assert_eq!(
            parse_request::<Probe>(&big).unwrap_err().code,
            ErrorCode::TooLarge
        );
    }
}
