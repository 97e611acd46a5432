//! The parts of [`queue`](self) that compile under `cfg(loom)`: the lane ring and
//! the doorbell handshake, with their model tests.

pub(crate) mod doorbell;
pub(crate) mod ring;
