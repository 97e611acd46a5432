//! Page runs: the allocator's slow path, shared by the refill of size classes (one
//! page at a time) and large allocations (runs of pages).
//!
//! Pages are handed out from a bump index (`top`, pages never used yet) and, once
//! large runs have been freed, by a first-fit scan of the page descriptors below
//! `top`. Both happen under [`PageLock`], a spin lock in the segment that records
//! the pid of its holder: a waiter that finds the holder dead takes the lock over,
//! so a client killed inside the slow path cannot wedge every other process. This
//! lock is never taken on the small-size hot path (only when a size class needs a
//! fresh page, once per up to 2048 blocks).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::layout::desc;

/// A cross-process spin lock whose word holds the holder's pid (0 = free).
#[repr(C)]
#[derive(Debug)]
pub(crate) struct PageLock {
    holder: AtomicU32,
}

/// Proof that the [`PageLock`] is held; releases it on drop.
pub(crate) struct PageGuard<'a> {
    lock: &'a PageLock,
    pid: u32,
}

/// This process's pid, cached (`getpid` is a system call on every use otherwise).
pub(crate) fn current_pid() -> u32 {
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *PID.get_or_init(std::process::id)
}

/// Whether process `pid` is alive: it exists (a process we may not signal still
/// exists) and is not a zombie. A zombie has exited and only waits for its parent
/// to reap it, which a parent may do late or never (an init that reaps lazily, a
/// supervisor that does not reap): its locks, tasks and answers are gone.
///
/// Any `u32` may be asked (pids come from clients and from shared memory): 0 and
/// values above `i32::MAX` name no process. Cast to a negative `pid_t` they would
/// name process groups, or every process.
pub fn pid_alive(pid: u32) -> bool {
    let Some(p) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    if matches!(
        rustix::process::test_kill_process(p),
        Err(rustix::io::Errno::SRCH)
    ) {
        return false;
    }
    !is_zombie(pid)
}

/// Whether `/proc/<pid>/stat` says the process is a zombie (`Z`) or dead (`X`).
/// `false` if it cannot be read.
fn is_zombie(pid: u32) -> bool {
    let Ok(stat) = std::fs::read(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // "pid (comm) S ...": comm may hold spaces and parentheses; the state is the
    // first field after the last ')'.
    let Some(end) = stat.iter().rposition(|&b| b == b')') else {
        return false;
    };
    stat[end + 1..]
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'Z' || b == b'X')
}

impl PageLock {
    /// Takes the lock, spinning, then yielding; steals it from a dead holder.
    pub(crate) fn lock(&self) -> PageGuard<'_> {
        let pid = current_pid();
        let mut spins = 0u32;
        let mut since = None::<Instant>;
        loop {
            // Acquire: pairs with the Release store in `PageGuard::drop`, so the
            // previous holder's descriptor writes are visible.
            match self
                .holder
                .compare_exchange_weak(0, pid, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return PageGuard { lock: self, pid },
                Err(0) => continue,
                Err(holder) => {
                    spins += 1;
                    if spins < 64 {
                        std::hint::spin_loop();
                        continue;
                    }
                    std::thread::yield_now();
                    let start = *since.get_or_insert_with(Instant::now);
                    if start.elapsed() > Duration::from_millis(10) && !pid_alive(holder) {
                        tracing::warn!(pid = holder, "taking over the page lock of a dead process");
                        if self
                            .holder
                            .compare_exchange(holder, pid, Ordering::Acquire, Ordering::Relaxed)
                            .is_ok()
                        {
                            return PageGuard { lock: self, pid };
                        }
                        since = None;
                    }
                }
            }
        }
    }
}

impl Drop for PageGuard<'_> {
    fn drop(&mut self) {
        // Release: pairs with the Acquire CAS in `lock`.
        let _ =
            self.lock
                .holder
                .compare_exchange(self.pid, 0, Ordering::Release, Ordering::Relaxed);
    }
}

/// The page-run state in the allocator header.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct PageState {
    pub lock: PageLock,
    _pad: u32,
    /// First page never handed out.
    pub top: AtomicU64,
    /// FREE pages below `top` (freed large runs).
    pub free_below_top: AtomicU64,
    /// Pages carved into size-class blocks.
    pub small_pages: AtomicU64,
    /// Pages in large runs.
    pub large_pages: AtomicU64,
}

/// Claims `n` consecutive pages and sets their descriptors to `head` (first page)
/// and `tail` (the others) before releasing the lock. Returns the first page index,
/// or `None` if no run of `n` free pages exists.
pub(crate) fn claim(
    st: &PageState,
    descs: &[AtomicU32],
    n: u64,
    head: u32,
    tail: u32,
) -> Option<u64> {
    let _guard = st.lock.lock();
    let total = descs.len() as u64;
    let top = st.top.load(Ordering::Relaxed);
    let mut first = None;
    if st.free_below_top.load(Ordering::Relaxed) >= n {
        let mut run = 0;
        for i in 0..top {
            if descs[i as usize].load(Ordering::Relaxed) == desc::FREE {
                run += 1;
                if run == n {
                    first = Some(i + 1 - n);
                    break;
                }
            } else {
                run = 0;
            }
        }
        if first.is_some() {
            st.free_below_top.fetch_sub(n, Ordering::Relaxed);
        }
    }
    if first.is_none() && top + n <= total {
        first = Some(top);
        st.top.store(top + n, Ordering::Relaxed);
    }
    let first = first?;
    // Release: pairs with the Acquire descriptor loads of `free` and of the reaper's
    // walk, which then see the block headers written before the descriptor changes
    // to its final kind.
    descs[first as usize].store(head, Ordering::Release);
    for d in &descs[first as usize + 1..(first + n) as usize] {
        d.store(tail, Ordering::Release);
    }
    Some(first)
}

/// Returns the run of `n` pages at `first` to the free pages.
pub(crate) fn release(st: &PageState, descs: &[AtomicU32], first: u64, n: u64) {
    let _guard = st.lock.lock();
    for d in &descs[first as usize..(first + n) as usize] {
        d.store(desc::FREE, Ordering::Release);
    }
    st.free_below_top.fetch_add(n, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::pid_alive;

    #[test]
    fn pid_alive_takes_any_u32() {
        assert!(pid_alive(std::process::id()));
        for pid in [0, u32::MAX, i32::MAX as u32 + 1, 1 << 30] {
            assert!(!pid_alive(pid), "{pid}");
        }
    }
}
