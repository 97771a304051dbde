//! The SFU: rooms of participants, one str0m `Rtc` each, media forwarded
//! from every publisher to every other participant. A state machine in
//! str0m's own sans-IO shape, one level up: no sockets, no clock and no
//! randomness of its own. The driver ([`crate::role`]) hands in packets,
//! signals and the time, and takes out datagrams to send and signals to
//! deliver; the ICE credentials come from the random source it was built
//! with. Tests drive it with str0m clients on a simulated network and
//! virtual time (`media/tests/sfu`).
//!
//! Signaling rides the participant's chat session (see [`samvad_core::signal`]):
//! the participant offers, we answer; when someone else publishes, we
//! offer the new tracks and the participant answers.
//!
//! - this module: inputs and outputs, and the loop that polls the
//!   participants' `Rtc`s and passes on what they produce;
//! - [`rooms`]: who is in which room, found by session;
//! - [`participant`]: one participant's `Rtc`, tracks in and out, and what
//!   it chose to hear;
//! - [`negotiation`]: joins, offers and answers, both ways;
//! - [`forwarding`]: a publisher's frames to its subscribers, keyframe
//!   requests;
//! - [`simulcast`]: which layer of a publisher each subscriber gets
//!   (the allocation itself is [`crate::layers`]);
//! - [`mute`]: muting oneself, someone for oneself, someone for everyone;
//! - [`error`]: why a signal was refused.

mod error;
mod forwarding;
mod mute;
mod negotiation;
mod participant;
mod rooms;
mod simulcast;

pub use error::MediaError;
use participant::{kind_name, Participant, TrackIn, TrackOut, TrackState};
use rooms::Rooms;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::bwe::{Bitrate, BweKind};
use str0m::crypto::dtls::DtlsCert;
use str0m::media::{Direction, MediaData, MediaKind, Mid, Rid};
use str0m::net::{Protocol, Receive};
use str0m::{Event, IceConnectionState, Input, Output};

use crate::demux::Demux;
use rand::rngs::StdRng;
use samvad_core::signal::{event, media_event, SignalError, SignalKind};

/// A participant of this node.
pub type Pid = u64;

/// Keyframe requests to one publisher's track at most this often.
const KEYFRAME_INTERVAL: Duration = Duration::from_millis(500);

/// What a subscriber's downlink is taken to carry until str0m's estimate
/// (from the subscriber's transport-wide congestion feedback) says more.
const INITIAL_ESTIMATE: Bitrate = Bitrate::kbps(1_000);

/// Where a participant's signals go: its session on its edge.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionAddr {
    pub edge: String,
    pub session: String,
}

/// A signal from `user`'s session about `room`.
pub struct SignalIn<'a> {
    pub session: SessionAddr,
    pub user: &'a str,
    pub room: &'a str,
    pub kind: SignalKind,
    /// Whether the group gives the user the mute right.
    pub may_mute: bool,
}

/// What the I/O loop must do.
#[derive(Debug)]
pub enum Out {
    /// Send a datagram from the media socket.
    Transmit { to: SocketAddr, data: Vec<u8> },
    /// Deliver a signal frame to a session.
    Signal {
        to: SessionAddr,
        room: String,
        kind: SignalKind,
    },
}

/// Work found while polling one participant, done once all were polled
/// (it touches others). Short-lived: boxing the media would cost an
/// allocation per frame.
#[allow(clippy::large_enum_variant)]
enum Propagate {
    TrackAdded(Pid, Mid, MediaKind, Vec<Rid>),
    Media(Pid, MediaData),
    /// Subscriber `0` wants a keyframe on its outgoing `1`.
    Keyframe(Pid, Mid),
    /// Subscriber `0`'s downlink is estimated at `1` bits per second.
    Estimate(Pid, u64),
    Gone(Pid),
}

pub struct Sfu {
    /// The media socket's address: the one host candidate we offer.
    addr: SocketAddr,
    participants: HashMap<Pid, Participant>,
    rooms: Rooms,
    demux: Demux<Pid>,
    out: VecDeque<Out>,
    /// Participants whose `Rtc` was given something since it was last
    /// polled: only they are polled (not every `Rtc` on every packet).
    dirty: HashSet<Pid>,
    next_id: Pid,
    /// Where ICE credentials come from: the driver's entropy, a seed in
    /// tests.
    rng: StdRng,
    /// The DTLS certificate every participant's handshake presents (its
    /// fingerprint is in every answer). One per SFU, as mediasoup keeps
    /// one per worker: generating a key pair per join cost more CPU than
    /// the rest of the join, and the certificate only authenticates the
    /// handshake; each handshake's SRTP keys are its own (ECDHE).
    dtls_cert: DtlsCert,
    /// Packets forwarded (media frames written to subscribers).
    pub forwarded: u64,
}

impl Sfu {
    /// An SFU whose one host candidate is `addr`, drawing ICE
    /// credentials from `rng`.
    pub fn new(addr: SocketAddr, rng: StdRng) -> Self {
        Self::with_dtls_cert(addr, rng, generate_dtls_cert())
    }

    /// [`Sfu::new`] with a certificate made before: the fuzz target makes
    /// one for all its inputs.
    pub fn with_dtls_cert(addr: SocketAddr, rng: StdRng, dtls_cert: DtlsCert) -> Self {
        Sfu {
            addr,
            participants: HashMap::new(),
            rooms: Rooms::default(),
            demux: Demux::default(),
            out: VecDeque::new(),
            dirty: HashSet::new(),
            next_id: 1,
            rng,
            dtls_cert,
            forwarded: 0,
        }
    }

    /// The next thing to do, if any.
    pub fn poll_out(&mut self) -> Option<Out> {
        self.out.pop_front()
    }

    pub fn participants(&self) -> usize {
        self.participants.len()
    }

    /// The rooms with participants on this node.
    pub fn rooms(&self) -> Vec<String> {
        self.rooms.names()
    }

    fn signal(&mut self, pid: Pid, kind: SignalKind) {
        if let Some(p) = self.participants.get(&pid) {
            self.out.push_back(Out::Signal {
                to: p.session.clone(),
                room: p.room.to_string(),
                kind,
            });
        }
    }

    fn event(&mut self, pid: Pid, what: media_event::Kind) {
        self.signal(pid, event(what));
    }

    /// Tells every participant of `room` (but `except`).
    fn broadcast(&mut self, room: &str, except: Option<Pid>, what: media_event::Kind) {
        let members = self.rooms.members(room).to_vec();
        for pid in members.into_iter().filter(|p| Some(*p) != except) {
            self.event(pid, what.clone());
        }
    }

    /// Tells `to` of an error about its signal.
    pub fn refuse(&mut self, to: SessionAddr, room: &str, error: &MediaError) {
        self.out.push_back(Out::Signal {
            to,
            room: room.to_string(),
            kind: SignalKind::Error(SignalError {
                code: error.code().into(),
                message: error.to_string(),
            }),
        });
    }

    /// A signal from a session.
    pub fn handle_signal(&mut self, now: Instant, signal: SignalIn<'_>) {
        let SignalIn {
            session,
            user,
            room,
            kind,
            may_mute,
        } = signal;
        let result = match (kind, self.rooms.participant(&session, room)) {
            (SignalKind::Join(offer), None) => self.join(now, session.clone(), user, room, &offer),
            (SignalKind::Join(_), Some(_)) => Err(MediaError::AlreadyJoined),
            (_, None) => Err(MediaError::NotJoined),
            (SignalKind::Answer(answer), Some(pid)) => self.answer(now, pid, &answer),
            (SignalKind::Offer(offer), Some(pid)) => self.offer(pid, &offer),
            (SignalKind::Leave(_), Some(pid)) => {
                self.leave(pid);
                Ok(())
            }
            (SignalKind::Mute(mute), Some(pid)) => self.mute(now, pid, mute, may_mute),
            (SignalKind::Layer(layer), Some(pid)) => self.choose_layer(now, pid, layer),
            (SignalKind::Event(_) | SignalKind::Error(_), Some(_)) => Err(MediaError::BadRequest(
                "events and errors go from the server, not to it".into(),
            )),
        };
        if let Err(e) = result {
            self.refuse(session, room, &e);
        }
        self.drive(now);
    }

    fn leave(&mut self, pid: Pid) {
        let Some(mut p) = self.participants.remove(&pid) else {
            return;
        };
        p.rtc.disconnect();
        self.demux.remove(&p.ufrag, pid);
        self.rooms.remove(&p.room, &p.session, pid);
        // Its tracks stop for everyone (they keep an inactive m-line).
        for other in self.participants.values_mut() {
            other.tracks_out.retain(|t| t.origin != pid);
        }
        self.broadcast(&p.room, None, media_event::Kind::Left(p.user));
    }

    /// Every room a session is in, left (the session ended).
    pub fn session_ended(&mut self, now: Instant, session: &SessionAddr) {
        for pid in self.rooms.of_session(session) {
            self.leave(pid);
        }
        self.drive(now);
    }

    /// A datagram from the media socket.
    pub fn handle_packet(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) {
        let Some(pid) = self.demux.route(source, data) else {
            return;
        };
        let Ok(receive) = Receive::new(Protocol::Udp, source, destination, data) else {
            return;
        };
        if let Some(p) = self.participants.get_mut(&pid) {
            if p.rtc.handle_input(Input::Receive(now, receive)).is_err() {
                p.rtc.disconnect();
            }
            self.dirty.insert(pid);
        }
        self.drive(now);
    }

    /// Time passes for the participants whose deadline came.
    pub fn handle_timeout(&mut self, now: Instant) {
        for (pid, p) in self.participants.iter_mut() {
            if p.deadline <= now {
                if p.rtc.handle_input(Input::Timeout(now)).is_err() {
                    p.rtc.disconnect();
                }
                self.dirty.insert(*pid);
            }
        }
        self.drive(now);
    }

    /// When [`Sfu::handle_timeout`] is due next (at most `max` from now).
    pub fn next_deadline(&self, now: Instant, max: Duration) -> Instant {
        self.participants
            .values()
            .map(|p| p.deadline)
            .fold(now + max, Instant::min)
    }

    /// Polls the `Rtc`s that were given something until each waits for
    /// time, doing what their events ask (forwarding media to others marks
    /// those for polling in turn), and starts the negotiations that new
    /// tracks need.
    fn drive(&mut self, now: Instant) {
        loop {
            let mut work = Vec::new();
            let dirty: Vec<Pid> = self.dirty.drain().collect();
            if dirty.is_empty() {
                break;
            }
            for pid in dirty {
                let Some(p) = self.participants.get_mut(&pid) else {
                    continue;
                };
                let pid = &pid;
                loop {
                    if !p.rtc.is_alive() {
                        work.push(Propagate::Gone(*pid));
                        break;
                    }
                    match p.rtc.poll_output() {
                        Ok(Output::Transmit(t)) => self.out.push_back(Out::Transmit {
                            to: t.destination,
                            data: t.contents.into(),
                        }),
                        Ok(Output::Timeout(t)) => {
                            p.deadline = t.max(now);
                            break;
                        }
                        Ok(Output::Event(event)) => match event {
                            Event::MediaAdded(added) => {
                                if matches!(
                                    added.direction,
                                    Direction::RecvOnly | Direction::SendRecv
                                ) {
                                    let rids = added
                                        .simulcast
                                        .map(|s| {
                                            s.recv
                                                .into_iter()
                                                .chain(s.send)
                                                .map(|l| l.rid)
                                                .collect()
                                        })
                                        .unwrap_or_default();
                                    work.push(Propagate::TrackAdded(
                                        *pid, added.mid, added.kind, rids,
                                    ));
                                }
                            }
                            Event::MediaData(data) => work.push(Propagate::Media(*pid, data)),
                            Event::KeyframeRequest(req) => {
                                work.push(Propagate::Keyframe(*pid, req.mid))
                            }
                            Event::EgressBitrateEstimate(
                                BweKind::Twcc { estimate, .. } | BweKind::Remb { estimate, .. },
                            ) => work.push(Propagate::Estimate(*pid, estimate.as_u64())),
                            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                                p.rtc.disconnect();
                            }
                            _ => {}
                        },
                        Err(_) => {
                            p.rtc.disconnect();
                        }
                    }
                }
            }
            for item in work {
                self.propagate(now, item);
            }
            self.negotiate();
        }
    }

    fn propagate(&mut self, now: Instant, item: Propagate) {
        match item {
            Propagate::Gone(pid) => self.leave(pid),
            Propagate::TrackAdded(pid, mid, kind, rids) => {
                let Some(p) = self.participants.get_mut(&pid) else {
                    return;
                };
                if p.tracks_in.iter().any(|t| t.mid == mid) {
                    return;
                }
                p.tracks_in.push(TrackIn {
                    mid,
                    kind,
                    rids,
                    rates: Vec::new(),
                    last_keyframe_request: None,
                });
                let (room, user) = (p.room.clone(), p.user.clone());
                let members = self.rooms.members(&room).to_vec();
                for other in members.into_iter().filter(|o| *o != pid) {
                    if let Some(o) = self.participants.get_mut(&other) {
                        o.tracks_out.push(TrackOut {
                            origin: pid,
                            origin_mid: mid,
                            kind,
                            state: TrackState::ToOpen,
                        });
                    }
                }
                self.broadcast(
                    &room,
                    Some(pid),
                    media_event::Kind::Published(media_event::Published {
                        user,
                        kind: kind_name(kind).into(),
                    }),
                );
            }
            Propagate::Media(origin, data) => self.forward(origin, &data),
            Propagate::Estimate(subscriber, bps) => {
                if let Some(s) = self.participants.get_mut(&subscriber) {
                    s.estimate = Some(bps);
                }
                self.fit_layers(now, subscriber);
            }
            Propagate::Keyframe(subscriber, mid) => {
                let target = self.participants.get(&subscriber).and_then(|s| {
                    s.tracks_out
                        .iter()
                        .find(|t| t.state == TrackState::Open(mid))
                        .map(|t| (t.origin, t.origin_mid))
                });
                if let Some((origin, origin_mid)) = target {
                    let rid = self.layer_for(subscriber, origin, origin_mid);
                    self.request_keyframe(now, origin, origin_mid, rid, false);
                }
            }
        }
    }
}

/// A fresh DTLS certificate from the crypto provider str0m is built with.
pub fn generate_dtls_cert() -> DtlsCert {
    str0m::crypto::from_feature_flags()
        .dtls_provider
        .generate_certificate()
        .expect("the aws-lc-rs provider generates DTLS certificates")
}
