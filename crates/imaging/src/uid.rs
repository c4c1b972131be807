//! UID generation under the `2.25` root (PS3.5 B.2): a UUID-sized random number written in
//! decimal. Uniqueness, not secrecy, is what matters, so std's randomly seeded SipHash is enough
//! and no random-number crate is needed.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(d.as_nanos());
    }
    h.finish()
}

/// A new globally unique UID such as `2.25.123…` (at most 44 characters).
pub fn new_uid() -> String {
    let value = (u128::from(random_u64()) << 64 | u128::from(random_u64())) >> 6;
    format!("2.25.{value}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_valid_and_distinct() {
        let a = new_uid();
        let b = new_uid();
        assert_ne!(a, b);
        assert!(crate::archive::is_valid_uid(&a), "{a}");
        assert!(a.len() <= 64);
    }
}
