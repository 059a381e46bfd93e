//! Where applications call a Kubernetes Service: its cluster IPs, at the Service port that
//! leads to the discovered endpoints. Transparent listeners route connections to these
//! addresses to the weir service (a service with no cluster-IP `addresses` of its own).
//! A cluster IP is fixed for a Service's life, so the Service is read again only now and
//! then (every [`REFRESH`]), to follow a Service deleted and created anew; a failed read
//! keeps what was found.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::Deserialize;
use tokio::sync::watch as channel;

use super::backoff::{self, Backoff};
use super::watch::{encode, read_capped};
use super::{kubeconfig, Target};
use crate::config::KubePort;

/// How often the Service is read again.
pub const REFRESH: Duration = Duration::from_secs(30);

/// The parts of a `v1/Service` that say where it is called.
#[derive(Debug, Deserialize)]
pub struct ServiceDoc {
    spec: ServiceSpec,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServiceSpec {
    #[serde(rename = "clusterIP")]
    cluster_ip: Option<String>,
    #[serde(rename = "clusterIPs")]
    cluster_ips: Option<Vec<String>>,
    #[serde(default)]
    ports: Vec<ServicePort>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServicePort {
    name: Option<String>,
    port: u16,
    target_port: Option<serde_json::Value>,
}

/// The addresses applications dial for `service` to reach endpoints on `port`: every
/// cluster IP (none for a headless Service) at the Service port that is `port` by name, or
/// whose target port (else whose own port) is `port` by number, or the only one.
pub fn addresses(service: &ServiceDoc, port: &KubePort) -> Vec<SocketAddr> {
    let spec = &service.spec;
    let ports = &spec.ports;
    let chosen = match port {
        KubePort::Name(name) => ports.iter().find(|p| p.name.as_deref() == Some(name)),
        KubePort::Number(n) => ports
            .iter()
            .find(|p| p.target_port.as_ref().and_then(|t| t.as_u64()) == Some(u64::from(*n)))
            .or_else(|| ports.iter().find(|p| p.port == *n)),
    }
    .or(match ports.as_slice() {
        [only] => Some(only),
        _ => None,
    });
    let Some(chosen) = chosen else {
        return Vec::new();
    };
    let ips: Vec<&String> = match &spec.cluster_ips {
        Some(ips) if !ips.is_empty() => ips.iter().collect(),
        _ => spec.cluster_ip.iter().collect(),
    };
    let mut found: Vec<SocketAddr> = ips
        .into_iter()
        .filter_map(|ip| ip.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, chosen.port))
        .collect();
    found.sort();
    found.dedup();
    found
}

/// Reads `target`'s Service now and every [`REFRESH`], storing its addresses in `found`,
/// until `stop` turns true. A Service the API says is gone (404) claims nothing; a failed
/// read keeps what was found.
pub async fn run(
    target: Target,
    found: Arc<ArcSwap<Vec<SocketAddr>>>,
    mut stop: channel::Receiver<bool>,
) {
    let path = format!(
        "/api/v1/namespaces/{}/services/{}",
        encode(&target.namespace),
        encode(&target.service)
    );
    let mut backoff = Backoff::default();
    loop {
        let pause = match read(&path, &target.port).await {
            Ok(addresses) => {
                backoff.reset();
                if **found.load() != addresses {
                    tracing::info!(service = %target.weir_service, kubernetes_service = %target.service, ?addresses, "kubernetes discovery found the service's cluster addresses");
                    found.store(Arc::new(addresses));
                }
                REFRESH
            }
            Err(why) => {
                let pause = backoff::jittered(backoff.after_failure());
                tracing::warn!(service = %target.weir_service, kubernetes_service = %target.service, error = %why, retry_in = ?pause, "reading the Kubernetes Service failed; keeping its cluster addresses");
                pause
            }
        };
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// One read of the Service.
async fn read(path: &str, port: &KubePort) -> Result<Vec<SocketAddr>, String> {
    let api = kubeconfig::infer().map_err(|e| e.to_string())?;
    let response = api.get(path).await.map_err(|e| e.to_string())?;
    let status = response.status();
    // The Service is gone: its cluster IP is no longer this service's (it may be given to
    // another Service), so nothing is claimed.
    if status == http::StatusCode::NOT_FOUND {
        return Ok(Vec::new());
    }
    if !status.is_success() {
        return Err(format!("the API server answered {status}"));
    }
    let body = read_capped(response.into_body())
        .await
        .map_err(|e| match e {
            super::watch::WatchError::Failed(why) => why,
            super::watch::WatchError::Gone => "410 Gone".to_string(),
        })?;
    let service: ServiceDoc =
        serde_json::from_slice(&body).map_err(|e| format!("unreadable Service: {e}"))?;
    Ok(addresses(&service, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(json: serde_json::Value) -> ServiceDoc {
        serde_json::from_value(json).unwrap()
    }

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn the_service_port_is_found_by_name_by_target_port_or_as_the_only_one() {
        let svc = service(serde_json::json!({ "spec": {
            "clusterIP": "10.96.0.20",
            "clusterIPs": ["10.96.0.20", "fd00::20"],
            "ports": [
                { "name": "http", "port": 80, "targetPort": 8080 },
                { "name": "metrics", "port": 9090, "targetPort": "metrics" }
            ]
        }}));
        let by_name = addresses(&svc, &KubePort::Name("http".into()));
        assert_eq!(by_name, addrs(&["10.96.0.20:80", "[fd00::20]:80"]));
        assert_eq!(
            addresses(&svc, &KubePort::Number(8080)),
            by_name,
            "target port"
        );
        assert_eq!(
            addresses(&svc, &KubePort::Number(9090)),
            addrs(&["10.96.0.20:9090", "[fd00::20]:9090"]),
            "the Service port itself"
        );
        assert_eq!(
            addresses(&svc, &KubePort::Number(1)),
            Vec::new(),
            "no such port"
        );
        let single = service(serde_json::json!({ "spec": {
            "clusterIP": "10.96.0.30", "ports": [{ "port": 5432, "targetPort": 15432 }]
        }}));
        assert_eq!(
            addresses(&single, &KubePort::Number(1)),
            addrs(&["10.96.0.30:5432"])
        );
    }

    #[test]
    fn a_headless_service_has_no_cluster_address() {
        let svc = service(serde_json::json!({ "spec": {
            "clusterIP": "None", "clusterIPs": ["None"], "ports": [{ "port": 80 }]
        }}));
        assert_eq!(addresses(&svc, &KubePort::Number(80)), Vec::new());
    }
}
