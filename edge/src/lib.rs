//! The Samvad server: edge sessions (WebTransport, native QUIC, WebSocket),
//! REST, and the wiring that runs every role in one process.
//!
//! - [`connection`]: the one loop that drives a [`samvad_core::session`] over
//!   any transport.
//! - [`transport`]: frame I/O for WebSocket and for QUIC/WebTransport streams.
//! - [`quic`]: the UDP endpoint; dispatches WebTransport and `samvad/1` by ALPN;
//!   [`webtransport`]: the HTTP/3 handshake of a WebTransport session, on quinn.
//! - [`hub`]: this edge's live sessions and the consumer of `edge.<node>`;
//!   [`outbox`]: each session's bounded queue of frames to write.
//! - [`delivery`]: where sends, acks and syncs go: the bus (cluster) or the
//!   inbox writers of this process (`samvad serve`).
//! - [`http`]: REST, the web page, WebSocket upgrade, over HTTPS and HTTP;
//!   [`group_api`]: the group endpoints; [`history_api`]: history pages; [`user_api`]: user search and
//!   contact matching; [`phone_api`]: phone verification by SMS code; [`file_api`]: files through signed URLs.
//! - [`push_api`]: the REST calls of push subscriptions (the push role is
//!   `samvad-push`).
//! - [`node`]: an edge's listeners and start-up, shared by both modes.
//! - [`serve`]: every role in one process; [`cluster`]: one role per process.
//! - [`admission`]: limits on sessions, handshakes and connection rates,
//!   checked before any work on a connection; [`throttle`]: buckets per
//!   key against guessing (logins) and floods.
//! - [`auth`], [`tls`], [`metrics`], [`config`].

pub mod admission;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod delivery;
pub mod file_api;
pub mod group_api;
pub mod history_api;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod node;
pub mod outbox;
pub mod phone_api;
pub mod push_api;
pub mod quic;
pub mod serve;
pub mod state;
pub mod throttle;
pub mod tls;
pub mod transport;
pub mod user_api;
pub mod webtransport;
