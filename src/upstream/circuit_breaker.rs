//! The Hystrix circuit breaker of one service (DESIGN §3 `circuit_breaker`).
//!
//! A rolling window of `buckets` buckets spanning `window` counts the outcomes of the
//! service's requests. When the window holds at least `request_volume_threshold` requests
//! and at least `error_threshold_percent` of them failed, the breaker opens: every request
//! is refused at once (503 `circuit_open`) instead of piling onto a failing service. After
//! `sleep_window` the next request turns it half-open and up to `half_open_requests` trial
//! requests go through; if they all succeed it closes with a fresh window, if any fails it
//! opens again for another `sleep_window`.
//!
//! [`CircuitBreaker::admit`] and [`Admission::record`] run on every request, so the closed
//! state takes no lock: the state and its generation share one atomic word, and each bucket
//! is a set of atomic counters stamped with the bucket epoch they count. Only state
//! transitions, which are rare, take a mutex.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::time::Instant;

use super::outcome::Outcome;
use crate::config::{self, format_duration};
use crate::error::{ErrorCode, ProxyError};
use crate::telemetry::metrics::{
    BreakerStateLabels, BreakerTransitionLabels, Metrics, ServiceLabels,
};

/// Where a breaker stands; exported as the `state` label of `weir_circuit_breaker_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Requests flow; outcomes are counted in the rolling window.
    Closed,
    /// Requests are refused until the sleep window has passed.
    Open,
    /// A few trial requests decide whether the service has recovered.
    HalfOpen,
}

impl BreakerState {
    /// Every state, in the order of their numeric encoding.
    const ALL: [BreakerState; 3] = [
        BreakerState::Closed,
        BreakerState::Open,
        BreakerState::HalfOpen,
    ];

    /// The `state` label value and the word used in refusals: `closed`, `open`, `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    fn from_bits(bits: u64) -> Self {
        match bits {
            0 => BreakerState::Closed,
            1 => BreakerState::Open,
            _ => BreakerState::HalfOpen,
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The transitions a breaker can make, in the order their counters are resolved.
const TRANSITIONS: [(BreakerState, BreakerState); 4] = [
    (BreakerState::Closed, BreakerState::Open),
    (BreakerState::Open, BreakerState::HalfOpen),
    (BreakerState::HalfOpen, BreakerState::Closed),
    (BreakerState::HalfOpen, BreakerState::Open),
];

// === impl CircuitBreaker ===

/// The circuit breaker of one service. Cheap to consult on every request; the
/// [`Admission`]s it hands out own a reference to its state, so they can be kept across
/// `.await` points and outlive a configuration reload.
pub struct CircuitBreaker {
    inner: Arc<BreakerInner>,
}

impl CircuitBreaker {
    /// A closed breaker for `service`, with its metric handles resolved once (the
    /// `closed` state gauge starts at 1).
    pub fn new(service: &str, cfg: &config::CircuitBreaker, metrics: &Metrics) -> Self {
        let buckets = cfg.buckets.max(1);
        let window_nanos = u64::try_from(cfg.window.as_nanos()).unwrap_or(u64::MAX);
        let state = BreakerState::ALL.map(|s| {
            metrics
                .breaker_state
                .get_or_create_owned(&BreakerStateLabels {
                    service: service.to_string(),
                    state: s.as_str().to_string(),
                })
        });
        state[BreakerState::Closed as usize].set(1);
        state[BreakerState::Open as usize].set(0);
        state[BreakerState::HalfOpen as usize].set(0);
        let transitions = TRANSITIONS.map(|(from, to)| {
            metrics
                .breaker_transitions
                .get_or_create_owned(&BreakerTransitionLabels {
                    service: service.to_string(),
                    from: from.as_str().to_string(),
                    to: to.as_str().to_string(),
                })
        });
        let rejected = metrics
            .breaker_rejected
            .get_or_create_owned(&ServiceLabels {
                service: service.to_string(),
            });
        CircuitBreaker {
            inner: Arc::new(BreakerInner {
                service: Arc::from(service),
                window: cfg.window,
                request_volume_threshold: u64::from(cfg.request_volume_threshold),
                error_threshold_percent: cfg.error_threshold_percent,
                sleep_nanos: u64::try_from(cfg.sleep_window.as_nanos()).unwrap_or(u64::MAX),
                max_trials: u16::try_from(cfg.half_open_requests.max(1)).unwrap_or(u16::MAX),
                origin: Instant::now(),
                phase: AtomicU64::new(pack_phase(0, BreakerState::Closed)),
                open_until: AtomicU64::new(0),
                open_cause: AtomicU64::new(0),
                trials: AtomicU64::new(0),
                transitions: Mutex::new(()),
                rolling: Window::new(buckets, (window_nanos / u64::from(buckets)).max(1)),
                metrics: BreakerMetrics {
                    state,
                    transitions,
                    rejected,
                },
            }),
        }
    }

    /// Asks whether a request may be sent now. `Ok`: send it, and resolve the
    /// [`Admission`] with its outcome (dropping it unresolved means cancelled). `Err`: the
    /// breaker is open, or half-open with every trial slot taken; the request must be
    /// answered with the refusal without touching the service.
    pub fn admit(&self) -> Result<Admission, Refusal> {
        let inner = &self.inner;
        loop {
            let phase = inner.phase.load(Ordering::Acquire);
            let (generation, state) = unpack_phase(phase);
            match state {
                BreakerState::Closed => return Ok(Admission::new(inner, generation, false)),
                BreakerState::Open => {
                    let now = inner.now_nanos();
                    if now < inner.open_until.load(Ordering::Relaxed) {
                        return Err(inner.refuse_open());
                    }
                    if inner.transition(phase, Why::SleepElapsed, now) {
                        // Entering half-open took the first trial slot for this request.
                        return Ok(Admission::new(inner, generation + 1, true));
                    }
                    // Another request moved the breaker on first: look again.
                }
                BreakerState::HalfOpen => {
                    let max = inner.max_trials;
                    let taken =
                        inner
                            .trials
                            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
                                let t = Trials::unpack(word);
                                (t.tag == tag(generation) && t.taken < max).then(|| {
                                    Trials {
                                        taken: t.taken + 1,
                                        ..t
                                    }
                                    .pack()
                                })
                            });
                    match taken {
                        Ok(_) => return Ok(Admission::new(inner, generation, true)),
                        Err(word) if Trials::unpack(word).tag == tag(generation) => {
                            return Err(inner.refuse_half_open(Trials::unpack(word)));
                        }
                        // The half-open period ended meanwhile: look again.
                        Err(_) => {}
                    }
                }
            }
        }
    }

    /// Writes the current state to `weir_circuit_breaker_state` again: a service built for
    /// a reload that was then refused shares its gauges with this one and reset them.
    pub fn publish_state(&self) {
        let now = self.state();
        for s in BreakerState::ALL {
            self.inner.metrics.state[s as usize].set(i64::from(s == now));
        }
    }

    /// The current state, for `/services` and tests.
    pub fn state(&self) -> BreakerState {
        unpack_phase(self.inner.phase.load(Ordering::Acquire)).1
    }

    /// The failures and requests the rolling window holds now, as the breaker judges them:
    /// `/hystrix.stream` reports them as Hystrix's health counts. Reads the bucket atomics
    /// and takes no lock, so a reader never slows the request path.
    pub fn window_counts(&self) -> (u64, u64) {
        let inner = &self.inner;
        let counts = inner.rolling.counts(inner.rolling.epoch(inner.now_nanos()));
        (counts.failed, counts.total)
    }
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("service", &self.inner.service)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

// === impl Admission ===

/// Permission to send one request through a breaker. Resolve it with [`Admission::record`]
/// once the attempt's outcome is known; dropping it unresolved means the request was
/// cancelled: it counts neither as a success nor as a failure, and a half-open trial slot
/// it held is freed for another request.
#[must_use = "an admission must be resolved with `record` once the outcome is known"]
pub struct Admission {
    breaker: Arc<BreakerInner>,
    /// The breaker generation it was admitted in: outcomes of requests admitted before the
    /// last state change are ignored.
    generation: u64,
    trial: bool,
    resolved: bool,
}

impl Admission {
    fn new(breaker: &Arc<BreakerInner>, generation: u64, trial: bool) -> Self {
        Admission {
            breaker: breaker.clone(),
            generation,
            trial,
            resolved: false,
        }
    }

    /// Counts how the request ended (see [`Outcome::is_failure`]): in the rolling window
    /// while closed, or as the verdict of a half-open trial.
    pub fn record(mut self, outcome: Outcome) {
        self.resolved = true;
        self.breaker
            .resolve(self.generation, self.trial, Some(outcome));
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if !self.resolved {
            self.breaker.resolve(self.generation, self.trial, None);
        }
    }
}

impl fmt::Debug for Admission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admission")
            .field("service", &self.breaker.service)
            .field("generation", &self.generation)
            .field("trial", &self.trial)
            .finish()
    }
}

// === impl Refusal ===

/// Why a breaker refused a request; its `Display` is the one-line body of the 503
/// (DESIGN §5). Only a breaker can make one.
#[derive(Debug, Clone)]
pub struct Refusal {
    service: Arc<str>,
    reason: RefusalReason,
}

#[derive(Debug, Clone, Copy)]
enum RefusalReason {
    /// Opened by the rolling window.
    Open {
        failed: u64,
        total: u64,
        window: Duration,
    },
    /// Opened again because a half-open trial failed.
    TrialFailed,
    /// Half-open with every trial slot taken.
    HalfOpen { in_flight: u16, trials: u16 },
}

impl Refusal {
    /// The `weir-error` code of a refusal: always `circuit_open`.
    pub fn error_code(&self) -> ErrorCode {
        ErrorCode::CircuitOpen
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "circuit breaker for service {} is ", self.service)?;
        match self.reason {
            RefusalReason::Open {
                failed,
                total,
                window,
            } => write!(
                f,
                "open ({failed} of {total} requests failed in the last {})",
                format_duration(window)
            ),
            RefusalReason::TrialFailed => f.write_str("open (a half-open trial request failed)"),
            RefusalReason::HalfOpen { in_flight, trials } => {
                let (noun, verb) = if in_flight == 1 {
                    ("request", "is")
                } else {
                    ("requests", "are")
                };
                if in_flight == trials {
                    write!(
                        f,
                        "half-open and its {trials} trial {noun} {verb} in flight"
                    )
                } else {
                    write!(
                        f,
                        "half-open and {in_flight} of its {trials} trial requests {verb} in flight"
                    )
                }
            }
        }
    }
}

impl std::error::Error for Refusal {}

impl From<Refusal> for ProxyError {
    fn from(refusal: Refusal) -> Self {
        ProxyError::circuit_open(&refusal)
    }
}

// === impl BreakerInner ===

/// The shared state of one breaker.
struct BreakerInner {
    service: Arc<str>,
    window: Duration,
    request_volume_threshold: u64,
    error_threshold_percent: f64,
    sleep_nanos: u64,
    max_trials: u16,
    /// Time zero of the nanosecond clock below.
    origin: Instant,
    /// The state and its generation, see [`pack_phase`]. Every transition bumps the
    /// generation, so one load tells a request which period it belongs to.
    phase: AtomicU64,
    /// While open: when (nanoseconds since `origin`) trials may start.
    open_until: AtomicU64,
    /// While open: what opened it, see [`pack_cause`].
    open_cause: AtomicU64,
    /// While half-open: the trial slots, see [`Trials`].
    trials: AtomicU64,
    /// Serializes transitions (never taken on the closed-state path).
    transitions: Mutex<()>,
    rolling: Window,
    metrics: BreakerMetrics,
}

/// Metric handles resolved when the breaker is built.
struct BreakerMetrics {
    /// `weir_circuit_breaker_state`, indexed by `BreakerState as usize`.
    state: [Gauge; 3],
    /// `weir_circuit_breaker_transitions_total`, indexed like [`TRANSITIONS`].
    transitions: [Counter; 4],
    /// `weir_circuit_breaker_rejected_total`.
    rejected: Counter,
}

/// Why a transition happens; it determines the state entered.
#[derive(Debug, Clone, Copy)]
enum Why {
    /// The rolling window crossed both thresholds.
    Tripped(Counts),
    /// The sleep window passed and a request arrived.
    SleepElapsed,
    /// Every trial request succeeded.
    TrialsSucceeded,
    /// A trial request failed.
    TrialFailed,
}

impl Why {
    fn to(self) -> BreakerState {
        match self {
            Why::Tripped(_) | Why::TrialFailed => BreakerState::Open,
            Why::SleepElapsed => BreakerState::HalfOpen,
            Why::TrialsSucceeded => BreakerState::Closed,
        }
    }
}

impl BreakerInner {
    fn now_nanos(&self) -> u64 {
        let elapsed = Instant::now().saturating_duration_since(self.origin);
        u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
    }

    /// Applies the outcome (`None`: cancelled) of a request admitted in `generation`.
    fn resolve(&self, generation: u64, trial: bool, outcome: Option<Outcome>) {
        if trial {
            self.resolve_trial(generation, outcome);
            return;
        }
        let Some(outcome) = outcome else { return };
        let phase = self.phase.load(Ordering::Acquire);
        if phase != pack_phase(generation, BreakerState::Closed) {
            // Admitted before the breaker last changed state: its outcome describes a
            // window that is gone.
            return;
        }
        let now = self.now_nanos();
        let epoch = self.rolling.epoch(now);
        let failure = outcome.is_failure();
        self.rolling.record(epoch, failure);
        // Only a failure can raise the error percentage, so only a failure is judged: a
        // healthy service pays one atomic add per request.
        if failure {
            let counts = self.rolling.counts(epoch);
            if self.trips(counts) {
                self.transition(phase, Why::Tripped(counts), now);
            }
        }
    }

    fn resolve_trial(&self, generation: u64, outcome: Option<Outcome>) {
        let phase = pack_phase(generation, BreakerState::HalfOpen);
        match outcome {
            None => {
                // Cancelled: free the slot for another trial.
                let _ = self
                    .trials
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
                        let t = Trials::unpack(word);
                        (t.tag == tag(generation) && t.taken > 0).then(|| {
                            Trials {
                                taken: t.taken - 1,
                                ..t
                            }
                            .pack()
                        })
                    });
            }
            Some(outcome) if outcome.is_failure() => {
                self.transition(phase, Why::TrialFailed, self.now_nanos());
            }
            Some(_) => {
                let counted =
                    self.trials
                        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
                            let t = Trials::unpack(word);
                            (t.tag == tag(generation)).then(|| {
                                Trials {
                                    succeeded: t.succeeded.saturating_add(1),
                                    ..t
                                }
                                .pack()
                            })
                        });
                if let Ok(before) = counted {
                    if Trials::unpack(before).succeeded + 1 >= self.max_trials {
                        self.transition(phase, Why::TrialsSucceeded, self.now_nanos());
                    }
                }
            }
        }
    }

    /// Whether the window holds enough requests, failing often enough, to open.
    fn trips(&self, counts: Counts) -> bool {
        counts.total > 0
            && counts.total >= self.request_volume_threshold
            && counts.failed as f64 * 100.0 >= self.error_threshold_percent * counts.total as f64
    }

    /// Moves the breaker from `from` (a packed phase) to the state `why` leads to, unless
    /// another request moved it first. Returns whether this call made the transition.
    fn transition(&self, from: u64, why: Why, now: u64) -> bool {
        let guard = self
            .transitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.phase.load(Ordering::Acquire) != from {
            return false;
        }
        let (generation, from_state) = unpack_phase(from);
        let next = generation.wrapping_add(1);
        let to = why.to();
        // Everything a request reads after seeing the new phase is written before it.
        let trials_taken = match why {
            Why::Tripped(counts) => {
                self.open_until
                    .store(now.saturating_add(self.sleep_nanos), Ordering::Relaxed);
                self.open_cause.store(pack_cause(counts), Ordering::Relaxed);
                0
            }
            Why::TrialFailed => {
                self.open_until
                    .store(now.saturating_add(self.sleep_nanos), Ordering::Relaxed);
                self.open_cause.store(0, Ordering::Relaxed);
                0
            }
            // The request that found the sleep window over is the first trial.
            Why::SleepElapsed => 1,
            Why::TrialsSucceeded => {
                self.rolling.clear();
                0
            }
        };
        self.trials.store(
            Trials {
                tag: tag(next),
                taken: trials_taken,
                succeeded: 0,
            }
            .pack(),
            Ordering::Release,
        );
        self.phase.store(pack_phase(next, to), Ordering::Release);
        for s in BreakerState::ALL {
            self.metrics.state[s as usize].set(i64::from(s == to));
        }
        if let Some(i) = TRANSITIONS.iter().position(|&t| t == (from_state, to)) {
            self.metrics.transitions[i].inc();
        }
        drop(guard);

        let service = &*self.service;
        let sleep_window = format_duration(Duration::from_nanos(self.sleep_nanos));
        match why {
            Why::Tripped(c) => tracing::warn!(
                service,
                failed = c.failed,
                requests = c.total,
                window = %format_duration(self.window),
                %sleep_window,
                "circuit breaker opened: {} of {} requests failed",
                c.failed,
                c.total
            ),
            Why::TrialFailed => tracing::warn!(
                service,
                trials = self.max_trials,
                %sleep_window,
                "circuit breaker opened again: a half-open trial request failed"
            ),
            Why::SleepElapsed => tracing::info!(
                service,
                trials = self.max_trials,
                "circuit breaker half-open: letting trial requests through"
            ),
            Why::TrialsSucceeded => tracing::info!(
                service,
                trials = self.max_trials,
                "circuit breaker closed: all {} trial requests succeeded",
                self.max_trials
            ),
        }
        true
    }

    fn refuse_open(&self) -> Refusal {
        self.metrics.rejected.inc();
        let reason = match unpack_cause(self.open_cause.load(Ordering::Relaxed)) {
            Some(Counts { failed, total }) => RefusalReason::Open {
                failed,
                total,
                window: self.window,
            },
            None => RefusalReason::TrialFailed,
        };
        Refusal {
            service: self.service.clone(),
            reason,
        }
    }

    fn refuse_half_open(&self, trials: Trials) -> Refusal {
        self.metrics.rejected.inc();
        Refusal {
            service: self.service.clone(),
            reason: RefusalReason::HalfOpen {
                in_flight: trials.taken.saturating_sub(trials.succeeded),
                trials: self.max_trials,
            },
        }
    }
}

/// The generation in the high bits, the state in the low two.
fn pack_phase(generation: u64, state: BreakerState) -> u64 {
    (generation << 2) | state as u64
}

fn unpack_phase(phase: u64) -> (u64, BreakerState) {
    (phase >> 2, BreakerState::from_bits(phase & 3))
}

/// What opened the breaker: the window's counts, or 0 for a failed trial (a window that
/// trips holds at least one request).
fn pack_cause(c: Counts) -> u64 {
    let clamp = |n: u64| u64::from(u32::try_from(n).unwrap_or(u32::MAX));
    (clamp(c.failed) << 32) | clamp(c.total)
}

fn unpack_cause(word: u64) -> Option<Counts> {
    let total = word & u64::from(u32::MAX);
    (total > 0).then_some(Counts {
        failed: word >> 32,
        total,
    })
}

/// The half-open trial slots, packed in one word so that a slot is taken and checked
/// against its half-open period in one compare-exchange.
#[derive(Debug, Clone, Copy)]
struct Trials {
    /// The low 32 bits of the generation of the half-open period.
    tag: u32,
    /// Slots in use: in flight or succeeded.
    taken: u16,
    /// Trials that succeeded.
    succeeded: u16,
}

impl Trials {
    fn pack(self) -> u64 {
        (u64::from(self.tag) << 32) | (u64::from(self.taken) << 16) | u64::from(self.succeeded)
    }

    fn unpack(word: u64) -> Self {
        Trials {
            tag: (word >> 32) as u32,
            taken: (word >> 16) as u16,
            succeeded: word as u16,
        }
    }
}

/// The tag of a generation: it only needs to tell the current half-open period from the
/// few before it.
fn tag(generation: u64) -> u32 {
    generation as u32
}

// === impl Window ===

/// Requests and failures in the rolling window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counts {
    failed: u64,
    total: u64,
}

/// The rolling window: a ring of buckets, each stamped with the epoch (bucket-sized
/// period since the breaker was built) it counts. A bucket is reused for a later epoch by
/// the first request that finds it stale.
struct Window {
    buckets: Box<[Bucket]>,
    width_nanos: u64,
}

struct Bucket {
    /// The epoch counted, or [`RESETTING`] while a request zeroes it for a new epoch.
    epoch: AtomicU64,
    successes: AtomicU64,
    failures: AtomicU64,
}

/// Marks a bucket being zeroed; writers wait (a few stores), readers skip it.
const RESETTING: u64 = u64::MAX;

impl Window {
    fn new(buckets: u32, width_nanos: u64) -> Self {
        Window {
            buckets: (0..buckets)
                .map(|_| Bucket {
                    epoch: AtomicU64::new(0),
                    successes: AtomicU64::new(0),
                    failures: AtomicU64::new(0),
                })
                .collect(),
            width_nanos,
        }
    }

    fn epoch(&self, now_nanos: u64) -> u64 {
        now_nanos / self.width_nanos
    }

    fn len(&self) -> u64 {
        self.buckets.len() as u64
    }

    fn bucket(&self, epoch: u64) -> &Bucket {
        // The index is below `len`, which came from a usize.
        &self.buckets[(epoch % self.len()) as usize]
    }

    /// Counts one outcome in the bucket of `epoch`, claiming the bucket first if it still
    /// counts an epoch that has left the window.
    fn record(&self, epoch: u64, failure: bool) {
        let bucket = self.bucket(epoch);
        let mut spins = 0u32;
        loop {
            let stamped = bucket.epoch.load(Ordering::Acquire);
            if stamped == RESETTING {
                spins += 1;
                if spins < 64 {
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
                continue;
            }
            // Current, or already reused by a request that read the clock a little later:
            // count it there.
            if stamped >= epoch {
                break;
            }
            if bucket
                .epoch
                .compare_exchange_weak(stamped, RESETTING, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                bucket.successes.store(0, Ordering::Relaxed);
                bucket.failures.store(0, Ordering::Relaxed);
                bucket.epoch.store(epoch, Ordering::Release);
                break;
            }
        }
        let counter = if failure {
            &bucket.failures
        } else {
            &bucket.successes
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts of the `len` epochs ending at `epoch`.
    fn counts(&self, epoch: u64) -> Counts {
        let mut counts = Counts {
            failed: 0,
            total: 0,
        };
        for bucket in self.buckets.iter() {
            let stamped = bucket.epoch.load(Ordering::Acquire);
            let in_window =
                stamped != RESETTING && (stamped > epoch || epoch - stamped < self.len());
            if in_window {
                let failed = bucket.failures.load(Ordering::Relaxed);
                counts.failed += failed;
                counts.total += failed + bucket.successes.load(Ordering::Relaxed);
            }
        }
        counts
    }

    /// Forgets every count (the breaker closed and starts afresh). Runs under the
    /// transition lock while half-open, when no current request writes to the window.
    fn clear(&self) {
        for bucket in self.buckets.iter() {
            bucket.successes.store(0, Ordering::Relaxed);
            bucket.failures.store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVICE: &str = "reviews-v1";

    fn settings(threshold: u32, percent: f64, half_open: u32) -> config::CircuitBreaker {
        config::CircuitBreaker {
            window: Duration::from_secs(10),
            buckets: 10,
            request_volume_threshold: threshold,
            error_threshold_percent: percent,
            sleep_window: Duration::from_secs(5),
            half_open_requests: half_open,
        }
    }

    fn breaker(cfg: &config::CircuitBreaker) -> (CircuitBreaker, Arc<Metrics>) {
        let metrics = Metrics::new();
        (CircuitBreaker::new(SERVICE, cfg, &metrics), metrics)
    }

    /// The breaker state that refused (`Open` or `HalfOpen`).
    fn refused_in(refusal: &Refusal) -> BreakerState {
        match refusal.reason {
            RefusalReason::Open { .. } | RefusalReason::TrialFailed => BreakerState::Open,
            RefusalReason::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Sends `n` requests that end with `outcome`; returns how many were admitted.
    fn send(b: &CircuitBreaker, n: usize, outcome: Outcome) -> usize {
        (0..n)
            .filter(|_| match b.admit() {
                Ok(a) => {
                    a.record(outcome);
                    true
                }
                Err(_) => false,
            })
            .count()
    }

    /// Opens the breaker with 9 successes and 11 failures at the default thresholds.
    fn trip(b: &CircuitBreaker) {
        send(b, 9, Outcome::Response(200));
        send(b, 11, Outcome::Response(503));
        assert_eq!(b.state(), BreakerState::Open);
    }

    fn window_counts(b: &CircuitBreaker) -> Counts {
        let (failed, total) = b.window_counts();
        Counts { failed, total }
    }

    async fn advance(d: Duration) {
        tokio::time::advance(d).await;
    }

    #[tokio::test(start_paused = true)]
    async fn stays_closed_below_request_volume_threshold_even_at_100_percent_errors() {
        let (b, _) = breaker(&settings(20, 50.0, 1));
        assert_eq!(send(&b, 19, Outcome::ConnectFailed), 19);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(
            window_counts(&b),
            Counts {
                failed: 19,
                total: 19
            }
        );
        assert!(b.admit().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn stays_closed_below_error_threshold_percent() {
        let (b, _) = breaker(&settings(20, 50.0, 1));
        send(&b, 11, Outcome::Response(200));
        send(&b, 9, Outcome::Response(500));
        assert_eq!(b.state(), BreakerState::Closed, "9 of 20 is 45%");
        send(&b, 1, Outcome::Timeout);
        assert_eq!(b.state(), BreakerState::Closed, "10 of 21 is 47.6%");
        send(&b, 1, Outcome::Reset);
        assert_eq!(b.state(), BreakerState::Open, "11 of 22 is 50%");
    }

    #[tokio::test(start_paused = true)]
    async fn opens_at_volume_and_percent_and_refuses_every_request_while_open() {
        let (b, metrics) = breaker(&settings(20, 50.0, 1));
        send(&b, 9, Outcome::Response(200));
        send(&b, 10, Outcome::Response(503));
        assert_eq!(
            b.state(),
            BreakerState::Closed,
            "19 requests are below the volume"
        );
        send(&b, 1, Outcome::Response(503));
        assert_eq!(b.state(), BreakerState::Open, "11 of 20 failed");

        let refused = (0..7).filter(|_| b.admit().is_err()).count();
        assert_eq!(refused, 7);
        let text = metrics.render();
        assert!(
            text.contains(r#"weir_circuit_breaker_rejected_total{service="reviews-v1"} 7"#),
            "{text}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn client_errors_are_not_failures() {
        let (b, _) = breaker(&settings(20, 50.0, 1));
        assert_eq!(send(&b, 40, Outcome::Response(404)), 40);
        send(&b, 5, Outcome::Response(429));
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(
            window_counts(&b),
            Counts {
                failed: 0,
                total: 45
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn failures_older_than_the_window_roll_out() {
        let cfg = settings(20, 50.0, 1);

        // Still inside the window after 9s: 15 + 5 failures open the breaker.
        let (inside, _) = breaker(&cfg);
        let (outside, _) = breaker(&cfg);
        send(&inside, 15, Outcome::Response(500));
        send(&outside, 15, Outcome::Response(500));
        advance(Duration::from_secs(9)).await;
        send(&inside, 5, Outcome::Response(500));
        assert_eq!(inside.state(), BreakerState::Open);

        // 10s later the first 15 have left the window: 19 new failures stay below volume.
        advance(Duration::from_secs(1)).await;
        assert_eq!(
            window_counts(&outside),
            Counts {
                failed: 0,
                total: 0
            }
        );
        send(&outside, 19, Outcome::Response(500));
        assert_eq!(outside.state(), BreakerState::Closed);
        assert_eq!(
            window_counts(&outside),
            Counts {
                failed: 19,
                total: 19
            }
        );
        send(&outside, 1, Outcome::Response(500));
        assert_eq!(outside.state(), BreakerState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn after_sleep_window_half_open_admits_exactly_half_open_requests() {
        let (b, metrics) = breaker(&settings(20, 50.0, 3));
        trip(&b);
        advance(Duration::from_millis(4999)).await;
        assert!(b.admit().is_err(), "still inside the sleep window");
        assert_eq!(b.state(), BreakerState::Open);

        advance(Duration::from_millis(1)).await;
        let trials: Vec<Admission> = (0..3).filter_map(|_| b.admit().ok()).collect();
        assert_eq!(trials.len(), 3);
        assert!(trials.iter().all(|admission| admission.trial));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let refused = (0..5).filter(|_| b.admit().is_err()).count();
        assert_eq!(refused, 5);
        assert!(metrics
            .render()
            .contains(r#"weir_circuit_breaker_rejected_total{service="reviews-v1"} 6"#));
    }

    #[tokio::test(start_paused = true)]
    async fn all_trials_succeeding_close_with_a_fresh_window() {
        let (b, _) = breaker(&settings(20, 50.0, 2));
        trip(&b);
        advance(Duration::from_secs(5)).await;
        let first = b.admit().expect("first trial");
        let second = b.admit().expect("second trial");
        first.record(Outcome::Response(200));
        assert_eq!(
            b.state(),
            BreakerState::HalfOpen,
            "one of two trials succeeded"
        );
        second.record(Outcome::Response(204));
        assert_eq!(b.state(), BreakerState::Closed);

        // The 11 failures from 5s ago are still inside 10s but were forgotten.
        assert_eq!(
            window_counts(&b),
            Counts {
                failed: 0,
                total: 0
            }
        );
        send(&b, 1, Outcome::Response(500));
        assert_eq!(b.state(), BreakerState::Closed);
        send(&b, 18, Outcome::Response(500));
        assert_eq!(
            b.state(),
            BreakerState::Closed,
            "19 requests in the fresh window"
        );
        send(&b, 1, Outcome::Response(500));
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_trial_opens_again_for_a_full_sleep_window() {
        let (b, _) = breaker(&settings(20, 50.0, 1));
        trip(&b);
        advance(Duration::from_secs(5)).await;
        b.admit().expect("trial").record(Outcome::Response(502));
        assert_eq!(b.state(), BreakerState::Open);
        let refusal = b.admit().expect_err("open again");
        assert_eq!(
            refusal.to_string(),
            "circuit breaker for service reviews-v1 is open (a half-open trial request failed)"
        );

        advance(Duration::from_millis(4999)).await;
        assert!(b.admit().is_err());
        assert_eq!(b.state(), BreakerState::Open);
        advance(Duration::from_millis(1)).await;
        b.admit()
            .expect("next trial")
            .record(Outcome::Response(200));
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_admission_frees_its_trial_slot() {
        let (b, _) = breaker(&settings(20, 50.0, 2));
        trip(&b);
        advance(Duration::from_secs(5)).await;
        let cancelled = b.admit().expect("trial");
        let kept = b.admit().expect("trial");
        assert!(b.admit().is_err(), "both slots taken");
        drop(cancelled);
        assert_eq!(b.state(), BreakerState::HalfOpen);

        let replacement = b.admit().expect("the freed slot");
        assert!(b.admit().is_err());
        kept.record(Outcome::Response(200));
        assert_eq!(
            b.state(),
            BreakerState::HalfOpen,
            "a cancel is not a success"
        );
        replacement.record(Outcome::Response(200));
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn outcomes_of_requests_admitted_before_a_transition_are_ignored() {
        let (b, _) = breaker(&settings(20, 50.0, 1));
        let early: Vec<Admission> = (0..5).filter_map(|_| b.admit().ok()).collect();
        trip(&b);
        advance(Duration::from_secs(5)).await;
        let trial = b.admit().expect("trial");
        for a in early {
            a.record(Outcome::Response(500));
        }
        assert_eq!(
            b.state(),
            BreakerState::HalfOpen,
            "stale failures do not judge the trial"
        );
        trial.record(Outcome::Response(200));
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(
            window_counts(&b),
            Counts {
                failed: 0,
                total: 0
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn transitions_are_exported_as_state_gauges_and_counters() {
        let metrics = Metrics::new();
        let b = CircuitBreaker::new("s", &settings(20, 50.0, 1), &metrics);
        let text = metrics.render();
        assert!(
            text.contains(r#"weir_circuit_breaker_state{service="s",state="closed"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"weir_circuit_breaker_state{service="s",state="open"} 0"#),
            "{text}"
        );

        trip(&b);
        let text = metrics.render();
        assert!(
            text.contains(r#"weir_circuit_breaker_state{service="s",state="open"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"weir_circuit_breaker_state{service="s",state="closed"} 0"#),
            "{text}"
        );
        assert!(text.contains(
            r#"weir_circuit_breaker_transitions_total{service="s",from="closed",to="open"} 1"#
        ));

        advance(Duration::from_secs(5)).await;
        let trial = b.admit().expect("trial");
        let text = metrics.render();
        assert!(
            text.contains(r#"weir_circuit_breaker_state{service="s",state="half_open"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"weir_circuit_breaker_state{service="s",state="open"} 0"#),
            "{text}"
        );
        trial.record(Outcome::Timeout);
        advance(Duration::from_secs(5)).await;
        b.admit().expect("trial").record(Outcome::Response(200));

        let text = metrics.render();
        for (from, to, n) in [
            ("closed", "open", 1),
            ("open", "half_open", 2),
            ("half_open", "open", 1),
            ("half_open", "closed", 1),
        ] {
            let line = format!(
                r#"weir_circuit_breaker_transitions_total{{service="s",from="{from}",to="{to}"}} {n}"#
            );
            assert!(text.contains(&line), "{line}\n{text}");
        }
        assert!(
            text.contains(r#"weir_circuit_breaker_state{service="s",state="closed"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"weir_circuit_breaker_state{service="s",state="half_open"} 0"#),
            "{text}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn refusals_name_the_service_and_the_cause() {
        let (b, _) = breaker(&settings(20, 50.0, 1));
        trip(&b);
        let refusal = b.admit().expect_err("open");
        assert_eq!(
            refusal.to_string(),
            "circuit breaker for service reviews-v1 is open (11 of 20 requests failed in the last 10s)"
        );
        assert_eq!(&*refusal.service, SERVICE);
        assert_eq!(refused_in(&refusal), BreakerState::Open);
        let error = ProxyError::from(refusal);
        assert_eq!(error.code(), ErrorCode::CircuitOpen);
        assert_eq!(error.status().as_u16(), 503);
        assert_eq!(
            error.to_string(),
            "weir: circuit breaker for service reviews-v1 is open (11 of 20 requests failed in the last 10s)"
        );

        advance(Duration::from_secs(5)).await;
        let _trial = b.admit().expect("trial");
        let refusal = b.admit().expect_err("slot taken");
        assert_eq!(refused_in(&refusal), BreakerState::HalfOpen);
        assert_eq!(
            refusal.to_string(),
            "circuit breaker for service reviews-v1 is half-open and its 1 trial request is in flight"
        );

        let (b, _) = breaker(&settings(20, 50.0, 3));
        trip(&b);
        advance(Duration::from_secs(5)).await;
        let trials: Vec<Admission> = (0..3).filter_map(|_| b.admit().ok()).collect();
        assert_eq!(
            b.admit().expect_err("full").to_string(),
            "circuit breaker for service reviews-v1 is half-open and its 3 trial requests are in flight"
        );
        let mut trials = trials.into_iter();
        if let Some(t) = trials.next() {
            t.record(Outcome::Response(200));
        }
        assert_eq!(
            b.admit().expect_err("full").to_string(),
            "circuit breaker for service reviews-v1 is half-open and 2 of its 3 trial requests are in flight"
        );
    }

    /// Several threads admitting and recording at once on a breaker that never opens: no
    /// panic, and the window holds exactly what they recorded.
    #[test]
    fn concurrent_records_all_count() {
        let cfg = config::CircuitBreaker {
            window: Duration::from_secs(3600),
            request_volume_threshold: u32::MAX,
            ..settings(0, 50.0, 1)
        };
        let metrics = Metrics::new();
        let b = CircuitBreaker::new(SERVICE, &cfg, &metrics);
        const THREADS: u64 = 4;
        const PER_THREAD: u64 = 5_000;
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let b = &b;
                s.spawn(move || {
                    for i in 0..PER_THREAD {
                        let outcome = if (i + t) % 4 == 0 {
                            Outcome::Response(503)
                        } else {
                            Outcome::Response(200)
                        };
                        b.admit().expect("closed").record(outcome);
                    }
                });
            }
        });
        assert_eq!(
            window_counts(&b),
            Counts {
                failed: THREADS * PER_THREAD / 4,
                total: THREADS * PER_THREAD
            }
        );
        assert_eq!(b.inner.metrics.rejected.get(), 0);
    }

    /// Several threads driving a breaker through every state at once: no panic, every
    /// request is admitted or refused, refusals are all counted, and the transition
    /// counters agree with the state it ends in.
    #[test]
    fn concurrent_transitions_keep_the_books_consistent() {
        let cfg = config::CircuitBreaker {
            window: Duration::from_secs(3600),
            request_volume_threshold: 4,
            sleep_window: Duration::ZERO,
            ..settings(0, 50.0, 2)
        };
        let metrics = Metrics::new();
        let b = CircuitBreaker::new(SERVICE, &cfg, &metrics);
        const THREADS: u64 = 4;
        const PER_THREAD: u64 = 5_000;
        let (admitted, refused) = std::thread::scope(|s| {
            let handles: Vec<_> = (0..THREADS)
                .map(|t| {
                    let b = &b;
                    s.spawn(move || {
                        let (mut admitted, mut refused) = (0u64, 0u64);
                        for i in 0..PER_THREAD {
                            match b.admit() {
                                Ok(a) => {
                                    admitted += 1;
                                    match (i * 7 + t) % 5 {
                                        0 | 1 => a.record(Outcome::Response(500)),
                                        2 => drop(a),
                                        _ => a.record(Outcome::Response(200)),
                                    }
                                }
                                Err(r) => {
                                    refused += 1;
                                    assert_ne!(refused_in(&r), BreakerState::Closed);
                                }
                            }
                        }
                        (admitted, refused)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("no panic"))
                .fold((0, 0), |(a, r), (x, y)| (a + x, r + y))
        });
        assert_eq!(admitted + refused, THREADS * PER_THREAD);
        let m = &b.inner.metrics;
        assert_eq!(m.rejected.get(), refused);

        let count = |from: BreakerState, to: BreakerState| {
            let i = TRANSITIONS
                .iter()
                .position(|&t| t == (from, to))
                .expect("a transition");
            m.transitions[i].get() as i64
        };
        use BreakerState::{Closed, HalfOpen, Open};
        assert!(count(Closed, Open) > 0, "the breaker opened at least once");
        let in_state = |s: BreakerState| i64::from(b.state() == s);
        assert_eq!(
            1 + count(HalfOpen, Closed) - count(Closed, Open),
            in_state(Closed)
        );
        assert_eq!(
            count(Closed, Open) + count(HalfOpen, Open) - count(Open, HalfOpen),
            in_state(Open)
        );
        assert_eq!(
            count(Open, HalfOpen) - count(HalfOpen, Closed) - count(HalfOpen, Open),
            in_state(HalfOpen)
        );
        for s in BreakerState::ALL {
            assert_eq!(m.state[s as usize].get(), in_state(s), "{s}");
        }
    }
}
