//! REST for finding people: user search by name (typo tolerant, ranked)
//! and contact matching (which of these names are users). Both need a
//! logged-in caller, so the directory cannot be enumerated anonymously.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::http::{authenticated_user, parse, ApiError};
use crate::session::valid_username;
use crate::state::Edge;

/// Most names one contact match may ask about.
pub const MAX_CONTACTS: usize = 1000;

#[derive(Deserialize)]
pub struct SearchQuery {
    q: String,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    20
}

#[derive(Serialize)]
struct Found {
    user: String,
    score: f64,
}

/// `GET /v1/users?q=…&limit=…`: user names ranked by 3-gram similarity.
pub async fn search(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    query: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    authenticated_user(&edge, &headers)?;
    let Query(query) =
        query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.body_text()))?;
    let q = query.q.trim();
    if q.is_empty() || q.chars().count() > 64 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "q has 1 to 64 characters",
        ));
    }
    let found = edge
        .directory
        .search_users(
            q,
            query.limit.clamp(1, samvad_store::user_search::MAX_RESULTS),
        )
        .await
        .map_err(ApiError::internal)?;
    let users: Vec<Found> = found
        .into_iter()
        .map(|(user, score)| Found {
            user,
            score: (score * 1000.0).round() / 1000.0,
        })
        .collect();
    Ok(Json(serde_json::json!({ "users": users })))
}

#[derive(Deserialize)]
struct ContactMatch {
    usernames: Vec<String>,
}

/// `POST /v1/contacts/match {usernames}`: which of these names are users.
pub async fn match_contacts(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    authenticated_user(&edge, &headers)?;
    let req: ContactMatch = parse(&body)?;
    if req.usernames.len() > MAX_CONTACTS {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "too_many_contacts",
            format!("at most {MAX_CONTACTS} names per call"),
        ));
    }
    let mut users = Vec::new();
    for name in &req.usernames {
        if valid_username(name)
            && !users.contains(name)
            && edge
                .directory
                .exists(name)
                .await
                .map_err(ApiError::internal)?
        {
            users.push(name.clone());
        }
    }
    Ok(Json(serde_json::json!({ "users": users })))
}
