//! The media role's I/O loop. One UDP socket for every participant; the
//! node's `media.<node>` topic brings signals from sessions, and signals
//! go back to sessions through their edge's `edge.<node>`. The loop reads
//! the clock and the OS's entropy and hands both to the [`Sfu`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use prost::Message;
use rand::rngs::StdRng;
use rand::SeedableRng;
use samvad_bus::{Bus, Consumer, Outgoing, Topics, FROM_END};
use samvad_proto::bus::{EdgeRecord, MediaRecord};
use samvad_proto::v1::{server_frame, ServerFrame, Signal};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::counters::MediaCounters;
use crate::pins::RoomPins;
use crate::sfu::{self, Out, SessionAddr, Sfu, SignalIn};

/// Signals waiting for the media loop.
const SIGNAL_QUEUE: usize = 1024;

/// The media role of one node.
pub struct MediaRole {
    pub bus: Arc<dyn Bus>,
    pub topics: Topics,
    pub node: String,
    pub socket: UdpSocket,
    /// The address participants reach the socket at (its ICE candidate).
    pub public_addr: SocketAddr,
    pub counters: MediaCounters,
    /// In a cluster: the room leases this node renews.
    pub pins: Option<RoomPins>,
}

/// The consumer of `media.<node>`, from the end. Opened before the node is
/// announced (its lease, its ready file): the end is resolved when the
/// consumer is assigned, so a join produced before that would be skipped.
pub async fn open_signals(
    bus: &dyn Bus,
    topics: &Topics,
    node: &str,
) -> Result<Box<dyn Consumer>, samvad_bus::BusError> {
    bus.assign(&topics.media(node), &[(0, FROM_END)]).await
}

/// Where an edge sends a room's signals.
#[derive(Clone)]
pub enum MediaRouting {
    /// No media here.
    Off,
    /// Every room on this one node (`samvad serve`).
    Local(String),
    /// Rooms pinned to nodes by Redis leases (the cluster).
    Pinned(RoomPins),
}

/// Why a room's signal has no node to go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RoutingRefusal {
    #[error("media is not served here")]
    NotServed,
    #[error("no media node is live")]
    NoLiveNode,
    #[error("no call in this room: join it first")]
    NoCall,
    #[error("media routing unavailable; retry")]
    Unavailable,
}

impl MediaRouting {
    /// The node for a signal about `room`: a join pins the room if it is
    /// not; other signals need the pin to exist.
    pub async fn node_for(&self, room: &str, joining: bool) -> Result<String, RoutingRefusal> {
        match self {
            MediaRouting::Off => Err(RoutingRefusal::NotServed),
            MediaRouting::Local(node) => Ok(node.clone()),
            MediaRouting::Pinned(pins) => {
                let found = if joining {
                    pins.pin(room).await
                } else {
                    pins.node_of(room).await
                };
                match found {
                    Ok(Some(node)) => Ok(node),
                    Ok(None) if joining => Err(RoutingRefusal::NoLiveNode),
                    Ok(None) => Err(RoutingRefusal::NoCall),
                    Err(e) => {
                        tracing::warn!(error = %e, "room pin lookup failed");
                        Err(RoutingRefusal::Unavailable)
                    }
                }
            }
        }
    }

    /// The nodes a session may have rooms on.
    pub async fn all_nodes(&self) -> Vec<String> {
        match self {
            MediaRouting::Off => Vec::new(),
            MediaRouting::Local(node) => vec![node.clone()],
            MediaRouting::Pinned(pins) => pins.live_nodes().await.unwrap_or_default(),
        }
    }
}

impl MediaRole {
    /// Runs the SFU on `consumer`, the consumer of `media.<node>` from
    /// [`open_signals`].
    pub async fn run(self, mut consumer: Box<dyn Consumer>) -> anyhow::Result<()> {
        str0m::crypto::from_feature_flags().install_process_default();
        let local = self.socket.local_addr()?;
        // Signals arrive on their own task, so the loop below only selects
        // on cancel-safe futures.
        let (signals_tx, mut signals) = mpsc::channel::<MediaRecord>(SIGNAL_QUEUE);
        tokio::spawn(async move {
            while let Ok(records) = consumer.poll(256).await {
                for r in records {
                    match MediaRecord::decode(r.payload) {
                        Ok(rec) => {
                            if signals_tx.send(rec).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "undecodable media record skipped"),
                    }
                }
            }
        });
        let mut sfu = Sfu::new(self.public_addr, StdRng::from_os_rng());
        let mut buf = vec![0u8; 2048];
        let mut deadline = Instant::now();
        let renew_every = self
            .pins
            .as_ref()
            .map_or(std::time::Duration::from_secs(3600), |p| p.lease() / 3);
        let mut renew = tokio::time::interval(renew_every);
        tracing::info!(node = %self.node, addr = %local, "media running");
        loop {
            tokio::select! {
                received = self.socket.recv_from(&mut buf) => {
                    let (n, source) = received?;
                    self.counters.datagrams_received.inc();
                    sfu.handle_packet(Instant::now(), source, local, &buf[..n]);
                }
                signal = signals.recv() => {
                    let Some(rec) = signal else { anyhow::bail!("media signal feed ended") };
                    let session = SessionAddr { edge: rec.edge, session: rec.session };
                    match rec.signal {
                        Some(Signal { room, kind: Some(kind), .. }) => sfu.handle_signal(Instant::now(), SignalIn {
                            session,
                            user: &rec.user,
                            room: &room,
                            kind,
                            may_mute: rec.may_mute,
                        }),
                        // A record without a signal: the session ended.
                        None => sfu.session_ended(Instant::now(), &session),
                        Some(Signal { room, kind: None, .. }) => sfu.refuse(
                            session,
                            &room,
                            &sfu::MediaError::BadRequest("a signal without a kind".into()),
                        ),
                    }
                }
                _ = tokio::time::sleep_until(deadline.into()) => {}
                _ = renew.tick(), if self.pins.is_some() => {
                    if let Some(pins) = self.pins.clone() {
                        let (node, rooms) = (self.node.clone(), sfu.rooms());
                        tokio::spawn(async move {
                            if let Err(e) = pins.renew(&node, &rooms).await {
                                tracing::warn!(error = %e, "renewing room leases failed");
                            }
                        });
                    }
                }
            }
            let now = Instant::now();
            if now >= deadline {
                sfu.handle_timeout(now);
            }
            deadline = sfu.next_deadline(now, std::time::Duration::from_millis(100));
            self.flush(&mut sfu).await;
            self.counters
                .frames_forwarded
                .inc_by(std::mem::take(&mut sfu.forwarded));
            self.counters.participants.set(sfu.participants() as i64);
        }
    }

    /// Sends what the SFU has to send: datagrams now, signals in one
    /// produce.
    async fn flush(&self, sfu: &mut Sfu) {
        let mut signals = Vec::new();
        while let Some(out) = sfu.poll_out() {
            match out {
                Out::Transmit { to, data } => {
                    self.counters.datagrams_sent.inc();
                    if let Err(e) = self.socket.send_to(&data, to).await {
                        tracing::debug!(error = %e, %to, "media send failed");
                    }
                }
                Out::Signal { to, room, kind } => {
                    let frame = ServerFrame::of(server_frame::Kind::Signal(Signal {
                        room,
                        from: String::new(),
                        kind: Some(kind),
                    }));
                    let rec = EdgeRecord {
                        session: to.session.clone(),
                        frame: Bytes::from(frame.encode_to_vec()),
                        datagram: false,
                    };
                    signals.push(Outgoing::new(
                        self.topics.edge(&to.edge),
                        to.session,
                        Bytes::from(rec.encode_to_vec()),
                    ));
                }
            }
        }
        if !signals.is_empty() {
            if let Err(e) = self.bus.produce(signals).await {
                tracing::warn!(error = %e, "media signals lost");
            }
        }
    }
}
