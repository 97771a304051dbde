//! The directory: everything an edge needs to log users in and check
//! recipients, and a router needs to fan group messages out, as one bundle
//! of the stores by kind ([`AccountStore`], [`PhoneStore`],
//! [`RefreshTokenStore`], [`GroupStore`]). Each handler takes the one kind
//! it uses; the bundle is how a process hands them over together.
//!
//! - [`Directory::open`]: fjall in the process (`samvad serve`);
//! - [`Directory::connect`]: Redis, shared by every edge of a cluster, so
//!   that login, refresh and token checks work on any edge. Run that Redis
//!   with AOF persistence in production: accounts live there.

use std::sync::Arc;

use fjall::Database;

use crate::accounts::{AccountStore, Accounts, RedisAccounts};
use crate::groups::{GroupStore, Groups, RedisGroups};
use crate::phones::{PhoneStore, Phones, RedisPhones};
use crate::redis::RedisKeyspace;
use crate::tokens::{RedisRefreshTokens, RefreshTokenStore, RefreshTokens};
use crate::StoreError;

/// The stores of who exists and what they belong to.
#[derive(Clone)]
pub struct Directory {
    pub accounts: Arc<dyn AccountStore>,
    pub phones: Arc<dyn PhoneStore>,
    pub refresh_tokens: Arc<dyn RefreshTokenStore>,
    pub groups: Arc<dyn GroupStore>,
}

impl Directory {
    /// The directory in `db`'s keyspaces.
    pub fn open(db: &Database) -> Result<Self, StoreError> {
        Ok(Directory {
            accounts: Arc::new(Accounts::open(db)?),
            phones: Arc::new(Phones::open(db)?),
            refresh_tokens: Arc::new(RefreshTokens::open(db)?),
            groups: Arc::new(Groups::open(db)?),
        })
    }

    /// The directory in a cluster's Redis, over one shared connection.
    pub fn connect(redis: &RedisKeyspace) -> Self {
        Directory {
            accounts: Arc::new(RedisAccounts::new(redis.clone())),
            phones: Arc::new(RedisPhones::new(redis.clone())),
            refresh_tokens: Arc::new(RedisRefreshTokens::new(redis.clone())),
            groups: Arc::new(RedisGroups::new(redis.clone())),
        }
    }
}
