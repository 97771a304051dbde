//! REST for history: `GET /v1/conversations/{chatid}/messages`, the same
//! pages a session gets with a `History` frame.
//!
//! History lives in the store that owns the conversation's `#chatid`
//! inbox; the page comes through [`Inboxes::history_page`], the path every
//! inbox request takes (the edge answers it as it answers a session's
//! `History` frame), so it works the same in one process and in a
//! cluster.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::Json;
use samvad_store::inbox::HISTORY_PAGE_MAX;
use serde::Deserialize;

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::state::{HistoryRequest, InboxError, Inboxes};
use crate::users::account_exists;
use samvad_core::session::{conversation, Conversation};
use samvad_store::directory::Directory;

#[derive(Deserialize)]
pub struct PageQuery {
    /// Messages below this sequence number (0 or absent: the newest).
    #[serde(default)]
    before_seq: u64,
    #[serde(default)]
    limit: Option<u32>,
}

fn not_found(chatid: &str) -> ApiError {
    ApiError::not_found(format!("no conversation {chatid:?} of yours"))
}

/// `GET /v1/conversations/{chatid}/messages?before_seq=&limit=`: newest
/// first, for the chat's two users or the group's members; anyone else
/// gets the 404 of a conversation that does not exist.
pub async fn messages(
    State(directory): State<Directory>,
    State(inboxes): State<Arc<dyn Inboxes>>,
    AuthUser(me): AuthUser,
    Path(chatid): Path<String>,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = query.limit.unwrap_or(50);
    if limit == 0 || limit as usize > HISTORY_PAGE_MAX {
        return Err(ApiError::bad_request(format!(
            "limit is 1 to {HISTORY_PAGE_MAX}"
        )));
    }
    match conversation(&me, &chatid).map_err(|_| not_found(&chatid))? {
        // A chat with someone who does not exist is no conversation.
        Conversation::Chat { other } => {
            if !account_exists(&*directory.accounts, other).await? {
                return Err(not_found(&chatid));
            }
        }
        Conversation::Group => {
            let group = directory
                .groups
                .get(&chatid)
                .await
                .map_err(ApiError::internal)?;
            if !group.is_some_and(|g| g.is_member(&me)) {
                return Err(not_found(&chatid));
            }
        }
    }

    let page = inboxes
        .history_page(HistoryRequest {
            chatid,
            user: me,
            before_seq: query.before_seq,
            limit,
        })
        .await
        .map_err(|e| match e {
            InboxError::Unavailable(why) => unavailable(&why),
            InboxError::Unexpected(what) => ApiError::internal(what),
        })?;
    Ok(Json(samvad_proto::json_v2::history_json(&page)))
}

fn unavailable(why: &dyn std::fmt::Display) -> ApiError {
    tracing::warn!(%why, "history request failed");
    ApiError::unavailable("history is unavailable; retry")
}
