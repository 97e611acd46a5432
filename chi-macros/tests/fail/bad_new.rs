//! `new = "…"` must name a function other than `empty`.

#[chi_sdk::task(method = 10, yaml = "../chimaera_mod.yaml", new = "make task")]
pub struct CustomTask;

#[chi_sdk::task(method = 11, yaml = "../chimaera_mod.yaml", new = "empty")]
pub struct PingTask;

#[chi_sdk::task(method = 12, yaml = "../chimaera_mod.yaml", new = "fn")]
pub struct StopTask;

fn main() {}
