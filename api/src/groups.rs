//! REST for groups: create, list mine, read one (members only), rename,
//! delete, invite / accept / decline, remove or leave, roles and rights.
//! Every call is authenticated by the access token in `Authorization:
//! Bearer`. A change is read–apply–compare-and-set (the rules are
//! `samvad_core::group_rules`, I/O free), retried if another change won,
//! and announced to the members as a system message in the group's
//! conversation.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use samvad_core::group::{Group, Role};
use samvad_core::group_rules::{Change, Event, GroupError, Right};
use samvad_proto::bus::{deliver_record, DeliverRecord};
use samvad_proto::v1::{Action, Body, Envelope, Head, HeadType};
use serde::{Deserialize, Serialize};

use crate::auth::AuthUser;
use crate::error::{parse, ApiError};
use crate::state::{Groups, Inboxes};
use crate::users::account_exists;
use samvad_core::names::valid_username;
use samvad_store::accounts::AccountStore;
use samvad_store::groups::GroupStore;

const MAX_NAME_LEN: usize = 100;

#[derive(Deserialize)]
struct CreateGroup {
    name: String,
    #[serde(default)]
    members: Vec<String>,
    /// A channel: anyone subscribes, only admins post.
    #[serde(default)]
    channel: bool,
}

#[derive(Serialize)]
struct GroupSummary {
    id: String,
    name: String,
}

/// 400 `unknown_user` unless `user` names an account.
async fn require_user(accounts: &dyn AccountStore, user: &str) -> Result<(), ApiError> {
    let exists = valid_username(user) && account_exists(accounts, user).await?;
    if exists {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "unknown_user",
            format!("no user {user:?}"),
        ))
    }
}

/// Most channels one listing returns.
pub const MAX_CHANNELS_LISTED: usize = 100;

#[derive(Deserialize)]
pub struct ChannelQuery {
    #[serde(default)]
    q: String,
    #[serde(default = "default_channel_limit")]
    limit: usize,
}

fn default_channel_limit() -> usize {
    50
}

/// `GET /v1/channels?q=…`: the public directory of channels whose name
/// contains `q` (any case; empty: all), by name, so that anyone can find
/// one to subscribe to.
pub async fn channels(
    State(groups): State<Arc<dyn GroupStore>>,
    _: AuthUser,
    query: Result<Query<ChannelQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let q = query.q.trim();
    if q.chars().count() > MAX_NAME_LEN {
        return Err(ApiError::bad_request(format!(
            "q has at most {MAX_NAME_LEN} characters"
        )));
    }
    let found = groups
        .channels(q, query.limit.clamp(1, MAX_CHANNELS_LISTED))
        .await
        .map_err(ApiError::internal)?;
    let channels: Vec<GroupSummary> = found
        .into_iter()
        .map(|(id, name)| GroupSummary { id, name })
        .collect();
    Ok(Json(serde_json::json!({ "channels": channels })))
}

/// `POST /v1/groups`: the caller becomes the creator; every member named
/// must exist.
pub async fn create(
    State(groups): State<Groups>,
    AuthUser(me): AuthUser,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: CreateGroup = parse(&body)?;
    let id = format!("g{:016x}", rand::random::<u64>());
    let (group, created) = Group::create(
        id,
        &me,
        &req.name,
        &req.members,
        req.channel,
        samvad_core::clock::unix_ms(),
    )
    .map_err(|e| match e {
        // The contract names a bad name `bad_request` here.
        GroupError::Invalid(why) => ApiError::bad_request(why),
        e => refused(e),
    })?;
    for member in group.member_names().filter(|m| *m != me) {
        require_user(&*groups.accounts, member).await?;
    }
    if !groups
        .groups
        .create(group.clone())
        .await
        .map_err(ApiError::internal)?
    {
        return Err(ApiError::internal("group id collision"));
    }
    announce(&*groups.inboxes, &group.id, &created).await?;
    Ok((StatusCode::CREATED, Json(group)).into_response())
}

/// `GET /v1/groups`: the groups I am a member of.
pub async fn list(
    State(groups): State<Arc<dyn GroupStore>>,
    AuthUser(me): AuthUser,
) -> Result<Json<serde_json::Value>, ApiError> {
    let ids = groups.of_member(&me).await.map_err(ApiError::internal)?;
    let mut mine = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(g) = groups.get(&id).await.map_err(ApiError::internal)? {
            mine.push(GroupSummary {
                id: g.id,
                name: g.name,
            });
        }
    }
    Ok(Json(serde_json::json!({ "groups": mine })))
}

/// `GET /v1/groups/{id}`: the whole group, to its members only (a channel
/// to anyone). A non-member gets the same 404 as for a group that does not
/// exist, so that group ids cannot be probed.
pub async fn get_one(
    State(groups): State<Arc<dyn GroupStore>>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Group>, ApiError> {
    match groups.get(&id).await.map_err(ApiError::internal)? {
        // Channels are public: anyone may look before subscribing.
        Some(g) if g.is_member(&me) || g.channel => Ok(Json(g)),
        _ => Err(ApiError::not_found(format!("no group {id:?} of yours"))),
    }
}

/// Content type of system messages: the body is the [`Event`] as JSON.
pub const GROUP_EVENT_CONTENT_TYPE: &str = "application/vnd.samvad.group-event+json";

fn action_of(event: &Event) -> Action {
    match event {
        Event::Created { .. } => Action::Create,
        Event::Subscribed { .. } => Action::Subscribe,
        Event::Invited { .. } => Action::AddMember,
        Event::Joined { .. } => Action::Join,
        Event::Declined { .. } | Event::Left { .. } => Action::Leave,
        Event::Removed { .. } => Action::RemoveMember,
        Event::Renamed { .. } | Event::RoleChanged { .. } => Action::State,
        Event::Deleted { .. } => Action::Delete,
    }
}

/// The system message telling `event` in group `group_id`: no sender (only
/// an edge writes those; the router sends them to every member).
fn system_message(group_id: &str, event: &Event) -> Envelope {
    let now = samvad_core::clock::unix_ms();
    Envelope {
        id: format!("sys-{}", uuid::Uuid::new_v4().simple()),
        head: Some(Head {
            r#type: HeadType::Group as i32,
            to: group_id.to_string(),
            from: String::new(),
            chatid: group_id.to_string(),
            content_type: GROUP_EVENT_CONTENT_TYPE.into(),
            action: action_of(event) as i32,
        }),
        body: Some(Body {
            text: serde_json::to_string(event).unwrap_or_default(),
            ts: now,
        }),
        server_ts: now,
        ..Default::default()
    }
}

/// Announces `event`: to the members through `inbound` (in order with the
/// group's messages), and straight to the inbox of `direct` users (who are
/// not members: an invitee, someone who left or was removed, or everyone
/// of a deleted group).
async fn announce_to(
    inboxes: &dyn Inboxes,
    group_id: &str,
    event: &Event,
    to_members: bool,
    direct: &[&str],
) -> Result<(), ApiError> {
    let env = system_message(group_id, event);
    let records: Vec<DeliverRecord> = direct
        .iter()
        .map(|user| DeliverRecord {
            user: user.to_string(),
            then: Vec::new(),
            kind: Some(deliver_record::Kind::Message(env.clone())),
        })
        .collect();
    if !records.is_empty() {
        inboxes.deliver(records).await.map_err(ApiError::internal)?;
    }
    if to_members {
        inboxes
            .post_to_group(env)
            .await
            .map_err(ApiError::internal)?;
    }
    Ok(())
}

async fn announce(inboxes: &dyn Inboxes, group_id: &str, event: &Event) -> Result<(), ApiError> {
    announce_to(inboxes, group_id, event, true, &[]).await
}

fn refused(e: GroupError) -> ApiError {
    let status = match e {
        GroupError::NotMember | GroupError::NotInvited => StatusCode::NOT_FOUND,
        GroupError::MissingRight(_) | GroupError::Forbidden(_) => StatusCode::FORBIDDEN,
        GroupError::AlreadyMember | GroupError::AlreadyInvited => StatusCode::CONFLICT,
        GroupError::Invalid(_) | GroupError::TooManyMembers => StatusCode::BAD_REQUEST,
    };
    ApiError::new(status, e.code(), e.to_string())
}

fn no_such_group(id: &str) -> ApiError {
    ApiError::not_found(format!("no group {id:?} of yours"))
}

/// Every attempt of a change lost to another change of the same group.
fn busy() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "busy",
        "the group changed too often meanwhile; retry",
    )
}

/// Attempts of read–apply–write before giving up on a busy group.
const CHANGE_ATTEMPTS: usize = 16;

/// Why a change did not happen: the group's rules refused it (a typed
/// refusal a caller may accept, as subscribing twice), or the group, the
/// directory or the announcement failed it.
enum ChangeFailed {
    Refused(GroupError),
    Api(ApiError),
}

impl From<ApiError> for ChangeFailed {
    fn from(e: ApiError) -> Self {
        ChangeFailed::Api(e)
    }
}

impl From<ChangeFailed> for ApiError {
    fn from(e: ChangeFailed) -> Self {
        match e {
            ChangeFailed::Refused(e) => refused(e),
            ChangeFailed::Api(e) => e,
        }
    }
}

/// Applies `change` by `me` to group `id`, announces it, and returns the
/// group as it now is.
async fn change(
    groups: &Groups,
    me: &str,
    id: &str,
    change: Change,
) -> Result<Group, ChangeFailed> {
    for _ in 0..CHANGE_ATTEMPTS {
        let Some(old) = groups.groups.get(id).await.map_err(ApiError::internal)? else {
            return Err(no_such_group(id).into());
        };
        if !old.involves(me, &change) {
            return Err(no_such_group(id).into());
        }
        let mut new = old.clone();
        let event = new
            .apply(me, change.clone(), samvad_core::clock::unix_ms())
            .map_err(ChangeFailed::Refused)?;
        let stored = if let Event::Deleted { .. } = event {
            groups.groups.delete(&old).await
        } else {
            groups.groups.replace(&old, &new).await
        };
        if stored.map_err(ApiError::internal)? {
            let audience = new.audience(&event);
            let direct: Vec<&str> = audience.direct.iter().map(String::as_str).collect();
            announce_to(&*groups.inboxes, id, &event, audience.members, &direct).await?;
            return Ok(new);
        }
    }
    Err(busy().into())
}

#[derive(Deserialize)]
struct Rename {
    name: String,
}

/// `PATCH /v1/groups/{id}`: rename (admins and the creator).
pub async fn rename(
    State(groups): State<Groups>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Group>, ApiError> {
    let req: Rename = parse(&body)?;
    Ok(Json(
        change(&groups, &me, &id, Change::Rename { name: req.name }).await?,
    ))
}

#[derive(Deserialize)]
struct InviteRequest {
    user: String,
}

/// `POST /v1/groups/{id}/invites`: invite a user (needs `add_members`).
pub async fn invite(
    State(groups): State<Groups>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Group>, ApiError> {
    let req: InviteRequest = parse(&body)?;
    require_user(&*groups.accounts, &req.user).await?;
    Ok(Json(
        change(&groups, &me, &id, Change::Invite { user: req.user }).await?,
    ))
}

/// `POST /v1/groups/{id}/invites/accept`: join a group I am invited to.
pub async fn accept(
    State(groups): State<Groups>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Group>, ApiError> {
    Ok(Json(change(&groups, &me, &id, Change::Accept).await?))
}

/// `POST /v1/groups/{id}/subscribe`: join a channel.
pub async fn subscribe(
    State(groups): State<Groups>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Group>, ApiError> {
    Ok(Json(change(&groups, &me, &id, Change::Subscribe).await?))
}

/// Subscribes `me` to channel `id`, or unsubscribes (leaves a channel or
/// a group): the REST calls' work, for the seed's in-envelope actions too.
/// Subscribing again is no error.
pub async fn set_subscribed(
    groups: &Groups,
    me: &str,
    id: &str,
    subscribe: bool,
) -> Result<(), ApiError> {
    let outcome = if subscribe {
        change(groups, me, id, Change::Subscribe).await
    } else {
        change(
            groups,
            me,
            id,
            Change::Remove {
                user: me.to_string(),
            },
        )
        .await
    };
    match outcome {
        Ok(_) => Ok(()),
        Err(ChangeFailed::Refused(GroupError::AlreadyMember)) if subscribe => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// `POST /v1/groups/{id}/unsubscribe`: leave a channel (or a group).
pub async fn unsubscribe(
    State(groups): State<Groups>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    set_subscribed(&groups, &me, &id, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/groups/{id}/invites/decline`: turn an invite down.
pub async fn decline(
    State(groups): State<Groups>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    change(&groups, &me, &id, Change::Decline).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /v1/groups/{id}/members/{user}`: remove a member (needs
/// `remove_members` and a higher role), or leave (`user` = me).
pub async fn remove(
    State(groups): State<Groups>,
    AuthUser(me): AuthUser,
    Path((id, user)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    change(&groups, &me, &id, Change::Remove { user }).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct RoleRequest {
    role: Role,
    #[serde(default)]
    rights: std::collections::BTreeSet<Right>,
}

/// `PUT /v1/groups/{id}/members/{user}`: set a member's role and rights
/// (the creator only).
pub async fn set_role(
    State(groups): State<Groups>,
    AuthUser(me): AuthUser,
    Path((id, user)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Group>, ApiError> {
    let req: RoleRequest = parse(&body)?;
    let change_role = Change::SetRole {
        user,
        role: req.role,
        rights: req.rights,
    };
    Ok(Json(change(&groups, &me, &id, change_role).await?))
}

/// `DELETE /v1/groups/{id}`: delete the group (the creator only); every
/// member is told.
pub async fn delete(
    State(groups): State<Groups>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    change(&groups, &me, &id, Change::Delete).await?;
    Ok(StatusCode::NO_CONTENT)
}
