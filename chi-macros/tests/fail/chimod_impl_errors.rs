//! Problems of a #[chimod] impl block against a valid chimaera_mod.yaml
//! (`chimod/repo/ok/`: kCustom 10, kPing 11, kGone -1), one module each.

use chi_sdk::abi::{MonitorMode, RunCtx};
use chi_sdk::container::CreateCtx;

#[chi_sdk::task(method = 10, yaml = "../chimod/repo/ok/chimaera_mod.yaml")]
pub struct CustomTask;

#[chi_sdk::task(method = 11, yaml = "../chimod/repo/ok/chimaera_mod.yaml")]
pub struct PingTask;

#[derive(chi_sdk::serde::Serialize, chi_sdk::serde::Deserialize)]
#[serde(crate = "chi_sdk::serde")]
pub struct Params {
    pub depth: u32,
}

/// Functions that are not handlers, or handle what they may not.
mod handlers {
    use super::*;

    pub struct M;

    #[chi_sdk::chimod(yaml = "../chimod/repo/ok/chimaera_mod.yaml")]
    impl M {
        // The parameters by reference.
        fn create(_ctx: &mut CreateCtx<'_>, _params: &Params) -> Result<Self, String> {
            Ok(M)
        }

        fn custom(&self, _task: &mut CustomTask, _ctx: &mut RunCtx) -> Result<(), String> {
            Ok(())
        }

        // Not a handler's shape.
        fn ping(&mut self, _task: PingTask) -> Result<(), String> {
            Ok(())
        }

        // kGone is -1.
        fn gone(&self, _task: &mut CustomTask, _ctx: &mut RunCtx) -> Result<(), String> {
            Ok(())
        }

        // kDestroy drops the container.
        fn destroy(&self, _task: &mut CustomTask, _ctx: &mut RunCtx) -> Result<(), String> {
            Ok(())
        }

        // There is no kPong.
        fn monitor_pong(&self, _mode: MonitorMode, _task: &PingTask, _ctx: &mut RunCtx) {}

        // There is no kPong.
        fn aggregate_pong(&self, _task: &mut PingTask, _replica: &PingTask) -> Result<(), String> {
            Ok(())
        }

        // Not an aggregate's shape (the replica by `&mut`), and returns nothing.
        fn aggregate_custom(&self, _task: &mut CustomTask, _replica: &mut CustomTask) {}
    }
}

/// create with one parameter.
mod arity {
    use super::*;

    pub struct M;

    #[chi_sdk::chimod(yaml = "../chimod/repo/ok/chimaera_mod.yaml")]
    impl M {
        fn create(_args: &str) -> Result<Self, String> {
            Ok(M)
        }

        fn custom(&self, _task: &mut CustomTask, _ctx: &mut RunCtx) -> Result<(), String> {
            Ok(())
        }

        fn ping(&self, _task: &mut PingTask, _ctx: &mut RunCtx) -> Result<(), String> {
            Ok(())
        }
    }
}

/// create as a method.
mod receiver {
    use super::*;

    pub struct M;

    #[chi_sdk::chimod(yaml = "../chimod/repo/ok/chimaera_mod.yaml")]
    impl M {
        fn create(&self, _args: &str) -> Result<Self, String> {
            Ok(M)
        }

        fn custom(&self, _task: &mut CustomTask, _ctx: &mut RunCtx) -> Result<(), String> {
            Ok(())
        }

        fn ping(&self, _task: &mut PingTask, _ctx: &mut RunCtx) -> Result<(), String> {
            Ok(())
        }
    }
}

/// No create at all.
mod no_create {
    use super::*;

    pub struct M;

    #[chi_sdk::chimod(yaml = "../chimod/repo/ok/chimaera_mod.yaml")]
    impl M {
        fn custom(&self, _task: &mut CustomTask, _ctx: &mut RunCtx) -> Result<(), String> {
            Ok(())
        }

        fn ping(&self, _task: &mut PingTask, _ctx: &mut RunCtx) -> Result<(), String> {
            Ok(())
        }
    }
}

/// A generic container.
mod generic {
    use super::*;

    pub struct G<T>(T);

    #[chi_sdk::chimod(yaml = "../chimod/repo/ok/chimaera_mod.yaml")]
    impl<T: Default + Send + Sync + 'static> G<T> {
        fn create(_ctx: &mut CreateCtx<'_>, _args: &str) -> Result<Self, String> {
            Ok(G(T::default()))
        }

        fn custom(&self, _task: &mut CustomTask, _ctx: &mut RunCtx) -> Result<(), String> {
            Ok(())
        }

        fn ping(&self, _task: &mut PingTask, _ctx: &mut RunCtx) -> Result<(), String> {
            Ok(())
        }
    }
}

/// A trait impl.
mod trait_impl {
    pub struct M;

    #[chi_sdk::chimod(yaml = "../chimod/repo/ok/chimaera_mod.yaml")]
    impl Default for M {
        fn default() -> Self {
            M
        }
    }
}

fn main() {}
