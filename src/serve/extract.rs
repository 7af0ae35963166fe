//! Request extractors: the JSON body with TEI's error bodies, and the model a request
//! is for.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, OriginalUri, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::error::{ApiError, ErrorType};
use super::state::{AppState, Served};

/// A JSON body (whatever its content type): 413 over the payload limit, 422 when it is
/// not the JSON the route takes.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<AppState>> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            let status = e.status();
            let kind = match status {
                StatusCode::PAYLOAD_TOO_LARGE => ErrorType::Validation,
                _ => ErrorType::Empty,
            };
            let message = match status {
                StatusCode::PAYLOAD_TOO_LARGE => format!(
                    "the body is over the payload limit of {} bytes",
                    state.options.payload_limit
                ),
                _ => e.body_text(),
            };
            ApiError::new(kind, message).with_status(status)
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::new(ErrorType::Empty, "the body is empty"));
        }
        serde_json::from_slice(&bytes)
            .map(Body)
            .map_err(|e| ApiError::new(ErrorType::Validation, e.to_string()))
    }
}

/// The model a request is for: `/models/{name}/...`, else the default (a route with a
/// `model` field in its body picks by that).
pub struct Picked(pub Arc<Served>);

impl FromRequestParts<Arc<AppState>> for Picked {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let path = match parts.extensions.get::<OriginalUri>() {
            Some(uri) => uri.path().to_string(),
            None => parts.uri.path().to_string(),
        };
        let name = path
            .strip_prefix("/models/")
            .and_then(|rest| rest.split('/').next());
        state.model(name).map(|m| Picked(m.clone()))
    }
}
