//! The dispatcher's queue of work that found no worker with room: first in, first out,
//! without duplicates, with removal by key.

use std::collections::{HashSet, VecDeque};

/// A first-in first-out queue without duplicates.
pub struct WaitQueue<K> {
    order: VecDeque<K>,
    /// What is queued; an entry of `order` not in here was removed and is skipped.
    members: HashSet<K>,
}

impl<K> Default for WaitQueue<K> {
    fn default() -> Self {
        WaitQueue {
            order: VecDeque::new(),
            members: HashSet::new(),
        }
    }
}

impl<K: std::hash::Hash + Eq + Clone> WaitQueue<K> {
    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Queues `key` last unless it is queued already.
    pub fn push_back(&mut self, key: K) {
        if self.members.insert(key.clone()) {
            self.order.push_back(key);
        }
        if self.order.len() > 2 * self.members.len() + 64 {
            self.compact();
        }
    }

    /// Drops the entries of removed keys, and the later copies of keys queued again.
    fn compact(&mut self) {
        let mut kept = HashSet::with_capacity(self.members.len());
        self.order
            .retain(|key| self.members.contains(key) && kept.insert(key.clone()));
    }

    /// Puts back the key [`Self::pop_front`] just gave, first in line again.
    pub fn push_front(&mut self, key: K) {
        if self.members.insert(key.clone()) {
            self.order.push_front(key);
        }
    }

    pub fn pop_front(&mut self) -> Option<K> {
        while let Some(key) = self.order.pop_front() {
            if self.members.remove(&key) {
                return Some(key);
            }
        }
        None
    }

    pub fn remove<Q>(&mut self, key: &Q)
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        if self.members.remove(key) && self.members.is_empty() {
            self.order.clear();
        }
    }
}
