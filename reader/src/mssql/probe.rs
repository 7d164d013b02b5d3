//! The adaptive probe interval: ask the server often while changes flow, rarely while idle.
//!
//! The watcher calls [`crate::source::Source::probe`] at its own fixed interval (a few
//! milliseconds). On SQL Server each real probe is a round trip, so the source answers from a
//! cache until the current interval has passed. The interval halves (down to [`FAST`]) each time
//! the value moved and doubles (up to [`IDLE`]) each time it did not: a burst of changes is
//! noticed within milliseconds, an idle database costs one small query per [`IDLE`]. The
//! watcher's poll timer and the signals still wake the reader whatever the probe says.

use std::time::{Duration, Instant};

/// The shortest interval between two server probes.
pub const FAST: Duration = Duration::from_millis(20);
/// The longest interval between two server probes.
pub const IDLE: Duration = Duration::from_millis(1000);

/// State of the adaptive probe.
#[derive(Debug, Clone)]
pub struct AdaptiveProbe {
    interval: Duration,
    last: Option<(Instant, i64)>,
}

impl Default for AdaptiveProbe {
    fn default() -> Self {
        Self {
            interval: FAST,
            last: None,
        }
    }
}

impl AdaptiveProbe {
    /// The last value, when the server was asked less than one interval ago.
    pub fn cached(&self, now: Instant) -> Option<i64> {
        match self.last {
            Some((at, v)) if now.duration_since(at) < self.interval => Some(v),
            _ => None,
        }
    }

    /// Records what the server answered; returns it.
    pub fn observe(&mut self, now: Instant, value: i64) -> i64 {
        self.interval = match self.last {
            Some((_, old)) if old != value => (self.interval / 2).max(FAST),
            Some(_) => (self.interval * 2).min(IDLE),
            None => FAST,
        };
        self.last = Some((now, value));
        value
    }

    /// The current interval between two server probes.
    pub fn interval(&self) -> Duration {
        self.interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slows_down_while_idle_and_speeds_up_when_changes_flow() {
        let mut p = AdaptiveProbe::default();
        let t0 = Instant::now();
        assert_eq!(p.cached(t0), None, "the first probe asks the server");
        p.observe(t0, 10);
        assert_eq!(p.cached(t0 + Duration::from_millis(5)), Some(10));
        let mut now = t0;
        for _ in 0..10 {
            now += p.interval();
            assert_eq!(p.cached(now), None);
            p.observe(now, 10);
        }
        assert_eq!(p.interval(), IDLE, "idle: one query per second");
        assert_eq!(p.cached(now + Duration::from_millis(900)), Some(10));
        now += IDLE;
        p.observe(now, 12);
        assert_eq!(p.interval(), IDLE / 2);
        for v in 13..20 {
            now += p.interval();
            p.observe(now, v);
        }
        assert_eq!(p.interval(), FAST, "busy: back to the fast interval");
    }
}
