//! The client's own health during a run: the CPU time capture used and how late its runtime
//! woke a probe task. A saturated client delays reading responses and sending requests, and
//! that delay lands in the latencies; these numbers (in the manifest, shown by `analyze`)
//! say whether that could have happened. Recorder back-pressure is counted by the recorder.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use recap_schemas::ClientHealth;
use tokio::sync::watch;

/// How often the probe sleeps.
pub const PROBE_PERIOD: Duration = Duration::from_millis(10);

/// Clock ticks per second of `/proc/<pid>/stat`'s times (`USER_HZ`): 100 on every Linux
/// architecture Recap runs on (the kernel's ABI; `getconf CLK_TCK` prints it).
const USER_HZ: f64 = 100.0;

/// CPU seconds this process (all its threads) has used, user and system, from
/// `/proc/self/stat` (10 ms resolution); `None` where there is no such file. Read from procfs
/// because the workspace forbids `unsafe` (a `getrusage` call needs it).
pub fn cpu_seconds() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields are counted after
    // its closing parenthesis, where field 3 (`state`) starts.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // utime and stime are fields 14 and 15: the 12th and 13th after `state`.
    let utime: f64 = fields.nth(11)?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime / USER_HZ, stime / USER_HZ))
}

/// Sleeps [`PROBE_PERIOD`] at a time on the current runtime until `stop` turns true, and
/// returns how late (µs) each sleep woke.
pub async fn timer_lag(mut stop: watch::Receiver<bool>) -> Histogram<u64> {
    // 1 µs to 60 s, 3 significant digits; `saturating_record` keeps a longer stall as 60 s.
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("invariant: valid bounds");
    loop {
        let due = Instant::now() + PROBE_PERIOD;
        tokio::select! {
            _ = tokio::time::sleep_until(due.into()) => {
                let late = Instant::now().saturating_duration_since(due);
                h.saturating_record(u64::try_from(late.as_micros()).unwrap_or(u64::MAX).max(1));
            }
            _ = stop.wait_for(|s| *s) => return h,
        }
    }
}

/// What a run's client health was: CPU used between `cpu_at_start` and `cpu_at_end`, which
/// are `elapsed` apart, and the probe's lateness.
pub fn report(
    elapsed: Duration,
    cpu_at_start: Option<(f64, f64)>,
    cpu_at_end: Option<(f64, f64)>,
    lag: &Histogram<u64>,
) -> ClientHealth {
    let (user, sys) = match (cpu_at_start, cpu_at_end) {
        (Some((u0, s0)), Some((u1, s1))) => ((u1 - u0).max(0.0), (s1 - s0).max(0.0)),
        _ => (0.0, 0.0),
    };
    let q = |p: f64| if lag.is_empty() { 0 } else { lag.value_at_quantile(p) };
    ClientHealth {
        elapsed_s: elapsed.as_secs_f64(),
        cpu_user_s: user,
        cpu_sys_s: sys,
        cores: std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX)),
        timer_lag_samples: lag.len(),
        timer_lag_p50_us: q(0.5),
        timer_lag_p99_us: q(0.99),
        timer_lag_max_us: if lag.is_empty() { 0 } else { lag.max() },
    }
}
