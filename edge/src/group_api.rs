//! REST for groups: create one, list mine, read one (members only). Every
//! call is authenticated by the access token in `Authorization: Bearer`.

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use samvad_store::groups::{Group, Member, Role};
use serde::{Deserialize, Serialize};

use crate::http::{authenticated_user, parse, ApiError};
use crate::session::valid_username;
use crate::state::Edge;

/// Most members a group is created with (one request, one record).
pub const MAX_INITIAL_MEMBERS: usize = 1000;
const MAX_NAME_LEN: usize = 100;

#[derive(Deserialize)]
struct CreateGroup {
    name: String,
    #[serde(default)]
    members: Vec<String>,
}

#[derive(Serialize)]
struct GroupSummary {
    id: String,
    name: String,
}

/// `POST /v1/groups`: the caller becomes the creator; every member named
/// must exist.
pub async fn create(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let me = authenticated_user(&edge, &headers)?;
    let req: CreateGroup = parse(&body)?;
    let name = req.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_LEN {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("a group name has 1 to {MAX_NAME_LEN} characters"),
        ));
    }
    if req.members.len() > MAX_INITIAL_MEMBERS {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "too_many_members",
            format!("at most {MAX_INITIAL_MEMBERS} members at creation"),
        ));
    }
    let mut members = vec![Member {
        user: me.clone(),
        role: Role::Creator,
    }];
    let mut seen: HashSet<&str> = HashSet::from([me.as_str()]);
    for user in &req.members {
        if !seen.insert(user) {
            continue;
        }
        let exists = valid_username(user)
            && edge
                .directory
                .exists(user)
                .await
                .map_err(ApiError::internal)?;
        if !exists {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "unknown_user",
                format!("no user {user:?}"),
            ));
        }
        members.push(Member {
            user: user.clone(),
            role: Role::Member,
        });
    }
    let group = Group {
        id: format!("g{:016x}", rand::random::<u64>()),
        name: name.to_string(),
        created_ms: samvad_store::inbox::now_ms(),
        members,
    };
    if !edge
        .directory
        .create_group(group.clone())
        .await
        .map_err(ApiError::internal)?
    {
        return Err(ApiError::internal("group id collision"));
    }
    Ok((StatusCode::CREATED, Json(group)).into_response())
}

/// `GET /v1/groups`: the groups I am a member of.
pub async fn list(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let me = authenticated_user(&edge, &headers)?;
    let ids = edge
        .directory
        .groups_of(&me)
        .await
        .map_err(ApiError::internal)?;
    let mut groups = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(g) = edge
            .directory
            .group(&id)
            .await
            .map_err(ApiError::internal)?
        {
            groups.push(GroupSummary {
                id: g.id,
                name: g.name,
            });
        }
    }
    Ok(Json(serde_json::json!({ "groups": groups })))
}

/// `GET /v1/groups/{id}`: the whole group, to its members only. A
/// non-member gets the same 404 as for a group that does not exist, so
/// that group ids cannot be probed.
pub async fn get_one(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Group>, ApiError> {
    let me = authenticated_user(&edge, &headers)?;
    match edge
        .directory
        .group(&id)
        .await
        .map_err(ApiError::internal)?
    {
        Some(g) if g.is_member(&me) => Ok(Json(g)),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no group {id:?} of yours"),
        )),
    }
}
