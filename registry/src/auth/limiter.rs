//! Failed-login rate limit per client address: after `limit` failures in
//! a minute, that address is answered 429 until the oldest failure ages out.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The window failures are counted in.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Addresses tracked before old entries are swept out.
const SWEEP_AT: usize = 10_000;

/// Recent failed logins, per client address.
#[derive(Default)]
pub struct FailedLogins {
    recent: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl FailedLogins {
    /// `Some(seconds to wait)` when `ip` has used up its failures.
    pub fn blocked(&self, ip: IpAddr, limit: u32, now: Instant) -> Option<u64> {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let failures = recent.get_mut(&ip)?;
        while failures
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            failures.pop_front();
        }
        if failures.len() < limit as usize {
            return None;
        }
        let oldest = *failures.front()?;
        let wait = WINDOW.saturating_sub(now.duration_since(oldest));
        Some(wait.as_secs().max(1))
    }

    /// Count a failed login of `ip`.
    pub fn record(&self, ip: IpAddr, now: Instant) {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() >= SWEEP_AT {
            recent.retain(|_, failures| {
                failures
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < WINDOW)
            });
        }
        let failures = recent.entry(ip).or_default();
        failures.push_back(now);
        // Never keep more than a window's worth at the highest sane limit.
        if failures.len() > 1000 {
            failures.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_limit_until_the_window_passes() {
        let limiter = FailedLogins::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(limiter.blocked(ip, 3, t0), None, "failure {i}");
            limiter.record(ip, t0);
        }
        assert_eq!(limiter.blocked(ip, 3, t0), Some(60));
        assert_eq!(limiter.blocked(other, 3, t0), None);
        assert_eq!(
            limiter.blocked(ip, 3, t0 + Duration::from_secs(45)),
            Some(15)
        );
        assert_eq!(limiter.blocked(ip, 3, t0 + WINDOW), None);
    }
}
