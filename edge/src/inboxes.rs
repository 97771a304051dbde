//! The message path as the REST API sees it ([`samvad_api::Inboxes`]):
//! system messages and group announcements go in through this edge's
//! [`crate::delivery`], and a history page is asked for the way a session
//! asks, with a one-off entry in the hub as the reply address.
//!
//! That entry lets the store answer a REST request exactly as it answers a
//! session's `History` frame, through `edge.<node>`: no second path into
//! the store, the same in one process and in a cluster.

use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use samvad_api::{HistoryRequest, InboxError, Inboxes};
use samvad_bus::BoxFuture;
use samvad_core::names::history_owner;
use samvad_proto::bus::{deliver_record, DeliverRecord, HistoryRecord};
use samvad_proto::v1::{server_frame, Envelope, HistoryPage, ServerFrame};

use crate::delivery::{Delivery, DeliveryError};
use crate::hub::SessionHandle;
use crate::outbox::{Outbox, Taken};
use crate::state::Edge;

/// How long a history page may take before the request gives up.
const PAGE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct EdgeInboxes {
    edge: Arc<Edge>,
}

impl EdgeInboxes {
    pub fn new(edge: Arc<Edge>) -> Self {
        EdgeInboxes { edge }
    }
}

fn unavailable(e: DeliveryError) -> InboxError {
    InboxError::Unavailable(e.to_string())
}

/// Removes a request's hub entry however the request ends.
struct HubEntry<'a> {
    edge: &'a Edge,
    id: Arc<str>,
}

impl Drop for HubEntry<'_> {
    fn drop(&mut self) {
        self.edge.hub.remove(&self.id);
    }
}

impl Inboxes for EdgeInboxes {
    fn deliver(&self, records: Vec<DeliverRecord>) -> BoxFuture<'_, Result<(), InboxError>> {
        let edge = &self.edge;
        let taken = edge.delivery.deliver(&edge.bus, &edge.topics, records);
        Box::pin(async move { taken.await.map_err(unavailable) })
    }

    fn post_to_group(&self, envelope: Envelope) -> BoxFuture<'_, Result<(), InboxError>> {
        Box::pin(async move {
            let edge = &self.edge;
            // Routed to the members as the group is now (the router of a
            // cluster looks it up itself).
            let group = match &edge.delivery {
                Delivery::Bus => None,
                Delivery::Shards(_) => {
                    let id = envelope.head.as_ref().map_or("", |h| h.chatid.as_str());
                    edge.directory
                        .groups
                        .get(id)
                        .await
                        .map_err(|e| InboxError::Unavailable(e.to_string()))?
                }
            };
            edge.delivery
                .accept(&edge.bus, &edge.topics, envelope, group.as_ref())
                .await
                .map_err(unavailable)
        })
    }

    fn history_page(
        &self,
        request: HistoryRequest,
    ) -> BoxFuture<'_, Result<HistoryPage, InboxError>> {
        Box::pin(async move {
            let edge = &*self.edge;
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
                edge,
                id: id.clone(),
            };
            let record = DeliverRecord {
                user: history_owner(&request.chatid),
                then: Vec::new(),
                kind: Some(deliver_record::Kind::History(HistoryRecord {
                    session: id.to_string(),
                    edge: edge.session_config.node.to_string(),
                    chatid: request.chatid,
                    before_seq: request.before_seq,
                    limit: request.limit,
                    user: request.user,
                })),
            };
            edge.delivery
                .deliver(&edge.bus, &edge.topics, vec![record])
                .await
                .map_err(unavailable)?;
            let frame = match tokio::time::timeout(PAGE_TIMEOUT, replies.take())
                .await
                .map_err(|_| InboxError::Unavailable("no page in time".into()))?
            {
                Taken::Frames(mut frames) => {
                    frames.pop_front().expect("taken frames are never empty")
                }
                Taken::CutOff => {
                    return Err(InboxError::Unexpected(
                        "more than one reply to a history request".into(),
                    ))
                }
            };
            match ServerFrame::decode(frame).map(|f| f.kind) {
                Ok(Some(server_frame::Kind::History(page))) => Ok(page),
                _ => Err(InboxError::Unexpected(
                    "the store answered a history request with another frame".into(),
                )),
            }
        })
    }
}
