//! REST for people: my profile and password, other users' profiles, user
//! search by name (typo tolerant, ranked) and contact matching (which of
//! these names are users). All need a logged-in caller, so the directory
//! cannot be enumerated anonymously.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::Json;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use samvad_store::accounts::{Account, AccountStore};

use crate::auth::AuthUser;
use crate::error::{parse, ApiError};
use samvad_core::names::valid_username;
use samvad_core::token::TokenKeys;
use samvad_store::files::FileStore;
use samvad_store::phones::PhoneStore;
use samvad_store::tokens::RefreshTokenStore;

/// Most names one contact match may ask about.
pub const MAX_CONTACTS: usize = 1000;

#[derive(Deserialize)]
pub struct SearchQuery {
    q: String,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    20
}

#[derive(Serialize)]
struct Found {
    user: String,
    score: f64,
}

/// `GET /v1/users?q=…&limit=…`: user names ranked by 3-gram similarity.
pub async fn search(
    State(accounts): State<Arc<dyn AccountStore>>,
    _: AuthUser,
    query: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let q = query.q.trim();
    if q.is_empty() || q.chars().count() > 64 {
        return Err(ApiError::bad_request("q has 1 to 64 characters"));
    }
    let found = accounts
        .search(
            q,
            query
                .limit
                .clamp(1, samvad_store::accounts::MAX_SEARCH_RESULTS),
        )
        .await
        .map_err(ApiError::internal)?;
    let users: Vec<Found> = found
        .into_iter()
        .map(|(user, score)| Found {
            user,
            score: (score * 1000.0).round() / 1000.0,
        })
        .collect();
    Ok(Json(serde_json::json!({ "users": users })))
}

#[derive(Deserialize)]
struct ContactMatch {
    #[serde(default)]
    usernames: Vec<String>,
    /// Hex SHA-256 of E.164 numbers (see `phone_api`).
    #[serde(default)]
    phone_sha256s: Vec<String>,
}

/// `POST /v1/contacts/match {usernames, phone_sha256s}`: which of these
/// names are users, and which of these numbers users verified.
pub async fn match_contacts(
    State(accounts): State<Arc<dyn AccountStore>>,
    State(phones): State<Arc<dyn PhoneStore>>,
    _: AuthUser,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let req: ContactMatch = parse(&body)?;
    if req.usernames.len() + req.phone_sha256s.len() > MAX_CONTACTS {
        return Err(ApiError::invalid(
            "too_many_contacts",
            format!("at most {MAX_CONTACTS} names and numbers per call"),
        ));
    }
    let mut hashes: Vec<String> = req
        .phone_sha256s
        .into_iter()
        .filter(|h| crate::phones::valid_phone_hash(h))
        .collect();
    hashes.sort();
    hashes.dedup();
    let matched: Vec<serde_json::Value> = phones
        .users(&hashes)
        .await
        .map_err(ApiError::internal)?
        .into_iter()
        .map(|(hash, user)| serde_json::json!({"phone_sha256": hash, "user": user}))
        .collect();
    let mut users = Vec::new();
    for name in &req.usernames {
        if valid_username(name)
            && !users.contains(name)
            && accounts.exists(name).await.map_err(ApiError::internal)?
        {
            users.push(name.clone());
        }
    }
    Ok(Json(
        serde_json::json!({ "users": users, "phones": matched }),
    ))
}

/// Longest display name, in characters.
pub const MAX_DISPLAY_NAME: usize = 64;

#[derive(Serialize)]
struct Profile {
    user: String,
    display_name: String,
    /// File id of the profile picture, or empty: fetch it with
    /// `POST /v1/files/{id}/download-url` (open to every user).
    avatar: String,
}

/// Whether `user` has an account (500 when the directory cannot tell).
pub(crate) async fn account_exists(
    accounts: &dyn AccountStore,
    user: &str,
) -> Result<bool, ApiError> {
    accounts.exists(user).await.map_err(ApiError::internal)
}

pub(crate) async fn account_of(
    accounts: &dyn AccountStore,
    user: &str,
) -> Result<Account, ApiError> {
    accounts
        .get(user)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(format!("no user {user:?}")))
}

/// `GET /v1/me`: my profile.
pub async fn me(
    State(accounts): State<Arc<dyn AccountStore>>,
    AuthUser(me): AuthUser,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(me_json(&account_of(&*accounts, &me).await?))
}

/// Fields left out are left as they are.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileUpdate {
    display_name: Option<String>,
    /// A file id, or empty to remove the picture.
    avatar: Option<String>,
}

/// Checks that `id` names an image I uploaded as an avatar (into
/// `files::AVATARS`): nobody can show another user's file as theirs, or a
/// conversation's file to everyone.
async fn check_avatar(files: &dyn FileStore, me: &str, id: &str) -> Result<(), ApiError> {
    let record = files.record(id).await.map_err(ApiError::internal)?;
    match record {
        Some(r)
            if r.owner == me
                && r.conversation == samvad_store::files::AVATARS
                && r.content_type.starts_with("image/") =>
        {
            Ok(())
        }
        _ => Err(ApiError::invalid(
            "bad_avatar",
            "an avatar is an image file you uploaded with conversation `@avatars`",
        )),
    }
}

/// `PATCH /v1/me {display_name?, avatar?}`.
pub async fn update_me(
    State(accounts): State<Arc<dyn AccountStore>>,
    State(files): State<Arc<dyn FileStore>>,
    AuthUser(me): AuthUser,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let req: ProfileUpdate = parse(&body)?;
    let mut account = account_of(&*accounts, &me).await?;
    if let Some(name) = &req.display_name {
        let name = name.trim();
        if name.chars().count() > MAX_DISPLAY_NAME || name.chars().any(char::is_control) {
            return Err(ApiError::bad_request(format!(
                "a display name has at most {MAX_DISPLAY_NAME} printable characters"
            )));
        }
        account.display_name = name.to_string();
    }
    if let Some(avatar) = req.avatar {
        if !avatar.is_empty() {
            check_avatar(&*files, &me, &avatar).await?;
        }
        account.avatar = avatar;
    }
    let json = me_json(&account);
    save_account(&*accounts, account).await?;
    Ok(json)
}

/// My profile as `GET /v1/me` shows it.
pub(crate) fn me_json(account: &Account) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "user": account.username,
        "display_name": account.display_name,
        "avatar": account.avatar,
        "phone_verified": !account.phone_sha256.is_empty(),
        "created_ms": account.created_ms,
    }))
}

/// Writes back an account read with [`account_of`] and changed.
pub(crate) async fn save_account(
    accounts: &dyn AccountStore,
    account: Account,
) -> Result<(), ApiError> {
    accounts.update(account).await.map_err(ApiError::internal)
}

/// `GET /v1/users/{user}`: someone's public profile.
pub async fn profile(
    State(accounts): State<Arc<dyn AccountStore>>,
    _: AuthUser,
    Path(user): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let account = account_of(&*accounts, &user).await?;
    Ok(Json(serde_json::json!(Profile {
        user: account.username,
        display_name: account.display_name,
        avatar: account.avatar,
    })))
}

#[derive(Deserialize)]
struct PasswordChange {
    password: String,
    new_password: String,
}

/// `POST /v1/me/password {password, new_password}`: needs the current
/// password; ends every login made before (their refresh tokens are
/// refused) and returns a fresh one for this device.
pub async fn change_password(
    State(accounts): State<Arc<dyn AccountStore>>,
    State(refresh_tokens): State<Arc<dyn RefreshTokenStore>>,
    State(keys): State<Arc<TokenKeys>>,
    AuthUser(me): AuthUser,
    body: Bytes,
) -> Result<Json<crate::accounts::TokenPair>, ApiError> {
    let req: PasswordChange = parse(&body)?;
    if !(8..=256).contains(&req.new_password.len()) {
        return Err(ApiError::invalid(
            "weak_password",
            "passwords are 8 to 256 bytes",
        ));
    }
    let mut account = account_of(&*accounts, &me).await?;
    let ok = crate::password::verify_password_gated(req.password, account.password_hash.clone())
        .await
        .map_err(ApiError::internal)?;
    if !ok {
        return Err(ApiError::unauthorized(
            "bad_credentials",
            "the current password is wrong",
        ));
    }
    account.password_hash = crate::password::hash_password_gated(req.new_password)
        .await
        .map_err(ApiError::internal)?;
    let now = samvad_core::clock::unix_secs();
    // Logins from this second on stay valid: the one issued below included.
    account.logins_valid_from = now;
    save_account(&*accounts, account).await?;
    Ok(Json(
        crate::accounts::issue(&*refresh_tokens, &keys, &me, &crate::accounts::new_family())
            .await?,
    ))
}
