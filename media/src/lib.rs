//! Samvad's media rooms: an SFU on str0m (the `media` role).
//!
//! The rules are a state machine with no sockets, no clock and no
//! randomness of its own ([`Sfu`]); a thin driver ([`MediaRole`]) runs it
//! over one UDP socket and the bus. Architecture invariant: nothing under
//! [`sfu`] reads the time or does I/O, so the whole SFU is tested with
//! str0m clients on a simulated network in virtual time
//! (`media/tests/sfu`).
//!
//! - [`sfu`]: rooms, one `Rtc` per participant, negotiation, forwarding,
//!   simulcast, muting.
//! - [`layers`]: measured bitrates and the choice of simulcast layers
//!   that fit a downlink: pure functions.
//! - [`demux`]: which participant a UDP packet is for (ICE ufrag, then
//!   source address), plain data.
//! - [`role`]: the I/O loop: the media socket, the node's `media.<node>`
//!   topic (signals from sessions; edges check group membership and the
//!   mute right before they produce them), and signals back to sessions
//!   through their edge's `edge.<node>`. [`MediaRouting`]: where an edge
//!   sends a room's signals.
//! - [`pins`]: in a cluster, which node a room lives on (Redis leases).
//! - [`counters`]: the role's Prometheus counters.
//!
//! The signaling vocabulary is [`samvad_core::signal`].

mod counters;
mod demux;
pub mod fuzzing;
mod layers;
mod pins;
mod role;
mod sfu;

pub use counters::MediaCounters;
pub use pins::RoomPins;
pub use role::{open_signals, MediaRole, MediaRouting, RoutingRefusal};
pub use sfu::{generate_dtls_cert, MediaError, Out, SessionAddr, Sfu, SignalIn};
