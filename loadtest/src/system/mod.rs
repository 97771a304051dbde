//! The system under test: Samvad, or a peer a user would pick instead
//! (ejabberd over XMPP, nats-server), behind one session type so that the
//! `connect`, `chat` and `group` scenarios run unchanged against each.
//!
//! Each protocol reports its nearest equivalent of Samvad's server ack:
//! Samvad's `Accepted` (durable), XMPP stream management's `<a h/>`
//! (handled: routed or stored offline), NATS's `PONG` after the `PUB`
//! (processed, not stored), Centrifugo's reply to `publish` (in the
//! channel's history, in memory).

use std::sync::Arc;

use anyhow::{bail, Context};
use futures_util::stream::{self, StreamExt};
use samvad_proto::v1::{client_frame, server_frame, Ack, Send};

use crate::target;
use samvad_client::{chat, group_message, Client, Connector, ServerAddr};

pub mod centrifugo;
pub mod nats;
pub mod xmpp;

/// Which system a run drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SystemKind {
    Samvad,
    /// ejabberd, XMPP over WebSocket (RFC 7395).
    Ejabberd,
    /// nats-server with its WebSocket listener.
    Nats,
    /// Centrifugo (JSON protocol over WebSocket, memory engine).
    Centrifugo,
}

/// Something a session hears from its server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The server took responsibility for my message `id`.
    Accepted(String),
    /// The server refused one of my sends.
    Refused,
    /// A message reached me. `seq` is its inbox position (Samvad; 0
    /// elsewhere); `replayed` marks a replay of stored history.
    Delivered {
        id: String,
        text: String,
        seq: u64,
        replayed: bool,
    },
    /// An inbox entry that is not a message (a receipt), to acknowledge.
    Entry { seq: u64 },
    /// The server reported an error not tied to a send.
    Error(String),
}

/// A user's credentials: an access token for Samvad, a password elsewhere.
#[derive(Debug, Clone)]
pub struct Login {
    pub user: String,
    pub secret: String,
}

/// Where the system listens and how to reach it.
pub enum System {
    Samvad {
        server: ServerAddr,
        connector: Arc<Connector>,
    },
    Ejabberd {
        /// `http://127.0.0.1:5280`: WebSocket at `/ws`, HTTP API at `/api`.
        http: String,
        domain: String,
        pid: u32,
        sources: Sources,
    },
    Nats {
        /// `ws://127.0.0.1:8222`.
        url: String,
        pid: u32,
        sources: Sources,
    },
    Centrifugo {
        /// `ws://127.0.0.1:8000/connection/websocket`.
        url: String,
        /// The HMAC key connection tokens are signed with.
        hmac_key: String,
        pid: u32,
        sources: Sources,
    },
}

impl System {
    /// Samvad at `server`, sessions opened as `setup` says.
    pub fn samvad(server: ServerAddr, setup: &crate::scenario::Setup) -> anyhow::Result<System> {
        let connector = Arc::new(setup.connector(&server)?);
        Ok(System::Samvad { server, connector })
    }

    /// `samvad/ws`, `ejabberd/ws`, …, for reports.
    pub fn name(&self) -> String {
        match self {
            System::Samvad { connector, .. } => format!("samvad/{}", connector.kind().name()),
            System::Ejabberd { .. } => "ejabberd/ws".into(),
            System::Nats { .. } => "nats/ws".into(),
            System::Centrifugo { .. } => "centrifugo/ws".into(),
        }
    }

    /// Creates the users (or reuses them), `parallel` at a time.
    pub async fn provision(&self, names: &[String], parallel: usize) -> anyhow::Result<Vec<Login>> {
        match self {
            System::Samvad { server, .. } => {
                let tokens = target::provision(&server.http, names, parallel).await?;
                Ok(names
                    .iter()
                    .zip(tokens)
                    .map(|(user, secret)| Login {
                        user: user.clone(),
                        secret,
                    })
                    .collect())
            }
            System::Ejabberd { http, domain, .. } => {
                let results: Vec<anyhow::Result<Login>> = stream::iter(names)
                    .map(|user| ejabberd_register(http, domain, user))
                    .buffered(parallel.max(1))
                    .collect()
                    .await;
                results.into_iter().collect()
            }
            // Centrifugo's users are whoever holds a token signed with its
            // key.
            System::Centrifugo { hmac_key, .. } => names
                .iter()
                .map(|user| {
                    Ok(Login {
                        user: user.clone(),
                        secret: centrifugo::connection_token(user, hmac_key)?,
                    })
                })
                .collect(),
            // NATS has no users: a subject per user name.
            System::Nats { .. } => Ok(names
                .iter()
                .map(|user| Login {
                    user: user.clone(),
                    secret: String::new(),
                })
                .collect()),
        }
    }

    /// Opens and authenticates one session.
    pub async fn connect(&self, login: &Login) -> anyhow::Result<Session> {
        Ok(match self {
            System::Samvad { connector, .. } => Session::Samvad {
                client: connector.connect(&login.secret).await?.0,
                user: login.user.clone(),
            },
            System::Ejabberd {
                http,
                domain,
                sources,
                ..
            } => {
                let ws = format!("{}/ws", http.replacen("http://", "ws://", 1));
                let tcp = open_websocket(&ws, Some("xmpp"), sources.next()).await?;
                Session::Xmpp(
                    xmpp::XmppSession::connect(tcp, domain, &login.user, &login.secret).await?,
                )
            }
            System::Nats { url, sources, .. } => {
                let ws = open_websocket(url, None, sources.next()).await?;
                Session::Nats(nats::NatsSession::connect(ws, &login.user).await?)
            }
            System::Centrifugo { url, sources, .. } => {
                let ws = open_websocket(url, None, sources.next()).await?;
                Session::Centrifugo(
                    centrifugo::CentrifugoSession::connect(ws, &login.user, &login.secret).await?,
                )
            }
        })
    }

    /// Creates a group of `members` (the first creates it) and returns the
    /// id messages are addressed to: a Samvad group, an ejabberd
    /// multi-user chat room (created through the HTTP API, joined by each
    /// member's session), or a NATS subject suffix.
    pub async fn create_group(&self, name: &str, members: &[Login]) -> anyhow::Result<String> {
        let (creator, others) = members.split_first().context("a group needs members")?;
        match self {
            System::Samvad { server, .. } => {
                let others: Vec<String> = others.iter().map(|l| l.user.clone()).collect();
                let group =
                    samvad_client::rest::create_group(&server.http, &creator.secret, name, &others)
                        .await
                        .with_context(|| format!("creating group {name}"))?;
                Ok(group.id)
            }
            System::Ejabberd { http, domain, .. } => {
                let resp = samvad_client::rest::http_client()
                    .post(format!("{http}/api/create_room"))
                    .json(&serde_json::json!({
                        "name": name, "service": format!("conference.{domain}"), "host": domain
                    }))
                    .send()
                    .await?;
                let status = resp.status();
                let text = resp.text().await.unwrap_or_default();
                if !status.is_success() {
                    bail!("ejabberd refused to create room {name}: HTTP {status}: {text}");
                }
                Ok(name.to_string())
            }
            System::Nats { .. } | System::Centrifugo { .. } => Ok(name.to_string()),
        }
    }

    /// The server's resident memory in bytes.
    pub async fn server_rss(&self) -> anyhow::Result<u64> {
        match self {
            System::Samvad { server, .. } => target::server_rss(&server.http).await,
            System::Ejabberd { pid, .. }
            | System::Nats { pid, .. }
            | System::Centrifugo { pid, .. } => process_rss(*pid),
        }
    }
}

type WsStream = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// Loopback source addresses that peer sessions rotate over, so that more
/// of them fit than one address has ephemeral ports (as Samvad's
/// [`Connector`] does for its WebSocket sessions).
#[derive(Debug, Default)]
pub struct Sources {
    addrs: Vec<std::net::IpAddr>,
    next: std::sync::atomic::AtomicUsize,
}

impl Sources {
    pub fn new(addrs: Vec<std::net::IpAddr>) -> Sources {
        Sources {
            addrs,
            next: Default::default(),
        }
    }

    fn next(&self) -> Option<std::net::IpAddr> {
        if self.addrs.is_empty() {
            return None;
        }
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some(self.addrs[n % self.addrs.len()])
    }
}

/// Opens a plain WebSocket to `url` from `source`, offering `protocol` as
/// its subprotocol.
async fn open_websocket(
    url: &str,
    protocol: Option<&str>,
    source: Option<std::net::IpAddr>,
) -> anyhow::Result<WsStream> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request()?;
    if let Some(protocol) = protocol {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", protocol.parse()?);
    }
    let host = request
        .uri()
        .host()
        .context("no host in the URL")?
        .to_string();
    let port = request.uri().port_u16().unwrap_or(80);
    let open = async {
        let tcp = samvad_client::tcp_connect(&format!("{host}:{port}"), source).await?;
        let (ws, _) = tokio_tungstenite::client_async(request, tcp).await?;
        anyhow::Ok(ws)
    };
    tokio::time::timeout(samvad_client::CONNECT_TIMEOUT, open)
        .await
        .with_context(|| format!("connecting to {url} timed out"))?
}

/// Registers `user` through ejabberd's HTTP API (the `register` command
/// that `ejabberdctl register` runs); an existing user is reused.
async fn ejabberd_register(http: &str, domain: &str, user: &str) -> anyhow::Result<Login> {
    let resp = samvad_client::rest::http_client()
        .post(format!("{http}/api/register"))
        .json(&serde_json::json!({"user": user, "host": domain, "password": target::LOAD_PASSWORD}))
        .send()
        .await
        .with_context(|| format!("registering {user} with ejabberd"))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if !status.is_success() && !text.contains("already registered") {
        bail!("ejabberd refused to register {user}: HTTP {status}: {text}");
    }
    Ok(Login {
        user: user.into(),
        secret: target::LOAD_PASSWORD.into(),
    })
}

/// VmRSS of a local process, from /proc.
pub fn process_rss(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .context("no VmRSS in /proc status")
}

/// CPU time (user + system) a local process has used, from /proc.
pub fn process_cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The fields after the command name (which may hold spaces) start at
    // field 3; utime and stime are fields 14 and 15.
    let rest = stat.rfind(')').map(|i| &stat[i + 2..]).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    let ticks = field(11).zip(field(12)).map(|(u, s)| u + s);
    // SAFETY: sysconf only reads a configuration value.
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    match ticks {
        Some(ticks) if per_sec > 0 => Ok(ticks as f64 / per_sec as f64),
        _ => bail!("no CPU times in /proc/{pid}/stat"),
    }
}

/// One user's session with the system under test.
pub enum Session {
    Samvad { client: Client, user: String },
    Xmpp(xmpp::XmppSession),
    Nats(nats::NatsSession),
    Centrifugo(centrifugo::CentrifugoSession),
}

impl Session {
    /// Replays what the server stored for me before the run and returns
    /// how many messages that was (Samvad's sync; the peers replay offline
    /// messages on their own, seen as `replayed` deliveries).
    pub async fn catch_up(&mut self) -> anyhow::Result<u64> {
        let Session::Samvad { client, .. } = self else {
            return Ok(0);
        };
        let mut stale = 0;
        client
            .sync(0, |frame| {
                if let Some(server_frame::Kind::Deliver(_)) = frame.kind {
                    stale += 1;
                }
            })
            .await?;
        Ok(stale)
    }

    /// Sends a 1:1 message.
    pub async fn send_chat(&mut self, id: &str, to: &str, text: &str) -> anyhow::Result<()> {
        match self {
            Session::Samvad { client, user } => {
                client
                    .send(client_frame::Kind::Send(Send {
                        envelope: Some(chat(id, user, to, text)),
                    }))
                    .await
            }
            Session::Xmpp(x) => x.send_chat(id, to, text).await,
            Session::Nats(n) => n.publish(id, &nats::user_subject(to), text).await,
            Session::Centrifugo(c) => c.publish(id, &centrifugo::personal_channel(to), text).await,
        }
    }

    /// Starts receiving group `group`'s messages (a room join on XMPP, a
    /// subscription on NATS; Samvad members receive by membership).
    pub async fn join_group(&mut self, group: &str) -> anyhow::Result<()> {
        match self {
            Session::Samvad { .. } => Ok(()),
            Session::Xmpp(x) => x.join_room(group).await,
            Session::Nats(n) => n.subscribe(&nats::group_subject(group)).await,
            Session::Centrifugo(c) => c.subscribe(&centrifugo::group_channel(group)).await,
        }
    }

    /// Sends a message to group `group`.
    pub async fn send_group(&mut self, id: &str, group: &str, text: &str) -> anyhow::Result<()> {
        match self {
            Session::Samvad { client, user } => {
                client
                    .send(client_frame::Kind::Send(Send {
                        envelope: Some(group_message(id, user, group, text)),
                    }))
                    .await
            }
            Session::Xmpp(x) => x.send_group(id, group, text).await,
            Session::Nats(n) => n.publish(id, &nats::group_subject(group), text).await,
            Session::Centrifugo(c) => c.publish(id, &centrifugo::group_channel(group), text).await,
        }
    }

    /// Acknowledges my inbox up to `seq` (Samvad; the peers have no cursor).
    pub async fn ack(&mut self, seq: u64) -> anyhow::Result<()> {
        match self {
            Session::Samvad { client, .. } => {
                client.send(client_frame::Kind::Ack(Ack { seq })).await
            }
            _ => Ok(()),
        }
    }

    /// The next event; `None` when the server ended the session.
    pub async fn recv(&mut self) -> anyhow::Result<Option<Event>> {
        match self {
            Session::Samvad { client, .. } => loop {
                let Some(frame) = client.recv().await? else {
                    return Ok(None);
                };
                let event = match frame.kind {
                    Some(server_frame::Kind::Accepted(a)) => Event::Accepted(a.id),
                    Some(server_frame::Kind::Error(_)) => Event::Refused,
                    Some(server_frame::Kind::Deliver(d)) => {
                        let Some(env) = d.envelope else { continue };
                        Event::Delivered {
                            text: env.body.map(|b| b.text).unwrap_or_default(),
                            id: env.id,
                            seq: env.seq,
                            replayed: false,
                        }
                    }
                    Some(server_frame::Kind::Receipt(r)) => Event::Entry { seq: r.seq },
                    _ => continue,
                };
                return Ok(Some(event));
            },
            Session::Xmpp(x) => x.recv().await,
            Session::Nats(n) => n.recv().await,
            Session::Centrifugo(c) => c.recv().await,
        }
    }

    pub async fn close(self) {
        match self {
            Session::Samvad { client, .. } => client.close().await,
            Session::Xmpp(x) => x.close().await,
            Session::Nats(n) => n.close().await,
            Session::Centrifugo(c) => c.close().await,
        }
    }
}
