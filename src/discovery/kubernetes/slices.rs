//! The EndpointSlices of one Service, merged into the endpoint set weir serves: which
//! endpoints count (their conditions) and which port (the config's number or name). Pure
//! functions of the slices, so the rules are tested with tables.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use serde::Deserialize;

use crate::config::KubePort;

/// The fields of an object's `metadata` that the watch needs.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// The slice's name: the key its later versions replace.
    #[serde(default)]
    pub name: String,
    /// Where a watch resumes from.
    #[serde(default)]
    pub resource_version: Option<String>,
}

/// A `discovery.k8s.io/v1` EndpointSlice, the parts weir reads.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSlice {
    /// Name and resource version.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// `IPv4`, `IPv6` or `FQDN` (FQDN slices are skipped: weir connects to addresses).
    #[serde(default)]
    pub address_type: String,
    /// The endpoints (absent means none).
    #[serde(default)]
    pub endpoints: Option<Vec<Endpoint>>,
    /// The target ports (absent or empty: the Service has no ports, as a headless one may).
    #[serde(default)]
    pub ports: Option<Vec<EndpointPort>>,
}

/// One endpoint of a slice: a pod's addresses and its conditions.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Endpoint {
    /// The pod's addresses (Kubernetes gives one; all are used).
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Ready, serving, terminating.
    #[serde(default)]
    pub conditions: Conditions,
}

/// An endpoint's conditions; each may be absent (`null`), with the meaning the API gives it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
pub struct Conditions {
    /// Ready for traffic; `null` means ready.
    pub ready: Option<bool>,
    /// Able to serve, even while terminating; `null` means the same as `ready`.
    pub serving: Option<bool>,
    /// Shutting down; `null` means not.
    pub terminating: Option<bool>,
}

/// A port of a slice: the pods' target port and the Service port's name.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct EndpointPort {
    /// The Service port's name (empty or absent for a single unnamed port).
    #[serde(default)]
    pub name: Option<String>,
    /// The target port (absent: every port, which weir cannot connect to).
    #[serde(default)]
    pub port: Option<u16>,
}

/// Whether an endpoint takes traffic: a ready one always, a serving terminating one only as a
/// fallback (Kubernetes' graceful termination, KEP-1669).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usable {
    /// Ready (or readiness unknown).
    Ready,
    /// Terminating but still serving: used when the Service has no ready endpoint.
    ServingTerminating,
    /// Neither: no traffic.
    No,
}

impl Conditions {
    /// What these conditions allow.
    pub fn usable(&self) -> Usable {
        let ready = self.ready.unwrap_or(true);
        let serving = self.serving.unwrap_or(ready);
        let terminating = self.terminating.unwrap_or(false);
        if ready {
            Usable::Ready
        } else if serving && terminating {
            Usable::ServingTerminating
        } else {
            Usable::No
        }
    }
}

/// The port of `slice` that `wanted` names, or `None` when the slice has no such port.
/// A name matches the port of that name. A number matches the target port with that number;
/// failing that, a slice with exactly one port gives that one (the number was the Service
/// port, which kube-proxy would map to the single target port); a slice without ports (a
/// headless Service without ports) gives the number itself.
pub fn port_of(slice: &EndpointSlice, wanted: &KubePort) -> Option<u16> {
    let ports = slice.ports.as_deref().unwrap_or_default();
    match wanted {
        KubePort::Name(name) => ports
            .iter()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| p.port),
        KubePort::Number(n) => {
            if ports.is_empty() {
                return Some(*n);
            }
            if ports.iter().any(|p| p.port == Some(*n)) {
                return Some(*n);
            }
            match ports {
                [only] => only.port,
                _ => None,
            }
        }
    }
}

/// The endpoint set of a Service from all its slices (keyed by slice name): the ready
/// endpoints' addresses on the chosen port, or when there is no ready one, the serving
/// terminating ones; deduplicated and sorted, so equal sets compare equal.
pub fn endpoint_set(slices: &BTreeMap<String, EndpointSlice>, port: &KubePort) -> Vec<SocketAddr> {
    let mut ready = Vec::new();
    let mut terminating = Vec::new();
    for slice in slices.values() {
        if slice.address_type == "FQDN" {
            continue;
        }
        let Some(port) = port_of(slice, port) else {
            continue;
        };
        for endpoint in slice.endpoints.as_deref().unwrap_or_default() {
            let into = match endpoint.conditions.usable() {
                Usable::Ready => &mut ready,
                Usable::ServingTerminating => &mut terminating,
                Usable::No => continue,
            };
            into.extend(
                endpoint
                    .addresses
                    .iter()
                    .filter_map(|a| a.parse::<IpAddr>().ok())
                    .map(|ip| SocketAddr::new(ip, port)),
            );
        }
    }
    let mut chosen = if ready.is_empty() { terminating } else { ready };
    chosen.sort();
    chosen.dedup();
    chosen
}

/// The slices whose endpoints are dropped because none of their ports is `port`: named in a
/// warning, since a wrong port empties a Service silently otherwise.
pub fn slices_without_port(
    slices: &BTreeMap<String, EndpointSlice>,
    port: &KubePort,
) -> Vec<String> {
    slices
        .values()
        .filter(|s| s.address_type != "FQDN" && port_of(s, port).is_none())
        .map(|s| s.metadata.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(ready: Option<bool>, serving: Option<bool>, terminating: Option<bool>) -> Conditions {
        Conditions {
            ready,
            serving,
            terminating,
        }
    }

    fn slice(
        name: &str,
        ports: &[(Option<&str>, u16)],
        eps: &[(&str, Conditions)],
    ) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                name: name.into(),
                resource_version: None,
            },
            address_type: "IPv4".into(),
            endpoints: Some(
                eps.iter()
                    .map(|(a, c)| Endpoint {
                        addresses: vec![a.to_string()],
                        conditions: *c,
                    })
                    .collect(),
            ),
            ports: Some(
                ports
                    .iter()
                    .map(|(n, p)| EndpointPort {
                        name: n.map(str::to_string),
                        port: Some(*p),
                    })
                    .collect(),
            ),
        }
    }

    fn set(slices: &[EndpointSlice], port: KubePort) -> Vec<String> {
        let map = slices
            .iter()
            .map(|s| (s.metadata.name.clone(), s.clone()))
            .collect();
        endpoint_set(&map, &port)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    const READY: Conditions = Conditions {
        ready: Some(true),
        serving: Some(true),
        terminating: Some(false),
    };
    const DRAINING: Conditions = Conditions {
        ready: Some(false),
        serving: Some(true),
        terminating: Some(true),
    };

    #[test]
    fn conditions_follow_the_endpointslice_api() {
        for (c, want) in [
            (cond(Some(true), Some(true), Some(false)), Usable::Ready),
            (cond(None, None, None), Usable::Ready),
            (cond(None, Some(false), None), Usable::Ready),
            (cond(Some(false), None, None), Usable::No),
            (cond(Some(false), Some(false), Some(false)), Usable::No),
            (cond(Some(false), Some(true), Some(false)), Usable::No),
            (
                cond(Some(false), Some(true), Some(true)),
                Usable::ServingTerminating,
            ),
            (cond(Some(false), Some(false), Some(true)), Usable::No),
            (cond(Some(false), None, Some(true)), Usable::No),
        ] {
            assert_eq!(c.usable(), want, "{c:?}");
        }
    }

    #[test]
    fn slices_merge_deduplicated_and_sorted() {
        let a = slice(
            "a",
            &[(Some("http"), 8080)],
            &[("10.0.0.2", READY), ("10.0.0.1", READY)],
        );
        let b = slice(
            "b",
            &[(Some("http"), 8080)],
            &[
                ("10.0.0.2", READY),
                ("10.0.0.3", cond(Some(false), None, None)),
            ],
        );
        assert_eq!(
            set(&[a, b], KubePort::Number(8080)),
            ["10.0.0.1:8080", "10.0.0.2:8080"]
        );
    }

    #[test]
    fn serving_terminating_endpoints_are_used_only_without_a_ready_one() {
        let draining = slice("a", &[(None, 80)], &[("10.0.0.1", DRAINING)]);
        assert_eq!(
            set(std::slice::from_ref(&draining), KubePort::Number(80)),
            ["10.0.0.1:80"]
        );
        let fresh = slice("b", &[(None, 80)], &[("10.0.0.2", READY)]);
        assert_eq!(
            set(&[draining, fresh], KubePort::Number(80)),
            ["10.0.0.2:80"]
        );
    }

    #[test]
    fn ports_match_by_name_by_number_or_the_only_port() {
        let two = slice(
            "two",
            &[(Some("http"), 8080), (Some("metrics"), 9090)],
            &[("10.0.0.1", READY)],
        );
        let one = slice("one", &[(Some("http"), 8080)], &[("10.0.0.2", READY)]);
        for (slice, port, want) in [
            (&two, KubePort::Name("metrics".into()), Some(9090)),
            (&two, KubePort::Name("grpc".into()), None),
            (&two, KubePort::Number(8080), Some(8080)),
            (&two, KubePort::Number(80), None),
            (&one, KubePort::Number(80), Some(8080)),
            (&one, KubePort::Name("admin".into()), None),
        ] {
            assert_eq!(
                port_of(slice, &port),
                want,
                "{} {port:?}",
                slice.metadata.name
            );
        }
        let mut headless = one.clone();
        headless.ports = None;
        assert_eq!(port_of(&headless, &KubePort::Number(5432)), Some(5432));
        assert_eq!(port_of(&headless, &KubePort::Name("pg".into())), None);
    }

    #[test]
    fn a_slice_without_the_port_is_named_and_contributes_nothing() {
        let two = slice(
            "two",
            &[(Some("http"), 8080), (Some("metrics"), 9090)],
            &[("10.0.0.1", READY)],
        );
        let map: BTreeMap<_, _> = [("two".to_string(), two)].into();
        assert!(endpoint_set(&map, &KubePort::Number(80)).is_empty());
        assert_eq!(slices_without_port(&map, &KubePort::Number(80)), ["two"]);
        assert!(slices_without_port(&map, &KubePort::Number(9090)).is_empty());
    }

    #[test]
    fn fqdn_slices_and_unparsable_addresses_are_skipped() {
        let mut fqdn = slice("f", &[(None, 80)], &[("db.example.com", READY)]);
        fqdn.address_type = "FQDN".into();
        let v6 = EndpointSlice {
            address_type: "IPv6".into(),
            ..slice(
                "v6",
                &[(None, 80)],
                &[("fd00::1", READY), ("nonsense", READY)],
            )
        };
        assert_eq!(set(&[fqdn, v6], KubePort::Number(80)), ["[fd00::1]:80"]);
    }

    #[test]
    fn a_slice_decodes_from_the_api_json() {
        let json = r#"{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice",
            "metadata":{"name":"web-abc","resourceVersion":"42","labels":{"kubernetes.io/service-name":"web"}},
            "addressType":"IPv4",
            "endpoints":[{"addresses":["10.1.0.5"],"conditions":{"ready":true,"serving":true,"terminating":false},"nodeName":"n1"},
                         {"addresses":["10.1.0.6"],"conditions":{}}],
            "ports":[{"name":"http","port":8080,"protocol":"TCP"}]}"#;
        let s: EndpointSlice = serde_json::from_str(json).expect("decodes");
        assert_eq!(s.metadata.resource_version.as_deref(), Some("42"));
        assert_eq!(
            set(&[s], KubePort::Name("http".into())),
            ["10.1.0.5:8080", "10.1.0.6:8080"]
        );
    }
}
