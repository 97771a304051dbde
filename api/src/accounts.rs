//! Accounts and tokens: register, log in, refresh, log out. A login
//! issues an access token and the first refresh token of a new family;
//! a refresh token is used once, and a reused one revokes its family.
//! Failed logins and registrations are throttled per account and per
//! address before any argon2 work.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use samvad_core::clock::unix_secs;
use samvad_core::names::valid_username;
use samvad_core::throttle;
use samvad_core::token::TokenKeys;
use samvad_store::accounts::{Account, AccountStore};
use samvad_store::tokens::{RefreshError, RefreshTokenStore};
use serde::{Deserialize, Serialize};

use crate::auth::{token_refused, ClientIp};
use crate::error::{parse, ApiError};
use crate::password::{hash_password, hash_password_gated, verify_password_gated};
use crate::state::AuthThrottles;

#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

#[derive(Deserialize)]
struct RefreshRequest {
    refresh_token: String,
}

#[derive(Serialize)]
pub struct TokenPair {
    user: String,
    access_token: String,
    refresh_token: String,
    expires_in: u64,
}

/// Issues an access token and the first refresh token of a new family.
pub(crate) async fn issue(
    refresh_tokens: &dyn RefreshTokenStore,
    keys: &TokenKeys,
    user: &str,
    family: &str,
) -> Result<TokenPair, ApiError> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    refresh_tokens
        .issue(&id, user, family)
        .await
        .map_err(ApiError::internal)?;
    Ok(TokenPair {
        user: user.to_string(),
        access_token: keys.issue_access(user, unix_secs()),
        refresh_token: keys.issue_refresh(user, &id, family, unix_secs()),
        expires_in: keys.access_ttl,
    })
}

pub(crate) fn new_family() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

pub(crate) async fn register(
    State(accounts): State<Arc<dyn AccountStore>>,
    State(refresh_tokens): State<Arc<dyn RefreshTokenStore>>,
    State(keys): State<Arc<TokenKeys>>,
    State(throttles): State<Arc<AuthThrottles>>,
    ClientIp(ip): ClientIp,
    body: Bytes,
) -> Result<Response, ApiError> {
    let creds: Credentials = parse(&body)?;
    if let Some(ip) = ip {
        let throttle = &throttles.registrations_per_address;
        throttle::take(throttle, ip, Instant::now())
            .map_err(|wait| ApiError::throttled("registrations from this address", wait))?;
    }
    if !valid_username(&creds.username) {
        return Err(ApiError::invalid(
            "invalid_username",
            "user names are 3 to 32 of a-z 0-9 _ . -",
        ));
    }
    if !(8..=256).contains(&creds.password.len()) {
        return Err(ApiError::invalid(
            "weak_password",
            "passwords are 8 to 256 bytes",
        ));
    }
    let password = creds.password;
    let hash = hash_password_gated(password)
        .await
        .map_err(ApiError::internal)?;
    let account = Account {
        username: creds.username.clone(),
        password_hash: hash,
        created_ms: samvad_core::clock::unix_ms(),
        ..Account::default()
    };
    let created = accounts.create(account).await.map_err(ApiError::internal)?;
    if !created {
        return Err(ApiError::conflict(
            "username_taken",
            "that user name is taken",
        ));
    }
    let pair = issue(&*refresh_tokens, &keys, &creds.username, &new_family()).await?;
    Ok((StatusCode::CREATED, Json(pair)).into_response())
}

/// A hash of a random password: verifying against it costs what a real
/// check costs, so a wrong user name takes as long as a wrong password.
static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    hash_password(&uuid::Uuid::new_v4().to_string()).expect("argon2 with default parameters")
});

/// Checks the password, unless the account or the address has failed too
/// often lately (429 with Retry-After, before any argon2 work); a failure
/// counts against both, a success forgets the account's.
pub(crate) async fn login(
    State(accounts): State<Arc<dyn AccountStore>>,
    State(refresh_tokens): State<Arc<dyn RefreshTokenStore>>,
    State(keys): State<Arc<TokenKeys>>,
    State(throttles): State<Arc<AuthThrottles>>,
    ClientIp(ip): ClientIp,
    body: Bytes,
) -> Result<Json<TokenPair>, ApiError> {
    let creds: Credentials = parse(&body)?;
    let throttles = &throttles;
    let now = Instant::now();
    throttle::check(&throttles.failed_logins_per_account, &creds.username, now)
        .map_err(|wait| ApiError::throttled("failed logins for this account", wait))?;
    if let Some(ip) = ip {
        throttle::check(&throttles.failed_logins_per_address, &ip, now)
            .map_err(|wait| ApiError::throttled("failed logins from this address", wait))?;
    }
    let account = accounts
        .get(&creds.username)
        .await
        .map_err(ApiError::internal)?;
    let hash = account
        .as_ref()
        .map_or_else(|| DUMMY_HASH.clone(), |a| a.password_hash.clone());
    let password = creds.password;
    let ok = verify_password_gated(password, hash)
        .await
        .map_err(ApiError::internal)?;
    if !ok || account.is_none() {
        let now = Instant::now();
        let _ = throttle::take(&throttles.failed_logins_per_account, creds.username, now);
        if let Some(ip) = ip {
            let _ = throttle::take(&throttles.failed_logins_per_address, ip, now);
        }
        return Err(ApiError::unauthorized(
            "bad_credentials",
            "wrong user name or password",
        ));
    }
    if let Some(t) = &throttles.failed_logins_per_account {
        t.forget(&creds.username);
    }
    Ok(Json(
        issue(&*refresh_tokens, &keys, &creds.username, &new_family()).await?,
    ))
}

pub(crate) async fn refresh(
    State(accounts): State<Arc<dyn AccountStore>>,
    State(refresh_tokens): State<Arc<dyn RefreshTokenStore>>,
    State(keys): State<Arc<TokenKeys>>,
    body: Bytes,
) -> Result<Json<TokenPair>, ApiError> {
    let req: RefreshRequest = parse(&body)?;
    let claims = keys
        .verify_refresh(&req.refresh_token, unix_secs())
        .map_err(|e| token_refused(e, "refresh token"))?;
    // A password change since this login was made ends it.
    let account = accounts
        .get(&claims.sub)
        .await
        .map_err(ApiError::internal)?;
    if account.is_none_or(|a| claims.iat < a.logins_valid_from) {
        return Err(ApiError::unauthorized(
            "token_revoked",
            "this login ended (password changed or account gone)",
        ));
    }
    match refresh_tokens
        .redeem(&claims.jti)
        .await
        .map_err(ApiError::internal)?
    {
        Ok((user, family)) => Ok(Json(issue(&*refresh_tokens, &keys, &user, &family).await?)),
        Err(RefreshError::Reused) => Err(ApiError::unauthorized(
            "token_reused",
            "refresh token was already used; every token of this login is revoked",
        )),
        Err(RefreshError::Revoked) => Err(ApiError::unauthorized(
            "token_revoked",
            "refresh token revoked",
        )),
        Err(RefreshError::Unknown) => {
            Err(ApiError::unauthorized("bad_token", "unknown refresh token"))
        }
    }
}

pub(crate) async fn logout(
    State(refresh_tokens): State<Arc<dyn RefreshTokenStore>>,
    State(keys): State<Arc<TokenKeys>>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let req: RefreshRequest = parse(&body)?;
    let claims = keys
        .verify_refresh(&req.refresh_token, unix_secs())
        .map_err(|_| ApiError::unauthorized("bad_token", "refresh token invalid"))?;
    refresh_tokens
        .revoke_family(&claims.fam)
        .await
        .map_err(ApiError::internal)?;
    Ok(StatusCode::NO_CONTENT)
}
