//! REST calls of the edge: register, login, refresh, groups; and one
//! sample of a server's metrics.

use anyhow::Context;
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Clone, Deserialize)]
pub struct Tokens {
    pub user: String,
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
}

/// An HTTP status and the server's error code.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    #[error("HTTP {status}: {code}")]
    Refused { status: u16, code: String },
    #[error("request: {0}")]
    Http(#[from] reqwest::Error),
}

/// One HTTP client (and connection pool) for every call.
pub fn http_client() -> &'static reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(reqwest::Client::new)
}

async fn post(base: &str, path: &str, body: serde_json::Value) -> Result<Tokens, RestError> {
    let resp = http_client()
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await?;
    if resp.status().is_success() {
        return Ok(resp.json().await?);
    }
    Err(refused(resp).await)
}

/// `base` is `http://host:port` of the edge's HTTP listener.
pub async fn register(base: &str, username: &str, password: &str) -> Result<Tokens, RestError> {
    post(
        base,
        "/v1/register",
        json!({"username": username, "password": password}),
    )
    .await
}

pub async fn login(base: &str, username: &str, password: &str) -> Result<Tokens, RestError> {
    post(
        base,
        "/v1/login",
        json!({"username": username, "password": password}),
    )
    .await
}

pub async fn refresh(base: &str, refresh_token: &str) -> Result<Tokens, RestError> {
    post(base, "/v1/refresh", json!({"refresh_token": refresh_token})).await
}

/// A group as the edge returns it.
#[derive(Debug, Clone, Deserialize)]
pub struct GroupInfo {
    pub id: String,
    pub name: String,
    pub members: Vec<GroupMember>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct GroupMember {
    pub user: String,
    pub role: String,
}

async fn refused(resp: reqwest::Response) -> RestError {
    let status = resp.status().as_u16();
    let v: serde_json::Value = resp.json().await.unwrap_or_default();
    RestError::Refused {
        status,
        code: v["error"]["code"].as_str().unwrap_or("").to_string(),
    }
}

/// Creates a group whose creator is the token's user.
pub async fn create_group(
    base: &str,
    access_token: &str,
    name: &str,
    members: &[String],
) -> Result<GroupInfo, RestError> {
    let resp = http_client()
        .post(format!("{base}/v1/groups"))
        .bearer_auth(access_token)
        .json(&json!({"name": name, "members": members}))
        .send()
        .await?;
    if !resp.status().is_success() {
        return Err(refused(resp).await);
    }
    Ok(resp.json().await?)
}

/// One group, as its member `access_token` sees it.
pub async fn group(base: &str, access_token: &str, id: &str) -> Result<GroupInfo, RestError> {
    let resp = http_client()
        .get(format!("{base}/v1/groups/{id}"))
        .bearer_auth(access_token)
        .send()
        .await?;
    if !resp.status().is_success() {
        return Err(refused(resp).await);
    }
    Ok(resp.json().await?)
}

/// One unlabelled sample of the server's Prometheus metrics (`/metrics`
/// of its HTTP listener, or of a role's `--metrics-listen`).
pub async fn server_metric(http: &str, name: &str) -> anyhow::Result<f64> {
    let text = http_client()
        .get(format!("{http}/metrics"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .with_context(|| format!("the server's /metrics has no {name}"))
}
