//! The gRPC edge shared by every service: authentication and the one mapping of errors to
//! `tonic::Status`.

use tonic::{Request, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::auth::{Claims, Role, TokenAuthority};
use crate::petition::Violations;
use crate::store::StoreError;

/// An interceptor that verifies the bearer token and stores the [`Claims`] in the request's
/// extensions. Health and reflection are served without it.
pub fn auth_interceptor(
    authority: TokenAuthority,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |mut req: Request<()>| {
        let header = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Status::unauthenticated("missing `authorization: Bearer <token>`"))?;
        let claims = authority
            .verify(header)
            .map_err(|e| Status::unauthenticated(e.to_string()))?;
        req.extensions_mut().insert(claims);
        Ok(req)
    }
}

/// The caller's claims, put there by [`auth_interceptor`].
pub fn claims<T>(req: &Request<T>) -> Result<Claims, Status> {
    req.extensions()
        .get::<Claims>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("no verified token"))
}

/// Refuses unless the caller has one of `roles`.
pub fn require_role(claims: &Claims, roles: &[Role], action: &str) -> Result<(), Status> {
    if roles.contains(&claims.role) {
        Ok(())
    } else {
        Err(Status::permission_denied(format!(
            "role `{}` may not {action}; allowed: {}",
            claims.role,
            roles
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}

/// `InvalidArgument` listing every bad field, both in the message and as `BadRequest` details.
pub fn invalid_argument(v: &Violations) -> Status {
    let mut details = ErrorDetails::new();
    for f in &v.0 {
        details.add_bad_request_violation(f.field.clone(), f.description.clone());
    }
    Status::with_error_details(
        tonic::Code::InvalidArgument,
        format!("invalid petition: {v}"),
        details,
    )
}

impl From<StoreError> for Status {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => Status::not_found(format!("ticket {what} not found")),
            StoreError::Closed { .. } => Status::failed_precondition(e.to_string()),
            StoreError::Unavailable(cause) => {
                tracing::warn!(%cause, "store unavailable");
                Status::unavailable("ticket store unavailable; retry with the same idempotency key")
            }
            StoreError::Internal(cause) => {
                tracing::error!(%cause, "store failure");
                Status::internal("internal error")
            }
        }
    }
}
