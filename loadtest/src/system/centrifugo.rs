//! A Centrifugo client over WebSocket (its JSON protocol), to run the chat
//! and group scenarios against the server people pick for real-time
//! messages to users.
//!
//! Each user connects with a JWT (HS256, `sub` = the user) and is
//! subscribed by the server to its personal channel `personal:#<user>`
//! (history and recovery on: the nearest thing Centrifugo has to an
//! inbox). A 1:1 message is a `publish` into the recipient's personal
//! channel; its reply is the ack. A group is a channel `group:<name>` that
//! every member subscribes to. Publications carry `{"id", "from", "text"}`;
//! a member's own group publications come back to it and are skipped.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::{Event, WsStream};

const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// The namespace of users' personal channels (`bench/peers/centrifugo.json`).
pub const PERSONAL_NAMESPACE: &str = "personal";
/// The namespace of group channels.
pub const GROUP_NAMESPACE: &str = "group";

/// The channel a user receives 1:1 messages on.
pub fn personal_channel(user: &str) -> String {
    format!("{PERSONAL_NAMESPACE}:#{user}")
}

/// The channel a group's messages go to.
pub fn group_channel(group: &str) -> String {
    format!("{GROUP_NAMESPACE}:{group}")
}

/// A connection token for `user`, signed with the server's HMAC key.
pub fn connection_token(user: &str, hmac_key: &str) -> anyhow::Result<String> {
    #[derive(serde::Serialize)]
    struct Claims<'a> {
        sub: &'a str,
        exp: u64,
    }
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        + 24 * 3600;
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &Claims { sub: user, exp },
        &jsonwebtoken::EncodingKey::from_secret(hmac_key.as_bytes()),
    )?)
}

/// What one reply or push of the server means to the harness.
#[derive(Debug, PartialEq)]
enum Reply {
    /// An answer to command `id`; `error` if it was refused.
    Answer { id: u64, error: Option<String> },
    /// A publication in a channel this session is subscribed to.
    Publication { data: Value, offset: u64 },
    /// The server's ping (an empty object): answered with an empty one.
    Ping,
    /// Anything else (joins, leaves, subscribe pushes).
    Other,
}

fn parse_reply(line: &str) -> anyhow::Result<Reply> {
    let v: Value = serde_json::from_str(line).with_context(|| format!("not JSON: {line:.80}"))?;
    let obj = v.as_object().context("a reply is an object")?;
    if obj.is_empty() {
        return Ok(Reply::Ping);
    }
    if let Some(id) = obj.get("id").and_then(Value::as_u64) {
        let error = obj.get("error").map(|e| {
            e.get("message")
                .and_then(Value::as_str)
                .unwrap_or("error")
                .to_string()
        });
        return Ok(Reply::Answer { id, error });
    }
    if let Some(publication) = obj.get("push").and_then(|p| p.get("pub")) {
        return Ok(Reply::Publication {
            data: publication.get("data").cloned().unwrap_or(Value::Null),
            offset: publication
                .get("offset")
                .and_then(Value::as_u64)
                .unwrap_or(0),
        });
    }
    Ok(Reply::Other)
}

/// One connected Centrifugo session.
pub struct CentrifugoSession {
    ws: Box<WsStream>,
    user: String,
    next_id: u64,
    /// Publish command id → message id, until its reply.
    unacked: HashMap<u64, String>,
    events: VecDeque<Event>,
}

impl CentrifugoSession {
    /// Connects as `user` with `token` and waits for the server's answer.
    pub async fn connect(ws: WsStream, user: &str, token: &str) -> anyhow::Result<Self> {
        let mut session = CentrifugoSession {
            ws: Box::new(ws),
            user: user.to_string(),
            next_id: 1,
            unacked: HashMap::new(),
            events: VecDeque::new(),
        };
        let id = session
            .command(json!({"connect": {"token": token, "name": "samvad-load"}}))
            .await?;
        session.await_answer(id, "connect").await?;
        Ok(session)
    }

    async fn command(&mut self, mut body: Value) -> anyhow::Result<u64> {
        let id = self.next_id;
        self.next_id += 1;
        body["id"] = json!(id);
        self.ws
            .send(WsMessage::Text(body.to_string().into()))
            .await?;
        Ok(id)
    }

    /// Reads until command `id` is answered; what else comes is kept.
    async fn await_answer(&mut self, id: u64, what: &str) -> anyhow::Result<()> {
        let wait = async {
            loop {
                let Some(text) = self.read_text().await? else {
                    bail!("the server closed the connection during {what}");
                };
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    match parse_reply(line)? {
                        Reply::Answer { id: got, error } if got == id => {
                            return match error {
                                Some(e) => Err(anyhow::anyhow!("{what} refused: {e}")),
                                None => Ok(()),
                            };
                        }
                        other => self.take(other).await?,
                    }
                }
            }
        };
        tokio::time::timeout(STEP_TIMEOUT, wait)
            .await
            .with_context(|| format!("timed out waiting for {what}"))?
    }

    async fn read_text(&mut self) -> anyhow::Result<Option<String>> {
        loop {
            match self.ws.next().await {
                Some(Ok(WsMessage::Text(t))) => return Ok(Some(t.to_string())),
                Some(Ok(WsMessage::Binary(b))) => return Ok(Some(String::from_utf8(b.to_vec())?)),
                Some(Ok(WsMessage::Close(_))) | None => return Ok(None),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.into()),
            }
        }
    }

    /// Turns one reply into an event (queued), answering pings.
    async fn take(&mut self, reply: Reply) -> anyhow::Result<()> {
        match reply {
            Reply::Ping => {
                self.ws.send(WsMessage::Text("{}".into())).await?;
            }
            Reply::Answer { id, error } => {
                if let Some(message) = self.unacked.remove(&id) {
                    self.events.push_back(match error {
                        None => Event::Accepted(message),
                        Some(_) => Event::Refused,
                    });
                } else if let Some(e) = error {
                    self.events.push_back(Event::Error(e));
                }
            }
            Reply::Publication { data, offset } => {
                let field = |k: &str| {
                    data.get(k)
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string()
                };
                if field("from") != self.user {
                    self.events.push_back(Event::Delivered {
                        id: field("id"),
                        text: field("text"),
                        seq: offset,
                        replayed: false,
                    });
                }
            }
            Reply::Other => {}
        }
        Ok(())
    }

    /// Publishes a message into `channel`; its reply becomes `Accepted`.
    pub async fn publish(&mut self, id: &str, channel: &str, text: &str) -> anyhow::Result<()> {
        let data = json!({"id": id, "from": self.user, "text": text});
        let command = self
            .command(json!({"publish": {"channel": channel, "data": data}}))
            .await?;
        self.unacked.insert(command, id.to_string());
        Ok(())
    }

    /// Subscribes to `channel` and waits until the server took it.
    pub async fn subscribe(&mut self, channel: &str) -> anyhow::Result<()> {
        let id = self
            .command(json!({"subscribe": {"channel": channel}}))
            .await?;
        self.await_answer(id, "subscribe").await
    }

    /// The next event; `None` when the server closed the connection.
    pub async fn recv(&mut self) -> anyhow::Result<Option<Event>> {
        loop {
            if let Some(event) = self.events.pop_front() {
                return Ok(Some(event));
            }
            let Some(text) = self.read_text().await? else {
                return Ok(None);
            };
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let reply = parse_reply(line)?;
                self.take(reply).await?;
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
    fn replies_pushes_and_pings_are_told_apart() {
        assert_eq!(parse_reply("{}").unwrap(), Reply::Ping);
        assert_eq!(
            parse_reply(r#"{"id":3,"publish":{}}"#).unwrap(),
            Reply::Answer { id: 3, error: None }
        );
        assert_eq!(
            parse_reply(r#"{"id":4,"error":{"code":103,"message":"permission denied"}}"#).unwrap(),
            Reply::Answer {
                id: 4,
                error: Some("permission denied".into())
            }
        );
        assert_eq!(
            parse_reply(
                r#"{"push":{"channel":"personal:#bob","pub":{"data":{"id":"m1","from":"alice","text":"hi"},"offset":7}}}"#
            )
            .unwrap(),
            Reply::Publication {
                data: json!({"id":"m1","from":"alice","text":"hi"}),
                offset: 7
            }
        );
        assert_eq!(
            parse_reply(r#"{"push":{"channel":"x","join":{}}}"#).unwrap(),
            Reply::Other
        );
        assert!(parse_reply("not json").is_err());
    }
}
