//! REST for push: the server's VAPID public key, and a user's Web Push
//! subscriptions (what the browser's `pushManager.subscribe()` returns).
//!
//! The server will POST to whatever endpoint is stored, so endpoints are
//! held to [`EndpointPolicy`]: HTTPS to a known push service, nothing else
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

use super::web_push::subscription_keys;
use crate::http::{parse, ApiError, AuthUser};
use crate::state::Edge;

/// Longest endpoint URL stored.
const MAX_ENDPOINT_LEN: usize = 1024;

/// Which push endpoints the server will send to.
#[derive(Debug, Clone)]
pub struct EndpointPolicy {
    /// Host names (a host or any subdomain of it).
    pub hosts: Vec<String>,
    /// Plain `http://` endpoints too (development and tests only).
    pub allow_http: bool,
}

impl EndpointPolicy {
    pub fn allows(&self, endpoint: &str) -> bool {
        let Ok(url) = reqwest::Url::parse(endpoint) else {
            return false;
        };
        let scheme_ok = url.scheme() == "https" || (self.allow_http && url.scheme() == "http");
        let host = url.host_str().unwrap_or("");
        scheme_ok
            && endpoint.len() <= MAX_ENDPOINT_LEN
            && url.username().is_empty()
            && url.password().is_none()
            && self.hosts.iter().any(|h| {
                host == h
                    || host
                        .strip_suffix(h.as_str())
                        .is_some_and(|p| p.ends_with('.'))
            })
    }
}

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
pub async fn vapid_public_key(State(edge): State<Arc<Edge>>) -> Json<serde_json::Value> {
    Json(json!({ "key": edge.vapid_public_key }))
}

/// `POST /v1/push/subscriptions`: notify this browser when I am offline.
pub async fn subscribe(
    State(edge): State<Arc<Edge>>,
    AuthUser(me): AuthUser,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: SubscriptionJson = parse(&body)?;
    if !edge.push_endpoints.allows(&req.endpoint) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_endpoint",
            "the endpoint is not an HTTPS URL of a known push service",
        ));
    }
    let subscription = WebPushSubscription {
        endpoint: req.endpoint,
        p256dh: req.keys.p256dh,
        auth: req.keys.auth,
    };
    subscription_keys(&subscription)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_keys", e.to_string()))?;
    let endpoint = subscription.endpoint.clone();
    let status = match edge
        .push_subscriptions
        .add(&me, subscription)
        .await
        .map_err(ApiError::internal)?
    {
        Added::Added => StatusCode::CREATED,
        Added::Replaced => StatusCode::OK,
        Added::Full => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "too_many_subscriptions",
                format!("at most {MAX_PER_USER} devices; remove one first"),
            ))
        }
    };
    Ok((status, Json(json!({ "endpoint": endpoint }))).into_response())
}

/// `GET /v1/push/subscriptions`: my subscribed endpoints.
pub async fn list(
    State(edge): State<Arc<Edge>>,
    AuthUser(me): AuthUser,
) -> Result<Json<serde_json::Value>, ApiError> {
    let subscriptions = edge
        .push_subscriptions
        .of(&me)
        .await
        .map_err(ApiError::internal)?;
    let endpoints: Vec<&str> = subscriptions.iter().map(|s| s.endpoint.as_str()).collect();
    Ok(Json(json!({ "endpoints": endpoints })))
}

/// `DELETE /v1/push/subscriptions {endpoint}`: stop notifying it.
pub async fn unsubscribe(
    State(edge): State<Arc<Edge>>,
    AuthUser(me): AuthUser,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let req: Endpoint = parse(&body)?;
    if edge
        .push_subscriptions
        .remove(&me, &req.endpoint)
        .await
        .map_err(ApiError::internal)?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such subscription of yours",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_endpoints_of_listed_push_services_pass() {
        let policy = EndpointPolicy {
            hosts: vec![
                "push.services.mozilla.com".into(),
                "fcm.googleapis.com".into(),
            ],
            allow_http: false,
        };
        for ok in [
            "https://fcm.googleapis.com/fcm/send/abc",
            "https://updates.push.services.mozilla.com/wpush/v2/xyz",
        ] {
            assert!(policy.allows(ok), "{ok}");
        }
        for bad in [
            "http://fcm.googleapis.com/fcm/send/abc",
            "https://evilfcm.googleapis.com.attacker.net/x",
            "https://xfcm.googleapis.com/x",
            "https://user:pw@fcm.googleapis.com/x",
            "https://127.0.0.1/x",
            "file:///etc/passwd",
            "not a url",
        ] {
            assert!(!policy.allows(bad), "{bad}");
        }
        let dev = EndpointPolicy {
            hosts: vec!["127.0.0.1".into()],
            allow_http: true,
        };
        assert!(dev.allows("http://127.0.0.1:9999/push/1"));
    }
}
