//! Bearer tokens and roles.
//!
//! Every RPC carries `authorization: Bearer <jwt>` (HS256). The claims name the subject, the
//! role and, for handlers, the unit they act for.

use std::fmt;

use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Who is calling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Call-centre agent: records petitions, sees callers' data in full.
    Agent,
    /// Street or department handler, bound to one unit.
    Handler,
    Dispatcher,
    Arbitrator,
    Supervisor,
    Admin,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Agent,
        Role::Handler,
        Role::Dispatcher,
        Role::Arbitrator,
        Role::Supervisor,
        Role::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Handler => "handler",
            Role::Dispatcher => "dispatcher",
            Role::Arbitrator => "arbitrator",
            Role::Supervisor => "supervisor",
            Role::Admin => "admin",
        }
    }

    /// Roles that see callers' personal data unmasked.
    pub fn sees_personal_data(self) -> bool {
        matches!(self, Role::Agent | Role::Admin)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The claims of a Minyi token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Who: a user id such as `agent-007`.
    pub sub: String,
    pub role: Role,
    /// The unit a handler acts for (e.g. `ST-GM`); absent for other roles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    pub exp: i64,
    pub iat: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("a handler token must name its unit")]
    HandlerWithoutUnit,
    #[error("could not sign token: {0}")]
    Sign(String),
}

/// Signs and verifies tokens with one shared secret.
#[derive(Clone)]
pub struct TokenAuthority {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl fmt::Debug for TokenAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenAuthority(..)")
    }
}

impl TokenAuthority {
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 30;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    pub fn issue(
        &self,
        sub: &str,
        role: Role,
        unit: Option<&str>,
        ttl: chrono::Duration,
    ) -> Result<String, AuthError> {
        if role == Role::Handler && unit.is_none() {
            return Err(AuthError::HandlerWithoutUnit);
        }
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: sub.to_owned(),
            role,
            unit: unit.map(str::to_owned),
            iat: now,
            exp: now + ttl.num_seconds(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| AuthError::Sign(e.to_string()))
    }

    /// Verifies an `authorization` header value (`Bearer <jwt>`) or a bare token.
    pub fn verify(&self, header: &str) -> Result<Claims, AuthError> {
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .unwrap_or(header)
            .trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        if data.claims.role == Role::Handler && data.claims.unit.is_none() {
            return Err(AuthError::HandlerWithoutUnit);
        }
        Ok(data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_and_verify() {
        let a = TokenAuthority::new(b"0123456789abcdef0123456789abcdef");
        let t = a
            .issue(
                "h1",
                Role::Handler,
                Some("ST-GM"),
                chrono::Duration::hours(1),
            )
            .unwrap();
        let c = a.verify(&format!("Bearer {t}")).unwrap();
        assert_eq!(c.role, Role::Handler);
        assert_eq!(c.unit.as_deref(), Some("ST-GM"));
    }

    #[test]
    fn rejects_foreign_expired_and_missing() {
        let a = TokenAuthority::new(b"0123456789abcdef0123456789abcdef");
        let b = TokenAuthority::new(b"another-secret-another-secret-xx");
        let t = b
            .issue("x", Role::Admin, None, chrono::Duration::hours(1))
            .unwrap();
        assert!(a.verify(&t).is_err());
        let old = a
            .issue("x", Role::Admin, None, chrono::Duration::hours(-2))
            .unwrap();
        assert!(a.verify(&old).is_err());
        assert!(matches!(a.verify("Bearer "), Err(AuthError::Missing)));
        assert!(
            a.issue("h", Role::Handler, None, chrono::Duration::hours(1))
                .is_err()
        );
    }
}
