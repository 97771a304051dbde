//! The store role: consume `deliver`, apply to the inboxes, carry out the
//! effects, commit.
//!
//! Order of a batch: apply (durable in fjall) → produce receipts to
//! `deliver` (durable on the bus) → push frames to edges (best effort: a
//! session that misses one gets it on its next sync) → commit the offsets.
//! A crash anywhere before the commit replays the batch, which the inbox
//! rules make idempotent.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use prost::Message;
use samvad_bus::{Bus, Outgoing, Topics};
use samvad_proto::bus::{deliver_record, DeliverRecord, EdgeRecord};

use crate::inbox::{Effect, Inboxes};
use crate::presence::Presence;

/// Records one batch takes from the bus.
const BATCH: usize = 512;

pub struct StoreRole {
    pub bus: Arc<dyn Bus>,
    pub topics: Topics,
    pub inboxes: Arc<Inboxes>,
    pub presence: Arc<dyn Presence>,
}

#[derive(Debug, thiserror::Error)]
pub enum RoleError {
    #[error("bus: {0}")]
    Bus(#[from] samvad_bus::BusError),
    #[error("store: {0}")]
    Store(#[from] crate::StoreError),
}

impl StoreRole {
    /// Runs until the bus closes or storage fails.
    pub async fn run(self) -> Result<(), RoleError> {
        let deliver = self.topics.deliver();
        let mut consumer = self.bus.subscribe(&deliver, "store").await?;
        loop {
            let records = consumer.poll(BATCH).await?;
            let mut decoded = Vec::with_capacity(records.len());
            let mut dead = Vec::new();
            for r in &records {
                match DeliverRecord::decode(r.payload.clone()) {
                    Ok(d) => decoded.push(d),
                    Err(e) => dead.push(r.dead_letter(&self.topics, &e)),
                }
            }
            if !dead.is_empty() {
                self.bus.produce(dead).await?;
            }
            let users: BTreeSet<&str> = decoded
                .iter()
                .filter(|d| {
                    matches!(
                        d.kind,
                        Some(deliver_record::Kind::Message(_))
                            | Some(deliver_record::Kind::Receipt(_))
                    )
                })
                .map(|d| d.user.as_str())
                .collect();
            let users: Vec<&str> = users.into_iter().collect();
            let presence = self.presence.lookup(&users).await;
            let inboxes = self.inboxes.clone();
            let effects = tokio::task::spawn_blocking(move || inboxes.apply(&decoded, &presence))
                .await
                .expect("inbox apply panicked")?;
            self.carry_out(effects).await?;
            consumer.commit(&records)?;
        }
    }

    async fn carry_out(&self, effects: Vec<Effect>) -> Result<(), RoleError> {
        let deliver: Arc<str> = self.topics.deliver().into();
        let mut receipts = Vec::new();
        let mut pushes = Vec::new();
        for effect in effects {
            match effect {
                Effect::Receipt { user, receipt } => {
                    let rec = DeliverRecord {
                        user: user.clone(),
                        kind: Some(deliver_record::Kind::Receipt(receipt)),
                    };
                    receipts.push(Outgoing::new(
                        deliver.clone(),
                        user,
                        Bytes::from(rec.encode_to_vec()),
                    ));
                }
                Effect::Push { route, frame } => {
                    let rec = EdgeRecord {
                        session: route.session.to_string(),
                        frame,
                    };
                    pushes.push(Outgoing::new(
                        self.topics.edge(&route.edge),
                        route.session.to_string(),
                        Bytes::from(rec.encode_to_vec()),
                    ));
                }
                Effect::Offline { user, seq } => {
                    tracing::trace!(user, seq, "recipient offline; entry waits for sync");
                }
            }
        }
        if !receipts.is_empty() {
            self.bus.produce(receipts).await?;
        }
        if !pushes.is_empty() {
            if let Err(e) = self.bus.produce(pushes).await {
                tracing::warn!(error = %e, "push to edge failed; sessions catch up on sync");
            }
        }
        Ok(())
    }
}
