//! What names and ids look like, and the ids derived from them.
//!
//! Architecture invariant: user names and group ids never contain `:` or
//! `#`, so a 1:1 chat id (`a:b`) and a history inbox (`#<chatid>`) can
//! never be mistaken for either.

/// Longest accepted envelope (message) id, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// The device of a hello that names none.
pub const DEFAULT_DEVICE: &str = "default";

fn name_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b)
}

/// Whether `name` is a valid user name: 3 to 32 of `a-z 0-9 _ . -`.
pub fn valid_username(name: &str) -> bool {
    (3..=32).contains(&name.len()) && name.bytes().all(name_byte)
}

/// Whether `id` is a valid group (or channel) id: 3 to 64 of
/// `a-z 0-9 _ . -`.
pub fn valid_group_id(id: &str) -> bool {
    (3..=64).contains(&id.len()) && id.bytes().all(name_byte)
}

/// Whether `name` is a valid device name: 1 to 64 of `A-Z a-z 0-9 . _ -`.
pub fn valid_device(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// The conversation id of a 1:1 chat: both user names, sorted, so that both
/// directions share one `inbound` partition and keep their order.
pub fn chat_id(a: &str, b: &str) -> String {
    if a <= b {
        format!("{a}:{b}")
    } else {
        format!("{b}:{a}")
    }
}

/// Whose inbox an inbox is: a user's, or a conversation's history. On the
/// wire (`DeliverRecord.user`) and in keys it is one string, a user name
/// or `#<chatid>` (no user name or chat id contains `#`); this type is the
/// one place that spelling is read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InboxOwner<'a> {
    User(&'a str),
    History { chatid: &'a str },
}

impl<'a> InboxOwner<'a> {
    /// The owner an inbox's name stands for.
    pub fn parse(owner: &'a str) -> Self {
        match owner.strip_prefix('#') {
            Some(chatid) => InboxOwner::History { chatid },
            None => InboxOwner::User(owner),
        }
    }

    /// The user, if the inbox is a user's.
    pub fn user(self) -> Option<&'a str> {
        match self {
            InboxOwner::User(user) => Some(user),
            InboxOwner::History { .. } => None,
        }
    }
}

/// The inbox's name, as the wire and the keys spell it.
impl std::fmt::Display for InboxOwner<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InboxOwner::User(user) => f.write_str(user),
            InboxOwner::History { chatid } => write!(f, "#{chatid}"),
        }
    }
}

/// The name of the inbox that holds conversation `chatid`'s history.
pub fn history_owner(chatid: &str) -> String {
    InboxOwner::History { chatid }.to_string()
}

/// Whether an inbox's name is a conversation's history, not a user's.
pub fn is_history(owner: &str) -> bool {
    matches!(InboxOwner::parse(owner), InboxOwner::History { .. })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_ids_are_symmetric() {
        assert_eq!(chat_id("bob", "ann"), "ann:bob");
        assert_eq!(chat_id("ann", "bob"), "ann:bob");
    }

    #[test]
    fn names_ids_and_devices() {
        assert!(valid_username("ann") && valid_username("a.b_c-9"));
        for bad in ["an", "Ann", "a:b", "#ann", "ann bob", &"a".repeat(33)] {
            assert!(!valid_username(bad), "{bad}");
        }
        assert!(valid_group_id(&"g".repeat(64)) && !valid_group_id(&"g".repeat(65)));
        assert!(!valid_group_id("a:b") && !valid_group_id("#ab"));
        assert!(valid_device("Pixel-7.a_1") && !valid_device("") && !valid_device("a b"));
        assert!(is_history(&history_owner("ann:bob")) && !is_history("ann"));
        assert_eq!(
            InboxOwner::parse(&history_owner("ann:bob")),
            InboxOwner::History { chatid: "ann:bob" }
        );
        assert_eq!(InboxOwner::parse("ann").user(), Some("ann"));
        assert_eq!(InboxOwner::parse("#g1").user(), None);
    }
}
