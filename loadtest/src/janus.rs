//! A participant of a Janus videoroom (Janus's HTTP API and its
//! `janus.plugin.videoroom`), built from the same [`Peer`]s as Samvad's
//! participant, so that the `media` scenario drives both servers with the
//! same publishers.
//!
//! Janus's videoroom takes a participant as two peer connections: a
//! publisher handle (our offer, its answer) and a subscriber handle for
//! the feeds it wants (its offer, our answer, then `start`). Events come
//! on the session's long poll, which a task per session keeps open (it
//! also keeps the session alive).

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use samvad_client::media::{Peer, Publish, Received};
use samvad_client::rest::http_client;

/// A Janus's HTTP API, and the address our peers reach its media from.
#[derive(Debug, Clone)]
pub struct JanusAddr {
    /// `http://127.0.0.1:8088/janus`.
    pub api: String,
    /// Janus offers host candidates on every interface but loopback, and
    /// a socket on 127.0.0.1 cannot send to those: our peers bind to this
    /// machine's first non-loopback IPv4 address instead. Packets between
    /// two addresses of one machine still go through its loopback device.
    pub media_ip: IpAddr,
}

impl JanusAddr {
    pub fn new(api: &str) -> anyhow::Result<JanusAddr> {
        let media_ip = if_addrs::get_if_addrs()?
            .into_iter()
            .find(|i| !i.is_loopback() && i.ip().is_ipv4())
            .map(|i| i.ip())
            .context("Janus needs a non-loopback IPv4 address on this machine")?;
        Ok(JanusAddr {
            api: api.trim_end_matches('/').to_string(),
            media_ip,
        })
    }
}

/// How long a request waits for its asynchronous answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Posts one Janus API request; returns the reply unless it is an error.
async fn post(url: &str, mut body: Value) -> anyhow::Result<Value> {
    body["transaction"] = json!(uuid::Uuid::new_v4().to_string());
    let reply: Value = http_client()
        .post(url)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("POST {url}"))?
        .error_for_status()?
        .json()
        .await?;
    if reply["janus"] == "error" {
        bail!("Janus refused {}: {}", body["janus"], reply["error"]);
    }
    Ok(reply)
}

/// One Janus session: its URL, and the events its long poll brings.
struct Session {
    url: String,
    events: mpsc::Receiver<Value>,
    /// Events that came while a request waited for its own.
    held: VecDeque<Value>,
    poller: tokio::task::JoinHandle<()>,
}

impl Session {
    async fn create(base: &str) -> anyhow::Result<Session> {
        let reply = post(base, json!({"janus": "create"})).await?;
        let id = reply["data"]["id"].as_u64().context("no session id")?;
        let url = format!("{base}/{id}");
        let (tx, events) = mpsc::channel(256);
        let poller = tokio::spawn(long_poll(url.clone(), tx));
        Ok(Session {
            url,
            events,
            held: VecDeque::new(),
            poller,
        })
    }

    /// Attaches a videoroom handle.
    async fn attach(&self) -> anyhow::Result<u64> {
        let reply = post(
            &self.url,
            json!({"janus": "attach", "plugin": "janus.plugin.videoroom"}),
        )
        .await?;
        reply["data"]["id"].as_u64().context("no handle id")
    }

    /// Sends `body` (and `jsep`) to the plugin on `handle`; returns the
    /// plugin's answer and its JSEP, waiting for the event that carries
    /// them when the plugin answers later.
    async fn message(
        &mut self,
        handle: u64,
        body: Value,
        jsep: Option<Value>,
    ) -> anyhow::Result<(Value, Option<Value>)> {
        let mut request = json!({"janus": "message", "body": body});
        if let Some(jsep) = jsep {
            request["jsep"] = jsep;
        }
        let reply = post(&format!("{}/{handle}", self.url), request).await?;
        let reply = if reply["janus"] == "ack" {
            self.event_for(reply["transaction"].as_str().unwrap_or_default())
                .await?
        } else {
            reply
        };
        let data = reply["plugindata"]["data"].clone();
        if let Some(error) = data.get("error") {
            bail!("the videoroom refused {}: {error}", body["request"]);
        }
        Ok((data, reply.get("jsep").cloned()))
    }

    /// Waits for the event answering `transaction`; holds the others.
    async fn event_for(&mut self, transaction: &str) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + ANSWER_TIMEOUT;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .context("Janus did not answer")?
                .context("the long poll ended")?;
            if event["transaction"] == transaction {
                return Ok(event);
            }
            self.held.push_back(event);
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.poller.abort();
        let url = self.url.clone();
        // Frees the session now rather than at Janus's session timeout.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { post(&url, json!({"janus": "destroy"})).await });
        }
    }
}

/// Keeps a long poll open on the session and passes its events on.
async fn long_poll(url: String, events: mpsc::Sender<Value>) {
    let poll = format!("{url}?maxev=10");
    loop {
        let got = async {
            http_client()
                .get(&poll)
                .send()
                .await?
                .error_for_status()?
                .json::<Value>()
                .await
        }
        .await;
        let batch = match got {
            Ok(Value::Array(batch)) => batch,
            Ok(one) => vec![one],
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        for event in batch {
            if event["janus"] != "keepalive" && events.send(event).await.is_err() {
                return;
            }
        }
    }
}

/// A videoroom for the run, with a session of its own to watch it.
pub struct JanusRoom {
    pub id: u64,
    session: Session,
    handle: u64,
}

impl JanusRoom {
    /// Creates room `id` for up to `publishers`, with Opus and VP8, as
    /// Samvad's rooms forward them.
    pub async fn create(
        janus: &JanusAddr,
        id: u64,
        publishers: usize,
    ) -> anyhow::Result<JanusRoom> {
        let mut session = Session::create(&janus.api).await?;
        let handle = session.attach().await?;
        session
            .message(
                handle,
                json!({
                    "request": "create", "room": id, "publishers": publishers,
                    "audiocodec": "opus", "videocodec": "vp8", "is_private": false,
                }),
                None,
            )
            .await?;
        Ok(JanusRoom {
            id,
            session,
            handle,
        })
    }

    /// Waits until `n` publishers are up (their media flows): Janus
    /// refuses subscriptions to a feed before that.
    pub async fn wait_for_publishers(&mut self, n: usize, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let (data, _) = self
                .session
                .message(
                    self.handle,
                    json!({"request": "listparticipants", "room": self.id}),
                    None,
                )
                .await?;
            let up = data["participants"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["publisher"] == true)
                .count();
            if up >= n {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{up} of {n} publishers up in Janus room {}", self.id);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub struct JanusParticipant {
    pub user: String,
    room: u64,
    media_ip: IpAddr,
    session: Session,
    publisher: Option<Peer>,
    subscriber: Option<Peer>,
    /// When our publisher offered its tracks.
    pub published_at: Option<Instant>,
    /// When we asked for the others' feeds.
    pub subscribed_at: Option<Instant>,
    pub received: Received,
}

impl JanusParticipant {
    /// Opens a session at `janus` for `user` and, if `publish`, joins
    /// `room` as publisher `feed` with audio and video.
    pub async fn join(
        janus: &JanusAddr,
        room: u64,
        user: &str,
        feed: u64,
        publish: bool,
    ) -> anyhow::Result<JanusParticipant> {
        let mut participant = JanusParticipant {
            user: user.to_string(),
            room,
            media_ip: janus.media_ip,
            session: Session::create(&janus.api).await?,
            publisher: None,
            subscriber: None,
            published_at: None,
            subscribed_at: None,
            received: Received::default(),
        };
        if publish {
            let handle = participant.session.attach().await?;
            let (mut peer, offer) =
                Peer::offering(participant.media_ip, Publish::AudioVideo).await?;
            participant.published_at = Some(Instant::now());
            let (_, jsep) = participant
                .session
                .message(
                    handle,
                    json!({
                        "request": "joinandconfigure", "room": room, "ptype": "publisher",
                        "id": feed, "display": user, "audio": true, "video": true,
                    }),
                    Some(json!({"type": "offer", "sdp": offer, "trickle": false})),
                )
                .await
                .with_context(|| format!("{user} publishing"))?;
            let answer = jsep.context("no answer to the publisher's offer")?;
            peer.accept_answer(answer["sdp"].as_str().unwrap_or_default())?;
            participant.publisher = Some(peer);
        }
        Ok(participant)
    }

    /// Subscribes to `feeds` (published already) on one subscriber peer.
    pub async fn subscribe(&mut self, feeds: &[u64]) -> anyhow::Result<()> {
        let handle = self.session.attach().await?;
        let streams: Vec<Value> = feeds.iter().map(|f| json!({"feed": f})).collect();
        self.subscribed_at = Some(Instant::now());
        let (data, jsep) = self
            .session
            .message(
                handle,
                json!({"request": "join", "room": self.room, "ptype": "subscriber", "streams": streams}),
                None,
            )
            .await
            .with_context(|| format!("{} subscribing", self.user))?;
        let offer = jsep.context("no offer for the subscriber")?;
        let mut peer = Peer::answering(self.media_ip).await?;
        for stream in data["streams"].as_array().into_iter().flatten() {
            if let (Some(mid), Some(from), Some(kind)) = (
                stream["mid"].as_str(),
                stream["feed_display"].as_str(),
                stream["type"].as_str(),
            ) {
                peer.carries(mid, from, kind);
            }
        }
        let answer = peer.accept_offer(offer["sdp"].as_str().unwrap_or_default())?;
        self.session
            .message(
                handle,
                json!({"request": "start"}),
                Some(json!({"type": "answer", "sdp": answer, "trickle": false})),
            )
            .await?;
        self.subscriber = Some(peer);
        Ok(())
    }

    /// UDP datagrams the participant received.
    pub fn datagrams(&self) -> u64 {
        self.publisher.as_ref().map_or(0, |p| p.datagrams())
            + self.subscriber.as_ref().map_or(0, |p| p.datagrams())
    }

    /// One round: wait for a packet on either peer, an event or a timer
    /// (at most `max`), handle it, then send what is due.
    pub async fn step(&mut self, max: Duration) -> anyhow::Result<()> {
        let Self {
            session,
            publisher,
            subscriber,
            received,
            ..
        } = self;
        let now = Instant::now();
        let wake = [publisher.as_ref(), subscriber.as_ref()]
            .into_iter()
            .flatten()
            .map(|peer| peer.wake_at(now))
            .fold(now + max, Instant::min);
        if let Some(event) = session.held.pop_front() {
            received.events.push(event);
        }
        tokio::select! {
            got = recv_on(publisher, wake) => got?,
            got = recv_on(subscriber, wake) => got?,
            event = session.events.recv() => {
                let event = event.context("the long poll ended")?;
                if event["janus"] == "hangup" {
                    received.errors.push(event.clone());
                }
                received.events.push(event);
            }
        }
        for peer in [publisher, subscriber].into_iter().flatten() {
            peer.tick(received).await?;
        }
        Ok(())
    }
}

/// [`Peer::recv`] on a peer the participant may not have.
async fn recv_on(peer: &mut Option<Peer>, until: Instant) -> anyhow::Result<()> {
    match peer {
        Some(peer) => peer.recv(until).await,
        None => {
            tokio::time::sleep_until(until.into()).await;
            Ok(())
        }
    }
}
