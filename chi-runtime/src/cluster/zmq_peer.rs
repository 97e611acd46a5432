//! The ZeroMQ peer transport: one ROUTER bound on this node's hostfile
//! address, one DEALER per peer.
//!
//! # Sockets
//!
//! * **The cluster key.** Both sides speak ZeroMQ's PLAIN mechanism with the
//!   cluster key as password (`chi_sdk::auth`, `cluster.key_file`): the
//!   ROUTER's context answers the handshakes itself ([`Authenticator`]) and
//!   admits only connections presenting the key, so a process on a hostfile
//!   host that lacks it cannot get a message in. A wrong key is counted
//!   ([`ZmqPeers::refused_connections`]) and logged, a few a minute; a
//!   connection without PLAIN at all is refused by libzmq itself, silently.
//!   The check is made once per connection: frames pay nothing for it.
//! * **ROUTER** (receive side), bound on `{this node's address}:{cluster.port}`
//!   only, never on a wildcard. Every message is checked before its bytes are
//!   handed on: its sender's IP address (ZeroMQ's `Peer-Address` message
//!   property) must be one of the hostfile's addresses, it must be one part
//!   after the routing id, and at most [`MAX_FRAME`] bytes (the socket's
//!   `ZMQ_MAXMSGSIZE` drops a connection announcing a larger message before
//!   reading it). Refused messages are logged, rate-limited, and dropped.
//! * **DEALER** (send side), one per peer, each behind its own lock
//!   ([`ZmqSender`]): the peer thread and the workers send on it (ZeroMQ
//!   lets a socket move between threads when a full barrier separates the
//!   uses, which the lock provides), and frames to one peer keep their
//!   order whoever sends them. It is connected to the peer's ROUTER from
//!   this node's own address (`tcp://{mine}:0;{peer}:{port}`, so that on a
//!   machine hosting several nodes on 127.0.0.x the source address is still
//!   the sender's hostfile address: the peer thread checks that a frame's
//!   sender id is the node of its source address). `ZMQ_IMMEDIATE` keeps frames off a
//!   connection that is not up and a small send high-water mark bounds what
//!   waits for a slow peer: a frame that cannot be queued is dropped
//!   ([`PeerError::Unreachable`]), a send never blocks. ZeroMQ reconnects by
//!   itself when a peer comes back, within `RECONNECT_MAX_MS` (250 ms): a node
//!   may see a restarted peer up (from the peer's own frames) a little
//!   before its own link to it is, and the tasks it sends it meanwhile fail
//!   at once as unreachable, to resubmit.
//!
//! Not REQ/REP lock-step: frames flow both ways independently, many in
//! flight, so batches of tasks can stream to a peer.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chi_sdk::auth::ControlKey;
use chi_sdk::transport::{Authenticator, Guarded, PLAIN_USER};

use super::doorbell::Doorbell;
use super::frame::MAX_FRAME;
use super::transport::{PeerError, PeerSend, PeerTransport, Received};
use crate::ratelimit::RateLimit;

/// The ZAP domain of the peer socket.
const ZAP_DOMAIN: &str = "chimaera-cluster";

/// Frames queued per peer before sends to it fail.
const SEND_HWM: i32 = 1000;
/// The longest wait between two attempts of a link to reconnect to a peer
/// that is away (ZeroMQ backs off from 100 ms to this): after the peer is
/// back, its tasks fail as unreachable for at most about this long.
const RECONNECT_MAX_MS: i32 = 250;
/// Frames queued on the receive side before ZeroMQ stops reading (per
/// connection: what a peer can make this node hold unread is this many
/// frames of at most [`MAX_FRAME`] bytes).
const RECV_HWM: i32 = 1000;

static REFUSED_ADDR: RateLimit = RateLimit::new(Duration::from_secs(10));
static REFUSED_SHAPE: RateLimit = RateLimit::new(Duration::from_secs(10));

/// The ZeroMQ backend of [`PeerTransport`].
pub struct ZmqPeers {
    // Dropped last (fields drop in order): the sockets first.
    router: zmq::Socket,
    sender: Arc<ZmqSender>,
    allowed: HashSet<IpAddr>,
    endpoint: String,
    bell: Arc<Doorbell>,
    /// Answers the handshakes of the ROUTER's connections; stopped before
    /// the context is.
    zap: Authenticator,
    _ctx: zmq::Context,
}

impl std::fmt::Debug for ZmqPeers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZmqPeers")
            .field("endpoint", &self.endpoint)
            .field("peers", &self.sender.dealers.len())
            .finish()
    }
}

fn endpoint(addr: IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V4(a) => format!("tcp://{a}:{port}"),
        IpAddr::V6(a) => format!("tcp://[{a}]:{port}"),
    }
}

fn sock_err(what: &str) -> impl FnOnce(zmq::Error) -> PeerError + '_ {
    move |e| PeerError::Socket(format!("{what}: {e}"))
}

impl ZmqPeers {
    /// Binds `addr:port` and connects to each of `peers` (node id, address)
    /// on `port`. Only messages from `allowed` addresses, over connections
    /// presenting `key`, are received; the connections to the peers present
    /// it.
    pub fn bind(
        me: u32,
        addr: IpAddr,
        port: u16,
        peers: &[(u32, IpAddr)],
        allowed: HashSet<IpAddr>,
        key: &ControlKey,
    ) -> Result<ZmqPeers, PeerError> {
        let ctx = zmq::Context::new();
        let ep = endpoint(addr, port);
        // Before the ROUTER is bound: a handshake without it fails.
        let zap = Authenticator::start(&ctx, &ep, key.clone(), Guarded::Peers)
            .map_err(|e| PeerError::Socket(format!("starting the peer authenticator: {e}")))?;
        let router = ctx
            .socket(zmq::ROUTER)
            .map_err(sock_err("creating the peer socket"))?;
        router.set_linger(0).map_err(sock_err("ZMQ_LINGER"))?;
        router
            .set_plain_server(true)
            .map_err(sock_err("ZMQ_PLAIN_SERVER"))?;
        // A renewed link of a peer comes with the routing id of its old
        // one, which may still be open here: the new connection takes the
        // id over (else libzmq drops its messages). Nothing here uses the
        // routing id.
        router
            .set_router_handover(true)
            .map_err(sock_err("ZMQ_ROUTER_HANDOVER"))?;
        router
            .set_zap_domain(ZAP_DOMAIN)
            .map_err(sock_err("ZMQ_ZAP_DOMAIN"))?;
        router
            .set_maxmsgsize(MAX_FRAME as i64)
            .map_err(sock_err("ZMQ_MAXMSGSIZE"))?;
        router
            .set_rcvhwm(RECV_HWM)
            .map_err(sock_err("ZMQ_RCVHWM"))?;
        if addr.is_ipv6() {
            router.set_ipv6(true).map_err(sock_err("ZMQ_IPV6"))?;
        }
        router.bind(&ep).map_err(|e| {
            PeerError::Socket(match e {
                zmq::Error::EADDRINUSE => format!(
                    "cannot listen for peers on {ep}: the address is in use; choose another \
                     `cluster.port` (the same on every node)"
                ),
                e => format!("cannot listen for peers on {ep}: {e}"),
            })
        })?;
        let link = LinkSpec {
            ctx: ctx.clone(),
            me,
            addr,
            port,
            password: key.to_hex(),
            peers: peers.iter().copied().collect(),
        };
        let mut dealers = HashMap::new();
        for &(id, _) in peers {
            dealers.insert(id, Mutex::new(link.dealer(id)?));
        }
        let bell = Doorbell::new()
            .map_err(|e| PeerError::Socket(format!("creating the peer thread's eventfd: {e}")))?;
        Ok(ZmqPeers {
            router,
            sender: Arc::new(ZmqSender { dealers, link }),
            allowed,
            endpoint: ep,
            bell: Arc::new(bell),
            zap,
            _ctx: ctx,
        })
    }

    /// The endpoint peers reach this node at.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Connections refused so far for not presenting the cluster key.
    pub fn refused_connections(&self) -> u64 {
        self.zap.refused()
    }

    /// The counter behind [`refused_connections`](Self::refused_connections),
    /// for the status report.
    pub fn refusal_counter(&self) -> Arc<std::sync::atomic::AtomicU64> {
        self.zap.refusals()
    }

    /// Reads the next message (all of its parts) if one is here, without
    /// waiting: its frame if admitted.
    fn read_one(&mut self) -> Result<Read, PeerError> {
        let _routing_id = match self.router.recv_msg(zmq::DONTWAIT) {
            Ok(m) => m,
            Err(zmq::Error::EAGAIN) => return Ok(Read::Empty),
            Err(e) => return Err(sock_err("receiving from a peer")(e)),
        };
        let mut parts = 0usize;
        let mut size = 0usize;
        let mut body = None;
        while self
            .router
            .get_rcvmore()
            .map_err(sock_err("receiving from a peer"))?
        {
            let msg = self
                .router
                .recv_msg(0)
                .map_err(sock_err("receiving from a peer"))?;
            parts += 1;
            size += msg.len();
            if parts == 1 {
                body = Some(msg);
            }
        }
        let Some(mut body) = body else {
            return Ok(Read::Refused);
        };
        let from = body.gets("Peer-Address").map(str::to_owned);
        let ip = from.as_deref().and_then(|a| a.parse::<IpAddr>().ok());
        let admitted = ip.is_some_and(|ip| self.allowed.contains(&ip));
        if !admitted {
            if let Some(suppressed) = REFUSED_ADDR.allow() {
                tracing::warn!(
                    peer = from.as_deref().unwrap_or("unknown"),
                    suppressed,
                    "refused a peer frame from an address not in the hostfile"
                );
            }
            return Ok(Read::Refused);
        }
        if parts != 1 || size > MAX_FRAME {
            if let Some(suppressed) = REFUSED_SHAPE.allow() {
                tracing::warn!(
                    peer = from.as_deref().unwrap_or("unknown"),
                    parts,
                    size,
                    suppressed,
                    "refused a peer message: a frame is one part of at most {MAX_FRAME} bytes"
                );
            }
            return Ok(Read::Refused);
        }
        Ok(Read::Frame(Received {
            bytes: body.to_vec(),
            from: ip,
        }))
    }
}

/// What [`ZmqPeers::read_one`] found.
enum Read {
    /// No message is waiting.
    Empty,
    /// A message was read and refused (logged).
    Refused,
    /// A frame from a hostfile address.
    Frame(Received),
}

/// The sending half of [`ZmqPeers`]: the DEALER of each peer, each behind
/// its lock (see the module doc). The sockets keep their context alive, so
/// a sender outliving the transport still sends (to nobody, once the peers
/// are gone) and closes its sockets when the last holder drops it.
pub struct ZmqSender {
    dealers: HashMap<u32, Mutex<zmq::Socket>>,
    /// How to make a DEALER again ([`PeerSend::reset`]).
    link: LinkSpec,
}

/// What a DEALER to a peer is made of.
struct LinkSpec {
    ctx: zmq::Context,
    me: u32,
    addr: IpAddr,
    port: u16,
    /// The cluster key, as the PLAIN password.
    password: String,
    /// Each peer's address, by node id.
    peers: HashMap<u32, IpAddr>,
}

impl LinkSpec {
    /// A DEALER connected to node `id`'s ROUTER (see the module doc).
    fn dealer(&self, id: u32) -> Result<zmq::Socket, PeerError> {
        let peer = *self
            .peers
            .get(&id)
            .ok_or(PeerError::NoSuchNode { node: id })?;
        let d = self
            .ctx
            .socket(zmq::DEALER)
            .map_err(sock_err("creating a peer link"))?;
        d.set_linger(0).map_err(sock_err("ZMQ_LINGER"))?;
        d.set_immediate(true).map_err(sock_err("ZMQ_IMMEDIATE"))?;
        d.set_sndhwm(SEND_HWM).map_err(sock_err("ZMQ_SNDHWM"))?;
        d.set_reconnect_ivl(100)
            .map_err(sock_err("ZMQ_RECONNECT_IVL"))?;
        d.set_reconnect_ivl_max(RECONNECT_MAX_MS)
            .map_err(sock_err("ZMQ_RECONNECT_IVL_MAX"))?;
        d.set_identity(format!("node-{}", self.me).as_bytes())
            .map_err(sock_err("ZMQ_ROUTING_ID"))?;
        d.set_plain_username(Some(PLAIN_USER))
            .map_err(sock_err("ZMQ_PLAIN_USERNAME"))?;
        d.set_plain_password(Some(&self.password))
            .map_err(sock_err("ZMQ_PLAIN_PASSWORD"))?;
        if peer.is_ipv6() {
            d.set_ipv6(true).map_err(sock_err("ZMQ_IPV6"))?;
        }
        // From this node's own address (port 0: any), to the peer's.
        let src = match self.addr {
            IpAddr::V4(a) => format!("{a}:0"),
            IpAddr::V6(a) => format!("[{a}]:0"),
        };
        let target = endpoint(peer, self.port);
        let connect = format!("tcp://{src};{}", &target["tcp://".len()..]);
        d.connect(&connect)
            .map_err(|e| PeerError::Socket(format!("connecting to {target}: {e}")))?;
        Ok(d)
    }
}

impl std::fmt::Debug for ZmqSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZmqSender")
            .field("peers", &self.dealers.len())
            .finish()
    }
}

impl PeerSend for ZmqSender {
    fn send(&self, to: u32, frame: &[u8]) -> Result<(), PeerError> {
        if frame.len() > MAX_FRAME {
            return Err(PeerError::TooLarge {
                size: frame.len(),
                limit: MAX_FRAME,
            });
        }
        let d = self
            .dealers
            .get(&to)
            .ok_or(PeerError::NoSuchNode { node: to })?
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        d.send(frame, zmq::DONTWAIT).map_err(|e| match e {
            zmq::Error::EAGAIN => PeerError::Unreachable { node: to },
            e => PeerError::Socket(format!("sending to node {to}: {e}")),
        })
    }

    /// A fresh DEALER in place of node `to`'s. libzmq gives up on a
    /// connection whose handshake the peer refused (a node that read
    /// another cluster key, since fixed and restarted): without this, the
    /// link would stay dead until this node restarts.
    fn reset(&self, to: u32) {
        let Some(slot) = self.dealers.get(&to) else {
            return;
        };
        match self.link.dealer(to) {
            Ok(d) => *slot.lock().unwrap_or_else(|e| e.into_inner()) = d,
            Err(e) => tracing::warn!(node = to, error = %e, "could not renew the link to a peer"),
        }
    }
}

impl PeerTransport for ZmqPeers {
    fn sender(&self) -> Arc<dyn PeerSend> {
        self.sender.clone()
    }

    fn recv(&mut self, timeout: Duration) -> Result<Option<Received>, PeerError> {
        let deadline = Instant::now() + timeout;
        loop {
            // A message already here is read without a poll: a poll is a
            // system call or two, and a frame of a busy link is usually
            // here by the time the peer thread looks.
            match self.read_one()? {
                Read::Frame(f) => return Ok(Some(f)),
                // A refused message: look for the next one, within the time
                // (a flood of them must not hold the peer thread).
                Read::Refused if Instant::now() < deadline => continue,
                Read::Refused => return Ok(None),
                Read::Empty => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            // Rounded up: a poll of 0 ms in a loop would spin.
            let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i64;
            let mut items = [
                self.router.as_poll_item(zmq::POLLIN),
                zmq::PollItem::from_fd(self.bell.fd(), zmq::POLLIN),
            ];
            zmq::poll(&mut items, ms).map_err(sock_err("polling the peer socket"))?;
            if !items[0].is_readable() && items[1].is_readable() {
                return Ok(None);
            }
        }
    }

    fn doorbell(&self) -> Arc<Doorbell> {
        self.bell.clone()
    }
}
