//! Typed calls: how a task's fields become the arguments and the result of
//! the client methods `#[chimod]` generates.
//!
//! # Design
//!
//! A module's client is generated, not written. `#[chimod]` emits the client
//! struct (`FooClient`: a pool, a domain query, a priority) and, for each
//! handler, asks the handler's task type for its two methods: `#[task]` leaves
//! beside the struct a hidden `macro_rules!` bridge that knows the fields, and
//! `#[chimod]` invokes it with the client's name and the handler's. The
//! result, for a task with inputs `key: ClientBytes, limit: u32` and outputs
//! `#[output] value: ClientBuf, #[output] found: u64`:
//!
//! ```text
//! fn get(&self, client: &Client, key: &[u8], limit: u32) -> Result<(Vec<u8>, u64), CallError>
//! fn async_get<'c>(&self, client: &'c Client, key: &[u8], limit: u32) -> Result<Pending<'c, GetTask>, CallError>
//! ```
//!
//! * An input field (unmarked or `#[inout]`) is an argument of type
//!   [`CallArg::Arg`]: plain values as themselves, [`ShmString`] and
//!   [`ClientStr`] as `&str`, [`ClientBytes`] as `&[u8]`, [`ShmVec<T>`] as
//!   `&[T]`, and a [`ClientBuf`] as the capacity to allocate (`0`: the module
//!   grows it as it writes). The call allocates what the argument needs; if a
//!   later argument cannot be made, what the earlier ones allocated is freed.
//! * The outputs (`#[output]` and `#[inout]` fields, in order) are the result:
//!   one output is returned as itself, several as a tuple, none as `()`. Each
//!   is copied out by [`CallOutput::output`] (a string as `String`, bytes as
//!   `Vec<u8>`) before the task and everything it owns are freed.
//! * The `async_` call returns the [`Pending`] task: it owns the task and the
//!   buffers its fields name; [`Pending::output`] waits and returns what the
//!   synchronous call returns.
//!
//! A field type of the module's own is an argument and a result as itself once
//! it implements [`PlainValue`] (a `Copy` type that is `Ser`), or through its
//! own [`CallArg`] / [`CallOutput`] impls. A task whose calls should be
//! written by hand says `#[task(method = N, client = false)]`.
//!
//! [`Pending`]: super::Pending
//! [`Pending::output`]: super::Pending::output

use crate::bytes::{ClientBuf, ClientBytes, ClientStr};
use crate::ser::Ser;
use crate::shm::{ShmPtr, ShmSafe, ShmString, ShmVec};
use crate::task::Task;
use crate::types::{ContainerId, DomainQuery, NodeId, PoolId, TaskNode};

use super::{CallError, Client, ClientError};

/// A task field as an argument of a generated call.
#[diagnostic::on_unimplemented(
    message = "a task field of type `{Self}` cannot be an argument of the generated client call",
    note = "plain values, ShmString, ShmVec<T>, ClientBytes, ClientStr and ClientBuf can; for a \
            type of your own implement chi_sdk::client::PlainValue (a Copy type) or \
            chi_sdk::client::CallArg, or write `#[task(method = N, client = false)]` and the call \
            by hand"
)]
pub trait CallArg: Ser + Sized {
    /// What the caller passes.
    type Arg<'a>;

    /// Makes the field's value from the argument, allocating in `client`'s
    /// segments what it needs.
    fn from_arg(client: &Client, arg: Self::Arg<'_>) -> Result<Self, CallError>;

    /// Frees what [`from_arg`](Self::from_arg) allocated (a value that never
    /// reached a task).
    fn discard(mut self, client: &Client) {
        self.free_shm(client.main_allocator());
    }
}

/// A task field as (part of) the result of a generated call.
#[diagnostic::on_unimplemented(
    message = "a task output of type `{Self}` cannot be returned by the generated client call",
    note = "plain values, ShmString, ShmVec<T>, ClientBytes, ClientStr and ClientBuf can; for a \
            type of your own implement chi_sdk::client::PlainValue (a Copy type) or \
            chi_sdk::client::CallOutput, or write `#[task(method = N, client = false)]` and the \
            call by hand"
)]
pub trait CallOutput {
    /// What the caller gets.
    type Output;

    /// Copies the output out of the completed task (which is freed after).
    fn output(&self, client: &Client) -> Result<Self::Output, CallError>;
}

/// A `Copy` field type that is an argument and a result as itself.
pub trait PlainValue: Copy + Ser {}

impl<T: PlainValue> CallArg for T {
    type Arg<'a> = T;

    #[inline]
    fn from_arg(_client: &Client, arg: T) -> Result<T, CallError> {
        Ok(arg)
    }

    #[inline]
    fn discard(self, _client: &Client) {}
}

impl<T: PlainValue> CallOutput for T {
    type Output = T;

    #[inline]
    fn output(&self, _client: &Client) -> Result<T, CallError> {
        Ok(*self)
    }
}

macro_rules! plain {
    ($($t:ty),* $(,)?) => {$( impl PlainValue for $t {} )*};
}

plain!(
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    PoolId,
    ContainerId,
    NodeId,
    DomainQuery,
    TaskNode,
    ShmPtr,
);

impl<T: PlainValue, const N: usize> PlainValue for [T; N] {}

/// An error of reading an output, as a call's error.
fn bad_output(what: &str, e: impl std::fmt::Display) -> CallError {
    CallError::Client(ClientError::Protocol(format!("output {what}: {e}")))
}

impl CallArg for ShmString {
    type Arg<'a> = &'a str;

    fn from_arg(client: &Client, arg: &str) -> Result<Self, CallError> {
        Ok(ShmString::from_str(client.main_allocator(), arg)?)
    }
}

impl CallOutput for ShmString {
    type Output = String;

    fn output(&self, _client: &Client) -> Result<String, CallError> {
        self.to_str()
            .map(str::to_owned)
            .map_err(|e| bad_output("string", e))
    }
}

impl<T: PlainValue> CallArg for ShmVec<T> {
    type Arg<'a> = &'a [T];

    fn from_arg(client: &Client, arg: &[T]) -> Result<Self, CallError> {
        Ok(ShmVec::from_slice(client.main_allocator(), arg)?)
    }
}

impl<T: CallOutput + ShmSafe> CallOutput for ShmVec<T> {
    type Output = Vec<T::Output>;

    fn output(&self, client: &Client) -> Result<Vec<T::Output>, CallError> {
        self.as_slice()
            .map_err(|e| bad_output("vector", e))?
            .iter()
            .map(|v| v.output(client))
            .collect()
    }
}

impl CallArg for ClientBytes {
    type Arg<'a> = &'a [u8];

    fn from_arg(client: &Client, arg: &[u8]) -> Result<Self, CallError> {
        Ok(ClientBytes::new(client, arg)?)
    }
}

impl CallOutput for ClientBytes {
    type Output = Vec<u8>;

    fn output(&self, client: &Client) -> Result<Vec<u8>, CallError> {
        Ok(self.to_vec(client)?)
    }
}

impl CallArg for ClientStr {
    type Arg<'a> = &'a str;

    fn from_arg(client: &Client, arg: &str) -> Result<Self, CallError> {
        Ok(ClientStr::new(client, arg)?)
    }
}

impl CallOutput for ClientStr {
    type Output = String;

    fn output(&self, client: &Client) -> Result<String, CallError> {
        String::from_utf8(self.bytes().to_vec(client)?).map_err(|e| bad_output("text", e))
    }
}

/// The argument is the capacity to allocate: `0` leaves the buffer empty,
/// for the module to grow as it writes.
impl CallArg for ClientBuf {
    type Arg<'a> = usize;

    fn from_arg(client: &Client, capacity: usize) -> Result<Self, CallError> {
        Ok(ClientBuf::with_capacity(client, capacity)?)
    }
}

impl CallOutput for ClientBuf {
    type Output = Vec<u8>;

    fn output(&self, client: &Client) -> Result<Vec<u8>, CallError> {
        Ok(self.to_vec(client)?)
    }
}

/// The outputs of a task, as its generated call returns them (implemented by
/// the code `#[chimod]` generates for each handler's task).
pub trait TaskOutputs: Task {
    /// One output as itself, several as a tuple, none as `()`.
    type Outputs;

    /// Copies the outputs out of the completed task.
    fn outputs(&self, client: &Client) -> Result<Self::Outputs, CallError>;
}

/// Makes the value of an input field from its argument (generated calls).
#[doc(hidden)]
#[inline]
pub fn arg<T: CallArg>(client: &Client, arg: T::Arg<'_>) -> Result<T, CallError> {
    T::from_arg(client, arg)
}

/// Frees an input field's value that never reached a task (generated calls).
#[doc(hidden)]
#[inline]
pub fn discard<T: CallArg>(client: &Client, value: T) {
    value.discard(client)
}

/// Copies an output field out of a completed task (generated calls).
#[doc(hidden)]
#[inline]
pub fn output<T: CallOutput>(client: &Client, field: &T) -> Result<T::Output, CallError> {
    field.output(client)
}
