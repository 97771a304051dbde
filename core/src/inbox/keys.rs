//! Composite keys. User names never contain `\0`, so `user \0` is a prefix
//! that matches exactly one user's entries.

pub fn user_prefix(user: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(user.len() + 9);
    k.extend_from_slice(user.as_bytes());
    k.push(0);
    k
}

pub fn inbox_key(user: &str, seq: u64) -> Vec<u8> {
    let mut k = user_prefix(user);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub fn seq_of_inbox_key(key: &[u8]) -> Option<u64> {
    let tail = key.get(key.len().checked_sub(8)?..)?;
    Some(u64::from_be_bytes(tail.try_into().ok()?))
}

/// Dedupe key of an entry: the owner plus the parts that make it unique.
pub fn dedupe_key(user: &str, parts: &[&str]) -> Vec<u8> {
    let mut k = user_prefix(user);
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            k.push(0);
        }
        k.extend_from_slice(part.as_bytes());
    }
    k
}
