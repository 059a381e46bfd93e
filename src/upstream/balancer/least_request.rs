//! Least request (alias least connection): prefer the endpoint with the fewest requests in
//! flight, counted until the response body ends.
//!
//! With few endpoints every one is compared (a full scan is cheaper than randomness and
//! exact); with many, two weighted-random candidates are compared (power of two choices).
//! Unequal weights follow Envoy: an endpoint's effective weight is `weight / (in_flight + 1)`,
//! so an idle fleet is chosen in proportion to weight and a loaded endpoint is avoided.

use super::random::WeightedRandom;
use crate::rand;

/// Endpoint counts up to this are scanned in full.
const FULL_SCAN_MAX: usize = 4;

/// The least-request picker for one endpoint set.
#[derive(Debug, Clone)]
pub struct LeastRequest {
    weights: Box<[u32]>,
    uniform: bool,
    random: WeightedRandom,
}

impl LeastRequest {
    /// Builds the picker for endpoints with these weights.
    pub fn new(weights: &[u32]) -> Self {
        let uniform = weights.iter().all(|&w| w == weights[0]);
        LeastRequest {
            weights: weights.into(),
            uniform,
            random: WeightedRandom::new(weights),
        }
    }

    /// Picks an index given each endpoint's in-flight count, or `None` when all weights are 0.
    pub fn pick(&self, in_flight: impl Fn(usize) -> u64) -> Option<usize> {
        let n = self.weights.len();
        if self.random.total() == 0 {
            return None;
        }
        if n <= FULL_SCAN_MAX {
            return if self.uniform {
                self.scan_least(&in_flight)
            } else {
                self.scan_weighted(&in_flight)
            };
        }
        let a = self.random.pick()?;
        let mut b = self.random.pick()?;
        if b == a {
            b = self.random.pick()?;
        }
        // a wins ties, so an idle fleet follows the weighted-random distribution of a.
        let (wa, wb) = (u64::from(self.weights[a]), u64::from(self.weights[b]));
        if in_flight(a) * wb <= in_flight(b) * wa {
            Some(a)
        } else {
            Some(b)
        }
    }

    /// The endpoint [`LeastRequest::pick`] most likely chooses, for `/explain`: the one with
    /// the fewest requests in flight for its weight (greatest `weight / (in_flight + 1)`,
    /// the first of equals); with equal weights, the fewest in flight.
    pub fn fewest(&self, in_flight: impl Fn(usize) -> u64) -> Option<usize> {
        let score = |i: usize| (u128::from(self.weights[i]), u128::from(in_flight(i)) + 1);
        let mut best: Option<usize> = None;
        for i in (0..self.weights.len()).filter(|&i| self.weights[i] > 0) {
            let (wi, li) = score(i);
            // w_i / l_i > w_b / l_b, without division.
            if best.is_none_or(|b| {
                let (wb, lb) = score(b);
                wi * lb > wb * li
            }) {
                best = Some(i);
            }
        }
        best
    }

    /// Equal weights: the minimum in flight, ties broken uniformly at random.
    fn scan_least(&self, in_flight: &impl Fn(usize) -> u64) -> Option<usize> {
        let mut best = None;
        let mut best_load = u64::MAX;
        let mut ties = 0u64;
        for i in 0..self.weights.len() {
            let load = in_flight(i);
            if load < best_load {
                best_load = load;
                best = Some(i);
                ties = 1;
            } else if load == best_load {
                ties += 1;
                if rand::below(ties) == 0 {
                    best = Some(i);
                }
            }
        }
        best
    }

    /// Unequal weights: random in proportion to `weight / (in_flight + 1)`.
    fn scan_weighted(&self, in_flight: &impl Fn(usize) -> u64) -> Option<usize> {
        let mut effective = [0f64; FULL_SCAN_MAX];
        let mut total = 0.0;
        for (i, &w) in self.weights.iter().enumerate() {
            effective[i] = f64::from(w) / (in_flight(i) + 1) as f64;
            total += effective[i];
        }
        let mut r = (rand::next_u64() >> 11) as f64 / (1u64 << 53) as f64 * total;
        for (i, &e) in effective[..self.weights.len()].iter().enumerate() {
            if r < e {
                return Some(i);
            }
            r -= e;
        }
        self.weights.iter().rposition(|&w| w > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(lr: &LeastRequest, n: usize, load: impl Fn(usize) -> u64) -> Vec<f64> {
        let mut c = vec![0u32; n];
        for _ in 0..10_000 {
            c[lr.pick(&load).unwrap()] += 1;
        }
        c.iter().map(|&x| f64::from(x) / 100.0).collect()
    }

    #[test]
    fn full_scan_picks_the_least_loaded() {
        let lr = LeastRequest::new(&[1, 1, 1]);
        let loads = [5u64, 1, 3];
        assert!((0..100).all(|_| lr.pick(|i| loads[i]) == Some(1)));
    }

    #[test]
    fn idle_endpoints_share_evenly_or_by_weight() {
        let lr = LeastRequest::new(&[1, 1, 1, 1]);
        for s in share(&lr, 4, |_| 0) {
            assert!((s - 25.0).abs() < 2.0);
        }
        let lr = LeastRequest::new(&[1, 3]);
        let s = share(&lr, 2, |_| 0);
        assert!((s[1] - 75.0).abs() < 2.0, "{s:?}");
        let weights = [1, 2, 3, 4, 5, 5];
        let lr = LeastRequest::new(&weights);
        let s = share(&lr, 6, |_| 0);
        for (i, w) in weights.iter().enumerate() {
            assert!((s[i] - f64::from(*w) * 5.0).abs() < 2.0, "{s:?}");
        }
    }

    #[test]
    fn two_choices_avoid_a_loaded_endpoint_among_many() {
        let lr = LeastRequest::new(&[1; 10]);
        let s = share(&lr, 10, |i| if i == 0 { 50 } else { 0 });
        assert!(
            s[0] < 2.0,
            "the loaded endpoint only wins when drawn twice: {s:?}"
        );
    }

    #[test]
    fn all_zero_weights_pick_nothing() {
        assert_eq!(LeastRequest::new(&[0, 0]).pick(|_| 0), None);
        assert_eq!(LeastRequest::new(&[]).pick(|_| 0), None);
    }
}
