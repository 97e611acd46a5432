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
//! The two sides are threads of this process (two contexts: the I/O
//! threads and TCP connections are those of two processes).

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::cluster::{free_port_on, node_addr};
use crate::stats::ns_u32;

/// What a round trip moved and took.
#[derive(Debug)]
pub struct ZmqFloor {
    /// Each round trip, in order (ns).
    pub samples: Vec<u32>,
}

fn zerr(what: &str) -> impl FnOnce(zmq::Error) -> anyhow::Error + '_ {
    move |e| anyhow::anyhow!("ZeroMQ floor: {what}: {e}")
}

/// One side's sockets: a ROUTER bound on `127.0.0.{me}:{port}`, a DEALER
/// connected from that address to `127.0.0.{other}:{port}`.
struct Side {
    router: zmq::Socket,
    dealer: zmq::Socket,
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
    fn recv(&self, buf: &mut zmq::Message) -> Result<usize> {
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

/// Round trips of `request` bytes out and `reply` bytes back between two
/// endpoints (see the module doc): a warm-up, then `n` timed, stopping early
/// once `budget` has passed (at least 100 are timed).
pub fn ping_pong(request: usize, reply: usize, n: u64, budget: Duration) -> Result<ZmqFloor> {
    let port = free_port_on(2)?;
    let a = Side::bind(1, port)?;
    let b = Side::bind(2, port)?;
    a.connect(1, 2, port)?;
    b.connect(2, 1, port)?;
    std::thread::scope(|s| {
        let partner = s.spawn(move || -> Result<()> {
            let answer = vec![0x5a_u8; reply];
            let mut buf = zmq::Message::new();
            loop {
                let len = b.recv(&mut buf)?;
                if len == 0 {
                    return Ok(());
                }
                b.dealer.send(&answer[..], 0).map_err(zerr("answering"))?;
            }
        });
        let result = (|| -> Result<ZmqFloor> {
            let ask = vec![0xa5_u8; request.max(1)];
            let mut buf = zmq::Message::new();
            let mut round_trip = || -> Result<()> {
                a.dealer.send(&ask[..], 0).map_err(zerr("sending"))?;
                let len = a.recv(&mut buf)?;
                if len != reply {
                    bail!("ZeroMQ floor: the answer has {len} bytes, not {reply}");
                }
                Ok(())
            };
            for _ in 0..(n / 10).clamp(200, 5_000) {
                round_trip()?;
            }
            let mut samples = Vec::with_capacity(n as usize);
            let t = Instant::now();
            for i in 0..n {
                let t0 = Instant::now();
                round_trip()?;
                samples.push(ns_u32(t0.elapsed()));
                if i >= 100 && i % 64 == 0 && t.elapsed() > budget {
                    break;
                }
            }
            Ok(ZmqFloor { samples })
        })();
        // An empty message stops the partner.
        let stop = a
            .dealer
            .send(&[][..], 0)
            .context("stopping the ZeroMQ floor's partner");
        let joined = partner
            .join()
            .unwrap_or_else(|_| bail!("the ZeroMQ floor's partner panicked"));
        let floor = result?;
        stop?;
        joined?;
        Ok(floor)
    })
}
