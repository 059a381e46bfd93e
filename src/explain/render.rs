//! An [`Explanation`] as plain sentences, one per line: what `weir explain` prints and
//! `/explain` answers to a client that does not ask for JSON.

use std::fmt::Write;

use super::{Explanation, ServiceExplained};

/// The explanation as text, ending with a newline.
pub fn text(e: &Explanation) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "listener {} ({})", e.listener, e.listener_detail);
    let _ = writeln!(out, "request {}", e.request);
    if let Some(before) = &e.before_routing {
        let _ = writeln!(out, "{before}");
    }
    let _ = writeln!(out, "routes, in order (the first that matches wins):");
    for r in &e.routes {
        match &r.why_not {
            None => {
                let _ = writeln!(out, "  route {}: matches", r.name);
            }
            Some(why) => {
                let _ = writeln!(out, "  route {}: {why}", r.name);
            }
        }
    }
    if let Some(c) = &e.chosen {
        let _ = writeln!(out, "otherwise: {}", e.otherwise);
        let _ = writeln!(out, "the request takes route {}", c.route);
        let backends: Vec<String> = c
            .backends
            .iter()
            .map(|b| format!("{} {:.1}%", b.service, b.percent))
            .collect();
        let _ = writeln!(out, "  backends: {}", backends.join(", "));
        for p in &c.policy {
            let _ = writeln!(out, "  {p}");
        }
        for s in &c.services {
            service(&mut out, s);
        }
    }
    if let Some(no_match) = &e.no_match {
        let _ = writeln!(out, "{no_match}");
    }
    for w in &e.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    out
}

fn service(out: &mut String, s: &ServiceExplained) {
    let _ = writeln!(out, "service {}:", s.name);
    for p in &s.policy {
        let _ = writeln!(out, "  {p}");
    }
    let Some(live) = &s.live else {
        return;
    };
    let _ = writeln!(
        out,
        "  now: {} of {} endpoints in rotation, {} request{} in flight",
        live.in_rotation,
        live.endpoints.len(),
        live.in_flight,
        if live.in_flight == 1 { "" } else { "s" }
    );
    for e in &live.endpoints {
        let _ = write!(
            out,
            "    endpoint {} (weight {}): {}, {} in flight",
            e.address, e.weight, e.state, e.in_flight
        );
        match &e.reason {
            Some(why) => {
                let _ = writeln!(out, ": {why}");
            }
            None => out.push('\n'),
        }
    }
    if let Some(b) = &live.breaker {
        let _ = writeln!(
            out,
            "  circuit breaker: {} ({} of {} requests failed in the window)",
            b.state, b.failed, b.total
        );
    }
    let _ = writeln!(out, "  likely pick: {}", live.likely_pick);
}
