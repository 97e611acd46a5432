//! The ZeroMQ server of the control socket, and the authenticator it and
//! the runtimes' peer sockets use.
//!
//! A ROUTER socket, not REP: REP answers in lock-step, so one request that
//! waits (another node's status) would hold up every client behind it. The
//! clients are REQ sockets; each request comes with its envelope (the
//! routing id and the empty delimiter), kept in a [`Caller`] so that the
//! reply can go later, after other requests were answered.
//!
//! The authenticator (the ZAP handler libzmq asks about every new
//! connection) runs on a thread of its own, not in [`recv`](ControlServer::recv):
//! a peer is admitted or refused at once, whatever the thread serving the
//! requests is doing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{
    Caller, ControlServer, Incoming, MAX_REQUEST_BYTES, TransportError, millis, tcp_endpoint, zerr,
};
use crate::auth::{ControlKey, current_uid};

/// Where libzmq sends its authentication (ZAP, RFC 27) requests.
const ZAP_ENDPOINT: &str = "inproc://zeromq.zap.01";
/// The ZAP domain of the control socket.
const ZAP_DOMAIN: &str = "chimaera-control";

/// How many refused connections are logged per [`REFUSAL_WINDOW`]; the rest are
/// counted and summed up in the next window.
const REFUSALS_LOGGED: u32 = 5;
/// See [`REFUSALS_LOGGED`].
const REFUSAL_WINDOW: Duration = Duration::from_secs(60);
/// How often the authenticator looks whether its server was dropped.
const ZAP_STOP_CHECK: Duration = Duration::from_millis(50);

/// ZeroMQ ROUTER server bound to one endpoint, admitting only peers that present
/// its key. It has a ZeroMQ context of its own, whose authentication requests
/// its authenticator thread answers.
pub struct ZmqServer {
    sock: zmq::Socket,
    endpoint: String,
    /// Stopped when the server drops (after its socket).
    _zap: Authenticator,
}

impl std::fmt::Debug for ZmqServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZmqServer")
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl ZmqServer {
    /// Binds `addr:port`, admitting only clients presenting `key`; fails with
    /// [`TransportError::AddressInUse`] if the address is taken.
    pub fn bind(addr: &str, port: u16, key: ControlKey) -> Result<ZmqServer, TransportError> {
        let endpoint = tcp_endpoint(addr, port);
        // A context of its own: the ZAP endpoint is one per context.
        let ctx = zmq::Context::new();
        // Started before the control socket is bound: a handshake without an
        // authenticator fails.
        let zap = Authenticator::start(&ctx, &endpoint, key, Guarded::Control)?;
        let sock = ctx.socket(zmq::ROUTER).map_err(zerr(&endpoint))?;
        sock.set_linger(0).map_err(zerr(&endpoint))?;
        sock.set_maxmsgsize(MAX_REQUEST_BYTES as i64)
            .map_err(zerr(&endpoint))?;
        sock.set_plain_server(true).map_err(zerr(&endpoint))?;
        sock.set_zap_domain(ZAP_DOMAIN).map_err(zerr(&endpoint))?;
        sock.bind(&endpoint).map_err(|e| match e {
            zmq::Error::EADDRINUSE => TransportError::AddressInUse {
                endpoint: endpoint.clone(),
            },
            e => zerr(&endpoint)(e),
        })?;
        Ok(ZmqServer {
            sock,
            endpoint,
            _zap: zap,
        })
    }

    /// Also listens on `addr:port` (the same socket and key): a runtime bound on
    /// a node's network address serves local clients on loopback too.
    pub fn bind_also(&mut self, addr: &str, port: u16) -> Result<(), TransportError> {
        let endpoint = tcp_endpoint(addr, port);
        self.sock.bind(&endpoint).map_err(|e| match e {
            zmq::Error::EADDRINUSE => TransportError::AddressInUse {
                endpoint: endpoint.clone(),
            },
            e => zerr(&endpoint)(e),
        })
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Reads every part of the next request: its envelope (the routing id,
    /// and the empty delimiter a REQ client puts before the body), then the
    /// body, which must be one part within [`MAX_REQUEST_BYTES`].
    fn read_request(&mut self) -> Result<(Caller, Incoming), TransportError> {
        let id = self.sock.recv_bytes(0).map_err(zerr(&self.endpoint))?;
        let mut envelope = vec![id];
        let mut size = 0;
        let mut parts = 0;
        let mut body = None;
        while self.sock.get_rcvmore().map_err(zerr(&self.endpoint))? {
            let msg = self.sock.recv_msg(0).map_err(zerr(&self.endpoint))?;
            if envelope.len() == 1 && parts == 0 && msg.is_empty() {
                envelope.push(Vec::new());
                continue;
            }
            size += msg.len();
            parts += 1;
            if parts == 1 {
                body = Some(msg);
            }
        }
        let incoming = match body {
            Some(b) if parts == 1 && size <= MAX_REQUEST_BYTES => Incoming::Request(b.to_vec()),
            _ => Incoming::Rejected { size, parts },
        };
        Ok((Caller(envelope), incoming))
    }
}

impl ControlServer for ZmqServer {
    fn recv(&mut self, timeout: Duration) -> Result<Option<(Caller, Incoming)>, TransportError> {
        let mut items = [self.sock.as_poll_item(zmq::POLLIN)];
        zmq::poll(&mut items, millis(timeout)).map_err(zerr(&self.endpoint))?;
        if items[0].is_readable() {
            self.read_request().map(Some)
        } else {
            Ok(None)
        }
    }

    fn reply(&mut self, to: &Caller, msg: &[u8]) -> Result<(), TransportError> {
        // A caller gone meanwhile: ROUTER drops the reply.
        for part in &to.0 {
            self.sock
                .send(part.as_slice(), zmq::SNDMORE)
                .map_err(zerr(&self.endpoint))?;
        }
        self.sock.send(msg, 0).map_err(zerr(&self.endpoint))
    }
}

/// What an [`Authenticator`] guards: it names its thread and its log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guarded {
    /// A runtime's control socket (its key: the runtime's own).
    Control,
    /// A runtime's peer socket (its key: the cluster key).
    Peers,
}

/// The thread answering the ZAP requests (RFC 27) of a ZeroMQ context:
/// admits a connection whose PLAIN password is its key, refuses (and
/// counts, and logs a few a minute) the others. Stopped and joined when
/// dropped (also when the bind that started it failed). A socket it guards
/// sets `ZMQ_PLAIN_SERVER` and a ZAP domain, and is bound after it started:
/// a handshake without an authenticator fails.
pub struct Authenticator {
    stop: Arc<AtomicBool>,
    refused: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("refused", &self.refused())
            .finish()
    }
}

impl Authenticator {
    /// Binds the ZAP endpoint of `ctx` and starts answering on it, for the
    /// sockets of `endpoint` (named in errors), admitting `key`.
    pub fn start(
        ctx: &zmq::Context,
        endpoint: &str,
        key: ControlKey,
        guarded: Guarded,
    ) -> Result<Authenticator, TransportError> {
        let zap = ctx.socket(zmq::REP).map_err(zerr(endpoint))?;
        zap.set_linger(0).map_err(zerr(endpoint))?;
        zap.bind(ZAP_ENDPOINT).map_err(zerr(endpoint))?;
        let stop = Arc::new(AtomicBool::new(false));
        let refused = Arc::new(AtomicU64::new(0));
        let mut zap = Zap {
            sock: zap,
            endpoint: endpoint.to_owned(),
            key,
            refusals: Refusals::new(guarded),
            refused: refused.clone(),
        };
        let flag = stop.clone();
        let name = match guarded {
            Guarded::Control => "chi-control-auth",
            Guarded::Peers => "chi-peer-auth",
        };
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                // Relaxed: the flag carries no data; pairs with the store in `stop`.
                while !flag.load(Ordering::Relaxed) {
                    if let Err(e) = zap.serve_one(ZAP_STOP_CHECK) {
                        tracing::warn!(error = %e, ?guarded, "socket authenticator error");
                        std::thread::sleep(ZAP_STOP_CHECK);
                    }
                }
            })
            .map_err(|e| TransportError::Socket {
                endpoint: endpoint.to_owned(),
                message: format!("cannot start the authenticator thread: {e}"),
            })?;
        Ok(Authenticator {
            stop,
            refused,
            thread: Some(thread),
        })
    }

    /// The counter of refused connections, to show elsewhere (a status
    /// report); incremented Relaxed.
    pub fn refusals(&self) -> Arc<AtomicU64> {
        self.refused.clone()
    }

    /// Connections refused so far.
    pub fn refused(&self) -> u64 {
        // Relaxed: a counter; pairs with the increment in `Zap::authenticate`.
        self.refused.load(Ordering::Relaxed)
    }
}

impl Drop for Authenticator {
    /// Stops the thread (within 50 ms) and waits for it.
    fn drop(&mut self) {
        // Relaxed: see the load in the thread.
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The authenticator thread's socket and state.
struct Zap {
    sock: zmq::Socket,
    endpoint: String,
    key: ControlKey,
    refusals: Refusals,
    refused: Arc<AtomicU64>,
}

impl Zap {
    /// Answers the next ZAP request, if one comes within `wait`.
    fn serve_one(&mut self, wait: Duration) -> Result<(), TransportError> {
        let mut items = [self.sock.as_poll_item(zmq::POLLIN)];
        zmq::poll(&mut items, millis(wait)).map_err(zerr(&self.endpoint))?;
        if items[0].is_readable() {
            self.authenticate()?;
        }
        Ok(())
    }

    /// Answers one ZAP request: admits the peer if it presented the key.
    fn authenticate(&mut self) -> Result<(), TransportError> {
        let frames = self.sock.recv_multipart(0).map_err(zerr(&self.endpoint))?;
        // version, request id, domain, address, routing id, mechanism, credentials.
        let admitted = frames.len() == 8
            && frames[0] == b"1.0"
            && frames[5] == b"PLAIN"
            && self.key.matches(&frames[7]);
        let id = frames.get(1).cloned().unwrap_or_default();
        let (code, text): (&[u8], &[u8]) = if admitted {
            (b"200", b"OK")
        } else {
            (b"400", b"not authorised")
        };
        // version, request id, status code, status text, user id, metadata.
        self.sock
            .send_multipart([b"1.0".as_slice(), &id, code, text, b"", b""], 0)
            .map_err(zerr(&self.endpoint))?;
        if !admitted {
            // Relaxed: a counter; see `Authenticator::refused`.
            self.refused.fetch_add(1, Ordering::Relaxed);
            let peer = frames
                .get(3)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .unwrap_or_default();
            self.refusals.note(&peer);
        }
        Ok(())
    }
}

/// Logs refused connections, at most [`REFUSALS_LOGGED`] per [`REFUSAL_WINDOW`].
struct Refusals {
    guarded: Guarded,
    window: Instant,
    logged: u32,
    unlogged: u64,
}

impl Refusals {
    fn new(guarded: Guarded) -> Refusals {
        Refusals {
            guarded,
            window: Instant::now(),
            logged: 0,
            unlogged: 0,
        }
    }

    fn note(&mut self, peer: &str) {
        let what = match self.guarded {
            Guarded::Control => "control connections without the runtime's key",
            Guarded::Peers => "peer connections without the cluster key",
        };
        if self.window.elapsed() >= REFUSAL_WINDOW {
            if self.unlogged > 0 {
                tracing::warn!(
                    count = self.unlogged,
                    "refused {} more {what}",
                    self.unlogged
                );
            }
            *self = Refusals::new(self.guarded);
        }
        if self.logged < REFUSALS_LOGGED {
            self.logged += 1;
            match self.guarded {
                Guarded::Control => tracing::warn!(
                    peer,
                    "refused a control connection without the runtime's key: not authorised, only the user who started the runtime (uid {}) may talk to it",
                    current_uid()
                ),
                Guarded::Peers => tracing::warn!(
                    peer,
                    "refused a peer connection without the cluster key: every node of a cluster must read the same key (cluster.key_file)"
                ),
            }
        } else {
            self.unlogged += 1;
        }
    }
}
