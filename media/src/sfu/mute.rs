//! Muting: oneself (nothing of theirs is forwarded), someone for
//! oneself only, or someone for everyone (the group's mute right).

use std::time::Instant;

use samvad_core::signal::{media_event, Mute, MuteScope};

use super::{MediaError, Pid, Sfu};

impl Sfu {
    pub(super) fn pid_of(&self, room: &str, user: &str) -> Result<Pid, MediaError> {
        self.rooms
            .members(room)
            .iter()
            .copied()
            .find(|pid| self.participants[pid].user == user)
            .ok_or_else(|| MediaError::NoSuchParticipant(user.to_string()))
    }

    pub(super) fn mute(
        &mut self,
        now: Instant,
        pid: Pid,
        mute: Mute,
        may_mute: bool,
    ) -> Result<(), MediaError> {
        let scope = MuteScope::try_from(mute.scope)
            .map_err(|_| MediaError::BadRequest(format!("mute: no scope {}", mute.scope)))?;
        let (room, me) = {
            let p = &self.participants[&pid];
            (p.room.clone(), p.user.clone())
        };
        match scope {
            MuteScope::Myself => {
                self.set_muted(now, pid, mute.muted);
                self.broadcast(
                    &room,
                    None,
                    media_event::Kind::Muted(media_event::Muted {
                        user: me.clone(),
                        by: me,
                        muted: mute.muted,
                    }),
                );
            }
            MuteScope::ForMe => {
                let target = self.pid_of(&room, &mute.user)?;
                let p = self
                    .participants
                    .get_mut(&pid)
                    .expect("checked by the caller");
                if mute.muted {
                    p.not_hearing.insert(target);
                } else {
                    p.not_hearing.remove(&target);
                    self.request_keyframes_of(now, target);
                }
            }
            MuteScope::Everyone => {
                if !may_mute {
                    return Err(MediaError::Forbidden);
                }
                let target = self.pid_of(&room, &mute.user)?;
                self.set_muted(now, target, mute.muted);
                // Everyone hears of it, the muted participant first of all.
                self.broadcast(
                    &room,
                    None,
                    media_event::Kind::Muted(media_event::Muted {
                        user: mute.user,
                        by: me,
                        muted: mute.muted,
                    }),
                );
            }
        }
        Ok(())
    }

    pub(super) fn set_muted(&mut self, now: Instant, pid: Pid, muted: bool) {
        if let Some(p) = self.participants.get_mut(&pid) {
            let was = p.muted;
            p.muted = muted;
            if was && !muted {
                self.request_keyframes_of(now, pid);
            }
        }
    }
}
