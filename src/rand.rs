//! A fast, lock-free, per-thread random source for load balancing and traffic splits.
//!
//! Balancing needs uniform, cheap numbers, not cryptographic ones: a thread-local
//! xorshift64* generator costs a few instructions and never contends across workers.

use std::cell::Cell;
use std::hash::{BuildHasher, Hasher};

thread_local! {
    static STATE: Cell<u64> = Cell::new(seed());
}

/// Seeds each thread differently, from the process's randomly keyed std hasher.
fn seed() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    h.finish() | 1
}

/// Next uniformly distributed 64-bit value.
pub fn next_u64() -> u64 {
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}

/// Uniform value in `0..n` (Lemire's multiply-shift; `n` must be non-zero).
pub fn below(n: u64) -> u64 {
    ((next_u64() as u128 * n as u128) >> 64) as u64
}

/// True with probability `percent`/100.
pub fn chance(percent: f64) -> bool {
    if percent <= 0.0 {
        return false;
    }
    if percent >= 100.0 {
        return true;
    }
    (next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64) * 100.0 < percent
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_covers_the_range_evenly() {
        let mut counts = [0u32; 4];
        for _ in 0..40_000 {
            counts[below(4) as usize] += 1;
        }
        for c in counts {
            assert!((9_400..10_600).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn chance_respects_bounds_and_rate() {
        assert!(!chance(0.0));
        assert!(chance(100.0));
        let hits = (0..100_000).filter(|_| chance(10.0)).count();
        assert!((9_500..10_500).contains(&hits), "{hits}");
    }
}
