//! The SFU: rooms of participants, one str0m `Rtc` each, media forwarded
//! from every publisher to every other participant. No sockets and no
//! clock here: the I/O loop hands in packets, signals and the time, and
//! takes out datagrams to send and signals to deliver (str0m's own
//! sans-IO shape, one level up).
//!
//! Signaling rides the participant's chat session (see [`samvad_core::signal`]):
//! the participant offers, we answer; when someone else publishes, we
//! offer the new tracks and the participant answers.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::bwe::{Bitrate, BweKind};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, KeyframeRequestKind, MediaData, MediaKind, Mid, Rid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, IceCreds, Input, Output, Rtc};

use super::demux::Demux;
use super::layers::{self, Rate};
use samvad_core::signal::{Layer, MediaEvent, Mute, MuteScope, SignalKind, AUTO_LAYER};

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
    pub payload: &'a [u8],
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
        payload: Vec<u8>,
    },
}

/// Why a signal was refused (sent back as an `error` signal).
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("already in this room from this session")]
    AlreadyJoined,
    #[error("not in this room")]
    NotJoined,
    #[error("the SDP does not parse: {0}")]
    BadSdp(String),
    #[error("the offer was refused: {0}")]
    Refused(String),
    #[error("no participant {0:?} in this room")]
    NoSuchParticipant(String),
    #[error("muting others needs the group's mute right")]
    Forbidden,
    #[error("{0}")]
    BadRequest(String),
}

impl MediaError {
    pub fn code(&self) -> &'static str {
        match self {
            MediaError::AlreadyJoined => "already_joined",
            MediaError::NotJoined => "not_joined",
            MediaError::BadSdp(_) => "bad_sdp",
            MediaError::Refused(_) => "refused",
            MediaError::NoSuchParticipant(_) => "no_such_participant",
            MediaError::Forbidden => "forbidden",
            MediaError::BadRequest(_) => "bad_request",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TrackState {
    /// To be offered at the next negotiation.
    ToOpen,
    Negotiating(Mid),
    Open(Mid),
}

/// One publisher's track, sent on to a subscriber.
#[derive(Debug)]
struct TrackOut {
    origin: Pid,
    origin_mid: Mid,
    kind: MediaKind,
    state: TrackState,
}

#[derive(Debug)]
struct TrackIn {
    mid: Mid,
    kind: MediaKind,
    /// Simulcast layers the publisher sends (empty: none).
    rids: Vec<Rid>,
    /// What each layer (or the track, `None`) costs, as measured.
    rates: Vec<(Option<Rid>, Rate)>,
    last_keyframe_request: Option<Instant>,
}

impl TrackIn {
    /// The layer a subscriber gets unless it chose: `h` (the convention
    /// for the highest) if sent, else the first announced.
    fn default_rid(&self) -> Option<Rid> {
        let high = Rid::from("h");
        if self.rids.contains(&high) {
            Some(high)
        } else {
            self.rids.first().copied()
        }
    }

    /// The measured bitrate of layer `rid` (or of the whole track).
    fn bps(&self, rid: Option<Rid>) -> u64 {
        self.rates
            .iter()
            .find(|(r, _)| *r == rid)
            .map_or(0, |(_, rate)| rate.bps())
    }

    fn record(&mut self, rid: Option<Rid>, bytes: usize, now: Instant) {
        match self.rates.iter_mut().find(|(r, _)| *r == rid) {
            Some((_, rate)) => rate.record(bytes, now),
            None => {
                let mut rate = Rate::new(now);
                rate.record(bytes, now);
                self.rates.push((rid, rate));
            }
        }
    }
}

struct Participant {
    /// Shared: forwarding looks the room up per frame without allocating.
    room: Arc<str>,
    user: String,
    session: SessionAddr,
    rtc: Rtc,
    ufrag: String,
    tracks_in: Vec<TrackIn>,
    tracks_out: Vec<TrackOut>,
    pending: Option<SdpPendingOffer>,
    /// Muted by themselves or for everyone: nothing of theirs is forwarded.
    muted: bool,
    /// Participants this one muted for itself.
    not_hearing: HashSet<Pid>,
    /// The simulcast layer this one chose per publisher.
    layers: HashMap<Pid, Rid>,
    /// The layer its bandwidth allows per publisher, where it did not
    /// choose.
    auto_layers: HashMap<Pid, Rid>,
    /// When bandwidth last lowered its layer of a publisher.
    lowered: HashMap<Pid, Instant>,
    /// Its downlink's estimated bitrate (str0m's BWE), once known.
    estimate: Option<u64>,
    /// When its `Rtc` wants time next.
    deadline: Instant,
}

impl Participant {
    /// The layer of `origin`'s video this one gets, if chosen (by itself,
    /// or for it by bandwidth).
    fn layer_of(&self, origin: Pid) -> Option<Rid> {
        self.layers
            .get(&origin)
            .or_else(|| self.auto_layers.get(&origin))
            .copied()
    }
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
    rooms: HashMap<String, Vec<Pid>>,
    by_session: HashMap<(SessionAddr, String), Pid>,
    demux: Demux<Pid>,
    out: VecDeque<Out>,
    /// Participants whose `Rtc` was given something since it was last
    /// polled: only they are polled (not every `Rtc` on every packet).
    dirty: HashSet<Pid>,
    next_id: Pid,
    /// Packets forwarded (media frames written to subscribers).
    pub forwarded: u64,
}

fn random_token(len: usize) -> String {
    use rand::distr::{Alphanumeric, SampleString};
    Alphanumeric.sample_string(&mut rand::rng(), len)
}

impl Sfu {
    pub fn new(addr: SocketAddr) -> Self {
        Sfu {
            addr,
            participants: HashMap::new(),
            rooms: HashMap::new(),
            by_session: HashMap::new(),
            demux: Demux::default(),
            out: VecDeque::new(),
            dirty: HashSet::new(),
            next_id: 1,
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
        self.rooms.keys().cloned().collect()
    }

    fn signal(&mut self, pid: Pid, kind: SignalKind, payload: Vec<u8>) {
        if let Some(p) = self.participants.get(&pid) {
            self.out.push_back(Out::Signal {
                to: p.session.clone(),
                room: p.room.to_string(),
                kind,
                payload,
            });
        }
    }

    fn event(&mut self, pid: Pid, event: &MediaEvent) {
        self.signal(pid, SignalKind::Event, event.to_json());
    }

    /// Tells every participant of `room` (but `except`).
    fn broadcast(&mut self, room: &str, except: Option<Pid>, event: &MediaEvent) {
        let members = self.rooms.get(room).cloned().unwrap_or_default();
        for pid in members.into_iter().filter(|p| Some(*p) != except) {
            self.event(pid, event);
        }
    }

    /// Tells `to` of an error about its signal.
    pub fn refuse(&mut self, to: SessionAddr, room: &str, error: &MediaError) {
        self.out.push_back(Out::Signal {
            to,
            room: room.to_string(),
            kind: SignalKind::Error,
            payload: serde_json::json!({"code": error.code(), "message": error.to_string()})
                .to_string()
                .into_bytes(),
        });
    }

    /// A signal from a session.
    pub fn handle_signal(&mut self, now: Instant, signal: SignalIn<'_>) {
        let SignalIn {
            session,
            user,
            room,
            kind,
            payload,
            may_mute,
        } = signal;
        let key = (session.clone(), room.to_string());
        let result = match (kind, self.by_session.get(&key).copied()) {
            (SignalKind::Join, None) => self.join(now, session.clone(), user, room, payload),
            (SignalKind::Join, Some(_)) => Err(MediaError::AlreadyJoined),
            (_, None) => Err(MediaError::NotJoined),
            (SignalKind::Answer, Some(pid)) => self.answer(pid, payload),
            (SignalKind::Offer, Some(pid)) => self.offer(pid, payload),
            (SignalKind::Leave, Some(pid)) => {
                self.leave(pid);
                Ok(())
            }
            (SignalKind::Mute, Some(pid)) => self.mute(pid, payload, may_mute),
            (SignalKind::Layer, Some(pid)) => self.choose_layer(pid, payload),
            (SignalKind::Event | SignalKind::Error, Some(_)) => Err(MediaError::BadRequest(
                "events and errors go from the server, not to it".into(),
            )),
        };
        if let Err(e) = result {
            self.refuse(session, room, &e);
        }
        self.drive(now);
    }

    fn join(
        &mut self,
        now: Instant,
        session: SessionAddr,
        user: &str,
        room: &str,
        offer: &[u8],
    ) -> Result<(), MediaError> {
        let offer = std::str::from_utf8(offer)
            .ok()
            .and_then(|s| SdpOffer::from_sdp_string(s).ok())
            .ok_or_else(|| MediaError::BadSdp("a join carries an SDP offer".into()))?;
        let ufrag = random_token(16);
        let mut rtc = Rtc::builder()
            .enable_bwe(Some(INITIAL_ESTIMATE))
            .set_ice_lite(true)
            .set_local_ice_credentials(IceCreds {
                ufrag: ufrag.clone(),
                pass: random_token(24),
            })
            .build(now);
        let candidate = Candidate::host(self.addr, "udp")
            .map_err(|e| MediaError::Refused(format!("host candidate: {e}")))?;
        rtc.add_local_candidate(candidate);
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| MediaError::Refused(e.to_string()))?;
        let pid = self.next_id;
        self.next_id += 1;
        // Every track already published in the room is to be offered.
        let members = self.rooms.get(room).cloned().unwrap_or_default();
        let mut tracks_out = Vec::new();
        let mut roster = Vec::new();
        for other in &members {
            let p = &self.participants[other];
            roster.push(p.user.clone());
            for t in &p.tracks_in {
                tracks_out.push(TrackOut {
                    origin: *other,
                    origin_mid: t.mid,
                    kind: t.kind,
                    state: TrackState::ToOpen,
                });
            }
        }
        self.demux.add(ufrag.clone(), pid);
        self.participants.insert(
            pid,
            Participant {
                room: room.into(),
                user: user.to_string(),
                session: session.clone(),
                rtc,
                ufrag,
                tracks_in: Vec::new(),
                tracks_out,
                pending: None,
                muted: false,
                not_hearing: HashSet::new(),
                layers: HashMap::new(),
                auto_layers: HashMap::new(),
                lowered: HashMap::new(),
                estimate: None,
                deadline: now,
            },
        );
        self.rooms.entry(room.to_string()).or_default().push(pid);
        self.dirty.insert(pid);
        self.by_session.insert((session, room.to_string()), pid);
        self.signal(pid, SignalKind::Answer, answer.to_sdp_string().into_bytes());
        self.event(pid, &MediaEvent::Participants { users: roster });
        self.broadcast(
            room,
            Some(pid),
            &MediaEvent::Joined {
                user: user.to_string(),
            },
        );
        Ok(())
    }

    /// The participant's answer to our offer.
    fn answer(&mut self, pid: Pid, payload: &[u8]) -> Result<(), MediaError> {
        let answer = std::str::from_utf8(payload)
            .ok()
            .and_then(|s| SdpAnswer::from_sdp_string(s).ok())
            .ok_or_else(|| MediaError::BadSdp("an answer carries an SDP answer".into()))?;
        let p = self
            .participants
            .get_mut(&pid)
            .ok_or(MediaError::NotJoined)?;
        let pending = p
            .pending
            .take()
            .ok_or_else(|| MediaError::BadRequest("no offer of ours is waiting".into()))?;
        p.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| MediaError::Refused(e.to_string()))?;
        self.dirty.insert(pid);
        let mut opened = Vec::new();
        for t in &mut p.tracks_out {
            if let TrackState::Negotiating(mid) = t.state {
                t.state = TrackState::Open(mid);
                opened.push((t.origin, t.origin_mid));
            }
        }
        // A new subscriber should see video at once: ask the publishers.
        for (origin, mid) in opened {
            let rid = self.layer_for(pid, origin, mid);
            self.request_keyframe(origin, mid, rid, true);
        }
        Ok(())
    }

    /// A renegotiation the participant starts (it publishes more).
    fn offer(&mut self, pid: Pid, payload: &[u8]) -> Result<(), MediaError> {
        let offer = std::str::from_utf8(payload)
            .ok()
            .and_then(|s| SdpOffer::from_sdp_string(s).ok())
            .ok_or_else(|| MediaError::BadSdp("an offer carries an SDP offer".into()))?;
        let p = self
            .participants
            .get_mut(&pid)
            .ok_or(MediaError::NotJoined)?;
        // Theirs wins over ours: ours is made again afterwards.
        p.pending = None;
        for t in &mut p.tracks_out {
            if let TrackState::Negotiating(_) = t.state {
                t.state = TrackState::ToOpen;
            }
        }
        let answer = p
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| MediaError::Refused(e.to_string()))?;
        self.dirty.insert(pid);
        self.signal(pid, SignalKind::Answer, answer.to_sdp_string().into_bytes());
        Ok(())
    }

    fn leave(&mut self, pid: Pid) {
        let Some(mut p) = self.participants.remove(&pid) else {
            return;
        };
        p.rtc.disconnect();
        self.demux.remove(&p.ufrag, pid);
        self.by_session
            .remove(&(p.session.clone(), p.room.to_string()));
        if let Some(members) = self.rooms.get_mut(&*p.room) {
            members.retain(|m| *m != pid);
            if members.is_empty() {
                self.rooms.remove(&*p.room);
            }
        }
        // Its tracks stop for everyone (they keep an inactive m-line).
        for other in self.participants.values_mut() {
            other.tracks_out.retain(|t| t.origin != pid);
        }
        self.broadcast(&p.room, None, &MediaEvent::Left { user: p.user });
    }

    /// Every room a session is in, left (the session ended).
    pub fn session_ended(&mut self, now: Instant, session: &SessionAddr) {
        let pids: Vec<Pid> = self
            .by_session
            .iter()
            .filter(|((s, _), _)| s == session)
            .map(|(_, pid)| *pid)
            .collect();
        for pid in pids {
            self.leave(pid);
        }
        self.drive(now);
    }

    fn pid_of(&self, room: &str, user: &str) -> Result<Pid, MediaError> {
        self.rooms
            .get(room)
            .into_iter()
            .flatten()
            .copied()
            .find(|pid| self.participants[pid].user == user)
            .ok_or_else(|| MediaError::NoSuchParticipant(user.to_string()))
    }

    fn mute(&mut self, pid: Pid, payload: &[u8], may_mute: bool) -> Result<(), MediaError> {
        let mute: Mute = serde_json::from_slice(payload)
            .map_err(|e| MediaError::BadRequest(format!("mute: {e}")))?;
        let (room, me) = {
            let p = &self.participants[&pid];
            (p.room.clone(), p.user.clone())
        };
        match mute.scope {
            MuteScope::Myself => {
                self.set_muted(pid, mute.muted);
                self.broadcast(
                    &room,
                    None,
                    &MediaEvent::Muted {
                        user: me.clone(),
                        by: me,
                        muted: mute.muted,
                    },
                );
            }
            MuteScope::ForMe => {
                let target = self.pid_of(&room, &mute.user)?;
                let p = self
                    .participants
                    .get_mut(&pid)
                    .expect("checked by the caller");
                if mute.muted {
                    p.not_hearing.insert(target);
                } else {
                    p.not_hearing.remove(&target);
                    self.request_keyframes_of(target);
                }
            }
            MuteScope::Everyone => {
                if !may_mute {
                    return Err(MediaError::Forbidden);
                }
                let target = self.pid_of(&room, &mute.user)?;
                self.set_muted(target, mute.muted);
                // Everyone hears of it, the muted participant first of all.
                self.broadcast(
                    &room,
                    None,
                    &MediaEvent::Muted {
                        user: mute.user,
                        by: me,
                        muted: mute.muted,
                    },
                );
            }
        }
        Ok(())
    }

    fn set_muted(&mut self, pid: Pid, muted: bool) {
        if let Some(p) = self.participants.get_mut(&pid) {
            let was = p.muted;
            p.muted = muted;
            if was && !muted {
                self.request_keyframes_of(pid);
            }
        }
    }

    /// Keyframes on every video track (every layer) of `pid`.
    fn request_keyframes_of(&mut self, pid: Pid) {
        let wanted: Vec<(Mid, Option<Rid>)> = self.participants[&pid]
            .tracks_in
            .iter()
            .filter(|t| t.kind == MediaKind::Video)
            .flat_map(|t| {
                let rids: Vec<Option<Rid>> = if t.rids.is_empty() {
                    vec![None]
                } else {
                    t.rids.iter().copied().map(Some).collect()
                };
                rids.into_iter().map(move |r| (t.mid, r))
            })
            .collect();
        for (mid, rid) in wanted {
            self.request_keyframe(pid, mid, rid, true);
        }
    }

    /// The simulcast layer `subscriber` gets of `origin`'s track `mid`.
    fn layer_for(&self, subscriber: Pid, origin: Pid, mid: Mid) -> Option<Rid> {
        let track = self
            .participants
            .get(&origin)?
            .tracks_in
            .iter()
            .find(|t| t.mid == mid)?;
        if track.rids.is_empty() {
            return None;
        }
        self.participants
            .get(&subscriber)
            .and_then(|s| s.layer_of(origin))
            .or_else(|| track.default_rid())
    }

    /// A subscriber picks the simulcast layer it gets of a publisher, or
    /// (`auto`) leaves it to its bandwidth again.
    fn choose_layer(&mut self, pid: Pid, payload: &[u8]) -> Result<(), MediaError> {
        let choice: Layer = serde_json::from_slice(payload)
            .map_err(|e| MediaError::BadRequest(format!("layer: {e}")))?;
        let room = self.participants[&pid].room.clone();
        let origin = self.pid_of(&room, &choice.user)?;
        if choice.rid == AUTO_LAYER {
            if let Some(p) = self.participants.get_mut(&pid) {
                p.layers.remove(&origin);
            }
            self.fit_layers(pid);
            return Ok(());
        }
        let rid = Rid::from(choice.rid.as_str());
        let tracks: Vec<Mid> = self.participants[&origin]
            .tracks_in
            .iter()
            .filter(|t| t.rids.contains(&rid))
            .map(|t| t.mid)
            .collect();
        if tracks.is_empty() {
            return Err(MediaError::BadRequest(format!(
                "{} sends no layer {:?}",
                choice.user, choice.rid
            )));
        }
        if let Some(p) = self.participants.get_mut(&pid) {
            p.layers.insert(origin, rid);
        }
        // The new layer must start on a keyframe.
        for mid in tracks {
            self.request_keyframe(origin, mid, Some(rid), true);
        }
        Ok(())
    }

    /// Fits the simulcast layers `pid` gets (where it did not choose) to
    /// its estimated downlink: see [`layers::allocate`]. A switch starts
    /// on a keyframe and is announced to the subscriber.
    fn fit_layers(&mut self, pid: Pid) {
        let now = Instant::now();
        let Some(s) = self.participants.get(&pid) else {
            return;
        };
        let Some(estimate) = s.estimate else {
            return;
        };
        // What the subscriber gets: fixed streams, and simulcast tracks
        // whose layer is ours to pick.
        let mut fixed = 0;
        let mut desired = 0;
        // (origin, its track's mid) beside each track to fit.
        let mut targets = Vec::new();
        let mut tracks = Vec::new();
        for t in &s.tracks_out {
            let TrackState::Open(_) = t.state else {
                continue;
            };
            let Some(origin) = self.participants.get(&t.origin) else {
                continue;
            };
            if origin.muted || s.not_hearing.contains(&t.origin) {
                continue;
            }
            let Some(track) = origin.tracks_in.iter().find(|i| i.mid == t.origin_mid) else {
                continue;
            };
            let chosen = s.layers.get(&t.origin).copied();
            if track.rids.is_empty() || chosen.is_some() {
                let bps = track.bps(chosen);
                fixed += bps;
                desired += bps;
                continue;
            }
            let layers: Vec<(Rid, u64)> = track
                .rids
                .iter()
                .map(|&rid| (rid, track.bps(Some(rid))))
                .filter(|(_, bps)| *bps > 0)
                .collect();
            desired += layers.iter().map(|(_, bps)| *bps).max().unwrap_or(0);
            targets.push((t.origin, track.mid));
            tracks.push(layers::Track {
                layers,
                // Until bandwidth chose, the subscriber gets the default.
                current: s
                    .auto_layers
                    .get(&t.origin)
                    .copied()
                    .or_else(|| track.default_rid()),
                held: s
                    .lowered
                    .get(&t.origin)
                    .is_some_and(|at| now.duration_since(*at) < layers::RAISE_HOLD),
            });
        }
        let choice = layers::allocate(estimate, fixed, &tracks);
        // (origin, mid, new layer, whether it is lower).
        let switched: Vec<(Pid, Mid, Rid, bool)> = targets
            .into_iter()
            .zip(&tracks)
            .zip(choice)
            .filter_map(|(((origin, mid), track), rid)| {
                let rid = rid.filter(|r| track.current != Some(*r))?;
                let bps = |r: Option<Rid>| {
                    track
                        .layers
                        .iter()
                        .find(|(l, _)| Some(*l) == r)
                        .map(|(_, b)| *b)
                };
                let lower = bps(Some(rid)) < bps(track.current);
                Some((origin, mid, rid, lower))
            })
            .collect();
        if let Some(s) = self.participants.get_mut(&pid) {
            // Probe for what the best layers would need, and only then:
            // probing costs padding packets on the subscriber's downlink.
            let desired = if !tracks.is_empty() {
                layers::probe_for(desired)
            } else {
                0
            };
            s.rtc
                .bwe()
                .set_bitrate(Bitrate::ZERO, Bitrate::bps(desired));
            for (origin, _, rid, lower) in &switched {
                s.auto_layers.insert(*origin, *rid);
                if *lower {
                    s.lowered.insert(*origin, now);
                }
            }
            self.dirty.insert(pid);
        }
        for (origin, mid, rid, _) in switched {
            self.request_keyframe(origin, mid, Some(rid), true);
            let user = self.participants[&origin].user.clone();
            self.event(
                pid,
                &MediaEvent::Layer {
                    user,
                    rid: rid.to_string(),
                },
            );
        }
    }

    /// Asks publisher `pid` for a keyframe on its track `mid` (layer
    /// `rid`), at most every [`KEYFRAME_INTERVAL`] unless `now_please`.
    fn request_keyframe(&mut self, pid: Pid, mid: Mid, rid: Option<Rid>, now_please: bool) {
        let Some(p) = self.participants.get_mut(&pid) else {
            return;
        };
        let Some(track) = p.tracks_in.iter_mut().find(|t| t.mid == mid) else {
            return;
        };
        if track.kind != MediaKind::Video {
            return;
        }
        let now = Instant::now();
        if !now_please
            && track
                .last_keyframe_request
                .is_some_and(|t| now.duration_since(t) < KEYFRAME_INTERVAL)
        {
            return;
        }
        track.last_keyframe_request = Some(now);
        if let Some(mut writer) = p.rtc.writer(mid) {
            let _ = writer.request_keyframe(rid, KeyframeRequestKind::Pli);
        }
        self.dirty.insert(pid);
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
                self.propagate(item);
            }
            self.negotiate();
        }
    }

    fn propagate(&mut self, item: Propagate) {
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
                let members = self.rooms.get(&*room).cloned().unwrap_or_default();
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
                    &MediaEvent::Published {
                        user,
                        kind: kind_name(kind).into(),
                    },
                );
            }
            Propagate::Media(origin, data) => self.forward(origin, &data),
            Propagate::Estimate(subscriber, bps) => {
                if let Some(s) = self.participants.get_mut(&subscriber) {
                    s.estimate = Some(bps);
                }
                self.fit_layers(subscriber);
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
                    self.request_keyframe(origin, origin_mid, rid, false);
                }
            }
        }
    }

    /// Writes a publisher's frame to every subscriber that takes it.
    fn forward(&mut self, origin: Pid, data: &MediaData) {
        // Per frame: no allocation, one pass over the room.
        let (room, default_rid) = {
            let Some(p) = self.participants.get_mut(&origin) else {
                return;
            };
            let Some(track) = p.tracks_in.iter_mut().find(|t| t.mid == data.mid) else {
                return;
            };
            track.record(
                data.rid,
                layers::wire_bytes(data.data.len()),
                data.network_time,
            );
            if p.muted {
                return;
            }
            let default_rid = data.rid.and_then(|_| track.default_rid());
            (p.room.clone(), default_rid)
        };
        let Some(members) = self.rooms.get(&*room) else {
            return;
        };
        for &sub in members.iter().filter(|s| **s != origin) {
            let Some(s) = self.participants.get_mut(&sub) else {
                continue;
            };
            if s.not_hearing.contains(&origin) {
                continue;
            }
            // Of a simulcast track, only the layer this subscriber gets.
            if let Some(rid) = data.rid {
                if s.layer_of(origin).or(default_rid) != Some(rid) {
                    continue;
                }
            }
            let Some(mid) = s.tracks_out.iter().find_map(|t| match t.state {
                TrackState::Open(mid) if t.origin == origin && t.origin_mid == data.mid => {
                    Some(mid)
                }
                _ => None,
            }) else {
                continue;
            };
            let Some(writer) = s.rtc.writer(mid) else {
                continue;
            };
            let Some(pt) = writer.match_params(data.params) else {
                continue;
            };
            if writer
                .write(pt, data.network_time, data.time, data.data.clone())
                .is_ok()
            {
                self.forwarded += 1;
            } else {
                s.rtc.disconnect();
            }
            self.dirty.insert(sub);
        }
    }

    /// Offers the tracks waiting to be sent to each participant that has
    /// no offer of ours outstanding.
    fn negotiate(&mut self) {
        let mut offers = Vec::new();
        for (pid, p) in self.participants.iter_mut() {
            if p.pending.is_some() || !p.tracks_out.iter().any(|t| t.state == TrackState::ToOpen) {
                continue;
            }
            let mut change = p.rtc.sdp_api();
            let mut announced = Vec::new();
            for t in &mut p.tracks_out {
                if t.state == TrackState::ToOpen {
                    let mid = change.add_media(t.kind, Direction::SendOnly, None, None, None);
                    t.state = TrackState::Negotiating(mid);
                    announced.push((t.origin, t.kind, mid));
                }
            }
            if let Some((offer, pending)) = change.apply() {
                p.pending = Some(pending);
                self.dirty.insert(*pid);
                offers.push((*pid, offer.to_sdp_string(), announced));
            }
        }
        for (pid, offer, announced) in offers {
            // Which mid carries whose track, before the offer itself.
            for (origin, kind, mid) in announced {
                let user = self
                    .participants
                    .get(&origin)
                    .map(|o| o.user.clone())
                    .unwrap_or_default();
                self.event(
                    pid,
                    &MediaEvent::Track {
                        user,
                        kind: kind_name(kind).into(),
                        mid: mid.to_string(),
                    },
                );
            }
            self.signal(pid, SignalKind::Offer, offer.into_bytes());
        }
    }
}

fn kind_name(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Audio => "audio",
        MediaKind::Video => "video",
    }
}
