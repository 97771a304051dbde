//! Signed tokens (JWT, HS256), checked against a time given by the caller.
//!
//! Access tokens are short-lived and verified without any lookup, so every
//! edge can check them on its own. Refresh tokens carry an id and a family
//! that the store tracks for rotation (see `samvad_store::tokens`).
//! jsonwebtoken would read the system clock for `exp`; it is told not to,
//! and expiry is decided here against `now` (Unix seconds), so the rule is
//! tested with plain numbers.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::signed_url::UrlSigner;

/// Lifetime of refresh tokens: 30 days.
pub const REFRESH_TTL_SECS: u64 = 30 * 24 * 3600;

const ACCESS: &str = "access";
const REFRESH: &str = "refresh";

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    pub iat: u64,
    /// `access` or `refresh`.
    pub typ: String,
    /// Refresh token id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub jti: String,
    /// Refresh token family.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub fam: String,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token expired")]
    Expired,
    #[error("token invalid")]
    Invalid,
}

pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    pub access_ttl: u64,
    /// Signs file URLs, with a key derived from the same secret.
    pub urls: UrlSigner,
}

impl TokenKeys {
    pub fn new(secret: &[u8], access_ttl: u64) -> Self {
        TokenKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            access_ttl,
            urls: UrlSigner::new(secret),
        }
    }

    fn sign(&self, claims: &Claims) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .expect("HS256 signing cannot fail")
    }

    /// An access token for `user`, issued at `now` (Unix seconds).
    pub fn issue_access(&self, user: &str, now: u64) -> String {
        self.sign(&Claims {
            sub: user.into(),
            iat: now,
            exp: now + self.access_ttl,
            typ: ACCESS.into(),
            jti: String::new(),
            fam: String::new(),
        })
    }

    /// A refresh token `id` of `family` for `user`, issued at `now`.
    pub fn issue_refresh(&self, user: &str, id: &str, family: &str, now: u64) -> String {
        self.sign(&Claims {
            sub: user.into(),
            iat: now,
            exp: now + REFRESH_TTL_SECS,
            typ: REFRESH.into(),
            jti: id.into(),
            fam: family.into(),
        })
    }

    fn verify(&self, token: &str, typ: &str, now: u64) -> Result<Claims, TokenError> {
        let mut validation = Validation::new(Algorithm::HS256);
        // `exp` must be present (the default), but is compared below.
        validation.validate_exp = false;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|_| TokenError::Invalid)?;
        if data.claims.typ != typ {
            return Err(TokenError::Invalid);
        }
        // A token is good up to and including the second before `exp`.
        if now >= data.claims.exp {
            return Err(TokenError::Expired);
        }
        Ok(data.claims)
    }

    /// The user an access token was issued to, if it is good at `now`.
    pub fn verify_access(&self, token: &str, now: u64) -> Result<String, TokenError> {
        self.verify(token, ACCESS, now).map(|c| c.sub)
    }

    /// A refresh token's claims, if it is good at `now`.
    pub fn verify_refresh(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        self.verify(token, REFRESH, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn tokens_verify_and_are_typed() {
        let keys = TokenKeys::new(b"secret", 60);
        let t = keys.issue_access("alice", NOW);
        assert_eq!(keys.verify_access(&t, NOW), Ok("alice".into()));
        let r = keys.issue_refresh("alice", "id", "fam", NOW);
        assert_eq!(keys.verify_access(&r, NOW), Err(TokenError::Invalid));
        assert_eq!(keys.verify_refresh(&r, NOW).unwrap().jti, "id");
        assert_eq!(
            keys.verify_refresh(&t, NOW).unwrap_err(),
            TokenError::Invalid
        );
        let other = TokenKeys::new(b"other", 60);
        assert_eq!(other.verify_access(&t, NOW), Err(TokenError::Invalid));
        let mut tampered = t.clone();
        tampered.insert(tampered.len() - 3, 'x');
        assert_eq!(keys.verify_access(&tampered, NOW), Err(TokenError::Invalid));
        assert_eq!(keys.verify_access("", NOW), Err(TokenError::Invalid));
    }

    #[test]
    fn tokens_expire_at_their_exp() {
        let keys = TokenKeys::new(b"secret", 60);
        let t = keys.issue_access("alice", NOW);
        assert!(keys.verify_access(&t, NOW + 59).is_ok());
        assert_eq!(keys.verify_access(&t, NOW + 60), Err(TokenError::Expired));
        let r = keys.issue_refresh("alice", "id", "fam", NOW);
        assert!(keys.verify_refresh(&r, NOW + REFRESH_TTL_SECS - 1).is_ok());
        assert_eq!(
            keys.verify_refresh(&r, NOW + REFRESH_TTL_SECS).unwrap_err(),
            TokenError::Expired
        );
    }

    #[test]
    fn an_expired_forgery_is_invalid_not_expired() {
        // The signature is checked before the time: a stranger learns
        // nothing from the answer.
        let keys = TokenKeys::new(b"secret", 60);
        let forged = TokenKeys::new(b"guess", 60).issue_access("alice", NOW);
        assert_eq!(
            keys.verify_access(&forged, NOW + 3600),
            Err(TokenError::Invalid)
        );
    }
}
