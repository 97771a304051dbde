//! REST for push: the server's VAPID public key, and a user's Web Push
//! subscriptions (what the browser's `pushManager.subscribe()` returns).
//!
//! The server will POST to whatever endpoint is stored, so endpoints are
//! held to [`samvad_push::EndpointPolicy`]: HTTPS to a known push service, nothing else
//! (no requests to internal hosts on a user's say-so).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use samvad_store::push_subscriptions::{Added, WebPushSubscription, MAX_PER_USER};
use serde::Deserialize;
use serde_json::json;

use crate::auth::AuthUser;
use crate::error::{parse, ApiError};
use crate::state::PushConfig;
use samvad_push::subscription_keys;
use samvad_store::push_subscriptions::PushSubscriptions;

#[derive(Deserialize)]
struct Keys {
    p256dh: String,
    auth: String,
}

/// A browser `PushSubscription` as JSON.
#[derive(Deserialize)]
struct SubscriptionJson {
    endpoint: String,
    keys: Keys,
}

#[derive(Deserialize)]
struct Endpoint {
    endpoint: String,
}

/// `GET /v1/push/vapid-public-key`: the `applicationServerKey` for
/// `pushManager.subscribe()`.
pub async fn vapid_public_key(State(push): State<Arc<PushConfig>>) -> Json<serde_json::Value> {
    Json(json!({ "key": push.vapid_public_key }))
}

/// `POST /v1/push/subscriptions`: notify this browser when I am offline.
pub async fn subscribe(
    State(push): State<Arc<PushConfig>>,
    State(push_subscriptions): State<Arc<dyn PushSubscriptions>>,
    AuthUser(me): AuthUser,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: SubscriptionJson = parse(&body)?;
    if !push.endpoints.allows(&req.endpoint) {
        return Err(ApiError::invalid(
            "bad_endpoint",
            "the endpoint is not an HTTPS URL of a known push service",
        ));
    }
    let subscription = WebPushSubscription {
        endpoint: req.endpoint,
        p256dh: req.keys.p256dh,
        auth: req.keys.auth,
    };
    subscription_keys(&subscription).map_err(|e| ApiError::invalid("bad_keys", e.to_string()))?;
    let endpoint = subscription.endpoint.clone();
    let status = match push_subscriptions
        .add(&me, subscription)
        .await
        .map_err(ApiError::internal)?
    {
        Added::Added => StatusCode::CREATED,
        Added::Replaced => StatusCode::OK,
        Added::Full => {
            return Err(ApiError::conflict(
                "too_many_subscriptions",
                format!("at most {MAX_PER_USER} devices; remove one first"),
            ))
        }
    };
    Ok((status, Json(json!({ "endpoint": endpoint }))).into_response())
}

/// `GET /v1/push/subscriptions`: my subscribed endpoints.
pub async fn list(
    State(push_subscriptions): State<Arc<dyn PushSubscriptions>>,
    AuthUser(me): AuthUser,
) -> Result<Json<serde_json::Value>, ApiError> {
    let subscriptions = push_subscriptions
        .of(&me)
        .await
        .map_err(ApiError::internal)?;
    let endpoints: Vec<&str> = subscriptions.iter().map(|s| s.endpoint.as_str()).collect();
    Ok(Json(json!({ "endpoints": endpoints })))
}

/// `DELETE /v1/push/subscriptions {endpoint}`: stop notifying it.
pub async fn unsubscribe(
    State(push_subscriptions): State<Arc<dyn PushSubscriptions>>,
    AuthUser(me): AuthUser,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let req: Endpoint = parse(&body)?;
    if push_subscriptions
        .remove(&me, &req.endpoint)
        .await
        .map_err(ApiError::internal)?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("no such subscription of yours"))
    }
}
