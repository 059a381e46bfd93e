//! SMI `TrafficSplit` (`split.smi-spec.io` v1alpha1 to v1alpha4): the traffic of an apex
//! Service split over backend Services by weight.
//!
//! Clients address the apex, so the split is one weir route with the apex's authority and
//! the weighted backends. v1alpha1 weights are Kubernetes quantities (`500m`, `1`, `2k`):
//! they are read exactly in thousandths and divided by their greatest common divisor, so
//! `500m`/`500m` is written 1:1; later versions' integer weights are carried over as they
//! are (weir's weights are relative too).

use super::draft::{Host, RouteDraft, ServiceKey, LINKERD_DEFAULTS};
use super::gateway::service_port;
use super::source::{Obj, Resource};
use super::Cx;
use crate::config::{Backend, RouteMatch};

/// Translates a TrafficSplit; whether `res` is one.
pub fn route(res: &Resource, cx: &mut Cx<'_>) -> bool {
    if res.group() != "split.smi-spec.io" || res.kind != "TrafficSplit" {
        return false;
    }
    let spec = res.spec();
    translate(res, &spec, cx);
    spec.finish(&mut cx.reports, &|key| {
        format!("`{key}` is not translated; the split is written without it")
    });
    true
}

fn translate(res: &Resource, spec: &Obj<'_>, cx: &mut Cx<'_>) {
    if let Some(matches) = spec.get("matches") {
        matches.unsupported(
            &mut cx.reports,
            "the split applies to every request to the apex Service, not only those the HTTPRouteGroup matches",
        );
    }
    let Some(apex_name) = spec.str("service") else {
        spec.error(
            &mut cx.reports,
            "a TrafficSplit needs `service` (the apex); skipped",
        );
        spec.skip(&["backends"]);
        return;
    };
    let Some(weights) = read_weights(res, spec, cx) else {
        return;
    };
    let origin = cx.origin(spec, "");
    let apex = Host::parse(&apex_name, &res.namespace);
    let apex_key = ServiceKey {
        port: port_of(cx, &apex),
        host: apex.clone(),
        subset: None,
    };
    cx.draft.service(&apex_key, LINKERD_DEFAULTS, &origin);
    let mut backends = Vec::new();
    for (name, weight) in weights {
        let host = Host::parse(&name, &res.namespace);
        let key = ServiceKey {
            port: port_of(cx, &host).or(apex_key.port),
            host,
            subset: None,
        };
        let index = cx.draft.service(&key, LINKERD_DEFAULTS, &origin);
        backends.push(Backend {
            service: cx.draft.services[index].name.clone(),
            weight,
        });
    }
    let name = cx.draft.route_name(&res.name);
    cx.draft.routes.push(RouteDraft {
        name,
        origin,
        matcher: RouteMatch {
            authority: Some(apex.authority(&cx.options.layout.namespace)),
            ..RouteMatch::default()
        },
        backends,
        timeout: None,
        retries: None,
        fault: None,
        mirror: None,
        comments: Vec::new(),
    });
}

fn port_of(cx: &Cx<'_>, host: &Host) -> Option<u16> {
    match host {
        Host::Kubernetes { service, namespace } => service_port(cx.resources, service, namespace),
        Host::Dns(_) => None,
    }
}

/// The backends and their weir weights; `None` (reported) when the split cannot be written.
fn read_weights(res: &Resource, spec: &Obj<'_>, cx: &mut Cx<'_>) -> Option<Vec<(String, u32)>> {
    let quantities = res.version() == "v1alpha1";
    let mut read: Vec<(String, u128)> = Vec::new();
    let mut valid = true;
    for b in spec.list("backends") {
        let name = b.str("service");
        let weight = match b.get("weight") {
            // A weight of the wrong shape is already reported by `text`.
            Some(w) => match w.text() {
                None => None,
                Some(text) => {
                    let parsed = if quantities {
                        milli_units(&text)
                    } else {
                        integer_weight(&text)
                    };
                    match parsed {
                        Ok(n) => Some(n),
                        Err(e) => {
                            w.error(&mut cx.reports, format!("{e}; the split is skipped"));
                            None
                        }
                    }
                }
            },
            None => {
                b.error(
                    &mut cx.reports,
                    "a backend needs a `weight`; the split is skipped",
                );
                None
            }
        };
        b.finish(&mut cx.reports, &|key| {
            format!("`{key}` of a backend is not translated")
        });
        match (name, weight) {
            (Some(name), Some(weight)) => read.push((name, weight)),
            (None, _) => {
                b.error(
                    &mut cx.reports,
                    "a backend needs a `service`; the split is skipped",
                );
                valid = false;
            }
            (_, None) => valid = false,
        }
    }
    if !valid {
        return None;
    }
    if read.is_empty() {
        spec.error(
            &mut cx.reports,
            "a TrafficSplit needs at least one backend; skipped",
        );
        return None;
    }
    let raw: Vec<u128> = read.iter().map(|(_, w)| *w).collect();
    if raw.iter().all(|w| *w == 0) {
        spec.unsupported(
            &mut cx.reports,
            "every backend has weight 0, so the split sends nowhere, which weir refuses in a route; the split is not translated",
        );
        return None;
    }
    let (weights, exact) = if quantities {
        normalise(&raw)
    } else {
        scale_to_u32(&raw)
    };
    if !exact {
        spec.note(&mut cx.reports, "the weights are too large for weir's 32-bit weights: they are scaled down, keeping their proportions to within rounding");
    }
    Some(read.into_iter().map(|(n, _)| n).zip(weights).collect())
}

/// A v1alpha2+ integer weight.
fn integer_weight(text: &str) -> Result<u128, String> {
    let t = text.trim();
    t.parse::<u128>().map_err(|_| {
        if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
            format!("`{text}` is too large a weight")
        } else {
            format!("`{text}` is not a non-negative integer")
        }
    })
}

/// A Kubernetes quantity (`500m`, `1`, `1.5`, `2k`, `1Ki`, `1e3`) in thousandths.
fn milli_units(text: &str) -> Result<u128, String> {
    let bad = || format!("`{text}` is not a Kubernetes quantity (such as `500m`, `1` or `2k`)");
    let s = text.trim();
    if s.starts_with('-') {
        return Err(format!("`{text}` is negative; a weight cannot be negative"));
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    let number_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return Err(bad());
    }
    let too_large = || format!("`{text}` is too large a weight");
    let too_small = || format!("`{text}` is too small a weight");
    // The value is digits × 10^exp10 × 2^exp2 thousandths.
    let all = format!("{whole}{fraction}");
    let digits: u128 = match all.parse() {
        Ok(d) => d,
        // Only digits, yet no u128: a YAML float such as 1e300 reads back as its digits.
        Err(_) if all.bytes().all(|b| b.is_ascii_digit()) => return Err(too_large()),
        Err(_) => return Err(bad()),
    };
    let mut exp10: i64 = 3 - i64::try_from(fraction.len()).map_err(|_| too_small())?;
    let mut exp2: u32 = 0;
    match suffix {
        "" => {}
        "n" => exp10 -= 9,
        "u" => exp10 -= 6,
        "m" => exp10 -= 3,
        "k" => exp10 += 3,
        "M" => exp10 += 6,
        "G" => exp10 += 9,
        "T" => exp10 += 12,
        "P" => exp10 += 15,
        "E" => exp10 += 18,
        "Ki" => exp2 = 10,
        "Mi" => exp2 = 20,
        "Gi" => exp2 = 30,
        "Ti" => exp2 = 40,
        "Pi" => exp2 = 50,
        "Ei" => exp2 = 60,
        _ => {
            let written = suffix.strip_prefix(['e', 'E']).ok_or_else(bad)?;
            let exponent = parse_exponent(written).ok_or_else(bad)?;
            exp10 = exp10.checked_add(exponent).ok_or_else(|| {
                if exponent > 0 {
                    too_large()
                } else {
                    too_small()
                }
            })?;
        }
    }
    if digits == 0 {
        return Ok(0);
    }
    let mut value = digits.checked_mul(1u128 << exp2).ok_or_else(too_large)?;
    if exp10 >= 0 {
        let factor = u32::try_from(exp10)
            .ok()
            .and_then(|e| 10u128.checked_pow(e));
        value = factor
            .and_then(|f| value.checked_mul(f))
            .ok_or_else(too_large)?;
    } else {
        let divisor = exp10
            .checked_neg()
            .and_then(|e| u32::try_from(e).ok())
            .and_then(|e| 10u128.checked_pow(e))
            .ok_or_else(too_small)?;
        // Kubernetes rounds a quantity finer than its scale up.
        value = value.div_ceil(divisor);
    }
    Ok(value)
}

/// A decimal exponent, clamped to ±10^6 (far beyond any weight either way), so no sum
/// with it overflows; `None` when it is not an integer.
fn parse_exponent(text: &str) -> Option<i64> {
    const LIMIT: i64 = 1_000_000;
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let magnitude = digits.parse::<i64>().unwrap_or(LIMIT).min(LIMIT);
    Some(if text.starts_with('-') {
        -magnitude
    } else {
        magnitude
    })
}

fn gcd(a: u128, b: u128) -> u128 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Weights divided by their greatest common divisor, then scaled into `u32`; whether that
/// was exact.
fn normalise(weights: &[u128]) -> (Vec<u32>, bool) {
    let divisor = weights.iter().fold(0, |g, w| gcd(g, *w)).max(1);
    let reduced: Vec<u128> = weights.iter().map(|w| w / divisor).collect();
    scale_to_u32(&reduced)
}

/// Weights as `u32`, scaled down proportionally when the largest does not fit; whether
/// they are unchanged.
fn scale_to_u32(weights: &[u128]) -> (Vec<u32>, bool) {
    let max = weights.iter().copied().max().unwrap_or(0);
    let limit = u128::from(u32::MAX);
    if max <= limit {
        let out = weights
            .iter()
            .map(|w| u32::try_from(*w).unwrap_or(u32::MAX))
            .collect();
        return (out, true);
    }
    let out = weights
        .iter()
        .map(|w| {
            let scaled = (w.saturating_mul(limit) / max).max(u128::from(*w > 0));
            u32::try_from(scaled).unwrap_or(u32::MAX)
        })
        .collect();
    (out, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::gateway::testing::{reports, route_names, run};

    fn weights(texts: &[&str]) -> Vec<u32> {
        let milli: Vec<u128> = texts
            .iter()
            .map(|t| milli_units(t).expect("a quantity"))
            .collect();
        normalise(&milli).0
    }

    #[test]
    fn quantities_are_normalised_to_their_proportions() {
        assert_eq!(weights(&["500m", "500m"]), [1, 1]);
        assert_eq!(weights(&["1", "500m"]), [2, 1]);
        assert_eq!(weights(&["100", "900"]), [1, 9]);
        assert_eq!(weights(&["1.5", "500m"]), [3, 1]);
        assert_eq!(weights(&["2k", "1000"]), [2, 1]);
        assert_eq!(weights(&["1Ki", "24"]), [128, 3]);
        assert_eq!(weights(&["1e3", "1k", "0"]), [1, 1, 0]);
    }

    #[test]
    fn bad_quantities_are_refused() {
        for bad in ["-1", "abc", "1x", "", "."] {
            assert!(milli_units(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn extreme_exponents_are_errors_not_panics() {
        for (text, want) in [
            ("1e9223372036854775805", "too large"),
            ("1e9223372036854775807", "too large"),
            ("0.001e-9223372036854775808", "too small"),
            ("1e-99999999999999999999", "too small"),
            ("1e40", "too large"),
        ] {
            let err = milli_units(text).expect_err(text);
            assert!(err.contains(want), "{text}: {err}");
        }
        assert_eq!(milli_units("0e9223372036854775807"), Ok(0));
        let imported = run("apiVersion: split.smi-spec.io/v1alpha1\nkind: TrafficSplit\nmetadata: { name: big, namespace: shop }\nspec:\n  service: web\n  backends:\n    - { service: a, weight: 1e300 }\n    - { service: b, weight: \"1e9223372036854775805\" }\n    - { service: c, weight: \"0.001e-9223372036854775808\" }\n---\napiVersion: split.smi-spec.io/v1alpha2\nkind: TrafficSplit\nmetadata: { name: ok, namespace: shop }\nspec:\n  service: web\n  backends:\n    - { service: a, weight: 1 }\n");
        let text = reports(&imported);
        assert!(
            text.contains("backends[0].weight: error: `1e300` is too large a weight")
                || text.contains("is too large a weight; the split is skipped"),
            "{text}"
        );
        assert!(!text.contains("not a Kubernetes quantity"), "{text}");
        assert!(
            text.contains(
                "backends[2].weight: error: `0.001e-9223372036854775808` is too small a weight"
            ),
            "{text}"
        );
        assert_eq!(route_names(&imported), ["ok"]);
    }

    #[test]
    fn a_split_is_one_route_for_the_apex() {
        let imported = run("apiVersion: v1\nkind: Service\nmetadata: { name: web, namespace: shop }\nspec:\n  ports: [{ port: 8080 }]\n---\napiVersion: split.smi-spec.io/v1alpha1\nkind: TrafficSplit\nmetadata: { name: canary, namespace: shop }\nspec:\n  service: web\n  backends:\n    - { service: web, weight: 1 }\n    - { service: web-v2, weight: 500m }\n");
        let c = &imported.config;
        assert!(
            c.contains("# from TrafficSplit shop/canary (routes.yaml:"),
            "{c}"
        );
        assert!(c.contains("authority: { regex: \"web(\\\\.shop"), "{c}");
        assert!(
            c.contains("- { service: web, weight: 2 }\n          - { service: web-v2, weight: 1 }"),
            "{c}"
        );
        assert!(
            c.contains("service: web, namespace: shop, port: 8080"),
            "{c}"
        );
        assert_eq!(route_names(&imported), ["canary"]);
    }

    #[test]
    fn later_versions_carry_integer_weights_and_report_matches() {
        let imported = run("apiVersion: split.smi-spec.io/v1alpha4\nkind: TrafficSplit\nmetadata: { name: canary, namespace: shop }\nspec:\n  service: web\n  matches: [{ kind: HTTPRouteGroup, name: api }]\n  backends:\n    - { service: web-v1, weight: 100 }\n    - { service: web-v2, weight: 900 }\n");
        assert!(imported
            .config
            .contains("- { service: web-v1, weight: 100 }"));
        let text = reports(&imported);
        assert!(
            text.contains("routes.yaml:6:3: TrafficSplit(shop/canary).spec.matches: not supported by weir: the split applies to every request"),
            "{text}"
        );
    }

    #[test]
    fn negative_and_all_zero_weights_are_refused() {
        let imported = run("apiVersion: split.smi-spec.io/v1alpha1\nkind: TrafficSplit\nmetadata: { name: bad, namespace: shop }\nspec:\n  service: web\n  backends:\n    - { service: a, weight: -1 }\n---\napiVersion: split.smi-spec.io/v1alpha2\nkind: TrafficSplit\nmetadata: { name: zero, namespace: shop }\nspec:\n  service: web\n  backends:\n    - { service: a, weight: 0 }\n---\napiVersion: split.smi-spec.io/v1alpha2\nkind: TrafficSplit\nmetadata: { name: ok, namespace: shop }\nspec:\n  service: web\n  backends:\n    - { service: a, weight: 1 }\n");
        let text = reports(&imported);
        assert!(text.contains("routes.yaml:7:21: TrafficSplit(shop/bad).spec.backends[0].weight: error: `-1` is negative"), "{text}");
        assert!(
            text.contains(
                "TrafficSplit(shop/zero).spec: not supported by weir: every backend has weight 0"
            ),
            "{text}"
        );
        assert_eq!(route_names(&imported), ["ok"]);
    }

    #[test]
    fn huge_weights_keep_their_proportions() {
        let (w, exact) = scale_to_u32(&[u128::from(u32::MAX) * 2, u128::from(u32::MAX)]);
        assert!(!exact);
        assert_eq!(w, [u32::MAX, u32::MAX / 2]);
    }
}
