//! The worker's side of wake-ups and subtasks between steps: what was woken
//! (on this thread, by other workers, by timers), subtasks taken from the
//! inbox, and the wake-up a completed subtask sends its waiter (see
//! [`super::sched`] for the design). Methods of [`Worker`] (another `impl`
//! block); the parent module names nothing of this one.

use chi_sdk::shm::ShmPtr;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::Worker;
use super::sched::{self, Sub};

impl Worker {
    /// Moves the tasks woken since the last look to the ready list: wake-ups
    /// made on this thread, those other workers posted, and passed timers.
    #[inline(always)]
    pub(super) fn collect_wakes(&mut self) {
        let blocked = self.slots.blocked();
        {
            let mut w = self.local.wakes.borrow_mut();
            for s in w.drain(..) {
                self.slots.wake(s);
            }
        }
        if self.stats.has_mail() {
            self.stats.take_mail(&mut self.mail);
            for s in self.mail.drain(..) {
                if s == sched::SWEEP {
                    self.slots.wake_all_blocked();
                } else {
                    self.slots.wake(s);
                }
            }
        }
        if !self.timers.is_empty() {
            let slots = &mut self.slots;
            self.timers.fire(Instant::now(), |s| slots.wake(s));
        }
        // `status` shows a woken task as no longer parked at once.
        if self.slots.blocked() != blocked {
            self.publish_blocked();
        }
    }

    /// Takes a subtask from the inbox: like a popped task, without the word
    /// check (the runtime's own `submit` checked it).
    pub(super) fn dispatch_sub(&mut self, (task, generation): Sub) {
        let main = &self.shared.ipc.main;
        let at = ShmPtr::new(main.id(), task as u64 - main.base() as u64);
        let word = chi_sdk::task::task_word(at, generation);
        self.handling = Some(word);
        self.dispatch(task, generation, word, false);
        self.handling = None;
    }

    /// Publishes the number of blocked tasks (for `status`): blocked
    /// coroutines, and the subtasks suspended inline on them.
    #[inline]
    pub(super) fn publish_blocked(&self) {
        let n = self.slots.blocked() as u64 + self.local.inline_parked.get();
        // Relaxed: a monitoring figure.
        self.stats.blocked.store(n, Ordering::Relaxed);
    }

    /// Wakes the task of `token` (a completed subtask's waiter).
    #[inline]
    pub(super) fn wake(&mut self, token: u32) {
        match sched::split(token) {
            Some((w, s)) if w == self.stats.id => self.slots.wake(s),
            Some(_) => sched::wake_from(&self.local, token),
            None => {}
        }
    }

    /// Steps the ready task of slot `slot`.
    #[inline]
    pub(super) fn resume(&mut self, slot: u32) {
        if let Some(p) = self.slots.take(slot) {
            self.step(slot, p);
        }
    }
}
