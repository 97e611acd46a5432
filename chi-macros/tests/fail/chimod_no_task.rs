//! A YAML method whose handler names a task type that does not exist: one
//! error, at the type.

use chi_sdk::abi::RunCtx;
use chi_sdk::container::CreateCtx;

pub struct M;

#[chi_sdk::chimod(yaml = "../chimod/repo/raw/chimaera_mod.yaml")]
impl M {
    fn create(_ctx: &mut CreateCtx<'_>, _args: &str) -> Result<Self, String> {
        Ok(M)
    }

    fn echo(&self, _task: &mut EchoTask, _ctx: &mut RunCtx) -> Result<(), String> {
        Ok(())
    }
}

fn main() {}
