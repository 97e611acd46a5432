//! The control transport: request/reply messages between clients (or the
//! `chi-runtime stop|status` commands) and a runtime's loopback socket.
//!
//! Behind two small traits so that the backend can change in one file; the
//! ZeroMQ backend (REQ/REP over TCP) is the real one.

use std::time::Duration;

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
}

/// Client side: one request, one reply.
pub trait ControlClient {
    /// Sends `msg` and waits up to `timeout` for the reply.
    fn request(&self, msg: &[u8], timeout: Duration) -> Result<Vec<u8>, TransportError>;
}

/// Server side: receive a request, send its reply.
pub trait ControlServer {
    /// The next request, or `None` after `timeout` without one.
    fn recv(&mut self, timeout: Duration) -> Result<Option<Vec<u8>>, TransportError>;
    /// Replies to the request last received.
    fn reply(&mut self, msg: &[u8]) -> Result<(), TransportError>;
}

/// The endpoint string of a TCP address.
pub fn tcp_endpoint(addr: &str, port: u16) -> String {
    format!("tcp://{addr}:{port}")
}

/// ZeroMQ REQ client (a fresh socket per request, so a timeout never leaves a
/// socket in the wrong state).
#[derive(Debug, Clone)]
pub struct ZmqClient {
    addr: String,
    port: u16,
}

fn zerr(endpoint: &str) -> impl FnOnce(zmq::Error) -> TransportError + '_ {
    move |e| TransportError::Socket {
        endpoint: endpoint.to_owned(),
        message: e.to_string(),
    }
}

fn context() -> &'static zmq::Context {
    static CTX: std::sync::OnceLock<zmq::Context> = std::sync::OnceLock::new();
    CTX.get_or_init(zmq::Context::new)
}

impl ZmqClient {
    /// A client of the runtime listening on `addr:port`.
    pub fn new(addr: &str, port: u16) -> ZmqClient {
        ZmqClient {
            addr: addr.to_owned(),
            port,
        }
    }

    /// The endpoint.
    pub fn endpoint(&self) -> String {
        tcp_endpoint(&self.addr, self.port)
    }
}

impl ControlClient for ZmqClient {
    fn request(&self, msg: &[u8], timeout: Duration) -> Result<Vec<u8>, TransportError> {
        let endpoint = self.endpoint();
        // ZeroMQ connects lazily and would wait for a peer that does not exist;
        // a plain TCP probe tells "nobody listens" at once.
        let probe: std::net::SocketAddr =
            format!("{}:{}", self.addr, self.port)
                .parse()
                .map_err(|_| TransportError::Socket {
                    endpoint: endpoint.clone(),
                    message: "bad address".into(),
                })?;
        if std::net::TcpStream::connect_timeout(&probe, timeout.min(Duration::from_secs(1)))
            .is_err()
        {
            return Err(TransportError::NoRuntime { endpoint });
        }
        let sock = context().socket(zmq::REQ).map_err(zerr(&endpoint))?;
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        sock.set_linger(0).map_err(zerr(&endpoint))?;
        sock.set_rcvtimeo(ms).map_err(zerr(&endpoint))?;
        sock.set_sndtimeo(ms).map_err(zerr(&endpoint))?;
        sock.connect(&endpoint).map_err(zerr(&endpoint))?;
        sock.send(msg, 0).map_err(|e| match e {
            zmq::Error::EAGAIN => TransportError::Timeout {
                endpoint: endpoint.clone(),
                timeout,
            },
            e => zerr(&endpoint)(e),
        })?;
        sock.recv_bytes(0).map_err(|e| match e {
            zmq::Error::EAGAIN => TransportError::Timeout {
                endpoint: endpoint.clone(),
                timeout,
            },
            e => zerr(&endpoint)(e),
        })
    }
}

/// ZeroMQ REP server bound to one endpoint.
pub struct ZmqServer {
    sock: zmq::Socket,
    endpoint: String,
}

impl std::fmt::Debug for ZmqServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZmqServer")
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl ZmqServer {
    /// Binds `addr:port`; fails with [`TransportError::AddressInUse`] if taken.
    pub fn bind(addr: &str, port: u16) -> Result<ZmqServer, TransportError> {
        let endpoint = tcp_endpoint(addr, port);
        let sock = context().socket(zmq::REP).map_err(zerr(&endpoint))?;
        sock.set_linger(0).map_err(zerr(&endpoint))?;
        sock.bind(&endpoint).map_err(|e| match e {
            zmq::Error::EADDRINUSE => TransportError::AddressInUse {
                endpoint: endpoint.clone(),
            },
            e => zerr(&endpoint)(e),
        })?;
        Ok(ZmqServer { sock, endpoint })
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

impl ControlServer for ZmqServer {
    fn recv(&mut self, timeout: Duration) -> Result<Option<Vec<u8>>, TransportError> {
        let ms = timeout.as_millis().min(i64::MAX as u128) as i64;
        let ready = self
            .sock
            .poll(zmq::POLLIN, ms)
            .map_err(zerr(&self.endpoint))?;
        if ready == 0 {
            return Ok(None);
        }
        self.sock
            .recv_bytes(0)
            .map(Some)
            .map_err(zerr(&self.endpoint))
    }

    fn reply(&mut self, msg: &[u8]) -> Result<(), TransportError> {
        self.sock.send(msg, 0).map_err(zerr(&self.endpoint))
    }
}
