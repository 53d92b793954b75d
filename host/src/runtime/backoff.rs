//! How long a panicked producer waits before it is rebuilt.

use std::time::Duration;

/// The wait before the first rebuild; each further panic in a row doubles it.
const FIRST: Duration = Duration::from_millis(250);

/// A producer that has not panicked for this long starts again from [`FIRST`].
const QUIET: Duration = Duration::from_secs(60);

/// The restart backoff of one producer: doubling for panics in a row, capped, forgiven after a
/// quiet minute. Time is the supervisor's (monotonic, from any fixed origin).
#[derive(Debug, Clone)]
pub(super) struct RestartBackoff {
    max: Duration,
    in_a_row: u32,
    last_panic: Option<Duration>,
}

impl RestartBackoff {
    pub(super) fn new(max: Duration) -> Self {
        RestartBackoff { max, in_a_row: 0, last_panic: None }
    }

    /// A panic at `now`: the wait before the rebuild.
    pub(super) fn on_panic(&mut self, now: Duration) -> Duration {
        if self.last_panic.is_some_and(|t| now.saturating_sub(t) > QUIET) {
            self.in_a_row = 0;
        }
        self.last_panic = Some(now);
        self.in_a_row += 1;
        FIRST.saturating_mul(1u32 << (self.in_a_row.min(10) - 1)).min(self.max)
    }

    /// A replacement started well: the next panic is a first one again.
    pub(super) fn forgive(&mut self) {
        self.in_a_row = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn panics_in_a_row_double_the_wait_up_to_the_cap() {
        let mut b = RestartBackoff::new(Duration::from_secs(30));
        let waits: Vec<Duration> = (0..10).map(|i| b.on_panic(Duration::from_secs(i))).collect();
        assert_eq!(&waits[..4], [MS(250), MS(500), MS(1000), MS(2000)]);
        assert_eq!(waits[6], MS(16_000));
        assert_eq!(waits[7], MS(30_000), "capped");
        assert_eq!(waits[9], MS(30_000));
    }

    #[test]
    fn a_quiet_minute_or_a_good_swap_forgives_earlier_panics() {
        let mut b = RestartBackoff::new(Duration::from_secs(30));
        b.on_panic(Duration::ZERO);
        assert_eq!(b.on_panic(Duration::from_secs(60)), MS(500), "exactly a minute is not quiet");
        assert_eq!(b.on_panic(Duration::from_secs(121)), MS(250));
        b.on_panic(Duration::from_secs(122));
        b.forgive();
        assert_eq!(b.on_panic(Duration::from_secs(123)), MS(250));
    }
}
