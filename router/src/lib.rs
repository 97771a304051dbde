//! Routing: which inboxes an accepted envelope goes to.
//!
//! [`route`] is a pure function from an envelope to `deliver` records; the
//! [`RouterRole`] loop feeds it from `inbound` and produces its output,
//! committing `inbound` only once the output is durable on the bus.

use std::sync::Arc;

use bytes::Bytes;
use prost::Message;
use samvad_bus::ownership::{LeaseError, Leases, Owned, OwnedReader};
use samvad_bus::{Bus, BusError, Outgoing, Record, Topics};
use samvad_proto::bus::{deliver_record, DeliverRecord};
use samvad_proto::v1::{Envelope, HeadType};

/// Why an envelope cannot be routed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RouteError {
    #[error("envelope has no head")]
    NoHead,
    #[error("conversation type {0:?} is not routable")]
    Unsupported(HeadType),
    #[error("envelope has no recipient")]
    NoRecipient,
}

/// The conversation id of a 1:1 chat: both user names, sorted, so that both
/// directions share one `inbound` partition and keep their order.
pub fn chat_id(a: &str, b: &str) -> String {
    if a <= b {
        format!("{a}:{b}")
    } else {
        format!("{b}:{a}")
    }
}

/// The `deliver` records an accepted envelope turns into.
pub fn route(env: &Envelope) -> Result<Vec<DeliverRecord>, RouteError> {
    let head = env.head.as_ref().ok_or(RouteError::NoHead)?;
    match head.r#type() {
        HeadType::Chat | HeadType::Unspecified => {
            if head.to.is_empty() {
                return Err(RouteError::NoRecipient);
            }
            Ok(vec![DeliverRecord {
                user: head.to.clone(),
                kind: Some(deliver_record::Kind::Message(env.clone())),
            }])
        }
        other => Err(RouteError::Unsupported(other)),
    }
}

/// Records one batch takes from the bus.
const BATCH: usize = 512;

pub struct RouterRole {
    pub bus: Arc<dyn Bus>,
    pub topics: Topics,
}

#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("bus: {0}")]
    Bus(#[from] BusError),
    #[error("{0}")]
    Lease(#[from] LeaseError),
}

impl RouterRole {
    /// Runs in `inbound`'s consumer group "router" until the bus closes
    /// (`samvad serve`: one router).
    pub async fn run(self) -> Result<(), BusError> {
        let mut consumer = self.bus.subscribe(&self.topics.inbound(), "router").await?;
        loop {
            let records = consumer.poll(BATCH).await?;
            self.route_batch(&records).await?;
            consumer.commit(&records)?;
        }
    }

    /// Runs as the owner of the `inbound` partitions it holds leases on
    /// (the cluster). A router keeps no state but its position: the last
    /// offset routed per partition lives with the lease (the `handled`
    /// mark), written after the deliveries are on the bus, so a new owner
    /// resumes there (at least once; the store drops duplicates).
    pub async fn run_owned(self, leases: Leases) -> Result<(), RouterError> {
        let inbound = self.topics.inbound();
        let mut owned = OwnedReader::new(leases);
        loop {
            match owned.next(BATCH).await? {
                Owned::Changed(partitions) => {
                    tracing::info!(?partitions, "router ownership changed");
                    let mut from = Vec::with_capacity(partitions.len());
                    for p in partitions {
                        from.push((p, owned.leases().handled(p).await?.map_or(0, |o| o + 1)));
                    }
                    owned.read_from(&*self.bus, &inbound, &from).await?;
                }
                Owned::Records(records) => {
                    self.route_batch(&records).await?;
                    owned.mark_handled(&records).await?;
                }
            }
        }
    }

    /// Routes one batch and produces its deliveries (and dead letters).
    async fn route_batch(&self, records: &[Record]) -> Result<(), BusError> {
        let deliver: Arc<str> = self.topics.deliver().into();
        let mut out = Vec::with_capacity(records.len());
        for r in records {
            let env = match Envelope::decode(r.payload.clone()) {
                Ok(env) => env,
                Err(e) => {
                    out.push(r.dead_letter(&self.topics, &e));
                    continue;
                }
            };
            match route(&env) {
                Ok(deliveries) => out.extend(deliveries.into_iter().map(|d| {
                    let key = d.user.clone();
                    Outgoing::new(deliver.clone(), key, Bytes::from(d.encode_to_vec()))
                })),
                Err(e) => {
                    tracing::error!(id = %env.id, error = %e, "unroutable envelope; skipped")
                }
            }
        }
        if !out.is_empty() {
            self.bus.produce(out).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use samvad_proto::v1::Head;

    fn env(kind: HeadType, to: &str) -> Envelope {
        Envelope {
            id: "m1".into(),
            head: Some(Head {
                r#type: kind as i32,
                to: to.into(),
                from: "alice".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn chat_goes_to_its_recipient() {
        let out = route(&env(HeadType::Chat, "bob")).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].user, "bob");
    }

    #[test]
    fn unroutable_envelopes_are_errors() {
        assert_eq!(
            route(&env(HeadType::Chat, "")),
            Err(RouteError::NoRecipient)
        );
        assert_eq!(route(&Envelope::default()), Err(RouteError::NoHead));
        assert_eq!(
            route(&env(HeadType::Group, "g")),
            Err(RouteError::Unsupported(HeadType::Group))
        );
    }

    #[test]
    fn chat_id_is_symmetric() {
        assert_eq!(chat_id("bob", "alice"), chat_id("alice", "bob"));
    }
}
