//! Presence as the inbox rules read it: which live sessions a user has,
//! and on which edge. The stores of presence (in memory, Redis) are the
//! store crate's; the rules see a snapshot or a live map through
//! [`LivePresence`].

use std::collections::HashMap;
use std::sync::Arc;

/// Where one live session can be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRoute {
    pub session: Arc<str>,
    pub edge: Arc<str>,
}

/// The live sessions of some users.
pub type PresenceMap = HashMap<String, Vec<SessionRoute>>;

/// Presence as the inbox rules read it while they apply a batch: the live
/// sessions of one user, `None` if it has none.
pub trait LivePresence {
    fn sessions(&self, user: &str) -> Option<Vec<SessionRoute>>;
}

/// A snapshot taken for a batch (the cluster reads Redis once per batch).
impl LivePresence for PresenceMap {
    fn sessions(&self, user: &str) -> Option<Vec<SessionRoute>> {
        self.get(user).cloned()
    }
}
