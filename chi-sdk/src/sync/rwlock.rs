//! [`CoRwLock`]: shared reads, exclusive writes, between task graphs (see
//! [`crate::sync`]).

use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use super::core::{Caller, Core, Group, Mode};

/// A reader-writer lock for module code: readers of different task graphs
/// share it, a writer has it alone; a task that waits suspends its coroutine,
/// not its worker; requests are served in arrival order, so a waiting writer
/// holds back the readers that come after it; the tasks of a holding task
/// graph get it at once in either mode (seed: `chi::CoRwLock`). See
/// [`crate::sync`] for the design and the aliasing rule within a task graph.
///
/// A graph that holds the read lock and asks for the write lock (an upgrade)
/// waits for the other graphs' readers only, ahead of every other waiter; two
/// graphs that both do so while both read wait for each other for ever, as
/// with any upgradable lock.
///
/// ```
/// use chi_sdk::sync::CoRwLock;
///
/// let table = CoRwLock::new(vec![1, 2]);
/// {
///     let a = table.read();
///     let b = table.read();
///     assert_eq!(a.len() + b.len(), 4);
/// }
/// table.write().push(3);
/// assert_eq!(*table.read(), [1, 2, 3]);
/// ```
pub struct CoRwLock<T: ?Sized> {
    core: Core,
    data: UnsafeCell<T>,
}

// SAFETY: readers of several groups share `&T` from several threads (`T:
// Sync`); a writer's group gets `&mut T` on any thread (`T: Send`); see the
// aliasing rule of the module doc within a group.
unsafe impl<T: ?Sized + Send + Sync> Sync for CoRwLock<T> {}

impl<T> CoRwLock<T> {
    /// A lock holding `value`.
    pub const fn new(value: T) -> CoRwLock<T> {
        CoRwLock {
            core: Core::new(),
            data: UnsafeCell::new(value),
        }
    }

    /// The value, taking the lock apart.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized> CoRwLock<T> {
    /// Takes the lock to read, waiting for its turn (while a writer holds it
    /// or waits for it): a task's coroutine is suspended, a thread outside a
    /// task parks. A task of a graph that holds the lock (in either mode) gets
    /// it at once.
    pub fn read(&self) -> CoRwLockReadGuard<'_, T> {
        let caller = Caller::current();
        self.core.acquire(caller, Mode::Shared);
        CoRwLockReadGuard::new(self, caller.group)
    }

    /// Takes the lock to write, waiting for its turn (until no other graph
    /// holds it and the requests before this one went). A task of the graph
    /// that holds it alone gets it at once.
    pub fn write(&self) -> CoRwLockWriteGuard<'_, T> {
        let caller = Caller::current();
        self.core.acquire(caller, Mode::Exclusive);
        CoRwLockWriteGuard::new(self, caller.group)
    }

    /// Takes the lock to read if that needs no wait.
    pub fn try_read(&self) -> Option<CoRwLockReadGuard<'_, T>> {
        let caller = Caller::current();
        self.core
            .try_acquire(caller, Mode::Shared)
            .then(|| CoRwLockReadGuard::new(self, caller.group))
    }

    /// Takes the lock to write if that needs no wait.
    pub fn try_write(&self) -> Option<CoRwLockWriteGuard<'_, T>> {
        let caller = Caller::current();
        self.core
            .try_acquire(caller, Mode::Exclusive)
            .then(|| CoRwLockWriteGuard::new(self, caller.group))
    }

    /// Reads as `group` (tests play task graphs with threads).
    #[cfg(test)]
    pub(crate) fn read_as(&self, group: Group) -> CoRwLockReadGuard<'_, T> {
        self.core.acquire(Caller::thread_as(group), Mode::Shared);
        CoRwLockReadGuard::new(self, group)
    }

    /// Writes as `group` (tests play task graphs with threads).
    #[cfg(test)]
    pub(crate) fn write_as(&self, group: Group) -> CoRwLockWriteGuard<'_, T> {
        self.core.acquire(Caller::thread_as(group), Mode::Exclusive);
        CoRwLockWriteGuard::new(self, group)
    }

    /// Reads as `group` if that needs no wait (tests).
    #[cfg(test)]
    pub(crate) fn try_read_as(&self, group: Group) -> Option<CoRwLockReadGuard<'_, T>> {
        self.core
            .try_acquire(Caller::thread_as(group), Mode::Shared)
            .then(|| CoRwLockReadGuard::new(self, group))
    }

    /// The value, through `&mut self` (no locking needed).
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    /// Whether some task graph or thread holds the lock now (a snapshot, for
    /// diagnostics and tests).
    pub fn is_locked(&self) -> bool {
        self.core.state().is_held()
    }

    /// How many tasks and threads wait for the lock now (a snapshot, for
    /// diagnostics and tests).
    pub fn waiters(&self) -> usize {
        self.core.state().waiters()
    }
}

impl<T: Default> Default for CoRwLock<T> {
    fn default() -> CoRwLock<T> {
        CoRwLock::new(T::default())
    }
}

impl<T> From<T> for CoRwLock<T> {
    fn from(value: T) -> CoRwLock<T> {
        CoRwLock::new(value)
    }
}

impl<T: ?Sized> fmt::Debug for CoRwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.core.state();
        f.debug_struct("CoRwLock")
            .field("locked", &s.is_held())
            .field("waiters", &s.waiters())
            .finish_non_exhaustive()
    }
}

/// A reader's access to a [`CoRwLock`]'s value; releases its hold when
/// dropped. Not `Send` (see [`CoMutexGuard`](super::CoMutexGuard)).
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct CoRwLockReadGuard<'a, T: ?Sized> {
    lock: &'a CoRwLock<T>,
    group: Group,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: a shared guard hands out only `&T`.
unsafe impl<T: ?Sized + Sync> Sync for CoRwLockReadGuard<'_, T> {}

impl<'a, T: ?Sized> CoRwLockReadGuard<'a, T> {
    fn new(lock: &'a CoRwLock<T>, group: Group) -> CoRwLockReadGuard<'a, T> {
        CoRwLockReadGuard {
            lock,
            group,
            _not_send: PhantomData,
        }
    }
}

impl<T: ?Sized> Deref for CoRwLockReadGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: this guard's group holds the lock to read, so no other
        // group writes until the guard drops; within the group, the aliasing
        // rule of the module doc applies. The reference is made anew at each
        // use.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for CoRwLockReadGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.core.release(self.group, Mode::Shared);
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for CoRwLockReadGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// A writer's access to a [`CoRwLock`]'s value; releases its hold when
/// dropped. Not `Send` (see [`CoMutexGuard`](super::CoMutexGuard)).
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct CoRwLockWriteGuard<'a, T: ?Sized> {
    lock: &'a CoRwLock<T>,
    group: Group,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: a shared guard hands out only `&T`.
unsafe impl<T: ?Sized + Sync> Sync for CoRwLockWriteGuard<'_, T> {}

impl<'a, T: ?Sized> CoRwLockWriteGuard<'a, T> {
    fn new(lock: &'a CoRwLock<T>, group: Group) -> CoRwLockWriteGuard<'a, T> {
        CoRwLockWriteGuard {
            lock,
            group,
            _not_send: PhantomData,
        }
    }
}

impl<T: ?Sized> Deref for CoRwLockWriteGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: this guard's group holds the lock alone, so no other group
        // touches the value until the guard drops; within the group, the
        // aliasing rule of the module doc applies. The reference is made anew
        // at each use.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> DerefMut for CoRwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for CoRwLockWriteGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.core.release(self.group, Mode::Exclusive);
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for CoRwLockWriteGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
