//! Consistent hashing on a ring (Ketama-style): a request's key always maps to the same
//! endpoint while that endpoint exists, and removing one of N endpoints moves only the keys
//! it owned (about 1/N).

use super::gcd;
use super::random::WeightedRandom;

/// Virtual nodes per unit of (gcd-reduced) weight.
const VNODES_PER_WEIGHT: u64 = 1024;
/// Upper bound on ring entries; weights are scaled down past it.
const MAX_RING: u64 = 1 << 17;

/// A hash ring over endpoint indices.
#[derive(Debug, Clone)]
pub struct RingHash {
    ring: Box<[(u64, u32)]>,
    fallback: WeightedRandom,
}

impl RingHash {
    /// Builds the ring from each endpoint's stable name (its address) and weight.
    pub fn new<'a>(endpoints: impl Iterator<Item = (&'a str, u32)> + Clone) -> Self {
        let weights: Vec<u32> = endpoints.clone().map(|(_, w)| w).collect();
        let g = weights.iter().fold(0u32, |g, &w| gcd(g, w)).max(1);
        let units: u64 = weights.iter().map(|&w| u64::from(w / g)).sum();
        let per_unit = if units * VNODES_PER_WEIGHT > MAX_RING {
            (MAX_RING / units.max(1)).max(1)
        } else {
            VNODES_PER_WEIGHT
        };
        let mut ring = Vec::with_capacity((units * per_unit) as usize);
        for (idx, (name, w)) in endpoints.enumerate() {
            let vnodes = u64::from(w / g) * per_unit;
            for v in 0..vnodes {
                let mut key = Vec::with_capacity(name.len() + 8);
                key.extend_from_slice(name.as_bytes());
                key.push(b'#');
                key.extend_from_slice(v.to_string().as_bytes());
                ring.push((hash64(&key), idx as u32));
            }
        }
        ring.sort_unstable();
        RingHash {
            ring: ring.into_boxed_slice(),
            fallback: WeightedRandom::new(&weights),
        }
    }

    /// The owner of `key`'s hash; a request without a key is placed at random by weight.
    pub fn pick(&self, key: Option<&[u8]>) -> Option<usize> {
        let Some(key) = key else {
            return self.fallback.pick();
        };
        if self.ring.is_empty() {
            return None;
        }
        let h = hash64(key);
        let i = self.ring.partition_point(|&(p, _)| p < h);
        let (_, idx) = self.ring[if i == self.ring.len() { 0 } else { i }];
        Some(idx as usize)
    }
}

/// A stable 64-bit hash (FNV-1a, then the murmur3 finalizer for avalanche), identical across
/// processes and versions so that every sidecar maps a key to the same endpoint.
fn hash64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(names: &[&str]) -> RingHash {
        RingHash::new(names.iter().map(|n| (*n, 1)))
    }

    #[test]
    fn a_key_always_lands_on_the_same_endpoint() {
        let r = ring(&["a:1", "b:1", "c:1"]);
        for user in 0..100 {
            let key = format!("user-{user}");
            let first = r.pick(Some(key.as_bytes()));
            assert!((0..10).all(|_| r.pick(Some(key.as_bytes())) == first));
        }
    }

    #[test]
    fn removing_one_of_n_moves_about_one_nth_of_keys() {
        let names = [
            "10.0.0.1:80",
            "10.0.0.2:80",
            "10.0.0.3:80",
            "10.0.0.4:80",
            "10.0.0.5:80",
        ];
        let full = ring(&names);
        let fewer = ring(&names[..4]);
        let mut moved = 0;
        let keys = 10_000;
        for k in 0..keys {
            let key = format!("key-{k}");
            let before = names[full.pick(Some(key.as_bytes())).unwrap()];
            let after = names[fewer.pick(Some(key.as_bytes())).unwrap()];
            if before != after {
                assert_eq!(before, names[4], "only keys of the removed endpoint move");
                moved += 1;
            }
        }
        let share = f64::from(moved) / f64::from(keys);
        assert!((share - 0.2).abs() < 0.05, "moved {share}");
    }

    #[test]
    fn weights_are_honoured_within_two_points() {
        let r = RingHash::new([("a:1", 1u32), ("b:1", 3)].into_iter());
        let on_b = (0..10_000)
            .filter(|k| r.pick(Some(format!("k{k}").as_bytes())) == Some(1))
            .count();
        assert!((on_b as f64 / 100.0 - 75.0).abs() < 2.0, "{on_b}");
    }

    #[test]
    fn the_hash_is_stable() {
        assert_eq!(hash64(b"user-42"), hash64(b"user-42"));
        assert_ne!(hash64(b"user-42"), hash64(b"user-43"));
    }
}
