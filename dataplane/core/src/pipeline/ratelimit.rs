//! Token bucket for ICMP errors (RFC 1812 §4.3.2.8), on injected time.

use crate::time::Time;

/// A token bucket in GCRA form: a theoretical arrival time instead of a
/// token count, so it needs only integer arithmetic.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    interval_ns: u64,
    burst_ns: u64,
    tat: u64,
}

impl TokenBucket {
    /// `rate` per second, `burst` at once. A rate of 0 never allows.
    pub fn new(rate: u32, burst: u32) -> Self {
        let interval_ns = if rate == 0 {
            u64::MAX
        } else {
            1_000_000_000 / u64::from(rate)
        };
        TokenBucket {
            interval_ns,
            burst_ns: interval_ns.saturating_mul(u64::from(burst.max(1)) - 1),
            tat: 0,
        }
    }

    /// Takes a token at `now` if one is left.
    pub fn allow(&mut self, now: Time) -> bool {
        if self.interval_ns == u64::MAX {
            return false;
        }
        let now = now.0;
        if self.tat > now.saturating_add(self.burst_ns) {
            return false;
        }
        self.tat = self.tat.max(now).saturating_add(self.interval_ns);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        let mut b = TokenBucket::new(10, 10);
        let allowed = (0..20).filter(|_| b.allow(Time(0))).count();
        assert_eq!(allowed, 10);
        assert!(!b.allow(Time(50_000_000)));
        assert!(b.allow(Time(100_000_000)));
        let later = (0..20).filter(|_| b.allow(Time(10_000_000_000))).count();
        assert_eq!(later, 10, "refills to the burst, not beyond");
    }
}
