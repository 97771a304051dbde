//! REST for history: `GET /v1/conversations/{chatid}/messages`, the same
//! pages a session gets with a `History` frame.
//!
//! History lives in the store that owns the conversation's `#chatid`
//! inbox, reached over the bus like every inbox request. The request
//! borrows the session machinery: it registers a one-off entry in this
//! edge's hub, sends the `HistoryRecord` with that entry as its reply
//! address, and waits for the page the store pushes back through
//! `edge.<node>`. No second path into the store, and it works the same in
//! one process and in a cluster.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use prost::Message;
use samvad_core::names::history_owner;
use samvad_proto::bus::{deliver_record, DeliverRecord, HistoryRecord};
use samvad_proto::v1::{server_frame, ServerFrame};
use samvad_store::inbox::HISTORY_PAGE_MAX;
use serde::Deserialize;

use crate::http::{account_exists, ApiError, AuthUser};
use crate::hub::SessionHandle;
use crate::outbox::{Outbox, Taken};
use crate::state::Edge;
use samvad_core::session::{conversation, Conversation};

/// How long a page may take before the request gives up.
const PAGE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Deserialize)]
pub struct PageQuery {
    /// Messages below this sequence number (0 or absent: the newest).
    #[serde(default)]
    before_seq: u64,
    #[serde(default)]
    limit: Option<u32>,
}

fn not_found(chatid: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no conversation {chatid:?} of yours"),
    )
}

/// Removes the request's hub entry however the request ends.
struct HubEntry<'a> {
    edge: &'a Edge,
    id: Arc<str>,
}

impl Drop for HubEntry<'_> {
    fn drop(&mut self) {
        self.edge.hub.remove(&self.id);
    }
}

/// `GET /v1/conversations/{chatid}/messages?before_seq=&limit=`: newest
/// first, for the chat's two users or the group's members; anyone else
/// gets the 404 of a conversation that does not exist.
pub async fn messages(
    State(edge): State<Arc<Edge>>,
    AuthUser(me): AuthUser,
    Path(chatid): Path<String>,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(query) =
        query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.body_text()))?;
    let limit = query.limit.unwrap_or(50);
    if limit == 0 || limit as usize > HISTORY_PAGE_MAX {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("limit is 1 to {HISTORY_PAGE_MAX}"),
        ));
    }
    match conversation(&me, &chatid).map_err(|_| not_found(&chatid))? {
        // A chat with someone who does not exist is no conversation.
        Conversation::Chat { other } => {
            if !account_exists(&edge, other).await? {
                return Err(not_found(&chatid));
            }
        }
        Conversation::Group => {
            let group = edge
                .directory
                .group(&chatid)
                .await
                .map_err(ApiError::internal)?;
            if !group.is_some_and(|g| g.is_member(&me)) {
                return Err(not_found(&chatid));
            }
        }
    }

    let id: Arc<str> = format!("rest-{}", uuid::Uuid::new_v4().simple()).into();
    let replies = Outbox::new(1);
    edge.hub.insert(
        id.clone(),
        SessionHandle {
            outbox: replies.clone(),
            datagrams: None,
        },
    );
    let _entry = HubEntry {
        edge: &edge,
        id: id.clone(),
    };
    let record = DeliverRecord {
        user: history_owner(&chatid),
        kind: Some(deliver_record::Kind::History(HistoryRecord {
            session: id.to_string(),
            edge: edge.session_config.node.to_string(),
            chatid: chatid.clone(),
            before_seq: query.before_seq,
            limit,
            user: me,
        })),
    };
    edge.delivery
        .deliver(&edge.bus, &edge.topics, vec![record])
        .await
        .map_err(|e| unavailable(&e))?;
    let frame = match tokio::time::timeout(PAGE_TIMEOUT, replies.take())
        .await
        .map_err(|_| unavailable(&"no page in time"))?
    {
        Taken::Frames(mut frames) => frames.pop_front().expect("taken frames are never empty"),
        Taken::CutOff => return Err(unavailable(&"more than one reply to a history request")),
    };
    match ServerFrame::decode(frame).map(|f| f.kind) {
        Ok(Some(server_frame::Kind::History(page))) => {
            Ok(Json(samvad_proto::json_v2::history_json(&page)))
        }
        _ => Err(ApiError::internal(
            "the store answered a history request with another frame",
        )),
    }
}

fn unavailable(why: &dyn std::fmt::Display) -> ApiError {
    tracing::warn!(%why, "history request failed");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "history is unavailable; retry",
    )
}
