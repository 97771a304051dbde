//! Who is in which room on this node, and which participant a session's
//! signals about a room are for. Plain data: the SFU keeps it in step
//! with its participants.

use std::collections::HashMap;

use super::{Pid, SessionAddr};

#[derive(Debug, Default)]
pub(super) struct Rooms {
    /// Each room's participants, in the order they joined.
    members: HashMap<String, Vec<Pid>>,
    /// A session is in a room at most once.
    by_session: HashMap<(SessionAddr, String), Pid>,
}

impl Rooms {
    /// The participant `session` is in `room` as, if it joined.
    pub(super) fn participant(&self, session: &SessionAddr, room: &str) -> Option<Pid> {
        self.by_session
            .get(&(session.clone(), room.to_string()))
            .copied()
    }

    pub(super) fn add(&mut self, room: &str, session: SessionAddr, pid: Pid) {
        self.members.entry(room.to_string()).or_default().push(pid);
        self.by_session.insert((session, room.to_string()), pid);
    }

    /// `pid` leaves `room`; a room nobody is in is forgotten.
    pub(super) fn remove(&mut self, room: &str, session: &SessionAddr, pid: Pid) {
        self.by_session.remove(&(session.clone(), room.to_string()));
        if let Some(members) = self.members.get_mut(room) {
            members.retain(|m| *m != pid);
            if members.is_empty() {
                self.members.remove(room);
            }
        }
    }

    /// The participants of `room`, in the order they joined.
    pub(super) fn members(&self, room: &str) -> &[Pid] {
        self.members.get(room).map_or(&[], Vec::as_slice)
    }

    /// Every participant `session` is, one per room.
    pub(super) fn of_session(&self, session: &SessionAddr) -> Vec<Pid> {
        self.by_session
            .iter()
            .filter(|((s, _), _)| s == session)
            .map(|(_, pid)| *pid)
            .collect()
    }

    /// The rooms with anyone in them.
    pub(super) fn names(&self) -> Vec<String> {
        self.members.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(name: &str) -> SessionAddr {
        SessionAddr {
            edge: "e1".into(),
            session: name.into(),
        }
    }

    #[test]
    fn a_room_lists_its_participants_in_join_order_and_is_forgotten_when_empty() {
        let mut rooms = Rooms::default();
        rooms.add("g1", session("a"), 1);
        rooms.add("g1", session("b"), 2);
        rooms.add("g2", session("a"), 3);
        assert_eq!(rooms.members("g1"), [1, 2]);
        assert_eq!(rooms.participant(&session("a"), "g2"), Some(3));
        assert_eq!(rooms.participant(&session("b"), "g2"), None);
        let mut of_a = rooms.of_session(&session("a"));
        of_a.sort();
        assert_eq!(of_a, [1, 3]);

        rooms.remove("g1", &session("a"), 1);
        rooms.remove("g1", &session("b"), 2);
        assert!(rooms.members("g1").is_empty());
        assert_eq!(rooms.names(), ["g2"]);
        assert_eq!(rooms.participant(&session("a"), "g1"), None);
    }
}
