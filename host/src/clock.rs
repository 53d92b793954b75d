//! The host's wall clock: Unix time in seconds as an `f64`, the unit of every SAL timestamp,
//! every producer's `now` and the admin endpoint's ages.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix time now, in seconds. A clock set before 1970 reads as 0 rather than failing: a
/// timestamp is never a reason to stop the host.
pub fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn unix_now_is_after_2020_and_does_not_go_back() {
        let a = super::unix_now();
        let b = super::unix_now();
        assert!(a > 1_577_836_800.0, "{a}");
        assert!(b >= a);
    }
}
