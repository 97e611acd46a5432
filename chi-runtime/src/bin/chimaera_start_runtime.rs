//! `chimaera_start_runtime [ARGS]`: the same as `chi-runtime start [ARGS]`.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = std::iter::once("chi-runtime".to_owned())
        .chain(std::iter::once("start".to_owned()))
        .chain(std::env::args().skip(1));
    chi_runtime::cli::main_with(chi_runtime::cli::Cli::parse_from(args))
}
