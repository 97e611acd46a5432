//! `remote`: tasks between runtimes of a local cluster (nodes on 127.0.0.1,
//! .2, .3 of this machine), beside a raw ZeroMQ round trip of the same
//! message sizes measured in the same run ([`crate::floor::zmq`]).
//!
//! * **Two nodes**, a pool of the `mod_name` example module over the
//!   cluster with one container on each (container 0 on node 1, 1 on node
//!   2). A client of node 1 sends empty Echo tasks to container 1: each goes
//!   to node 1's runtime, over the peer link to node 2, runs there and comes
//!   back. Synchronous round trips, each timed (median, p99, ratio to the
//!   floor); the same Echo to container 0 (on node 1: no peer link) for
//!   reference; then pipelined Echoes, `--window` in flight per client
//!   thread, 1 and 2 threads (tasks/s).
//! * **The floor**: node 1's peer traffic counters (`status`, around a
//!   warm-up of remote round trips) give the size of a round trip's request
//!   and reply frames; a ZeroMQ ROUTER/DEALER ping-pong of those sizes
//!   between 127.0.0.1 and 127.0.0.2 is timed the same way, in blocks of
//!   [`BLOCK`] alternating with blocks of the remote round trips (so the
//!   machine's drift, large on a shared machine, affects both alike).
//! * **The path's floor** ([`crate::floor::zmq_relay`]): the same ping-pong
//!   behind a shared-memory hop at node 1's end, every thread polling, in
//!   the same interleaving: the shape of a remote task's path with none of
//!   the runtime's work. The remote echo over it is what the runtime's own
//!   work and threads cost.
//! * **Three nodes**, a pool with a container on each: a broadcast Echo
//!   from node 1 runs on all three and completes once all have answered
//!   (median, p99).
//!
//! Every phase stops at its count or its time budget, whichever comes first
//! (the counts done are in the JSON details), so that `--quick` stays short
//! whatever the round trip costs.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chi_sdk::admin::AdminClient;
use chi_sdk::client::{Client, Pending};
use chi_sdk::proto::PeerTraffic;
use chi_sdk::queue::Priority;
use chi_sdk::types::{DomainQuery, PoolId};
use chimaera_mod_name_runtime::{CHIMOD_LIB_NAME, EchoTask};
use serde::Serialize;

use crate::Ctx;
use crate::cluster::LocalCluster;
use crate::floor::zmq::ZmqPingPong;
use crate::floor::zmq_relay::ZmqRelay;
use crate::report::{Base, Series, Target, Unit};
use crate::runtime::{module_path_yaml, runtime_exe};
use crate::stats::{self, Summary, ns_u32};

const W: &str = "remote";

/// Round trips per block of the interleaved measurement.
const BLOCK: u64 = 200;

/// Counts and time budgets of the phases.
#[derive(Debug, Clone, Copy, Serialize)]
struct Plan {
    round_trips: u64,
    pipelined: u64,
    broadcasts: u64,
    budget_ms: u64,
}

impl Plan {
    fn of(ctx: &Ctx) -> Plan {
        let n = ctx.opts.iters();
        if ctx.opts.quick {
            Plan {
                round_trips: n.min(2_000),
                pipelined: (4 * n).min(20_000),
                broadcasts: n.min(500),
                budget_ms: 1_500,
            }
        } else {
            Plan {
                round_trips: (n / 10).clamp(1_000, 100_000),
                pipelined: (2 * n).clamp(10_000, 2_000_000),
                broadcasts: (n / 50).clamp(500, 20_000),
                budget_ms: 15_000,
            }
        }
    }

    fn budget(&self) -> Duration {
        Duration::from_millis(self.budget_ms)
    }
}

/// One pipelined sweep point.
#[derive(Debug, Serialize)]
struct Rate {
    threads: usize,
    window: usize,
    tasks: u64,
    per_sec: f64,
}

/// What the JSON details hold.
#[derive(Debug, Serialize)]
struct Details {
    plan: Plan,
    request_frame_bytes: f64,
    reply_frame_bytes: f64,
    remote_ns: Summary,
    local_container_ns: Summary,
    zmq_floor_ns: Summary,
    relay_floor_ns: Summary,
    remote_over_floor_median: f64,
    remote_over_relay_floor_median: f64,
    pipelined: Vec<Rate>,
    broadcast_3_nodes_ns: Summary,
}

/// One synchronous Echo to `q`, checked and timed (ns).
fn echo(client: &Client, pool: PoolId, q: DomainQuery, v: u64) -> Result<u32> {
    let t = Instant::now();
    let r = client
        .submit(EchoTask::new(pool, q, v), Priority::LowLatency)?
        .wait_with(|t| t.reply)?;
    let ns = ns_u32(t.elapsed());
    if r != v {
        bail!("a remote Echo answered {r} for {v}");
    }
    Ok(ns)
}

/// Untimed Echoes to `q`: a warm-up of up to `n`, at most `budget` long.
fn warm_up(client: &Client, pool: PoolId, q: DomainQuery, n: u64, budget: Duration) -> Result<()> {
    let t = Instant::now();
    for i in 0..n {
        echo(client, pool, q, i)?;
        if i >= 20 && t.elapsed() > budget {
            break;
        }
    }
    Ok(())
}

/// Timed Echoes to `q`: up to `n`, stopping after `budget` (at least 100),
/// after a warm-up.
fn timed(
    client: &Client,
    pool: PoolId,
    q: DomainQuery,
    n: u64,
    budget: Duration,
) -> Result<Vec<u32>> {
    warm_up(client, pool, q, (n / 10).clamp(50, 1_000), budget / 4)?;
    let mut samples = Vec::with_capacity(n as usize);
    let t = Instant::now();
    for i in 0..n {
        samples.push(echo(client, pool, q, 1_000_000 + i)?);
        if i >= 100 && t.elapsed() > budget {
            break;
        }
    }
    Ok(samples)
}

/// Samples of the three interleaved measurements.
struct Interleaved {
    remote: Vec<u32>,
    zmq: Vec<u32>,
    relay: Vec<u32>,
}

/// Round trips in blocks of [`BLOCK`], alternating remote Echoes to `q`,
/// the ZeroMQ floor and the relayed floor, up to `n` each or until `budget`
/// has passed (at least one block each): the machine's drift affects all
/// alike.
fn interleaved(
    client: &Client,
    pool: PoolId,
    q: DomainQuery,
    (floor, relay): (&mut ZmqPingPong, &mut ZmqRelay),
    n: u64,
    budget: Duration,
) -> Result<Interleaved> {
    let mut remote = Vec::with_capacity(n as usize);
    let mut zmq = Vec::with_capacity(n as usize);
    let mut relayed = Vec::with_capacity(n as usize);
    let t = Instant::now();
    let mut v = 1_000_000;
    while (remote.len() as u64) < n {
        let k = BLOCK.min(n - remote.len() as u64);
        for _ in 0..k {
            remote.push(echo(client, pool, q, v)?);
            v += 1;
        }
        zmq.extend(floor.round_trips(k)?);
        relayed.extend(relay.round_trips(k)?);
        if t.elapsed() > budget {
            break;
        }
    }
    Ok(Interleaved {
        remote,
        zmq,
        relay: relayed,
    })
}

/// Pipelined Echoes to `q` from `threads` threads of `client`, `window` in
/// flight each, `n` in all (or until `budget`): tasks/s of all together.
fn pipelined(
    client: &Client,
    pool: PoolId,
    q: DomainQuery,
    threads: usize,
    window: usize,
    n: u64,
    budget: Duration,
) -> Result<(u64, f64)> {
    let per = (n / threads as u64).max(window as u64);
    let t = Instant::now();
    let done = std::thread::scope(|s| -> Result<u64> {
        let handles: Vec<_> = (0..threads)
            .map(|k| {
                s.spawn(move || -> Result<u64> {
                    let base = (k as u64) << 40;
                    let mut inflight: VecDeque<(u64, Pending<'_, EchoTask>)> =
                        VecDeque::with_capacity(window);
                    let (mut done, mut next, mut sending) = (0u64, 0u64, true);
                    loop {
                        while sending && next < per && inflight.len() < window {
                            let v = base + next;
                            inflight.push_back((
                                v,
                                client.submit(EchoTask::new(pool, q, v), Priority::LowLatency)?,
                            ));
                            next += 1;
                            // Out of time: stop sending, drain what is out.
                            sending = !(next % 256 == 0 && t.elapsed() > budget);
                        }
                        let Some((v, p)) = inflight.pop_front() else {
                            break;
                        };
                        let r = p.wait_with(|t| t.reply)?;
                        if r != v {
                            bail!("a remote Echo answered {r} for {v}");
                        }
                        done += 1;
                    }
                    Ok(done)
                })
            })
            .collect();
        let mut all = 0;
        for h in handles {
            all += h
                .join()
                .unwrap_or_else(|_| bail!("a client thread panicked"))?;
        }
        Ok(all)
    })?;
    Ok((done, done as f64 / t.elapsed().as_secs_f64()))
}

/// `after - before` per frame: the mean size of the batch frames sent and
/// received by node 1 between two snapshots.
fn frame_sizes(before: &PeerTraffic, after: &PeerTraffic) -> Option<(f64, f64)> {
    let out = after.batches_out.checked_sub(before.batches_out)?;
    let inn = after.batches_in.checked_sub(before.batches_in)?;
    if out == 0 || inn == 0 {
        return None;
    }
    Some((
        (after.batch_bytes_out - before.batch_bytes_out) as f64 / out as f64,
        (after.batch_bytes_in - before.batch_bytes_in) as f64 / inn as f64,
    ))
}

/// A pool of `mod_name` over the cluster with `containers` containers.
fn cluster_pool(client: &Client, containers: u32) -> Result<PoolId> {
    AdminClient::new(client)
        .create_cluster_pool(CHIMOD_LIB_NAME, "bench_remote", "", containers)
        .with_context(|| {
            format!(
                "creating a pool of {CHIMOD_LIB_NAME} over the cluster (build the module with \
                 `cargo build --release -p mod_name`)"
            )
        })
}

/// Measures and records.
pub fn run(ctx: &mut Ctx) -> Result<()> {
    let plan = Plan::of(ctx);
    let exe = runtime_exe(ctx.opts.runtime.as_deref())?;
    let workers = ctx.opts.workers.max(1);
    let window = ctx.opts.window;
    let modules = module_path_yaml();
    let bar = ctx.progress.bar(5, "remote: two and three runtimes");

    // Two nodes: frame sizes (from a warm-up), round trips interleaved
    // with the floor's, pipelined.
    let two = LocalCluster::start(&exe, 2, workers, &modules)?;
    let c1 = two.client(1)?;
    let pool = cluster_pool(&c1, 2)?;
    let local = timed(
        &c1,
        pool,
        DomainQuery::global_id(0),
        plan.round_trips,
        plan.budget() / 4,
    )?;
    let remote_q = DomainQuery::global_id(1);
    let before = two.status(1)?.peer_traffic;
    warm_up(
        &c1,
        pool,
        remote_q,
        (plan.round_trips / 10).clamp(50, 1_000),
        plan.budget() / 4,
    )?;
    let after = two.status(1)?.peer_traffic;
    let (req, rep) = frame_sizes(&before, &after).context(
        "node 1's status shows no batch frames after the remote round trips: is its \
         `peer_traffic` counted?",
    )?;
    let (req_n, rep_n) = (req.round() as usize, rep.round() as usize);
    let mut zmq_pair = ZmqPingPong::start(req_n, rep_n)?;
    let mut relay = ZmqRelay::start(req_n, rep_n)?;
    let Interleaved {
        mut remote,
        zmq: mut floor,
        relay: mut relayed,
    } = interleaved(
        &c1,
        pool,
        remote_q,
        (&mut zmq_pair, &mut relay),
        plan.round_trips,
        plan.budget(),
    )?;
    zmq_pair.stop()?;
    relay.stop()?;
    bar.inc(2);
    let mut rates = Vec::new();
    for threads in [1usize, 2] {
        let (tasks, per_sec) = pipelined(
            &c1,
            pool,
            remote_q,
            threads,
            window,
            plan.pipelined,
            plan.budget(),
        )?;
        rates.push(Rate {
            threads,
            window,
            tasks,
            per_sec,
        });
    }
    bar.inc(1);
    drop(c1);
    drop(two);

    // Three nodes: a broadcast to a container on each.
    let three = LocalCluster::start(&exe, 3, workers, &modules)?;
    let c1 = three.client(1)?;
    let pool3 = cluster_pool(&c1, 3)?;
    let mut bcast = timed(
        &c1,
        pool3,
        DomainQuery::global_bcast(),
        plan.broadcasts,
        plan.budget(),
    )?;
    drop(c1);
    drop(three);
    bar.inc(2);
    bar.finish_and_clear();

    let mut local = local;
    let s_remote = stats::summarize(&mut remote);
    let s_local = stats::summarize(&mut local);
    let s_floor = stats::summarize(&mut floor);
    let s_relay = stats::summarize(&mut relayed);
    let s_bcast = stats::summarize(&mut bcast);
    let r = &mut ctx.report;
    let zf = s_floor.p50;
    r.add(
        W,
        format!(
            "zmq ROUTER/DEALER round trip ({req:.0} B out, {rep:.0} B back): median (the floor)"
        ),
        s_floor.p50,
        Unit::Ns,
        None,
    );
    r.add(W, "zmq round trip: p99", s_floor.p99, Unit::Ns, None);
    r.add(
        W,
        "the same behind a shared-memory hop at node 1, all polling: median (the path's floor)",
        s_relay.p50,
        Unit::Ns,
        None,
    )
    .versus(Base::Zmq, zf);
    r.add(
        W,
        "remote echo, 2 nodes: median",
        s_remote.p50,
        Unit::Ns,
        None,
    )
    .versus(Base::Zmq, zf);
    r.add(W, "remote echo, 2 nodes: p99", s_remote.p99, Unit::Ns, None)
        .versus(Base::Zmq, s_floor.p99);
    r.add(
        W,
        "remote echo median / zmq round trip median",
        s_remote.p50 / zf,
        Unit::Times,
        None,
    )
    .target(Target::at_most(1.3));
    r.add(
        W,
        "remote echo median / the path's floor median",
        s_remote.p50 / s_relay.p50,
        Unit::Times,
        None,
    );
    r.add(
        W,
        "same echo to the container on the client's node: median",
        s_local.p50,
        Unit::Ns,
        Some(Base::PingPong),
    );
    for p in &rates {
        let row = r.add(
            W,
            format!(
                "pipelined remote echo, {window} in flight each, {}: tasks/s",
                super::clients_label(p.threads, false)
            ),
            p.per_sec,
            Unit::PerSec,
            None,
        );
        if p.threads == 1 {
            row.target(Target::at_least(200e3));
        }
    }
    r.add(
        W,
        "broadcast echo to 3 nodes: median",
        s_bcast.p50,
        Unit::Ns,
        None,
    )
    .versus(Base::Zmq, zf);
    r.add(
        W,
        "broadcast echo to 3 nodes: p99",
        s_bcast.p99,
        Unit::Ns,
        None,
    )
    .versus(Base::Zmq, s_floor.p99);
    for (label, s) in [
        ("zmq ROUTER/DEALER round trip (floor)", &floor),
        (
            "zmq behind a shared-memory hop (the path's floor)",
            &relayed,
        ),
        ("remote echo, 2 nodes", &remote),
        ("broadcast echo, 3 nodes", &bcast),
        ("echo to the container on the client's node", &local),
    ] {
        r.remote_latency_cdf.push(Series {
            label: label.into(),
            points: stats::cdf_points(s, 400),
        });
    }
    r.remote_rate_vs_clients.push(Series {
        label: format!("pipelined remote echo, {window} in flight per thread"),
        points: rates
            .iter()
            .map(|p| (p.threads as f64, p.per_sec))
            .collect(),
    });
    r.detail(
        W,
        Details {
            plan,
            request_frame_bytes: req,
            reply_frame_bytes: rep,
            remote_ns: s_remote,
            local_container_ns: s_local,
            zmq_floor_ns: s_floor,
            relay_floor_ns: s_relay,
            remote_over_floor_median: s_remote.p50 / zf,
            remote_over_relay_floor_median: s_remote.p50 / s_relay.p50,
            pipelined: rates,
            broadcast_3_nodes_ns: s_bcast,
        },
    );
    Ok(())
}
