//! The server under test: where it listens (discovered from its
//! `/cert-hash`), its users, and its memory (from its `/metrics`).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::stream::{self, StreamExt};
use serde::Deserialize;

use samvad_client::rest::{self, RestError};
use samvad_client::ServerAddr;

/// Password of every user the harness provisions.
pub const LOAD_PASSWORD: &str = "samvad-load-password";

#[derive(Deserialize)]
struct CertHash {
    sha256: String,
    quic_port: u16,
}

/// Finds the QUIC port and certificate hash of the server whose plain-HTTP
/// listener is `http` (`http://127.0.0.1:8080`). Only loopback targets are
/// accepted: the harness is not a tool to flood other machines.
pub async fn discover(http: &str) -> anyhow::Result<ServerAddr> {
    let (http, addr) = loopback_target(http, "http://").await?;
    let info: CertHash = reqwest::get(format!("{http}/cert-hash"))
        .await
        .context("GET /cert-hash")?
        .error_for_status()?
        .json()
        .await?;
    let mut cert_sha256 = [0u8; 32];
    hex::decode_to_slice(&info.sha256, &mut cert_sha256).context("certificate hash")?;
    Ok(ServerAddr {
        quic: SocketAddr::new(addr.ip(), info.quic_port),
        http,
        cert_sha256,
    })
}

/// `url` without a trailing slash, once checked to start with `scheme` and
/// to name a loopback address: the harness is not a tool to flood other
/// machines.
pub async fn loopback_url(url: &str, scheme: &str) -> anyhow::Result<String> {
    Ok(loopback_target(url, scheme).await?.0)
}

/// [`loopback_url`], and the address its host and port resolve to.
pub async fn loopback_target(url: &str, scheme: &str) -> anyhow::Result<(String, SocketAddr)> {
    let url = url.trim_end_matches('/').to_string();
    let rest = url
        .strip_prefix(scheme)
        .with_context(|| format!("the server URL must start with {scheme}"))?;
    let host_port = rest.split('/').next().unwrap_or(rest);
    let addr: SocketAddr = tokio::net::lookup_host(host_port)
        .await
        .with_context(|| format!("resolving {host_port}"))?
        .next()
        .context("the server name resolves to nothing")?;
    if !addr.ip().is_loopback() {
        bail!(
            "{} is not a loopback address: samvad-load only targets this machine",
            addr.ip()
        );
    }
    Ok((url, addr))
}

/// Resident memory of the server in bytes, from its Prometheus metrics.
pub async fn server_rss(http: &str) -> anyhow::Result<u64> {
    Ok(server_metric(http, "samvad_process_resident_memory_bytes").await? as u64)
}

pub use samvad_client::rest::server_metric;

/// Registers `names` (or logs them in when they exist), `parallel` at a
/// time; returns their access tokens in the same order.
pub async fn provision(
    http: &str,
    names: &[String],
    parallel: usize,
) -> anyhow::Result<Vec<String>> {
    let results: Vec<anyhow::Result<String>> = stream::iter(names.iter())
        .map(|name| async move {
            match rest::register(http, name, LOAD_PASSWORD).await {
                Ok(t) => Ok(t.access_token),
                Err(RestError::Refused { status: 409, .. }) => {
                    Ok(rest::login(http, name, LOAD_PASSWORD).await?.access_token)
                }
                Err(e) => Err(anyhow::Error::from(e).context(format!("registering {name}"))),
            }
        })
        .buffered(parallel.max(1))
        .collect()
        .await;
    results.into_iter().collect()
}

/// `count` source addresses 127.0.0.1, 127.0.0.2, … for WebSocket
/// clients: each address has its own range of ephemeral ports.
pub fn loopback_sources(count: usize) -> Vec<IpAddr> {
    (0..count.min(250))
        .map(|i| IpAddr::from([127, 0, 0, 1 + i as u8]))
        .collect()
}

/// Waits until `f` is true or `limit` passes; true if it became true.
pub async fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}
