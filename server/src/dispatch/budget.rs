//! Caps on the work in flight: at most so many turns and so many activities sent and not
//! yet answered, per worker stream (`--max-turns-per-worker`, `--max-activities-per-worker`,
//! or less when the SDK asks for less) and per node (`--max-turns-in-flight`,
//! `--max-activities-in-flight`). What finds no room stays in the tables and waits in the
//! dispatcher's queue: it is never dropped.
//!
//! A stream's [`Caps`] are shared by the dispatchers of every shard this node leads, and
//! the node's by all of them, so counters are atomics. Each item in flight holds a
//! [`Permit`] that gives its place back when the item is answered, redelivered or its
//! worker goes away, and wakes the dispatchers waiting for room.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// Which count an item takes a place in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Turn,
    Activity,
}

/// One count with a ceiling.
#[derive(Debug)]
struct Cap {
    used: AtomicUsize,
    limit: usize,
}

impl Cap {
    fn new(limit: usize) -> Cap {
        Cap {
            used: AtomicUsize::new(0),
            limit,
        }
    }

    fn try_take(&self) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used < self.limit).then_some(used + 1)
            })
            .is_ok()
    }

    fn give_back(&self) {
        self.used.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The turn and activity caps of one worker stream or of the node.
#[derive(Debug)]
pub struct Caps {
    turns: Cap,
    activities: Cap,
    /// Told whenever a place is given back.
    freed: Arc<Notify>,
}

impl Caps {
    /// Caps of `turns` and `activities` (each at least one) that tell `freed` when a place
    /// is given back.
    pub fn new(turns: usize, activities: usize, freed: Arc<Notify>) -> Arc<Caps> {
        Arc::new(Caps {
            turns: Cap::new(turns.max(1)),
            activities: Cap::new(activities.max(1)),
            freed,
        })
    }

    /// Caps nothing reaches in practice (tests, and the state's own defaults).
    pub fn unlimited() -> Arc<Caps> {
        Caps::new(usize::MAX, usize::MAX, Arc::new(Notify::new()))
    }

    fn cap(&self, kind: Kind) -> &Cap {
        match kind {
            Kind::Turn => &self.turns,
            Kind::Activity => &self.activities,
        }
    }

    /// Whether another item of `kind` fits.
    pub fn has_room(&self, kind: Kind) -> bool {
        let cap = self.cap(kind);
        cap.used.load(Ordering::Acquire) < cap.limit
    }

    /// Items of `kind` in flight.
    pub fn used(&self, kind: Kind) -> usize {
        self.cap(kind).used.load(Ordering::Acquire)
    }

    /// The ceiling for items of `kind`.
    pub fn limit(&self, kind: Kind) -> usize {
        self.cap(kind).limit
    }
}

/// A place under the node's and a stream's caps, held while one item is in flight.
#[derive(Debug)]
pub struct Permit {
    kind: Kind,
    node: Arc<Caps>,
    stream: Arc<Caps>,
    /// Whether dropping it tells the waiting dispatchers (not for a place taken and given
    /// back at once because the worker's queue refused the item).
    notify: bool,
}

impl Permit {
    /// A place of `kind` under both caps, or `None` when either is full.
    pub fn take(kind: Kind, node: &Arc<Caps>, stream: &Arc<Caps>) -> Option<Permit> {
        if !node.cap(kind).try_take() {
            return None;
        }
        if !stream.cap(kind).try_take() {
            node.cap(kind).give_back();
            return None;
        }
        Some(Permit {
            kind,
            node: node.clone(),
            stream: stream.clone(),
            notify: true,
        })
    }

    /// Gives the place back without waking anyone: it was never used.
    pub fn cancel(mut self) {
        self.notify = false;
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.node.cap(self.kind).give_back();
        self.stream.cap(self.kind).give_back();
        if self.notify {
            self.node.freed.notify_waiters();
            if !Arc::ptr_eq(&self.node.freed, &self.stream.freed) {
                self.stream.freed.notify_waiters();
            }
        }
    }
}

/// A worker stream's share of `cap` on a node that leads `led` of the `led_somewhere`
/// shards that have a leader: proportional, rounded up, at least one, so the shares of
/// all nodes add up to `cap` plus at most one per node.
pub fn share(cap: usize, led: usize, led_somewhere: usize) -> usize {
    if led_somewhere == 0 || led >= led_somewhere {
        return cap.max(1);
    }
    (cap.saturating_mul(led)).div_ceil(led_somewhere).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_permit_needs_room_under_both_caps_and_gives_it_back_when_dropped() {
        let freed = Arc::new(Notify::new());
        let node = Caps::new(2, 1, freed.clone());
        let stream = Caps::new(1, 5, freed);
        let first = Permit::take(Kind::Turn, &node, &stream).expect("room for one turn");
        assert!(
            Permit::take(Kind::Turn, &node, &stream).is_none(),
            "stream full"
        );
        assert_eq!(
            node.used(Kind::Turn),
            1,
            "a refused take leaves the node's count"
        );
        let other_stream = Caps::unlimited();
        let second = Permit::take(Kind::Turn, &node, &other_stream).expect("node has 2");
        assert!(
            Permit::take(Kind::Turn, &node, &other_stream).is_none(),
            "node full"
        );
        let activity = Permit::take(Kind::Activity, &node, &stream).expect("own count");
        assert!(Permit::take(Kind::Activity, &node, &other_stream).is_none());
        drop(first);
        assert_eq!(node.used(Kind::Turn), 1);
        assert_eq!(stream.used(Kind::Turn), 0);
        assert!(Permit::take(Kind::Turn, &node, &stream).is_some());
        drop((second, activity));
        assert_eq!(node.used(Kind::Turn), 0);
        assert_eq!(node.used(Kind::Activity), 0);
    }

    #[tokio::test]
    async fn dropping_a_permit_wakes_a_waiting_dispatcher_but_cancelling_does_not() {
        let freed = Arc::new(Notify::new());
        let node = Caps::new(1, 1, freed.clone());
        let stream = Caps::unlimited();
        let permit = Permit::take(Kind::Turn, &node, &stream).unwrap();
        let waiting = freed.notified();
        tokio::pin!(waiting);
        waiting.as_mut().enable();
        Permit::take(Kind::Activity, &node, &stream)
            .unwrap()
            .cancel();
        let woke = futures_now(waiting.as_mut());
        assert!(!woke, "a cancelled permit woke the dispatcher");
        drop(permit);
        assert!(
            futures_now(waiting.as_mut()),
            "a freed place did not wake it"
        );
    }

    fn futures_now(future: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>) -> bool {
        use std::future::Future;
        use std::task::{Context, Poll, Waker};
        let mut cx = Context::from_waker(Waker::noop());
        matches!(future.poll(&mut cx), Poll::Ready(()))
    }

    #[test]
    fn shares_are_proportional_rounded_up_and_never_zero() {
        assert_eq!(share(100, 8, 8), 100);
        assert_eq!(share(100, 3, 8), 38);
        assert_eq!(share(100, 5, 8), 63);
        assert_eq!(share(1, 1, 8), 1);
        assert_eq!(share(10, 0, 8), 1);
        assert_eq!(share(10, 2, 0), 10);
    }
}
