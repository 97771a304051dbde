//! The Samvad server: edge sessions (WebTransport, native QUIC, WebSocket)
//! and the wiring that runs every role, in one process (`samvad serve`) or
//! one role per process (the cluster). The REST API is `samvad-api`, media
//! `samvad-media`, push `samvad-push`, the rules `samvad-core`.
//!
//! - [`connection`]: the one loop that drives a [`samvad_core::session`] over
//!   any transport.
//! - [`transport`]: frame I/O for WebSocket and for QUIC/WebTransport streams.
//! - [`quic`]: the UDP endpoint; dispatches WebTransport and `samvad/1` by ALPN;
//!   [`webtransport`]: the HTTP/3 handshake of a WebTransport session, on quinn.
//! - [`hub`]: this edge's live sessions and the consumer of `edge.<node>`;
//!   [`outbox`]: each session's bounded queue of frames to write.
//! - [`delivery`]: where sends, acks and syncs go: the bus (cluster) or the
//!   inbox writers of this process (`samvad serve`); [`inboxes`]: the
//!   same path as the REST API's [`samvad_api::Inboxes`].
//! - [`http`]: the web page, `/cert-hash`, `/metrics`, the WebSocket
//!   upgrade, beside the API's routes, over HTTPS and HTTP.
//! - [`node`]: an edge's listeners and start-up, shared by both modes.
//! - [`serve`]: every role in one process; [`cluster`]: one role per process.
//! - [`admission`]: limits on sessions, handshakes and connection rates,
//!   checked before any work on a connection.
//! - [`auth`] (the token secret on disk), [`tls`], [`metrics`], [`config`].

pub mod admission;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod delivery;
pub mod http;
pub mod hub;
pub mod inboxes;
pub mod metrics;
pub mod node;
pub mod outbox;
pub mod quic;
pub mod serve;
pub mod state;
pub mod tls;
pub mod transport;
pub mod webtransport;
