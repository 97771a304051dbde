//! A minimal NATS client over WebSocket, to run the chat and group
//! scenarios against nats-server: the floor of what plain pub/sub with no
//! persistence costs. A user listens on subject `u.<user>`, a group member
//! on `g.<group>`; a message is `PUB` with `<id> <text>` as payload.
//!
//! NATS has no per-message acknowledgement. The nearest thing, and what
//! NATS clients' `flush()` does, is a `PING` after the `PUB`: the server
//! answers in order, so its `PONG` says the message was processed (handed
//! to the subscribers' connections). That is the "ack" reported here.

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::{Buf, BytesMut};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::Event;

use super::WsStream;

const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// Larger protocol lines or payloads than this are a broken server.
const MAX_PENDING: usize = 8 << 20;

/// What the server sent, one protocol operation at a time.
#[derive(Debug, PartialEq, Eq)]
pub enum Op {
    Info,
    Msg { subject: String, payload: Vec<u8> },
    Ping,
    Pong,
    Ok,
    Err(String),
}

/// Splits the byte stream into operations; `None` until one is whole.
#[derive(Default)]
pub struct Parser {
    buf: BytesMut,
}

impl Parser {
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    pub fn next_op(&mut self) -> anyhow::Result<Option<Op>> {
        let Some(eol) = self.buf.windows(2).position(|w| w == b"\r\n") else {
            if self.buf.len() > MAX_PENDING {
                bail!("protocol line too long");
            }
            return Ok(None);
        };
        let line = std::str::from_utf8(&self.buf[..eol])?.to_string();
        let mut words = line.split_ascii_whitespace();
        let verb = words.next().unwrap_or("").to_ascii_uppercase();
        let op = match verb.as_str() {
            "MSG" => {
                // MSG <subject> <sid> [reply-to] <#bytes>
                let args: Vec<&str> = words.collect();
                let (subject, len) = match args.as_slice() {
                    [subject, _sid, len] | [subject, _sid, _, len] => {
                        (subject.to_string(), len.parse::<usize>()?)
                    }
                    _ => bail!("malformed MSG line: {line}"),
                };
                let total = eol + 2 + len + 2;
                if self.buf.len() < total {
                    if total > MAX_PENDING {
                        bail!("message too large");
                    }
                    return Ok(None);
                }
                let payload = self.buf[eol + 2..eol + 2 + len].to_vec();
                self.buf.advance(total);
                return Ok(Some(Op::Msg { subject, payload }));
            }
            "INFO" => Op::Info,
            "PING" => Op::Ping,
            "PONG" => Op::Pong,
            "+OK" => Op::Ok,
            "-ERR" => Op::Err(line[4..].trim().to_string()),
            _ => bail!("unknown NATS operation: {line:.80}"),
        };
        self.buf.advance(eol + 2);
        Ok(Some(op))
    }
}

/// One connected NATS session, subscribed to its user's subject.
pub struct NatsSession {
    ws: Box<WsStream>,
    parser: Parser,
    /// Message ids whose `PING` awaits its `PONG`, in order.
    unacked: VecDeque<Option<String>>,
    next_sid: u32,
}

/// The subject a user receives 1:1 messages on.
pub fn user_subject(user: &str) -> String {
    format!("u.{user}")
}

/// The subject a group's messages go to.
pub fn group_subject(group: &str) -> String {
    format!("g.{group}")
}

impl NatsSession {
    /// Speaks NATS on `ws`, subscribes to `user`'s subject, and waits
    /// until the server has taken the subscription.
    pub async fn connect(ws: WsStream, user: &str) -> anyhow::Result<NatsSession> {
        let mut session = NatsSession {
            ws: Box::new(ws),
            parser: Parser::default(),
            unacked: VecDeque::new(),
            next_sid: 1,
        };
        match session.next_op().await? {
            Op::Info => {}
            other => bail!("expected INFO, got {other:?}"),
        }
        session
            .write(
                "CONNECT {\"verbose\":false,\"pedantic\":false,\"echo\":false,\
                 \"name\":\"samvad-load\",\"lang\":\"rust\",\"version\":\"0\",\"protocol\":1}\r\n",
            )
            .await?;
        session.subscribe(&user_subject(user)).await?;
        Ok(session)
    }

    /// Subscribes to `subject` and waits for the server to confirm (a
    /// `PING` answered after the `SUB` means the `SUB` took effect).
    pub async fn subscribe(&mut self, subject: &str) -> anyhow::Result<()> {
        let sid = self.next_sid;
        self.next_sid += 1;
        self.write(&format!("SUB {subject} {sid}\r\nPING\r\n"))
            .await?;
        loop {
            match self.next_op().await? {
                Op::Pong => return Ok(()),
                Op::Ping => self.write("PONG\r\n").await?,
                Op::Err(e) => bail!("subscribing to {subject}: {e}"),
                _ => {}
            }
        }
    }

    async fn write(&mut self, text: &str) -> anyhow::Result<()> {
        self.ws
            .send(WsMessage::Binary(text.as_bytes().to_vec().into()))
            .await?;
        Ok(())
    }

    async fn next_op(&mut self) -> anyhow::Result<Op> {
        tokio::time::timeout(STEP_TIMEOUT, self.read_op())
            .await
            .context("timed out waiting for the server")??
            .context("the server closed the connection")
    }

    async fn read_op(&mut self) -> anyhow::Result<Option<Op>> {
        loop {
            if let Some(op) = self.parser.next_op()? {
                return Ok(Some(op));
            }
            match self.ws.next().await {
                Some(Ok(WsMessage::Binary(b))) => self.parser.feed(&b),
                Some(Ok(WsMessage::Text(t))) => self.parser.feed(t.as_bytes()),
                Some(Ok(WsMessage::Close(_))) | None => return Ok(None),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.into()),
            }
        }
    }

    /// Publishes `<id> <text>` to `subject`, then a `PING` as its ack.
    pub async fn publish(&mut self, id: &str, subject: &str, text: &str) -> anyhow::Result<()> {
        let payload = format!("{id} {text}");
        self.unacked.push_back(Some(id.to_string()));
        self.write(&format!(
            "PUB {subject} {}\r\n{payload}\r\nPING\r\n",
            payload.len()
        ))
        .await
    }

    /// The next event; `None` when the server closed the connection.
    pub async fn recv(&mut self) -> anyhow::Result<Option<Event>> {
        loop {
            let Some(op) = self.read_op().await? else {
                return Ok(None);
            };
            match op {
                Op::Msg { payload, .. } => {
                    let text = String::from_utf8(payload)?;
                    let Some((id, text)) = text.split_once(' ') else {
                        continue;
                    };
                    return Ok(Some(Event::Delivered {
                        id: id.to_string(),
                        text: text.to_string(),
                        seq: 0,
                        replayed: false,
                    }));
                }
                Op::Pong => {
                    if let Some(Some(id)) = self.unacked.pop_front() {
                        return Ok(Some(Event::Accepted(id)));
                    }
                }
                Op::Ping => self.write("PONG\r\n").await?,
                Op::Err(e) => return Ok(Some(Event::Error(e))),
                Op::Info | Op::Ok => {}
            }
        }
    }

    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.ws.send(WsMessage::Close(None)))
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_operations_split_anywhere() {
        let wire = b"INFO {\"server_id\":\"x\"}\r\nMSG u.a 1 9\r\nid1 hello\r\nPING\r\n\
                     MSG g.x 2 reply.to 3\r\nabc\r\n-ERR 'Slow Consumer'\r\n";
        // Fed one byte at a time, the same operations come out.
        let mut parser = Parser::default();
        let mut ops = Vec::new();
        for b in wire.iter() {
            parser.feed(&[*b]);
            while let Some(op) = parser.next_op().unwrap() {
                ops.push(op);
            }
        }
        assert_eq!(
            ops,
            [
                Op::Info,
                Op::Msg {
                    subject: "u.a".into(),
                    payload: b"id1 hello".to_vec()
                },
                Op::Ping,
                Op::Msg {
                    subject: "g.x".into(),
                    payload: b"abc".to_vec()
                },
                Op::Err("'Slow Consumer'".into()),
            ]
        );
    }

    #[test]
    fn a_payload_may_contain_line_ends() {
        let mut parser = Parser::default();
        parser.feed(b"MSG s 1 4\r\na\r\nb\r\n");
        assert_eq!(
            parser.next_op().unwrap(),
            Some(Op::Msg {
                subject: "s".into(),
                payload: b"a\r\nb".to_vec()
            })
        );
        assert_eq!(parser.next_op().unwrap(), None);
    }

    #[test]
    fn garbage_is_an_error() {
        let mut parser = Parser::default();
        parser.feed(b"HELLO\r\n");
        assert!(parser.next_op().is_err());
        let mut parser = Parser::default();
        parser.feed(b"MSG s\r\n");
        assert!(parser.next_op().is_err());
    }
}
