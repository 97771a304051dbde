//! Which simulcast layer of a publisher each subscriber gets: its own
//! choice, else what its estimated downlink fits ([`crate::layers`]).

use std::time::Instant;

use samvad_core::signal::{media_event, Layer, AUTO_LAYER};
use str0m::bwe::Bitrate;
use str0m::media::{Mid, Rid};

use super::{MediaError, Pid, Sfu, TrackState};
use crate::layers;

impl Sfu {
    /// The simulcast layer `subscriber` gets of `origin`'s track `mid`.
    pub(super) fn layer_for(&self, subscriber: Pid, origin: Pid, mid: Mid) -> Option<Rid> {
        let track = self
            .participants
            .get(&origin)?
            .tracks_in
            .iter()
            .find(|t| t.mid == mid)?;
        if track.rids.is_empty() {
            return None;
        }
        self.participants
            .get(&subscriber)
            .and_then(|s| s.layer_of(origin))
            .or_else(|| track.default_rid())
    }

    /// A subscriber picks the simulcast layer it gets of a publisher, or
    /// (`auto`) leaves it to its bandwidth again.
    pub(super) fn choose_layer(
        &mut self,
        now: Instant,
        pid: Pid,
        choice: Layer,
    ) -> Result<(), MediaError> {
        let room = self.participants[&pid].room.clone();
        let origin = self.pid_of(&room, &choice.user)?;
        if choice.rid == AUTO_LAYER {
            if let Some(p) = self.participants.get_mut(&pid) {
                p.layers.remove(&origin);
            }
            self.fit_layers(now, pid);
            return Ok(());
        }
        let rid = Rid::from(choice.rid.as_str());
        let tracks: Vec<Mid> = self.participants[&origin]
            .tracks_in
            .iter()
            .filter(|t| t.rids.contains(&rid))
            .map(|t| t.mid)
            .collect();
        if tracks.is_empty() {
            return Err(MediaError::BadRequest(format!(
                "{} sends no layer {:?}",
                choice.user, choice.rid
            )));
        }
        if let Some(p) = self.participants.get_mut(&pid) {
            p.layers.insert(origin, rid);
        }
        // The new layer must start on a keyframe.
        for mid in tracks {
            self.request_keyframe(now, origin, mid, Some(rid), true);
        }
        Ok(())
    }

    /// Fits the simulcast layers `pid` gets (where it did not choose) to
    /// its estimated downlink: see [`layers::allocate`]. A switch starts
    /// on a keyframe and is announced to the subscriber.
    pub(super) fn fit_layers(&mut self, now: Instant, pid: Pid) {
        let Some(s) = self.participants.get(&pid) else {
            return;
        };
        let Some(estimate) = s.estimate else {
            return;
        };
        // What the subscriber gets: fixed streams, and simulcast tracks
        // whose layer is ours to pick.
        let mut fixed = 0;
        let mut desired = 0;
        // (origin, its track's mid) beside each track to fit.
        let mut targets = Vec::new();
        let mut tracks = Vec::new();
        for t in &s.tracks_out {
            let TrackState::Open(_) = t.state else {
                continue;
            };
            let Some(origin) = self.participants.get(&t.origin) else {
                continue;
            };
            if origin.muted || s.not_hearing.contains(&t.origin) {
                continue;
            }
            let Some(track) = origin.tracks_in.iter().find(|i| i.mid == t.origin_mid) else {
                continue;
            };
            let chosen = s.layers.get(&t.origin).copied();
            if track.rids.is_empty() || chosen.is_some() {
                let bps = track.bps(chosen);
                fixed += bps;
                desired += bps;
                continue;
            }
            let layers: Vec<(Rid, u64)> = track
                .rids
                .iter()
                .map(|&rid| (rid, track.bps(Some(rid))))
                .filter(|(_, bps)| *bps > 0)
                .collect();
            desired += layers.iter().map(|(_, bps)| *bps).max().unwrap_or(0);
            targets.push((t.origin, track.mid));
            tracks.push(layers::Track {
                layers,
                // Until bandwidth chose, the subscriber gets the default.
                current: s
                    .auto_layers
                    .get(&t.origin)
                    .copied()
                    .or_else(|| track.default_rid()),
                held: s
                    .lowered
                    .get(&t.origin)
                    .is_some_and(|at| now.duration_since(*at) < layers::RAISE_HOLD),
            });
        }
        let choice = layers::allocate(estimate, fixed, &tracks);
        // (origin, mid, new layer, whether it is lower).
        let switched: Vec<(Pid, Mid, Rid, bool)> = targets
            .into_iter()
            .zip(&tracks)
            .zip(choice)
            .filter_map(|(((origin, mid), track), rid)| {
                let rid = rid.filter(|r| track.current != Some(*r))?;
                let bps = |r: Option<Rid>| {
                    track
                        .layers
                        .iter()
                        .find(|(l, _)| Some(*l) == r)
                        .map(|(_, b)| *b)
                };
                let lower = bps(Some(rid)) < bps(track.current);
                Some((origin, mid, rid, lower))
            })
            .collect();
        if let Some(s) = self.participants.get_mut(&pid) {
            // Probe for what the best layers would need, and only then:
            // probing costs padding packets on the subscriber's downlink.
            let desired = if !tracks.is_empty() {
                layers::probe_for(desired)
            } else {
                0
            };
            s.rtc
                .bwe()
                .set_bitrate(Bitrate::ZERO, Bitrate::bps(desired));
            for (origin, _, rid, lower) in &switched {
                s.auto_layers.insert(*origin, *rid);
                if *lower {
                    s.lowered.insert(*origin, now);
                }
            }
            self.dirty.insert(pid);
        }
        for (origin, mid, rid, _) in switched {
            self.request_keyframe(now, origin, mid, Some(rid), true);
            let user = self.participants[&origin].user.clone();
            self.event(
                pid,
                media_event::Kind::Layer(Layer {
                    user,
                    rid: rid.to_string(),
                }),
            );
        }
    }
}
