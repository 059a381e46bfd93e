//! `weir inject`: adds the weir sidecar to the workloads of a multi-document manifest.
//!
//! A team adopts weir by piping its manifests through this command (DESIGN §2). Every
//! Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job, CronJob and
//! Pod gets the proxy, the `weir-init` redirect container, the config and identity volumes
//! and the scrape annotations ([`pod`]); every other document comes back byte for byte, in
//! its place. An injected pod template is marked, so running the command again on its own
//! output changes nothing.

pub mod command;

mod pod;
mod resources;
mod workload;
mod yaml;

use std::fmt;

use crate::config::documents;

pub use resources::{Quantity, QuantityError, Resources};
use workload::Outcome;
use yaml::Yaml;

/// How the proxy joins the pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SidecarMode {
    /// An init container with `restartPolicy: Always` (Kubernetes 1.29+): started before
    /// the application, stopped after it, and no obstacle to a Job completing.
    Native,
    /// The first of the pod's containers, for clusters older than 1.29.
    Legacy,
}

/// What to inject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The weir image, for the proxy.
    pub image: String,
    /// The image of `weir-init`: weir with the iptables tools, which the proxy's distroless
    /// image has not.
    pub init_image: String,
    /// The ConfigMap holding `weir.yaml`, mounted at `/etc/weir`.
    pub config_map: String,
    /// The Secret holding the workload's certificate, mounted at `/etc/weir/identity`;
    /// `None` names it `weir-identity-` and the service account (or workload).
    pub identity_secret: Option<String>,
    /// Native or legacy sidecar.
    pub sidecar: SidecarMode,
    /// The proxy container's requests and limits.
    pub resources: Resources,
}

/// The image of this build: `ghcr.io/weir-proxy/weir:` and the crate's version.
pub fn default_image() -> String {
    format!("ghcr.io/weir-proxy/weir:{}", env!("CARGO_PKG_VERSION"))
}

/// The init image that goes with `image`: the same repository path with `-init` after its
/// last name, the same tag (`ghcr.io/weir-proxy/weir:0.1.0` gives
/// `ghcr.io/weir-proxy/weir-init:0.1.0`), as `deploy/Dockerfile`'s `init` target is built.
pub fn init_image_of(image: &str) -> String {
    let name_start = image.rfind('/').map_or(0, |i| i + 1);
    let (repository, rest) = match image[name_start..].find([':', '@']) {
        Some(i) => image.split_at(name_start + i),
        None => (image, ""),
    };
    format!("{repository}-init{rest}")
}

/// The rewritten manifest and what the user should be told about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injected {
    /// The documents, in their order: injected ones rewritten, the rest as they were.
    pub text: String,
    /// Workloads left alone for a reason worth a line on stderr.
    pub notes: Vec<String>,
    /// How many workloads were injected.
    pub injected: usize,
}

/// Why a manifest could not be injected, and where (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectError {
    /// The line the problem is on.
    pub line: usize,
    /// The column the problem is at.
    pub col: usize,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for InjectError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.col, self.message)
    }
}

impl std::error::Error for InjectError {}

/// Injects every workload of `text` (multi-document YAML) as `options` say.
pub fn inject(text: &str, options: &Options) -> Result<Injected, InjectError> {
    let mut out = Injected {
        text: String::with_capacity(text.len() * 2),
        notes: Vec::new(),
        injected: 0,
    };
    for doc in documents::split(text) {
        let mut object = parse(doc)?;
        let outcomes = workload::inject(&mut object, options).map_err(|message| InjectError {
            line: doc.first_line,
            col: 1,
            message,
        })?;
        let mut changed = false;
        for outcome in outcomes {
            match outcome {
                Outcome::Untouched => {}
                Outcome::Skipped(note) => out.notes.push(note),
                Outcome::Injected => {
                    changed = true;
                    out.injected += 1;
                }
            }
        }
        if changed {
            let body = serde_saphyr::to_string(&object).map_err(|e| InjectError {
                line: doc.first_line,
                col: 1,
                message: format!("cannot write the injected document back as YAML: {e}"),
            })?;
            out.text.push_str(doc.head());
            out.text.push_str(&body);
        } else {
            out.text.push_str(doc.text);
        }
    }
    Ok(out)
}

/// The document's value (`Null` for an empty or comments-only one); a syntax error is
/// placed in the file, not in the document.
fn parse(doc: documents::Document<'_>) -> Result<Yaml, InjectError> {
    // Kubernetes reads manifests as YAML 1.1: `defaultMode: 0400` is octal there, and
    // must keep that value (256) when the document is written back.
    let options = serde_saphyr::options! {
        legacy_octal_numbers: true,
        with_snippet: false,
    };
    serde_saphyr::from_str_with_options::<Option<Yaml>>(doc.text, options)
        .map(|value| value.unwrap_or(Yaml::Null))
        .map_err(|err| {
            let err = err.without_snippet();
            let (line, col) = err.location().map_or((0, 1), |loc| {
                (
                    usize::try_from(loc.line()).unwrap_or(0),
                    usize::try_from(loc.column()).unwrap_or(1),
                )
            });
            let message = serde_saphyr::MessageFormatter::format_message(
                &serde_saphyr::DefaultMessageFormatter,
                err,
            );
            let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
            InjectError {
                line: doc.first_line + line.saturating_sub(1),
                col: col.max(1),
                message: format!("invalid YAML: {message}"),
            }
        })
}

#[cfg(test)]
mod tests;
