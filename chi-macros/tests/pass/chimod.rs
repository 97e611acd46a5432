//! Two whole #[chimod] modules in one program: `ok` with typed create
//! parameters (and their generated `PoolParams`), handlers failing with
//! several error types, a monitor and an aggregate function; `raw` with the raw `&str` arguments and
//! no monitor. Checks their constants, library names, exported entries and
//! function tables (every hook present, `task_size` per method).

use chi_sdk::abi::{AbiFingerprint, ModuleApi, MonitorMode, QueueId, RunCtx};
use chi_sdk::admin::PoolParams;
use chi_sdk::container::CreateCtx;
use chi_sdk::queue::Priority;
use chi_sdk::shm::ShmString;
use chi_sdk::task::{Failure, code};

mod ok {
    use super::*;

    /// The module's create parameters: any serde type.
    #[derive(Debug, Default, PartialEq, chi_sdk::serde::Serialize, chi_sdk::serde::Deserialize)]
    #[serde(crate = "chi_sdk::serde", default)]
    pub struct CreateParams {
        pub step: u32,
        pub label: String,
    }

    #[chi_sdk::task(method = 10, yaml = "../chimod/repo/ok/chimaera_mod.yaml")]
    pub struct CustomTask {
        #[inout]
        pub value: u32,
        pub data: ShmString,
        #[output]
        pub len: u64,
    }

    /// A task type with a hand-written `new`: the generated one is renamed.
    #[chi_sdk::task(
        method = 11,
        yaml = "../chimod/repo/ok/chimaera_mod.yaml",
        new = "emplace"
    )]
    pub struct PingTask {
        pub seq: u64,
    }

    impl PingTask {
        pub fn new(seq: u64) -> PingTask {
            PingTask::emplace(
                chi_sdk::types::PoolId(1),
                chi_sdk::types::DomainQuery::local(),
                seq,
            )
        }
    }

    pub struct OkMod {
        step: u32,
    }

    #[chi_sdk::chimod(yaml = "../chimod/repo/ok/chimaera_mod.yaml")]
    impl OkMod {
        fn create(ctx: &mut CreateCtx<'_>, params: CreateParams) -> Result<Self, String> {
            ctx.create_local_queue(QueueId(0), 2, Priority::LowLatency)?;
            Ok(OkMod { step: params.step })
        }

        fn custom(&self, task: &mut CustomTask, _ctx: &mut RunCtx) -> Result<(), String> {
            task.value += self.step;
            task.len = task.data.len() as u64;
            Ok(())
        }

        fn ping(&self, task: &mut PingTask, _ctx: &mut RunCtx) -> Result<(), Failure> {
            Err(Failure::new(
                code::MODULE_BASE,
                format!("ping {}", task.seq),
            ))
        }

        /// A broadcast's Custom sums the lengths.
        fn aggregate_custom(&self, task: &mut CustomTask, replica: &CustomTask) -> Result<(), String> {
            task.len += replica.len;
            Ok(())
        }

        fn monitor_ping(&self, mode: MonitorMode, task: &PingTask, ctx: &mut RunCtx) {
            if mode == MonitorMode::LocalSchedule {
                if let Ok(lane) = ctx.lane_by_hash(QueueId(0), task.seq) {
                    ctx.route(lane);
                }
            }
        }
    }
}

mod raw {
    use super::*;

    #[chi_sdk::task(method = 10, yaml = "../chimod/repo/raw/chimaera_mod.yaml")]
    pub struct EchoTask {
        pub value: u64,
        #[output]
        pub reply: u64,
    }

    pub struct RawMod {
        args: String,
    }

    #[chi_sdk::chimod(yaml = "../chimod/repo/raw/chimaera_mod.yaml")]
    impl RawMod {
        fn create(_ctx: &mut CreateCtx<'_>, args: &str) -> Result<Self, String> {
            Ok(RawMod {
                args: args.to_owned(),
            })
        }

        fn echo(&self, task: &mut EchoTask, _ctx: &mut RunCtx) -> Result<(), &'static str> {
            if self.args == "refuse" {
                return Err("refused");
            }
            task.reply = task.value;
            Ok(())
        }
    }
}

// The entries, found by their exported names as the runtime finds them.
unsafe extern "C" {
    fn chimaera_module_entry_chimaera_ok() -> *const ModuleApi;
    fn chimaera_module_entry_chimaera_raw() -> *const ModuleApi;
}

/// The function table behind `entry`, checked against the exported symbol.
fn table(
    entry: chi_sdk::abi::EntryFn,
    exported: unsafe extern "C" fn() -> *const ModuleApi,
) -> &'static ModuleApi {
    // SAFETY: both only return a pointer to a static table.
    let (a, b) = unsafe { (entry(), exported()) };
    assert_eq!(a, b, "CHIMOD_ENTRY is not the exported entry");
    // SAFETY: a static table.
    unsafe { &*a }
}

/// Checks what every generated table has.
fn check_hooks(api: &ModuleApi, name: &str, sizes: &[(u32, usize)]) {
    assert_eq!(api.name(), name);
    assert!(api.fingerprint == AbiFingerprint::current());
    assert!(api.del.is_some() && api.new_copy.is_some());
    assert!(api.save_in.is_some() && api.load_in.is_some());
    assert!(api.save_out.is_some() && api.load_out.is_some());
    assert!(api.aggregate.is_some(), "{name}: the default aggregation at least");
    let task_size = api.task_size.expect("task_size");
    for &(method, size) in sizes {
        // SAFETY: task_size only reads its argument.
        assert_eq!(
            unsafe { task_size(method) },
            size,
            "{name}: method {method}"
        );
    }
}

fn main() {
    // ok: constants, typed parameters, a monitor.
    assert_eq!(ok::CHIMOD_LIB_NAME, "chimaera_ok");
    assert_eq!(
        (
            ok::method::CREATE,
            ok::method::DESTROY,
            ok::method::CUSTOM,
            ok::method::PING
        ),
        (0, 1, 10, 11)
    );
    assert!(ok::method::ALL.contains(&("kGone", -1)));
    assert!(ok::method::ALL.contains(&("kNodeFailure", -1)));
    assert_eq!(
        <ok::CreateParams as PoolParams>::CHIMOD_LIB_NAME,
        "chimaera_ok"
    );
    let params = ok::CreateParams {
        step: 3,
        label: "x".into(),
    };
    let args = params.to_args().unwrap();
    assert_eq!(ok::CreateParams::from_args(&args).unwrap(), params);
    assert_eq!(
        ok::CreateParams::from_args("").unwrap(),
        ok::CreateParams::default()
    );
    assert_eq!(ok::PingTask::new(7).seq, 7);

    let api = table(ok::CHIMOD_ENTRY, chimaera_module_entry_chimaera_ok);
    assert!(api.monitor.is_some());
    check_hooks(
        api,
        "chimaera_ok",
        &[
            (ok::method::CUSTOM, size_of::<ok::CustomTask>()),
            (ok::method::PING, size_of::<ok::PingTask>()),
            (ok::method::CREATE, 0),
            (ok::method::DESTROY, 0),
            (12, 0),
        ],
    );

    // raw: the namespace from chimaera_repo.yaml, `&str` arguments, no monitor.
    assert_eq!(raw::CHIMOD_LIB_NAME, "chimaera_raw");
    assert_eq!(raw::method::ECHO, 10);
    let api = table(raw::CHIMOD_ENTRY, chimaera_module_entry_chimaera_raw);
    assert!(api.monitor.is_none());
    check_hooks(
        api,
        "chimaera_raw",
        &[(raw::method::ECHO, size_of::<raw::EchoTask>()), (11, 0)],
    );
}
