//! Admission control: what an edge takes on before it works on a
//! connection, so that a flood is refused at the door instead of
//! collapsing the sessions already there.
//!
//! Three limits, each optional:
//! - concurrent sessions (every transport together);
//! - QUIC connections admitted and not yet sessions: handshakes at work
//!   and those waiting in line for a turn (a handshake costs a TLS key
//!   exchange and a connection's state before anyone is authenticated;
//!   how many run at once is the QUIC endpoint's pacing, `quic::serve`);
//! - new connections per source address and minute (a token bucket per
//!   address: the whole allowance at once, then refilled evenly over the
//!   minute; forgotten once it has refilled).
//!
//! A refusal is a type; each transport answers it its own way: a QUIC
//! `CONNECTION_REFUSED` before any handshake work, HTTP 503 (capacity) or
//! 429 (rate) with `Retry-After` for a WebSocket upgrade.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use samvad_core::throttle::{self, Throttle};

/// The limits; `None` is no limit.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    pub max_sessions: Option<usize>,
    /// WebSocket sessions at most: each holds a file descriptor, and past
    /// the process's limit `accept` fails and connections wait in the
    /// backlog unanswered. See [`websockets_for_files`].
    pub max_websockets: Option<usize>,
    pub max_handshakes: Option<usize>,
    /// QUIC handshakes worked on at once (at least one); the others wait
    /// in line.
    pub handshakes_at_once: usize,
    /// New connections a minute per source address (all of them may come
    /// at once).
    pub connects_per_minute: Option<u32>,
}

/// Why a connection is not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the edge holds its most sessions ({0})")]
    SessionsFull(usize),
    #[error("the edge holds its most WebSocket sessions ({0}: its open files limit)")]
    WebSocketsFull(usize),
    #[error("too many handshakes in progress ({0})")]
    HandshakesFull(usize),
    #[error("too many new connections from this address; retry in {0:?}")]
    AddressRate(Duration),
}

impl Refusal {
    /// When the client may try again.
    pub fn retry_after(self) -> Duration {
        match self {
            Refusal::SessionsFull(_) | Refusal::WebSocketsFull(_) | Refusal::HandshakesFull(_) => {
                Duration::from_secs(1)
            }
            Refusal::AddressRate(wait) => wait,
        }
    }

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::SessionsFull(_) => "sessions_full",
            Refusal::WebSocketsFull(_) => "websockets_full",
            Refusal::HandshakesFull(_) => "handshakes_full",
            Refusal::AddressRate(_) => "address_rate",
        }
    }
}

pub struct Admission {
    limits: Limits,
    sessions: Arc<AtomicUsize>,
    websockets: Arc<AtomicUsize>,
    handshakes: Arc<AtomicUsize>,
    addresses: Option<Throttle<IpAddr>>,
}

/// Holds one place (a session, or a handshake) until dropped.
#[derive(Debug)]
pub struct Place(Arc<AtomicUsize>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Admission {
    pub fn new(limits: Limits) -> Self {
        Admission {
            limits,
            sessions: Arc::default(),
            websockets: Arc::default(),
            handshakes: Arc::default(),
            addresses: limits
                .connects_per_minute
                .and_then(|n| Throttle::new(n, Duration::from_secs(60))),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Sessions held now.
    pub fn sessions(&self) -> usize {
        self.sessions.load(Ordering::Acquire)
    }

    /// A new connection from `from` at `now`: within its address's rate,
    /// and a session place free.
    pub fn connection(&self, from: IpAddr, now: Instant) -> Result<(), Refusal> {
        if let Some(max) = self.limits.max_sessions {
            if self.sessions() >= max {
                return Err(Refusal::SessionsFull(max));
            }
        }
        throttle::take(&self.addresses, from, now).map_err(Refusal::AddressRate)
    }

    /// A place for a handshake in progress.
    pub fn handshake(&self) -> Result<Place, Refusal> {
        take(&self.handshakes, self.limits.max_handshakes).ok_or(Refusal::HandshakesFull(
            self.limits.max_handshakes.unwrap_or(0),
        ))
    }

    /// A place for a session, held as long as it lives.
    pub fn session(&self) -> Result<Place, Refusal> {
        take(&self.sessions, self.limits.max_sessions)
            .ok_or(Refusal::SessionsFull(self.limits.max_sessions.unwrap_or(0)))
    }

    /// A place for a WebSocket session: a session place and one of the
    /// WebSocket places.
    pub fn websocket(&self) -> Result<(Place, Place), Refusal> {
        let websocket = take(&self.websockets, self.limits.max_websockets).ok_or(
            Refusal::WebSocketsFull(self.limits.max_websockets.unwrap_or(0)),
        )?;
        Ok((self.session()?, websocket))
    }
}

/// WebSocket sessions that fit in `files` open file descriptors: all but a
/// reserve for the store's files, the listeners and the short HTTP
/// connections that are answered and closed (an eighth, 64 to 1000).
pub fn websockets_for_files(files: u64) -> usize {
    let reserve = (files / 8).clamp(64, 1000);
    files.saturating_sub(reserve) as usize
}

/// Raises the soft limit of open files to the hard one (what a server
/// should run with), and returns it; `None` if it cannot be read.
pub fn raise_open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    (limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

fn take(count: &Arc<AtomicUsize>, max: Option<usize>) -> Option<Place> {
    let max = max.unwrap_or(usize::MAX);
    count
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .ok()
        .map(|_| Place(count.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn sessions_are_counted_until_their_place_is_dropped() {
        let admission = Admission::new(Limits {
            max_sessions: Some(2),
            ..Limits::default()
        });
        let t = Instant::now();
        let one = admission.session().unwrap();
        let _two = admission.session().unwrap();
        assert_eq!(admission.session().unwrap_err(), Refusal::SessionsFull(2));
        assert_eq!(admission.connection(A, t), Err(Refusal::SessionsFull(2)));
        drop(one);
        assert!(admission.connection(A, t).is_ok());
        assert!(admission.session().is_ok());
    }

    #[test]
    fn handshakes_have_their_own_limit() {
        let admission = Admission::new(Limits {
            max_handshakes: Some(1),
            ..Limits::default()
        });
        let first = admission.handshake().unwrap();
        assert_eq!(
            admission.handshake().unwrap_err(),
            Refusal::HandshakesFull(1)
        );
        assert!(admission.session().is_ok(), "sessions are not handshakes");
        drop(first);
        assert!(admission.handshake().is_ok());
    }

    #[test]
    fn each_address_has_its_own_rate() {
        let admission = Admission::new(Limits {
            connects_per_minute: Some(2),
            ..Limits::default()
        });
        let t = Instant::now();
        assert!(admission.connection(A, t).is_ok());
        assert!(admission.connection(A, t).is_ok());
        let refused = admission.connection(A, t).unwrap_err();
        assert_eq!(refused, Refusal::AddressRate(Duration::from_secs(30)));
        assert_eq!(refused.retry_after(), Duration::from_secs(30));
        assert!(
            admission.connection(B, t).is_ok(),
            "another address is not held back"
        );
        assert!(admission.connection(A, t + Duration::from_secs(30)).is_ok());
    }

    #[test]
    fn websockets_have_their_own_limit_within_the_sessions() {
        let admission = Admission::new(Limits {
            max_sessions: Some(3),
            max_websockets: Some(1),
            ..Limits::default()
        });
        let ws = admission.websocket().unwrap();
        assert_eq!(
            admission.websocket().unwrap_err(),
            Refusal::WebSocketsFull(1)
        );
        let _quic = admission.session().unwrap();
        let _quic2 = admission.session().unwrap();
        drop(ws);
        let _quic3 = admission.session().unwrap();
        assert_eq!(admission.websocket().unwrap_err(), Refusal::SessionsFull(3));
        assert_eq!(admission.sessions(), 3);
        assert_eq!(
            admission.websockets.load(Ordering::Acquire),
            0,
            "given back"
        );
    }

    #[test]
    fn the_files_reserve_is_an_eighth_within_bounds() {
        assert_eq!(websockets_for_files(20_000), 19_000);
        assert_eq!(websockets_for_files(1024), 896);
        assert_eq!(websockets_for_files(256), 192);
        assert_eq!(websockets_for_files(10), 0);
    }

    #[test]
    fn without_limits_everything_is_taken() {
        let admission = Admission::new(Limits::default());
        let t = Instant::now();
        let places: Vec<Place> = (0..1000).map(|_| admission.session().unwrap()).collect();
        assert!(admission.connection(A, t).is_ok());
        assert_eq!(admission.sessions(), places.len());
    }
}
