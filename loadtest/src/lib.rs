//! `samvad-load`: the load harness, built on the native client
//! (`samvad-client`).
//!
//! [`scenario`] holds the load scenarios, [`report`] the math of their
//! reports, [`plot`] their SVG plots, [`compare`] the side-by-side tables,
//! [`target`] what the harness knows of the server under test, [`system`]
//! the sessions of Samvad and of the peers it is compared with (Centrifugo,
//! ejabberd, NATS), and [`janus`] a Janus videoroom participant for the
//! media comparison.

pub mod compare;
pub mod janus;
pub mod plot;
pub mod report;
pub mod scenario;
pub mod system;
pub mod target;
