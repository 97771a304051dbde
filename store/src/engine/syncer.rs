//! The second half of an inbox writer's group commit: a thread that makes
//! the writer's batches durable, then keeps each batch's promises (answers,
//! pushes, hand-offs to other shards) in the order the batches were
//! applied, while the writer goes on with the next batch.
//!
//! Why a thread of its own: with the `fdatasync` on the writer's thread, a
//! writer's cycle is apply + sync in series, and everything that arrives
//! meanwhile waits for both. Here the cycle is the longer of the two, the
//! writer is free to apply acks inline for sessions while a sync is in
//! flight, and one sync covers every batch appended before it began.
//!
//! Invariants:
//! - promises are kept in the order they were queued, which is the order
//!   their batches were applied (only the writer's holder queues);
//! - a promise whose batch needs a sync is kept only after a sync of its
//!   segment that began after the batch was appended;
//! - once a sync fails, nothing queued after it is kept: each is refused,
//!   and [`Syncer::failed`] says so until the writer ends.

use std::collections::VecDeque;
use std::fs::File;
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};

/// What a batch promised, kept once it is durable.
pub(super) trait Promise: Send + 'static {
    /// Carries out the promise (`Ok`), or refuses it: the batch may not be
    /// durable (`Err`, why).
    fn settle(self, outcome: Result<(), String>);
}

/// Handle to one writer's syncing thread.
pub(super) struct Syncer<P: Promise> {
    shared: Arc<Shared<P>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct Shared<P> {
    state: Mutex<State<P>>,
    ready: Condvar,
}

struct State<P> {
    /// Promises not yet settled, oldest first, each with the segment to
    /// sync before it (none: it needs no sync).
    queue: VecDeque<(Option<Arc<File>>, P)>,
    /// The thread took promises it has not settled yet.
    settling: bool,
    /// No more promises come: settle what is queued and end.
    finishing: bool,
    /// A sync failed: why.
    failed: Option<String>,
}

impl<P: Promise> Syncer<P> {
    /// Starts the thread, named `name`.
    pub fn start(name: String) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                settling: false,
                finishing: false,
                failed: None,
            }),
            ready: Condvar::new(),
        });
        let thread = std::thread::Builder::new().name(name).spawn({
            let shared = shared.clone();
            move || shared.run()
        })?;
        Ok(Syncer {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Settles `promise` once `sync` (if any) is synced and every promise
    /// queued before is settled: on the caller's thread at once if it
    /// needs no sync and nothing is ahead of it (no thread wakes up),
    /// else on the syncing thread.
    pub fn settle_after(&self, sync: Option<Arc<File>>, promise: P) {
        let mut state = self.shared.state.lock();
        if let Some(why) = &state.failed {
            let why = why.clone();
            drop(state);
            promise.settle(Err(why));
            return;
        }
        if sync.is_none() && state.queue.is_empty() && !state.settling {
            drop(state);
            promise.settle(Ok(()));
            return;
        }
        let was_idle = state.queue.is_empty();
        state.queue.push_back((sync, promise));
        drop(state);
        if was_idle {
            self.shared.ready.notify_one();
        }
    }

    /// Why a sync failed, if one did.
    pub fn failed(&self) -> Option<String> {
        self.shared.state.lock().failed.clone()
    }

    /// Settles everything queued and ends the thread (once; later calls
    /// return at once).
    pub fn finish(&self) {
        self.shared.state.lock().finishing = true;
        self.shared.ready.notify_one();
        if let Some(thread) = self.thread.lock().take() {
            let _ = thread.join();
        }
    }
}

impl<P: Promise> Drop for Syncer<P> {
    fn drop(&mut self) {
        self.finish();
    }
}

impl<P: Promise> Shared<P> {
    fn run(&self) {
        loop {
            let taken: Vec<(Option<Arc<File>>, P)> = {
                let mut state = self.state.lock();
                while state.queue.is_empty() && !state.finishing {
                    self.ready.wait(&mut state);
                }
                if state.queue.is_empty() {
                    return;
                }
                state.settling = true;
                state.queue.drain(..).collect()
            };
            let outcome = sync_each(taken.iter().filter_map(|(sync, _)| sync.as_ref()));
            let outcome = {
                let mut state = self.state.lock();
                if let Err(why) = &outcome {
                    tracing::error!(error = %why, "inbox writer: commit log sync failed");
                    state.failed.get_or_insert_with(|| why.clone());
                }
                match &state.failed {
                    Some(why) => Err(why.clone()),
                    None => Ok(()),
                }
            };
            for (_, promise) in taken {
                promise.settle(outcome.clone());
            }
            self.state.lock().settling = false;
        }
    }
}

/// Syncs each distinct segment once.
fn sync_each<'a>(segments: impl Iterator<Item = &'a Arc<File>>) -> Result<(), String> {
    let mut synced: Vec<&Arc<File>> = Vec::new();
    for segment in segments {
        if synced.iter().any(|s| Arc::ptr_eq(s, segment)) {
            continue;
        }
        segment
            .sync_data()
            .map_err(|e| format!("commit log: {e}"))?;
        synced.push(segment);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    struct Note(u32, mpsc::Sender<(u32, Result<(), String>)>);
    impl Promise for Note {
        fn settle(self, outcome: Result<(), String>) {
            self.1.send((self.0, outcome)).unwrap();
        }
    }

    #[test]
    fn promises_are_kept_in_order_and_those_without_a_sync_at_once_when_nothing_waits() {
        let syncer = Syncer::start("test-syncer".into()).unwrap();
        let (tx, rx) = mpsc::channel();
        syncer.settle_after(None, Note(1, tx.clone()));
        // Kept on this thread, before the call returned.
        assert_eq!(rx.try_recv(), Ok((1, Ok(()))));

        let segment = Arc::new(tempfile::tempfile().unwrap());
        syncer.settle_after(Some(segment.clone()), Note(2, tx.clone()));
        syncer.settle_after(None, Note(3, tx.clone()));
        syncer.settle_after(Some(segment), Note(4, tx.clone()));
        syncer.finish();
        let kept: Vec<_> = rx.try_iter().collect();
        assert_eq!(kept, [(2, Ok(())), (3, Ok(())), (4, Ok(()))]);
    }

    #[test]
    fn a_failed_sync_refuses_its_promises_and_every_later_one() {
        let syncer = Syncer::start("test-syncer".into()).unwrap();
        let (tx, rx) = mpsc::channel();
        // A pipe cannot be synced (EINVAL): a sync that fails.
        let (_reader, writer) = std::io::pipe().unwrap();
        let unsyncable = Arc::new(File::from(std::os::fd::OwnedFd::from(writer)));
        syncer.settle_after(Some(unsyncable), Note(1, tx.clone()));
        let (n, outcome) = rx.recv().unwrap();
        assert_eq!(n, 1);
        assert!(outcome.is_err(), "{outcome:?}");
        assert!(syncer.failed().is_some());
        // Even one that needs no sync is refused from now on.
        syncer.settle_after(None, Note(2, tx.clone()));
        let (n, outcome) = rx.recv().unwrap();
        assert_eq!(n, 2);
        assert!(outcome.is_err());
    }
}
