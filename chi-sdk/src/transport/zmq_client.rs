//! The ZeroMQ REQ client of the control socket.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{
    ControlClient, MAX_REPLY_BYTES, MAX_REQUEST_BYTES, PLAIN_USER, TransportError, millis, probe,
    tcp_endpoint, zerr,
};
use crate::auth::{ControlKey, listener_uid};

/// The client's ZeroMQ context (one per process, never terminated).
fn context() -> &'static zmq::Context {
    static CTX: std::sync::OnceLock<zmq::Context> = std::sync::OnceLock::new();
    CTX.get_or_init(zmq::Context::new)
}

/// Names of the sockets' monitors, unique in this process.
static NEXT_MONITOR: AtomicU64 = AtomicU64::new(0);

/// ZeroMQ REQ client presenting the runtime's key (a fresh socket per request,
/// so a timeout never leaves a socket in the wrong state).
#[derive(Debug, Clone)]
pub struct ZmqClient {
    addr: String,
    port: u16,
    key: ControlKey,
}

impl ZmqClient {
    /// A client of the runtime listening on `addr:port`, whose key is `key`
    /// ([`ControlKey::find`]).
    pub fn new(addr: &str, port: u16, key: ControlKey) -> ZmqClient {
        ZmqClient {
            addr: addr.to_owned(),
            port,
            key,
        }
    }

    /// The endpoint.
    pub fn endpoint(&self) -> String {
        tcp_endpoint(&self.addr, self.port)
    }

    /// What the monitor of a socket reported: `Some` error once the handshake
    /// failed.
    fn handshake_failure(&self, mon: &zmq::Socket) -> Option<TransportError> {
        let frames = mon.recv_multipart(zmq::DONTWAIT).ok()?;
        // Frame 1: the event (u16) and its value (u32), native byte order.
        let head = frames.first()?;
        let event = u16::from_ne_bytes(head.get(..2)?.try_into().ok()?);
        let value = u32::from_ne_bytes(head.get(2..6)?.try_into().ok()?);
        let endpoint = self.endpoint();
        match zmq::SocketEvent::from_raw(event) {
            zmq::SocketEvent::HANDSHAKE_FAILED_AUTH => Some(TransportError::NotAuthorised {
                endpoint,
                owner: self
                    .addr
                    .parse()
                    .ok()
                    .and_then(|ip| listener_uid(ip, self.port)),
            }),
            zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL => Some(TransportError::Handshake {
                endpoint,
                detail: format!("protocol error {value:#x}"),
            }),
            zmq::SocketEvent::HANDSHAKE_FAILED_NO_DETAIL => Some(TransportError::Handshake {
                endpoint,
                detail: format!("error {value}"),
            }),
            _ => None,
        }
    }
}

impl ControlClient for ZmqClient {
    fn request(&self, msg: &[u8], timeout: Duration) -> Result<Vec<u8>, TransportError> {
        let endpoint = self.endpoint();
        if msg.len() > MAX_REQUEST_BYTES {
            return Err(TransportError::TooLarge {
                endpoint,
                size: msg.len(),
                limit: MAX_REQUEST_BYTES,
            });
        }
        probe(&self.addr, self.port, timeout)?;
        let ctx = context();
        let sock = ctx.socket(zmq::REQ).map_err(zerr(&endpoint))?;
        let password = self.key.to_hex();
        sock.set_linger(0).map_err(zerr(&endpoint))?;
        sock.set_maxmsgsize(MAX_REPLY_BYTES as i64)
            .map_err(zerr(&endpoint))?;
        sock.set_sndtimeo(millis(timeout) as i32)
            .map_err(zerr(&endpoint))?;
        sock.set_plain_username(Some(PLAIN_USER))
            .map_err(zerr(&endpoint))?;
        sock.set_plain_password(Some(&password))
            .map_err(zerr(&endpoint))?;
        // A refused handshake is reported only to a monitor; without one the
        // client would wait out its timeout.
        let monitor = format!(
            "inproc://chi-control-monitor-{}",
            // Relaxed: only uniqueness matters.
            NEXT_MONITOR.fetch_add(1, Ordering::Relaxed)
        );
        let events = zmq::SocketEvent::HANDSHAKE_FAILED_AUTH as i32
            | zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL as i32
            | zmq::SocketEvent::HANDSHAKE_FAILED_NO_DETAIL as i32;
        sock.monitor(&monitor, events).map_err(zerr(&endpoint))?;
        let mon = ctx.socket(zmq::PAIR).map_err(zerr(&endpoint))?;
        mon.set_linger(0).map_err(zerr(&endpoint))?;
        // Before connecting: events with no reader are dropped.
        mon.connect(&monitor).map_err(zerr(&endpoint))?;
        sock.connect(&endpoint).map_err(zerr(&endpoint))?;
        let timed_out = || TransportError::Timeout {
            endpoint: endpoint.clone(),
            timeout,
        };
        sock.send(msg, 0).map_err(|e| match e {
            zmq::Error::EAGAIN => timed_out(),
            e => zerr(&endpoint)(e),
        })?;
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(timed_out());
            }
            let mut items = [
                sock.as_poll_item(zmq::POLLIN),
                mon.as_poll_item(zmq::POLLIN),
            ];
            zmq::poll(&mut items, millis(left).max(1)).map_err(zerr(&endpoint))?;
            if items[0].is_readable() {
                return sock.recv_bytes(0).map_err(zerr(&endpoint));
            }
            if items[1].is_readable()
                && let Some(e) = self.handshake_failure(&mon)
            {
                return Err(e);
            }
        }
    }
}
