//! The edge role of Samvad: client sessions over WebTransport, native QUIC
//! and WebSocket, their listeners, and the HTTP glue beside the REST API.
//! The `samvad` binary (`server/`) wires it with the other roles; the REST
//! API is `samvad-api`, media `samvad-media`, push `samvad-push`, the rules
//! `samvad-core`.
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
//! - [`node`]: an edge's listeners and start-up, shared by both modes;
//!   [`config`]: its command line.
//! - [`admission`]: limits on sessions, handshakes and connection rates,
//!   checked before any work on a connection; [`unanswered`]: a TCP
//!   connection dropped before the server wrote to it is reset, not
//!   closed.
//! - [`tls`], [`metrics`].
//!
//! The crate offers what the binary wires (below); the modules are its
//! own.

mod admission;
mod config;
mod connection;
mod delivery;
mod http;
mod hub;
mod inboxes;
mod metrics;
mod node;
mod outbox;
mod quic;
mod state;
mod tls;
mod transport;
mod unanswered;
mod webtransport;

pub use config::EdgeArgs;
pub use delivery::{to_deliver, Delivery, LocalOutlet};
pub use hub::Hub;
pub use metrics::{serve as serve_metrics, NodeMetrics};
pub use node::{start, write_ready, EdgeDeps, RunningEdge};
