//! Membership: what this runtime knows of each node of the hostfile.
//!
//! # States
//!
//! Each peer is [`PeerState::Unknown`] until its first frame, then
//! [`PeerState::Up`] while frames keep coming, and [`PeerState::Down`] once
//! `cluster.peer_timeout` has passed without one (or at once on its
//! `Goodbye`). Any frame from a down peer brings it back up.
//!
//! # Incarnations
//!
//! Every runtime has an incarnation: its start time in microseconds since the
//! Unix epoch, carried in every frame it sends. A restarted node has a larger
//! one. A frame of an older incarnation than the one known is stale: it
//! is no sign of life ([`Membership::heard`] says so), and its records are
//! dropped (`peer/frames.rs`); a larger one while the peer is up means it restarted between two
//! heartbeats: the old incarnation goes down and the new one comes up. (This
//! assumes a node's clock does not step back by more than its restart takes:
//! a restarted runtime whose clock did would be ignored as stale until the
//! clock passed its old incarnation.)
//!
//! # Events
//!
//! Every transition is a [`PeerEvent`] handed to the listeners registered with
//! [`Membership::subscribe`], after the table's lock is released, on the
//! thread that noticed it (the peer thread). The peer thread's listener
//! fails the remote tasks sent to a node that went down (or restarted: the
//! new run never heard of them) and tells a node that came back the pools
//! (`peer/records.rs`, `take_joined`).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chi_sdk::proto::PeerStatus;

/// What this runtime believes of a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    /// Nothing heard from it yet.
    Unknown,
    /// Frames come in.
    Up,
    /// Silent for longer than the timeout, or said goodbye.
    Down,
}

impl PeerState {
    /// Its name in `status`.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerState::Unknown => "unknown",
            PeerState::Up => "up",
            PeerState::Down => "down",
        }
    }
}

/// A change of a peer's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerEvent {
    /// Node `node` is up as `incarnation`; `rejoined` if an earlier
    /// incarnation of it was known (it restarted).
    Up {
        /// The node.
        node: u32,
        /// Its incarnation.
        incarnation: u64,
        /// Whether an earlier incarnation was known.
        rejoined: bool,
    },
    /// Node `node` (as `incarnation`) is down.
    Down {
        /// The node.
        node: u32,
        /// The incarnation that went down.
        incarnation: u64,
        /// Why: it said goodbye, it timed out, or it restarted.
        why: DownReason,
    },
}

/// Why a peer went down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownReason {
    /// No frame within the peer timeout.
    Timeout,
    /// It said it was stopping.
    Goodbye,
    /// A new incarnation of it spoke.
    Restarted,
}

/// One node of the table.
#[derive(Debug, Clone)]
struct Peer {
    /// The hostfile entry.
    host: String,
    /// Its address.
    ip: IpAddr,
    state: PeerState,
    incarnation: Option<u64>,
    last_heard: Option<Instant>,
}

type Listener = Box<dyn Fn(&PeerEvent) + Send + Sync>;

/// The membership table of one runtime.
pub struct Membership {
    me: u32,
    incarnation: u64,
    timeout: Duration,
    /// Index `node - 1`; this node's own entry is never changed.
    peers: Mutex<Vec<Peer>>,
    listeners: Mutex<Vec<Listener>>,
    /// Frames refused as malformed or not from a peer (a statistic: Relaxed,
    /// nothing is ordered by it).
    refused: AtomicU64,
    /// Connections the peer socket refused for not presenting the cluster
    /// key: the transport's counter, once it is bound.
    connections_refused: std::sync::OnceLock<Arc<AtomicU64>>,
    /// What the peer link moved.
    traffic: super::traffic::Traffic,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("me", &self.me)
            .field("incarnation", &self.incarnation)
            .finish()
    }
}

impl Membership {
    /// The table of the cluster `hosts` (hostfile entry, address; node id =
    /// index + 1) seen from node `me` of incarnation `incarnation`; peers are
    /// down after `timeout` without a frame.
    pub fn new(
        me: u32,
        incarnation: u64,
        hosts: &[(String, IpAddr)],
        timeout: Duration,
    ) -> Membership {
        Membership {
            me,
            incarnation,
            timeout,
            peers: Mutex::new(
                hosts
                    .iter()
                    .map(|(host, ip)| Peer {
                        host: host.clone(),
                        ip: *ip,
                        state: PeerState::Unknown,
                        incarnation: None,
                        last_heard: None,
                    })
                    .collect(),
            ),
            listeners: Mutex::new(Vec::new()),
            refused: AtomicU64::new(0),
            connections_refused: std::sync::OnceLock::new(),
            traffic: super::traffic::Traffic::default(),
        }
    }

    /// This node's id.
    pub fn me(&self) -> u32 {
        self.me
    }

    /// This runtime's incarnation.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// How long a peer may stay silent before it is down
    /// (`cluster.peer_timeout`).
    pub fn peer_timeout(&self) -> Duration {
        self.timeout
    }

    /// Number of nodes, this one included.
    pub fn len(&self) -> u32 {
        self.lock().len() as u32
    }

    /// Whether the table is empty (never: this node is in it).
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// The other nodes' ids and addresses.
    pub fn peers(&self) -> Vec<(u32, IpAddr)> {
        self.lock()
            .iter()
            .enumerate()
            .map(|(i, p)| (i as u32 + 1, p.ip))
            .filter(|&(id, _)| id != self.me)
            .collect()
    }

    /// The address of node `node`.
    pub fn address_of(&self, node: u32) -> Option<IpAddr> {
        let peers = self.lock();
        peers.get(node.checked_sub(1)? as usize).map(|p| p.ip)
    }

    /// Calls `f` with every later state change.
    pub fn subscribe(&self, f: impl Fn(&PeerEvent) + Send + Sync + 'static) {
        self.listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Box::new(f));
    }

    /// Counts a refused frame.
    pub fn note_refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Frames refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Shows `counter` (the peer socket's refused connections) in
    /// [`connections_refused`](Self::connections_refused); the first one
    /// given stays.
    pub fn count_refused_connections(&self, counter: Arc<AtomicU64>) {
        let _ = self.connections_refused.set(counter);
    }

    /// Connections refused so far for not presenting the cluster key.
    pub fn connections_refused(&self) -> u64 {
        // Relaxed: a statistic; the authenticator increments it Relaxed.
        self.connections_refused
            .get()
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// The peer link's traffic counters (written by the peer thread).
    pub fn traffic(&self) -> &super::traffic::Traffic {
        &self.traffic
    }

    /// The state of `node` and how long ago it was last heard from.
    pub fn state_of(&self, node: u32) -> Option<(PeerState, Option<Duration>)> {
        let peers = self.lock();
        let p = peers.get(node.checked_sub(1)? as usize)?;
        Some((p.state, p.last_heard.map(|t| t.elapsed())))
    }

    /// The run (incarnation) `node` is up as; else its state (`None`: not
    /// a peer), read under one lock with it.
    pub fn up_as(&self, node: u32) -> Result<u64, Option<PeerState>> {
        let peers = self.lock();
        let p = node
            .checked_sub(1)
            .and_then(|i| peers.get(i as usize))
            .ok_or(None)?;
        match (p.state, p.incarnation) {
            (PeerState::Up, Some(run)) => Ok(run),
            (state, _) => Err(Some(state)),
        }
    }

    /// A frame from `node` of `incarnation` arrived at `now`. Returns whether
    /// it is current (false: a stale incarnation, or not a peer).
    pub fn heard(&self, node: u32, incarnation: u64, now: Instant) -> bool {
        let mut events = Vec::new();
        let current = {
            let mut peers = self.lock();
            let Some(p) = self.peer_mut(&mut peers, node) else {
                return false;
            };
            match p.incarnation {
                Some(known) if incarnation < known => false,
                known => {
                    if known.is_some_and(|k| k != incarnation) && p.state == PeerState::Up {
                        events.push(PeerEvent::Down {
                            node,
                            incarnation: known.unwrap_or(0),
                            why: DownReason::Restarted,
                        });
                        p.state = PeerState::Down;
                    }
                    if p.state != PeerState::Up {
                        events.push(PeerEvent::Up {
                            node,
                            incarnation,
                            rejoined: known.is_some(),
                        });
                    }
                    p.state = PeerState::Up;
                    p.incarnation = Some(incarnation);
                    p.last_heard = Some(now);
                    true
                }
            }
        };
        self.emit(&events);
        current
    }

    /// As [`heard`](Self::heard), for a frame that changes nothing else:
    /// `node` is up as `incarnation` already, and its last frame is now
    /// `now`. `false` (and nothing changed) for any other node or
    /// incarnation: the frame is then the peer thread's to handle
    /// ([`super::intake`]).
    pub fn heard_if_up(&self, node: u32, incarnation: u64, now: Instant) -> bool {
        let mut peers = self.lock();
        match self.peer_mut(&mut peers, node) {
            Some(p) if p.state == PeerState::Up && p.incarnation == Some(incarnation) => {
                p.last_heard = Some(now);
                true
            }
            _ => false,
        }
    }

    /// `node` said it is stopping.
    pub fn goodbye(&self, node: u32, incarnation: u64) {
        let mut events = Vec::new();
        {
            let mut peers = self.lock();
            if let Some(p) = self.peer_mut(&mut peers, node)
                && p.state == PeerState::Up
                && p.incarnation == Some(incarnation)
            {
                p.state = PeerState::Down;
                events.push(PeerEvent::Down {
                    node,
                    incarnation,
                    why: DownReason::Goodbye,
                });
            }
        }
        self.emit(&events);
    }

    /// Marks down the peers not heard from within the timeout before `now`.
    pub fn expire(&self, now: Instant) {
        let mut events = Vec::new();
        {
            let mut peers = self.lock();
            for (i, p) in peers.iter_mut().enumerate() {
                if p.state == PeerState::Up
                    && p.last_heard
                        .is_some_and(|t| now.saturating_duration_since(t) > self.timeout)
                {
                    p.state = PeerState::Down;
                    events.push(PeerEvent::Down {
                        node: i as u32 + 1,
                        incarnation: p.incarnation.unwrap_or(0),
                        why: DownReason::Timeout,
                    });
                }
            }
        }
        self.emit(&events);
    }

    /// The table for `status`, this node included.
    pub fn snapshot(&self) -> Vec<PeerStatus> {
        let peers = self.lock();
        peers
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let id = i as u32 + 1;
                let mine = id == self.me;
                PeerStatus {
                    node_id: id,
                    host: p.host.clone(),
                    address: p.ip.to_string(),
                    state: if mine { "self" } else { p.state.as_str() }.into(),
                    incarnation: if mine {
                        self.incarnation
                    } else {
                        p.incarnation.unwrap_or(0)
                    },
                    last_heartbeat_ms: if mine {
                        None
                    } else {
                        p.last_heard.map(|t| t.elapsed().as_millis() as u64)
                    },
                }
            })
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Peer>> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn peer_mut<'p>(&self, peers: &'p mut [Peer], node: u32) -> Option<&'p mut Peer> {
        if node == self.me {
            return None;
        }
        peers.get_mut(node.checked_sub(1)? as usize)
    }

    fn emit(&self, events: &[PeerEvent]) {
        if events.is_empty() {
            return;
        }
        for e in events {
            match *e {
                PeerEvent::Up {
                    node,
                    incarnation,
                    rejoined,
                } => tracing::info!(node, incarnation, rejoined, "peer up"),
                PeerEvent::Down {
                    node,
                    incarnation,
                    why,
                } => tracing::warn!(node, incarnation, ?why, "peer down"),
            }
        }
        let listeners = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        for e in events {
            for l in listeners.iter() {
                l(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn table() -> (Membership, Arc<Mutex<Vec<PeerEvent>>>) {
        let hosts: Vec<(String, IpAddr)> = (1..=3)
            .map(|i| (format!("n{i}"), format!("127.0.0.{i}").parse().unwrap()))
            .collect();
        let m = Membership::new(1, 10, &hosts, Duration::from_secs(1));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        m.subscribe(move |e| s.lock().unwrap().push(*e));
        (m, seen)
    }

    #[test]
    fn up_down_rejoin_with_events() {
        let (m, seen) = table();
        let t0 = Instant::now();
        assert_eq!(m.peers().len(), 2);
        assert!(m.heard(2, 100, t0));
        assert!(m.heard(2, 100, t0));
        assert_eq!(m.state_of(2).unwrap().0, PeerState::Up);
        assert_eq!(m.state_of(3).unwrap().0, PeerState::Unknown);
        m.expire(t0 + Duration::from_millis(500));
        assert_eq!(m.state_of(2).unwrap().0, PeerState::Up);
        m.expire(t0 + Duration::from_secs(2));
        assert_eq!(m.state_of(2).unwrap().0, PeerState::Down);
        // A stale frame of the old incarnation does not bring it back.
        assert!(m.heard(2, 100, t0 + Duration::from_secs(2)));
        assert!(!m.heard(2, 99, t0 + Duration::from_secs(2)));
        m.expire(t0 + Duration::from_secs(4));
        assert!(m.heard(2, 200, t0 + Duration::from_secs(4)));
        let e = seen.lock().unwrap().clone();
        assert_eq!(
            e,
            vec![
                PeerEvent::Up {
                    node: 2,
                    incarnation: 100,
                    rejoined: false
                },
                PeerEvent::Down {
                    node: 2,
                    incarnation: 100,
                    why: DownReason::Timeout
                },
                PeerEvent::Up {
                    node: 2,
                    incarnation: 100,
                    rejoined: true
                },
                PeerEvent::Down {
                    node: 2,
                    incarnation: 100,
                    why: DownReason::Timeout
                },
                PeerEvent::Up {
                    node: 2,
                    incarnation: 200,
                    rejoined: true
                },
            ]
        );
    }

    #[test]
    fn restart_between_heartbeats_and_goodbye() {
        let (m, seen) = table();
        let t0 = Instant::now();
        m.heard(3, 5, t0);
        m.heard(3, 6, t0);
        m.goodbye(3, 5); // an old incarnation's goodbye: ignored
        assert_eq!(m.state_of(3).unwrap().0, PeerState::Up);
        m.goodbye(3, 6);
        assert_eq!(m.state_of(3).unwrap().0, PeerState::Down);
        let e = seen.lock().unwrap().clone();
        assert_eq!(e.len(), 4);
        assert_eq!(
            e[1],
            PeerEvent::Down {
                node: 3,
                incarnation: 5,
                why: DownReason::Restarted
            }
        );
        assert_eq!(
            e[3],
            PeerEvent::Down {
                node: 3,
                incarnation: 6,
                why: DownReason::Goodbye
            }
        );
    }

    #[test]
    fn self_and_strangers_are_not_peers() {
        let (m, seen) = table();
        assert!(!m.heard(1, 5, Instant::now()));
        assert!(!m.heard(0, 5, Instant::now()));
        assert!(!m.heard(4, 5, Instant::now()));
        assert!(seen.lock().unwrap().is_empty());
        let snap = m.snapshot();
        assert_eq!(snap.len(), 3);
        assert_eq!(snap[0].state, "self");
        assert_eq!(snap[0].incarnation, 10);
        assert_eq!(snap[1].state, "unknown");
    }
}
