//! The inbox: the rules of one user's (or one conversation's) ordered,
//! deduplicated, acknowledged list of entries, as a state machine with no
//! I/O and no clock, over keyspaces as plain data. The store drives it
//! over fjall (`samvad_store::engine`: the shard writers of `samvad serve`,
//! the cluster store's `inbox`); tests drive it over [`MemoryState`].
//!
//! - [`rules`]: [`InboxRules`], inputs in, changes and effects out.
//! - [`view`]: what the rules read ([`Committed`]) and write ([`Pending`]).
//! - [`keys`]: the composite keys of the keyspaces.
//! - [`presence`]: which live sessions the rules push to.

pub mod keys;
mod presence;
mod rules;
mod view;

pub use presence::{LivePresence, PresenceMap, SessionRoute};
pub use rules::{
    entry_seqs, Effect, Holding, InboxRules, Input, Message, Output, HISTORY_PAGE_MAX,
    NOTIFIED_TEXT_CHARS, SYNC_PAGE,
};
pub use view::{Committed, MemoryState, Pending, Space, StateError, View};
