//! A task whose container is on another node leaves this node: the worker
//! saves its inputs with the module's `save_in` (through a container of the
//! pool on this node: the hooks are the module's, whichever container) into
//! a request record, registers it in the in-flight table it shares with the
//! peer thread and queues it in its own batch, which it sends itself
//! ([`crate::cluster::wire`]: when it has nothing else to do, or the batch
//! is full or old); whoever takes the reply (this worker or another polling
//! after remote work, else the peer thread: [`crate::cluster::intake`])
//! completes the task (`remote_host.rs`). The worker forgets the task: it
//! neither runs nor completes it (unless the runtime stops while a
//! broadcast is being handed over: see
//! [`crate::remote::Bcast::fail_unsent`]). A replica for
//! this node itself (a broadcast's) goes to the peer thread
//! ([`crate::cluster::peer::PoolAsker::send_task`]).
//! Methods of [`Worker`] (another `impl` block), off the fast path (only
//! pools over the cluster get here).
//!
//! A subtask of a handler goes out the same way; its parent coroutine is
//! woken through its worker's mailbox when the reply completes it.
//!
//! While it polls after remote work (its busy window, three times
//! `idle.busy_poll`), an idle worker looks at the peer socket every
//! `LOOK_EVERY` (16) turns of its loop, and yields the CPU after a look that
//! found nothing: on a small machine the threads a round trip wakes (the
//! ZeroMQ I/O threads, the client) need the CPU it polls on. Once it holds
//! the socket's claim it looks every `BUSY_LOOK_EVERY` (256) turns while it
//! has work too, until it sleeps; it gives the socket back to the peer
//! thread when those looks come more than `BUSY_LOOK_GAP` (500 µs) apart
//! or find a backlog, so that no frame waits long for a busy worker.
//!
//! A node that holds no container of the pool (fewer containers than
//! nodes) sends through the pool's stand-in ([`crate::pool::Pool::hooks`]):
//! the module's hooks with a null container state.

use chi_sdk::task::{TaskHeader, code};

use super::Worker;
use crate::placement::Target;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cluster::intake::TAKE_AT_ONCE;
use crate::cluster::outbox::MAX_RECORD;
use crate::cluster::pools::Outgoing;
use crate::remote::codec::{Half, save};
use crate::remote::inflight::RemoteError;
use crate::remote::record::Request;
use crate::remote::{Bcast, Sent};

/// Turns of an idle worker's loop between two looks at the peer socket in
/// its busy window after remote work (a look costs a system call or two).
const LOOK_EVERY: u64 = 16;

/// Longest time between two looks of a busy worker at the peer socket it
/// holds (see [`Worker::busy_look`]): half the time after which the peer
/// thread would take the socket back from a worker that stopped looking.
const BUSY_LOOK_GAP: Duration = Duration::from_micros(500);

impl Worker {
    /// Sends `task` to the node of its container, or fails it with why not.
    #[cold]
    pub(super) fn send_remote(&mut self, task: *mut TaskHeader, generation: u32) {
        if let Err(msg) = self.try_send_remote(task, generation) {
            self.finish(task, generation, code::FAILED, Some(msg));
        }
    }

    fn try_send_remote(&mut self, task: *mut TaskHeader, generation: u32) -> Result<(), String> {
        // SAFETY: validated by the caller as a live task; only read, but for
        // `mark_remote` (an atomic on the state word) before the task is
        // handed over, while it is still this worker's.
        let h = unsafe { &*task };
        let cache = self.inline.pools.borrow();
        let here = cache.here();
        let pool = cache
            .pool(h.pool_id)
            .ok_or_else(|| format!("no {} on node {}", h.pool_id, here.0))?;
        drop(cache);
        let placement = pool
            .placement
            .as_ref()
            .ok_or_else(|| format!("{} is not a pool over the cluster", pool.id))?;
        let targets = match placement.resolve(h.dom_query, here) {
            Ok(Target::One(to)) => vec![to],
            Ok(Target::All(all)) => all,
            _ => {
                return Err(format!(
                    "{:?} names no container of {}",
                    h.dom_query, pool.id
                ));
            }
        };
        let to = targets[0];
        if super::periodic::periodic_of(task).is_some() {
            return Err(if targets.len() > 1 {
                format!(
                    "a periodic task runs only on the node it is submitted to, and a broadcast \
                     reaches the containers of {} on other nodes: submit it to a container of \
                     node {} (or to each node)",
                    pool.id, here.0
                )
            } else {
                format!(
                    "a periodic task runs only on the node it is submitted to, and container {} \
                     of {} is on node {}: submit it to that node (CHI_ADDR), or to a container \
                     of this one",
                    to.container.0, pool.id, to.node.0
                )
            });
        }
        let container = pool.hooks().cloned().ok_or_else(|| {
            format!(
                "{} has neither a container nor its module on node {}; submit the task to \
                 node {}",
                pool.id, here.0, to.node.0
            )
        })?;
        let link = self.shared.pool_asker.get().ok_or_else(|| {
            format!(
                "container {} of {} is on node {}, but this runtime has no peer link",
                to.container.0, pool.id, to.node.0
            )
        })?;
        // SAFETY: a live task of the container's module (its pool's), which
        // nobody writes while the worker holds it.
        let body = unsafe { save(&container, task, Half::In) }.map_err(|e| e.to_string())?;
        let bcast = (targets.len() > 1).then(|| Arc::new(Bcast::new(&targets)));
        let sent_of = |i: usize| Sent {
            task: task as usize,
            generation,
            container: container.clone(),
            bcast: bcast.clone().map(|b| (b, i)),
        };
        // Read now: once registered, the task may be completed (the node
        // went down, the runtime stops) and freed by its client at any time.
        let (method, task_flags) = (h.method, h.flags);
        let request_to = |to: &crate::placement::Located, id: u64| Request {
            id,
            pool: pool.id,
            container: to.container,
            method,
            flags: task_flags,
            body: body.clone(),
        };
        let size = Request::HEADER_LEN + body.len();
        if size > MAX_RECORD {
            return Err(format!(
                "the inputs of this task take {size} bytes saved, over the {MAX_RECORD} bytes a \
                 task carries to another node; submit it on node {} (its container's), or \
                 split its data into smaller tasks",
                to.node.0
            ));
        }
        if targets.iter().any(|t| t.node.0 != here.0) {
            // Its client spins longer: the answer comes a round trip later
            // (and polls less at first when it shares this CPU).
            h.mark_remote(Some(rustix::thread::sched_getcpu()));
        }
        let wire = self.shared.wire.get().cloned();
        let mut sent_any = false;
        // Replicas for other nodes: through the wire. A broadcast's are
        // registered all at once (none if the runtime stops, so the task
        // fails here; one for a node not up fails through the table, so the
        // broadcast still gathers every replica).
        if let Some(wire) = wire.as_deref() {
            let remote: Vec<usize> = (0..targets.len())
                .filter(|&i| targets[i].node.0 != here.0)
                .collect();
            let ids: Vec<Option<u64>> = match (&bcast, remote.as_slice()) {
                (_, []) => Vec::new(),
                (None, &[i]) => {
                    let id = wire
                        .register(targets[i].node.0, Box::new(sent_of(i)))
                        .map_err(|(_, e)| e.to_string())?;
                    vec![Some(id)]
                }
                _ => wire
                    .register_replicas(
                        remote
                            .iter()
                            .map(|&i| (targets[i].node.0, Box::new(sent_of(i)) as Outgoing))
                            .collect(),
                    )
                    .map_err(|e| e.to_string())?,
            };
            for (&i, id) in remote.iter().zip(ids) {
                sent_any = true;
                if let Some(id) = id {
                    self.wire_out
                        .request(targets[i].node.0, &request_to(&targets[i], id));
                }
            }
        }
        // Replicas for this node (all, without a wire): the peer thread.
        let local: Vec<usize> = (0..targets.len())
            .filter(|&i| wire.is_none() || targets[i].node.0 == here.0)
            .collect();
        for (k, &i) in local.iter().enumerate() {
            let to = &targets[i];
            if let Err(e) = link.send_task(to.node.0, request_to(to, 0), Box::new(sent_of(i))) {
                let (true, Some(b)) = (sent_any, &bcast) else {
                    return Err(e);
                };
                // The runtime stops: the replicas sent fail with it (the
                // peer thread fails them), these here; if theirs were the
                // broadcast's last outcomes, the task fails on this worker.
                tracing::warn!(error = %e, "a broadcast was cut short");
                return match b.fail_unsent(&local[k..], &RemoteError::Stopping) {
                    Some(why) => Err(why),
                    None => Ok(()),
                };
            }
            sent_any = true;
        }
        Ok(())
    }

    /// An idle worker's empty poll: in its busy window after remote work,
    /// every [`LOOK_EVERY`] turns of its loop it looks for the frames of
    /// remote tasks and replies that came ([`crate::cluster::intake`]).
    #[inline(always)]
    pub(super) fn idle_poll(&mut self) {
        if self.wire_out.sent_since_sleep() && self.beat.is_multiple_of(LOOK_EVERY) {
            if !self.take_frames() {
                std::thread::yield_now();
            }
        } else {
            std::hint::spin_loop();
        }
    }

    /// An idle worker's yield: in its busy window after remote work, it
    /// first looks for frames (as [`idle_poll`](Self::idle_poll)), and
    /// yields the CPU only if there were none.
    pub(super) fn idle_yield(&mut self) {
        if !(self.wire_out.sent_since_sleep() && self.take_frames()) {
            std::thread::yield_now();
        }
    }

    /// A worker with work, every [`BUSY_LOOK_EVERY`](super::idle::BUSY_LOOK_EVERY)
    /// turns: if it holds the peer socket's claim from its busy window, it
    /// looks for frames, so that remote tasks and replies do not wait for
    /// it to run dry, or for the peer thread to take the socket back
    /// ([`crate::cluster::intake::STEAL_AFTER`]). A worker whose looks come
    /// more than [`BUSY_LOOK_GAP`] apart (long steps), or that found a full
    /// look's worth of frames (a backlog), gives the socket back: the peer
    /// thread reads it without delay until this worker idles again.
    #[cold]
    pub(super) fn busy_look(&mut self) {
        if !self.wire_out.sent_since_sleep() {
            return;
        }
        let (Some(intake), Some(wire)) = (self.shared.intake.get(), self.shared.wire.get()) else {
            return;
        };
        let gap = self.wire_out.busy_look_gap(Instant::now());
        if gap.is_some_and(|g| g > BUSY_LOOK_GAP)
            || intake.take_held(self.stats.id, wire, &mut self.wire_out) >= TAKE_AT_ONCE
        {
            intake.release(self.stats.id);
        }
    }

    /// Takes the frames of remote tasks and replies that came, if this
    /// worker reads the peer socket now: whether there were any.
    #[cold]
    fn take_frames(&mut self) -> bool {
        self.wire_out.idle_looked();
        let (Some(intake), Some(wire)) = (self.shared.intake.get(), self.shared.wire.get()) else {
            return false;
        };
        intake.take(self.stats.id, wire, &mut self.wire_out) > 0
    }

    /// The worker goes to sleep: the peer socket is the peer thread's
    /// again.
    pub(super) fn remote_sleep(&mut self) {
        if self.wire_out.sent_since_sleep()
            && let Some(intake) = self.shared.intake.get()
        {
            intake.release(self.stats.id);
        }
        self.wire_out.slept();
    }

    /// [`flush_wire`](Self::flush_wire) when `now` (the loop's checks,
    /// inlined: a flag test when there is nothing to send).
    #[inline(always)]
    pub(super) fn flush_wire_if(&mut self, now: bool) {
        if now {
            self.flush_wire();
        }
    }

    /// Sends this worker's batch of remote records ([`crate::cluster::wire`]);
    /// the tasks it could not send fail through the peer thread.
    #[cold]
    pub(super) fn flush_wire(&mut self) {
        if self.wire_out.is_empty() {
            return;
        }
        let Some(wire) = self.shared.wire.get() else {
            return;
        };
        let link = self.shared.pool_asker.get();
        self.wire_out.flush(wire, |failed| {
            if let Some(link) = link {
                link.failed(failed);
            }
        });
    }
}
