//! HTTP: the web page, `/cert-hash`, `/metrics` and the WebSocket upgrade,
//! beside the REST API ([`samvad_api::routes`]). The same router serves the
//! HTTPS port and the plain-HTTP loopback port.

use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use samvad_api::{Api, ApiError, ClientIp};
use serde_json::json;

use crate::admission::Refusal;
use crate::connection;
use crate::state::Edge;
use crate::transport::WsTransport;

// The web app, built by `npm run build` in web/ (committed; scripts/test.sh
// checks that it matches the sources).
const INDEX_HTML: &str = include_str!("../../web/dist/index.html");
const APP_JS: &str = include_str!("../../web/dist/app.js");
const APP_CSS: &str = include_str!("../../web/dist/app.css");
const SERVICE_WORKER_JS: &str = include_str!("../../web/dist/sw.js");

/// The edge's own routes (the page, `/cert-hash`, `/metrics`, `/ws`) and
/// the REST API's, on one router.
pub fn router(edge: Arc<Edge>, api: Api) -> Router {
    let own = Router::new()
        .route(
            "/",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    INDEX_HTML,
                )
            }),
        )
        .route(
            "/app.js",
            get(|| async { ([(header::CONTENT_TYPE, "text/javascript")], APP_JS) }),
        )
        .route(
            "/proto/samvad.proto",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/plain")],
                    samvad_proto::SAMVAD_PROTO,
                )
            }),
        )
        .route(
            "/app.css",
            get(|| async { ([(header::CONTENT_TYPE, "text/css")], APP_CSS) }),
        )
        .route(
            "/sw.js",
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/javascript"),
                        // A new build reaches open tabs at their next load.
                        (header::CACHE_CONTROL, "no-cache"),
                    ],
                    SERVICE_WORKER_JS,
                )
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/cert-hash", get(cert_hash))
        .route("/metrics", get(metrics))
        .route("/ws", get(websocket))
        .with_state(edge);
    own.merge(samvad_api::routes(api))
}

async fn cert_hash(State(edge): State<Arc<Edge>>) -> impl IntoResponse {
    Json(
        json!({"algorithm": "sha-256", "sha256": *edge.cert_sha256.read(), "quic_port": edge.quic_port}),
    )
}

async fn metrics(State(edge): State<Arc<Edge>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        edge.metrics.render(),
    )
}

/// The WebSocket upgrade, after admission: a refusal is 503 (the edge is
/// full) or 429 (this address connects too fast), with `Retry-After`, in
/// the JSON error shape of every other refusal.
async fn websocket(
    State(edge): State<Arc<Edge>>,
    ClientIp(ip): ClientIp,
    upgrade: WebSocketUpgrade,
) -> Response {
    let admitted = match ip {
        Some(ip) => edge.admission.connection(ip, std::time::Instant::now()),
        None => Ok(()),
    }
    .and_then(|()| edge.admission.websocket());
    let place = match admitted {
        Ok(place) => place,
        Err(refusal) => {
            edge.metrics.refused(refusal);
            let status = match refusal {
                Refusal::AddressRate(_) => StatusCode::TOO_MANY_REQUESTS,
                Refusal::SessionsFull(_)
                | Refusal::WebSocketsFull(_)
                | Refusal::HandshakesFull(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
            return ApiError::new(status, refusal.label(), refusal.to_string())
                .retry_after(refusal.retry_after())
                .into_response();
        }
    };
    let max_frame = edge.session_config.max_frame;
    upgrade
        // Frames over our limit must reach the session (to be answered with
        // FRAME_TOO_LARGE), so the WebSocket's own cap sits above it.
        .max_message_size((max_frame * 4).max(1 << 20))
        // Allocated up front per session and grown only for large frames:
        // small, so that idle sessions stay small (bench/RESULTS.md).
        .read_buffer_size(1024)
        // Frames fed between two flushes share a write (the session drains
        // its queue, then flushes); the buffer grows only for bursts.
        .write_buffer_size(16 * 1024)
        .on_upgrade(move |socket| async move {
            connection::run(edge, WsTransport::new(socket, max_frame), "websocket").await;
            drop(place);
        })
}
