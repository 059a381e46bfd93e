//! Smooth weighted round robin (nginx's algorithm), precomputed into a sequence so that a
//! pick is one relaxed atomic increment: no lock, no per-pick arithmetic over endpoints.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use super::gcd;

/// Longest sequence kept; larger weight sums are scaled down proportionally.
const MAX_SEQUENCE: u64 = 1 << 16;

/// A smooth weighted round-robin schedule over endpoint indices.
#[derive(Debug)]
pub struct RoundRobin {
    sequence: Box<[u32]>,
    next: AtomicUsize,
}

impl RoundRobin {
    /// Builds the schedule. Endpoints of weight 0 never appear in it.
    pub fn new(weights: &[u32]) -> Self {
        let weights = reduce(weights);
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        let mut current = vec![0i64; weights.len()];
        let mut sequence = Vec::with_capacity(total as usize);
        for _ in 0..total {
            let mut best = 0;
            for (i, &w) in weights.iter().enumerate() {
                current[i] += i64::from(w);
                if current[i] > current[best] {
                    best = i;
                }
            }
            current[best] -= total as i64;
            sequence.push(best as u32);
        }
        RoundRobin {
            sequence: sequence.into_boxed_slice(),
            next: AtomicUsize::new(0),
        }
    }

    /// The index the next [`RoundRobin::pick`] returns, without taking it (for
    /// `/explain`; concurrent requests may take it first).
    pub fn peek(&self) -> Option<usize> {
        if self.sequence.is_empty() {
            return None;
        }
        let n = self.next.load(Relaxed);
        Some(self.sequence[n % self.sequence.len()] as usize)
    }

    /// The next endpoint index, or `None` when every weight is zero.
    pub fn pick(&self) -> Option<usize> {
        if self.sequence.is_empty() {
            return None;
        }
        let n = self.next.fetch_add(1, Relaxed);
        Some(self.sequence[n % self.sequence.len()] as usize)
    }
}

/// Divides weights by their common divisor and scales them so the sum fits the sequence.
fn reduce(weights: &[u32]) -> Vec<u32> {
    let g = weights.iter().fold(0u32, |g, &w| gcd(g, w));
    if g == 0 {
        return vec![0; weights.len()];
    }
    let mut out: Vec<u32> = weights.iter().map(|&w| w / g).collect();
    let total: u64 = out.iter().map(|&w| u64::from(w)).sum();
    if total > MAX_SEQUENCE {
        for w in &mut out {
            if *w > 0 {
                *w = ((u64::from(*w) * MAX_SEQUENCE / total) as u32).max(1);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(rr: &RoundRobin, n: usize, picks: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for _ in 0..picks {
            c[rr.pick().unwrap()] += 1;
        }
        c
    }

    #[test]
    fn equal_weights_give_exactly_equal_counts() {
        let rr = RoundRobin::new(&[1, 1, 1]);
        assert_eq!(counts(&rr, 3, 9_999), vec![3_333, 3_333, 3_333]);
    }

    #[test]
    fn weights_are_honoured_exactly_and_smoothly() {
        let rr = RoundRobin::new(&[5, 1, 1]);
        let seq: Vec<usize> = (0..7).map(|_| rr.pick().unwrap()).collect();
        assert_eq!(seq, vec![0, 0, 1, 0, 2, 0, 0], "nginx's smooth order");
        assert_eq!(counts(&rr, 3, 7_000), vec![5_000, 1_000, 1_000]);
    }

    #[test]
    fn zero_weight_gets_nothing_and_all_zero_gets_none() {
        let rr = RoundRobin::new(&[0, 2]);
        assert_eq!(counts(&rr, 2, 100), vec![0, 100]);
        assert_eq!(RoundRobin::new(&[0, 0]).pick(), None);
        assert_eq!(RoundRobin::new(&[]).pick(), None);
    }

    #[test]
    fn huge_weights_are_scaled_into_a_bounded_sequence() {
        let rr = RoundRobin::new(&[4_000_000, 1_000_000, 999_999]);
        assert!(rr.sequence.len() as u64 <= MAX_SEQUENCE + 3);
        let c = counts(&rr, 3, 100_000);
        assert!((c[0] as f64 / 100_000.0 - 0.666).abs() < 0.01, "{c:?}");
    }
}
