//! `samvad`: the Samvad server binary.

use clap::{Parser, Subcommand};

use samvad::config::ServeArgs;

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
}

fn main() -> anyhow::Result<()> {
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
    }
}
