//! A task whose id disagrees with the YAML, used by a handler: the id is the
//! one error (the impls take the YAML's id, so the handler's check passes).

use chi_sdk::abi::RunCtx;
use chi_sdk::container::CreateCtx;

#[chi_sdk::task(method = 12, yaml = "../chimod/repo/ok/chimaera_mod.yaml")]
pub struct CustomTask;

#[chi_sdk::task(method = 11, yaml = "../chimod/repo/ok/chimaera_mod.yaml")]
pub struct PingTask;

pub struct M;

#[chi_sdk::chimod(yaml = "../chimod/repo/ok/chimaera_mod.yaml")]
impl M {
    fn create(_ctx: &mut CreateCtx<'_>, _args: &str) -> Result<Self, String> {
        Ok(M)
    }

    fn custom(&self, _task: &mut CustomTask, _ctx: &mut RunCtx) -> Result<(), String> {
        Ok(())
    }

    fn ping(&self, _task: &mut PingTask, _ctx: &mut RunCtx) -> Result<(), String> {
        Ok(())
    }
}

fn main() {}
