//! kGreet removed from the YAML while chimaera_methods.lock records it: one
//! error at the task and one at the handler (naming its monitor), each saying
//! to put back `kGreet: 10` or remove the code; the client's use of the task
//! is not an error.

use chi_sdk::abi::{MonitorMode, RunCtx};
use chi_sdk::container::CreateCtx;
use chi_sdk::types::{DomainQuery, PoolId};

#[chi_sdk::task(method = 10, yaml = "../chimod/locked/removed/chimaera_mod.yaml")]
pub struct GreetTask {
    pub n: u32,
}

#[chi_sdk::task(method = 11, yaml = "../chimod/locked/removed/chimaera_mod.yaml")]
pub struct PingTask;

pub struct M;

#[chi_sdk::chimod(yaml = "../chimod/locked/removed/chimaera_mod.yaml")]
impl M {
    fn create(_ctx: &mut CreateCtx<'_>, _args: &str) -> Result<Self, String> {
        Ok(M)
    }

    fn ping(&self, _task: &mut PingTask, _ctx: &mut RunCtx) -> Result<(), String> {
        Ok(())
    }

    fn greet(&self, _task: &mut GreetTask, _ctx: &mut RunCtx) -> Result<(), String> {
        Ok(())
    }

    fn monitor_greet(&self, _mode: MonitorMode, _task: &GreetTask, _ctx: &mut RunCtx) {}
}

fn main() {
    let _ = GreetTask::new(PoolId(1), DomainQuery::local(), 3);
}
