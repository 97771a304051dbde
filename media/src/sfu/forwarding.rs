//! A publisher's frames to every subscriber that takes them, and the
//! keyframe requests that start or repair a subscriber's video.

use std::time::Instant;

use str0m::media::{KeyframeRequestKind, MediaData, MediaKind, Mid, Rid};

use super::{Pid, Sfu, TrackState, KEYFRAME_INTERVAL};
use crate::layers;

impl Sfu {
    /// Writes a publisher's frame to every subscriber that takes it.
    pub(super) fn forward(&mut self, origin: Pid, data: &MediaData) {
        // Per frame: no allocation, one pass over the room.
        let (room, default_rid) = {
            let Some(p) = self.participants.get_mut(&origin) else {
                return;
            };
            let Some(track) = p.tracks_in.iter_mut().find(|t| t.mid == data.mid) else {
                return;
            };
            track.record(
                data.rid,
                layers::wire_bytes(data.data.len()),
                data.network_time,
            );
            if p.muted {
                return;
            }
            let default_rid = data.rid.and_then(|_| track.default_rid());
            (p.room.clone(), default_rid)
        };
        let members = self.rooms.members(&room);
        for &sub in members.iter().filter(|s| **s != origin) {
            let Some(s) = self.participants.get_mut(&sub) else {
                continue;
            };
            if s.not_hearing.contains(&origin) {
                continue;
            }
            // Of a simulcast track, only the layer this subscriber gets.
            if let Some(rid) = data.rid {
                if s.layer_of(origin).or(default_rid) != Some(rid) {
                    continue;
                }
            }
            let Some(mid) = s.tracks_out.iter().find_map(|t| match t.state {
                TrackState::Open(mid) if t.origin == origin && t.origin_mid == data.mid => {
                    Some(mid)
                }
                _ => None,
            }) else {
                continue;
            };
            let Some(writer) = s.rtc.writer(mid) else {
                continue;
            };
            let Some(pt) = writer.match_params(data.params) else {
                continue;
            };
            if writer
                .write(pt, data.network_time, data.time, data.data.clone())
                .is_ok()
            {
                self.forwarded += 1;
            } else {
                s.rtc.disconnect();
            }
            self.dirty.insert(sub);
        }
    }

    /// Asks publisher `pid` for a keyframe on its track `mid` (layer
    /// `rid`), at most every [`KEYFRAME_INTERVAL`] unless `now_please`.
    pub(super) fn request_keyframe(
        &mut self,
        now: Instant,
        pid: Pid,
        mid: Mid,
        rid: Option<Rid>,
        now_please: bool,
    ) {
        let Some(p) = self.participants.get_mut(&pid) else {
            return;
        };
        let Some(track) = p.tracks_in.iter_mut().find(|t| t.mid == mid) else {
            return;
        };
        if track.kind != MediaKind::Video {
            return;
        }
        if !now_please
            && track
                .last_keyframe_request
                .is_some_and(|t| now.duration_since(t) < KEYFRAME_INTERVAL)
        {
            return;
        }
        track.last_keyframe_request = Some(now);
        if let Some(mut writer) = p.rtc.writer(mid) {
            let _ = writer.request_keyframe(rid, KeyframeRequestKind::Pli);
        }
        self.dirty.insert(pid);
    }

    /// Keyframes on every video track (every layer) of `pid`.
    pub(super) fn request_keyframes_of(&mut self, now: Instant, pid: Pid) {
        let wanted: Vec<(Mid, Option<Rid>)> = self.participants[&pid]
            .tracks_in
            .iter()
            .filter(|t| t.kind == MediaKind::Video)
            .flat_map(|t| {
                let rids: Vec<Option<Rid>> = if t.rids.is_empty() {
                    vec![None]
                } else {
                    t.rids.iter().copied().map(Some).collect()
                };
                rids.into_iter().map(move |r| (t.mid, r))
            })
            .collect();
        for (mid, rid) in wanted {
            self.request_keyframe(now, pid, mid, rid, true);
        }
    }
}
