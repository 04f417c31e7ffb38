//! Injected time.
//!
//! The dataplane never reads a clock: `run` passes the wall clock, `replay`
//! passes packet timestamps. Neighbour timeouts and ICMP rate limits then
//! behave the same on every replay of a trace.

use std::time::Duration;

/// A point in time, in nanoseconds since an arbitrary epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(pub u64);

impl Time {
    /// Time from a duration since the epoch (pcap timestamps are such durations).
    pub fn from_duration(d: Duration) -> Self {
        Time(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }

    /// This time as a duration since the epoch.
    pub fn as_duration(self) -> Duration {
        Duration::from_nanos(self.0)
    }

    /// `self + d`, saturating.
    pub fn after(self, d: Duration) -> Self {
        Time(
            self.0
                .saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        )
    }

    /// Whole seconds since the epoch, as the services' flow timers count.
    pub fn whole_secs(self) -> u32 {
        u32::try_from(self.0 / 1_000_000_000).unwrap_or(u32::MAX)
    }

    /// Time elapsed since `earlier` (zero if `earlier` is later).
    pub fn since(self, earlier: Time) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}
