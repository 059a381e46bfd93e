//! Load balancers: given a service's endpoint set, pick one endpoint for a request.
//! Each algorithm lives in its own file and works on endpoint indices, so it can be tested
//! with numbers alone.

mod least_request;
mod random;
mod ring_hash;
mod round_robin;

pub use least_request::LeastRequest;
pub use random::WeightedRandom;
pub use ring_hash::RingHash;
pub use round_robin::RoundRobin;

use crate::config::LoadBalancer;

/// The balancer of one endpoint set, rebuilt whenever the set changes.
#[derive(Debug)]
pub enum Balancer {
    /// Smooth weighted round robin.
    RoundRobin(RoundRobin),
    /// Least in-flight requests.
    LeastRequest(LeastRequest),
    /// Weighted random.
    Random(WeightedRandom),
    /// Consistent hash of a header.
    RingHash(RingHash),
}

impl Balancer {
    /// Builds the balancer of `kind` for endpoints with these names and weights.
    pub fn new<'a>(
        kind: LoadBalancer,
        endpoints: impl Iterator<Item = (&'a str, u32)> + Clone,
    ) -> Self {
        let weights: Vec<u32> = endpoints.clone().map(|(_, w)| w).collect();
        match kind {
            LoadBalancer::RoundRobin => Balancer::RoundRobin(RoundRobin::new(&weights)),
            LoadBalancer::LeastRequest => Balancer::LeastRequest(LeastRequest::new(&weights)),
            LoadBalancer::Random => Balancer::Random(WeightedRandom::new(&weights)),
            LoadBalancer::RingHash => Balancer::RingHash(RingHash::new(endpoints)),
        }
    }

    /// Picks an endpoint index given a hash key (ring hash only) and in-flight counts.
    pub fn pick(&self, key: Option<&[u8]>, in_flight: impl Fn(usize) -> u64) -> Option<usize> {
        match self {
            Balancer::RoundRobin(b) => b.pick(),
            Balancer::LeastRequest(b) => b.pick(in_flight),
            Balancer::Random(b) => b.pick(),
            Balancer::RingHash(b) => b.pick(key),
        }
    }
}

/// What a balancer would most likely choose, without choosing (for `/explain`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Likely {
    /// Round robin: this index is next.
    Next(usize),
    /// Least request: this index has the fewest requests in flight.
    Fewest(usize),
    /// Ring hash: the request's key hashes to this index.
    Hashed(usize),
    /// Random (or ring hash without a key): any index, by weight.
    AtRandom,
    /// No endpoint can be chosen.
    Nothing,
}

impl Balancer {
    /// What [`Balancer::pick`] would most likely return for `key` and these in-flight
    /// counts, without advancing any state.
    pub fn likely(&self, key: Option<&[u8]>, in_flight: impl Fn(usize) -> u64) -> Likely {
        let found = |i: Option<usize>, f: fn(usize) -> Likely| i.map_or(Likely::Nothing, f);
        match self {
            Balancer::RoundRobin(b) => found(b.peek(), Likely::Next),
            Balancer::LeastRequest(b) => found(b.fewest(in_flight), Likely::Fewest),
            Balancer::Random(b) if b.total() == 0 => Likely::Nothing,
            Balancer::Random(_) => Likely::AtRandom,
            Balancer::RingHash(b) => match key {
                Some(_) => found(b.pick(key), Likely::Hashed),
                None => Likely::AtRandom,
            },
        }
    }
}

/// Greatest common divisor, for reducing weights before building schedules and rings.
fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints() -> impl Iterator<Item = (&'static str, u32)> + Clone {
        [("10.0.0.1:80", 1), ("10.0.0.2:80", 2), ("10.0.0.3:80", 1)].into_iter()
    }

    #[test]
    fn likely_tells_the_next_pick_without_taking_it() {
        let rr = Balancer::new(LoadBalancer::RoundRobin, endpoints());
        for _ in 0..10 {
            let Likely::Next(next) = rr.likely(None, |_| 0) else {
                panic!("round robin names its next endpoint");
            };
            assert_eq!(
                rr.likely(None, |_| 0),
                Likely::Next(next),
                "peeking takes nothing"
            );
            assert_eq!(rr.pick(None, |_| 0), Some(next));
        }
        let hash = Balancer::new(LoadBalancer::RingHash, endpoints());
        let key = Some(&b"user-7"[..]);
        let Likely::Hashed(owner) = hash.likely(key, |_| 0) else {
            panic!("ring hash names the key's owner");
        };
        assert_eq!(hash.pick(key, |_| 0), Some(owner));
        assert_eq!(hash.likely(None, |_| 0), Likely::AtRandom);
        let lr = Balancer::new(LoadBalancer::LeastRequest, endpoints());
        let load = [0, 3, 0];
        assert_eq!(
            lr.likely(None, |i| load[i]),
            Likely::Fewest(0),
            "1/1 beats 2/4 and comes before the other 1/1"
        );
        let load = [1, 1, 1];
        assert_eq!(lr.likely(None, |i| load[i]), Likely::Fewest(1), "2/2");
        let even = Balancer::new(LoadBalancer::LeastRequest, [("a", 1), ("b", 1)].into_iter());
        assert_eq!(even.likely(None, |i| [4, 2][i]), Likely::Fewest(1));
        assert_eq!(even.pick(None, |i| [4, 2][i]), Some(1));
        let random = Balancer::new(LoadBalancer::Random, endpoints());
        assert_eq!(random.likely(None, |_| 0), Likely::AtRandom);
        let empty = Balancer::new(LoadBalancer::RoundRobin, std::iter::empty());
        assert_eq!(empty.likely(None, |_| 0), Likely::Nothing);
    }
}
