//! The control transport: request/reply messages between clients (or the
//! `chi-runtime stop|status` commands) and a runtime's loopback socket.
//!
//! Behind two small traits so that the backend can change in one file; the
//! ZeroMQ backend (REQ clients, a ROUTER server, over TCP) is the real one.
//!
//! # Who may connect
//! Every connection must present the runtime's key ([`crate::auth`]): the socket
//! uses ZeroMQ's PLAIN mechanism with the key as password, and the server checks
//! it on a thread of its own that answers ZeroMQ's authentication (ZAP)
//! requests. A peer
//! without the key is disconnected during the handshake, before it can send a
//! message; the client notices the refusal (a socket monitor reports it) and
//! fails with [`TransportError::NotAuthorised`] at once.
//!
//! # Sizes
//! A request is one message of at most [`MAX_REQUEST_BYTES`]. The server's socket
//! refuses a larger frame from its header, before allocating it (ZeroMQ's
//! `ZMQ_MAXMSGSIZE`: the connection is dropped and the client times out), and the
//! server checks again what it received: a request in several parts, or larger
//! in total, is discarded and answered with an error ([`Incoming::Rejected`]).
//! The client refuses to send a larger request, and its socket refuses replies
//! over [`MAX_REPLY_BYTES`].

mod zmq_client;
mod zmq_server;

use std::time::Duration;

pub use zmq_client::ZmqClient;
pub use zmq_server::{Authenticator, Guarded, ZmqServer};

/// Largest request a runtime accepts, in bytes.
pub const MAX_REQUEST_BYTES: usize = 64 << 10;

/// Largest reply a client accepts, in bytes (a status report of thousands of
/// pools fits many times over).
pub const MAX_REPLY_BYTES: usize = 16 << 20;

/// The PLAIN user name clients present (the key is the password).
pub const PLAIN_USER: &str = "chimaera";

/// Why a request could not be answered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// Nothing listens at the endpoint.
    #[error(
        "no runtime is listening on {endpoint}: start one with 'chi-runtime start' (or check CHI_PORT / the config's port)"
    )]
    NoRuntime {
        /// The endpoint.
        endpoint: String,
    },
    /// The peer did not answer in time.
    #[error("the runtime at {endpoint} did not answer within {timeout:?}")]
    Timeout {
        /// The endpoint.
        endpoint: String,
        /// How long we waited.
        timeout: Duration,
    },
    /// The socket layer failed.
    #[error("control socket {endpoint}: {message}")]
    Socket {
        /// The endpoint.
        endpoint: String,
        /// What failed.
        message: String,
    },
    /// The address is taken by another process.
    #[error(
        "cannot listen on {endpoint}: the address is in use (is another runtime running on this port?)"
    )]
    AddressInUse {
        /// The endpoint.
        endpoint: String,
    },
    /// The runtime refused this client's key.
    #[error(
        "not authorised: the runtime at {endpoint} refused this client's key; only the user who started the runtime{} (or root) may talk to it. If that is you, the key file was replaced: retry, or restart the runtime",
        owner.map(|u| format!(" (uid {u})")).unwrap_or_default()
    )]
    NotAuthorised {
        /// The endpoint.
        endpoint: String,
        /// The runtime's uid, if known.
        owner: Option<u32>,
    },
    /// The handshake with the runtime failed for another reason than the key.
    #[error(
        "the control handshake with {endpoint} failed ({detail}): is it a runtime of another version of chi-runtime?"
    )]
    Handshake {
        /// The endpoint.
        endpoint: String,
        /// What the socket reported.
        detail: String,
    },
    /// The request is larger than a runtime accepts.
    #[error(
        "the request to {endpoint} is {size} bytes, over the limit of {limit} bytes; the control socket is for small messages"
    )]
    TooLarge {
        /// The endpoint.
        endpoint: String,
        /// Its size.
        size: usize,
        /// The limit ([`MAX_REQUEST_BYTES`]).
        limit: usize,
    },
}

/// What the server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A request within the limits.
    Request(Vec<u8>),
    /// A request in more than one part, or larger than [`MAX_REQUEST_BYTES`] in
    /// total: discarded. It must still be answered (with an error).
    Rejected {
        /// Its total size in bytes.
        size: usize,
        /// Its number of parts.
        parts: usize,
    },
}

/// Client side: one request, one reply.
pub trait ControlClient {
    /// Sends `msg` and waits up to `timeout` for the reply.
    fn request(&self, msg: &[u8], timeout: Duration) -> Result<Vec<u8>, TransportError>;
}

/// Who sent a request: where its reply goes (the envelope of a ROUTER
/// socket). A server may hold several and answer them in any order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(pub(crate) Vec<Vec<u8>>);

/// Server side: receive requests, send each its reply, in any order (a
/// request that needs time does not hold up the next ones).
pub trait ControlServer {
    /// The next request and its caller, or `None` after `timeout` without
    /// one.
    fn recv(&mut self, timeout: Duration) -> Result<Option<(Caller, Incoming)>, TransportError>;
    /// Replies to the request of `to` (once).
    fn reply(&mut self, to: &Caller, msg: &[u8]) -> Result<(), TransportError>;
}

/// The endpoint string of a TCP address.
pub fn tcp_endpoint(addr: &str, port: u16) -> String {
    format!("tcp://{addr}:{port}")
}

/// Whether something accepts TCP connections on `addr:port` (within `timeout`,
/// at most a second). ZeroMQ connects lazily and would wait for a peer that does
/// not exist; this tells "nobody listens" at once.
pub fn probe(addr: &str, port: u16, timeout: Duration) -> Result<(), TransportError> {
    let endpoint = tcp_endpoint(addr, port);
    let sa: std::net::SocketAddr =
        format!("{addr}:{port}")
            .parse()
            .map_err(|_| TransportError::Socket {
                endpoint: endpoint.clone(),
                message: format!("'{addr}' is not an IP address"),
            })?;
    std::net::TcpStream::connect_timeout(&sa, timeout.min(Duration::from_secs(1)))
        .map(drop)
        .map_err(|_| TransportError::NoRuntime { endpoint })
}

fn zerr(endpoint: &str) -> impl FnOnce(zmq::Error) -> TransportError + '_ {
    move |e| TransportError::Socket {
        endpoint: endpoint.to_owned(),
        message: e.to_string(),
    }
}

/// `d` in whole milliseconds for `zmq::poll`, rounded up: rounded down, the
/// last sub-millisecond of a wait would poll with 0 (return at once) in a
/// loop, a busy spin of up to 1 ms every wait.
fn millis(d: Duration) -> i64 {
    d.as_micros().div_ceil(1000).min(i32::MAX as u128) as i64
}

// Real segments, processes, files or sockets: not under Miri (see
// scripts/check-miri.sh); run natively.
#[cfg(all(test, not(miri)))]
mod tests;
