//! One WebRTC peer connection on str0m, with no signaling in it: it makes
//! or takes SDP, publishes synthetic Opus (20 ms frames) and VP8 (30
//! frames/s, a keyframe every second or when asked) with real timestamps,
//! and counts the frames it receives per publisher and kind. Samvad's
//! participant ([`super::Participant`]) and Janus's
//! (the load harness's `JanusParticipant`) carry its SDP over their own signaling.
//!
//! [`PeerState`] is the peer without a socket or a clock (str0m's shape:
//! datagrams and the time in, datagrams out), so that a simulated network
//! can drive it in virtual time (the SFU's tests do); [`Peer`] is that
//! state on a UDP socket, driven by the wall clock.
//!
//! The synthetic VP8 frames carry a real frame tag (keyframe bit, start
//! code, size) so that keyframe detection works; their content is not a
//! picture. Browsers decode real video in the Chromium test.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::Context;
use samvad_proto::json_v2::media_event_json;
use samvad_proto::v1::{media_event, signal::Kind as SignalKind};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{
    Direction, Frequency, MediaKind, MediaTime, Mid, Rid, Simulcast, SimulcastLayer,
};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;

use super::{Publish, Received};

const AUDIO_EVERY: Duration = Duration::from_millis(20);
const VIDEO_EVERY: Duration = Duration::from_millis(33);
/// Video frames between keyframes when nobody asks for one.
const KEYFRAME_EVERY: u64 = 30;
/// How long a peer with nothing to send sleeps between timer checks.
const IDLE_TICK: Duration = Duration::from_millis(50);

/// Sizes of the synthetic frames: (keyframe, delta) padding per layer.
/// The low layer's frames are all smaller than the high layer's, so a
/// receiver can tell which layer it gets.
const HIGH: (usize, usize) = (1200, 600);
const LOW: (usize, usize) = (400, 100);

/// A keyframe's VP8 frame tag: keyframe bit clear, version 0, shown; the
/// start code; 640×480.
fn vp8_frame(key: bool, n: u64, sizes: (usize, usize)) -> Vec<u8> {
    let mut frame = if key {
        vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01]
    } else {
        vec![0x11, 0x02, 0x00]
    };
    let padding = if key { sizes.0 } else { sizes.1 };
    frame.extend(std::iter::repeat_n((n % 251) as u8, padding));
    frame
}

/// A peer connection's rules and media, without I/O.
pub struct PeerState {
    rtc: Rtc,
    local: SocketAddr,
    /// Datagrams to send: (destination, contents).
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
    /// Our offer, until its answer comes.
    pending: Option<SdpPendingOffer>,
    /// Whose track each receiving mid carries: (publisher, `audio` |
    /// `video`).
    owners: HashMap<Mid, (String, String)>,
    audio: Option<Mid>,
    video: Option<Mid>,
    simulcast: bool,
    /// Sending media (false: muted ourselves, nothing goes out).
    pub sending: bool,
    started: Instant,
    next_audio: Instant,
    next_video: Instant,
    video_frames: u64,
    keyframe_asked: bool,
    /// UDP datagrams that reached the socket.
    datagrams: u64,
    /// A narrow downlink the datagrams pass through, if any.
    downlink: Option<Downlink>,
}

/// A bottleneck on the way in: datagrams leave it at `bps`, in order,
/// after those before them; what would wait longer than [`QUEUE_LIMIT`]
/// is dropped, as a router's queue does. The receiver's congestion
/// feedback then shows the sender growing delays and losses, as on a
/// real narrow link.
struct Downlink {
    bps: u64,
    queue: VecDeque<(Instant, SocketAddr, Vec<u8>)>,
    /// When the link is free again.
    free_at: Instant,
}

/// The longest a datagram waits in a [`Downlink`] before it is dropped.
const QUEUE_LIMIT: Duration = Duration::from_millis(300);

impl Downlink {
    /// Queues a datagram that arrived at `now`; false if it was dropped.
    fn enter(&mut self, now: Instant, source: SocketAddr, data: &[u8]) -> bool {
        let start = self.free_at.max(now);
        if start.duration_since(now) > QUEUE_LIMIT {
            return false;
        }
        let airtime = Duration::from_secs_f64(data.len() as f64 * 8.0 / self.bps as f64);
        self.free_at = start + airtime;
        self.queue.push_back((self.free_at, source, data.to_vec()));
        true
    }

    /// The next datagram through the link by `now`.
    fn leave(&mut self, now: Instant) -> Option<(SocketAddr, Vec<u8>)> {
        if self.queue.front()?.0 > now {
            return None;
        }
        self.queue
            .pop_front()
            .map(|(_, source, data)| (source, data))
    }
}

impl PeerState {
    /// A peer whose one host candidate is `local`.
    pub fn new(now: Instant, local: SocketAddr) -> anyhow::Result<PeerState> {
        str0m::crypto::from_feature_flags().install_process_default();
        let mut rtc = Rtc::builder()
            .set_stats_interval(Some(Duration::from_secs(1)))
            .build(now);
        rtc.add_local_candidate(Candidate::host(local, "udp")?);
        Ok(PeerState {
            rtc,
            local,
            transmits: VecDeque::new(),
            pending: None,
            owners: HashMap::new(),
            audio: None,
            video: None,
            simulcast: false,
            sending: false,
            started: now,
            next_audio: now,
            next_video: now,
            video_frames: 0,
            keyframe_asked: false,
            datagrams: 0,
            downlink: None,
        })
    }

    /// Offers to send `publish` (or, publishing nothing, a data channel to
    /// negotiate the transport with). Returns the offer's SDP; the answer
    /// goes to [`PeerState::accept_answer`].
    pub fn offer(&mut self, publish: Publish) -> anyhow::Result<String> {
        let mut change = self.rtc.sdp_api();
        if publish == Publish::Nothing {
            change.add_channel("samvad".into());
        } else {
            let layers = (publish == Publish::Simulcast).then(|| Simulcast {
                send: vec![SimulcastLayer::new("h"), SimulcastLayer::new("l")],
                recv: Vec::new(),
            });
            self.audio =
                Some(change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None));
            self.video =
                Some(change.add_media(MediaKind::Video, Direction::SendOnly, None, None, layers));
        }
        let (offer, pending) = change.apply().context("an offer")?;
        self.pending = Some(pending);
        self.simulcast = publish == Publish::Simulcast;
        self.sending = publish != Publish::Nothing;
        Ok(offer.to_sdp_string())
    }

    /// The address of the peer's host candidate.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Whether our offer still waits for its answer.
    pub fn negotiating(&self) -> bool {
        self.pending.is_some()
    }

    pub fn accept_answer(&mut self, sdp: &str) -> anyhow::Result<()> {
        let answer = SdpAnswer::from_sdp_string(sdp)?;
        if let Some(pending) = self.pending.take() {
            self.rtc.sdp_api().accept_answer(pending, answer)?;
        }
        Ok(())
    }

    /// Takes the other side's offer; returns our answer's SDP.
    pub fn accept_offer(&mut self, sdp: &str) -> anyhow::Result<String> {
        let offer = SdpOffer::from_sdp_string(sdp)?;
        Ok(self.rtc.sdp_api().accept_offer(offer)?.to_sdp_string())
    }

    /// Says whose track arrives on `mid`.
    pub fn carries(&mut self, mid: &str, publisher: &str, kind: &str) {
        self.owners
            .insert(Mid::from(mid), (publisher.to_string(), kind.to_string()));
    }

    /// Takes in a Samvad media signal (see `samvad_core::signal`): answers
    /// and offers go to str0m, events and errors to `received` (as JSON,
    /// the form reports and the Janus harness share). Returns the answer
    /// to send back, if the signal was an offer.
    pub fn on_signal(
        &mut self,
        kind: &SignalKind,
        received: &mut Received,
    ) -> anyhow::Result<Option<String>> {
        match kind {
            SignalKind::Answer(sdp) => self.accept_answer(sdp)?,
            SignalKind::Offer(sdp) => return Ok(Some(self.accept_offer(sdp)?)),
            SignalKind::Event(event) => {
                if let Some(media_event::Kind::Track(track)) = &event.kind {
                    self.carries(&track.mid, &track.user, &track.kind);
                }
                received.events.push(media_event_json(event));
            }
            SignalKind::Error(error) => received
                .errors
                .push(serde_json::json!({"code": error.code, "message": error.message})),
            _ => {}
        }
        Ok(None)
    }

    /// Puts a bottleneck of `bps` on the peer's way in (a narrow
    /// downlink); `None` takes it away.
    pub fn limit_downlink(&mut self, now: Instant, bps: Option<u64>) {
        self.downlink = bps.map(|bps| Downlink {
            bps,
            queue: VecDeque::new(),
            free_at: now,
        });
    }

    /// UDP datagrams received so far.
    pub fn datagrams(&self) -> u64 {
        self.datagrams
    }

    /// When the peer next has something to do of its own accord.
    pub fn wake_at(&self, now: Instant) -> Instant {
        let own = if self.sending {
            self.next_audio.min(self.next_video)
        } else {
            now + IDLE_TICK
        };
        let queued = self
            .downlink
            .as_ref()
            .and_then(|d| d.queue.front())
            .map(|(at, _, _)| *at);
        queued.map_or(own, |at| at.min(own))
    }

    /// A datagram from `source` reached the peer at `now`.
    pub fn receive(&mut self, now: Instant, source: SocketAddr, data: &[u8]) -> anyhow::Result<()> {
        self.datagrams += 1;
        match &mut self.downlink {
            Some(link) => {
                link.enter(now, source, data);
                Ok(())
            }
            None => take_in(&mut self.rtc, now, self.local, source, data),
        }
    }

    /// Advances str0m's clock to `now`, sends the media that is due, and
    /// queues what str0m has to send ([`PeerState::poll_transmit`]); counts
    /// the frames that arrived.
    pub fn tick(&mut self, now: Instant, received: &mut Received) -> anyhow::Result<()> {
        if let Some(link) = &mut self.downlink {
            while let Some((source, data)) = link.leave(now) {
                take_in(&mut self.rtc, now, self.local, source, &data)?;
            }
        }
        self.rtc.handle_input(Input::Timeout(now))?;
        if self.sending && self.pending.is_none() {
            self.send_media(now)?;
        }
        loop {
            match self.rtc.poll_output()? {
                Output::Transmit(t) => self.transmits.push_back((t.destination, t.contents.into())),
                Output::Timeout(_) => return Ok(()),
                Output::Event(Event::MediaData(data)) => {
                    let Some((from, kind)) = self.owners.get(&data.mid) else {
                        continue;
                    };
                    if kind == "video" {
                        received.first_video.entry(from.clone()).or_insert(now);
                        received
                            .last_video_size
                            .insert(from.clone(), data.data.len());
                        *received.video_bytes.entry(from.clone()).or_default() +=
                            data.data.len() as u64;
                    }
                    *received
                        .frames
                        .entry((from.clone(), kind.clone()))
                        .or_default() += 1;
                }
                Output::Event(Event::KeyframeRequest(_)) => self.keyframe_asked = true,
                Output::Event(Event::MediaIngressStats(s)) => {
                    let stream = format!("{}{:?}", s.mid, s.rid);
                    received.nacks_sent.insert(stream, s.nacks);
                }
                Output::Event(Event::MediaEgressStats(s)) => {
                    let stream = format!("{}{:?}", s.mid, s.rid);
                    received.nacks_received.insert(stream, s.nacks);
                }
                Output::Event(_) => {}
            }
        }
    }

    /// The next datagram to send: (destination, contents).
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.transmits.pop_front()
    }

    fn send_media(&mut self, now: Instant) -> anyhow::Result<()> {
        if let Some(mid) = self.audio.filter(|_| now >= self.next_audio) {
            let elapsed = now.duration_since(self.started);
            let rtp = MediaTime::new(
                elapsed.as_micros() as u64 * 48 / 1000,
                Frequency::FORTY_EIGHT_KHZ,
            );
            // An Opus TOC byte (SILK, 20 ms) and a little payload.
            let opus = Frame {
                mid,
                rid: None,
                codec: Codec::Opus,
                rtp,
                data: vec![0x78, 1, 2, 3],
            };
            write_frame(&mut self.rtc, now, opus)?;
            self.next_audio += AUDIO_EVERY;
        }
        if let Some(mid) = self.video.filter(|_| now >= self.next_video) {
            let elapsed = now.duration_since(self.started);
            let rtp = MediaTime::new(
                elapsed.as_micros() as u64 * 90 / 1000,
                Frequency::NINETY_KHZ,
            );
            let key = self.keyframe_asked || self.video_frames.is_multiple_of(KEYFRAME_EVERY);
            let n = self.video_frames;
            let frame = |rid: Option<&str>, sizes| Frame {
                mid,
                rid: rid.map(Rid::from),
                codec: Codec::Vp8,
                rtp,
                data: vp8_frame(key, n, sizes),
            };
            let written = if self.simulcast {
                write_frame(&mut self.rtc, now, frame(Some("h"), HIGH))?
                    && write_frame(&mut self.rtc, now, frame(Some("l"), LOW))?
            } else {
                write_frame(&mut self.rtc, now, frame(None, HIGH))?
            };
            if written {
                self.keyframe_asked = false;
                self.video_frames += 1;
            }
            self.next_video += VIDEO_EVERY;
        }
        Ok(())
    }
}

/// A [`PeerState`] on a UDP socket, driven by the wall clock. It derefs
/// to its state for everything but I/O.
pub struct Peer {
    state: PeerState,
    socket: UdpSocket,
    buf: Vec<u8>,
}

impl std::ops::Deref for Peer {
    type Target = PeerState;
    fn deref(&self) -> &PeerState {
        &self.state
    }
}

impl std::ops::DerefMut for Peer {
    fn deref_mut(&mut self) -> &mut PeerState {
        &mut self.state
    }
}

impl Peer {
    async fn bind(ip: IpAddr) -> anyhow::Result<Peer> {
        let socket = UdpSocket::bind((ip, 0)).await?;
        let state = PeerState::new(Instant::now(), socket.local_addr()?)?;
        Ok(Peer {
            state,
            socket,
            buf: vec![0; 2048],
        })
    }

    /// A peer on `ip` that offers to send `publish`: see
    /// [`PeerState::offer`].
    pub async fn offering(ip: IpAddr, publish: Publish) -> anyhow::Result<(Peer, String)> {
        let mut peer = Peer::bind(ip).await?;
        let offer = peer.state.offer(publish)?;
        Ok((peer, offer))
    }

    /// A peer on `ip` that only receives, negotiated by the other side's
    /// offer ([`PeerState::accept_offer`]).
    pub async fn answering(ip: IpAddr) -> anyhow::Result<Peer> {
        Peer::bind(ip).await
    }

    /// Waits for a datagram (and takes it in) until `until`. Cancel-safe:
    /// nothing is lost if another event wins a `select!` against it.
    pub async fn recv(&mut self, until: Instant) -> anyhow::Result<()> {
        tokio::select! {
            got = self.socket.recv_from(&mut self.buf) => {
                let (n, source) = got?;
                self.state.receive(Instant::now(), source, &self.buf[..n])?;
            }
            _ = tokio::time::sleep_until(until.into()) => {}
        }
        Ok(())
    }

    /// [`PeerState::tick`] at the wall clock's now, then sends what is
    /// queued.
    pub async fn tick(&mut self, received: &mut Received) -> anyhow::Result<()> {
        self.state.tick(Instant::now(), received)?;
        while let Some((to, data)) = self.state.poll_transmit() {
            let _ = self.socket.send_to(&data, to).await;
        }
        Ok(())
    }
}

/// Hands a datagram to str0m (what does not parse is not ours).
fn take_in(
    rtc: &mut Rtc,
    now: Instant,
    local: SocketAddr,
    source: SocketAddr,
    data: &[u8],
) -> anyhow::Result<()> {
    if let Ok(receive) = Receive::new(Protocol::Udp, source, local, data) {
        rtc.handle_input(Input::Receive(now, receive))?;
    }
    Ok(())
}

/// One frame to send.
struct Frame {
    mid: Mid,
    /// The simulcast layer, if the track has layers.
    rid: Option<Rid>,
    codec: Codec,
    rtp: MediaTime,
    data: Vec<u8>,
}

/// Writes `frame`; false if its mid or codec was not negotiated (yet).
fn write_frame(rtc: &mut Rtc, now: Instant, frame: Frame) -> anyhow::Result<bool> {
    let Some(mut writer) = rtc.writer(frame.mid) else {
        return Ok(false);
    };
    if let Some(rid) = frame.rid {
        writer = writer.rid(rid);
    }
    let pt = writer
        .payload_params()
        .find(|p| p.spec().codec == frame.codec)
        .map(|p| p.pt());
    match pt {
        Some(pt) => {
            writer.write(pt, now, frame.rtp, frame.data)?;
            Ok(true)
        }
        None => Ok(false),
    }
}
