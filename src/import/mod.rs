//! `weir import`: translates Istio, Gateway API, Linkerd and SMI resources, and Hystrix
//! command properties, into a weir configuration.
//!
//! A team should not have to rewrite its traffic rules by hand to try weir. The translation
//! keeps each source's meaning rather than renaming fields (Istio's ORed match blocks become
//! one route each, Gateway API rules are ordered by the spec's precedence, unset connection
//! pools stay unlimited, mesh defaults are written out), and every field weir cannot express
//! is reported at its line and column ([`report`]). The pieces:
//!
//! - [`source`] reads the files into resources and tracks which fields were read;
//! - [`istio`], [`gateway`], [`smi`], [`linkerd`] and [`hystrix`] translate, into a
//!   [`draft::Draft`];
//! - [`emit`] writes the draft as YAML, a comment above every item naming its origin.

pub mod command;
pub mod draft;
pub mod emit;
pub mod gateway;
pub mod hystrix;
pub mod istio;
pub mod linkerd;
pub mod report;
pub mod smi;
pub mod source;

use std::collections::BTreeSet;
use std::net::SocketAddr;

use draft::{Draft, Origin, Target};
use report::Reports;
pub use report::{Report, Severity};
pub use source::Input;
use source::{Obj, Resource};

/// What the user asked for beyond the files.
#[derive(Debug, Clone)]
pub struct Options {
    /// Namespace of resources that name none (and `node.namespace`).
    pub namespace: Option<String>,
    /// The SPIFFE trust domain of identities (`cluster.local`).
    pub trust_domain: String,
    /// Static endpoints for generated services (`--endpoint NAME=IP:PORT`), in place of
    /// discovery: for trying the result outside a cluster.
    pub endpoints: Vec<(String, Vec<SocketAddr>)>,
    /// Where the listeners and identity files are.
    pub layout: emit::Layout,
}

/// The translation: the configuration text and everything worth telling the user.
#[derive(Debug)]
pub struct Imported {
    /// The weir configuration.
    pub config: String,
    /// Notes, unsupported fields and errors, by file and position.
    pub reports: Vec<Report>,
    /// The names of the generated services (what `--endpoint` may name).
    pub services: Vec<String>,
}

/// Everything a translator works with: the draft it adds to, the reports, the options, and
/// the Kubernetes resources (Services, workloads) that answer questions such as a Service's
/// port or a workload's service account.
pub struct Cx<'a> {
    /// The configuration being built.
    pub draft: Draft,
    /// Findings.
    pub reports: Reports,
    /// The user's options.
    pub options: &'a Options,
    /// Every resource read, for lookups across kinds.
    pub resources: &'a [Resource],
}

impl Cx<'_> {
    /// An origin for a generated item: the resource's title, `part`, and the file and line of
    /// `at`.
    pub fn origin(&self, at: &Obj<'_>, part: &str) -> Origin {
        let res = at.resource();
        Origin {
            what: if part.is_empty() {
                res.title()
            } else {
                format!("{}, {part}", res.title())
            },
            at: format!("{}:{}", res.file, at.line()),
        }
    }

    /// The SPIFFE ID of a service account.
    pub fn spiffe(&self, namespace: &str, service_account: &str) -> String {
        format!(
            "spiffe://{}/ns/{namespace}/sa/{service_account}",
            self.options.trust_domain
        )
    }
}

/// One translation phase: handles the resources of its kinds, says whether `res` was one.
type Translator = fn(&Resource, &mut Cx<'_>) -> bool;

/// Options for tests: namespace `shop`, the default addresses, `transparent` as given.
#[cfg(test)]
pub(crate) fn test_options(transparent: bool) -> Options {
    Options {
        namespace: Some("shop".into()),
        trust_domain: "cluster.local".into(),
        endpoints: Vec::new(),
        layout: emit::Layout {
            outbound: "127.0.0.1:15001".into(),
            inbound: "0.0.0.0:15006".into(),
            transparent,
            identity_dir: "/etc/weir/identity".into(),
            app: "127.0.0.1:8080".into(),
            namespace: "shop".into(),
            sources: vec!["t.yaml".into()],
        },
    }
}

/// Kinds read only to answer questions about others (ports, service accounts); never
/// reported as skipped.
const CONTEXT_KINDS: &[&str] = &[
    "Service",
    "ServiceAccount",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "Pod",
    "ReferenceGrant",
];

/// Translates `inputs`.
pub fn import(inputs: &[Input], options: &Options) -> Imported {
    let mut reports = Reports::default();
    let manifests: Vec<Input> = inputs
        .iter()
        .filter(|i| !hystrix::is_properties_file(i))
        .cloned()
        .collect();
    let resources = source::read(&manifests, options.namespace.as_deref(), &mut reports);
    let mut cx = Cx {
        draft: Draft::default(),
        reports,
        options,
        resources: &resources,
    };
    cx.draft.known_ports = single_ports(&resources);
    let mut handled = BTreeSet::new();
    // Routing first (it decides which services exist), then the policies of those services.
    let phases: [Translator; 6] = [
        istio::route,
        gateway::route,
        smi::route,
        istio::policy,
        linkerd::policy,
        istio::security,
    ];
    for phase in phases {
        for (i, res) in resources.iter().enumerate() {
            if phase(res, &mut cx) {
                handled.insert(i);
            }
        }
    }
    for (i, res) in resources.iter().enumerate() {
        if !handled.contains(&i) && !CONTEXT_KINDS.contains(&res.kind.as_str()) {
            res.report(
                &mut cx.reports,
                Severity::Unsupported,
                format!(
                    "weir import does not translate {} ({}); skipped",
                    res.kind, res.api_version
                ),
            );
        }
    }
    for res in &resources {
        for problem in res.take_problems() {
            cx.reports.push(problem);
        }
    }
    for input in inputs {
        hystrix::translate(input, &mut cx);
    }
    default_inbound_mode(&mut cx.draft);
    report_allow_without_mtls(&mut cx);
    report_undefined_subsets(&mut cx);
    report_plaintext_services(&mut cx, inputs);
    apply_endpoints(&mut cx);
    rename_routes_named_like_services(&mut cx.draft);
    if !options.layout.transparent && cx.draft.routes.is_empty() && cx.draft.inbound.mode.is_none()
    {
        cx.reports.push(at_start(
            inputs,
            "(input)",
            Severity::Error,
            "nothing to route: no VirtualService, HTTPRoute, GRPCRoute, TrafficSplit or Hystrix command makes a route, and --no-transparent leaves no listener".to_string(),
        ));
    }
    let config = emit::emit(&cx.draft, &options.layout);
    let mut reports = cx.reports.into_sorted();
    if !reports.iter().any(|r| r.severity == Severity::Error) {
        // Only a translation of valid sources should pass weir check; trace what it refuses.
        let mut refusals = Reports::default();
        trace_refusals(&config, &mut refusals);
        reports.extend(refusals.into_sorted());
    }
    Imported {
        config,
        services: cx.draft.services.iter().map(|s| s.name.clone()).collect(),
        reports,
    }
}

/// The port of every Kubernetes Service in the input that has exactly one.
fn single_ports(resources: &[Resource]) -> Vec<(String, String, u16)> {
    resources
        .iter()
        .filter(|r| r.kind == "Service" && r.group().is_empty())
        .filter_map(|r| {
            let ports = r.spec().list("ports");
            let [only] = ports.as_slice() else {
                return None;
            };
            let port = only.get("port")?.uint()?;
            Some((
                r.name.clone(),
                r.namespace.clone(),
                u16::try_from(port).ok()?,
            ))
        })
        .collect()
}

/// An AuthorizationPolicy with no PeerAuthentication: Istio's default mode, permissive,
/// so the allow list has a listener to act on.
fn default_inbound_mode(draft: &mut Draft) {
    let inbound = &mut draft.inbound;
    if inbound.mode.is_none() && !inbound.allow_origins.is_empty() {
        let origin = Origin {
            what: "Istio's default mTLS mode (no PeerAuthentication applies)".to_string(),
            at: "PERMISSIVE".to_string(),
        };
        inbound.mode = Some((crate::config::TlsMode::Permissive, origin));
    }
}

/// On a transparent listener weir adds a route named after each service that claims
/// destinations, so a written route may not have a service's name: such routes get
/// `-route` added.
fn rename_routes_named_like_services(draft: &mut Draft) {
    for i in 0..draft.routes.len() {
        if draft
            .services
            .iter()
            .any(|s| s.name == draft.routes[i].name)
        {
            let name = draft.route_name(&format!("{}-route", draft.routes[i].name));
            draft.routes[i].name = name;
        }
    }
}

/// Checks the output as `weir check` would; each thing weir refuses (a regex RE2 accepts
/// and Rust's does not, a header name that is not a token, …) is reported as an error at
/// the source item it came from: the nearest `# from … (FILE:LINE)` comment above it.
fn trace_refusals(config: &str, reports: &mut Reports) {
    let Err(crate::config::LoadError::Invalid(diagnostics)) =
        crate::config::load_str("weir.yaml", config)
    else {
        return;
    };
    let lines: Vec<&str> = config.lines().collect();
    for d in diagnostics {
        let upto = (d.line as usize).min(lines.len());
        let origin = lines[..upto]
            .iter()
            .rev()
            .find_map(|l| l.trim_start().strip_prefix("# from "))
            .and_then(|rest| {
                let (what, at) = rest.rsplit_once(" (")?;
                let (file, line) = at.trim_end_matches(')').rsplit_once(':')?;
                Some((
                    what.to_string(),
                    file.to_string(),
                    line.parse::<u32>().ok()?,
                ))
            });
        let (what, file, line) =
            origin.unwrap_or_else(|| ("(output)".to_string(), "weir.yaml".to_string(), d.line));
        reports.push(Report {
            file,
            line,
            col: 1,
            path: what,
            severity: Severity::Error,
            message: format!("weir refuses its translation: {}: {}", d.path, d.message),
        });
    }
}

/// A report about a generated item, placed at the line of the source item it came from
/// (its origin's `FILE:LINE`).
fn at_origin(origin: &Origin, severity: Severity, message: String) -> Report {
    let (file, line) = match origin.at.rsplit_once(':') {
        Some((file, line)) => (file.to_string(), line.parse().unwrap_or(1)),
        None => (origin.at.clone(), 1),
    };
    Report {
        file,
        line,
        col: 1,
        path: origin.what.clone(),
        severity,
        message,
    }
}

/// A report about the whole import, placed at the start of its first file.
fn at_start(inputs: &[Input], path: &str, severity: Severity, message: String) -> Report {
    Report {
        file: inputs
            .first()
            .map_or("<stdin>".to_string(), |i| i.name.clone()),
        line: 1,
        col: 1,
        path: path.to_string(),
        severity,
        message,
    }
}

/// An `allow` list on a listener whose mTLS is disabled: no caller has an identity, so Istio
/// denies every request, while weir's list does not act without mTLS.
fn report_allow_without_mtls(cx: &mut Cx<'_>) {
    let inbound = &cx.draft.inbound;
    let disabled = matches!(&inbound.mode, Some((crate::config::TlsMode::Disabled, _)));
    if !disabled || inbound.allow.is_empty() || inbound.allow_all {
        return;
    }
    for origin in inbound.allow_origins.clone() {
        cx.reports.push(at_origin(
            &origin,
            Severity::Unsupported,
            "mTLS is disabled, so no caller has an identity: Istio denies every request, but weir's `allow` list does not act without mTLS and lets every caller in".to_string(),
        ));
    }
}

/// A route to a subset no DestinationRule defines: Istio answers 503; weir sends it to the
/// Service of that name.
fn report_undefined_subsets(cx: &mut Cx<'_>) {
    for s in &cx.draft.services {
        let Some(subset) = &s.key.subset else {
            continue;
        };
        if cx
            .draft
            .defined_subsets
            .iter()
            .any(|(h, n)| *h == s.key.host && n == subset)
        {
            continue;
        }
        let Some(origin) = s.origins.first() else {
            continue;
        };
        cx.reports.push(at_origin(
            origin,
            Severity::Note,
            format!("no DestinationRule in the input defines subset {subset}: Istio would answer 503; weir sends the requests to service {}", s.name),
        ));
    }
}

/// Istio and Linkerd call meshed pods over mTLS without being told (auto mTLS); weir
/// originates mTLS only to services with `tls.identity`. Said once, naming the services.
fn report_plaintext_services(cx: &mut Cx<'_>, inputs: &[Input]) {
    let plain: Vec<&str> = cx
        .draft
        .services
        .iter()
        .filter(|s| s.tls_identity.is_none() && s.key.host.namespace().is_some())
        .map(|s| s.name.as_str())
        .collect();
    if plain.is_empty() {
        return;
    }
    cx.reports.push(at_start(
        inputs,
        "(mesh)",
        Severity::Note,
        format!(
            "Istio and Linkerd call meshed pods over mTLS automatically; weir calls {} in plaintext until you add `tls: {{ identity: … }}` to them (once their pods run weir)",
            plain.join(", ")
        ),
    ));
}

/// Replaces discovery with the `--endpoint` addresses the user gave.
fn apply_endpoints(cx: &mut Cx<'_>) {
    for (name, addrs) in &cx.options.endpoints {
        if let Some(s) = cx.draft.services.iter_mut().find(|s| s.name == *name) {
            s.target = Target::Static(addrs.clone());
        }
    }
}
