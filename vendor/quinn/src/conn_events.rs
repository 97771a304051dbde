//! The endpoint → connection event queue (Samvad's patch of quinn).
//!
//! Upstream quinn gives every connection a `tokio::sync::mpsc` unbounded
//! channel, and tokio allocates that channel's first block of 32 slots
//! when it is created: with `ConnectionEvent` at about 200 bytes, every
//! connection kept 6.7 KB for a queue that is empty nearly all the time.
//! This queue has the same shape (one sender in the endpoint, one
//! receiver in the connection, `send` fails once the receiver is gone,
//! `poll_recv` ends with `None` once the sender is gone) but holds a
//! `VecDeque` that is allocated when an event arrives and given back when
//! the connection has taken every event out.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use crate::ConnectionEvent;

#[derive(Debug, Default)]
struct Queue {
    events: VecDeque<ConnectionEvent>,
    waker: Option<Waker>,
    sender_gone: bool,
    receiver_gone: bool,
}

/// A new queue's two ends.
pub(crate) fn channel() -> (EventSender, EventReceiver) {
    let queue = Arc::new(Mutex::new(Queue::default()));
    (EventSender(queue.clone()), EventReceiver(queue))
}

/// The endpoint's end.
#[derive(Debug)]
pub(crate) struct EventSender(Arc<Mutex<Queue>>);

impl EventSender {
    /// Queues `event` and wakes the connection's driver; the event back if
    /// the connection is gone.
    pub(crate) fn send(&self, event: ConnectionEvent) -> Result<(), ConnectionEvent> {
        let waker = {
            let mut queue = self.0.lock().unwrap();
            if queue.receiver_gone {
                return Err(event);
            }
            queue.events.push_back(event);
            queue.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }
}

impl Drop for EventSender {
    fn drop(&mut self) {
        let waker = {
            let mut queue = self.0.lock().unwrap();
            queue.sender_gone = true;
            queue.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The connection's end.
#[derive(Debug)]
pub(crate) struct EventReceiver(Arc<Mutex<Queue>>);

impl EventReceiver {
    /// The next event; `Ready(None)` once the queue is empty and the
    /// endpoint is gone; `Pending` (with `cx`'s waker kept) otherwise.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<ConnectionEvent>> {
        let mut queue = self.0.lock().unwrap();
        if let Some(event) = queue.events.pop_front() {
            if queue.events.is_empty() {
                // Idle connections keep no buffer.
                queue.events = VecDeque::new();
            }
            return Poll::Ready(Some(event));
        }
        if queue.sender_gone {
            return Poll::Ready(None);
        }
        match &mut queue.waker {
            Some(waker) => waker.clone_from(cx.waker()),
            none => *none = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Drop for EventReceiver {
    fn drop(&mut self) {
        let mut queue = self.0.lock().unwrap();
        queue.receiver_gone = true;
        // Events left for a connection that is gone are dropped with it.
        queue.events = VecDeque::new();
    }
}
