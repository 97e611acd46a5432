//! kGreet renumbered in the YAML (16) without `cargo chimod refresh`, which
//! recorded 10 in chimaera_methods.lock: the lock wins, and the one error says
//! what `cargo chimod refresh` says (put back `kGreet: 10`).

use chi_sdk::abi::RunCtx;
use chi_sdk::container::CreateCtx;

#[chi_sdk::task(method = 10, yaml = "../chimod/locked/renumbered/chimaera_mod.yaml")]
pub struct GreetTask;

pub struct M;

#[chi_sdk::chimod(yaml = "../chimod/locked/renumbered/chimaera_mod.yaml")]
impl M {
    fn create(_ctx: &mut CreateCtx<'_>, _args: &str) -> Result<Self, String> {
        Ok(M)
    }

    fn greet(&self, _task: &mut GreetTask, _ctx: &mut RunCtx) -> Result<(), String> {
        Ok(())
    }
}

/// A task that followed the YAML: told the lock's id.
mod followed {
    #[chi_sdk::task(
        method = 16,
        name = "kGreet",
        yaml = "../chimod/locked/renumbered/chimaera_mod.yaml"
    )]
    pub struct Greet16;
}

fn main() {
    assert_eq!(method::GREET, 10);
}
