//! The `samvad` binary's library: the wiring of every role. One process
//! with all of them (`samvad serve`: embedded bus, fjall, in-memory
//! presence) or one role per process over Kafka and Redis (the cluster).
//! The roles themselves are crates: sessions `samvad-edge`, REST
//! `samvad-api`, routing `samvad-router`, inboxes `samvad-store`, push
//! `samvad-push`, media `samvad-media`.
//!
//! - [`serve`]: every role in one process.
//! - [`cluster`]: `samvad edge | router | store | push | media`.
//! - [`config`]: the command line of each.
//! - [`auth`]: the secrets on disk that `serve` signs tokens with;
//!   [`process`]: a role process's database and its wait on its roles.

pub mod auth;
pub mod cluster;
pub mod config;
pub mod process;
pub mod serve;
