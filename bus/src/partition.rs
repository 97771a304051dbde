//! Choosing a partition from a record key.

/// The partition of `key` among `partitions`: FNV-1a, stable across
/// processes and versions, so every producer agrees where a key lives.
pub fn partition_for(key: &[u8], partitions: u32) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % u64::from(partitions.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_same_partition_and_spread() {
        assert_eq!(partition_for(b"alice", 8), partition_for(b"alice", 8));
        let mut seen = [0u32; 8];
        for i in 0..8000 {
            seen[partition_for(format!("user{i}").as_bytes(), 8) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 700), "{seen:?}");
    }
}
