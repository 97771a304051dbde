//! What the inbox rules read and write: keyspaces as plain data.
//!
//! The rules never touch fjall. They read committed state through
//! [`Committed`] and write into a [`Pending`] set of changes that later
//! reads of the same batch see ([`View`]): nothing is flushed in the middle
//! of a batch, and the whole batch is committed by its driver at once, or
//! not at all.

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;

/// The keyspaces the inbox rules use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Space {
    /// owner `\0` seq → encoded `ServerFrame`, ready to send.
    Inbox,
    /// owner → last seq and cursor (written when the cursor moves).
    Meta,
    /// owner `\0` sender `\0` message id → seq.
    Dedupe,
    /// `#chatid \0 user \0 message id` → empty: hidden for that user.
    Hidden,
    /// owner `\0` device → the last seq that device acked.
    DeviceCursors,
    /// Driver bookkeeping: applied offsets, outboxes.
    Applied,
    /// owner `\0` session → edge: the sessions whose sync replayed
    /// everything, kept where the rules are asked to remember them (the
    /// cluster's stores: a restarted store goes on pushing to them).
    Synced,
}

impl Space {
    pub const ALL: [Space; 7] = [
        Space::Inbox,
        Space::Meta,
        Space::Dedupe,
        Space::Hidden,
        Space::DeviceCursors,
        Space::Applied,
        Space::Synced,
    ];

    /// The fjall keyspace name (the names earlier versions used).
    pub fn name(self) -> &'static str {
        match self {
            Space::Inbox => "inbox",
            Space::Meta => "inbox_meta",
            Space::Dedupe => "dedupe",
            Space::Hidden => "hidden",
            Space::DeviceCursors => "device_cursors",
            Space::Applied => "applied",
            Space::Synced => "synced_sessions",
        }
    }
}

/// Why committed state could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A stored record that does not decode: never skipped, never guessed.
    #[error("corrupt {what} record")]
    Corrupt { what: &'static str },
    /// The storage underneath failed.
    #[error("storage: {0}")]
    Storage(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Committed state, read only.
pub trait Committed {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Bytes>, StateError>;

    /// Entries with `from <= key <= to`, ascending (descending if `rev`),
    /// at most `limit`.
    fn range(
        &self,
        space: Space,
        from: &[u8],
        to: &[u8],
        rev: bool,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Bytes)>, StateError>;
}

/// Changes of one batch, in key order per keyspace; `None` removes. One
/// map per keyspace, so that a read looks a borrowed key up without a copy.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Pending {
    changes: [BTreeMap<Vec<u8>, Option<Bytes>>; Space::ALL.len()],
}

impl Pending {
    pub fn put(&mut self, space: Space, key: Vec<u8>, value: impl Into<Bytes>) {
        self.changes[space as usize].insert(key, Some(value.into()));
    }

    pub fn remove(&mut self, space: Space, key: Vec<u8>) {
        self.changes[space as usize].insert(key, None);
    }

    /// Whether the batch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.changes.iter().all(BTreeMap::is_empty)
    }

    /// Every change, in order.
    pub fn iter(&self) -> impl Iterator<Item = (Space, &[u8], Option<&Bytes>)> {
        Space::ALL.into_iter().flat_map(move |space| {
            self.changes[space as usize]
                .iter()
                .map(move |(key, value)| (space, key.as_slice(), value.as_ref()))
        })
    }

    fn get(&self, space: Space, key: &[u8]) -> Option<Option<&Bytes>> {
        self.changes[space as usize]
            .get(key)
            .map(|value| value.as_ref())
    }

    fn range<'a>(
        &'a self,
        space: Space,
        from: &[u8],
        to: &[u8],
    ) -> impl DoubleEndedIterator<Item = (&'a [u8], Option<&'a Bytes>)> + 'a {
        self.changes[space as usize]
            .range::<[u8], _>((Bound::Included(from), Bound::Included(to)))
            .map(|(key, value)| (key.as_slice(), value.as_ref()))
    }
}

/// Committed state with a batch's pending changes over it.
pub struct View<'a> {
    pub committed: &'a dyn Committed,
    pub pending: Pending,
}

impl<'a> View<'a> {
    pub fn new(committed: &'a dyn Committed) -> Self {
        View {
            committed,
            pending: Pending::default(),
        }
    }

    pub fn get(&self, space: Space, key: &[u8]) -> Result<Option<Bytes>, StateError> {
        match self.pending.get(space, key) {
            Some(value) => Ok(value.cloned()),
            None => self.committed.get(space, key),
        }
    }

    pub fn contains(&self, space: Space, key: &[u8]) -> Result<bool, StateError> {
        Ok(self.get(space, key)?.is_some())
    }

    /// [`Committed::range`] with this batch's changes merged in. Any key
    /// among the first `limit` of the merge is among the first `limit` of
    /// committed state or in the pending changes, so reading `limit` from
    /// each is enough.
    pub fn range(
        &self,
        space: Space,
        from: &[u8],
        to: &[u8],
        rev: bool,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Bytes)>, StateError> {
        let committed = self.committed.range(space, from, to, rev, limit)?;
        let mut pending = self.pending.range(space, from, to).peekable();
        if pending.peek().is_none() {
            return Ok(committed);
        }
        let mut merged: BTreeMap<Vec<u8>, Option<Bytes>> = committed
            .into_iter()
            .map(|(key, value)| (key, Some(value)))
            .collect();
        for (key, value) in pending {
            merged.insert(key.to_vec(), value.cloned());
        }
        let live = merged
            .into_iter()
            .filter_map(|(key, value)| value.map(|v| (key, v)));
        Ok(if rev {
            live.rev().take(limit).collect()
        } else {
            live.take(limit).collect()
        })
    }
}

/// Committed state in memory: for tests of the rules, and as the model a
/// real store must behave like.
#[derive(Debug, Default, Clone)]
pub struct MemoryState {
    data: BTreeMap<(Space, Vec<u8>), Bytes>,
}

impl MemoryState {
    /// Commits a batch's changes.
    pub fn commit(&mut self, pending: &Pending) {
        for (space, key, value) in pending.iter() {
            match value {
                Some(v) => {
                    self.data.insert((space, key.to_vec()), v.clone());
                }
                None => {
                    self.data.remove(&(space, key.to_vec()));
                }
            }
        }
    }

    /// Every key of `space`.
    pub fn keys(&self, space: Space) -> Vec<Vec<u8>> {
        self.data
            .keys()
            .filter(|(s, _)| *s == space)
            .map(|(_, k)| k.clone())
            .collect()
    }
}

impl Committed for MemoryState {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Bytes>, StateError> {
        Ok(self.data.get(&(space, key.to_vec())).cloned())
    }

    fn range(
        &self,
        space: Space,
        from: &[u8],
        to: &[u8],
        rev: bool,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Bytes)>, StateError> {
        let range = self
            .data
            .range((
                Bound::Included((space, from.to_vec())),
                Bound::Included((space, to.to_vec())),
            ))
            .map(|((_, k), v)| (k.clone(), v.clone()));
        Ok(if rev {
            range.rev().take(limit).collect()
        } else {
            range.take(limit).collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_sees_its_own_changes_over_committed_state() {
        let mut state = MemoryState::default();
        let mut first = Pending::default();
        for k in [1u8, 3, 5, 7] {
            first.put(Space::Inbox, vec![k], vec![k]);
        }
        state.commit(&first);
        let mut view = View::new(&state);
        view.pending.put(Space::Inbox, vec![4], vec![40]);
        view.pending.put(Space::Inbox, vec![5], vec![50]);
        view.pending.remove(Space::Inbox, vec![3]);
        view.pending.put(Space::Dedupe, vec![2], vec![2]);
        assert_eq!(view.get(Space::Inbox, &[5]).unwrap().unwrap(), vec![50]);
        assert_eq!(view.get(Space::Inbox, &[3]).unwrap(), None);
        assert_eq!(view.get(Space::Inbox, &[7]).unwrap().unwrap(), vec![7]);
        let keys = |rev, limit| -> Vec<u8> {
            view.range(Space::Inbox, &[0], &[9], rev, limit)
                .unwrap()
                .into_iter()
                .map(|(k, _)| k[0])
                .collect()
        };
        assert_eq!(keys(false, 10), [1, 4, 5, 7]);
        assert_eq!(keys(false, 2), [1, 4]);
        assert_eq!(keys(true, 2), [7, 5]);
        assert!(view
            .range(Space::Inbox, &[2], &[2], false, 10)
            .unwrap()
            .is_empty());
    }
}
