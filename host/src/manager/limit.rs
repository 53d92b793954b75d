//! Rate limiting of repeated log lines from the manager link.
//!
//! A hostile or broken manager can send thousands of bad frames a second; one WARN each would
//! fill the disk (129k lines, 24 MB in a fuzz run). Each kind of repeated line gets a
//! [`LogLimit`]: a burst of lines per window is logged, the rest are counted, and the next line
//! logged says how many were suppressed.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lines logged per window before suppression starts.
const BURST: u32 = 10;

/// The window.
const WINDOW: Duration = Duration::from_secs(60);

/// One kind of repeated line.
#[derive(Debug, Default)]
pub(crate) struct LogLimit {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    window_start: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

impl LogLimit {
    /// Whether to log this occurrence: `Some(note)` to log it with `note` appended (empty, or
    /// how many lines were suppressed before it), `None` to suppress it.
    pub(crate) fn admit(&self) -> Option<String> {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> Option<String> {
        let mut s = crate::locks::lock(&self.state);
        let start = *s.window_start.get_or_insert(now);
        if now.duration_since(start) >= WINDOW {
            s.window_start = Some(now);
            s.logged = 0;
        }
        if s.logged >= BURST {
            s.suppressed += 1;
            return None;
        }
        s.logged += 1;
        let note = match std::mem::take(&mut s.suppressed) {
            0 if s.logged == BURST => {
                format!(" (more like this in the next {}s are counted, not logged)", WINDOW.as_secs())
            }
            0 => String::new(),
            n => format!(" ({n} similar lines suppressed before this one)"),
        };
        Some(note)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_logged_then_lines_are_counted_and_reported() {
        let limit = LogLimit::default();
        let t0 = Instant::now();
        let logged: Vec<String> = (0..1000).filter_map(|_| limit.admit_at(t0)).collect();
        assert_eq!(logged.len(), BURST as usize);
        assert!(logged[..BURST as usize - 1].iter().all(String::is_empty));
        assert!(logged[BURST as usize - 1].contains("counted, not logged"), "{}", logged[9]);
        let next = limit.admit_at(t0 + WINDOW).expect("a new window logs again");
        assert_eq!(next, format!(" ({} similar lines suppressed before this one)", 1000 - BURST));
        assert_eq!(limit.admit_at(t0 + WINDOW), Some(String::new()), "the count is reported once");
    }
}
