//! A participant of a Samvad media room: one [`Peer`] whose signaling
//! (join offer, answers, the server's offers, events, errors) rides the
//! user's chat session as `Signal` frames.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::bail;
use samvad_proto::v1::signal::Kind as SignalKind;
use samvad_proto::v1::{client_frame, server_frame, ServerFrame, Signal};

use super::{Peer, Publish, Received};
use crate::Client;

pub struct Participant {
    pub user: String,
    pub room: String,
    session: Client,
    peer: Peer,
    /// Our answer to the server's last offer, to send.
    outgoing_answer: Option<String>,
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
        let (peer, offer) = Peer::offering(Ipv4Addr::LOCALHOST.into(), publish).await?;
        let joined_at = Instant::now();
        send_signal(&mut session, room, SignalKind::Join(offer)).await?;
        let mut participant = Participant {
            user: user.to_string(),
            room: room.to_string(),
            session,
            peer,
            outgoing_answer: None,
            joined_at,
            received: Received::default(),
        };
        // The answer (or a refusal) comes back on the session.
        let deadline = Instant::now() + Duration::from_secs(10);
        while participant.peer.negotiating() {
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

    /// Puts a bottleneck of `bps` on the participant's downlink (`None`:
    /// none), to see the server fit what it sends to it.
    pub fn limit_downlink(&mut self, bps: Option<u64>) {
        self.peer.limit_downlink(Instant::now(), bps);
    }

    /// UDP datagrams the participant received.
    pub fn datagrams(&self) -> u64 {
        self.peer.datagrams()
    }

    /// Sends a signal about this room on the session (mute, leave, …).
    pub async fn signal(&mut self, kind: SignalKind) -> anyhow::Result<()> {
        send_signal(&mut self.session, &self.room, kind).await
    }

    /// One round: wait for a packet, a signal or a timer (at most `max`),
    /// handle it, then send what is due.
    pub async fn step(&mut self, max: Duration) -> anyhow::Result<()> {
        let now = Instant::now();
        let wake = self.peer.wake_at(now).min(now + max);
        tokio::select! {
            got = self.peer.recv(wake) => got?,
            frame = self.session.recv() => match frame? {
                Some(frame) => self.on_frame(frame)?,
                None => bail!("the session closed"),
            },
        }
        self.peer.tick(&mut self.received).await?;
        if let Some(answer) = self.outgoing_answer.take() {
            self.signal(SignalKind::Answer(answer)).await?;
        }
        Ok(())
    }

    fn on_frame(&mut self, frame: ServerFrame) -> anyhow::Result<()> {
        let signal = match frame.kind {
            Some(server_frame::Kind::Signal(signal)) => signal,
            Some(server_frame::Kind::Error(e)) => {
                self.received
                    .errors
                    .push(serde_json::json!({"code": e.code().short_name(), "message": e.message}));
                return Ok(());
            }
            _ => return Ok(()),
        };
        let Some(kind) = &signal.kind else {
            return Ok(());
        };
        if let Some(answer) = self.peer.on_signal(kind, &mut self.received)? {
            self.outgoing_answer = Some(answer);
        }
        Ok(())
    }
}

async fn send_signal(session: &mut Client, room: &str, kind: SignalKind) -> anyhow::Result<()> {
    session
        .send(client_frame::Kind::Signal(Signal {
            room: room.to_string(),
            from: String::new(),
            kind: Some(kind),
        }))
        .await
}
