//! Throttles against guessing and flooding: a token bucket per key
//! (an account, a source address), kept in a bounded map.
//!
//! Buckets refill, so a throttled key is never locked out for long: an
//! attacker who guesses a user's password from many addresses slows that
//! user's logins down to the refill rate at worst, and every address is
//! held back on its own. A bucket that has refilled is forgotten (a new one
//! would be the same), which bounds the map by the keys that are active.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::token_bucket::TokenBucket;

/// Keys remembered at most; past it, full buckets are forgotten.
const MAX_KEYS: usize = 65_536;

pub struct Throttle<K> {
    burst: f64,
    per_second: f64,
    buckets: Mutex<HashMap<K, TokenBucket>>,
}

impl<K: Hash + Eq> Throttle<K> {
    /// `burst` events at once, refilled evenly over `per`; `None` when
    /// `burst` is 0 (no limit).
    pub fn new(burst: u32, per: Duration) -> Option<Self> {
        (burst > 0).then(|| Throttle {
            burst: f64::from(burst),
            per_second: f64::from(burst) / per.as_secs_f64(),
            buckets: Mutex::default(),
        })
    }

    /// Whether `key` may act now (nothing is taken); else how long until it
    /// may.
    pub fn check(&self, key: &K, now: Instant) -> Result<(), Duration> {
        self.buckets
            .lock()
            .get_mut(key)
            .map_or(Ok(()), |bucket| bucket.check(now))
    }

    /// Counts an event of `key`: refused if its allowance is spent.
    pub fn take(&self, key: K, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock();
        if buckets.len() >= MAX_KEYS {
            buckets.retain(|_, bucket| !bucket.is_full(now));
        }
        buckets
            .entry(key)
            .or_insert_with(|| TokenBucket::new(self.per_second, self.burst, now))
            .take(now)
    }

    /// Forgets `key`'s spent allowance (a login that succeeded).
    pub fn forget(&self, key: &K) {
        self.buckets.lock().remove(key);
    }
}

/// [`Throttle::check`] of an optional throttle.
pub fn check<K: Hash + Eq>(
    throttle: &Option<Throttle<K>>,
    key: &K,
    now: Instant,
) -> Result<(), Duration> {
    throttle.as_ref().map_or(Ok(()), |t| t.check(key, now))
}

/// [`Throttle::take`] of an optional throttle.
pub fn take<K: Hash + Eq>(
    throttle: &Option<Throttle<K>>,
    key: K,
    now: Instant,
) -> Result<(), Duration> {
    throttle.as_ref().map_or(Ok(()), |t| t.take(key, now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spent_key_waits_for_its_refill_and_others_do_not() {
        let throttle = Throttle::new(2, Duration::from_secs(60)).unwrap();
        let t = Instant::now();
        assert!(throttle.take("alice", t).is_ok());
        assert!(throttle.check(&"alice", t).is_ok());
        assert!(throttle.take("alice", t).is_ok());
        assert_eq!(throttle.check(&"alice", t), Err(Duration::from_secs(30)));
        assert_eq!(throttle.take("alice", t), Err(Duration::from_secs(30)));
        assert!(throttle.check(&"bob", t).is_ok());
        assert!(throttle
            .check(&"alice", t + Duration::from_secs(30))
            .is_ok());
        throttle.forget(&"alice");
        assert!(throttle.take("alice", t).is_ok());
    }

    #[test]
    fn no_burst_is_no_throttle() {
        assert!(Throttle::<u8>::new(0, Duration::from_secs(1)).is_none());
        assert!(take(&None::<Throttle<u8>>, 1, Instant::now()).is_ok());
    }
}
