//! REST for files: upload and download through short-lived signed URLs.
//!
//! 1. `POST /v1/files {conversation, size, content_type}`: a member of the
//!    conversation asks to send a file. The edge checks the size limit and
//!    the quota, picks a random file id and answers with an upload URL
//!    signed for that id, user, conversation, size and type.
//! 2. `PUT` the bytes to that URL (no token needed: the URL is the leave).
//!    The edge checks the signature, the expiry, the exact size and type,
//!    stores the content under its SHA-256 and the record under the id.
//! 3. A message carries only the file id (see `api/openapi.json`).
//! 4. `POST /v1/files/{id}/download-url`: only members of the conversation
//!    the file was sent in get a signed download URL; anyone else gets the
//!    404 an unknown id gets, so ids cannot be probed.
//! 5. `GET` that URL: the bytes, served so that a browser never runs them.
//!
//! Avatars are files in the [`AVATARS`] conversation: any signed-in user
//! may read them.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use samvad_store::files::{FileRecord, Stored, AVATARS};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::auth::AuthUser;
use crate::error::{parse, ApiError};
use crate::state::FileLimits;
use crate::users::account_exists;
use samvad_core::session::{conversation, Conversation};
use samvad_core::signed_url::{DownloadGrant, UploadGrant, UrlError};
use samvad_core::token::TokenKeys;
use samvad_store::directory::Directory;
use samvad_store::files::FileStore;
use samvad_store::groups::GroupStore;

/// Lifetime of an upload URL.
pub const UPLOAD_URL_TTL_SECS: u64 = 15 * 60;
/// Lifetime of a download URL: long enough to fetch, short enough that a
/// leaked URL soon stops working.
pub const DOWNLOAD_URL_TTL_SECS: u64 = 5 * 60;

#[derive(Deserialize)]
struct NewFile {
    conversation: String,
    size: u64,
    content_type: String,
}

/// A file id as the edge makes them: 32 lowercase hex digits.
fn valid_file_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `type/subtype`, each an RFC 9110 token, at most 127 bytes, lowercase.
/// Parameters are not kept: a stored file has one plain media type.
fn valid_content_type(value: &str) -> bool {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$&^_.+-".contains(&b))
    };
    value.len() <= 127
        && value
            .split_once('/')
            .is_some_and(|(t, s)| token(t) && token(s))
}

fn no_such_file(id: &str) -> ApiError {
    ApiError::not_found(format!("no file {id:?} of yours"))
}

fn refused_url(e: UrlError) -> ApiError {
    let code = match e {
        UrlError::BadSignature => "bad_signature",
        UrlError::Expired => "url_expired",
    };
    ApiError::new(StatusCode::FORBIDDEN, code, e.to_string())
}

/// The record of file `id`, or the 404 of an unknown file.
async fn record_of(files: &dyn FileStore, id: &str) -> Result<FileRecord, ApiError> {
    files
        .record(id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| no_such_file(id))
}

/// Refuses unless `me` may send a file into `chat`: one of a chat's two
/// users (the other must exist), a group member who may post, or anyone
/// for avatars.
async fn check_may_post(directory: &Directory, me: &str, chat: &str) -> Result<(), ApiError> {
    if chat == AVATARS {
        return Ok(());
    }
    let kind =
        conversation(me, chat).map_err(|(_, why)| ApiError::invalid("bad_conversation", why))?;
    match kind {
        Conversation::Chat { other } => {
            if !account_exists(&*directory.accounts, other).await? {
                return Err(ApiError::invalid(
                    "unknown_user",
                    format!("no user {other:?}"),
                ));
            }
        }
        Conversation::Group => {
            let group = directory
                .groups
                .get(chat)
                .await
                .map_err(ApiError::internal)?;
            if !group.is_some_and(|g| g.may_post(me)) {
                return Err(ApiError::forbidden(
                    "not_member",
                    "you may not send files to this group",
                ));
            }
        }
    }
    Ok(())
}

/// Whether `me` may read files sent in `chat`: a chat's two users, the
/// group's current members, anyone for avatars.
async fn may_read(groups: &dyn GroupStore, me: &str, chat: &str) -> Result<bool, ApiError> {
    if chat == AVATARS {
        return Ok(true);
    }
    match conversation(me, chat) {
        Ok(Conversation::Chat { .. }) => Ok(true),
        Ok(Conversation::Group) => Ok(groups
            .get(chat)
            .await
            .map_err(ApiError::internal)?
            .is_some_and(|g| g.is_member(me))),
        Err(_) => Ok(false),
    }
}

async fn usage(files: &dyn FileStore, user: &str) -> Result<u64, ApiError> {
    files.usage(user).await.map_err(ApiError::internal)
}

fn over_quota(used: u64, size: u64, quota: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "quota_exceeded",
        format!("{used} of {quota} bytes used; {size} more do not fit"),
    )
}

/// `POST /v1/files`: an upload URL for one file.
pub async fn create(
    State(directory): State<Directory>,
    State(keys): State<Arc<TokenKeys>>,
    State(files): State<Arc<dyn FileStore>>,
    State(limits): State<FileLimits>,
    AuthUser(me): AuthUser,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: NewFile = parse(&body)?;
    if req.size == 0 || req.size > limits.max_file {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "file_too_large",
            format!("files are 1 to {} bytes", limits.max_file),
        ));
    }
    if !valid_content_type(&req.content_type) {
        return Err(ApiError::invalid(
            "bad_content_type",
            "content_type is a lowercase `type/subtype` without parameters",
        ));
    }
    check_may_post(&directory, &me, &req.conversation).await?;
    let used = usage(&*files, &me).await?;
    if used.saturating_add(req.size) > limits.quota {
        return Err(over_quota(used, req.size, limits.quota));
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    let query = keys.urls.upload_query(
        &id,
        UploadGrant {
            user: me,
            conversation: req.conversation,
            size: req.size,
            content_type: req.content_type.clone(),
            expires: samvad_core::clock::unix_secs() + UPLOAD_URL_TTL_SECS,
        },
    );
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "file_id": id,
            "upload_url": format!("/v1/files/{id}/content?{query}"),
            "method": "PUT",
            "content_type": req.content_type,
            "expires_in": UPLOAD_URL_TTL_SECS,
        })),
    )
        .into_response())
}

/// `PUT /v1/files/{id}/content?<signed upload grant>`: the file's bytes.
pub async fn upload(
    State(keys): State<Arc<TokenKeys>>,
    State(files): State<Arc<dyn FileStore>>,
    State(limits): State<FileLimits>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if !valid_file_id(&id) {
        return Err(refused_url(UrlError::BadSignature));
    }
    let grant = keys
        .urls
        .check_upload(
            &id,
            query.as_deref().unwrap_or(""),
            samvad_core::clock::unix_secs(),
        )
        .map_err(refused_url)?;
    if body.len() as u64 != grant.size {
        return Err(ApiError::invalid(
            "size_mismatch",
            format!("the URL is for {} bytes, not {}", grant.size, body.len()),
        ));
    }
    let sent_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if sent_type != grant.content_type {
        return Err(ApiError::invalid(
            "content_type_mismatch",
            format!("the URL is for Content-Type {:?}", grant.content_type),
        ));
    }
    let record = FileRecord {
        id: id.clone(),
        owner: grant.user,
        conversation: grant.conversation,
        sha256: hex::encode(Sha256::digest(&body)),
        size: grant.size,
        content_type: grant.content_type,
        created_ms: samvad_core::clock::unix_ms(),
    };
    match files
        .put(record.clone(), body, limits.quota)
        .await
        .map_err(ApiError::internal)?
    {
        Stored::Stored => Ok((
            StatusCode::CREATED,
            Json(json!({
                "file_id": record.id,
                "sha256": record.sha256,
                "size": record.size,
                "content_type": record.content_type,
                "conversation": record.conversation,
            })),
        )
            .into_response()),
        Stored::Exists => Err(ApiError::conflict(
            "already_uploaded",
            "this upload URL has been used",
        )),
        Stored::OverQuota { used } => Err(over_quota(used, record.size, limits.quota)),
    }
}

/// `POST /v1/files/{id}/download-url`: to members of the file's
/// conversation only.
pub async fn download_url(
    State(groups): State<Arc<dyn GroupStore>>,
    State(keys): State<Arc<TokenKeys>>,
    State(files): State<Arc<dyn FileStore>>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if !valid_file_id(&id) {
        return Err(no_such_file(&id));
    }
    let record = record_of(&*files, &id).await?;
    if !may_read(&*groups, &me, &record.conversation).await? {
        return Err(no_such_file(&id));
    }
    let query = keys.urls.download_query(
        &id,
        DownloadGrant {
            user: me,
            expires: samvad_core::clock::unix_secs() + DOWNLOAD_URL_TTL_SECS,
        },
    );
    Ok(Json(json!({
        "url": format!("/v1/files/{id}/content?{query}"),
        "size": record.size,
        "content_type": record.content_type,
        "sha256": record.sha256,
        "expires_in": DOWNLOAD_URL_TTL_SECS,
    })))
}

/// `GET /v1/files/{id}/content?<signed download grant>`: the bytes. The
/// headers keep a browser from sniffing or running them on our origin.
pub async fn download(
    State(keys): State<Arc<TokenKeys>>,
    State(files): State<Arc<dyn FileStore>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    if !valid_file_id(&id) {
        return Err(refused_url(UrlError::BadSignature));
    }
    keys.urls
        .check_download(
            &id,
            query.as_deref().unwrap_or(""),
            samvad_core::clock::unix_secs(),
        )
        .map_err(refused_url)?;
    let record = record_of(&*files, &id).await?;
    let content = files
        .content(&record.sha256)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::internal(format!("file {id}: content missing")))?;
    Ok((
        [
            (header::CONTENT_TYPE, record.content_type),
            (header::CONTENT_DISPOSITION, "attachment".into()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".into()),
            (header::CONTENT_SECURITY_POLICY, "sandbox".into()),
            (header::CACHE_CONTROL, "private, max-age=300".into()),
            (header::ETAG, format!("\"{}\"", record.sha256)),
        ],
        content,
    )
        .into_response())
}

/// `GET /v1/me/storage`: bytes used and the quota.
pub async fn storage(
    State(files): State<Arc<dyn FileStore>>,
    State(limits): State<FileLimits>,
    AuthUser(me): AuthUser,
) -> Result<Json<serde_json::Value>, ApiError> {
    let used = usage(&*files, &me).await?;
    Ok(Json(json!({
        "used": used,
        "quota": limits.quota,
        "max_file": limits.max_file,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_are_plain_media_types() {
        for ok in [
            "image/png",
            "text/plain",
            "application/vnd.samvad+json",
            "video/mp4",
        ] {
            assert!(valid_content_type(ok), "{ok}");
        }
        for bad in [
            "",
            "image",
            "image/",
            "/png",
            "Image/PNG",
            "text/html; charset=utf-8",
            "text/plain\r\nx-evil: 1",
            "a/b/c",
        ] {
            assert!(!valid_content_type(bad), "{bad:?}");
        }
    }

    #[test]
    fn file_ids_are_what_the_edge_makes() {
        assert!(valid_file_id(&uuid::Uuid::new_v4().simple().to_string()));
        for bad in [
            "",
            "../../etc/passwd",
            "ABCDEF0123456789abcdef0123456789",
            "a",
        ] {
            assert!(!valid_file_id(bad), "{bad}");
        }
    }
}
