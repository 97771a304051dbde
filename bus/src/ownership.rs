//! Which node of a role owns which partitions of a topic, by leases in
//! Redis (store nodes own `deliver` partitions, routers `inbound` ones).
//!
//! The broker's consumer groups cannot be trusted with this (tansu never
//! hands a departed member's partitions on; ARCHITECTURE.md), and a store's
//! inbox state must follow its partition anyway. So every store node:
//!
//! - announces itself in `<prefix>nodes:<topic>` (sorted set, score =
//!   expiry);
//! - renews the leases it holds (`<prefix>lease:<topic>:<p>` = its node
//!   name, with a TTL), and claims free ones up to its fair share
//!   (⌈partitions / live nodes⌉), lowest partition first;
//! - gives back leases above its share, so that a node that joins gets work.
//!
//! A node that dies stops renewing; its leases expire and the others claim
//! them. Every step is one atomic script per partition: a lease is only
//! renewed or released by its holder.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use redis::aio::ConnectionManager;

use crate::{Bus, BusError, Consumer, Record};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Renew if mine; claim if free and I may take more. Returns 1 if held.
const CLAIM: &str = r#"
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder and ARGV[3] == '1' then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"#;

/// Raise a number, never lower it (a slow former owner may write late).
const RAISE: &str = r#"
local current = tonumber(redis.call('GET', KEYS[1]) or '-1')
if tonumber(ARGV[1]) > current then redis.call('SET', KEYS[1], ARGV[1]) end
return 0
"#;

/// Release if mine.
const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

pub struct Leases {
    redis: ConnectionManager,
    prefix: String,
    topic: String,
    node: String,
    partitions: u32,
    ttl: Duration,
    claim: redis::Script,
    release: redis::Script,
    raise: redis::Script,
}

#[derive(Debug, thiserror::Error)]
#[error("leases: {0}")]
pub struct LeaseError(#[from] redis::RedisError);

impl Leases {
    pub async fn connect(
        url: &str,
        prefix: &str,
        topic: &str,
        node: &str,
        partitions: u32,
        ttl: Duration,
    ) -> Result<Leases, LeaseError> {
        let redis = ConnectionManager::new(redis::Client::open(url)?).await?;
        Ok(Leases {
            redis,
            prefix: prefix.to_string(),
            topic: topic.to_string(),
            node: node.to_string(),
            partitions,
            ttl,
            claim: redis::Script::new(CLAIM),
            release: redis::Script::new(RELEASE),
            raise: redis::Script::new(RAISE),
        })
    }

    /// How often [`Leases::tick`] must run to keep the leases.
    pub fn period(&self) -> Duration {
        self.ttl / 3
    }

    fn lease_key(&self, partition: u32) -> String {
        format!("{}lease:{}:{partition}", self.prefix, self.topic)
    }

    fn handled_key(&self, partition: u32) -> String {
        format!("{}handled:{}:{partition}", self.prefix, self.topic)
    }

    /// Renews, claims and releases; returns the partitions this node holds.
    pub async fn tick(&self) -> Result<BTreeSet<u32>, LeaseError> {
        let mut conn = self.redis.clone();
        let now = now_ms();
        let nodes_key = format!("{}nodes:{}", self.prefix, self.topic);
        let (_, _, live): ((), (), u32) = redis::pipe()
            .zadd(&nodes_key, &self.node, now + self.ttl.as_millis() as i64)
            .zrembyscore(&nodes_key, "-inf", now)
            .zcount(&nodes_key, now, "+inf")
            .query_async(&mut conn)
            .await?;
        let share = self.partitions.div_ceil(live.max(1));
        let ttl_ms = self.ttl.as_millis().to_string();
        let mut held = BTreeSet::new();
        for p in 0..self.partitions {
            let may_claim = if (held.len() as u32) < share {
                "1"
            } else {
                "0"
            };
            let got: i32 = self
                .claim
                .key(self.lease_key(p))
                .arg(&self.node)
                .arg(&ttl_ms)
                .arg(may_claim)
                .invoke_async(&mut conn)
                .await?;
            if got == 1 {
                held.insert(p);
            }
        }
        // Above my share (a node joined): give back the highest ones.
        while held.len() as u32 > share {
            let p = *held.iter().next_back().expect("not empty");
            let _: i32 = self
                .release
                .key(self.lease_key(p))
                .arg(&self.node)
                .invoke_async(&mut conn)
                .await?;
            held.remove(&p);
        }
        Ok(held)
    }

    /// The last offset of `partition` whose effects (pushes, receipts) some
    /// owner carried out; a new owner replays up to it silently.
    pub async fn handled(&self, partition: u32) -> Result<Option<u64>, LeaseError> {
        let mut conn = self.redis.clone();
        Ok(redis::cmd("GET")
            .arg(self.handled_key(partition))
            .query_async(&mut conn)
            .await?)
    }

    /// Records that effects up to `offset` of `partition` are carried out.
    pub async fn set_handled(&self, partition: u32, offset: u64) -> Result<(), LeaseError> {
        let mut conn = self.redis.clone();
        let _: i32 = self
            .raise
            .key(self.handled_key(partition))
            .arg(offset)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }
}

/// The last offset of each partition among `records`.
pub fn last_offsets(records: &[Record]) -> Vec<(u32, u64)> {
    let mut last: BTreeMap<u32, u64> = BTreeMap::new();
    for r in records {
        let e = last.entry(r.partition).or_default();
        *e = (*e).max(r.offset);
    }
    last.into_iter().collect()
}

/// What [`OwnedReader::next`] brings.
pub enum Owned {
    /// The partitions this node owns changed (to these, maybe none). The
    /// reader is stopped: the role decides where each partition starts and
    /// calls [`OwnedReader::read_from`].
    Changed(BTreeSet<u32>),
    /// Records of the owned partitions, in order within each.
    Records(Vec<Record>),
}

/// Reads the partitions a node holds leases on, renewing them as it goes:
/// the loop every owning role (store, router) runs.
pub struct OwnedReader {
    leases: Leases,
    owned: BTreeSet<u32>,
    reader: Option<Box<dyn Consumer>>,
    ticker: tokio::time::Interval,
}

impl OwnedReader {
    pub fn new(leases: Leases) -> Self {
        let ticker = tokio::time::interval(leases.period());
        OwnedReader {
            leases,
            owned: BTreeSet::new(),
            reader: None,
            ticker,
        }
    }

    /// `&mut`: the reader is not `Sync`, and a future holding `&self`
    /// across an await would not be `Send`.
    pub fn leases(&mut self) -> &Leases {
        &self.leases
    }

    /// The next ownership change or batch of at most `max` records.
    pub async fn next(&mut self, max: usize) -> Result<Owned, BusError> {
        loop {
            tokio::select! {
                _ = self.ticker.tick() => {
                    let held = match self.leases.tick().await {
                        Ok(held) => held,
                        Err(e) => {
                            // Without Redis the leases may lapse: stop
                            // reading rather than race a new owner.
                            tracing::warn!(error = %e, "lease renewal failed; pausing");
                            BTreeSet::new()
                        }
                    };
                    if held != self.owned {
                        self.owned = held.clone();
                        self.reader = None;
                        return Ok(Owned::Changed(held));
                    }
                }
                // Cancel safe (Consumer::poll): losing the race loses nothing.
                records = async {
                    match self.reader.as_mut() {
                        Some(r) => r.poll(max).await,
                        None => std::future::pending().await,
                    }
                } => return records.map(Owned::Records),
            }
        }
    }

    /// Starts reading the owned partitions of `topic`, each from its offset.
    pub async fn read_from(
        &mut self,
        bus: &dyn Bus,
        topic: &str,
        from: &[(u32, u64)],
    ) -> Result<(), BusError> {
        self.reader = if from.is_empty() {
            None
        } else {
            Some(bus.assign(topic, from).await?)
        };
        Ok(())
    }

    /// Records that the effects of `records` are carried out.
    pub async fn mark_handled(&mut self, records: &[Record]) -> Result<(), LeaseError> {
        for (p, o) in last_offsets(records) {
            self.leases.set_handled(p, o).await?;
        }
        Ok(())
    }
}
