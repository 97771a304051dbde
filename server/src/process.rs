//! What every role's process shares: its fjall database (`serve`, and a
//! cluster store's inboxes) and the wait on its roles.

use anyhow::Context;
use tokio::task::JoinSet;

/// Most bytes of journal (and so of unflushed memtables) the database
/// keeps: fjall's least.
pub const JOURNAL_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Opens (creating it if needed) the fjall database under `data_dir`.
pub fn open_database(data_dir: &std::path::Path) -> anyhow::Result<fjall::Database> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    fjall::Database::builder(data_dir.join("db"))
        // The journal is what memtables have not flushed yet: capping it
        // caps both (fjall's default, 512 MiB, let a soak's RSS and disk
        // climb by half a gigabyte each before they levelled off).
        .max_journaling_size(JOURNAL_MAX_BYTES)
        .open()
        .with_context(|| format!("opening the database in {}", data_dir.display()))
}

/// Runs until SIGINT/SIGTERM, or fails when a role stops.
pub async fn wait(roles: &mut JoinSet<anyhow::Result<()>>) -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; shutting down"),
        _ = terminate.recv() => tracing::info!("terminated; shutting down"),
        Some(ended) = roles.join_next() => {
            let result = ended.context("role panicked")?;
            result?;
            anyhow::bail!("a role stopped");
        }
    }
    Ok(())
}
