//! Weighted random choice over endpoint indices: a binary search in cumulative weights.

use crate::rand;

/// Picks indices with probability proportional to their weight.
#[derive(Debug, Clone)]
pub struct WeightedRandom {
    cumulative: Box<[u64]>,
}

impl WeightedRandom {
    /// Builds the cumulative table; weight-0 entries are never picked.
    pub fn new(weights: &[u32]) -> Self {
        let mut sum = 0u64;
        let cumulative = weights
            .iter()
            .map(|&w| {
                sum += u64::from(w);
                sum
            })
            .collect();
        WeightedRandom { cumulative }
    }

    /// Sum of all weights.
    pub fn total(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }

    /// A random index, or `None` when every weight is zero.
    pub fn pick(&self) -> Option<usize> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let r = rand::below(total);
        Some(self.cumulative.partition_point(|&c| c <= r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_honoured_within_two_points() {
        let wr = WeightedRandom::new(&[1, 2, 7]);
        let mut c = [0u32; 3];
        for _ in 0..10_000 {
            c[wr.pick().unwrap()] += 1;
        }
        for (i, expect) in [10.0, 20.0, 70.0].iter().enumerate() {
            let got = f64::from(c[i]) / 100.0;
            assert!((got - expect).abs() < 2.0, "{c:?}");
        }
    }

    #[test]
    fn zero_weights_are_never_picked() {
        let wr = WeightedRandom::new(&[0, 3, 0]);
        assert!((0..1000).all(|_| wr.pick() == Some(1)));
        assert_eq!(WeightedRandom::new(&[0, 0]).pick(), None);
    }
}
