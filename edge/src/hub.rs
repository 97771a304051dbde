//! The live sessions of this edge, and the consumer of its `edge.<node>`
//! topic that hands each pushed frame to its session.
//!
//! Each session has a bounded queue. A session whose queue is full is not
//! waited for: it is told `SLOW_CONSUMER` and closed, and catches up with a
//! sync when it reconnects. One slow client never stalls the others.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::RwLock;
use prost::Message;
use samvad_bus::{BusError, Consumer, FROM_END};
use samvad_proto::bus::EdgeRecord;

use crate::outbox::{Outbox, Pushed};
use crate::state::Edge;
use crate::transport::Datagrams;

/// How the hub reaches one session's connection loop.
pub struct SessionHandle {
    /// Its bounded queue; a push past the bound cuts the session off.
    pub outbox: Arc<Outbox>,
    /// Where ephemeral frames go first, if the transport has datagrams.
    pub datagrams: Option<Datagrams>,
}

#[derive(Default)]
pub struct Hub {
    sessions: RwLock<HashMap<Arc<str>, SessionHandle>>,
}

impl Hub {
    pub fn insert(&self, id: Arc<str>, handle: SessionHandle) {
        self.sessions.write().insert(id, handle);
    }

    pub fn remove(&self, id: &str) {
        self.sessions.write().remove(id);
    }

    pub fn len(&self) -> usize {
        self.sessions.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues an encoded frame for a session; false if it had to be cut off.
    /// A `datagram` frame goes straight out as a datagram if it can, past
    /// the queue: it is ephemeral, and must not wait behind messages.
    pub fn push(&self, session: &str, frame: Bytes, datagram: bool) -> bool {
        let sessions = self.sessions.read();
        let Some(handle) = sessions.get(session) else {
            return true;
        };
        if datagram
            && handle
                .datagrams
                .as_ref()
                .is_some_and(|d| d.send(frame.clone()))
        {
            return true;
        }
        handle.outbox.push(frame) != Pushed::Overflowed
    }
}

/// The consumer of `edge.<node>`, from the end. Reads outside any group:
/// what was queued for an earlier run of this node belongs to sessions
/// that are gone (theirs resync), and a restarted edge must not wait for
/// the broker to forget its previous incarnation.
///
/// Opened before the edge takes its first session: the end is resolved
/// when the consumer is assigned, so an answer produced before that (a
/// sync's, to a session the edge already accepted) would be skipped and
/// the session would wait for it for ever.
pub async fn open_dispatch(edge: &Edge) -> Result<Box<dyn Consumer>, BusError> {
    let topic = edge.topics.edge(&edge.session_config.node);
    edge.bus.assign(&topic, &[(0, FROM_END)]).await
}

/// Hands what arrives on `edge.<node>` to the sessions, until the bus
/// closes.
pub async fn run_dispatch(
    edge: Arc<Edge>,
    mut consumer: Box<dyn Consumer>,
) -> Result<(), BusError> {
    loop {
        let records = consumer.poll(1024).await?;
        for r in &records {
            match EdgeRecord::decode(r.payload.clone()) {
                Ok(rec) => {
                    if edge.hub.push(&rec.session, rec.frame, rec.datagram) {
                        edge.metrics.pushed.inc();
                    } else {
                        edge.metrics.slow_consumers.inc();
                    }
                }
                Err(e) => {
                    tracing::error!(topic = %r.topic, partition = r.partition, offset = r.offset,
                    error = %e, "undecodable edge record; skipped")
                }
            }
        }
    }
}
