//! `chi-runtime start|stop|status|default-config`: the Chimaera runtime daemon.

use clap::Parser;

fn main() -> std::process::ExitCode {
    chi_runtime::cli::main_with(chi_runtime::cli::Cli::parse())
}
