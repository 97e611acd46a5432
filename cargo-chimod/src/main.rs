//! `cargo chimod`: scaffolds and refreshes Chimaera module repositories.

use anyhow::Result;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "chimod").collect();
    match args.first().map(String::as_str) {
        Some("--version") | None => {
            println!("cargo-chimod {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Some(other) => anyhow::bail!("unknown sub-command '{other}'; run 'cargo chimod --version'"),
    }
}
