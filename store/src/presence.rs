//! Presence: which live sessions a user has, and on which edge node.
//!
//! The store asks once per batch for every user in it, so a networked
//! implementation (Redis) costs one round trip per batch, not per message.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::RwLock;
use samvad_bus::BoxFuture;

pub use samvad_core::inbox::{LivePresence, PresenceMap, SessionRoute};

/// Why presence could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PresenceError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer within {0:?}")]
    TimedOut(Duration),
}

/// Read as it is now (`samvad serve`): also right for the inboxes a batch
/// reaches only as it is applied (a group's members, a receipt's sender).
impl LivePresence for MemoryPresence {
    fn sessions(&self, user: &str) -> Option<Vec<SessionRoute>> {
        self.users.read().get(user).cloned()
    }
}

pub trait Presence: Send + Sync + 'static {
    /// A session of `user` is live on `route.edge`. An error means the
    /// store may not see it and its live pushes could be missed: the
    /// session must not go live (it is told to reconnect).
    fn register<'a>(
        &'a self,
        user: &'a str,
        route: SessionRoute,
    ) -> BoxFuture<'a, Result<(), PresenceError>>;
    /// The session ended.
    fn unregister<'a>(&'a self, user: &'a str, session: &'a str) -> BoxFuture<'a, ()>;
    /// The live sessions of each of `users`.
    fn lookup<'a>(&'a self, users: &'a [&'a str]) -> BoxFuture<'a, PresenceMap>;
}

/// Presence in one process (`samvad serve`).
#[derive(Default)]
pub struct MemoryPresence {
    users: RwLock<HashMap<String, Vec<SessionRoute>>>,
}

impl Presence for MemoryPresence {
    fn register<'a>(
        &'a self,
        user: &'a str,
        route: SessionRoute,
    ) -> BoxFuture<'a, Result<(), PresenceError>> {
        Box::pin(async move {
            let mut users = self.users.write();
            let sessions = users.entry(user.to_string()).or_default();
            if !sessions.contains(&route) {
                sessions.push(route);
            }
            Ok(())
        })
    }

    fn unregister<'a>(&'a self, user: &'a str, session: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let mut users = self.users.write();
            if let Some(sessions) = users.get_mut(user) {
                sessions.retain(|r| &*r.session != session);
                if sessions.is_empty() {
                    users.remove(user);
                }
            }
        })
    }

    fn lookup<'a>(&'a self, users: &'a [&'a str]) -> BoxFuture<'a, PresenceMap> {
        Box::pin(async move {
            let map = self.users.read();
            users
                .iter()
                .filter_map(|u| map.get(*u).map(|s| (u.to_string(), s.clone())))
                .collect()
        })
    }
}
