//! The producer call watchdog: which call into a plugin is running, since when, and whether it
//! has run for longer than the bound.
//!
//! Each producer runs on a thread of its own (see [`crate::runtime`]), so a call that never
//! returns starves nothing but that producer; the watchdog's job is to say so. The producer's
//! thread stamps the start of every call in a [`CallClock`]; the producer's intake task on the async
//! runtime checks the clock periodically. Both sides change the clock with atomic operations
//! only, and the "stuck" flag is set by compare-and-swap on the very call it was decided for,
//! so a call that ends just as the watchdog looks is never flagged after the fact.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use love_plugin_api::abi::InputKind;
use prometheus_client::metrics::counter::Counter;

/// Nanoseconds on the monotonic clock since the first use in this process (never 0 after the
/// first call: the clock stores 0 for "no call running").
pub fn mono_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    (epoch.elapsed().as_nanos() as u64).max(1)
}

/// What the producer's thread is doing inside the plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// The plugin's `create`.
    Create,
    /// `handle` with an input of this kind.
    Handle(InputKind),
    /// `snapshot`.
    Snapshot,
    /// `restore`.
    Restore,
    /// The producer's destructor.
    Drop,
}

impl CallKind {
    /// How the call is named in logs, `/readyz` and crash records.
    pub fn describe(self) -> &'static str {
        match self {
            CallKind::Create => "create",
            CallKind::Snapshot => "snapshot",
            CallKind::Restore => "restore",
            CallKind::Drop => "drop",
            CallKind::Handle(k) => match k {
                InputKind::START => "handle(start)",
                InputKind::SAMPLE => "handle(SAL sample)",
                InputKind::MANAGER_MESSAGE => "handle(manager request)",
                InputKind::CONNECTED => "handle(connected)",
                InputKind::DISCONNECTED => "handle(disconnected)",
                InputKind::REGISTER => "handle(register)",
                InputKind::TICK => "handle(tick)",
                InputKind::COMMAND_ACK => "handle(command ack)",
                InputKind::CATALOG => "handle(catalog)",
                _ => "handle",
            },
        }
    }

    fn encode(self) -> u64 {
        match self {
            CallKind::Create => 1,
            CallKind::Snapshot => 2,
            CallKind::Restore => 3,
            CallKind::Drop => 4,
            CallKind::Handle(k) => 0x100 | (k.0 as u64 & 0xff),
        }
    }

    fn decode(v: u64) -> Option<CallKind> {
        Some(match v {
            1 => CallKind::Create,
            2 => CallKind::Snapshot,
            3 => CallKind::Restore,
            4 => CallKind::Drop,
            v if v & 0x100 != 0 => CallKind::Handle(InputKind((v & 0xff) as _)),
            _ => return None,
        })
    }
}

/// The call in progress on one producer's thread.
///
/// `state` is `started_ns << 1 | stuck`: 0 while no call runs. The stuck bit belongs to the
/// call whose start it is stored with.
#[derive(Debug, Default)]
pub struct CallClock {
    state: AtomicU64,
    kind: AtomicU64,
    /// Times a call was found stuck.
    pub stuck_total: Counter,
}

/// A call that has run past the bound, as the watchdog found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stuck {
    /// The call.
    pub call: CallKind,
    /// How long it has run.
    pub elapsed: Duration,
}

impl CallClock {
    /// The producer's thread enters the plugin.
    pub fn begin(&self, call: CallKind, now_ns: u64) {
        self.kind.store(call.encode(), Ordering::Relaxed);
        self.state.store(now_ns.max(1) << 1, Ordering::Release);
    }

    /// The call returned. If it had been found stuck, returns how long it ran (the producer has
    /// recovered).
    pub fn end(&self, now_ns: u64) -> Option<Duration> {
        let old = self.state.swap(0, Ordering::AcqRel);
        (old & 1 == 1).then(|| Duration::from_nanos(now_ns.saturating_sub(old >> 1)))
    }

    /// The watchdog's look: the running call if it has run for `bound` or more and was not
    /// flagged yet (it is flagged now, and counted).
    pub fn check(&self, now_ns: u64, bound: Duration) -> Option<Stuck> {
        let state = self.state.load(Ordering::Acquire);
        if state == 0 || state & 1 == 1 {
            return None;
        }
        let elapsed = Duration::from_nanos(now_ns.saturating_sub(state >> 1));
        if elapsed < bound {
            return None;
        }
        // Only the same call, still running, gets the flag.
        self.state.compare_exchange(state, state | 1, Ordering::AcqRel, Ordering::Acquire).ok()?;
        self.stuck_total.inc();
        let call = CallKind::decode(self.kind.load(Ordering::Relaxed)).unwrap_or(CallKind::Handle(InputKind(0)));
        Some(Stuck { call, elapsed })
    }

    /// Whether the running call has been found stuck.
    pub fn is_stuck(&self) -> bool {
        self.state.load(Ordering::Acquire) & 1 == 1
    }

    /// The stuck call and for how long it has run, if there is one.
    pub fn stuck_call(&self, now_ns: u64) -> Option<Stuck> {
        let state = self.state.load(Ordering::Acquire);
        if state & 1 == 0 {
            return None;
        }
        let call = CallKind::decode(self.kind.load(Ordering::Relaxed)).unwrap_or(CallKind::Handle(InputKind(0)));
        Some(Stuck { call, elapsed: Duration::from_nanos(now_ns.saturating_sub(state >> 1)) })
    }
}

/// How often a producer's intake task looks at its clock: a quarter of the bound, between 50 ms
/// and 1 s (a stuck call is reported at most a quarter bound late).
pub fn check_period(bound: Duration) -> Duration {
    (bound / 4).clamp(Duration::from_millis(50), Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn a_call_is_stuck_once_it_has_run_for_the_bound_and_is_reported_once() {
        let c = CallClock::default();
        let bound = Duration::from_secs(5);
        assert_eq!(c.check(10 * S, bound), None, "no call running");
        c.begin(CallKind::Handle(InputKind::SAMPLE), 10 * S);
        assert_eq!(c.check(14 * S, bound), None, "4 s: not yet");
        assert!(!c.is_stuck());
        let stuck = c.check(15 * S, bound).unwrap();
        assert_eq!(stuck, Stuck { call: CallKind::Handle(InputKind::SAMPLE), elapsed: Duration::from_secs(5) });
        assert_eq!(stuck.call.describe(), "handle(SAL sample)");
        assert!(c.is_stuck());
        assert_eq!(c.check(20 * S, bound), None, "reported once");
        assert_eq!(c.stuck_call(20 * S).unwrap().elapsed, Duration::from_secs(10));
        assert_eq!(c.stuck_total.get(), 1);
        // It returns at last: recovered, after 12 s.
        assert_eq!(c.end(22 * S), Some(Duration::from_secs(12)));
        assert!(!c.is_stuck() && c.stuck_call(23 * S).is_none());
    }

    #[test]
    fn calls_within_the_bound_are_never_flagged_and_end_reports_nothing() {
        let c = CallClock::default();
        let bound = Duration::from_secs(2);
        for i in 0..100u64 {
            c.begin(CallKind::Snapshot, i * S);
            assert_eq!(c.check(i * S + S, bound), None);
            assert_eq!(c.end(i * S + S), None);
        }
        assert_eq!(c.stuck_total.get(), 0);
    }

    #[test]
    fn a_flag_decided_for_a_call_that_has_ended_is_not_set_on_the_next_one() {
        let c = CallClock::default();
        let bound = Duration::from_secs(1);
        c.begin(CallKind::Restore, S);
        // The watchdog read the state of the first call; the call ends and another starts
        // before its compare-and-swap: the new call is not flagged.
        let seen = c.state.load(Ordering::Acquire);
        c.end(3 * S);
        c.begin(CallKind::Handle(InputKind::TICK), 3 * S);
        assert!(c.state.compare_exchange(seen, seen | 1, Ordering::AcqRel, Ordering::Acquire).is_err());
        assert_eq!(c.check(3 * S + S / 2, bound), None, "the new call has run 0.5 s");
        let stuck = c.check(5 * S, bound).unwrap();
        assert_eq!(stuck.call, CallKind::Handle(InputKind::TICK));
        assert_eq!(stuck.elapsed, Duration::from_secs(2));
    }

    #[test]
    fn the_check_period_is_a_quarter_of_the_bound_within_limits() {
        assert_eq!(check_period(Duration::from_secs(2)), Duration::from_millis(500));
        assert_eq!(check_period(Duration::from_secs(60)), Duration::from_secs(1));
        assert_eq!(check_period(Duration::from_millis(10)), Duration::from_millis(50));
    }
}
