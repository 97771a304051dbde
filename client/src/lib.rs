//! `samvad-client`: the native Samvad client library.
//!
//! - `connection`: a session ([`Client`]) over any of the three transports
//!   (WebTransport, native QUIC `samvad/1`, WebSocket) with the same
//!   protobuf frames; a [`Connector`] opens many sessions over a few shared
//!   endpoints, as the load harness does.
//! - [`rest`]: the REST calls a client makes before and beside a session
//!   (register, login, refresh, groups).
//! - [`media`]: a participant of a group call on str0m, signaling over its
//!   chat session.
//!
//! The server's end-to-end tests, the load harness (`samvad-load`) and a
//! native app all use this crate, so what the tests prove is what a native
//! client gets.
//!
//! ```no_run
//! use samvad_client::{chat, rest, Client, ServerAddr, TransportKind};
//! use samvad_proto::v1::{client_frame, Send};
//!
//! # async fn example(server: ServerAddr) -> anyhow::Result<()> {
//! let alice = rest::register(&server.http, "alice", "a long password").await?;
//! let (mut session, welcome) =
//!     Client::connect(TransportKind::Quic, &server, &alice.access_token).await?;
//! println!("signed in as {}", welcome.user);
//! session
//!     .send(client_frame::Kind::Send(Send {
//!         envelope: Some(chat("m-1", "alice", "bob", "hello")),
//!     }))
//!     .await?;
//! // The first frame back is the Accepted of m-1: it is durable.
//! let accepted = session.recv_timeout(std::time::Duration::from_secs(5)).await?;
//! # let _ = accepted;
//! # Ok(())
//! # }
//! ```

mod connection;
pub mod media;
pub mod rest;

pub use connection::{
    chat, group_message, tcp_connect, Client, Connector, ServerAddr, TransportKind, CONNECT_TIMEOUT,
};
