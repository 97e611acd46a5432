//! Handlers with the wrong return type, one module each (`chimod/repo/raw/`:
//! kEcho 10): each is one error naming the handler, at its name (nothing
//! returned) or at its return type.

use chi_sdk::abi::RunCtx;
use chi_sdk::container::CreateCtx;

#[chi_sdk::task(method = 10, yaml = "../chimod/repo/raw/chimaera_mod.yaml")]
pub struct EchoTask;

/// No return type.
mod nothing {
    use super::*;

    pub struct M;

    #[chi_sdk::chimod(yaml = "../chimod/repo/raw/chimaera_mod.yaml")]
    impl M {
        fn create(_ctx: &mut CreateCtx<'_>, _args: &str) -> Result<Self, String> {
            Ok(M)
        }

        fn echo(&self, _task: &mut EchoTask, _ctx: &mut RunCtx) {}
    }
}

/// An error type that does not convert into a `Failure`.
mod io_error {
    use super::*;

    pub struct M;

    #[chi_sdk::chimod(yaml = "../chimod/repo/raw/chimaera_mod.yaml")]
    impl M {
        fn create(_ctx: &mut CreateCtx<'_>, _args: &str) -> Result<Self, String> {
            Ok(M)
        }

        fn echo(&self, _task: &mut EchoTask, _ctx: &mut RunCtx) -> Result<(), std::io::Error> {
            Ok(())
        }
    }
}

/// Not a `Result` at all.
mod not_a_result {
    use super::*;

    pub struct M;

    #[chi_sdk::chimod(yaml = "../chimod/repo/raw/chimaera_mod.yaml")]
    impl M {
        fn create(_ctx: &mut CreateCtx<'_>, _args: &str) -> Result<Self, String> {
            Ok(M)
        }

        fn echo(&self, _task: &mut EchoTask, _ctx: &mut RunCtx) -> Option<u32> {
            None
        }
    }
}

fn main() {}
