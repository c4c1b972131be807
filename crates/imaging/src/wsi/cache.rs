//! Caches for serving slides: opened slides (their structure and decoded-tile LRU) and encoded
//! Deep Zoom tiles, each bounded (slides by count, tiles by bytes) and evicted least recently used.

use std::hash::Hash;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// Entries with their sizes, and the total size.
type Sized<K, V> = (lru::LruCache<K, (V, usize)>, usize);

/// A least-recently-used map bounded by the total size of its values.
pub struct SizedLru<K: Hash + Eq, V> {
    inner: Mutex<Sized<K, V>>,
    budget: usize,
}

impl<K: Hash + Eq, V: Clone> SizedLru<K, V> {
    /// A cache holding at most `budget` size units.
    pub fn new(budget: usize) -> Self {
        SizedLru {
            inner: Mutex::new((lru::LruCache::unbounded(), 0)),
            budget,
        }
    }

    pub fn get(&self, key: &K) -> Option<V> {
        let mut g = self.inner.lock().ok()?;
        g.0.get(key).map(|(v, _)| v.clone())
    }

    /// Inserts a value of `size` units, evicting the least recently used ones to fit. A value
    /// larger than the whole budget is not kept.
    pub fn put(&self, key: K, value: V, size: usize) {
        if size > self.budget {
            return;
        }
        let Ok(mut g) = self.inner.lock() else {
            return;
        };
        let (map, used) = &mut *g;
        if let Some((_, old)) = map.put(key, (value, size)) {
            *used -= old;
        }
        *used += size;
        while *used > self.budget {
            match map.pop_lru() {
                Some((_, (_, s))) => *used -= s,
                None => break,
            }
        }
    }

    /// Drops one entry (a slide that was deleted or replaced).
    pub fn remove(&self, key: &K) {
        if let Ok(mut g) = self.inner.lock() {
            let (map, used) = &mut *g;
            if let Some((_, s)) = map.pop(key) {
                *used -= s;
            }
        }
    }

    /// (entries, size units used).
    pub fn usage(&self) -> (usize, usize) {
        self.inner
            .lock()
            .map(|g| (g.0.len(), g.1))
            .unwrap_or((0, 0))
    }
}

/// Key of an encoded Deep Zoom tile: (slide id, level, column, row).
pub type TileKey = (String, u32, u64, u64);

/// Encoded Deep Zoom tiles, bounded by bytes.
pub type TileCache = SizedLru<TileKey, Bytes>;

/// Opened slides, bounded by the bytes they were read from (each also holds up to 64 decoded
/// source tiles).
pub type SlideCache = SizedLru<String, Arc<super::Slide>>;

/// Default bound of the tile cache (bytes): ~6,000 tiles of ~10 KB.
pub const DEFAULT_TILE_CACHE_BYTES: usize = 64 << 20;
/// Default bound of the open-slide cache (bytes of the slides' sources).
pub const DEFAULT_OPEN_SLIDE_BYTES: usize = 512 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_to_stay_within_budget() {
        let c: SizedLru<u32, u32> = SizedLru::new(10);
        c.put(1, 1, 4);
        c.put(2, 2, 4);
        assert_eq!(c.get(&1), Some(1)); // 1 is now the most recent
        c.put(3, 3, 4); // 12 > 10: evicts 2
        assert_eq!(c.get(&2), None);
        assert_eq!(c.get(&1), Some(1));
        assert_eq!(c.get(&3), Some(3));
        assert_eq!(c.usage(), (2, 8));
        c.put(4, 4, 11); // larger than the budget: not kept
        assert_eq!(c.get(&4), None);
        c.put(1, 10, 2); // replacing updates the size
        assert_eq!(c.usage(), (2, 6));
        c.remove(&1);
        assert_eq!(c.usage(), (1, 4));
    }
}
