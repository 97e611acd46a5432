//! A #[chimod] impl with one mistake (a function that handles no method), and
//! a client that creates pools with its parameters and names its constants:
//! the mistake is the one error (`PoolParams`, the constants and the dispatch
//! are still generated).

use chi_sdk::abi::RunCtx;
use chi_sdk::admin::AdminClient;
use chi_sdk::client::Client;
use chi_sdk::container::CreateCtx;

#[chi_sdk::task(method = 10, yaml = "../chimod/repo/ok/chimaera_mod.yaml")]
pub struct CustomTask;

#[chi_sdk::task(method = 11, yaml = "../chimod/repo/ok/chimaera_mod.yaml")]
pub struct PingTask;

#[derive(Default, chi_sdk::serde::Serialize, chi_sdk::serde::Deserialize)]
#[serde(crate = "chi_sdk::serde")]
pub struct CreateParams {
    pub depth: u32,
}

pub struct M;

#[chi_sdk::chimod(yaml = "../chimod/repo/ok/chimaera_mod.yaml")]
impl M {
    fn create(_ctx: &mut CreateCtx<'_>, _params: CreateParams) -> Result<Self, String> {
        Ok(M)
    }

    fn custom(&self, _task: &mut CustomTask, _ctx: &mut RunCtx) -> Result<(), String> {
        Ok(())
    }

    fn ping(&self, _task: &mut PingTask, _ctx: &mut RunCtx) -> Result<(), String> {
        Ok(())
    }

    // Not a handler: belongs in another impl block.
    fn helper(&self) -> u32 {
        7
    }
}

/// The module's client, as `cargo chimod new` writes it.
pub fn create(client: &Client, name: &str, params: &CreateParams) {
    let admin = AdminClient::new(client);
    let _ = admin.get_or_create(name, params);
    let _ = admin.async_get_or_create(name, params);
}

fn main() {
    assert_eq!((method::CUSTOM, method::PING), (10, 11));
    assert_eq!(CHIMOD_LIB_NAME, "chimaera_ok");
}
