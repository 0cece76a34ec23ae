//! Time. Only the leader reads time, and only through the [`Clock`] trait, so tests can
//! skew it.
//!
//! The time a leader stamps on log entries ([`LeaderClock`]) is not its wall clock read
//! afresh each time. When a node starts to lead it fixes the start of its time line once:
//! the median of a majority's wall clocks (so one node whose clock is off cannot move
//! cluster time), never below the largest time already committed. From then on the time
//! advances by the monotonic clock, so a jump of the wall clock (an operator, NTP
//! stepping, the chaos suite) neither fires timers early nor holds them back. Raft's own
//! timeouts never use wall time.

use std::sync::RwLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use endure_engine::time;
use prost_types::Timestamp;

use crate::sync::RwLockExt;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// Wall-clock time (in builds with the `chaos` feature, shifted by [`chaos_offset`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let now = Timestamp {
            seconds: since_epoch.as_secs() as i64,
            nanos: since_epoch.subsec_nanos() as i32,
        };
        shift_ms(&now, chaos_offset::get_ms())
    }
}

/// The chaos suite's clock offset for this process, in milliseconds. Compiled to a
/// constant zero without the `chaos` feature: a normal build has no way to skew its clock.
pub mod chaos_offset {
    #[cfg(feature = "chaos")]
    static OFFSET_MS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

    #[cfg(feature = "chaos")]
    pub fn get_ms() -> i64 {
        OFFSET_MS.load(std::sync::atomic::Ordering::Relaxed)
    }

    #[cfg(not(feature = "chaos"))]
    pub fn get_ms() -> i64 {
        0
    }

    #[cfg(feature = "chaos")]
    pub fn set_ms(offset_ms: i64) {
        OFFSET_MS.store(offset_ms, std::sync::atomic::Ordering::Relaxed);
    }
}

fn shift_ms(at: &Timestamp, offset_ms: i64) -> Timestamp {
    if offset_ms == 0 {
        return *at;
    }
    time::add_nanos(at, offset_ms.saturating_mul(1_000_000))
}

/// The leader's time line: fixed once per term by [`LeaderClock::start_term`], advanced by
/// the monotonic clock. Outside a term (a follower, or a leader that has not fixed its time
/// line yet) it reads the wall clock, which no entry is stamped with then.
pub struct LeaderClock {
    wall: Box<dyn Clock>,
    term: RwLock<Option<(Timestamp, Instant)>>,
}

impl LeaderClock {
    pub fn new(wall: impl Clock) -> Self {
        LeaderClock {
            wall: Box::new(wall),
            term: RwLock::new(None),
        }
    }

    /// One reading of the wall clock this time line is built from ([`WallReference`]).
    pub fn wall_reference(&self) -> WallReference {
        WallReference::read(self.wall.as_ref())
    }

    /// Starts a term's time line at `base` (see [`term_base`]).
    pub fn start_term(&self, base: Timestamp) {
        *self.term.write_or_die() = Some((base, Instant::now()));
    }

    /// Whether a term's time line is fixed (entries may be stamped).
    pub fn in_term(&self) -> bool {
        self.term.read_or_die().is_some()
    }

    /// Leadership ended: back to the wall clock.
    pub fn end_term(&self) {
        *self.term.write_or_die() = None;
    }
}

impl Clock for LeaderClock {
    fn now(&self) -> Timestamp {
        match *self.term.read_or_die() {
            Some((base, started)) => add(&base, started.elapsed()),
            None => self.wall.now(),
        }
    }
}

fn add(at: &Timestamp, elapsed: Duration) -> Timestamp {
    time::add_nanos(at, i64::try_from(elapsed.as_nanos()).unwrap_or(i64::MAX))
}

/// One reading of this node's wall clock, continued by the monotonic clock: every local
/// time a new leader compares its peers' clocks with is taken from it, so a wall clock that
/// jumps while the peers answer (NTP stepping it, the chaos suite) cannot make the leader
/// compare a peer with one reading and itself with another (chaos seed 7002: a -41.6 s
/// jump between the two made the term start at the floor, 0.9 s behind real time).
#[derive(Clone, Copy, Debug)]
pub struct WallReference {
    wall: Timestamp,
    at: Instant,
}

impl WallReference {
    /// Reads `clock` once.
    pub fn read(clock: &dyn Clock) -> Self {
        WallReference {
            wall: clock.now(),
            at: Instant::now(),
        }
    }

    /// The reading, advanced by the monotonic time elapsed since it was taken.
    pub fn now(&self) -> Timestamp {
        add(&self.wall, self.at.elapsed())
    }
}

/// One reading of another node's wall clock, taken by this node.
#[derive(Clone, Copy, Debug)]
pub struct ClockSample {
    /// The other node's wall clock in its answer.
    pub remote: Timestamp,
    /// This node's wall clock when the answer arrived.
    pub local_at_receipt: Timestamp,
    /// How long the question took to answer.
    pub round_trip: Duration,
}

impl ClockSample {
    /// How far the other clock is ahead of ours, in nanoseconds (behind: negative). The
    /// answer is taken as written halfway through the round trip.
    fn offset_nanos(&self) -> i128 {
        let remote = nanos(&self.remote) + (self.round_trip.as_nanos() / 2) as i128;
        remote - nanos(&self.local_at_receipt)
    }
}

fn nanos(at: &Timestamp) -> i128 {
    i128::from(at.seconds) * 1_000_000_000 + i128::from(at.nanos)
}

/// The start of a new leader's time line: its own clock corrected by the median offset of
/// the clocks it sampled (its own counts as offset zero), and never before `floor`: the
/// cluster's time line as this node saw it last, continued by its monotonic clock
/// (`Shared::continued_leader_time`; it lags real time only by how late this node applied
/// the last entry).
///
/// With an even count no majority of clocks agrees on a middle one, and of the two middle
/// readings the one nearer `floor` wins: with one voter of three down, the leader's clock
/// and one peer's are all it has, and one of them may be off by a minute. Taking the lower
/// one always (as before) let a peer skewed back start the term at the floor, 1-4 s behind
/// real time, and timers armed in that term fired that much early in real time once a
/// later leader's line was right (chaos seeds 3001 and 3003).
pub fn term_base(own: Timestamp, samples: &[ClockSample], floor: Timestamp) -> Timestamp {
    let mut offsets: Vec<i128> = samples.iter().map(ClockSample::offset_nanos).collect();
    offsets.push(0);
    offsets.sort_unstable();
    let middle = offsets.len() / 2;
    let chosen = if offsets.len() % 2 == 1 {
        offsets[middle]
    } else {
        let (lower, higher) = (offsets[middle - 1], offsets[middle]);
        let floor_offset = nanos(&floor) - nanos(&own);
        if (floor_offset - lower).abs() <= (higher - floor_offset).abs() {
            lower
        } else {
            higher
        }
    };
    let corrected = time::add_nanos(
        &own,
        chosen.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64,
    );
    time::max(corrected, floor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::sync::Arc;

    fn at(seconds: i64) -> Timestamp {
        Timestamp { seconds, nanos: 0 }
    }

    fn sample(remote: i64, local: i64) -> ClockSample {
        ClockSample {
            remote: at(remote),
            local_at_receipt: at(local),
            round_trip: Duration::ZERO,
        }
    }

    #[test]
    fn a_wall_reference_does_not_follow_a_jump_of_the_wall_clock() {
        let seconds = Arc::new(AtomicI64::new(1_000));
        let wall = Manual(seconds.clone());
        let reference = WallReference::read(&wall);
        // The clock steps back 41.6 s while a new leader waits for its peers' clocks.
        seconds.store(958, Ordering::SeqCst);
        let local_at_receipt = reference.now();
        assert!(local_at_receipt.seconds >= 1_000 && local_at_receipt.seconds < 1_002);
        // A peer with the right time is then seen as right, not 42 s ahead.
        let peer = ClockSample {
            remote: at(local_at_receipt.seconds),
            local_at_receipt,
            round_trip: Duration::ZERO,
        };
        let floor = at(999);
        let base = term_base(reference.now(), &[peer], floor);
        assert_eq!(base.seconds, local_at_receipt.seconds, "{base:?}");
    }

    /// A wall clock the test sets.
    struct Manual(Arc<AtomicI64>);

    impl Clock for Manual {
        fn now(&self) -> Timestamp {
            at(self.0.load(Ordering::SeqCst))
        }
    }

    #[test]
    fn one_clock_far_ahead_does_not_move_the_time_line() {
        // This node is 30 s ahead of both others: it takes the middle of the three clocks.
        let base = term_base(
            at(1_030),
            &[sample(1_000, 1_030), sample(1_001, 1_030)],
            at(0),
        );
        assert_eq!(base, at(1_001));
        // One peer 30 s ahead, one in step: the median is ours.
        let base = term_base(
            at(1_000),
            &[sample(1_030, 1_000), sample(1_000, 1_000)],
            at(0),
        );
        assert_eq!(base, at(1_000));
    }

    #[test]
    fn with_two_clocks_the_one_nearer_the_continued_line_wins_and_it_is_a_floor() {
        // A fresh cluster (no line yet): the earlier of the two.
        assert_eq!(
            term_base(at(1_000), &[sample(1_050, 1_000)], at(0)),
            at(1_000)
        );
        assert_eq!(term_base(at(1_000), &[sample(990, 1_000)], at(0)), at(990));
        // The peer 58 s behind, the line continued to 999: ours (seed 3001's case).
        assert_eq!(
            term_base(at(1_000), &[sample(942, 1_000)], at(999)),
            at(1_000)
        );
        // Ours 58 s behind, the peer in step with the line: the peer's.
        assert_eq!(
            term_base(at(942), &[sample(1_000, 942)], at(999)),
            at(1_000)
        );
        // Ours 30 s ahead, the peer in step: the peer's, not ours.
        assert_eq!(
            term_base(at(1_030), &[sample(1_000, 1_030)], at(999)),
            at(1_000)
        );
        // An earlier leader already stamped 2_000: never go below it.
        assert_eq!(term_base(at(1_000), &[], at(2_000)), at(2_000));
    }

    #[test]
    fn half_the_round_trip_is_added_to_a_remote_reading() {
        let slow = ClockSample {
            remote: at(1_000),
            local_at_receipt: at(1_001),
            round_trip: Duration::from_secs(2),
        };
        assert_eq!(slow.offset_nanos(), 0);
    }

    #[test]
    fn a_wall_clock_jump_during_a_term_does_not_move_leader_time() {
        let wall = Arc::new(AtomicI64::new(1_000));
        let clock = LeaderClock::new(Manual(wall.clone()));
        clock.start_term(at(1_000));
        wall.store(1_030, Ordering::SeqCst);
        let during = clock.now();
        assert!(
            during.seconds < 1_001,
            "jumped with the wall clock: {during:?}"
        );
        wall.store(970, Ordering::SeqCst);
        assert!(!time::after(&during, &clock.now()), "went back");
        clock.end_term();
        assert_eq!(clock.now(), at(970));
    }
}
