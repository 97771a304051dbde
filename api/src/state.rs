//! What the REST API runs on, as sub-states a handler names one by one
//! (`State<Directory>`, `State<FileLimits>`, …) through
//! [`axum::extract::FromRef`]: a handler gets what it uses and nothing
//! else, and the compiler says which parts each needs.
//!
//! The API does not own the message path. What it needs of it (system
//! messages to inboxes, a group post, a history page) is the [`Inboxes`]
//! trait, which the edge implements over its hub and its delivery.

use std::sync::Arc;

use axum::extract::FromRef;
use samvad_bus::BoxFuture;
use samvad_core::throttle::Throttle;
use samvad_core::token::TokenKeys;
use samvad_proto::bus::DeliverRecord;
use samvad_proto::v1::{Envelope, HistoryPage};
use samvad_push::EndpointPolicy;
use samvad_push::SignedWebhook;
use samvad_store::accounts::AccountStore;
use samvad_store::directory::Directory;
use samvad_store::files::FileStore;
use samvad_store::groups::GroupStore;
use samvad_store::phones::PhoneStore;
use samvad_store::push_subscriptions::PushSubscriptions;
use samvad_store::tokens::RefreshTokenStore;

/// Everything the API's handlers may ask for.
#[derive(Clone, FromRef)]
pub struct Api {
    /// Accounts, phones, refresh tokens and groups: fjall in `serve`, Redis
    /// in a cluster. A handler names the one kind it uses (below), or the
    /// whole directory when it checks across kinds.
    pub directory: Directory,
    pub keys: Arc<TokenKeys>,
    /// File records and content.
    pub files: Arc<dyn FileStore>,
    pub file_limits: FileLimits,
    pub throttles: Arc<AuthThrottles>,
    /// The operator's SMS gateway, for phone verification codes.
    pub sms: Sms,
    pub push: Arc<PushConfig>,
    /// Browsers' Web Push subscriptions.
    pub push_subscriptions: Arc<dyn PushSubscriptions>,
    pub inboxes: Arc<dyn Inboxes>,
}

impl FromRef<Api> for Arc<dyn AccountStore> {
    fn from_ref(api: &Api) -> Self {
        api.directory.accounts.clone()
    }
}

impl FromRef<Api> for Arc<dyn PhoneStore> {
    fn from_ref(api: &Api) -> Self {
        api.directory.phones.clone()
    }
}

impl FromRef<Api> for Arc<dyn RefreshTokenStore> {
    fn from_ref(api: &Api) -> Self {
        api.directory.refresh_tokens.clone()
    }
}

impl FromRef<Api> for Arc<dyn GroupStore> {
    fn from_ref(api: &Api) -> Self {
        api.directory.groups.clone()
    }
}

/// What a group change needs: who exists (members must), where groups
/// are kept, and where their announcements go.
#[derive(Clone)]
pub struct Groups {
    pub accounts: Arc<dyn AccountStore>,
    pub groups: Arc<dyn GroupStore>,
    pub inboxes: Arc<dyn Inboxes>,
}

impl Groups {
    pub fn new(directory: &Directory, inboxes: Arc<dyn Inboxes>) -> Self {
        Groups {
            accounts: directory.accounts.clone(),
            groups: directory.groups.clone(),
            inboxes,
        }
    }
}

impl FromRef<Api> for Groups {
    fn from_ref(api: &Api) -> Groups {
        Groups::new(&api.directory, api.inboxes.clone())
    }
}

/// Limits on files.
#[derive(Debug, Clone, Copy)]
pub struct FileLimits {
    /// Largest single file, in bytes.
    pub max_file: u64,
    /// Bytes one user may store in all.
    pub quota: u64,
}

/// Throttles of logins and registrations (each optional).
pub struct AuthThrottles {
    /// Failed logins of one account.
    pub failed_logins_per_account: Option<Throttle<String>>,
    /// Failed logins from one address, whatever the account.
    pub failed_logins_per_address: Option<Throttle<std::net::IpAddr>>,
    /// Accounts created from one address.
    pub registrations_per_address: Option<Throttle<std::net::IpAddr>>,
}

/// The SMS gateway, if the operator gave one.
#[derive(Clone)]
pub struct Sms(pub Option<Arc<SignedWebhook>>);

/// Web Push as browsers see it.
pub struct PushConfig {
    /// What endpoints subscriptions may name.
    pub endpoints: EndpointPolicy,
    /// The VAPID public key (base64url), for `pushManager.subscribe()`.
    pub vapid_public_key: String,
}

/// A page of a conversation's history, asked for by `user`.
#[derive(Debug, Clone)]
pub struct HistoryRequest {
    pub chatid: String,
    pub user: String,
    /// Messages below this sequence number (0: the newest).
    pub before_seq: u64,
    pub limit: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    /// The message path is away (a broker, a writer); retrying helps.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The store answered with something else than was asked for.
    #[error("unexpected answer: {0}")]
    Unexpected(String),
}

/// The message path, as the API uses it.
pub trait Inboxes: Send + Sync + 'static {
    /// Appends each record to its user's inbox (system messages to named
    /// users, who may not be members).
    fn deliver(&self, records: Vec<DeliverRecord>) -> BoxFuture<'_, Result<(), InboxError>>;

    /// Posts `envelope` (from the server) to its group's members as the
    /// group is now.
    fn post_to_group(&self, envelope: Envelope) -> BoxFuture<'_, Result<(), InboxError>>;

    /// A page of history from the store that owns the conversation.
    fn history_page(
        &self,
        request: HistoryRequest,
    ) -> BoxFuture<'_, Result<HistoryPage, InboxError>>;
}
