//! `samvad`: the Samvad server binary.

use clap::{Parser, Subcommand};

use samvad::config::{
    ClusterEdgeArgs, ClusterMediaArgs, ClusterPushArgs, ClusterRouterArgs, ClusterStoreArgs,
    ServeArgs,
};

/// Tunes glibc malloc, which serves what C code allocates (and everything
/// in a `system-allocator` build), for a server with many small,
/// long-lived sessions and a few large short-lived buffers (an argon2 hash
/// takes 19 MiB): allocations from 1 MiB up are mapped and unmapped on
/// their own, so they return to the system when freed instead of staying
/// in an arena (glibc's adaptive threshold would otherwise keep every
/// hash's 19 MiB), and at most two arenas per core exist.
fn tune_malloc() {
    // SAFETY: mallopt only sets allocator parameters; called once before
    // any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 4);
    }
}

#[derive(Parser)]
#[command(
    name = "samvad",
    version,
    about = "QUIC/WebTransport-first chat and media edge server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Every role in one process: embedded bus, in-memory presence, fjall in --data-dir.
    Serve(ServeArgs),
    /// Cluster edge: sessions and REST, over Kafka and Redis.
    Edge(ClusterEdgeArgs),
    /// Cluster router: `inbound` → `deliver`.
    Router(ClusterRouterArgs),
    /// Cluster store: owns the inboxes of its `deliver` partitions.
    Store(ClusterStoreArgs),
    /// Cluster push: `push` → Web Push and the webhook.
    Push(ClusterPushArgs),
    /// Cluster media: an SFU node; rooms are pinned to it by Redis leases.
    Media(ClusterMediaArgs),
}

/// mimalloc, not glibc's malloc: a reconnect storm spent a seventh of the
/// server's CPU in glibc's `malloc` and `free` (bench/RESULTS.md). The
/// `system-allocator` feature keeps glibc's, for heap profilers that hook
/// `malloc` (heaptrack): `cargo build --release -p samvad --features
/// system-allocator`.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    tune_malloc();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SAMVAD_LOG")
                .unwrap_or_else(|_| "info,fjall=warn,lsm_tree=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(samvad::serve::run(args)),
        Command::Edge(args) => runtime.block_on(samvad::cluster::edge(args)),
        Command::Router(args) => runtime.block_on(samvad::cluster::router(args)),
        Command::Store(args) => runtime.block_on(samvad::cluster::store(args)),
        Command::Push(args) => runtime.block_on(samvad::cluster::push(args)),
        Command::Media(args) => runtime.block_on(samvad::cluster::media(args)),
    }
}
