//! Where an edge hands what a session sends: the bus (the cluster), or the
//! inbox writers of this process (`samvad serve`).
//!
//! In the cluster an accepted chat message goes straight to the `deliver`
//! partition of its recipient's inbox (the store that applies it forwards
//! it to the history), and a group message to `inbound`, where a router
//! routes it to the members. In `samvad serve` there is no bus
//! between the roles: the edge routes the envelope itself (the same pure
//! [`samvad_router::owners`]) and hands it, encoded once, to the writer of
//! the shard that orders it (the recipient's inbox for a 1:1 chat, the
//! group's history for a group), which acknowledges once it is durable.

use std::sync::Arc;

use bytes::Bytes;
use prost::Message as _;
use samvad_bus::{BoxFuture, Bus, Outgoing, Topics};
use samvad_core::admission::Refusal;
use samvad_core::group::Group;
use samvad_core::names::history_owner;
use samvad_proto::bus::{DeliverRecord, PushRecord};
use samvad_proto::v1::{Envelope, HeadType};
use samvad_store::engine::{Input, Message, Outlet, Shards};
use samvad_store::presence::SessionRoute;

use crate::hub::Hub;

/// The way into the inboxes.
#[derive(Clone)]
pub enum Delivery {
    /// Through the bus: `deliver` (chats) or `inbound` (groups).
    Bus,
    /// Straight to this process's inbox writers.
    Shards(Shards),
}

/// Why an envelope or a record was not taken.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// Routing refused it (checked again where it is applied).
    #[error("{0}")]
    Refused(#[from] Refusal),
    /// The bus or an inbox writer failed: retry with the same id.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

type Durable = BoxFuture<'static, Result<(), DeliveryError>>;

impl Delivery {
    /// Makes `env` durable in its conversation. `group` is the group a
    /// group message is addressed to (as the edge checked it). Order is
    /// fixed when this is called; the future resolves once durable.
    pub fn accept(
        &self,
        bus: &Arc<dyn Bus>,
        topics: &Topics,
        env: Envelope,
        group: Option<&Group>,
    ) -> Durable {
        match self {
            Delivery::Bus => {
                let record = match to_bus(topics, env) {
                    Ok(record) => record,
                    Err(e) => return Box::pin(async move { Err(DeliveryError::Refused(e)) }),
                };
                let produced = bus.produce(vec![record]);
                Box::pin(async move {
                    produced
                        .await
                        .map_err(|e| DeliveryError::Unavailable(e.to_string()))
                })
            }
            Delivery::Shards(shards) => {
                let owners = match samvad_router::owners(&env, group) {
                    Ok(owners) => owners,
                    Err(e) => return Box::pin(async move { Err(DeliveryError::Refused(e)) }),
                };
                let head = env.head.as_ref();
                let grouped =
                    head.is_some_and(|h| matches!(h.r#type(), HeadType::Group | HeadType::Channel));
                // A group's order is its history's; a chat's, the
                // recipient's. That inbox decides whether the message is
                // new; the others follow only if it was.
                let order = match (grouped, head) {
                    (true, Some(h)) => history_owner(&h.chatid),
                    _ => owners.first().cloned().unwrap_or_default(),
                };
                let then = owners.into_iter().filter(|o| *o != order).collect();
                let inputs = vec![Input::Message {
                    owner: order.clone(),
                    message: Message::new(env),
                    then,
                    fresh: false,
                }];
                let durable = shards.submit(&order, inputs);
                Box::pin(async move {
                    durable
                        .await
                        .map_err(|e| DeliveryError::Unavailable(e.to_string()))
                })
            }
        }
    }

    /// Hands records to their inboxes (acks, syncs, receipts, hides,
    /// history requests, system messages for one user), in order with
    /// everything the session sent before. The future resolves once they
    /// are taken: on the bus, or queued to their writers.
    pub fn deliver(
        &self,
        bus: &Arc<dyn Bus>,
        topics: &Topics,
        records: Vec<DeliverRecord>,
    ) -> Durable {
        match self {
            Delivery::Bus => {
                let produced = bus.produce(to_deliver(topics.deliver().into(), records));
                Box::pin(async move {
                    produced
                        .await
                        .map_err(|e| DeliveryError::Unavailable(e.to_string()))
                })
            }
            Delivery::Shards(shards) => {
                // Queued to their writers in order, answered by nobody: no
                // session task wakes up per ack. A writer far behind
                // refuses them (bounded), and the session is told.
                let mut result = Ok(());
                for record in records {
                    let owner = record.user.clone();
                    let Some(input) = Input::from_record(record) else {
                        continue;
                    };
                    if let Err(e) = shards.send(&owner, vec![input]) {
                        result = Err(DeliveryError::Unavailable(e.to_string()));
                    }
                }
                Box::pin(async move { result })
            }
        }
    }
}

/// Where the inbox writers of `samvad serve` put their effects: frames
/// into this edge's session queues, notifications onto `push`.
pub struct LocalOutlet {
    pub hub: Arc<Hub>,
    pub bus: Arc<dyn Bus>,
    pub push_topic: Arc<str>,
    /// The runtime the notifications' produce runs on (writers are threads).
    pub runtime: tokio::runtime::Handle,
}

impl Outlet for LocalOutlet {
    fn push(&self, route: &SessionRoute, frame: Bytes) {
        self.hub.push(&route.session, frame, false);
    }

    fn offline(&self, notifications: Vec<PushRecord>) {
        let records: Vec<Outgoing> = notifications
            .into_iter()
            .map(|n| {
                let key = n.user.clone();
                Outgoing::new(self.push_topic.clone(), key, Bytes::from(n.encode_to_vec()))
            })
            .collect();
        let produced = self.bus.produce(records);
        self.runtime.spawn(async move {
            // A push notification is a hint: its entry is in the inbox.
            if let Err(e) = produced.await {
                tracing::warn!(error = %e, "push notifications not queued");
            }
        });
    }
}

/// The record an accepted envelope travels the bus as. A chat goes
/// straight to the recipient's `deliver` partition, its history to follow
/// from there (`then`), as in `samvad serve`: its route is a pure function
/// of the envelope, and a router's transaction on its path would only add
/// its commit to every message's latency. A group or channel message goes
/// to `inbound` (key = the chat), where a router routes it to the members
/// the directory has when it is read.
fn to_bus(topics: &Topics, env: Envelope) -> Result<Outgoing, Refusal> {
    let head = env.head.as_ref();
    let grouped = head.is_some_and(|h| matches!(h.r#type(), HeadType::Group | HeadType::Channel));
    if grouped {
        let key = head.map(|h| h.chatid.clone()).unwrap_or_default();
        return Ok(Outgoing::new(
            topics.inbound(),
            key,
            Bytes::from(env.encode_to_vec()),
        ));
    }
    let mut owners = samvad_router::owners(&env, None)?.into_iter();
    let recipient = owners.next().ok_or(Refusal::NoRecipient)?;
    let record = DeliverRecord {
        user: recipient.clone(),
        kind: Some(samvad_proto::bus::deliver_record::Kind::Message(env)),
        then: owners.collect(),
    };
    Ok(Outgoing::new(
        topics.deliver(),
        recipient,
        Bytes::from(record.encode_to_vec()),
    ))
}

/// `deliver` records as the bus takes them: keyed by their inbox's owner,
/// so that each inbox is one partition's, in order.
pub fn to_deliver(topic: Arc<str>, records: Vec<DeliverRecord>) -> Vec<Outgoing> {
    records
        .into_iter()
        .map(|record| {
            let key = record.user.clone();
            Outgoing::new(topic.clone(), key, Bytes::from(record.encode_to_vec()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use samvad_core::names::chat_id;
    use samvad_proto::bus::deliver_record;
    use samvad_proto::v1::Head;

    fn envelope(kind: HeadType, to: &str, chatid: &str) -> Envelope {
        Envelope {
            id: "m1".into(),
            head: Some(Head {
                r#type: kind as i32,
                from: "alice".into(),
                to: to.into(),
                chatid: chatid.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_chat_goes_to_its_recipients_deliver_partition_with_its_history_next() {
        let topics = Topics::new("t.");
        let env = envelope(HeadType::Chat, "bob", &chat_id("alice", "bob"));
        let out = to_bus(&topics, env.clone()).unwrap();
        assert_eq!(&*out.topic, "t.deliver");
        assert_eq!(out.key.as_ref(), b"bob", "the recipient's partition");
        let record = DeliverRecord::decode(out.payload).unwrap();
        assert_eq!(record.user, "bob");
        assert_eq!(record.then, [history_owner("alice:bob")]);
        assert_eq!(record.kind, Some(deliver_record::Kind::Message(env)));
    }

    #[test]
    fn a_group_message_goes_to_the_router() {
        let topics = Topics::new("t.");
        let env = envelope(HeadType::Group, "g1", "g1");
        let out = to_bus(&topics, env.clone()).unwrap();
        assert_eq!(&*out.topic, "t.inbound");
        assert_eq!(out.key.as_ref(), b"g1", "keyed by the conversation");
        assert_eq!(Envelope::decode(out.payload).unwrap(), env);
    }

    #[test]
    fn an_unroutable_chat_is_refused_at_the_edge() {
        let topics = Topics::new("t.");
        assert_eq!(
            to_bus(&topics, envelope(HeadType::Chat, "", "x")).err(),
            Some(Refusal::NoRecipient)
        );
        assert_eq!(
            to_bus(&topics, Envelope::default()).err(),
            Some(Refusal::NoHead)
        );
    }
}
