//! [`CoMutex`]: mutual exclusion between task graphs (see [`crate::sync`]).

use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use super::core::{Caller, Core, Group, Mode};

/// A mutex for module code: a task that waits for it suspends its coroutine,
/// not its worker; the lock is handed to waiters in arrival order; the tasks
/// of the holder's task graph (a handler and its subtasks) share it (seed:
/// `chi::CoMutex`). See [`crate::sync`] for the design and the aliasing rule
/// within a task graph.
///
/// ```
/// use chi_sdk::sync::CoMutex;
///
/// static COUNTER: CoMutex<u64> = CoMutex::new(0);
///
/// let mut n = COUNTER.lock();
/// *n += 1;
/// assert_eq!(*n, 1);
/// ```
pub struct CoMutex<T: ?Sized> {
    core: Core,
    data: UnsafeCell<T>,
}

// SAFETY: the lock hands `&mut T` to one group at a time, which may be on any
// thread (`T: Send`); the tasks of one group may hold guards on several
// threads at once and share `&T` (`T: Sync`; see the aliasing rule of the
// module doc for `&mut T` within a group).
unsafe impl<T: ?Sized + Send + Sync> Sync for CoMutex<T> {}

impl<T> CoMutex<T> {
    /// A mutex holding `value`.
    pub const fn new(value: T) -> CoMutex<T> {
        CoMutex {
            core: Core::new(),
            data: UnsafeCell::new(value),
        }
    }

    /// The value, taking the mutex apart.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized> CoMutex<T> {
    /// Takes the mutex, waiting for its turn: a task's coroutine is suspended
    /// (the worker runs other tasks), a thread outside a task parks. A task of
    /// the graph that holds it gets it at once (counted: it is released when
    /// the graph's last guard goes).
    pub fn lock(&self) -> CoMutexGuard<'_, T> {
        let caller = Caller::current();
        self.core.acquire(caller, Mode::Exclusive);
        CoMutexGuard::new(self, caller.group)
    }

    /// Takes the mutex if that needs no wait: it is free and nobody waits
    /// for it, or the caller's task graph holds it.
    pub fn try_lock(&self) -> Option<CoMutexGuard<'_, T>> {
        let caller = Caller::current();
        self.core
            .try_acquire(caller, Mode::Exclusive)
            .then(|| CoMutexGuard::new(self, caller.group))
    }

    /// Takes the mutex as `group` (tests play task graphs with threads).
    #[cfg(test)]
    pub(crate) fn lock_as(&self, group: Group) -> CoMutexGuard<'_, T> {
        self.core.acquire(Caller::thread_as(group), Mode::Exclusive);
        CoMutexGuard::new(self, group)
    }

    /// The value, through `&mut self` (no locking needed).
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    /// Whether some task graph or thread holds the mutex now (a snapshot, for
    /// diagnostics and tests).
    pub fn is_locked(&self) -> bool {
        self.core.state().is_held()
    }

    /// How many tasks and threads wait for the mutex now (a snapshot, for
    /// diagnostics and tests).
    pub fn waiters(&self) -> usize {
        self.core.state().waiters()
    }
}

impl<T: Default> Default for CoMutex<T> {
    fn default() -> CoMutex<T> {
        CoMutex::new(T::default())
    }
}

impl<T> From<T> for CoMutex<T> {
    fn from(value: T) -> CoMutex<T> {
        CoMutex::new(value)
    }
}

impl<T: ?Sized> fmt::Debug for CoMutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.core.state();
        f.debug_struct("CoMutex")
            .field("locked", &s.is_held())
            .field("waiters", &s.waiters())
            .finish_non_exhaustive()
    }
}

/// The holder's access to a [`CoMutex`]'s value; releases its hold when
/// dropped. Not `Send`: it is released on the thread (the worker) that took
/// it.
#[must_use = "the mutex is released as soon as the guard is dropped"]
pub struct CoMutexGuard<'a, T: ?Sized> {
    lock: &'a CoMutex<T>,
    group: Group,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: a shared guard hands out only `&T`.
unsafe impl<T: ?Sized + Sync> Sync for CoMutexGuard<'_, T> {}

impl<'a, T: ?Sized> CoMutexGuard<'a, T> {
    fn new(lock: &'a CoMutex<T>, group: Group) -> CoMutexGuard<'a, T> {
        CoMutexGuard {
            lock,
            group,
            _not_send: PhantomData,
        }
    }
}

impl<T: ?Sized> Deref for CoMutexGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: this guard's group holds the mutex, so no other group
        // touches the value until the guard drops; within the group, the
        // aliasing rule of the module doc applies. The reference is made anew
        // at each use (no long-lived reference is kept in the guard).
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> DerefMut for CoMutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for CoMutexGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.core.release(self.group, Mode::Exclusive);
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for CoMutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Display> fmt::Display for CoMutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}
