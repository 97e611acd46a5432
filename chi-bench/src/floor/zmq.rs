//! The floor of the `remote` workload: a raw ZeroMQ round trip between two
//! endpoints of this machine, with the sockets and message sizes of the
//! runtimes' peer link.
//!
//! Each side is what a runtime's peer link is: its own ZeroMQ context (its
//! own I/O thread), a ROUTER bound on its address that receives, and a
//! DEALER connected from its address to the other side's ROUTER that sends
//! (side A on 127.0.0.1, side B on 127.0.0.2, as nodes 1 and 2 of a local
//! cluster). A sends a request of `request` bytes on its DEALER; B's thread,
//! blocked in a receive on its ROUTER, answers with `reply` bytes on its
//! DEALER; A's thread, blocked in a receive on its ROUTER, gets it. Both
//! sides sleep in ZeroMQ's receive (as the peer threads sleep in its poll),
//! neither spins. Each round trip is timed like the remote echo's.
//!
//! Side B is a thread of this process, side A the caller's thread (two
//! contexts: the I/O threads and TCP connections are those of two
//! processes). The pair stays up between blocks of round trips
//! ([`ZmqPingPong::round_trips`]), so that the workload can interleave them
//! with its remote round trips: the machine's drift then affects both alike.

use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::{Result, bail};

use crate::cluster::{free_port_on, node_addr};
use crate::stats::ns_u32;

pub(super) fn zerr(what: &str) -> impl FnOnce(zmq::Error) -> anyhow::Error + '_ {
    move |e| anyhow::anyhow!("ZeroMQ floor: {what}: {e}")
}

/// One side's sockets: a ROUTER bound on `127.0.0.{me}:{port}`, a DEALER
/// connected from that address to `127.0.0.{other}:{port}`.
pub(super) struct Side {
    pub(super) router: zmq::Socket,
    pub(super) dealer: zmq::Socket,
    _ctx: zmq::Context,
}

impl Side {
    fn bind(me: u32, port: u16) -> Result<Side> {
        let ctx = zmq::Context::new();
        let router = ctx.socket(zmq::ROUTER).map_err(zerr("ROUTER"))?;
        router.set_linger(0).map_err(zerr("ZMQ_LINGER"))?;
        // A stalled partner fails the measurement instead of hanging it.
        router.set_rcvtimeo(5000).map_err(zerr("ZMQ_RCVTIMEO"))?;
        router
            .bind(&format!("tcp://{}:{port}", node_addr(me)))
            .map_err(zerr("binding the ROUTER"))?;
        let dealer = ctx.socket(zmq::DEALER).map_err(zerr("DEALER"))?;
        dealer.set_linger(0).map_err(zerr("ZMQ_LINGER"))?;
        dealer.set_sndtimeo(5000).map_err(zerr("ZMQ_SNDTIMEO"))?;
        dealer
            .set_identity(format!("node-{me}").as_bytes())
            .map_err(zerr("ZMQ_ROUTING_ID"))?;
        Ok(Side {
            router,
            dealer,
            _ctx: ctx,
        })
    }

    /// Side A on 127.0.0.1 and side B on 127.0.0.2, on a port free on
    /// both, each connected to the other.
    pub(super) fn pair() -> Result<(Side, Side)> {
        let port = free_port_on(2)?;
        let a = Side::bind(1, port)?;
        let b = Side::bind(2, port)?;
        a.connect(1, 2, port)?;
        b.connect(2, 1, port)?;
        Ok((a, b))
    }

    fn connect(&self, me: u32, other: u32, port: u16) -> Result<()> {
        self.dealer
            .connect(&format!(
                "tcp://{}:0;{}:{port}",
                node_addr(me),
                node_addr(other)
            ))
            .map_err(zerr("connecting the DEALER"))
    }

    /// Receives one message on the ROUTER: its body's length.
    pub(super) fn recv(&self, buf: &mut zmq::Message) -> Result<usize> {
        self.router
            .recv(buf, 0)
            .map_err(zerr("receiving (the other side stopped answering?)"))?;
        if !self.router.get_rcvmore().map_err(zerr("ZMQ_RCVMORE"))? {
            bail!("ZeroMQ floor: a message without a body");
        }
        self.router.recv(buf, 0).map_err(zerr("receiving"))?;
        Ok(buf.len())
    }
}

/// The two endpoints, up (see the module doc); dropping it stops side B.
pub struct ZmqPingPong {
    a: Side,
    ask: Vec<u8>,
    reply: usize,
    buf: zmq::Message,
    partner: Option<JoinHandle<Result<()>>>,
}

impl std::fmt::Debug for ZmqPingPong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZmqPingPong")
            .field("request", &self.ask.len())
            .field("reply", &self.reply)
            .finish()
    }
}

impl ZmqPingPong {
    /// Sets up the pair for requests of `request` bytes and replies of
    /// `reply`, and warms it up.
    pub fn start(request: usize, reply: usize) -> Result<ZmqPingPong> {
        let (a, b) = Side::pair()?;
        let partner =
            std::thread::Builder::new()
                .name("zmq-floor".into())
                .spawn(move || -> Result<()> {
                    let answer = vec![0x5a_u8; reply.max(1)];
                    let mut buf = zmq::Message::new();
                    loop {
                        if b.recv(&mut buf)? == 0 {
                            return Ok(());
                        }
                        b.dealer.send(&answer[..], 0).map_err(zerr("answering"))?;
                    }
                })?;
        let mut p = ZmqPingPong {
            a,
            ask: vec![0xa5_u8; request.max(1)],
            reply: reply.max(1),
            buf: zmq::Message::new(),
            partner: Some(partner),
        };
        p.round_trips(2_000)?;
        Ok(p)
    }

    fn round_trip(&mut self) -> Result<()> {
        self.a
            .dealer
            .send(&self.ask[..], 0)
            .map_err(zerr("sending"))?;
        let len = self.a.recv(&mut self.buf)?;
        if len != self.reply {
            bail!(
                "ZeroMQ floor: the answer has {len} bytes, not {}",
                self.reply
            );
        }
        Ok(())
    }

    /// `n` round trips, each timed (ns).
    pub fn round_trips(&mut self, n: u64) -> Result<Vec<u32>> {
        let mut samples = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let t = Instant::now();
            self.round_trip()?;
            samples.push(ns_u32(t.elapsed()));
        }
        Ok(samples)
    }

    /// Stops side B; its error, if it failed.
    pub fn stop(mut self) -> Result<()> {
        self.halt()
    }

    fn halt(&mut self) -> Result<()> {
        let Some(h) = self.partner.take() else {
            return Ok(());
        };
        // An empty message stops the partner.
        self.a
            .dealer
            .send(&[][..], 0)
            .map_err(zerr("stopping the partner"))?;
        h.join()
            .unwrap_or_else(|_| bail!("the ZeroMQ floor's partner panicked"))
    }
}

impl Drop for ZmqPingPong {
    fn drop(&mut self) {
        let _ = self.halt();
    }
}
