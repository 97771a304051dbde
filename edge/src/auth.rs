//! Passwords (argon2id) and signed tokens (JWT, HS256).
//!
//! Access tokens are short-lived and verified without any lookup, so every
//! edge can check them on its own. Refresh tokens carry an id and a family
//! that the store tracks for rotation (see `samvad_store::tokens`).

use std::path::Path;

use anyhow::Context;
use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::signed_url::UrlSigner;

/// Lifetime of refresh tokens: 30 days.
pub const REFRESH_TTL_SECS: u64 = 30 * 24 * 3600;

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

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The secret kept (hex) in `dir/name`, written from `fresh()` the first
/// time: the single-process counterpart of `RedisDirectory::shared_secret`.
pub fn secret_file(
    dir: &Path,
    name: &str,
    fresh: impl FnOnce() -> Vec<u8>,
) -> anyhow::Result<Vec<u8>> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(hex_secret) => {
            hex::decode(hex_secret.trim()).with_context(|| format!("{name} is not hex"))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret = fresh();
            std::fs::write(&path, hex::encode(&secret))
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(secret)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
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

    /// Loads the signing secret from `dir/token.key`, creating it once.
    pub fn load_or_create(dir: &Path, access_ttl: u64) -> anyhow::Result<Self> {
        let secret = secret_file(dir, "token.key", || rand::random::<[u8; 32]>().to_vec())?;
        Ok(Self::new(&secret, access_ttl))
    }

    fn sign(&self, claims: &Claims) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .expect("HS256 signing cannot fail")
    }

    pub fn issue_access(&self, user: &str) -> String {
        let now = now_secs();
        self.sign(&Claims {
            sub: user.into(),
            iat: now,
            exp: now + self.access_ttl,
            typ: "access".into(),
            jti: String::new(),
            fam: String::new(),
        })
    }

    pub fn issue_refresh(&self, user: &str, id: &str, family: &str) -> String {
        let now = now_secs();
        self.sign(&Claims {
            sub: user.into(),
            iat: now,
            exp: now + REFRESH_TTL_SECS,
            typ: "refresh".into(),
            jti: id.into(),
            fam: family.into(),
        })
    }

    fn verify(&self, token: &str, typ: &str) -> Result<Claims, TokenError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map_err(
            |e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            },
        )?;
        if data.claims.typ != typ {
            return Err(TokenError::Invalid);
        }
        Ok(data.claims)
    }

    /// The user an access token was issued to.
    pub fn verify_access(&self, token: &str) -> Result<String, TokenError> {
        self.verify(token, "access").map(|c| c.sub)
    }

    pub fn verify_refresh(&self, token: &str) -> Result<Claims, TokenError> {
        self.verify(token, "refresh")
    }
}

/// At most this many argon2 computations at once (one per core): each
/// takes 19 MiB and a core for tens of milliseconds, so a login flood must
/// queue rather than multiply memory and starve the sessions.
static ARGON2_PERMITS: std::sync::LazyLock<tokio::sync::Semaphore> =
    std::sync::LazyLock::new(|| {
        tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
    });

/// [`hash_password`] on the blocking pool, at most one per core.
pub async fn hash_password_gated(password: String) -> anyhow::Result<String> {
    let _permit = ARGON2_PERMITS.acquire().await?;
    tokio::task::spawn_blocking(move || hash_password(&password)).await?
}

/// [`verify_password`] on the blocking pool, at most one per core.
pub async fn verify_password_gated(password: String, hash: String) -> anyhow::Result<bool> {
    let _permit = ARGON2_PERMITS.acquire().await?;
    Ok(tokio::task::spawn_blocking(move || verify_password(&password, &hash)).await?)
}

/// Hashes a password with argon2id and a random salt (PHC string).
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))?
        .to_string())
}

/// Whether `password` matches the PHC string `hash`.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_and_are_typed() {
        let keys = TokenKeys::new(b"secret", 60);
        let t = keys.issue_access("alice");
        assert_eq!(keys.verify_access(&t), Ok("alice".into()));
        let r = keys.issue_refresh("alice", "id", "fam");
        assert_eq!(keys.verify_access(&r), Err(TokenError::Invalid));
        assert_eq!(keys.verify_refresh(&r).unwrap().jti, "id");
        let other = TokenKeys::new(b"other", 60);
        assert_eq!(other.verify_access(&t), Err(TokenError::Invalid));
        let mut tampered = t.clone();
        tampered.insert(tampered.len() - 3, 'x');
        assert_eq!(keys.verify_access(&tampered), Err(TokenError::Invalid));
    }

    #[test]
    fn expired_tokens_are_refused() {
        let keys = TokenKeys::new(b"secret", 0);
        let t = keys.issue_access("alice");
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert_eq!(keys.verify_access(&t), Err(TokenError::Expired));
    }

    #[test]
    fn passwords_hash_and_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("x", "not a hash"));
    }
}
