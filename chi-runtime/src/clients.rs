//! The registry of client processes: who registered, under which id.
//!
//! A client process registers once per [`Client`](chi_sdk::client::Client)
//! handle (a process may hold several, each counted) and unregisters when the
//! handle is dropped. A process that dies without unregistering stays until
//! someone prunes it: the process reaper forgets the dead ones
//! ([`ClientRegistry::forget_dead`]).
//!
//! The registry is bounded (the configuration's `control.max_clients`, at most [`MAX_CLIENTS`]): past the bound a registration is
//! refused with an error that names it, so a runaway client cannot grow the
//! runtime's memory. A registration must name a live process.

use std::collections::HashMap;
use std::sync::Mutex;

use chi_sdk::shm::alloc::pid_alive;

/// Most registrations a runtime holds at once.
pub const MAX_CLIENTS: usize = 4096;

/// Why a registration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// The bound is reached.
    #[error(
        "the runtime already has {bound} registered clients, its limit (control.max_clients of the configuration); drop unused Client handles, or wait until the clients of processes that exited are reaped"
    )]
    Full {
        /// The bound.
        bound: usize,
    },
    /// The pid names no live process.
    #[error("process {pid} is not running; a client registers with its own pid")]
    NotAlive {
        /// The pid given.
        pid: u32,
    },
}

/// Registered clients: id → pid (see the module doc).
#[derive(Debug)]
pub struct ClientRegistry {
    bound: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// id → (pid, the process's start time: a reused pid is not the client).
    by_id: HashMap<u32, (u32, u64)>,
    next: u32,
}

impl ClientRegistry {
    /// An empty registry holding at most `bound` clients.
    pub fn new(bound: usize) -> ClientRegistry {
        ClientRegistry {
            bound,
            inner: Mutex::new(Inner {
                by_id: HashMap::new(),
                next: 1,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a client of process `pid`; returns its id (never 0, unique
    /// among the registered).
    pub fn register(&self, pid: u32) -> Result<u32, RegisterError> {
        if !pid_alive(pid) {
            return Err(RegisterError::NotAlive { pid });
        }
        let mut g = self.lock();
        if g.by_id.len() >= self.bound {
            return Err(RegisterError::Full { bound: self.bound });
        }
        // Fewer than 2^32 - 1 ids are taken, so a free one turns up.
        let mut id = g.next;
        while id == 0 || g.by_id.contains_key(&id) {
            id = id.wrapping_add(1);
        }
        g.next = id.wrapping_add(1);
        let started = chi_sdk::shm::alloc::process_start(pid).unwrap_or(0);
        g.by_id.insert(id, (pid, started));
        Ok(id)
    }

    /// Forgets client `id`; returns its pid if it was registered.
    pub fn forget(&self, id: u32) -> Option<u32> {
        self.lock().by_id.remove(&id).map(|(pid, _)| pid)
    }

    /// The registered clients whose process is gone (a pid reused by a later
    /// process counts as gone), as `(client id, pid)`.
    pub fn dead(&self) -> Vec<(u32, u32)> {
        let clients: Vec<(u32, (u32, u64))> =
            self.lock().by_id.iter().map(|(&i, &p)| (i, p)).collect();
        clients
            .into_iter()
            .filter(|&(_, (pid, started))| {
                !chi_sdk::shm::alloc::started_process_alive(pid, started)
            })
            .map(|(id, (pid, _))| (id, pid))
            .collect()
    }

    /// Forgets the registered clients whose process is gone; returns how many
    /// it forgot.
    pub fn forget_dead(&self) -> u64 {
        let mut n = 0;
        for (id, pid) in self.dead() {
            if self.forget(id).is_some() {
                tracing::info!(
                    client = id,
                    pid,
                    "client process is gone; registration dropped"
                );
                n += 1;
            }
        }
        n
    }

    /// The registered clients as `(client id, pid)`, sorted by id.
    pub fn list(&self) -> Vec<(u32, u32)> {
        let mut v: Vec<(u32, u32)> = self
            .lock()
            .by_id
            .iter()
            .map(|(&i, &(p, _))| (i, p))
            .collect();
        v.sort_unstable();
        v
    }

    /// How many clients are registered.
    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Above Linux's largest pid_max: never a live process.
    const DEAD: u32 = 1 << 30;

    #[test]
    fn bounded_counted_and_prunable() {
        let me = std::process::id();
        let r = ClientRegistry::new(3);
        let a = r.register(me).unwrap();
        let b = r.register(me).unwrap();
        assert_ne!(a, b, "the same pid twice gets two ids");
        let c = r.register(me).unwrap();
        assert_eq!(r.register(me), Err(RegisterError::Full { bound: 3 }));
        assert!(
            RegisterError::Full { bound: 3 }
                .to_string()
                .contains("3 registered clients")
        );
        assert_eq!(r.list(), vec![(a, me), (b, me), (c, me)]);
        assert_eq!(r.forget(b), Some(me));
        assert_eq!(r.forget(b), None);
        let d = r.register(me).unwrap();
        assert!(![a, c].contains(&d));
        assert_eq!(r.len(), 3);
    }

    #[test]
    fn dead_and_null_pids_are_refused() {
        let r = ClientRegistry::new(8);
        assert_eq!(r.register(DEAD), Err(RegisterError::NotAlive { pid: DEAD }));
        assert_eq!(r.register(0), Err(RegisterError::NotAlive { pid: 0 }));
        assert!(r.is_empty());
    }

    #[test]
    fn ids_skip_zero_and_the_taken_on_wrap() {
        let me = std::process::id();
        let r = ClientRegistry::new(8);
        r.lock().next = u32::MAX;
        assert_eq!(r.register(me), Ok(u32::MAX));
        assert_eq!(r.register(me), Ok(1));
        r.lock().next = u32::MAX;
        assert_eq!(r.register(me), Ok(2));
    }
}
