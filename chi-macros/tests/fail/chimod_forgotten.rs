//! A module whose container lacks `#[chimod]`: its client's use of the
//! create parameters says that `#[chimod]` implements `PoolParams`.

use chi_sdk::admin::AdminClient;
use chi_sdk::client::Client;
use chi_sdk::container::CreateCtx;

#[derive(Default, chi_sdk::serde::Serialize, chi_sdk::serde::Deserialize)]
#[serde(crate = "chi_sdk::serde")]
pub struct CreateParams {
    pub depth: u32,
}

pub struct M;

impl M {
    #[allow(dead_code)]
    fn create(_ctx: &mut CreateCtx<'_>, _params: CreateParams) -> Result<Self, String> {
        Ok(M)
    }
}

pub fn create(client: &Client, name: &str, params: &CreateParams) {
    let _ = AdminClient::new(client).get_or_create(name, params);
}

fn main() {}
