//! Sign-in throttling: after `MAX_FAILURES` wrong passwords for one user name within `WINDOW`, further attempts
//! for that name are refused for `LOCKOUT` (429), whether the name exists or not, so the answer reveals nothing.
//!
//! Kept in memory on purpose: a restart forgets the counters, which costs an attacker nothing they could not get
//! by waiting, and the node needs no extra table. Hand-written because the rate-limit crates (governor,
//! tower_governor) limit request rates per key, not failures per account with a lockout.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const MAX_FAILURES: u32 = 5;
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
pub const LOCKOUT: Duration = Duration::from_secs(5 * 60);
/// Beyond this many tracked names, stale entries are pruned before a new one is added.
const PRUNE_ABOVE: usize = 10_000;

#[derive(Clone, Copy, Debug)]
struct Entry {
    failures: u32,
    first_failure: Instant,
    locked_until: Option<Instant>,
}

#[derive(Debug, Default)]
pub struct LoginThrottle {
    entries: Mutex<HashMap<String, Entry>>,
}

fn key(username: &str) -> String {
    username.trim().to_lowercase()
}

impl LoginThrottle {
    /// `Err(wait)` while the name is locked out.
    pub fn check(&self, username: &str, now: Instant) -> Result<(), Duration> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match entries.get(&key(username)).and_then(|e| e.locked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Count a wrong password; locks the name when the count reaches `MAX_FAILURES` within `WINDOW`.
    pub fn failed(&self, username: &str, now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() > PRUNE_ABOVE {
            entries.retain(|_, e| {
                now.duration_since(e.first_failure) < WINDOW
                    || e.locked_until.is_some_and(|u| u > now)
            });
        }
        let e = entries.entry(key(username)).or_insert(Entry {
            failures: 0,
            first_failure: now,
            locked_until: None,
        });
        if now.duration_since(e.first_failure) >= WINDOW || e.locked_until.is_some_and(|u| u <= now)
        {
            *e = Entry {
                failures: 0,
                first_failure: now,
                locked_until: None,
            };
        }
        e.failures += 1;
        if e.failures >= MAX_FAILURES {
            e.locked_until = Some(now + LOCKOUT);
        }
    }

    /// A successful sign-in clears the name's record.
    pub fn succeeded(&self, username: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.remove(&key(username));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_repeated_failures_and_unlocks_later() {
        let t = LoginThrottle::default();
        let t0 = Instant::now();
        for i in 0..MAX_FAILURES {
            assert!(t.check("Dr.Wang", t0).is_ok(), "attempt {i} allowed");
            t.failed("dr.wang", t0);
        }
        let wait = t
            .check(" DR.WANG ", t0 + Duration::from_secs(1))
            .unwrap_err();
        assert!(wait <= LOCKOUT && wait > LOCKOUT - Duration::from_secs(2));
        assert!(t.check("dr.li", t0).is_ok(), "other names are not affected");
        assert!(t.check("dr.wang", t0 + LOCKOUT).is_ok());
        // After the lockout the count starts again.
        t.failed("dr.wang", t0 + LOCKOUT);
        assert!(t.check("dr.wang", t0 + LOCKOUT).is_ok());
    }

    #[test]
    fn failures_spread_beyond_the_window_do_not_lock() {
        let t = LoginThrottle::default();
        let t0 = Instant::now();
        for i in 0..(MAX_FAILURES * 2) {
            let at = t0 + WINDOW / 2 * i;
            t.failed("admin", at);
            assert!(t.check("admin", at).is_ok(), "failure {i}");
        }
    }

    #[test]
    fn success_clears() {
        let t = LoginThrottle::default();
        let t0 = Instant::now();
        for _ in 0..MAX_FAILURES - 1 {
            t.failed("admin", t0);
        }
        t.succeeded("admin");
        t.failed("admin", t0);
        assert!(t.check("admin", t0).is_ok());
    }
}
