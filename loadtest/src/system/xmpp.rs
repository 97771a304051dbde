//! A minimal XMPP client over WebSocket (RFC 7395), enough to run the chat
//! and group scenarios against ejabberd: stream open, SASL PLAIN, resource
//! binding, presence, `<message/>` stanzas, multi-user chat rooms, and
//! stream management (XEP-0198) acknowledgements as the server ack.
//!
//! RFC 7395 frames one top-level element per WebSocket text message, so a
//! stanza is parsed on its own, with no stream-level XML parser.

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::{bail, Context};
use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use quick_xml::events::{BytesStart, Event as XmlEvent};
use quick_xml::Reader;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::Event;

use super::WsStream;

/// How long each step of the login may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// The parts of a stanza the harness reads.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Stanza {
    /// Local name of the top-level element (`message`, `a`, `success`, …).
    pub name: String,
    pub id: Option<String>,
    pub from: Option<String>,
    pub kind: Option<String>,
    /// `h` of a stream management `<a/>`.
    pub handled: Option<u32>,
    /// Text of the `<body/>` child.
    pub body: Option<String>,
    /// Whether a `<delay/>` child marks it as replayed (offline storage,
    /// room history).
    pub delayed: bool,
}

fn attribute(e: &BytesStart, key: &[u8]) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.local_name().as_ref() == key)
        .and_then(|a| a.unescape_value().ok().map(|v| v.into_owned()))
}

fn root(stanza: &mut Stanza, e: &BytesStart) {
    stanza.name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
    stanza.id = attribute(e, b"id");
    stanza.from = attribute(e, b"from");
    stanza.kind = attribute(e, b"type");
    stanza.handled = attribute(e, b"h").and_then(|h| h.parse().ok());
}

/// Parses one RFC 7395 frame (a complete element).
pub fn parse(xml: &str) -> anyhow::Result<Stanza> {
    let mut reader = Reader::from_str(xml);
    let mut stanza = Stanza::default();
    let mut depth = 0usize;
    let mut in_body = false;
    loop {
        match reader.read_event()? {
            XmlEvent::Start(e) if depth == 0 => {
                root(&mut stanza, &e);
                depth = 1;
            }
            XmlEvent::Empty(e) if depth == 0 => {
                root(&mut stanza, &e);
                break;
            }
            XmlEvent::Start(e) => {
                depth += 1;
                in_body = depth == 2 && e.local_name().as_ref() == b"body";
                if depth == 2 && e.local_name().as_ref() == b"delay" {
                    stanza.delayed = true;
                }
            }
            XmlEvent::Empty(e) if depth == 1 && e.local_name().as_ref() == b"delay" => {
                stanza.delayed = true;
            }
            XmlEvent::Text(t) if in_body => {
                stanza
                    .body
                    .get_or_insert_with(String::new)
                    .push_str(&t.decode()?);
            }
            // quick-xml hands `&amp;`, `&#60;`, … over as references of
            // their own, between the text around them.
            XmlEvent::GeneralRef(r) if in_body => {
                let resolved = match r.resolve_char_ref()? {
                    Some(c) => c.to_string(),
                    None => quick_xml::escape::resolve_predefined_entity(&r.decode()?)
                        .context("unknown entity in a body")?
                        .to_string(),
                };
                stanza
                    .body
                    .get_or_insert_with(String::new)
                    .push_str(&resolved);
            }
            XmlEvent::End(_) => {
                in_body = false;
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    break;
                }
            }
            XmlEvent::Eof => break,
            _ => {}
        }
    }
    if stanza.name.is_empty() {
        bail!("not an XML element: {xml:.80}");
    }
    Ok(stanza)
}

/// Escapes text for an XML attribute or text node.
fn escape(s: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(s)
}

/// Stream management's count of handled stanzas, turned back into the
/// message ids the server has taken responsibility for.
#[derive(Debug, Default)]
struct AckWindow {
    /// Stanzas sent and not yet acknowledged, each with the message id it
    /// carried (presence and joins carry none).
    unacked: VecDeque<Option<String>>,
    /// Stanzas the server has acknowledged so far (`h`).
    handled: u32,
}

impl AckWindow {
    fn sent(&mut self, id: Option<&str>) {
        self.unacked.push_back(id.map(str::to_string));
    }

    /// The message ids newly covered by `<a h='h'/>`, oldest first.
    fn acknowledge(&mut self, h: u32) -> Vec<String> {
        let mut ids = Vec::new();
        while self.handled < h {
            self.handled += 1;
            if let Some(Some(id)) = self.unacked.pop_front() {
                ids.push(id);
            }
        }
        ids
    }
}

/// One logged-in XMPP session.
pub struct XmppSession {
    ws: Box<WsStream>,
    domain: String,
    acks: AckWindow,
    pending: VecDeque<Event>,
    /// My room nickname (= user name): my own groupchat echoes are skipped.
    nick: String,
}

impl XmppSession {
    /// Opens the stream on `ws` (a WebSocket with subprotocol `xmpp`), logs
    /// in with SASL PLAIN, binds a resource, enables stream management and
    /// sends initial presence (so that messages are delivered, not stored).
    pub async fn connect(
        ws: WsStream,
        domain: &str,
        user: &str,
        password: &str,
    ) -> anyhow::Result<XmppSession> {
        let mut session = XmppSession {
            ws: Box::new(ws),
            domain: domain.into(),
            acks: AckWindow::default(),
            pending: VecDeque::new(),
            nick: user.into(),
        };
        session.open_stream().await?;
        session.expect_features().await?;
        let credentials =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        session
            .write(&format!(
                "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{credentials}</auth>"
            ))
            .await?;
        let answer = session.next_stanza().await?;
        if answer.name != "success" {
            bail!("SASL PLAIN refused for {user}: <{}>", answer.name);
        }
        session.open_stream().await?;
        session.expect_features().await?;
        session
            .write(&format!(
                "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
                 <resource>load-{:08x}</resource></bind></iq>",
                rand::random::<u32>()
            ))
            .await?;
        let bound = session.next_stanza().await?;
        if bound.name != "iq" || bound.kind.as_deref() != Some("result") {
            bail!("resource binding failed for {user}");
        }
        session.write("<enable xmlns='urn:xmpp:sm:3'/>").await?;
        let enabled = session.next_stanza().await?;
        if enabled.name != "enabled" {
            bail!("stream management refused: <{}>", enabled.name);
        }
        session.send_stanza("<presence/>", None).await?;
        Ok(session)
    }

    async fn open_stream(&mut self) -> anyhow::Result<()> {
        self.write(&format!(
            "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='{}' version='1.0'/>",
            escape(&self.domain)
        ))
        .await?;
        let open = self.next_stanza().await?;
        if open.name != "open" {
            bail!("expected <open/>, got <{}>", open.name);
        }
        Ok(())
    }

    async fn expect_features(&mut self) -> anyhow::Result<()> {
        let features = self.next_stanza().await?;
        if features.name != "features" {
            bail!("expected <stream:features/>, got <{}>", features.name);
        }
        Ok(())
    }

    async fn write(&mut self, xml: &str) -> anyhow::Result<()> {
        self.ws.send(WsMessage::Text(xml.into())).await?;
        Ok(())
    }

    /// Sends a stanza counted by stream management, then asks for an ack.
    async fn send_stanza(&mut self, xml: &str, id: Option<&str>) -> anyhow::Result<()> {
        self.acks.sent(id);
        self.ws.feed(WsMessage::Text(xml.into())).await?;
        self.ws
            .send(WsMessage::Text("<r xmlns='urn:xmpp:sm:3'/>".into()))
            .await?;
        Ok(())
    }

    /// The next stanza, during login (bounded wait).
    async fn next_stanza(&mut self) -> anyhow::Result<Stanza> {
        tokio::time::timeout(STEP_TIMEOUT, self.read_stanza())
            .await
            .context("timed out waiting for the server")??
            .context("the server closed the stream")
    }

    async fn read_stanza(&mut self) -> anyhow::Result<Option<Stanza>> {
        loop {
            match self.ws.next().await {
                Some(Ok(WsMessage::Text(t))) => return Ok(Some(parse(t.as_str())?)),
                Some(Ok(WsMessage::Close(_))) | None => return Ok(None),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.into()),
            }
        }
    }

    /// Sends a chat message to `to` (a user name on this domain).
    pub async fn send_chat(&mut self, id: &str, to: &str, text: &str) -> anyhow::Result<()> {
        let xml = format!(
            "<message type='chat' to='{}@{}' id='{}'><body>{}</body></message>",
            escape(to),
            escape(&self.domain),
            escape(id),
            escape(text)
        );
        self.send_stanza(&xml, Some(id)).await
    }

    /// Joins the multi-user chat room `room` (on `conference.<domain>`)
    /// with no history, and waits until the room confirms.
    pub async fn join_room(&mut self, room: &str) -> anyhow::Result<()> {
        let xml = format!(
            "<presence to='{}@conference.{}/{}'><x xmlns='http://jabber.org/protocol/muc'>\
             <history maxstanzas='0'/></x></presence>",
            escape(room),
            escape(&self.domain),
            escape(&self.nick)
        );
        self.send_stanza(&xml, None).await?;
        let me = format!("{room}@conference.{}/{}", self.domain, self.nick);
        loop {
            let stanza = self.next_stanza().await?;
            if stanza.name == "presence" && stanza.from.as_deref() == Some(me.as_str()) {
                if stanza.kind.as_deref() == Some("error") {
                    bail!("joining room {room} refused");
                }
                return Ok(());
            }
            self.absorb(stanza);
        }
    }

    /// Sends a groupchat message to room `room`.
    pub async fn send_group(&mut self, id: &str, room: &str, text: &str) -> anyhow::Result<()> {
        let xml = format!(
            "<message type='groupchat' to='{}@conference.{}' id='{}'><body>{}</body></message>",
            escape(room),
            escape(&self.domain),
            escape(id),
            escape(text)
        );
        self.send_stanza(&xml, Some(id)).await
    }

    /// Turns a stanza into harness events (queued in `pending`).
    fn absorb(&mut self, stanza: Stanza) {
        match stanza.name.as_str() {
            "a" => {
                let h = stanza.handled.unwrap_or(self.acks.handled);
                for id in self.acks.acknowledge(h) {
                    self.pending.push_back(Event::Accepted(id));
                }
            }
            "message" => {
                if stanza.kind.as_deref() == Some("error") {
                    self.pending.push_back(Event::Refused);
                    return;
                }
                let own_echo = stanza.kind.as_deref() == Some("groupchat")
                    && stanza
                        .from
                        .as_deref()
                        .and_then(|f| f.rsplit_once('/'))
                        .is_some_and(|(_, nick)| nick == self.nick);
                if let (Some(id), Some(text), false) = (stanza.id, stanza.body, own_echo) {
                    self.pending.push_back(Event::Delivered {
                        id,
                        text,
                        seq: 0,
                        replayed: stanza.delayed,
                    });
                }
            }
            _ => {}
        }
    }

    /// The next event; `None` when the server closed the stream.
    pub async fn recv(&mut self) -> anyhow::Result<Option<Event>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(Some(event));
            }
            let Some(stanza) = self.read_stanza().await? else {
                return Ok(None);
            };
            self.absorb(stanza);
        }
    }

    /// Ends the stream.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let _ = self
                .write("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>")
                .await;
            let _ = self.ws.send(WsMessage::Close(None)).await;
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_message_with_an_escaped_body() {
        let s = parse(
            "<message xmlns='jabber:client' from='b@localhost/load' to='a@localhost' \
             type='chat' id='1.2.3'><body>12 a&amp;b &lt;x&gt;</body></message>",
        )
        .unwrap();
        assert_eq!(s.name, "message");
        assert_eq!(s.id.as_deref(), Some("1.2.3"));
        assert_eq!(s.kind.as_deref(), Some("chat"));
        assert_eq!(s.body.as_deref(), Some("12 a&b <x>"));
        assert!(!s.delayed);
    }

    #[test]
    fn parses_an_ack_and_empty_elements() {
        let a = parse("<a xmlns='urn:xmpp:sm:3' h='42'/>").unwrap();
        assert_eq!((a.name.as_str(), a.handled), ("a", Some(42)));
        let open =
            parse("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' version='1.0'/>").unwrap();
        assert_eq!(open.name, "open");
        let features = parse(
            "<stream:features xmlns:stream='http://etherx.jabber.org/streams'>\
             <mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism>\
             </mechanisms></stream:features>",
        )
        .unwrap();
        assert_eq!(features.name, "features");
        assert_eq!(features.body, None);
    }

    #[test]
    fn marks_replayed_messages() {
        let s = parse(
            "<message from='r@conference.localhost/b' type='groupchat' id='x'>\
             <body>hi</body><delay xmlns='urn:xmpp:delay' stamp='2026-01-01T00:00:00Z'/>\
             </message>",
        )
        .unwrap();
        assert!(s.delayed);
        assert_eq!(s.body.as_deref(), Some("hi"));
    }

    #[test]
    fn acks_release_message_ids_in_order() {
        let mut window = AckWindow::default();
        window.sent(None); // presence
        window.sent(Some("m0"));
        window.sent(Some("m1"));
        window.sent(Some("m2"));
        assert_eq!(window.acknowledge(2), ["m0"]);
        assert!(
            window.acknowledge(2).is_empty(),
            "a repeated h acks nothing new"
        );
        assert_eq!(window.acknowledge(4), ["m1", "m2"]);
    }

    #[test]
    fn rejects_non_xml() {
        assert!(parse("hello").is_err());
    }
}
