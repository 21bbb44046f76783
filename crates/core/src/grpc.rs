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

/// Most bytes of entries in one page of a list call. gRPC clients refuse a message over 4 MiB
/// by default, and a page of 500 long petitions (up to 20,000 characters each) could be
/// several times that: such a page holds fewer entries than asked, with a next-page token.
pub const PAGE_BYTES: usize = 3 * 1024 * 1024;

/// A page of a list call being filled, bounded by an entry count and by [`PAGE_BYTES`].
#[derive(Debug)]
pub struct Page<V> {
    pub entries: Vec<V>,
    bytes: usize,
    limit: usize,
}

impl<V: prost::Message> Page<V> {
    /// An empty page for at most `limit` entries.
    pub fn new(limit: usize) -> Self {
        Page {
            entries: Vec::new(),
            bytes: 0,
            limit,
        }
    }

    /// A page of the views of `items`, read with one more than `limit` to know whether more
    /// follow, and the `token` of its last item when some did not fit (else empty).
    pub fn fill<T>(
        limit: usize,
        items: &[T],
        view: impl Fn(&T) -> V,
        token: impl Fn(&T) -> String,
    ) -> (Vec<V>, String) {
        let mut page = Page::new(limit);
        let mut last = None;
        for item in items {
            if !page.push(view(item)) {
                break;
            }
            last = Some(item);
        }
        let next = match last {
            Some(item) if page.entries.len() < items.len() => token(item),
            _ => String::new(),
        };
        (page.entries, next)
    }

    /// Adds `entry` when the page has room for it, by count and by size (the first entry
    /// always fits). `false`: the page is full, the entry and the rest go on the next one.
    pub fn push(&mut self, entry: V) -> bool {
        let len = entry.encoded_len();
        let full = self.entries.len() >= self.limit
            || (!self.entries.is_empty() && self.bytes + len > PAGE_BYTES);
        if !full {
            self.bytes += len;
            self.entries.push(entry);
        }
        !full
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_stops_at_its_count_or_its_bytes() {
        let mut by_count = Page::new(2);
        assert!(by_count.push(String::from("a")));
        assert!(by_count.push(String::from("b")));
        assert!(!by_count.push(String::from("c")));
        assert_eq!(by_count.entries.len(), 2);

        let big = "长".repeat(PAGE_BYTES / 3 / 2 + 1); // just over half the budget
        let mut by_size = Page::new(500);
        assert!(by_size.push(big.clone()));
        assert!(!by_size.push(big.clone()), "two would pass the budget");
        let mut alone = Page::new(500);
        assert!(
            alone.push("长".repeat(PAGE_BYTES)),
            "an entry alone always fits"
        );

        let token = |n: &u32| n.to_string();
        let view = |n: &u32| n.to_string();
        assert_eq!(
            Page::fill(2, &[1, 2, 3], view, token),
            (vec!["1".to_owned(), "2".to_owned()], "2".to_owned())
        );
        assert_eq!(
            Page::fill(3, &[1, 2, 3], view, token),
            (
                vec!["1".to_owned(), "2".to_owned(), "3".to_owned()],
                String::new()
            )
        );
        let big = |_: &u32| "长".repeat(PAGE_BYTES / 3 / 2 + 1);
        let (entries, next) = Page::fill(500, &[1, 2, 3], big, token);
        assert_eq!((entries.len(), next.as_str()), (1, "1"), "cut by size");
    }
}
