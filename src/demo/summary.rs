//! The demo's summary: where weir sent the requests and the split achieved against the
//! configured weights, what the circuit breakers did (both as weir counted them,
//! [`super::counts`]), and the latency and rate the load generator measured, as aligned
//! tables ([`super::table`]) and a few notes that tell what happened.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::counts::{percent, BreakerCounts, Traffic};
use super::load::LoadReport;
use super::scenario::Timeline;
use super::table::{Align, Table};
use crate::config::{
    format_duration, format_latency, format_seconds_one_decimal, CircuitBreaker, Route,
};
use crate::upstream::circuit_breaker::BreakerState;

/// The demo's circuit-breaker scenario: which service failed when, and its breaker's
/// settings, for the timeline note.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerStory {
    /// The service made to fail.
    pub service: String,
    /// When it was due to fail, since the start of the load (for a run stopped early).
    pub due: Duration,
    /// What happened, since the start of the load.
    pub timeline: Timeline,
    /// Its breaker's configuration.
    pub settings: Option<CircuitBreaker>,
}

/// An endpoint the demo made slow on purpose, to show least_request at work.
#[derive(Debug, Clone, PartialEq)]
pub struct SlowEndpoint {
    /// Its service.
    pub service: String,
    /// Its address, as the `endpoint` label writes it.
    pub endpoint: String,
    /// The extra time it takes per response.
    pub delay: Duration,
}

/// Everything the summary shows.
#[derive(Debug, Clone)]
pub struct Summary<'a> {
    /// The listener the load went to.
    pub listener: String,
    /// What weir counted on that listener.
    pub traffic: Traffic,
    /// The listener's routes, for the configured split.
    pub routes: &'a [Route],
    /// What the load generator measured.
    pub load: &'a LoadReport,
    /// The rate aimed for.
    pub target_rps: u32,
    /// Load generator connections.
    pub concurrency: u32,
    /// The slow demo endpoint, if any.
    pub slow: Option<SlowEndpoint>,
    /// Requests the demo services themselves answered, if they ran.
    pub upstream_hits: Option<u64>,
    /// What each service's circuit breaker did (services with a breaker only).
    pub breakers: BTreeMap<String, BreakerCounts>,
    /// The demo's breaker scenario, if it ran.
    pub story: Option<BreakerStory>,
    /// Where `/metrics` was served.
    pub metrics_url: String,
}

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.traffic;
        writeln!(
            f,
            "weir demo summary: {} requests through listener {} in {}",
            t.total,
            self.listener,
            format_seconds_one_decimal(self.load.elapsed)
        )?;
        writeln!(f)?;
        write!(f, "{}", self.split_table())?;
        writeln!(f)?;
        write!(f, "{}", self.codes_table())?;
        writeln!(f)?;
        if !self.breakers.is_empty() {
            write!(f, "{}", self.breaker_table())?;
            writeln!(f)?;
        }
        write!(f, "{}", self.latency_table())?;
        writeln!(f)?;
        writeln!(
            f,
            "  throughput: {:.1} rps achieved (target {}) over {} keep-alive connections; {} errors",
            self.load.achieved_rps(),
            self.target_rps,
            self.concurrency,
            self.load.errors()
        )?;
        if !self.load.failures.is_empty() {
            let failures: Vec<String> = self
                .load
                .failures
                .iter()
                .map(|(kind, n)| format!("{} {n}", kind.as_str()))
                .collect();
            writeln!(f, "  client-side failures: {}", failures.join(", "))?;
        }
        writeln!(f)?;
        if let Some(note) = self.least_request_note() {
            writeln!(f, "note: {note}")?;
        }
        for note in self.breaker_notes() {
            writeln!(f, "note: {note}")?;
        }
        if let Some(hits) = self.upstream_hits {
            let relayed: u64 = t
                .codes
                .iter()
                .filter(|((_, error), _)| error.is_empty())
                .map(|(_, n)| n)
                .sum();
            if hits == relayed {
                writeln!(f, "note: the demo services counted {hits} requests themselves, the same as weir relayed")?;
            } else {
                writeln!(f, "note: the demo services counted {hits} requests themselves; weir relayed {relayed}")?;
            }
        }
        writeln!(f, "metrics were served at {}", self.metrics_url)?;
        let admin = self.metrics_url.trim_end_matches("/metrics");
        writeln!(
            f,
            "endpoints, their state and errors at {admin}/services; the configuration at {admin}/config"
        )
    }
}

// === impl Summary ===

impl Summary<'_> {
    /// Requests per service (share achieved vs configured) and per endpoint beneath it.
    fn split_table(&self) -> Table {
        let t = &self.traffic;
        let mut table = Table::new(&[
            ("SERVICE / ENDPOINT", Align::Left),
            ("REQUESTS", Align::Right),
            ("SHARE", Align::Right),
            ("CONFIGURED", Align::Right),
        ]);
        for (service, endpoints) in &t.endpoints {
            let total = t.service_total(service);
            let configured = t
                .configured_share(service, self.routes)
                .map_or_else(|| "-".to_string(), pct);
            let name = if service.is_empty() {
                "(none chosen)".to_string()
            } else {
                service.clone()
            };
            table.row(vec![
                name,
                total.to_string(),
                pct(percent(total, t.total)),
                configured,
            ]);
            if service.is_empty() {
                continue;
            }
            let mut endpoints: Vec<(&String, &u64)> = endpoints.iter().collect();
            endpoints.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
            for (endpoint, n) in endpoints {
                if endpoint.is_empty() {
                    table.row(vec![
                        "  (answered by weir, no endpoint)".to_string(),
                        n.to_string(),
                        pct(percent(*n, t.total)),
                        String::new(),
                    ]);
                    continue;
                }
                let mark = match &self.slow {
                    Some(s) if &s.service == service && &s.endpoint == endpoint => {
                        format!("  (+{})", format_duration(s.delay))
                    }
                    _ => String::new(),
                };
                table.row(vec![
                    format!("  {endpoint}{mark}"),
                    n.to_string(),
                    pct(percent(*n, t.total)),
                    String::new(),
                ]);
            }
        }
        table
    }

    /// Requests by status code and weir error code.
    fn codes_table(&self) -> Table {
        let mut table = Table::new(&[
            ("CODE", Align::Left),
            ("WEIR ERROR", Align::Left),
            ("REQUESTS", Align::Right),
        ]);
        for ((code, error), n) in &self.traffic.codes {
            let error = if error.is_empty() { "-" } else { error };
            table.row(vec![code.clone(), error.to_string(), n.to_string()]);
        }
        table
    }

    /// State changes and refusals of every circuit breaker.
    fn breaker_table(&self) -> Table {
        let mut table = Table::new(&[
            ("CIRCUIT BREAKER", Align::Left),
            ("CLOSED→OPEN", Align::Right),
            ("OPEN→HALF_OPEN", Align::Right),
            ("HALF_OPEN→CLOSED", Align::Right),
            ("HALF_OPEN→OPEN", Align::Right),
            ("REFUSED", Align::Right),
        ]);
        for (service, b) in &self.breakers {
            table.row(vec![
                service.clone(),
                b.opened().to_string(),
                b.half_opened().to_string(),
                b.closed().to_string(),
                b.reopened().to_string(),
                b.rejected.to_string(),
            ]);
        }
        table
    }

    /// The scenario's timeline in a sentence or two: when the service failed, what its
    /// breaker did about it, and how many requests it spared the service.
    fn breaker_notes(&self) -> Vec<String> {
        let Some(story) = &self.story else {
            return Vec::new();
        };
        let service = &story.service;
        let tl = &story.timeline;
        let Some(from) = tl.failed_from else {
            return vec![format!(
                "the run ended before {service} was due to start failing at {}.",
                format_seconds_one_decimal(story.due)
            )];
        };
        let until = tl.failed_until.map_or_else(
            || "the end of the run".to_string(),
            format_seconds_one_decimal,
        );
        let b = self.breakers.get(service).cloned().unwrap_or_default();
        let mut notes = Vec::new();
        let failed = format!(
            "{service} failed (HTTP 500) from {} to {until}",
            format_seconds_one_decimal(from)
        );
        if b.opened() == 0 {
            let needs = story.settings.as_ref().map_or_else(String::new, |c| {
                format!(
                    " (it opens at {} or more requests in {} with at least {}% failed; a higher --rps sends more)",
                    c.request_volume_threshold,
                    format_duration(c.window),
                    c.error_threshold_percent
                )
            });
            notes.push(format!(
                "{failed}, but its circuit breaker did not open{needs}."
            ));
            return notes;
        }
        let mut sentence = format!(
            "{failed}: the breaker opened {}x, half-opened {}x, closed {}x",
            b.opened(),
            b.half_opened(),
            b.closed()
        );
        match b.reopened() {
            0 => {}
            1 => sentence.push_str(" (1 failed trial re-opened it)"),
            n => sentence.push_str(&format!(" ({n} failed trials re-opened it)")),
        }
        sentence.push_str(&format!(
            "; {} requests refused without reaching it.",
            b.rejected
        ));
        notes.push(sentence);
        let open = match (tl.opened_at, tl.closed_at, tl.final_state) {
            (Some(o), _, Some(state)) if state != BreakerState::Closed => format!(
                "the breaker opened at {} and was still {state} when the run ended",
                format_seconds_one_decimal(o)
            ),
            (Some(o), Some(c), _) => {
                format!(
                    "the breaker first opened at {} and closed again at {}",
                    format_seconds_one_decimal(o),
                    format_seconds_one_decimal(c)
                )
            }
            _ => "the breaker opened".to_string(),
        };
        let how = story.settings.as_ref().map_or_else(String::new, |c| {
            format!(
                " (it trips at {}+ requests and {}%+ failed in {}, and sends {} trial request{} after {})",
                c.request_volume_threshold,
                c.error_threshold_percent,
                format_duration(c.window),
                c.half_open_requests,
                if c.half_open_requests == 1 { "" } else { "s" },
                format_duration(c.sleep_window)
            )
        });
        notes.push(format!(
            "{open}{how}; meanwhile weir answered {service}'s share at once with 503 circuit_open."
        ));
        notes
    }

    /// The load generator's exact percentiles.
    fn latency_table(&self) -> Table {
        let l = &self.load.latencies;
        let mut table = Table::new(&[
            ("LATENCY", Align::Left),
            ("p50", Align::Right),
            ("p90", Align::Right),
            ("p99", Align::Right),
            ("max", Align::Right),
        ]);
        let show = |d: Option<Duration>| d.map_or_else(|| "-".to_string(), format_latency);
        table.row(vec![
            format!("{} requests", l.len()),
            show(l.percentile(50.0)),
            show(l.percentile(90.0)),
            show(l.percentile(99.0)),
            show(l.max()),
        ]);
        table
    }

    /// What least_request did with the slow endpoint, compared with its fast siblings.
    fn least_request_note(&self) -> Option<String> {
        let slow = self.slow.as_ref()?;
        let endpoints = self.traffic.endpoints.get(&slow.service)?;
        let slow_n = endpoints.get(&slow.endpoint).copied().unwrap_or(0);
        let others: Vec<u64> = endpoints
            .iter()
            .filter(|(e, _)| **e != slow.endpoint && !e.is_empty())
            .map(|(_, n)| *n)
            .collect();
        let fast_n = *others.iter().max()?;
        let delay = format_duration(slow.delay);
        Some(if slow_n < fast_n {
            format!(
                "least_request sent the slow {} endpoint (+{delay}) {slow_n} requests and the fast one {fast_n} ({:.1}x fewer): it prefers the endpoint with fewer requests in flight.",
                slow.service,
                fast_n as f64 / slow_n.max(1) as f64
            )
        } else {
            format!(
                "the slow {} endpoint (+{delay}) got {slow_n} requests and the fast one {fast_n}: least_request did not favour the fast endpoint at this load.",
                slow.service
            )
        })
    }
}

fn pct(p: f64) -> String {
    format!("{p:.1}%")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::fixtures::{routes, BREAKER_METRICS, METRICS};
    use crate::demo::load::Latencies;

    #[test]
    fn summary_shows_split_codes_latency_note_and_metrics_url() {
        let mut statuses = BTreeMap::new();
        statuses.insert(200, 998);
        statuses.insert(503, 2);
        let load = LoadReport {
            latencies: Latencies::from_unsorted((1..=1000).map(|i| i * 100_000).collect()),
            statuses,
            failures: BTreeMap::new(),
            elapsed: Duration::from_millis(3_333),
        };
        let routes = routes();
        let summary = Summary {
            listener: "demo".into(),
            traffic: Traffic::from_metrics(METRICS, "demo"),
            routes: &routes,
            load: &load,
            target_rps: 300,
            concurrency: 16,
            slow: Some(SlowEndpoint {
                service: "reviews-v1".into(),
                endpoint: "127.0.0.1:1002".into(),
                delay: Duration::from_millis(40),
            }),
            upstream_hits: Some(998),
            breakers: BTreeMap::new(),
            story: None,
            metrics_url: "http://127.0.0.1:9901/metrics".into(),
        };
        let expected = "\
weir demo summary: 1000 requests through listener demo in 3.3s

  SERVICE / ENDPOINT          REQUESTS   SHARE   CONFIGURED
  reviews-v1                       900   90.0%        90.0%
    127.0.0.1:1001                 700   70.0%
    127.0.0.1:1002  (+40ms)        200   20.0%
  reviews-v2                       100   10.0%        10.0%
    127.0.0.1:1003                 100   10.0%

  CODE   WEIR ERROR     REQUESTS
  200    -                   998
  503    circuit_open          2

  LATENCY            p50      p90      p99       max
  1000 requests   50.0ms   90.0ms   99.0ms   100.0ms

  throughput: 300.0 rps achieved (target 300) over 16 keep-alive connections; 2 errors

note: least_request sent the slow reviews-v1 endpoint (+40ms) 200 requests and the fast one 700 (3.5x fewer): it prefers the endpoint with fewer requests in flight.
note: the demo services counted 998 requests themselves, the same as weir relayed
metrics were served at http://127.0.0.1:9901/metrics
endpoints, their state and errors at http://127.0.0.1:9901/services; the configuration at http://127.0.0.1:9901/config
";
        assert_eq!(summary.to_string(), expected);
    }

    fn breaker_story(timeline: Timeline) -> BreakerStory {
        BreakerStory {
            service: "reviews-v2".into(),
            due: Duration::from_millis(4500),
            timeline,
            settings: Some(CircuitBreaker {
                window: Duration::from_secs(2),
                buckets: 10,
                request_volume_threshold: 10,
                error_threshold_percent: 50.0,
                sleep_window: Duration::from_secs(1),
                half_open_requests: 1,
            }),
        }
    }

    fn breaker_summary<'a>(
        load: &'a LoadReport,
        routes: &'a [Route],
        metrics: &str,
        story: BreakerStory,
    ) -> Summary<'a> {
        Summary {
            listener: "demo".into(),
            traffic: Traffic::from_metrics(metrics, "demo"),
            routes,
            load,
            target_rps: 300,
            concurrency: 16,
            slow: None,
            upstream_hits: Some(4385),
            breakers: BreakerCounts::from_metrics(metrics),
            story: Some(story),
            metrics_url: "http://127.0.0.1:9901/metrics".into(),
        }
    }

    #[test]
    fn summary_tells_the_breaker_story_with_counts_and_a_timeline() {
        let mut statuses = BTreeMap::new();
        statuses.insert(200, 4350);
        statuses.insert(500, 35);
        statuses.insert(503, 115);
        let load = LoadReport {
            latencies: Latencies::from_unsorted((1..=4500).map(|i| i * 10_000).collect()),
            statuses,
            failures: BTreeMap::new(),
            elapsed: Duration::from_millis(15_004),
        };
        let routes = routes();
        let ms = |d: u64| Some(Duration::from_millis(d));
        let summary = breaker_summary(
            &load,
            &routes,
            BREAKER_METRICS,
            breaker_story(Timeline {
                failed_from: ms(4501),
                failed_until: ms(9003),
                opened_at: ms(5480),
                closed_at: ms(9512),
                final_state: Some(BreakerState::Closed),
            }),
        );
        let expected = "\
weir demo summary: 4500 requests through listener demo in 15.0s

  SERVICE / ENDPOINT                  REQUESTS   SHARE   CONFIGURED
  reviews-v1                              4050   90.0%        90.0%
    127.0.0.1:1001                        3600   80.0%
    127.0.0.1:1002                         450   10.0%
  reviews-v2                               450   10.0%        10.0%
    127.0.0.1:1003                         335    7.4%
    (answered by weir, no endpoint)        115    2.6%

  CODE   WEIR ERROR     REQUESTS
  200    -                  4350
  500    -                    35
  503    circuit_open        115

  CIRCUIT BREAKER   CLOSED→OPEN   OPEN→HALF_OPEN   HALF_OPEN→CLOSED   HALF_OPEN→OPEN   REFUSED
  reviews-v2                  1                4                  1                3       115

  LATENCY            p50      p90      p99      max
  4500 requests   22.5ms   40.5ms   44.5ms   45.0ms

  throughput: 299.9 rps achieved (target 300) over 16 keep-alive connections; 150 errors

note: reviews-v2 failed (HTTP 500) from 4.5s to 9.0s: the breaker opened 1x, half-opened 4x, closed 1x (3 failed trials re-opened it); 115 requests refused without reaching it.
note: the breaker first opened at 5.5s and closed again at 9.5s (it trips at 10+ requests and 50%+ failed in 2s, and sends 1 trial request after 1s); meanwhile weir answered reviews-v2's share at once with 503 circuit_open.
note: the demo services counted 4385 requests themselves, the same as weir relayed
metrics were served at http://127.0.0.1:9901/metrics
endpoints, their state and errors at http://127.0.0.1:9901/services; the configuration at http://127.0.0.1:9901/config
";
        assert_eq!(summary.to_string(), expected);
    }

    #[test]
    fn breaker_notes_cover_early_ends_no_opening_and_still_open() {
        let load = LoadReport::default();
        let routes = routes();
        let ms = |d: u64| Some(Duration::from_millis(d));
        let notes = |metrics: &str, timeline: Timeline| {
            breaker_summary(&load, &routes, metrics, breaker_story(timeline)).breaker_notes()
        };

        let early = notes(BREAKER_METRICS, Timeline::default());
        assert_eq!(
            early,
            ["the run ended before reviews-v2 was due to start failing at 4.5s."]
        );

        let quiet = notes(
            METRICS,
            Timeline {
                failed_from: ms(4500),
                failed_until: None,
                ..Timeline::default()
            },
        );
        assert_eq!(
            quiet,
            ["reviews-v2 failed (HTTP 500) from 4.5s to the end of the run, but its circuit breaker did not open (it opens at 10 or more requests in 2s with at least 50% failed; a higher --rps sends more)."]
        );

        let open = notes(
            BREAKER_METRICS,
            Timeline {
                failed_from: ms(4500),
                failed_until: ms(9000),
                opened_at: ms(5500),
                closed_at: None,
                final_state: Some(BreakerState::HalfOpen),
            },
        );
        assert_eq!(open.len(), 2, "{open:?}");
        assert!(
            open[1].starts_with(
                "the breaker opened at 5.5s and was still half_open when the run ended"
            ),
            "{open:?}"
        );
    }
}
