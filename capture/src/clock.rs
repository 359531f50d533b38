//! The run's one monotonic clock.
//!
//! Every `t_ns` in a run comes from [`Clock::now_ns`]: nanoseconds since the run started on the
//! OS monotonic clock, immune to NTP steps. Wall time is read exactly once, at start, and kept
//! as the anchor in the manifest ([`Wall`] is where it is read; a shard's barrier also reads it
//! before the start, to measure its offset to shard 0's).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// This host's wall clock as capture reads it: shifted by `--test-clock-skew-ms` in the tests
/// that stand in for a host whose clock is off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wall {
    /// Added to every reading.
    pub skew_ns: i64,
}

impl Wall {
    /// The time now.
    pub fn now(&self) -> SystemTime {
        let (now, skew) = (SystemTime::now(), Duration::from_nanos(self.skew_ns.unsigned_abs()));
        if self.skew_ns >= 0 {
            now + skew
        } else {
            now - skew
        }
    }

    /// The time now, in Unix ns.
    pub fn now_unix_ns(&self) -> i64 {
        unix_ns(self.now())
    }
}

/// `t` in Unix ns (negative before 1970).
pub fn unix_ns(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
    }
}

/// `t` as the manifest writes times: UTC RFC 3339 with milliseconds.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Monotonic run clock with a wall-clock anchor taken at the same moment as its origin.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
    anchor_unix_ns: i64,
    anchor_wall: SystemTime,
}

impl Clock {
    /// Starts the clock: `t_ns = 0` is now.
    pub fn start() -> Self {
        Self::start_on(Wall::default())
    }

    /// [`Clock::start`] anchored on `wall`.
    pub fn start_on(wall: Wall) -> Self {
        let anchor_wall = wall.now();
        let start = Instant::now();
        let anchor_unix_ns = unix_ns(anchor_wall);
        Clock {
            start,
            anchor_unix_ns,
            anchor_wall,
        }
    }

    /// Nanoseconds since the run started.
    pub fn now_ns(&self) -> i64 {
        self.ns_at(Instant::now())
    }

    /// Nanoseconds since the run started at `instant` (0 if before the start).
    pub fn ns_at(&self, instant: Instant) -> i64 {
        let d = instant.saturating_duration_since(self.start);
        i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
    }

    /// The instant `ns` nanoseconds after the start (for sleeping until a scheduled time).
    pub fn instant_at(&self, ns: i64) -> Instant {
        self.start + Duration::from_nanos(u64::try_from(ns).unwrap_or(0))
    }

    /// Time since the start.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Wall-clock Unix time in ns at `t_ns = 0`.
    pub fn anchor_unix_ns(&self) -> i64 {
        self.anchor_unix_ns
    }

    /// Wall-clock time at `t_ns = 0`.
    pub fn anchor_wall(&self) -> SystemTime {
        self.anchor_wall
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_monotonic_and_round_trips_instants() {
        let c = Clock::start();
        let a = c.now_ns();
        let b = c.now_ns();
        assert!(b >= a && a >= 0);
        let i = c.instant_at(1_000_000);
        assert_eq!(c.ns_at(i), 1_000_000);
        assert!(c.anchor_unix_ns() > 1_600_000_000_000_000_000);
    }
}
