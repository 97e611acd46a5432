//! Errors the compiler reports after expansion: a handler whose task type has
//! another method id, and a container that is not Sync.

use chi_sdk::abi::RunCtx;
use chi_sdk::container::CreateCtx;

#[chi_sdk::task(method = 11, yaml = "../chimod/repo/ok/chimaera_mod.yaml")]
pub struct PingTask;

pub struct NotSync(std::cell::Cell<u32>);

#[chi_sdk::chimod(yaml = "../chimod/repo/ok/chimaera_mod.yaml")]
impl NotSync {
    fn create(_ctx: &mut CreateCtx<'_>, _args: &str) -> Result<Self, String> {
        Ok(NotSync(std::cell::Cell::new(0)))
    }

    fn custom(&self, _task: &mut PingTask, _ctx: &mut RunCtx) -> Result<(), String> {
        Ok(())
    }

    fn ping(&self, _task: &mut PingTask, _ctx: &mut RunCtx) -> Result<(), String> {
        Ok(())
    }
}

fn main() {}
