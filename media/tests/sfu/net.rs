//! One [`Sfu`] and str0m peers ([`PeerState`]) on a simulated network, in
//! virtual time: the shape of str0m's own `tests/common.rs`. Nothing here
//! sleeps or reads the clock after the start; datagrams wait on the wire
//! for the network's delay and are dropped at its loss rate (drawn from a
//! seeded source, so a run is the same every time up to str0m's own
//! randomness); signals go between the peers and the SFU directly, as
//! they would ride the chat session.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use samvad_client::media::{PeerState, Publish, Received};
use samvad_core::signal::SignalKind;
use samvad_media::{Out, SessionAddr, Sfu, SignalIn};

/// The SFU's media socket on the simulated network.
const SFU_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 3478);

/// The longest the harness lets time jump in one step: the SFU's and the
/// peers' timers are checked at least this often.
const MAX_STEP: Duration = Duration::from_millis(20);

/// The least time moves in one step.
const MIN_STEP: Duration = Duration::from_millis(1);

/// A participant: a peer connection and the session its signals ride.
pub struct Member {
    pub user: String,
    pub room: String,
    pub session: SessionAddr,
    pub peer: PeerState,
    pub received: Received,
    /// Whether the group gives this user the mute right.
    pub may_mute: bool,
}

struct InFlight {
    arrives: Instant,
    from: SocketAddr,
    to: SocketAddr,
    data: Vec<u8>,
}

pub struct Net {
    pub now: Instant,
    pub sfu: Sfu,
    pub members: Vec<Member>,
    /// Datagrams on the wire, in the order they were sent (every one has
    /// the same delay, so that is the order they arrive in).
    wire: std::collections::VecDeque<InFlight>,
    delay: Duration,
    loss: f64,
    rng: StdRng,
    /// Datagrams the network dropped.
    pub dropped: u64,
    /// Datagrams sent onto the network, dropped or not.
    pub sent: u64,
}

impl Net {
    /// A network with `delay` one way and no loss.
    pub fn new(delay: Duration) -> Net {
        Net::lossy(delay, 0.0)
    }

    /// A network with `delay` one way that drops `loss` of the datagrams.
    pub fn lossy(delay: Duration, loss: f64) -> Net {
        Net {
            now: Instant::now(),
            sfu: Sfu::new(SFU_ADDR, StdRng::seed_from_u64(7)),
            members: Vec::new(),
            wire: Default::default(),
            delay,
            loss,
            rng: StdRng::seed_from_u64(11),
            dropped: 0,
            sent: 0,
        }
    }

    /// `user` joins `room` from a session of its own, publishing
    /// `publish`; returns its index in [`Net::members`]. The answer comes
    /// as the network runs.
    pub fn join(&mut self, user: &str, room: &str, publish: Publish) -> usize {
        let index = self.members.len();
        let addr = SocketAddr::new(Ipv4Addr::new(10, 0, 1, index as u8 + 1).into(), 4000);
        let mut peer = PeerState::new(self.now, addr).expect("a peer");
        let offer = peer.offer(publish).expect("an offer");
        self.members.push(Member {
            user: user.to_string(),
            room: room.to_string(),
            session: SessionAddr {
                edge: "edge-1".into(),
                session: format!("s{index}"),
            },
            peer,
            received: Received::default(),
            may_mute: false,
        });
        self.signal(index, SignalKind::Join(offer));
        index
    }

    /// Member `index` sends a signal about its room.
    pub fn signal(&mut self, index: usize, kind: SignalKind) {
        let m = &self.members[index];
        self.sfu.handle_signal(
            self.now,
            SignalIn {
                session: m.session.clone(),
                user: &m.user,
                room: &m.room,
                kind,
                may_mute: m.may_mute,
            },
        );
        self.route_sfu_output();
    }

    /// Member `index`'s session ended (it closed or timed out).
    pub fn end_session(&mut self, index: usize) {
        let session = self.members[index].session.clone();
        self.sfu.session_ended(self.now, &session);
        self.route_sfu_output();
    }

    /// Runs the network for `duration` of virtual time.
    pub fn run_for(&mut self, duration: Duration) {
        let end = self.now + duration;
        while self.now < end {
            self.step(end);
        }
    }

    /// Runs until `done` holds, for at most `limit` of virtual time;
    /// whether it came to hold.
    pub fn run_until(&mut self, limit: Duration, done: impl Fn(&Net) -> bool) -> bool {
        let end = self.now + limit;
        while !done(self) {
            if self.now >= end {
                return false;
            }
            self.step(end);
        }
        true
    }

    /// What member `index` has received.
    pub fn received(&self, index: usize) -> &Received {
        &self.members[index].received
    }

    /// The `type`s of the events member `index` was sent, in order.
    pub fn event_types(&self, index: usize) -> Vec<String> {
        self.received(index)
            .events
            .iter()
            .filter_map(|e| e["type"].as_str().map(str::to_string))
            .collect()
    }

    /// The `code`s of the errors member `index` was sent, in order.
    pub fn error_codes(&self, index: usize) -> Vec<String> {
        self.received(index)
            .errors
            .iter()
            .filter_map(|e| e["code"].as_str().map(str::to_string))
            .collect()
    }

    /// Puts `datagram` on the wire from `from` to the SFU, as an
    /// attacker or a confused client would.
    pub fn inject(&mut self, from: SocketAddr, datagram: Vec<u8>) {
        self.send(from, SFU_ADDR, datagram);
    }

    /// One step: time moves to the next thing due (a datagram arriving,
    /// a timer, or at most [`MAX_STEP`]), then everything due is handed
    /// in and everything produced is put on the wire.
    fn step(&mut self, end: Instant) {
        let mut next = (self.now + MAX_STEP).min(end);
        next = next.min(self.sfu.next_deadline(self.now, MAX_STEP));
        for m in &self.members {
            next = next.min(m.peer.wake_at(self.now));
        }
        if let Some(first) = self.wire.front() {
            next = next.min(first.arrives);
        }
        // At least a millisecond a step: a peer still negotiating has media
        // overdue that it will not send yet.
        self.now = next.max(self.now + MIN_STEP);
        let now = self.now;

        while self.wire.front().is_some_and(|d| d.arrives <= now) {
            let d = self.wire.pop_front().expect("checked");
            if d.to == SFU_ADDR {
                self.sfu.handle_packet(now, d.from, d.to, &d.data);
            } else if let Some(m) = self
                .members
                .iter_mut()
                .find(|m| m.peer.local_addr() == d.to)
            {
                m.peer
                    .receive(now, d.from, &d.data)
                    .expect("the peer takes a datagram");
            }
        }
        self.sfu.handle_timeout(now);
        self.route_sfu_output();
        for i in 0..self.members.len() {
            let m = &mut self.members[i];
            m.peer.tick(now, &mut m.received).expect("the peer ticks");
            let from = m.peer.local_addr();
            let mut out = Vec::new();
            while let Some((to, data)) = m.peer.poll_transmit() {
                out.push((to, data));
            }
            for (to, data) in out {
                self.send(from, to, data);
            }
        }
    }

    fn send(&mut self, from: SocketAddr, to: SocketAddr, data: Vec<u8>) {
        self.sent += 1;
        if self.loss > 0.0 && self.rng.random_bool(self.loss) {
            self.dropped += 1;
            return;
        }
        self.wire.push_back(InFlight {
            arrives: self.now + self.delay,
            from,
            to,
            data,
        });
    }

    /// Datagrams from the SFU to the wire; its signals to their sessions'
    /// peers, whose answers go straight back.
    fn route_sfu_output(&mut self) {
        let mut answers = Vec::new();
        while let Some(out) = self.sfu.poll_out() {
            match out {
                Out::Transmit { to, data } => self.send(SFU_ADDR, to, data),
                Out::Signal { to, room, kind } => {
                    let Some(index) = self
                        .members
                        .iter()
                        .position(|m| m.session == to && m.room == room)
                    else {
                        continue;
                    };
                    let m = &mut self.members[index];
                    let answer = m
                        .peer
                        .on_signal(&kind, &mut m.received)
                        .expect("the peer takes the SFU's signal");
                    if let Some(answer) = answer {
                        answers.push((index, answer));
                    }
                }
            }
        }
        for (index, answer) in answers {
            self.signal(index, SignalKind::Answer(answer));
        }
    }
}
