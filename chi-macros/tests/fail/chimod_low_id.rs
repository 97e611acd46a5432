//! A custom id below 10 (`chimod/repo/low/`: kStats 5): the YAML's error is the
//! only one; the handler, monitor and task of kStats are not told again.

use chi_sdk::abi::{MonitorMode, RunCtx};
use chi_sdk::container::CreateCtx;

#[chi_sdk::task(method = 10, yaml = "../chimod/repo/low/chimaera_mod.yaml")]
pub struct CustomTask;

#[chi_sdk::task(method = 5, yaml = "../chimod/repo/low/chimaera_mod.yaml")]
pub struct StatsTask;

pub struct M;

#[chi_sdk::chimod(yaml = "../chimod/repo/low/chimaera_mod.yaml")]
impl M {
    fn create(_ctx: &mut CreateCtx<'_>, _args: &str) -> Result<Self, String> {
        Ok(M)
    }

    fn custom(&self, _task: &mut CustomTask, _ctx: &mut RunCtx) -> Result<(), String> {
        Ok(())
    }

    fn stats(&self, _task: &mut StatsTask, _ctx: &mut RunCtx) -> Result<(), String> {
        Ok(())
    }

    fn monitor_stats(&self, _mode: MonitorMode, _task: &StatsTask, _ctx: &mut RunCtx) {}
}

fn main() {}
