//! A session's outbox: the encoded frames the hub pushed and its connection
//! loop has not written yet.
//!
//! Why not a tokio `mpsc` channel: a channel allocates a block of 32 slots
//! and its shared state when it is made, about 1.6 KB that every idle
//! session would hold (bench/RESULTS.md, "Sessions at scale"). Here the
//! queue is a `VecDeque` that allocates on the first frame and is handed
//! whole to the writer, so an idle session holds one small `Arc`, and a
//! burst is drained under one lock.
//!
//! Bounded: a push beyond the limit cuts the session off (it is told
//! `SLOW_CONSUMER` and resyncs when it reconnects); one slow reader never
//! makes the hub wait.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Poll, Waker};

use bytes::Bytes;
use parking_lot::Mutex;

/// What the connection loop takes from its outbox.
#[derive(Debug)]
pub enum Taken {
    /// Frames in the order they were pushed (at least one).
    Frames(VecDeque<Bytes>),
    /// The queue overflowed: the session must be cut off.
    CutOff,
}

/// Whether a push was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// The queue was full: the session is being cut off.
    Overflowed,
    /// The session is gone.
    Gone,
}

/// The pushing side (held by the hub) and the taking side (the
/// session's loop) share one `Arc<Outbox>`.
pub struct Outbox {
    limit: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    frames: VecDeque<Bytes>,
    cut_off: bool,
    closed: bool,
    waker: Option<Waker>,
}

impl Outbox {
    /// An outbox that holds up to `limit` frames.
    pub fn new(limit: usize) -> Arc<Outbox> {
        Arc::new(Outbox {
            limit: limit.max(1),
            state: Mutex::new(State::default()),
        })
    }

    /// Queues `frame` and wakes the session.
    pub fn push(&self, frame: Bytes) -> Pushed {
        let mut state = self.state.lock();
        if state.closed {
            return Pushed::Gone;
        }
        let pushed = if state.cut_off || state.frames.len() >= self.limit {
            state.cut_off = true;
            state.frames = VecDeque::new();
            Pushed::Overflowed
        } else {
            state.frames.push_back(frame);
            Pushed::Queued
        };
        let waker = state.waker.take();
        drop(state);
        if let Some(w) = waker {
            w.wake();
        }
        pushed
    }

    /// Waits for frames (all that are queued, taken at once) or the
    /// cut-off. Cancel safe: nothing is taken until it returns.
    pub async fn take(&self) -> Taken {
        poll_fn(|cx| {
            let mut state = self.state.lock();
            if state.cut_off {
                return Poll::Ready(Taken::CutOff);
            }
            if !state.frames.is_empty() {
                return Poll::Ready(Taken::Frames(std::mem::take(&mut state.frames)));
            }
            match &state.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => state.waker = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
        .await
    }

    /// The session ended: later pushes are dropped, and what is queued is
    /// freed.
    pub fn close(&self) {
        let mut state = self.state.lock();
        state.closed = true;
        state.frames = VecDeque::new();
        state.waker = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    fn frame(n: u8) -> Bytes {
        Bytes::from(vec![n])
    }

    #[test]
    fn frames_come_out_in_order_all_at_once() {
        let outbox = Outbox::new(4);
        assert_eq!(outbox.take().now_or_never().map(|_| ()), None);
        assert_eq!(outbox.push(frame(1)), Pushed::Queued);
        assert_eq!(outbox.push(frame(2)), Pushed::Queued);
        let Some(Taken::Frames(frames)) = outbox.take().now_or_never() else {
            panic!("frames were queued");
        };
        assert_eq!(frames, [frame(1), frame(2)]);
        assert!(outbox.take().now_or_never().is_none(), "nothing left");
    }

    #[test]
    fn a_push_past_the_limit_cuts_the_session_off_for_good() {
        let outbox = Outbox::new(2);
        outbox.push(frame(1));
        outbox.push(frame(2));
        assert_eq!(outbox.push(frame(3)), Pushed::Overflowed);
        assert!(matches!(outbox.take().now_or_never(), Some(Taken::CutOff)));
        assert_eq!(outbox.push(frame(4)), Pushed::Overflowed);
        assert!(matches!(outbox.take().now_or_never(), Some(Taken::CutOff)));
    }

    #[tokio::test]
    async fn a_waiting_session_is_woken_by_a_push() {
        let outbox = Outbox::new(8);
        let waiting = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.take().await }
        });
        tokio::task::yield_now().await;
        outbox.push(frame(7));
        let Taken::Frames(frames) = waiting.await.unwrap() else {
            panic!("a frame was pushed");
        };
        assert_eq!(frames, [frame(7)]);
    }

    #[test]
    fn pushes_after_close_are_dropped() {
        let outbox = Outbox::new(8);
        outbox.push(frame(1));
        outbox.close();
        assert_eq!(outbox.push(frame(2)), Pushed::Gone);
        assert!(outbox.take().now_or_never().is_none());
    }
}
