//! REST calls of the edge: register, login, refresh.

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
pub(crate) fn http_client() -> &'static reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(reqwest::Client::new)
}

async fn post(base: &str, path: &str, body: serde_json::Value) -> Result<Tokens, RestError> {
    let resp = http_client()
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await?;
    let status = resp.status().as_u16();
    if resp.status().is_success() {
        return Ok(resp.json().await?);
    }
    let v: serde_json::Value = resp.json().await.unwrap_or_default();
    Err(RestError::Refused {
        status,
        code: v["error"]["code"].as_str().unwrap_or("").to_string(),
    })
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
