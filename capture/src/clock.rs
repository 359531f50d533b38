//! The run's one monotonic clock.
//!
//! Every `t_ns` in a run comes from [`Clock::now_ns`]: nanoseconds since the run started on the
//! OS monotonic clock, immune to NTP steps. Wall time is read exactly once, at start, and kept
//! as the anchor in the manifest.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
        Self::start_skewed(0)
    }

    /// [`Clock::start`] on a wall clock that reads `skew_ns` more than this host's (a test
    /// standing in for another host's clock: `capture --test-clock-skew-ms`).
    pub fn start_skewed(skew_ns: i64) -> Self {
        let now = SystemTime::now();
        let start = Instant::now();
        let skew = Duration::from_nanos(skew_ns.unsigned_abs());
        let anchor_wall = if skew_ns >= 0 { now + skew } else { now - skew };
        let anchor_unix_ns = anchor_wall
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            .unwrap_or(0);
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
