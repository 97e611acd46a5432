//! The Chimaera module `chimaera_echo`: the smallest module there is. One
//! method, `kEcho`, answers the value it was given; `#[chi_sdk::chimod]`
//! generates the rest, the client [`EchoClient`] included:
//!
//! ```no_run
//! use chimaera_echo_runtime::{CreateParams, EchoClient};
//!
//! let client = chi_sdk::client::Client::init()?;
//! let pool = EchoClient::create(&client, "echo", &CreateParams::default())?;
//! assert_eq!(pool.echo(&client, 7)?, 7);
//! # Ok::<(), chi_sdk::client::CallError>(())
//! ```

use chi_sdk::abi::RunCtx;
use chi_sdk::container::CreateCtx;

/// The parameters of a pool: none.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct CreateParams {}

/// `kEcho`: answers `value`.
#[chi_sdk::task(method = 10)]
#[derive(Debug)]
pub struct EchoTask {
    /// The value.
    pub value: u64,
    /// The value, back.
    #[output]
    pub reply: u64,
}

/// The container of a pool: no state.
#[derive(Debug)]
pub struct EchoContainer;

#[chi_sdk::chimod]
impl EchoContainer {
    /// `kCreate`.
    fn create(_ctx: &mut CreateCtx<'_>, _params: CreateParams) -> Result<Self, String> {
        Ok(EchoContainer)
    }

    /// `kEcho`.
    fn echo(&self, task: &mut EchoTask, _ctx: &mut RunCtx) -> Result<(), String> {
        task.reply = task.value;
        Ok(())
    }
}
