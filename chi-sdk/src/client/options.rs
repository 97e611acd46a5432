//! How a client finds its runtime.

use std::time::Duration;

use crate::proto;

/// How to find the runtime.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Address of the runtime's loopback socket.
    pub addr: String,
    /// Its port.
    pub port: u16,
    /// How long to wait for the registration reply.
    pub connect_timeout: Duration,
    /// How long to spin on a task before sleeping: the first
    /// [`SPIN_YIELD_AFTER`](super::SPIN_YIELD_AFTER) poll only, the rest
    /// yields the CPU between polls.
    pub spin: Duration,
    /// How long to spin on a task the runtime sent to another node
    /// ([`state::REMOTE`](crate::task::state::REMOTE)) before sleeping, if
    /// longer than `spin`: its answer comes a network round trip later,
    /// and a sleeping client's wake-up would add to it. The runtime's
    /// workers poll as long after remote work (three times
    /// `idle.busy_poll`). Only while the waiting thread holds no other
    /// [`Pending`](super::Pending) task: a thread with many in flight
    /// spins `spin`, as on any task.
    pub remote_spin: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            addr: "127.0.0.1".into(),
            port: proto::DEFAULT_PORT,
            connect_timeout: Duration::from_secs(5),
            spin: Duration::from_micros(50),
            remote_spin: Duration::from_micros(300),
        }
    }
}

impl ClientOptions {
    /// Options from the environment: `CHI_PORT` and `CHI_ADDR` if set, otherwise
    /// the `port` key of the file named by `CHI_SERVER_CONF`, otherwise defaults.
    pub fn from_env() -> ClientOptions {
        let mut o = ClientOptions::default();
        if let Some(port) = std::env::var("CHI_PORT")
            .ok()
            .and_then(|p| p.trim().parse().ok())
        {
            o.port = port;
        } else if let Some(port) = std::env::var("CHI_SERVER_CONF")
            .ok()
            .and_then(|f| port_from_config(&f))
        {
            o.port = port;
        }
        if let Ok(addr) = std::env::var("CHI_ADDR") {
            o.addr = addr;
        }
        o
    }
}

/// The top-level `port:` key of a server config file, if readable.
fn port_from_config(path: &str) -> Option<u16> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let rest = l.strip_prefix("port:")?;
        rest.split('#').next()?.trim().parse().ok()
    })
}
