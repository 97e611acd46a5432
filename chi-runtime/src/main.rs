//! `chi-runtime`: the Chimaera runtime daemon.
//!
//! The daemon (configuration, IPC server, workers, pools) is built on the
//! shared-memory layer of `chi-sdk`; this binary currently reports its version and
//! the layout version of the segments it will create, which clients check.

use anyhow::Result;

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CHI_LOG")
                .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    let arg = std::env::args().nth(1);
    match arg.as_deref() {
        Some("--version") | Some("version") | None => {
            println!(
                "chi-runtime {} (segment layout v{})",
                env!("CARGO_PKG_VERSION"),
                chi_sdk::shm::LAYOUT_VERSION
            );
            Ok(())
        }
        Some(other) => anyhow::bail!("unknown command '{other}'; run 'chi-runtime --version'"),
    }
}
