//! A session on a WebSocket: one binary message is one protobuf frame; a
//! connection whose first message is text speaks the seed's JSON v2 instead
//! (see `samvad_proto::json_v2`).

use axum::extract::ws::{Message as WsMessage, WebSocket};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use prost::Message;
use samvad_proto::json_v2::{self, JsonError};
use samvad_proto::v1::{ClientFrame, ServerFrame};

use super::Transport;
use samvad_core::session::FrameFault;

pub struct WsTransport {
    ws: WebSocket,
    max_frame: usize,
    /// Decided by the first message: text (JSON v2) or binary (protobuf).
    text: Option<bool>,
}

impl WsTransport {
    pub fn new(ws: WebSocket, max_frame: usize) -> Self {
        WsTransport {
            ws,
            max_frame,
            text: None,
        }
    }
}

impl Transport for WsTransport {
    async fn recv(&mut self) -> std::io::Result<Option<Result<ClientFrame, FrameFault>>> {
        loop {
            let msg = match self.ws.next().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                Some(Ok(msg)) => msg,
            };
            match msg {
                WsMessage::Binary(bytes) => {
                    self.text.get_or_insert(false);
                    if bytes.len() > self.max_frame {
                        return Ok(Some(Err(FrameFault::TooLarge(bytes.len() as u64))));
                    }
                    return Ok(Some(
                        ClientFrame::decode(bytes)
                            .map_err(|e| FrameFault::Malformed(e.to_string())),
                    ));
                }
                WsMessage::Text(text) => {
                    self.text.get_or_insert(true);
                    if text.len() > self.max_frame {
                        return Ok(Some(Err(FrameFault::TooLarge(text.len() as u64))));
                    }
                    return Ok(Some(match json_v2::parse_client_text(text.as_str()) {
                        Ok(frame) => Ok(frame),
                        // A frame kind this server does not know: the session
                        // answers UNKNOWN_FRAME, as for protobuf.
                        Err(JsonError::UnknownKind) => Ok(ClientFrame { kind: None }),
                        Err(e) => Err(FrameFault::Malformed(e.to_string())),
                    }));
                }
                WsMessage::Close(_) => return Ok(None),
                WsMessage::Ping(_) | WsMessage::Pong(_) => continue,
            }
        }
    }

    async fn feed(&mut self, frame: Bytes) -> std::io::Result<()> {
        let msg = if self.text == Some(true) {
            let decoded = ServerFrame::decode(frame).map_err(std::io::Error::other)?;
            WsMessage::Text(json_v2::server_text(&decoded).into())
        } else {
            WsMessage::Binary(frame)
        };
        self.ws.feed(msg).await.map_err(std::io::Error::other)
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        SinkExt::flush(&mut self.ws)
            .await
            .map_err(std::io::Error::other)
    }

    async fn close(&mut self) {
        let _ = self.ws.send(WsMessage::Close(None)).await;
    }
}
