//! Load scenarios. Each takes a plan, drives many sessions from one tokio
//! runtime (one task per session, shared UDP endpoints), stops by itself
//! and returns a report.

use crate::client::{Connector, ServerAddr, TransportKind};
use crate::target;

pub mod chat;
pub mod connect;
pub mod group;
pub mod offline;
pub mod storm;

/// Where a timed run is; its sessions watch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Connecting,
    Sending,
    Draining,
    Stop,
}

/// How a scenario opens its sessions.
#[derive(Debug, Clone)]
pub struct Setup {
    pub transport: TransportKind,
    /// User name prefix (a run's users are `<prefix><letter><n>`).
    pub prefix: String,
    /// UDP sockets shared by QUIC and WebTransport sessions.
    pub endpoints: usize,
    /// Loopback source addresses for WebSocket sessions.
    pub ws_sources: usize,
}

impl Setup {
    pub fn connector(&self, server: &ServerAddr) -> anyhow::Result<Connector> {
        Connector::new(
            self.transport,
            server,
            self.endpoints,
            target::loopback_sources(self.ws_sources),
        )
    }

    /// `ws`, `quic` or `wt`, for reports.
    pub fn transport_name(&self) -> String {
        self.transport.name().to_string()
    }
}

pub mod progress {
    use indicatif::{ProgressBar, ProgressStyle};

    /// A progress bar on stderr (hidden when stderr is not a terminal).
    pub fn bar(len: u64, what: &str) -> ProgressBar {
        let bar = ProgressBar::new(len);
        bar.set_style(
            ProgressStyle::with_template(&format!(
                "{{elapsed_precise}} [{{bar:40}}] {{pos}}/{{len}} {what} ({{per_sec}})"
            ))
            .expect("the template is valid")
            .progress_chars("=> "),
        );
        bar
    }
}
