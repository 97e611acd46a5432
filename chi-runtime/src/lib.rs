//! `chi-runtime` library: the daemon's building blocks.

pub mod config;
