//! HTTP: REST (accounts, tokens), the web page, `/cert-hash`, `/metrics`
//! and the WebSocket upgrade. The same router serves the HTTPS port and the
//! plain-HTTP loopback port.

use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{DefaultBodyLimit, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use samvad_proto::v1::ErrorCode;
use samvad_store::accounts::Account;
use samvad_store::tokens::RefreshError;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::admission::Refusal;
use crate::auth::{hash_password, hash_password_gated, verify_password_gated};
use crate::connection;
use crate::file_api;
use crate::group_api;
use crate::history_api;
use crate::phone_api;
use crate::push_api;
use crate::state::Edge;
use crate::throttle;
use crate::transport::WsTransport;
use crate::user_api;
use samvad_core::clock::unix_secs;
use samvad_core::names::valid_username;
use samvad_core::token::TokenError;
use std::time::Instant;

// The web app, built by `npm run build` in web/ (committed; scripts/test.sh
// checks that it matches the sources).
const INDEX_HTML: &str = include_str!("../../web/dist/index.html");
const APP_JS: &str = include_str!("../../web/dist/app.js");
const APP_CSS: &str = include_str!("../../web/dist/app.css");
const SERVICE_WORKER_JS: &str = include_str!("../../web/dist/sw.js");
/// The REST API's description; `edge/tests/e2e/openapi.rs` checks the server
/// against it.
pub const OPENAPI_JSON: &str = include_str!("../../api/openapi.json");

/// A REST error: an HTTP status and a stable code.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Sent as `Retry-After` (whole seconds, at least 1).
    retry_after: Option<std::time::Duration>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// A refusal to try again after `wait`.
    pub(crate) fn retry_after(mut self, wait: std::time::Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }

    /// 429 `too_many_attempts`: `what` must wait `wait`.
    fn throttled(what: &str, wait: std::time::Duration) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            format!("too many {what}; retry in {} s", retry_secs(wait)),
        )
        .retry_after(wait)
    }

    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    /// The session error code of this refusal, for a REST operation a
    /// session asked for in a frame: by its status, never its text.
    pub(crate) fn session_code(&self) -> ErrorCode {
        match self.status {
            StatusCode::NOT_FOUND => ErrorCode::UnknownRecipient,
            s if s.is_server_error() => ErrorCode::Unavailable,
            _ => ErrorCode::Forbidden,
        }
    }

    pub(crate) fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }
}

/// Whole seconds to wait, at least 1.
fn retry_secs(wait: std::time::Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(json!({"error": {"code": self.code, "message": self.message}})),
        )
            .into_response();
        if let Some(wait) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, retry_secs(wait).into());
        }
        response
    }
}

/// The client's address, where the listener records it.
type Peer = Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>;

fn peer_ip(peer: &Peer) -> Option<std::net::IpAddr> {
    peer.as_ref()
        .map(|axum::Extension(axum::extract::ConnectInfo(a))| a.ip())
}

/// Parses a JSON body, answering 400 `bad_request` with the reason.
pub(crate) fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.to_string()))
}

/// Whether `user` has an account (500 when the directory cannot tell).
pub(crate) async fn account_exists(edge: &Edge, user: &str) -> Result<bool, ApiError> {
    edge.directory
        .exists(user)
        .await
        .map_err(ApiError::internal)
}

/// The user of the request's access token, as a handler's argument: a
/// request without a valid `Authorization: Bearer` token is answered 401
/// before the handler runs.
pub struct AuthUser(pub String);

impl FromRequestParts<Arc<Edge>> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, edge: &Arc<Edge>) -> Result<Self, ApiError> {
        authenticated_user(edge, &parts.headers).map(AuthUser)
    }
}

/// The user of the access token in `Authorization: Bearer <token>`; 401
/// otherwise. Nothing else (no cookie, no user header) names a user.
pub(crate) fn authenticated_user(edge: &Edge, headers: &HeaderMap) -> Result<String, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "not_authenticated",
                "an `Authorization: Bearer <access token>` header is required",
            )
        })?;
    edge.keys
        .verify_access(token.trim(), unix_secs())
        .map_err(|e| match e {
            TokenError::Expired => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "token_expired",
                "access token expired",
            ),
            TokenError::Invalid => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "bad_token",
                "access token invalid",
            ),
        })
}

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

pub fn router(edge: Arc<Edge>) -> Router {
    let max_file = usize::try_from(edge.file_limits.max_file).unwrap_or(usize::MAX);
    Router::new()
        .route(
            "/",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    INDEX_HTML,
                )
            }),
        )
        .route(
            "/app.js",
            get(|| async { ([(header::CONTENT_TYPE, "text/javascript")], APP_JS) }),
        )
        .route(
            "/proto/samvad.proto",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/plain")],
                    samvad_proto::SAMVAD_PROTO,
                )
            }),
        )
        .route(
            "/app.css",
            get(|| async { ([(header::CONTENT_TYPE, "text/css")], APP_CSS) }),
        )
        .route(
            "/sw.js",
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/javascript"),
                        // A new build reaches open tabs at their next load.
                        (header::CACHE_CONTROL, "no-cache"),
                    ],
                    SERVICE_WORKER_JS,
                )
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON) }),
        )
        .route("/cert-hash", get(cert_hash))
        .route("/metrics", get(metrics))
        .route("/v1/register", post(register))
        .route("/v1/login", post(login))
        .route("/v1/refresh", post(refresh))
        .route("/v1/logout", post(logout))
        .route("/v1/users", get(user_api::search))
        .route("/v1/users/{user}", get(user_api::profile))
        .route("/v1/me", get(user_api::me).patch(user_api::update_me))
        .route("/v1/me/password", post(user_api::change_password))
        .route(
            "/v1/me/phone",
            post(phone_api::request_code).delete(phone_api::remove),
        )
        .route("/v1/me/phone/verify", post(phone_api::verify))
        .route("/v1/groups", post(group_api::create).get(group_api::list))
        .route(
            "/v1/groups/{id}",
            get(group_api::get_one)
                .patch(group_api::rename)
                .delete(group_api::delete),
        )
        .route("/v1/channels", get(group_api::channels))
        .route("/v1/groups/{id}/invites", post(group_api::invite))
        .route("/v1/groups/{id}/subscribe", post(group_api::subscribe))
        .route("/v1/groups/{id}/unsubscribe", post(group_api::unsubscribe))
        .route("/v1/groups/{id}/invites/accept", post(group_api::accept))
        .route("/v1/groups/{id}/invites/decline", post(group_api::decline))
        .route(
            "/v1/groups/{id}/members/{user}",
            axum::routing::delete(group_api::remove).put(group_api::set_role),
        )
        .route("/v1/files", post(file_api::create))
        .route("/v1/files/{id}/download-url", post(file_api::download_url))
        .route("/v1/me/storage", get(file_api::storage))
        .route(
            "/v1/conversations/{chatid}/messages",
            get(history_api::messages),
        )
        .route("/v1/push/vapid-public-key", get(push_api::vapid_public_key))
        .route(
            "/v1/push/subscriptions",
            get(push_api::list)
                .post(push_api::subscribe)
                .delete(push_api::unsubscribe),
        )
        .route("/ws", get(websocket))
        .layer(DefaultBodyLimit::max(64 * 1024))
        // A full contact match (1000 hashes) is larger than other JSON.
        .route(
            "/v1/contacts/match",
            post(user_api::match_contacts).layer(DefaultBodyLimit::max(256 * 1024)),
        )
        // File content has its own limit (the router's is for JSON).
        .route(
            "/v1/files/{id}/content",
            get(file_api::download)
                .put(file_api::upload)
                .layer(DefaultBodyLimit::max(max_file)),
        )
        .layer(axum::middleware::map_response(json_payload_too_large))
        .with_state(edge)
}

/// Bodies over a route's limit are refused by axum's extractor with a
/// plain-text 413; every other refusal is the JSON error, so is this one.
async fn json_payload_too_large(response: Response) -> Response {
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if response.status() != StatusCode::PAYLOAD_TOO_LARGE || is_json {
        return response;
    }
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "the request body is over this endpoint's limit",
    )
    .into_response()
}

async fn cert_hash(State(edge): State<Arc<Edge>>) -> impl IntoResponse {
    Json(
        json!({"algorithm": "sha-256", "sha256": *edge.cert_sha256.read(), "quic_port": edge.quic_port}),
    )
}

async fn metrics(State(edge): State<Arc<Edge>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        edge.metrics.render(),
    )
}

/// Issues an access token and the first refresh token of a new family.
pub(crate) async fn issue(edge: &Edge, user: &str, family: &str) -> Result<TokenPair, ApiError> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    edge.directory
        .issue_refresh(&id, user, family)
        .await
        .map_err(ApiError::internal)?;
    Ok(TokenPair {
        user: user.to_string(),
        access_token: edge.keys.issue_access(user, unix_secs()),
        refresh_token: edge.keys.issue_refresh(user, &id, family, unix_secs()),
        expires_in: edge.keys.access_ttl,
    })
}

pub(crate) fn new_family() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

async fn register(
    State(edge): State<Arc<Edge>>,
    peer: Peer,
    body: Bytes,
) -> Result<Response, ApiError> {
    let creds: Credentials = parse(&body)?;
    if let Some(ip) = peer_ip(&peer) {
        let throttle = &edge.auth_throttles.registrations_per_address;
        throttle::take(throttle, ip, Instant::now())
            .map_err(|wait| ApiError::throttled("registrations from this address", wait))?;
    }
    if !valid_username(&creds.username) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_username",
            "user names are 3 to 32 of a-z 0-9 _ . -",
        ));
    }
    if !(8..=256).contains(&creds.password.len()) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
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
    let created = edge
        .directory
        .create_account(account)
        .await
        .map_err(ApiError::internal)?;
    if !created {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "username_taken",
            "that user name is taken",
        ));
    }
    let pair = issue(&edge, &creds.username, &new_family()).await?;
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
async fn login(
    State(edge): State<Arc<Edge>>,
    peer: Peer,
    body: Bytes,
) -> Result<Json<TokenPair>, ApiError> {
    let creds: Credentials = parse(&body)?;
    let throttles = &edge.auth_throttles;
    let ip = peer_ip(&peer);
    let now = Instant::now();
    throttle::check(&throttles.failed_logins_per_account, &creds.username, now)
        .map_err(|wait| ApiError::throttled("failed logins for this account", wait))?;
    if let Some(ip) = ip {
        throttle::check(&throttles.failed_logins_per_address, &ip, now)
            .map_err(|wait| ApiError::throttled("failed logins from this address", wait))?;
    }
    let account = edge
        .directory
        .account(&creds.username)
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
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_credentials",
            "wrong user name or password",
        ));
    }
    if let Some(t) = &throttles.failed_logins_per_account {
        t.forget(&creds.username);
    }
    Ok(Json(issue(&edge, &creds.username, &new_family()).await?))
}

async fn refresh(State(edge): State<Arc<Edge>>, body: Bytes) -> Result<Json<TokenPair>, ApiError> {
    let req: RefreshRequest = parse(&body)?;
    let claims = edge
        .keys
        .verify_refresh(&req.refresh_token, unix_secs())
        .map_err(|e| match e {
            TokenError::Expired => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "token_expired",
                "refresh token expired",
            ),
            TokenError::Invalid => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "bad_token",
                "refresh token invalid",
            ),
        })?;
    // A password change since this login was made ends it.
    let account = edge
        .directory
        .account(&claims.sub)
        .await
        .map_err(ApiError::internal)?;
    if account.is_none_or(|a| claims.iat < a.logins_valid_from) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "token_revoked",
            "this login ended (password changed or account gone)",
        ));
    }
    match edge
        .directory
        .redeem_refresh(&claims.jti)
        .await
        .map_err(ApiError::internal)?
    {
        Ok((user, family)) => Ok(Json(issue(&edge, &user, &family).await?)),
        Err(RefreshError::Reused) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "token_reused",
            "refresh token was already used; every token of this login is revoked",
        )),
        Err(RefreshError::Revoked) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "token_revoked",
            "refresh token revoked",
        )),
        Err(RefreshError::Unknown) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_token",
            "unknown refresh token",
        )),
    }
}

async fn logout(State(edge): State<Arc<Edge>>, body: Bytes) -> Result<StatusCode, ApiError> {
    let req: RefreshRequest = parse(&body)?;
    let claims = edge
        .keys
        .verify_refresh(&req.refresh_token, unix_secs())
        .map_err(|_| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "bad_token",
                "refresh token invalid",
            )
        })?;
    edge.directory
        .revoke_family(&claims.fam)
        .await
        .map_err(ApiError::internal)?;
    Ok(StatusCode::NO_CONTENT)
}

/// The WebSocket upgrade, after admission: a refusal is 503 (the edge is
/// full) or 429 (this address connects too fast), with `Retry-After`, in
/// the JSON error shape of every other refusal.
async fn websocket(
    State(edge): State<Arc<Edge>>,
    peer: Peer,
    upgrade: WebSocketUpgrade,
) -> Response {
    let admitted = match peer_ip(&peer) {
        Some(ip) => edge.admission.connection(ip, std::time::Instant::now()),
        None => Ok(()),
    }
    .and_then(|()| edge.admission.websocket());
    let place = match admitted {
        Ok(place) => place,
        Err(refusal) => {
            edge.metrics.refused(refusal);
            let status = match refusal {
                Refusal::AddressRate(_) => StatusCode::TOO_MANY_REQUESTS,
                Refusal::SessionsFull(_)
                | Refusal::WebSocketsFull(_)
                | Refusal::HandshakesFull(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
            return ApiError::new(status, refusal.label(), refusal.to_string())
                .retry_after(refusal.retry_after())
                .into_response();
        }
    };
    let max_frame = edge.session_config.max_frame;
    upgrade
        // Frames over our limit must reach the session (to be answered with
        // FRAME_TOO_LARGE), so the WebSocket's own cap sits above it.
        .max_message_size((max_frame * 4).max(1 << 20))
        // Allocated up front per session and grown only for large frames:
        // small, so that idle sessions stay small (bench/RESULTS.md).
        .read_buffer_size(1024)
        // Frames fed between two flushes share a write (the session drains
        // its queue, then flushes); the buffer grows only for bursts.
        .write_buffer_size(16 * 1024)
        .on_upgrade(move |socket| async move {
            connection::run(edge, WsTransport::new(socket, max_frame), "websocket").await;
            drop(place);
        })
}
