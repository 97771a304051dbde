//! Samvad's REST API (`/v1/…`): accounts and tokens, people, groups,
//! files, phone numbers, push subscriptions and history pages. The
//! contract is `api/openapi.json`, served at `/openapi.json` and checked
//! against the server by the e2e tests and the REST fuzz run.
//!
//! - [`routes`]: every operation, on the [`Api`] state.
//! - [`state`]: the sub-states handlers ask for one by one (`FromRef`),
//!   and [`Inboxes`], what the API needs of the message path (the edge
//!   implements it).
//! - [`error`]: [`ApiError`], the one error shape, and its constructors;
//!   [`auth`]: the [`AuthUser`] extractor (401 before the handler runs).
//! - `accounts`: register, login, refresh, logout; `password`: argon2id on
//!   the blocking pool, a permit per core.
//! - `users`: profiles, search, contact matching; `phones`: verification
//!   by SMS code; `groups`: groups and channels, their changes through
//!   [`samvad_core::group_rules`]; `files`: files through signed URLs;
//!   `push`: Web Push subscriptions; `history`: conversation pages.
//!
//! Architecture invariant: the API never writes an inbox. Messages it
//! causes (group announcements, system messages) go through
//! [`Inboxes`], like a session's.

mod accounts;
mod auth;
mod error;
mod state;

mod files;
mod groups;
mod history;
mod password;
mod phones;
mod push;
mod users;

use axum::extract::DefaultBodyLimit;
use axum::http::header;
use axum::routing::{get, post};
use axum::Router;

pub use auth::{AuthUser, ClientIp};
pub use error::ApiError;
pub use groups::set_subscribed;
pub use state::{
    Api, AuthThrottles, FileLimits, Groups, HistoryRequest, InboxError, Inboxes, PushConfig, Sms,
};
pub use users::MAX_CONTACTS;

/// The REST API's description; `server/tests/e2e/openapi.rs` checks the
/// server against it.
pub const OPENAPI_JSON: &str = include_str!("../openapi.json");

/// JSON bodies larger than this are refused (413).
const JSON_BODY_LIMIT: usize = 64 * 1024;
/// A full contact match (1000 hashes) is larger than other JSON.
const CONTACTS_BODY_LIMIT: usize = 256 * 1024;

/// Every REST operation and `/openapi.json`, on `api`.
pub fn routes(api: Api) -> Router {
    let max_file = usize::try_from(api.file_limits.max_file).unwrap_or(usize::MAX);
    Router::new()
        .route(
            "/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON) }),
        )
        .route("/v1/register", post(accounts::register))
        .route("/v1/login", post(accounts::login))
        .route("/v1/refresh", post(accounts::refresh))
        .route("/v1/logout", post(accounts::logout))
        .route("/v1/users", get(users::search))
        .route("/v1/users/{user}", get(users::profile))
        .route("/v1/me", get(users::me).patch(users::update_me))
        .route("/v1/me/password", post(users::change_password))
        .route(
            "/v1/me/phone",
            post(phones::request_code).delete(phones::remove),
        )
        .route("/v1/me/phone/verify", post(phones::verify))
        .route("/v1/groups", post(groups::create).get(groups::list))
        .route(
            "/v1/groups/{id}",
            get(groups::get_one)
                .patch(groups::rename)
                .delete(groups::delete),
        )
        .route("/v1/channels", get(groups::channels))
        .route("/v1/groups/{id}/invites", post(groups::invite))
        .route("/v1/groups/{id}/subscribe", post(groups::subscribe))
        .route("/v1/groups/{id}/unsubscribe", post(groups::unsubscribe))
        .route("/v1/groups/{id}/invites/accept", post(groups::accept))
        .route("/v1/groups/{id}/invites/decline", post(groups::decline))
        .route(
            "/v1/groups/{id}/members/{user}",
            axum::routing::delete(groups::remove).put(groups::set_role),
        )
        .route("/v1/files", post(files::create))
        .route("/v1/files/{id}/download-url", post(files::download_url))
        .route("/v1/me/storage", get(files::storage))
        .route(
            "/v1/conversations/{chatid}/messages",
            get(history::messages),
        )
        .route("/v1/push/vapid-public-key", get(push::vapid_public_key))
        .route(
            "/v1/push/subscriptions",
            get(push::list)
                .post(push::subscribe)
                .delete(push::unsubscribe),
        )
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        .route(
            "/v1/contacts/match",
            post(users::match_contacts).layer(DefaultBodyLimit::max(CONTACTS_BODY_LIMIT)),
        )
        // File content has its own limit (the router's is for JSON).
        .route(
            "/v1/files/{id}/content",
            get(files::download)
                .put(files::upload)
                .layer(DefaultBodyLimit::max(max_file)),
        )
        .layer(axum::middleware::map_response(
            error::json_payload_too_large,
        ))
        .with_state(api)
}
