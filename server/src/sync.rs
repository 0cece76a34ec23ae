//! Locks held for a few instructions, never across an `.await`. A poisoned lock means a
//! thread panicked while holding it, and a panic already stops the node (see `main.rs`),
//! so these helpers panic too instead of every call site spelling out `expect`.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub trait LockExt<T> {
    fn lock_or_die(&self) -> MutexGuard<'_, T>;
}

impl<T> LockExt<T> for Mutex<T> {
    fn lock_or_die(&self) -> MutexGuard<'_, T> {
        self.lock().expect("a thread panicked holding this lock")
    }
}

pub trait RwLockExt<T> {
    fn read_or_die(&self) -> RwLockReadGuard<'_, T>;
    fn write_or_die(&self) -> RwLockWriteGuard<'_, T>;
}

impl<T> RwLockExt<T> for RwLock<T> {
    fn read_or_die(&self) -> RwLockReadGuard<'_, T> {
        self.read().expect("a thread panicked holding this lock")
    }

    fn write_or_die(&self) -> RwLockWriteGuard<'_, T> {
        self.write().expect("a thread panicked holding this lock")
    }
}
