//! Timestamp arithmetic on protobuf `Timestamp`s, kept as (seconds, nanos) so that the
//! "never" timers at 9999-12-31 neither overflow nor lose precision.

use std::cmp::Ordering;

use prost_types::Timestamp;

/// Orders two timestamps.
pub fn cmp(a: &Timestamp, b: &Timestamp) -> Ordering {
    (a.seconds, a.nanos).cmp(&(b.seconds, b.nanos))
}

/// `a` is strictly after `b`.
pub fn after(a: &Timestamp, b: &Timestamp) -> bool {
    cmp(a, b) == Ordering::Greater
}

/// The later of the two.
pub fn max(a: Timestamp, b: Timestamp) -> Timestamp {
    if after(&b, &a) {
        b
    } else {
        a
    }
}

/// `t` plus some nanoseconds, normalized.
pub fn add_nanos(t: &Timestamp, nanos: i64) -> Timestamp {
    let total = i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos) + i128::from(nanos);
    Timestamp {
        seconds: total.div_euclid(1_000_000_000) as i64,
        nanos: total.rem_euclid(1_000_000_000) as i32,
    }
}

/// The smallest time after `last` that is not before `now`, at microsecond resolution:
/// OrchestratorStarted timestamps must strictly increase and Python keeps microseconds.
pub fn next_after(now: Timestamp, last: Option<&Timestamp>) -> Timestamp {
    let now = truncate_micros(now);
    match last {
        Some(last) if !after(&now, last) => truncate_micros(add_nanos(last, 1_000)),
        _ => now,
    }
}

fn truncate_micros(t: Timestamp) -> Timestamp {
    Timestamp {
        seconds: t.seconds,
        nanos: t.nanos - t.nanos % 1_000,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_after_is_strictly_later_at_micro_resolution() {
        let last = Timestamp {
            seconds: 10,
            nanos: 999_999_500,
        };
        let now = Timestamp {
            seconds: 10,
            nanos: 5,
        };
        let next = next_after(now, Some(&last));
        assert!(after(&next, &last));
        assert_eq!(
            next,
            Timestamp {
                seconds: 11,
                nanos: 0
            }
        );
        let later = Timestamp {
            seconds: 12,
            nanos: 1_234_567,
        };
        assert_eq!(
            next_after(later, Some(&last)),
            Timestamp {
                seconds: 12,
                nanos: 1_234_000
            }
        );
    }

    #[test]
    fn far_future_does_not_overflow() {
        let never = Timestamp {
            seconds: 253_402_300_799,
            nanos: 999_999_999,
        };
        let later = add_nanos(&never, 1);
        assert_eq!(
            later,
            Timestamp {
                seconds: 253_402_300_800,
                nanos: 0
            }
        );
    }
}
