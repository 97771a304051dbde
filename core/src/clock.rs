//! The wall clock, for drivers.
//!
//! Architecture invariant: no rule in this crate reads the time; each takes
//! `now` from its caller (an `Instant` for rates and timers, Unix time for
//! what is stored or signed), so tests drive it with plain numbers. The
//! drivers read the one wall clock here instead of keeping copies.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 on a clock set before 1970).
pub fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Seconds since the Unix epoch (0 on a clock set before 1970).
pub fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
