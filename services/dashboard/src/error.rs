//! The crate's one error type and its two mappings: to an HTTP response (JSON body) and to a
//! gRPC status. Internal causes are logged, never sent.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tonic_types::{ErrorDetails, StatusExt};

use crate::dashboard::AccessError;
use crate::filter::FieldError;

/// A failed API request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error("invalid request: {}", describe(.0))]
    Invalid(Vec<FieldError>),
    #[error("{0}")]
    NotFound(String),
    /// The cause is logged, never sent.
    #[error("internal error")]
    Internal(String),
}

fn describe(fields: &[FieldError]) -> String {
    fields
        .iter()
        .map(|f| format!("{}: {}", f.field, f.description))
        .collect::<Vec<_>>()
        .join("; ")
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            ApiError::Access(AccessError::Forbidden(_)) => {
                (StatusCode::FORBIDDEN, "permission_denied")
            }
            ApiError::Access(_) => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            ApiError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_argument"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Internal(cause) => {
                tracing::error!(%cause, "dashboard request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        };
        let mut body = json!({"error": {"code": code, "message": self.to_string()}});
        if let ApiError::Invalid(fields) = &self {
            body["error"]["fields"] = json!(fields);
        }
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"minyi-dashboard\""),
            );
        }
        response
    }
}

impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> Self {
        match &e {
            ApiError::Access(AccessError::Forbidden(_)) => {
                tonic::Status::permission_denied(e.to_string())
            }
            ApiError::Access(_) => tonic::Status::unauthenticated(e.to_string()),
            ApiError::Invalid(fields) => {
                let mut details = ErrorDetails::new();
                for f in fields {
                    details.add_bad_request_violation(f.field.clone(), f.description.clone());
                }
                tonic::Status::with_error_details(
                    tonic::Code::InvalidArgument,
                    e.to_string(),
                    details,
                )
            }
            ApiError::NotFound(_) => tonic::Status::not_found(e.to_string()),
            ApiError::Internal(cause) => {
                tracing::error!(%cause, "dashboard request failed");
                tonic::Status::internal("internal error")
            }
        }
    }
}
