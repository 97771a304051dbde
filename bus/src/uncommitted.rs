//! What a processing role has done but not yet committed: per input
//! partition, the outputs it owes and the offset its next commit marks.
//!
//! A transaction that aborts leaves its batch here, to be offered again
//! with the next commit; a partition revoked meanwhile takes its share
//! with it (the next owner reads those records again from the committed
//! offset and produces their outputs itself). So every output is
//! committed once, by whoever owns its source partition when it commits.

use std::collections::BTreeMap;

/// `T`: an output as the role keeps it (the bus's [`crate::Outgoing`], or
/// the role's own record type, encoded at commit).
#[derive(Debug)]
pub struct Uncommitted<T> {
    partitions: BTreeMap<u32, Owed<T>>,
}

impl<T> Default for Uncommitted<T> {
    fn default() -> Self {
        Uncommitted {
            partitions: BTreeMap::new(),
        }
    }
}

/// One commit's worth of [`Uncommitted`]: outputs tagged with their input
/// partition, and (partition, next offset) to mark.
#[derive(Debug)]
pub struct ToCommit<T> {
    pub outputs: Vec<(u32, T)>,
    pub offsets: Vec<(u32, u64)>,
}

#[derive(Debug)]
struct Owed<T> {
    outputs: Vec<T>,
    /// The next offset to read: what the commit marks as consumed.
    next: u64,
}

impl<T> Default for Owed<T> {
    fn default() -> Self {
        Owed {
            outputs: Vec::new(),
            next: 0,
        }
    }
}

/// How long a poll waits for new records while owed work waits to be
/// committed again.
const RETRY_AFTER: std::time::Duration = std::time::Duration::from_millis(200);

impl<T: Clone> Uncommitted<T> {
    /// The next records of `processor`; while something is owed, no
    /// longer than [`RETRY_AFTER`] (an empty batch), so that the owed
    /// commit is tried again even when no record comes.
    pub async fn poll(
        &self,
        processor: &mut dyn crate::Processor,
        max: usize,
    ) -> Result<Vec<crate::Record>, crate::BusError> {
        if self.is_empty() {
            return processor.poll(max).await;
        }
        match tokio::time::timeout(RETRY_AFTER, processor.poll(max)).await {
            Ok(records) => records,
            Err(_) => Ok(Vec::new()),
        }
    }

    /// Records the work done on `partition` up to (not including) `next`.
    pub fn add(&mut self, partition: u32, outputs: Vec<T>, next: u64) {
        let owed = self.partitions.entry(partition).or_default();
        owed.outputs.extend(outputs);
        owed.next = owed.next.max(next);
    }

    /// Outputs owed for `partition` without moving its offset (work found
    /// on disk that an earlier incarnation never committed).
    pub fn owe(&mut self, partition: u32, outputs: Vec<T>) {
        if outputs.is_empty() {
            return;
        }
        self.partitions
            .entry(partition)
            .or_default()
            .outputs
            .extend(outputs);
    }

    /// The owed outputs of `partition`, without taking them.
    pub fn outputs(&self, partition: u32) -> &[T] {
        self.partitions
            .get(&partition)
            .map_or(&[], |o| o.outputs.as_slice())
    }

    /// Forgets `partition`: it is no longer this member's.
    pub fn revoke(&mut self, partition: u32) {
        self.partitions.remove(&partition);
    }

    pub fn is_empty(&self) -> bool {
        self.partitions.is_empty()
    }

    /// Everything owed, for one commit: the outputs with their input
    /// partition, in partition order (order within a partition kept), and
    /// the offsets to mark. Offsets of 0 (outputs owed before any record
    /// was read) are not marked.
    pub fn to_commit(&self) -> ToCommit<T> {
        let mut outputs = Vec::new();
        let mut offsets = Vec::new();
        for (&partition, owed) in &self.partitions {
            outputs.extend(owed.outputs.iter().map(|o| (partition, o.clone())));
            if owed.next > 0 {
                offsets.push((partition, owed.next));
            }
        }
        ToCommit { outputs, offsets }
    }

    /// The commit went through.
    pub fn clear(&mut self) {
        self.partitions.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Outgoing;

    fn out(key: &str) -> Outgoing {
        Outgoing::new("t", key.to_string(), bytes::Bytes::from_static(b"x"))
    }

    fn keys(outputs: &[(u32, Outgoing)]) -> Vec<&[u8]> {
        outputs.iter().map(|(_, o)| o.key.as_ref()).collect()
    }

    #[test]
    fn an_aborted_batch_is_offered_again_with_the_next() {
        let mut u = Uncommitted::<Outgoing>::default();
        u.add(0, vec![out("a")], 5);
        u.add(1, vec![out("b")], 9);
        // The commit failed: nothing cleared; the next batch joins.
        u.add(0, vec![out("c")], 7);
        let ToCommit { outputs, offsets } = u.to_commit();
        assert_eq!(keys(&outputs), [b"a" as &[u8], b"c", b"b"]);
        assert_eq!(offsets, [(0, 7), (1, 9)]);
        u.clear();
        assert!(u.is_empty());
        assert_eq!(u.to_commit().offsets, []);
    }

    #[test]
    fn a_revoked_partition_takes_its_outputs_and_offset_with_it() {
        let mut u = Uncommitted::<Outgoing>::default();
        u.add(0, vec![out("a")], 5);
        u.add(1, vec![out("b")], 9);
        u.revoke(0);
        let ToCommit { outputs, offsets } = u.to_commit();
        assert_eq!(keys(&outputs), [b"b" as &[u8]]);
        assert_eq!(offsets, [(1, 9)]);
    }

    #[test]
    fn owed_outputs_without_records_mark_no_offset() {
        let mut u = Uncommitted::<Outgoing>::default();
        u.owe(2, vec![out("r")]);
        u.owe(3, Vec::new());
        assert_eq!(u.outputs(2).len(), 1);
        let ToCommit { outputs, offsets } = u.to_commit();
        assert_eq!(outputs.len(), 1);
        assert!(offsets.is_empty(), "{offsets:?}");
        // Records read later move the offset.
        u.add(2, Vec::new(), 4);
        assert_eq!(u.to_commit().offsets, [(2, 4)]);
    }
}
