//! `cargo chimod`: create, check and install Chimaera module repositories.
//!
//! * `new`: a repository (`chimaera_repo.yaml`, workspace `Cargo.toml`,
//!   `chimaera_methods.lock`) with one module rendered from the embedded
//!   templates, or one more module in the repository you are in ([`new`]);
//! * `refresh`: checks every YAML file, holds method ids to the lock file and
//!   scaffolds the code of new methods ([`refresh`]);
//! * `remove-method`: removes a method and the code that serves it
//!   ([`remove`]);
//! * `link`: points a clone at a Chimaera checkout, in its uncommitted
//!   `.cargo/config.toml` ([`link`]);
//! * `install`: builds the module libraries and copies them where a runtime
//!   finds them ([`install`]).
//!
//! Cargo runs `cargo chimod …` as `cargo-chimod chimod …`; the binary also
//! works when run directly (`cargo-chimod new …`).

mod check;
mod cli;
mod edit;
mod install;
mod link;
mod lock;
mod names;
mod new;
mod refresh;
mod remove;
mod repo;
mod sdk;
mod source;
mod templates;

use std::ffi::OsString;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use crate::cli::{Cli, Command};
use crate::repo::Repo;

fn main() -> ExitCode {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "chimod") {
        args.remove(1);
    }
    let cli = Cli::parse_from(args);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::New(a) => new::run(&a),
        Command::Refresh(a) => refresh::run(&open(a.repo.as_deref())?, a.check),
        Command::RemoveMethod(a) => remove::run(&open(a.repo.as_deref())?, &a),
        Command::Link(a) => link::run(&open(a.repo.as_deref())?, &a),
        Command::Install(a) => install::run(&open(a.repo.as_deref())?, &a),
    }
}

/// The repository `--repo` names, else the one the current directory is in.
fn open(repo: Option<&std::path::Path>) -> Result<Repo> {
    match repo {
        Some(dir) => Repo::find(dir),
        None => Repo::find(&std::env::current_dir()?),
    }
}
