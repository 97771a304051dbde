//! Offers and answers, both ways: a join is the participant's offer and
//! our answer; a publisher's new tracks are offered to everyone else in
//! the room, one negotiation at a time per participant.

use std::collections::{HashMap, HashSet};

use rand::distr::{Alphanumeric, SampleString};
use rand::rngs::StdRng;
use samvad_core::signal::{media_event, SignalKind};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::Direction;
use str0m::{Candidate, IceCreds, Rtc};

use super::{
    kind_name, MediaError, Participant, Pid, SessionAddr, Sfu, TrackOut, TrackState,
    INITIAL_ESTIMATE,
};
use std::time::Instant;

impl Sfu {
    pub(super) fn join(
        &mut self,
        now: Instant,
        session: SessionAddr,
        user: &str,
        room: &str,
        offer: &str,
    ) -> Result<(), MediaError> {
        let offer = SdpOffer::from_sdp_string(offer)
            .map_err(|_| MediaError::BadSdp("a join carries an SDP offer".into()))?;
        let ufrag = random_token(&mut self.rng, 16);
        let mut rtc = Rtc::builder()
            .enable_bwe(Some(INITIAL_ESTIMATE))
            .set_ice_lite(true)
            .set_dtls_cert(self.dtls_cert.clone())
            .set_local_ice_credentials(IceCreds {
                ufrag: ufrag.clone(),
                pass: random_token(&mut self.rng, 24),
            })
            .build(now);
        let candidate = Candidate::host(self.addr, "udp")
            .map_err(|e| MediaError::Refused(format!("host candidate: {e}")))?;
        rtc.add_local_candidate(candidate);
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| MediaError::Refused(e.to_string()))?;
        let pid = self.next_id;
        self.next_id += 1;
        // Every track already published in the room is to be offered.
        let members = self.rooms.members(room).to_vec();
        let mut tracks_out = Vec::new();
        let mut roster = Vec::new();
        for other in &members {
            let p = &self.participants[other];
            roster.push(p.user.clone());
            for t in &p.tracks_in {
                tracks_out.push(TrackOut {
                    origin: *other,
                    origin_mid: t.mid,
                    kind: t.kind,
                    state: TrackState::ToOpen,
                });
            }
        }
        self.demux.add(ufrag.clone(), pid);
        self.participants.insert(
            pid,
            Participant {
                room: room.into(),
                user: user.to_string(),
                session: session.clone(),
                rtc,
                ufrag,
                tracks_in: Vec::new(),
                tracks_out,
                pending: None,
                muted: false,
                not_hearing: HashSet::new(),
                layers: HashMap::new(),
                auto_layers: HashMap::new(),
                lowered: HashMap::new(),
                estimate: None,
                deadline: now,
            },
        );
        self.rooms.add(room, session, pid);
        self.dirty.insert(pid);
        self.signal(pid, SignalKind::Answer(answer.to_sdp_string()));
        self.event(
            pid,
            media_event::Kind::Participants(media_event::Participants { users: roster }),
        );
        self.broadcast(room, Some(pid), media_event::Kind::Joined(user.to_string()));
        Ok(())
    }

    /// The participant's answer to our offer.
    pub(super) fn answer(
        &mut self,
        now: Instant,
        pid: Pid,
        answer: &str,
    ) -> Result<(), MediaError> {
        let answer = SdpAnswer::from_sdp_string(answer)
            .map_err(|_| MediaError::BadSdp("an answer carries an SDP answer".into()))?;
        let p = self
            .participants
            .get_mut(&pid)
            .ok_or(MediaError::NotJoined)?;
        let pending = p
            .pending
            .take()
            .ok_or_else(|| MediaError::BadRequest("no offer of ours is waiting".into()))?;
        p.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| MediaError::Refused(e.to_string()))?;
        self.dirty.insert(pid);
        let mut opened = Vec::new();
        for t in &mut p.tracks_out {
            if let TrackState::Negotiating(mid) = t.state {
                t.state = TrackState::Open(mid);
                opened.push((t.origin, t.origin_mid));
            }
        }
        // A new subscriber should see video at once: ask the publishers.
        for (origin, mid) in opened {
            let rid = self.layer_for(pid, origin, mid);
            self.request_keyframe(now, origin, mid, rid, true);
        }
        Ok(())
    }

    /// A renegotiation the participant starts (it publishes more).
    pub(super) fn offer(&mut self, pid: Pid, offer: &str) -> Result<(), MediaError> {
        let offer = SdpOffer::from_sdp_string(offer)
            .map_err(|_| MediaError::BadSdp("an offer carries an SDP offer".into()))?;
        let p = self
            .participants
            .get_mut(&pid)
            .ok_or(MediaError::NotJoined)?;
        // Theirs wins over ours: ours is made again afterwards.
        p.pending = None;
        for t in &mut p.tracks_out {
            if let TrackState::Negotiating(_) = t.state {
                t.state = TrackState::ToOpen;
            }
        }
        let answer = p
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| MediaError::Refused(e.to_string()))?;
        self.dirty.insert(pid);
        self.signal(pid, SignalKind::Answer(answer.to_sdp_string()));
        Ok(())
    }

    /// Offers the tracks waiting to be sent to each participant that has
    /// no offer of ours outstanding.
    pub(super) fn negotiate(&mut self) {
        let mut offers = Vec::new();
        for (pid, p) in self.participants.iter_mut() {
            if p.pending.is_some() || !p.tracks_out.iter().any(|t| t.state == TrackState::ToOpen) {
                continue;
            }
            let mut change = p.rtc.sdp_api();
            let mut announced = Vec::new();
            for t in &mut p.tracks_out {
                if t.state == TrackState::ToOpen {
                    let mid = change.add_media(t.kind, Direction::SendOnly, None, None, None);
                    t.state = TrackState::Negotiating(mid);
                    announced.push((t.origin, t.kind, mid));
                }
            }
            if let Some((offer, pending)) = change.apply() {
                p.pending = Some(pending);
                self.dirty.insert(*pid);
                offers.push((*pid, offer.to_sdp_string(), announced));
            }
        }
        for (pid, offer, announced) in offers {
            // Which mid carries whose track, before the offer itself.
            for (origin, kind, mid) in announced {
                let user = self
                    .participants
                    .get(&origin)
                    .map(|o| o.user.clone())
                    .unwrap_or_default();
                self.event(
                    pid,
                    media_event::Kind::Track(media_event::Track {
                        user,
                        kind: kind_name(kind).into(),
                        mid: mid.to_string(),
                    }),
                );
            }
            self.signal(pid, SignalKind::Offer(offer));
        }
    }
}

/// ICE credentials: letters and digits from the SFU's random source.
fn random_token(rng: &mut StdRng, len: usize) -> String {
    Alphanumeric.sample_string(rng, len)
}
