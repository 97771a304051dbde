//! One participant: its `Rtc`, the tracks it publishes and those it
//! receives, and what it chose to hear.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use str0m::change::SdpPendingOffer;
use str0m::media::{MediaKind, Mid, Rid};
use str0m::Rtc;

use super::{Pid, SessionAddr};
use crate::layers::Rate;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TrackState {
    /// To be offered at the next negotiation.
    ToOpen,
    Negotiating(Mid),
    Open(Mid),
}

/// One publisher's track, sent on to a subscriber.
#[derive(Debug)]
pub(super) struct TrackOut {
    pub(super) origin: Pid,
    pub(super) origin_mid: Mid,
    pub(super) kind: MediaKind,
    pub(super) state: TrackState,
}

#[derive(Debug)]
pub(super) struct TrackIn {
    pub(super) mid: Mid,
    pub(super) kind: MediaKind,
    /// Simulcast layers the publisher sends (empty: none).
    pub(super) rids: Vec<Rid>,
    /// What each layer (or the track, `None`) costs, as measured.
    pub(super) rates: Vec<(Option<Rid>, Rate)>,
    pub(super) last_keyframe_request: Option<Instant>,
}

impl TrackIn {
    /// The layer a subscriber gets unless it chose: `h` (the convention
    /// for the highest) if sent, else the first announced.
    pub(super) fn default_rid(&self) -> Option<Rid> {
        let high = Rid::from("h");
        if self.rids.contains(&high) {
            Some(high)
        } else {
            self.rids.first().copied()
        }
    }

    /// The measured bitrate of layer `rid` (or of the whole track).
    pub(super) fn bps(&self, rid: Option<Rid>) -> u64 {
        self.rates
            .iter()
            .find(|(r, _)| *r == rid)
            .map_or(0, |(_, rate)| rate.bps())
    }

    pub(super) fn record(&mut self, rid: Option<Rid>, bytes: usize, now: Instant) {
        match self.rates.iter_mut().find(|(r, _)| *r == rid) {
            Some((_, rate)) => rate.record(bytes, now),
            None => {
                let mut rate = Rate::new(now);
                rate.record(bytes, now);
                self.rates.push((rid, rate));
            }
        }
    }
}

pub(super) struct Participant {
    /// Shared: forwarding looks the room up per frame without allocating.
    pub(super) room: Arc<str>,
    pub(super) user: String,
    pub(super) session: SessionAddr,
    pub(super) rtc: Rtc,
    pub(super) ufrag: String,
    pub(super) tracks_in: Vec<TrackIn>,
    pub(super) tracks_out: Vec<TrackOut>,
    pub(super) pending: Option<SdpPendingOffer>,
    /// Muted by themselves or for everyone: nothing of theirs is forwarded.
    pub(super) muted: bool,
    /// Participants this one muted for itself.
    pub(super) not_hearing: HashSet<Pid>,
    /// The simulcast layer this one chose per publisher.
    pub(super) layers: HashMap<Pid, Rid>,
    /// The layer its bandwidth allows per publisher, where it did not
    /// choose.
    pub(super) auto_layers: HashMap<Pid, Rid>,
    /// When bandwidth last lowered its layer of a publisher.
    pub(super) lowered: HashMap<Pid, Instant>,
    /// Its downlink's estimated bitrate (str0m's BWE), once known.
    pub(super) estimate: Option<u64>,
    /// When its `Rtc` wants time next.
    pub(super) deadline: Instant,
}

impl Participant {
    /// The layer of `origin`'s video this one gets, if chosen (by itself,
    /// or for it by bandwidth).
    pub(super) fn layer_of(&self, origin: Pid) -> Option<Rid> {
        self.layers
            .get(&origin)
            .or_else(|| self.auto_layers.get(&origin))
            .copied()
    }
}

pub(super) fn kind_name(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Audio => "audio",
        MediaKind::Video => "video",
    }
}
