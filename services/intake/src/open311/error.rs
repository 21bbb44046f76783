//! Errors as GeoReport v2 states them: the HTTP status, and a list of
//! `{code, description}` (`<errors><error>…` in XML) whose `code` repeats the status.
//!
//! Descriptions are written for the 311 app's developer. Infrastructure failures are logged
//! here with their cause and answered with a fixed sentence: no store or token-library text
//! ever reaches a client.

use axum::http::StatusCode;
use minyi_core::petition::Violations;
use minyi_core::store::StoreError;

use super::doc::{Doc, Node};

/// A failed request: one status, one or more descriptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub status: StatusCode,
    pub descriptions: Vec<String>,
}

impl Failure {
    pub fn new(status: StatusCode, description: impl Into<String>) -> Self {
        Failure {
            status,
            descriptions: vec![description.into()],
        }
    }

    pub fn bad_request(description: impl Into<String>) -> Self {
        Failure::new(StatusCode::BAD_REQUEST, description)
    }

    pub fn not_found(description: impl Into<String>) -> Self {
        Failure::new(StatusCode::NOT_FOUND, description)
    }

    pub fn forbidden(description: impl Into<String>) -> Self {
        Failure::new(StatusCode::FORBIDDEN, description)
    }

    /// 400 with one error per bad field, each named as the client spelled it.
    pub fn invalid(v: &Violations) -> Self {
        Failure {
            status: StatusCode::BAD_REQUEST,
            descriptions: v
                .0
                .iter()
                .map(|f| format!("{}: {}", f.field, f.description))
                .collect(),
        }
    }

    /// Something on our side broke; the cause is logged, never sent.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "open311 request failed");
        Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error; please try again later",
        )
    }

    pub fn unavailable(cause: &dyn std::fmt::Display) -> Self {
        tracing::warn!(error = %cause, "open311 request failed: store unavailable");
        Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service temporarily unavailable; please try again later",
        )
    }

    pub fn doc(&self) -> Doc {
        let code = i64::from(self.status.as_u16());
        Doc::new(
            "errors",
            Node::list(
                "error",
                self.descriptions
                    .iter()
                    .map(|d| {
                        Node::Object(vec![
                            ("code", Node::Int(code)),
                            ("description", Node::text(d)),
                        ])
                    })
                    .collect(),
            ),
        )
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        match e {
            // The store's message names its internal lookup; ours names what the client sent.
            StoreError::NotFound(_) => Failure::not_found("service request not found"),
            StoreError::Closed { .. } => Failure::bad_request("service request is closed"),
            StoreError::Unavailable(_) => Failure::unavailable(&e),
            StoreError::Internal(_) => Failure::internal(&e),
        }
    }
}
