//! Presence in Redis, for the cluster: every edge writes its sessions, every
//! store reads them.
//!
//! Layout: one sorted set per user, `<prefix>presence:<user>`, member
//! `<session>@<edge>`, score = the time (ms) the entry expires. Redis 7.0
//! has no per-field TTLs, so expiry is by score: readers ignore members
//! whose score has passed, writers trim them, and the key itself expires
//! after the longest TTL. An edge refreshes the scores of all its sessions
//! every `ttl / 3` (heartbeat); an edge that dies stops refreshing and its
//! sessions drop out by themselves within `ttl`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use redis::aio::ConnectionManager;
use samvad_bus::BoxFuture;

use crate::presence::{Presence, PresenceError, PresenceMap, SessionRoute};

/// How long a lookup waits for Redis to answer before it gives up.
pub const LOOKUP_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

pub struct RedisPresence {
    redis: ConnectionManager,
    prefix: String,
    ttl: Duration,
    /// The sessions this process registered, refreshed by the heartbeat.
    mine: Mutex<HashMap<Arc<str>, (String, SessionRoute)>>,
}

/// How long a write may wait for Redis (reconnecting included): a session
/// waits for its registration before it goes live, and past this it is
/// better told to come back than kept waiting.
const WRITE_TIMEOUT: Duration = Duration::from_secs(3);

fn member(route: &SessionRoute) -> String {
    format!("{}@{}", route.session, route.edge)
}

fn parse_member(m: &str) -> Option<SessionRoute> {
    let (session, edge) = m.split_once('@')?;
    Some(SessionRoute {
        session: session.into(),
        edge: edge.into(),
    })
}

impl RedisPresence {
    /// Connects to `url` (`redis://host:port/db`); keys start with `prefix`.
    pub async fn connect(
        url: &str,
        prefix: &str,
        ttl: Duration,
    ) -> Result<Arc<Self>, PresenceError> {
        let client = redis::Client::open(url)?;
        let redis = ConnectionManager::new(client).await?;
        let presence = Arc::new(RedisPresence {
            redis,
            prefix: prefix.to_string(),
            ttl,
            mine: Mutex::new(HashMap::new()),
        });
        tokio::spawn(heartbeat(Arc::downgrade(&presence)));
        Ok(presence)
    }

    fn key(&self, user: &str) -> String {
        format!("{}presence:{user}", self.prefix)
    }

    /// Runs `pipe`, waiting up to `patience` for a Redis that is coming
    /// back: the first command on a connection to a Redis that restarted
    /// fails (the manager reconnects on it), and a restart takes a second
    /// or two.
    async fn query_patiently<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
        patience: Duration,
    ) -> Result<T, PresenceError> {
        let mut conn = self.redis.clone();
        let started = std::time::Instant::now();
        loop {
            let left = patience.saturating_sub(started.elapsed());
            match tokio::time::timeout(left, pipe.query_async::<T>(&mut conn)).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(e)) if started.elapsed() < patience => {
                    tracing::warn!(error = %e, "presence query failed; again");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => return Err(PresenceError::TimedOut(patience)),
            }
        }
    }

    /// Writes `sessions` with a fresh expiry, in one round trip.
    async fn write(&self, sessions: &[(String, SessionRoute)]) -> Result<(), PresenceError> {
        if sessions.is_empty() {
            return Ok(());
        }
        let now = samvad_core::clock::unix_ms();
        let expires = now + self.ttl.as_millis() as i64;
        let mut pipe = redis::pipe();
        for (user, route) in sessions {
            let key = self.key(user);
            pipe.zadd(&key, member(route), expires)
                .ignore()
                .zrembyscore(&key, "-inf", now)
                .ignore()
                .pexpire(&key, self.ttl.as_millis() as i64)
                .ignore();
        }
        self.query_patiently::<()>(&pipe, WRITE_TIMEOUT).await
    }
}

/// Refreshes this process's sessions every ttl/3 until the presence is
/// dropped.
async fn heartbeat(presence: std::sync::Weak<RedisPresence>) {
    let period = match presence.upgrade() {
        Some(p) => p.ttl / 3,
        None => return,
    };
    let mut ticker = tokio::time::interval(period);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let Some(p) = presence.upgrade() else { return };
        let sessions: Vec<(String, SessionRoute)> = p.mine.lock().values().cloned().collect();
        for chunk in sessions.chunks(512) {
            if let Err(e) = p.write(chunk).await {
                tracing::warn!(error = %e, "presence heartbeat failed; retrying next period");
                break;
            }
        }
    }
}

impl Presence for RedisPresence {
    fn register<'a>(
        &'a self,
        user: &'a str,
        route: SessionRoute,
    ) -> BoxFuture<'a, Result<(), PresenceError>> {
        Box::pin(async move {
            let written = self.write(&[(user.to_string(), route.clone())]).await;
            match &written {
                // Refreshed by the heartbeat from now on.
                Ok(()) => {
                    self.mine
                        .lock()
                        .insert(route.session.clone(), (user.to_string(), route));
                }
                // Not live: until a heartbeat wrote it, pushes to it would
                // be missed with nothing to tell the client. The session is
                // refused and its client reconnects.
                Err(e) => tracing::warn!(error = %e, user, "presence register failed"),
            }
            written
        })
    }

    fn unregister<'a>(&'a self, user: &'a str, session: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let Some((_, route)) = self.mine.lock().remove(session) else {
                return;
            };
            let mut conn = self.redis.clone();
            let removed: Result<(), _> = redis::cmd("ZREM")
                .arg(self.key(user))
                .arg(member(&route))
                .query_async(&mut conn)
                .await;
            if let Err(e) = removed {
                tracing::warn!(error = %e, user, "presence unregister failed; expires by TTL");
            }
        })
    }

    /// Waits up to [`LOOKUP_PATIENCE`] for a Redis that does not answer.
    fn lookup<'a>(&'a self, users: &'a [&'a str]) -> BoxFuture<'a, PresenceMap> {
        Box::pin(async move {
            if users.is_empty() {
                return PresenceMap::new();
            }
            let now = samvad_core::clock::unix_ms();
            let mut pipe = redis::pipe();
            for user in users {
                pipe.zrangebyscore(self.key(user), now, "+inf");
            }
            // Waiting for a restarting Redis keeps the batch's live pushes
            // (and spares online users push notifications). Beyond
            // LOOKUP_PATIENCE the batch goes on without presence:
            // deliveries stay in the inboxes and reach the users on their
            // next sync; nothing is lost.
            let members: Vec<Vec<String>> = match self.query_patiently(&pipe, LOOKUP_PATIENCE).await
            {
                Ok(members) => members,
                Err(e) => {
                    tracing::warn!(error = %e, "presence lookup failed; going on without");
                    return PresenceMap::new();
                }
            };
            users
                .iter()
                .zip(members)
                .filter(|(_, m)| !m.is_empty())
                .map(|(user, m)| {
                    (
                        user.to_string(),
                        m.iter().filter_map(|s| parse_member(s)).collect(),
                    )
                })
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_round_trip() {
        let route = SessionRoute {
            session: "s-1".into(),
            edge: "edge.a".into(),
        };
        assert_eq!(parse_member(&member(&route)), Some(route));
        assert_eq!(parse_member("no-at-sign"), None);
    }
}
