//! `samvad-load`: the native Samvad client library, and the load harness
//! built on it.
//!
//! [`client::Client`] speaks all three transports (WebTransport, native
//! QUIC `samvad/1`, WebSocket) with the same frames; the end-to-end tests of
//! the server use it, so what they prove is what a native client gets.
//! [`scenario`] holds the load scenarios, [`report`] the math of their
//! reports, [`plot`] their SVG plots, [`compare`] the side-by-side tables, [`target`] what the harness knows of the server under test, [`system`]
//! the sessions of Samvad and of the peers it is compared with (ejabberd,
//! NATS).

pub mod client;
pub mod compare;
pub mod media;
pub mod plot;
pub mod report;
pub mod rest;
pub mod scenario;
pub mod system;
pub mod target;
