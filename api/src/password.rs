//! Passwords: argon2id, on the blocking pool, at most one hash per core.

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;

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
    fn passwords_hash_and_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("x", "not a hash"));
    }
}
