//! A native media participant on str0m: joins a group's room over its chat
//! session (signal frames), publishes synthetic Opus (20 ms frames) and
//! VP8 (30 frames/s, a keyframe every second or when asked) with real
//! timestamps, and counts the frames it receives per publisher and kind.
//!
//! The synthetic VP8 frames carry a real frame tag (keyframe bit, start
//! code, size) so that keyframe detection works; their content is not a
//! picture. Browsers decode real video in the Chromium test.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use samvad_proto::v1::{client_frame, server_frame, Signal};
use serde_json::Value;
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{
    Direction, Frequency, MediaKind, MediaTime, Mid, Rid, Simulcast, SimulcastLayer,
};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;

use crate::client::Client;

const AUDIO_EVERY: Duration = Duration::from_millis(20);
const VIDEO_EVERY: Duration = Duration::from_millis(33);
/// Video frames between keyframes when nobody asks for one.
const KEYFRAME_EVERY: u64 = 30;

/// Sizes of the synthetic frames: (keyframe, delta) padding per layer.
/// The low layer's frames are all smaller than the high layer's, so a
/// receiver can tell which layer it gets.
const HIGH: (usize, usize) = (1200, 600);
const LOW: (usize, usize) = (400, 100);

/// What a participant sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publish {
    /// Nothing: a subscriber (a data channel carries the transport).
    Nothing,
    /// Opus and VP8.
    AudioVideo,
    /// Opus, and VP8 in two simulcast layers, `h` and `l`.
    Simulcast,
}

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

/// What happened to a participant, for tests and reports.
#[derive(Debug, Default, Clone)]
pub struct Received {
    /// Frames received per (publisher, `audio` | `video`).
    pub frames: HashMap<(String, String), u64>,
    /// When the first video frame of each publisher arrived.
    pub first_video: HashMap<String, Instant>,
    /// The size of the last video frame from each publisher.
    pub last_video_size: HashMap<String, usize>,
    /// Events the server sent (`event` signals), in order.
    pub events: Vec<Value>,
    /// `error` signals.
    pub errors: Vec<Value>,
}

impl Received {
    pub fn count(&self, from: &str, kind: &str) -> u64 {
        self.frames
            .get(&(from.to_string(), kind.to_string()))
            .copied()
            .unwrap_or(0)
    }
}

pub struct Participant {
    pub user: String,
    pub room: String,
    session: Client,
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    pending: Option<SdpPendingOffer>,
    /// Our answer to the server's last offer, to send.
    outgoing_answer: Option<String>,
    /// Whose track each of our receiving mids carries.
    mids: HashMap<Mid, (String, String)>,
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
    pub joined_at: Instant,
    pub received: Received,
}

impl Participant {
    /// Joins `room` over `session` (a hello'd chat session of `user`),
    /// publishing audio and video if `publish`. Returns once the server
    /// answered.
    pub async fn join(
        session: Client,
        user: &str,
        room: &str,
        publish: bool,
    ) -> anyhow::Result<Participant> {
        let publish = if publish {
            Publish::AudioVideo
        } else {
            Publish::Nothing
        };
        Self::join_as(session, user, room, publish).await
    }

    /// [`Participant::join`], publishing `publish`.
    pub async fn join_as(
        mut session: Client,
        user: &str,
        room: &str,
        publish: Publish,
    ) -> anyhow::Result<Participant> {
        str0m::crypto::from_feature_flags().install_process_default();
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        let local = socket.local_addr()?;
        let now = Instant::now();
        let mut rtc = Rtc::builder().build(now);
        rtc.add_local_candidate(Candidate::host(local, "udp")?);
        let mut change = rtc.sdp_api();
        let simulcast = publish == Publish::Simulcast;
        let (audio, video) = if publish == Publish::Nothing {
            // Something to negotiate the transport with.
            change.add_channel("samvad".into());
            (None, None)
        } else {
            let layers = simulcast.then(|| Simulcast {
                send: vec![SimulcastLayer::new("h"), SimulcastLayer::new("l")],
                recv: Vec::new(),
            });
            (
                Some(change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None)),
                Some(change.add_media(MediaKind::Video, Direction::SendOnly, None, None, layers)),
            )
        };
        let (offer, pending) = change.apply().context("an offer")?;
        let joined_at = Instant::now();
        send_signal(
            &mut session,
            room,
            "join",
            offer.to_sdp_string().into_bytes(),
        )
        .await?;
        let mut participant = Participant {
            user: user.to_string(),
            room: room.to_string(),
            session,
            rtc,
            socket,
            local,
            pending: Some(pending),
            outgoing_answer: None,
            mids: HashMap::new(),
            audio,
            video,
            simulcast,
            sending: publish != Publish::Nothing,
            started: now,
            next_audio: now,
            next_video: now,
            video_frames: 0,
            keyframe_asked: false,
            joined_at,
            received: Received::default(),
        };
        // The answer (or a refusal) comes back on the session.
        let deadline = Instant::now() + Duration::from_secs(10);
        while participant.pending.is_some() {
            if Instant::now() > deadline {
                bail!("no answer to the join");
            }
            if let Some(error) = participant.received.errors.first() {
                bail!("join refused: {error}");
            }
            participant.step(Duration::from_millis(50)).await?;
        }
        Ok(participant)
    }

    /// Runs the participant for `duration`.
    pub async fn run_for(&mut self, duration: Duration) -> anyhow::Result<()> {
        let end = Instant::now() + duration;
        while Instant::now() < end {
            self.step(end - Instant::now()).await?;
        }
        Ok(())
    }

    /// Runs until `done` holds of what was received, or `timeout`.
    pub async fn run_until(
        &mut self,
        timeout: Duration,
        done: impl Fn(&Received) -> bool,
    ) -> anyhow::Result<()> {
        let end = Instant::now() + timeout;
        while !done(&self.received) {
            if Instant::now() > end {
                bail!(
                    "{}: not done within {timeout:?}: {:?}",
                    self.user,
                    self.received.frames
                );
            }
            self.step(Duration::from_millis(20)).await?;
        }
        Ok(())
    }

    /// Sends a signal about this room on the session (mute, leave, …).
    pub async fn signal(&mut self, kind: &str, payload: Vec<u8>) -> anyhow::Result<()> {
        send_signal(&mut self.session, &self.room, kind, payload).await
    }

    /// One round: wait for a packet, a signal or a timer (at most `max`),
    /// handle it, then send what str0m has to send.
    async fn step(&mut self, max: Duration) -> anyhow::Result<()> {
        let mut buf = vec![0u8; 2048];
        let wake = self.next_timer().min(Instant::now() + max);
        tokio::select! {
            received = self.socket.recv_from(&mut buf) => {
                let (n, source) = received?;
                if let Ok(receive) = Receive::new(Protocol::Udp, source, self.local, &buf[..n]) {
                    self.rtc.handle_input(Input::Receive(Instant::now(), receive))?;
                }
            }
            frame = self.session.recv() => {
                match frame? {
                    Some(frame) => self.on_frame(frame)?,
                    None => bail!("the session closed"),
                }
            }
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
        let now = Instant::now();
        self.rtc.handle_input(Input::Timeout(now))?;
        if self.sending && self.pending.is_none() {
            self.send_media(now)?;
        }
        self.drain().await
    }

    fn next_timer(&self) -> Instant {
        if self.sending {
            self.next_audio.min(self.next_video)
        } else {
            Instant::now() + Duration::from_millis(50)
        }
    }

    fn on_frame(&mut self, frame: samvad_proto::v1::ServerFrame) -> anyhow::Result<()> {
        let Some(server_frame::Kind::Signal(signal)) = frame.kind else {
            if let Some(server_frame::Kind::Error(e)) = frame.kind {
                self.received
                    .errors
                    .push(serde_json::json!({"code": e.code().short_name(), "message": e.message}));
            }
            return Ok(());
        };
        let text = String::from_utf8_lossy(&signal.payload).into_owned();
        match signal.kind.as_str() {
            "answer" => {
                let answer = SdpAnswer::from_sdp_string(&text)?;
                if let Some(pending) = self.pending.take() {
                    self.rtc.sdp_api().accept_answer(pending, answer)?;
                }
            }
            "offer" => {
                let offer = SdpOffer::from_sdp_string(&text)?;
                let answer = self.rtc.sdp_api().accept_offer(offer)?;
                self.outgoing_answer = Some(answer.to_sdp_string());
            }
            "event" => {
                let event: Value = serde_json::from_str(&text)?;
                if event["type"] == "track" {
                    if let (Some(user), Some(kind), Some(mid)) = (
                        event["user"].as_str(),
                        event["kind"].as_str(),
                        event["mid"].as_str(),
                    ) {
                        self.mids
                            .insert(Mid::from(mid), (user.to_string(), kind.to_string()));
                    }
                }
                self.received.events.push(event);
            }
            "error" => self
                .received
                .errors
                .push(serde_json::from_str(&text).unwrap_or(Value::String(text))),
            _ => {}
        }
        Ok(())
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

    /// Sends str0m's datagrams, handles its events, answers offers.
    async fn drain(&mut self) -> anyhow::Result<()> {
        loop {
            match self.rtc.poll_output()? {
                Output::Transmit(t) => {
                    let _ = self.socket.send_to(&t.contents, t.destination).await;
                }
                Output::Timeout(_) => break,
                Output::Event(event) => match event {
                    Event::MediaData(data) => {
                        if let Some((from, kind)) = self.mids.get(&data.mid).cloned() {
                            if kind == "video" {
                                self.received
                                    .first_video
                                    .entry(from.clone())
                                    .or_insert_with(Instant::now);
                                self.received
                                    .last_video_size
                                    .insert(from.clone(), data.data.len());
                            }
                            *self.received.frames.entry((from, kind)).or_default() += 1;
                        }
                    }
                    Event::KeyframeRequest(_) => self.keyframe_asked = true,
                    _ => {}
                },
            }
        }
        if let Some(answer) = self.outgoing_answer.take() {
            send_signal(&mut self.session, &self.room, "answer", answer.into_bytes()).await?;
        }
        Ok(())
    }
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

async fn send_signal(
    session: &mut Client,
    room: &str,
    kind: &str,
    payload: Vec<u8>,
) -> anyhow::Result<()> {
    session
        .send(client_frame::Kind::Signal(Signal {
            room: room.to_string(),
            kind: kind.to_string(),
            payload: payload.into(),
            from: String::new(),
        }))
        .await
}
