//! Error responses with the status codes and bodies TEI's clients expect.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::error::Error;

/// What went wrong, in TEI's terms: the body is `{"error", "error_type"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    /// 503: the server is draining.
    Unhealthy,
    /// 424: the model failed, or has no head for the route.
    Backend,
    /// 429: every concurrency permit is taken.
    Overloaded,
    /// 422 (413 for a body over the payload limit).
    Validation,
    /// 422: the text could not be tokenized.
    Tokenizer,
    /// 400: nothing to answer.
    Empty,
}

impl ErrorType {
    fn name(self) -> &'static str {
        match self {
            ErrorType::Unhealthy => "Unhealthy",
            ErrorType::Backend => "Backend",
            ErrorType::Overloaded => "Overloaded",
            ErrorType::Validation => "Validation",
            ErrorType::Tokenizer => "Tokenizer",
            ErrorType::Empty => "Empty",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            ErrorType::Unhealthy => StatusCode::SERVICE_UNAVAILABLE,
            ErrorType::Backend => StatusCode::FAILED_DEPENDENCY,
            ErrorType::Overloaded => StatusCode::TOO_MANY_REQUESTS,
            ErrorType::Validation | ErrorType::Tokenizer => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorType::Empty => StatusCode::BAD_REQUEST,
        }
    }
}

/// An error answer: its kind, status and message; OpenAI's routes write OpenAI's body.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// TEI's error type.
    pub kind: ErrorType,
    /// The status (the kind's, or 413 / 401 / 404 where those apply).
    pub status: StatusCode,
    /// What to tell the client.
    pub message: String,
    /// Write `{"error": {"message", "type", "code"}}` (OpenAI) instead of TEI's body.
    pub openai: bool,
}

impl ApiError {
    /// An error of `kind` with its status.
    pub fn new(kind: ErrorType, message: impl Into<String>) -> ApiError {
        ApiError {
            kind,
            status: kind.status(),
            message: message.into(),
            openai: false,
        }
    }

    /// The same error with another status.
    pub fn with_status(mut self, status: StatusCode) -> ApiError {
        self.status = status;
        self
    }

    /// The same error, written as OpenAI writes errors.
    pub fn openai(mut self) -> ApiError {
        self.openai = true;
        self
    }

    /// The outcome label for metrics and logs.
    pub fn outcome(&self) -> &'static str {
        self.kind.name()
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        let kind = match &e {
            Error::Input(m) if m.contains("tokeniz") => ErrorType::Tokenizer,
            Error::Input(_) => ErrorType::Validation,
            _ => ErrorType::Backend,
        };
        ApiError::new(kind, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match self.openai {
            true => json!({"error": {
                "message": self.message,
                "type": self.kind.name(),
                "code": self.status.as_u16(),
            }}),
            false => json!({"error": self.message, "error_type": self.kind.name()}),
        };
        let mut response = (self.status, Json(body)).into_response();
        response.extensions_mut().insert(Outcome(self.kind.name()));
        response
    }
}

/// The outcome a response carries for the request log and the request counter.
#[derive(Debug, Clone, Copy)]
pub struct Outcome(pub &'static str);
