//! Who is asking: the [`AuthUser`] extractor reads the access token of
//! `Authorization: Bearer <token>`, and nothing else names a user (no
//! cookie, no user header); [`ClientIp`] is the address the listener
//! recorded, for limits per address.

use std::sync::Arc;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use samvad_core::clock::unix_secs;
use samvad_core::token::{TokenError, TokenKeys};

use crate::error::ApiError;

/// The user of the request's access token, as a handler's argument: a
/// request without a valid token is answered 401 before the handler runs.
pub struct AuthUser(pub String);

impl<S> FromRequestParts<S> for AuthUser
where
    Arc<TokenKeys>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let keys = Arc::<TokenKeys>::from_ref(state);
        authenticated_user(&keys, &parts.headers).map(AuthUser)
    }
}

/// The client's address, where the listener records it (`None` where it
/// does not, as in tests that call the router directly).
pub struct ClientIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        let info = parts.extensions.get::<ConnectInfo<SocketAddr>>();
        Ok(ClientIp(info.map(|ConnectInfo(a)| a.ip())))
    }
}

/// The user of the access token in `headers`; 401 otherwise.
pub fn authenticated_user(keys: &TokenKeys, headers: &HeaderMap) -> Result<String, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::unauthorized(
                "not_authenticated",
                "an `Authorization: Bearer <access token>` header is required",
            )
        })?;
    keys.verify_access(token.trim(), unix_secs())
        .map_err(|e| token_refused(e, "access token"))
}

/// The 401 of a token that did not verify.
pub(crate) fn token_refused(e: TokenError, what: &str) -> ApiError {
    match e {
        TokenError::Expired => ApiError::unauthorized("token_expired", format!("{what} expired")),
        TokenError::Invalid => ApiError::unauthorized("bad_token", format!("{what} invalid")),
    }
}
