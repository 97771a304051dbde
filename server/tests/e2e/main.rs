//! The server end to end: the real `samvad` binary on free loopback ports
//! and temporary directories, reached over real sockets through the native
//! client (`samvad-client`), with a real Kafka and redis-server where a
//! test needs them (samvad-testkit).
//!
//! One test binary (one link of the server's dependencies, not one per
//! file), a module per area; `common` holds what the modules share.

mod common;

mod accounts;
mod bad_input;
mod cluster;
mod delivery;
mod files;
mod groups;
mod history;
mod media;
mod nemesis;
mod openapi;
mod phones;
mod push;
mod takeover;
mod typing;
