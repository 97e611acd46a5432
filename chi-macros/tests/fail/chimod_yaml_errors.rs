//! Every problem of a module's chimaera_mod.yaml (`chimod/repo/bad/`), and of
//! its handlers against it, reported together: a namespace that disagrees with
//! chimaera_repo.yaml, inherited methods with other ids, a custom id below 10,
//! a duplicate id, a handler with no YAML method, YAML methods with no handler.

use chi_sdk::abi::RunCtx;
use chi_sdk::container::CreateCtx;

#[chi_sdk::task(method = 10, yaml = "../chimod/repo/bad/chimaera_mod.yaml")]
pub struct CustomTask;

pub struct Bad;

#[chi_sdk::chimod(yaml = "../chimod/repo/bad/chimaera_mod.yaml")]
impl Bad {
    fn create(_ctx: &mut CreateCtx<'_>, _args: &str) -> Result<Self, String> {
        Ok(Bad)
    }

    fn extra(&self, _task: &mut CustomTask, _ctx: &mut RunCtx) -> Result<(), String> {
        Ok(())
    }
}

fn main() {}
