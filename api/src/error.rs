//! A REST refusal: an HTTP status, a stable code and a message, answered
//! as `{"error": {"code", "message"}}` (with `Retry-After` where waiting
//! helps). Every handler fails with one; no other error shape leaves the
//! API.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use samvad_proto::v1::ErrorCode;
use serde::de::DeserializeOwned;
use serde_json::json;

/// A REST error: an HTTP status and a stable code.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Sent as `Retry-After` (whole seconds, at least 1).
    retry_after: Option<std::time::Duration>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400 `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 400 with a code of its own (`invalid_username`, `bad_keys`, …).
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401: no valid credentials.
    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    /// 403: known, and not allowed.
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    /// 404 `not_found`: also what a caller gets of what it may not see.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 409: the state does not allow it (taken, full, already).
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// 503 `unavailable`: a part of the server is away; retrying helps.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// 429 `too_many_attempts`: `what` must wait `wait`.
    pub fn throttled(what: &str, wait: std::time::Duration) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            format!("too many {what}; retry in {} s", retry_secs(wait)),
        )
        .retry_after(wait)
    }

    /// 500 `internal`; the cause is logged, not told.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }

    /// A refusal to try again after `wait`.
    pub fn retry_after(mut self, wait: std::time::Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The session error code of this refusal, for a REST operation a
    /// session asked for in a frame: by its status, never its text.
    pub fn session_code(&self) -> ErrorCode {
        match self.status {
            StatusCode::NOT_FOUND => ErrorCode::UnknownRecipient,
            s if s.is_server_error() => ErrorCode::Unavailable,
            _ => ErrorCode::Forbidden,
        }
    }
}

/// Whole seconds to wait, at least 1.
fn retry_secs(wait: std::time::Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(json!({"error": {"code": self.code, "message": self.message}})),
        )
            .into_response();
        if let Some(wait) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, retry_secs(wait).into());
        }
        response
    }
}

/// Parses a JSON body, answering 400 `bad_request` with the reason.
pub fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Bodies over a route's limit are refused by axum's extractor with a
/// plain-text 413; every other refusal is the JSON error, so is this one.
pub async fn json_payload_too_large(response: Response) -> Response {
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if response.status() != StatusCode::PAYLOAD_TOO_LARGE || is_json {
        return response;
    }
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "the request body is over this endpoint's limit",
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_the_json_error_with_retry_after_in_whole_seconds() {
        let response =
            ApiError::throttled("logins", std::time::Duration::from_millis(1500)).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        assert_eq!(
            ApiError::not_found("x").session_code(),
            ErrorCode::UnknownRecipient
        );
        assert_eq!(
            ApiError::unavailable("x").session_code(),
            ErrorCode::Unavailable
        );
        assert_eq!(
            ApiError::bad_request("x").session_code(),
            ErrorCode::Forbidden
        );
    }
}
