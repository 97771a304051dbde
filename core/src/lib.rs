//! The rules of Samvad that need no I/O: plain data in, decisions out.
//!
//! - [`names`]: user names, group ids, devices, and the ids made of them
//!   (chat ids, history inboxes).
//! - [`session`]: the session protocol as a state machine: hello first, the
//!   token's user is `from`, sizes, rates; it answers with [`session::Action`]s
//!   for its transport to carry out.
//! - [`inbox`]: the inbox rules as a state machine (gap-free sequence
//!   numbers, dedupe, acks and receipts, sync, history, expiry) over
//!   keyspaces as plain data; the store commits what they return.
//! - [`group`]: a group as stored (members, roles, rights, invites);
//!   [`group_rules`]: its changes as a state machine (a change by an actor
//!   → the next version and an event, or a typed refusal).
//! - [`admission`]: whether an envelope may enter its conversation, the
//!   one rule the edge and routing both check, with typed refusals mapped
//!   once to error codes.
//! - [`token`]: access and refresh tokens (JWT, HS256);
//!   [`signed_url`]: short-lived grants for file content.
//! - [`signal`]: the vocabulary of media signaling.
//! - [`token_bucket`]: the rate limiter sessions and throttles share;
//!   [`throttle`]: a bounded map of buckets per key (accounts, addresses).
//! - [`clock`]: the wall clock, read by drivers and passed in.
//! - `fuzzing`: the properties the fuzz targets (`fuzz/`) check.
//!
//! Architecture invariant: this crate does no I/O and keeps no clock of its
//! own. Its `Cargo.toml` names no runtime, socket, disk or broker crate
//! (scripts/test.sh checks `cargo tree`), and every function that depends
//! on time takes `now`.

pub mod admission;
pub mod clock;
#[doc(hidden)]
pub mod fuzzing;
pub mod group;
pub mod group_rules;
pub mod inbox;
pub mod names;
pub mod session;
pub mod signal;
pub mod signed_url;
pub mod throttle;
pub mod token;
mod token_bucket;
