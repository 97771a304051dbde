//! A token bucket: `rate` tokens a second, holding at most `burst`. No
//! clock of its own: every call says what time it is.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    last: Instant,
    rate: f64,
    burst: f64,
}

impl TokenBucket {
    /// A full bucket: `rate` tokens a second (more than 0), at most `burst`
    /// (at least 1).
    pub fn new(rate: f64, burst: f64, now: Instant) -> Self {
        let rate = rate.max(f64::MIN_POSITIVE);
        let burst = burst.max(1.0);
        TokenBucket {
            tokens: burst,
            last: now,
            rate,
            burst,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
    }

    /// Takes a token if there is one; else how long until there is.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        self.take_n(1.0, now)
    }

    /// Takes `n` tokens if there are that many; else how long until there
    /// are. More than the burst is never there: `n` is capped at it, so
    /// one large request costs a full bucket rather than never passing.
    pub fn take_n(&mut self, n: f64, now: Instant) -> Result<(), Duration> {
        let n = n.min(self.burst);
        self.check_n(n, now)?;
        self.tokens -= n;
        Ok(())
    }

    /// Whether a token is there now (nothing is taken); else how long
    /// until there is.
    pub fn check(&mut self, now: Instant) -> Result<(), Duration> {
        self.check_n(1.0, now)
    }

    /// Whether `n` tokens (at most the burst) are there now; nothing is
    /// taken.
    pub fn check_n(&mut self, n: f64, now: Instant) -> Result<(), Duration> {
        let n = n.min(self.burst);
        self.refill(now);
        if self.tokens >= n {
            Ok(())
        } else {
            Err(Duration::from_secs_f64((n - self.tokens) / self.rate))
        }
    }

    /// Whether the bucket has refilled completely by `now` (it can be
    /// forgotten: a new one would be the same).
    pub fn is_full(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + elapsed * self.rate >= self.burst
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(2.0, 3.0, t0);
        assert!(b.take(t0).is_ok());
        assert!(b.take(t0).is_ok());
        assert!(b.take(t0).is_ok());
        let wait = b.take(t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert!(b.take(t0 + Duration::from_millis(499)).is_err());
        assert!(b.take(t0 + Duration::from_millis(1000)).is_ok());
        assert!(!b.is_full(t0 + Duration::from_millis(1000)));
        assert!(b.is_full(t0 + Duration::from_secs(3)));
    }

    #[test]
    fn many_tokens_at_once_and_never_more_than_the_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(100.0, 300.0, t0);
        assert!(b.take_n(250.0, t0).is_ok());
        assert_eq!(b.check_n(100.0, t0), Err(Duration::from_millis(500)));
        // Refused requests take nothing.
        assert!(b.take_n(100.0, t0).is_err());
        assert!(b.take_n(50.0, t0).is_ok());
        // Larger than the burst: a full bucket is enough, and is all taken.
        let t1 = t0 + Duration::from_secs(3);
        assert!(b.take_n(1000.0, t1).is_ok());
        assert!(b.check(t1).is_err());
    }
}
