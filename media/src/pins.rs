//! Which media node a room lives on, in a cluster: a Redis lease per room.
//!
//! Media nodes announce themselves in a sorted set (score = when their
//! announcement runs out) and renew it, and the leases of the rooms they
//! host, every third of the lease time. The first join of a room picks a
//! live node and pins the room to it (one Lua script: the pin is taken
//! once, and a pin to a node that stopped announcing itself is replaced);
//! every later signal of the room goes to that node. A node that dies
//! stops renewing: its rooms' leases run out, and a rejoin lands on a live
//! node.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;

/// Pins a room to a live node. KEYS: the room's pin, the node set. ARGV:
/// now (ms), lease (ms), a random number to pick with. Returns the node,
/// or nil when no node is live.
const PIN_SCRIPT: &str = include_str!("lua/pin_room.lua");

/// Renews the leases of the rooms a node still holds. KEYS: room pins.
/// ARGV: node, lease (ms).
const RENEW_SCRIPT: &str = include_str!("lua/renew_pins.lua");

#[derive(Clone)]
pub struct RoomPins {
    redis: ConnectionManager,
    prefix: String,
    lease: Duration,
    pin: Arc<redis::Script>,
    renew: Arc<redis::Script>,
}

impl RoomPins {
    pub async fn connect(url: &str, prefix: &str, lease: Duration) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)?;
        Ok(RoomPins {
            redis: ConnectionManager::new(client).await?,
            prefix: prefix.to_string(),
            lease,
            pin: Arc::new(redis::Script::new(PIN_SCRIPT)),
            renew: Arc::new(redis::Script::new(RENEW_SCRIPT)),
        })
    }

    pub fn lease(&self) -> Duration {
        self.lease
    }

    fn room_key(&self, room: &str) -> String {
        format!("{}media:room:{room}", self.prefix)
    }

    fn nodes_key(&self) -> String {
        format!("{}media:nodes", self.prefix)
    }

    /// The node of `room`, pinning it to a live node if it has none (a
    /// join); `None` if no media node is live.
    pub async fn pin(&self, room: &str) -> anyhow::Result<Option<String>> {
        Ok(self
            .pin
            .key(self.room_key(room))
            .key(self.nodes_key())
            .arg(samvad_core::clock::unix_ms() as u64)
            .arg(self.lease.as_millis() as u64)
            .arg(rand::random::<u32>())
            .invoke_async(&mut self.redis.clone())
            .await?)
    }

    /// The node `room` is pinned to, if any (signals after the join).
    pub async fn node_of(&self, room: &str) -> anyhow::Result<Option<String>> {
        Ok(redis::cmd("GET")
            .arg(self.room_key(room))
            .query_async(&mut self.redis.clone())
            .await?)
    }

    /// The nodes announced live.
    pub async fn live_nodes(&self) -> anyhow::Result<Vec<String>> {
        Ok(redis::cmd("ZRANGEBYSCORE")
            .arg(self.nodes_key())
            .arg(format!("({}", samvad_core::clock::unix_ms() as u64))
            .arg("+inf")
            .query_async(&mut self.redis.clone())
            .await?)
    }

    /// A node says it is alive, and keeps `rooms`.
    pub async fn renew(&self, node: &str, rooms: &[String]) -> anyhow::Result<()> {
        let until = (samvad_core::clock::unix_ms() as u64) + self.lease.as_millis() as u64;
        redis::cmd("ZADD")
            .arg(self.nodes_key())
            .arg(until)
            .arg(node)
            .query_async::<()>(&mut self.redis.clone())
            .await?;
        if !rooms.is_empty() {
            let mut call = self.renew.prepare_invoke();
            for room in rooms {
                call.key(self.room_key(room));
            }
            call.arg(node)
                .arg(self.lease.as_millis() as u64)
                .invoke_async::<()>(&mut self.redis.clone())
                .await?;
        }
        Ok(())
    }
}
