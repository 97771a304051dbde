//! Native media participants on str0m: [`Peer`] is one peer connection
//! that publishes synthetic Opus and VP8 and counts what it receives;
//! [`Participant`] joins a Samvad room over its chat session. The load
//! harness drives the same [`Peer`] into a Janus videoroom, so that the
//! same publishers can be measured against both.

use std::collections::HashMap;
use std::time::Instant;

use serde_json::Value;

mod participant;
mod peer;

pub use participant::Participant;
pub use peer::{Peer, PeerState};

/// What a participant sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publish {
    /// Nothing: a subscriber (a data channel carries the transport).
    Nothing,
    /// Opus and VP8.
    AudioVideo,
    /// Opus, and VP8 in two simulcast layers, `h` and `l`.
    Simulcast,
}

/// What happened to a participant, for tests and reports.
#[derive(Debug, Default, Clone)]
pub struct Received {
    /// Frames received per (publisher, `audio` | `video`).
    pub frames: HashMap<(String, String), u64>,
    /// When the first video frame of each publisher arrived.
    pub first_video: HashMap<String, Instant>,
    /// The size of the last video frame from each publisher.
    pub last_video_size: HashMap<String, usize>,
    /// Bytes of video received from each publisher.
    pub video_bytes: HashMap<String, u64>,
    /// Events the server sent (`event` signals), in order.
    pub events: Vec<Value>,
    /// `error` signals.
    pub errors: Vec<Value>,
    /// NACKs this peer sent for media it receives (what it asked to be
    /// sent again), the latest count per stream (str0m's stats, once a
    /// second).
    pub nacks_sent: HashMap<String, u64>,
    /// NACKs this peer got for media it sends.
    pub nacks_received: HashMap<String, u64>,
}

impl Received {
    pub fn count(&self, from: &str, kind: &str) -> u64 {
        self.frames
            .get(&(from.to_string(), kind.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// The (frames, bytes) of video received from `from` so far.
    pub fn video(&self, from: &str) -> (u64, u64) {
        (
            self.count(from, "video"),
            self.video_bytes.get(from).copied().unwrap_or(0),
        )
    }

    /// NACKs (sent, received) over every stream, as of the last stats.
    pub fn nacks(&self) -> (u64, u64) {
        (
            self.nacks_sent.values().sum(),
            self.nacks_received.values().sum(),
        )
    }

    /// Frames of every publisher and kind.
    pub fn total(&self) -> u64 {
        self.frames.values().sum()
    }
}
