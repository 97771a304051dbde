//! The UDP endpoint: one quinn endpoint serves both WebTransport (ALPN
//! `h3`, handed to wtransport) and native QUIC sessions (ALPN `samvad/1`),
//! told apart by the ALPN of the TLS handshake, on one port.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use samvad_proto::ALPN_NATIVE;
use wtransport::endpoint::IncomingSessionFuture;

use crate::connection;
use crate::state::Edge;
use crate::tls::Identity;
use crate::transport::{Datagrams, StreamTransport};

/// ALPN of HTTP/3, which WebTransport runs on.
pub const ALPN_H3: &[u8] = b"h3";
/// Path browsers open the WebTransport session on.
pub const WT_PATH: &str = "/wt";

/// The quinn server config for `identity`.
pub fn server_config(identity: &Identity) -> anyhow::Result<quinn::ServerConfig> {
    let tls = identity.server_config(&[ALPN_H3, ALPN_NATIVE])?;
    let crypto =
        quinn::crypto::rustls::QuicServerConfig::try_from(tls).context("QUIC TLS config")?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_idle_timeout(Some(
            Duration::from_secs(30)
                .try_into()
                .expect("30 s is a valid idle timeout"),
        ))
        .max_concurrent_bidi_streams(8u32.into())
        .max_concurrent_uni_streams(8u32.into());
    config.transport_config(Arc::new(transport));
    Ok(config)
}

pub fn bind(addr: SocketAddr, identity: &Identity) -> anyhow::Result<quinn::Endpoint> {
    quinn::Endpoint::server(server_config(identity)?, addr)
        .with_context(|| format!("binding UDP {addr}"))
}

/// Accepts connections until the endpoint closes.
pub async fn serve(endpoint: quinn::Endpoint, edge: Arc<Edge>) {
    while let Some(incoming) = endpoint.accept().await {
        let edge = edge.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(incoming, edge).await {
                tracing::debug!(error = %e, "QUIC connection ended with an error");
            }
        });
    }
}

async fn handle(incoming: quinn::Incoming, edge: Arc<Edge>) -> anyhow::Result<()> {
    let mut connecting = incoming.accept()?;
    let alpn = connecting
        .handshake_data()
        .await?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()
        .and_then(|h| h.protocol);
    let max_frame = edge.session_config.max_frame;
    match alpn.as_deref() {
        Some(ALPN_NATIVE) => {
            let conn = connecting.await?;
            let (send, recv) = conn.accept_bi().await?;
            let transport = StreamTransport::new(recv, send, max_frame)
                .with_datagrams(Datagrams::Quic(conn.clone()));
            connection::run(edge, transport, "quic").await;
            // The transport waited for the client to acknowledge the last
            // frames, so closing now loses nothing.
            conn.close(0u32.into(), b"session ended");
        }
        Some(ALPN_H3) => {
            let request = IncomingSessionFuture::with_quic_connecting(connecting).await?;
            if request.path() != WT_PATH {
                request.not_found().await;
                return Ok(());
            }
            let conn = request.accept().await?;
            let (send, recv) = conn.accept_bi().await?;
            let transport = StreamTransport::new(recv, send, max_frame)
                .with_datagrams(Datagrams::WebTransport(conn.clone()));
            connection::run(edge, transport, "webtransport").await;
            conn.close(0u32.into(), b"session ended");
        }
        other => anyhow::bail!("unexpected ALPN {other:?}"),
    }
    Ok(())
}
