//! A #[chimod] container: constants, library name and entry table.

use chi_sdk::abi::{ContainerInfo, MonitorMode, RunCtx};

#[chi_sdk::task(method = 10, yaml = "../chimod/repo/ok/chimaera_mod.yaml")]
pub struct CustomTask {
    pub value: u32,
}

#[chi_sdk::task(method = 11, yaml = "../chimod/repo/ok/chimaera_mod.yaml")]
pub struct PingTask;

pub struct OkMod;

#[chi_sdk::chimod(yaml = "../chimod/repo/ok/chimaera_mod.yaml")]
impl OkMod {
    fn create(_info: &ContainerInfo, _args: &str) -> Result<Self, String> {
        Ok(OkMod)
    }
    fn custom(&self, task: &mut CustomTask, _ctx: &mut RunCtx) -> Result<(), String> {
        task.value += 1;
        Ok(())
    }
    fn ping(&self, _task: &mut PingTask, _ctx: &mut RunCtx) -> Result<(), &'static str> {
        Err("no")
    }
    fn monitor_ping(&self, _mode: MonitorMode, _task: &PingTask, ctx: &mut RunCtx) {
        ctx.route_lane = 1;
    }
}

// The generated entry is not nameable (it lives in an anonymous const); it is
// an exported symbol, found as the runtime finds it.
unsafe extern "C" {
    fn chimaera_module_entry() -> *const chi_sdk::abi::ModuleApi;
}

fn main() {
    assert_eq!(CHIMOD_LIB_NAME, "chimaera_ok");
    assert_eq!((method::CREATE, method::CUSTOM, method::PING), (0, 10, 11));
    assert!(method::ALL.contains(&("kGone", -1)));
    // SAFETY: the entry only returns a pointer to a static table.
    let api = unsafe { &*chimaera_module_entry() };
    assert_eq!(api.name(), "chimaera_ok");
    assert!(api.fingerprint == chi_sdk::abi::AbiFingerprint::current());
    assert!(api.monitor.is_some());
}
