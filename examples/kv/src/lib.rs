//! The Chimaera module `chimaera_kv`: a key-value store of byte strings, one
//! per container, written only with the public SDK.
//!
//! * [`tasks`]: [`CreateParams`] and one task per method of
//!   `chimaera_mod.yaml` (put, get, delete, scan, stats).
//! * [`runtime`]: [`KvContainer`], and what `#[chimod]` generates beside it:
//!   the client [`KvClient`], whose calls take and return bytes.
//!
//! ```no_run
//! use chimaera_kv_runtime::{CreateParams, KvClient};
//!
//! let client = chi_sdk::client::Client::init()?;
//! let kv = KvClient::create(&client, "kv", &CreateParams::default())?;
//! kv.put(&client, b"apple", b"red")?;
//! assert_eq!(kv.get(&client, b"apple")?, b"red");
//! assert_eq!(kv.scan(&client, b"app", 0)?, vec![b"apple".to_vec()]); // 0: no limit
//! # Ok::<(), chi_sdk::client::CallError>(())
//! ```

pub mod runtime;
pub mod tasks;

pub use runtime::*;
pub use tasks::*;
