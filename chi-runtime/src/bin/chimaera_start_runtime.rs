//! `chimaera_start_runtime [ARGS]`: the same as `chi-runtime start [ARGS]`.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let mut rest: Vec<String> = std::env::args().skip(1).collect();
    // `--daemon` re-executes the current program as `<exe> start --config FILE`;
    // `start` takes no positional argument, so a leading `start` is that
    // sub-command, not an argument of it.
    if rest.first().is_some_and(|a| a == "start") {
        rest.remove(0);
    }
    let args = ["chi-runtime".to_owned(), "start".to_owned()]
        .into_iter()
        .chain(rest);
    chi_runtime::cli::main_with(chi_runtime::cli::Cli::parse_from(args))
}
