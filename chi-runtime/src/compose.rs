//! The configuration's `compose` pools with `query: global`: pools over the
//! cluster made when the runtime starts.
//!
//! # Design
//!
//! The start never waits for other nodes. A runtime with a peer link hands
//! its global entries to a thread of their own, `chi-compose`
//! ([`spawn`]), which
//!
//! 1. waits until every node of the hostfile is up, and two heartbeats
//!    more (so that the authority sees them all too), at most [`FORM_WAIT`]
//!    (then it goes on with the nodes up: the placement deals the
//!    containers over them);
//! 2. asks the peer thread for each entry in turn as a GetOrCreatePool over
//!    the cluster ([`PoolAsker::ask`](crate::cluster::peer::PoolAsker::ask)):
//!    every node composing the same entry gets the same pool, made once by
//!    the authority, and registers its share;
//! 3. retries an ask that failed (authority down or silent, a node that
//!    could not create its share: the creation was rolled back) after a
//!    pause that doubles from [`RETRY_FIRST`] to [`RETRY_MAX`], until it
//!    succeeds or the runtime stops; successes are logged at `info`,
//!    failures at `warn` (the first, then every tenth).
//!
//! The thread checks the stop every 50 ms and ends with it (the runtime
//! joins it with its other threads). A runtime without a peer link (a
//! hostfile of one host) makes its global entries at start, every
//! container on this node ([`make_alone`]), like its local ones.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::cluster::membership::PeerState;
use crate::cluster::pools::{PoolAnswer, PoolAsk, PoolSpec};
use crate::config::PoolQuery;
use crate::state::NodeState;

/// Longest wait for every hostfile node to be up before composing.
pub const FORM_WAIT: Duration = Duration::from_secs(30);
/// The pause after a first failed ask.
pub const RETRY_FIRST: Duration = Duration::from_millis(200);
/// The longest pause between two asks.
pub const RETRY_MAX: Duration = Duration::from_secs(5);
/// How often the waits look at the stop.
const TICK: Duration = Duration::from_millis(50);

/// The asks of the global entries of `node`'s configuration (containers:
/// as configured, else one per hostfile node).
fn global_asks(node: &NodeState) -> Vec<PoolAsk> {
    let nodes = node.config.hosts.len().max(1) as u32;
    node.config
        .compose
        .iter()
        .filter(|p| p.query == PoolQuery::Global)
        .map(|p| PoolAsk {
            module: p.module.clone(),
            name: p.name.clone(),
            args: p.args.clone().unwrap_or_default(),
            containers: p.containers.unwrap_or(nodes),
            get_or_create: true,
        })
        .collect()
}

/// Makes the global entries of a runtime without a peer link, every
/// container here; the first failure names its entry.
pub fn make_alone(node: &NodeState) -> anyhow::Result<()> {
    for ask in global_asks(node) {
        let name = ask.name.clone();
        let id = crate::admin::alone(node, ask).map_err(|e| {
            anyhow::anyhow!("creating pool '{name}' of the config's compose list: {e}")
        })?;
        tracing::info!(pool = %id, name, "compose pool over the cluster (of one node) created");
    }
    Ok(())
}

/// Starts the `chi-compose` thread for the global entries of `node`, a
/// runtime with a peer link; `None` if it has none.
pub fn spawn(node: &Arc<NodeState>) -> std::io::Result<Option<JoinHandle<()>>> {
    let asks = global_asks(node);
    if asks.is_empty() || node.pool_asker.get().is_none() {
        return Ok(None);
    }
    let node = node.clone();
    std::thread::Builder::new()
        .name("chi-compose".into())
        .spawn(move || run(&node, asks))
        .map(Some)
}

fn run(node: &NodeState, asks: Vec<PoolAsk>) {
    wait_formed(node);
    for ask in asks {
        if !make(node, ask) {
            return;
        }
    }
}

/// Sleeps `d`, or less if the runtime stops; `false` if it stops.
fn pause(node: &NodeState, d: Duration) -> bool {
    let until = Instant::now() + d;
    while Instant::now() < until {
        if node.stopping() {
            return false;
        }
        std::thread::sleep(TICK.min(until.saturating_duration_since(Instant::now())));
    }
    !node.stopping()
}

/// Waits until every hostfile node is up, at most [`FORM_WAIT`].
fn wait_formed(node: &NodeState) {
    let Some(m) = node.membership.get() else {
        return;
    };
    let until = Instant::now() + FORM_WAIT;
    loop {
        let missing: Vec<u32> = (1..=m.len())
            .filter(|&n| n != m.me() && !matches!(m.state_of(n), Some((PeerState::Up, _))))
            .collect();
        if missing.is_empty() {
            // Two heartbeats more: the authority, which may have heard of
            // the last node later than this one, sees it up too.
            pause(node, node.config.cluster.heartbeat * 2);
            return;
        }
        if Instant::now() >= until {
            tracing::warn!(
                ?missing,
                waited = ?FORM_WAIT,
                "composing the pools over the cluster without the nodes not up (they get no \
                 containers of them)"
            );
            return;
        }
        if !pause(node, TICK) {
            return;
        }
    }
}

/// The answer on `rx`, waited for at most `limit`, or less if the runtime
/// stops.
fn wait_answer(node: &NodeState, rx: &Receiver<PoolAnswer>, limit: Duration) -> PoolAnswer {
    let until = Instant::now() + limit;
    loop {
        match rx.recv_timeout(TICK) {
            Ok(a) => return a,
            Err(RecvTimeoutError::Disconnected) => {
                return Err("the runtime is stopping; its peer link is closed".into());
            }
            Err(RecvTimeoutError::Timeout) if node.stopping() => {
                return Err("the runtime is stopping".into());
            }
            Err(RecvTimeoutError::Timeout) if Instant::now() >= until => {
                return Err(format!("no answer from the peer link within {limit:?}"));
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
    }
}

/// Asks for `ask` until it is made; `false` if the runtime stops first.
fn make(node: &NodeState, ask: PoolAsk) -> bool {
    let Some(asker) = node.pool_asker.get().cloned() else {
        return false;
    };
    let limit = node.config.cluster.task_timeout * 2 + Duration::from_secs(1);
    let mut wait = RETRY_FIRST;
    let mut attempt = 0u32;
    loop {
        attempt = attempt.saturating_add(1);
        if node.stopping() {
            return false;
        }
        let answer: Result<PoolSpec, String> = asker
            .ask(ask.clone())
            .and_then(|rx| wait_answer(node, &rx, limit));
        match answer {
            Ok(spec) => {
                let here = spec.nodes.iter().filter(|&&n| n == node.node_id).count();
                tracing::info!(
                    pool = spec.id,
                    name = %spec.name,
                    containers = spec.nodes.len(),
                    containers_here = here,
                    attempt,
                    "compose pool over the cluster ready"
                );
                return true;
            }
            Err(e) => {
                if attempt == 1 || attempt.is_multiple_of(10) {
                    tracing::warn!(
                        name = %ask.name,
                        attempt,
                        retry_in = ?wait,
                        "compose pool over the cluster not made yet: {e}"
                    );
                } else {
                    tracing::debug!(name = %ask.name, attempt, "compose pool not made yet: {e}");
                }
                if !pause(node, wait) {
                    return false;
                }
                wait = (wait * 2).min(RETRY_MAX);
            }
        }
    }
}
