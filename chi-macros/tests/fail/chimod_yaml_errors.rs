//! Every YAML and handler problem of a #[chimod] impl, reported together.

use chi_sdk::abi::{ContainerInfo, RunCtx};

#[chi_sdk::task(method = 10, yaml = "../chimod/repo/bad/chimaera_mod.yaml")]
pub struct CustomTask;

pub struct Bad;

#[chi_sdk::chimod(yaml = "../chimod/repo/bad/chimaera_mod.yaml")]
impl Bad {
    fn create(_info: &ContainerInfo, _args: &str) -> Result<Self, String> {
        Ok(Bad)
    }
    fn extra(&self, _task: &mut CustomTask, _ctx: &mut RunCtx) -> Result<(), String> {
        Ok(())
    }
}

fn main() {}
