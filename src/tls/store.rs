//! The workload identity in force, and its rotation without restart. The files are watched
//! through their directories (a Kubernetes Secret update swaps a `..data` symlink, which a
//! watch on the files themselves would miss); a change is loaded and checked in full before
//! it replaces the identity, so a broken, half-written or foreign file is refused and the
//! old identity keeps serving. Handshakes pick the identity up when they start: existing
//! connections carry on with the one they began with.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use super::identity::{Identity, IdentityError};
use crate::config;
use crate::file_watch::{directory_of, DirectoryWatch};
use crate::telemetry::metrics::{CertificateLabels, Metrics, ReloadLabels};

/// The identity in force, its generation (bumped at each rotation), and its metrics.
#[derive(Debug)]
pub struct IdentityStore {
    files: config::Identity,
    current: ArcSwap<Identity>,
    generation: AtomicU64,
    expiry: Gauge,
    rotated: Counter,
    refused: Counter,
}

impl IdentityStore {
    /// Loads the identity `files` name.
    pub fn load(files: &config::Identity, metrics: &Metrics) -> Result<Arc<Self>, IdentityError> {
        let identity = Identity::load(files)?;
        let expiry = metrics
            .certificate_expiry
            .get_or_create_owned(&CertificateLabels {
                identity: identity.spiffe_id.clone(),
            });
        expiry.set(identity.not_after);
        let reloads = |result: &str| {
            metrics.identity_reloads.get_or_create_owned(&ReloadLabels {
                result: result.to_string(),
            })
        };
        Ok(Arc::new(IdentityStore {
            files: files.clone(),
            current: ArcSwap::from_pointee(identity),
            generation: AtomicU64::new(0),
            expiry,
            rotated: reloads("success"),
            refused: reloads("failure"),
        }))
    }

    /// The identity in force.
    pub fn current(&self) -> Arc<Identity> {
        self.current.load_full()
    }

    /// Bumped at each rotation: TLS settings built for an older generation are rebuilt.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Why the workload is not ready to serve mTLS, if it is not: its certificate expired.
    pub fn expired(&self, now_unix: i64) -> Option<String> {
        let identity = self.current();
        (identity.not_after <= now_unix).then(|| {
            format!(
                "not ready: the certificate of {} expired at {} (Unix time); rotate it\n",
                identity.spiffe_id, identity.not_after
            )
        })
    }

    /// Reads the files again: a valid identity with the same SPIFFE ID replaces the one in
    /// force; anything else is refused and logged, and the old one stays.
    pub fn reload(&self) -> Result<(), String> {
        let refuse = |why: String| {
            self.refused.inc();
            tracing::warn!(error = %why, "identity files changed but were refused; the old identity stays");
            Err(why)
        };
        let identity = match Identity::load(&self.files) {
            Ok(identity) => identity,
            Err(e) => return refuse(e.to_string()),
        };
        let old = self.current();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        if identity.not_after <= now {
            return refuse(format!(
                "{}: the new certificate expired at {} (Unix time)",
                self.files.cert.display(),
                identity.not_after
            ));
        }
        if identity.spiffe_id != old.spiffe_id {
            return refuse(format!(
                "{}: the new certificate names {}, not this workload's {}; issue it for {} (`weir certs issue`), or restart weir to change identity",
                self.files.cert.display(),
                identity.spiffe_id,
                old.spiffe_id,
                old.spiffe_id
            ));
        }
        if identity.same_files_as(&old) {
            return Ok(());
        }
        self.expiry.set(identity.not_after);
        self.current.store(Arc::new(identity));
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.rotated.inc();
        tracing::info!(spiffe_id = %old.spiffe_id, "identity rotated; new handshakes use it");
        Ok(())
    }

    /// Watches the identity files' directories and reloads on change, until `stop` turns
    /// true. Only changes count: reading the files (weir's own reload, or anyone's) is no
    /// reason to read them again. A watch that cannot be set up is logged: the identity
    /// stays as loaded.
    pub fn watch(self: &Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let Some(mut changes) =
            DirectoryWatch::start(&self.directories(), |_| true, "identity files")
        else {
            return;
        };
        let store = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    changed = changes.changed() => if changed.is_none() { return },
                }
                let _ = store.reload();
            }
        });
    }

    fn directories(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        for file in [&self.files.cert, &self.files.key, &self.files.trust_bundle] {
            let dir = directory_of(file);
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
        dirs
    }
}

/// How a listener's or a service's TLS settings are made from an identity.
type Build<T> = Box<dyn Fn(&Identity) -> Result<Arc<T>, String> + Send + Sync>;

/// TLS settings built from the identity in force, rebuilt when it rotates.
pub struct Rotating<T> {
    store: Arc<IdentityStore>,
    build: Build<T>,
    built: ArcSwap<(u64, Arc<T>)>,
}

impl<T> std::fmt::Debug for Rotating<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rotating")
            .field("generation", &self.built.load().0)
            .finish_non_exhaustive()
    }
}

impl<T> Rotating<T> {
    /// Settings `build` makes from `store`'s identity (checked now, so a later rotation,
    /// already checked by the store, rebuilds them without failing).
    pub fn new(
        store: Arc<IdentityStore>,
        build: impl Fn(&Identity) -> Result<Arc<T>, String> + Send + Sync + 'static,
    ) -> Result<Self, String> {
        let generation = store.generation();
        let settings = build(&store.current())?;
        Ok(Rotating {
            store,
            build: Box::new(build),
            built: ArcSwap::from_pointee((generation, settings)),
        })
    }

    /// The settings for a handshake starting now: two atomic loads, unless the identity
    /// rotated since they were built. Should a rebuild fail (the store checked the
    /// identity, so it should not), the old settings serve on and the generation is not
    /// tried again.
    pub fn get(&self) -> Arc<T> {
        let built = self.built.load();
        let generation = self.store.generation();
        if built.0 == generation {
            return built.1.clone();
        }
        let settings = match (self.build)(&self.store.current()) {
            Ok(settings) => settings,
            Err(why) => {
                tracing::warn!(error = %why, "TLS settings could not be rebuilt for the rotated identity; the old ones serve on");
                built.1.clone()
            }
        };
        self.built.store(Arc::new((generation, settings.clone())));
        settings
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rcgen::{
        BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
    };

    use super::*;

    /// Writes a CA bundle and a workload certificate for `id` (valid until `year`) into
    /// `dir`, and returns the identity files.
    fn mint(dir: &Path, issuer: &Issuer<'_, KeyPair>, id: &str, year: i32) -> config::Identity {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.subject_alt_names = vec![SanType::URI(id.try_into().expect("ia5"))];
        params.not_after = rcgen::date_time_ymd(year, 1, 1);
        let cert = params.signed_by(&key, issuer).expect("signed");
        std::fs::write(dir.join("w.crt"), cert.pem()).expect("write");
        std::fs::write(dir.join("w.key"), key.serialize_pem()).expect("write");
        config::Identity {
            cert: dir.join("w.crt"),
            key: dir.join("w.key"),
            trust_bundle: dir.join("ca.crt"),
        }
    }

    fn ca(dir: &Path) -> Issuer<'static, KeyPair> {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let cert = params.self_signed(&key).expect("self-signed");
        std::fs::write(dir.join("ca.crt"), cert.pem()).expect("write");
        Issuer::new(params, key)
    }

    fn scratch(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("weir-store-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }

    const ID: &str = "spiffe://cluster.local/ns/shop/sa/reviews";

    #[test]
    fn a_rotation_takes_a_new_certificate_and_refuses_anything_else() {
        let dir = scratch("rotation");
        let issuer = ca(&dir);
        let files = mint(&dir, &issuer, ID, 2035);
        let metrics = Metrics::new();
        let store = IdentityStore::load(&files, &metrics).expect("loads");
        assert_eq!(store.generation(), 0);

        // Nothing changed: nothing rotates.
        store.reload().expect("same files");
        assert_eq!(store.generation(), 0);

        // A new certificate for the same identity rotates.
        mint(&dir, &issuer, ID, 2040);
        store.reload().expect("rotates");
        assert_eq!(store.generation(), 1);
        assert_eq!(store.current().not_after, 2_208_988_800);

        // Another identity, or a corrupt file, is refused; the rotated one stays.
        mint(
            &dir,
            &issuer,
            "spiffe://cluster.local/ns/shop/sa/other",
            2045,
        );
        let why = store.reload().expect_err("another identity");
        assert!(
            why.contains("names spiffe://cluster.local/ns/shop/sa/other, not this workload's"),
            "{why}"
        );
        std::fs::write(dir.join("w.crt"), "garbage").expect("write");
        let why = store.reload().expect_err("corrupt");
        assert!(why.contains("w.crt: holds no PEM certificate"), "{why}");
        // A certificate the bundle does not sign (a CA rotation's new leaf before its
        // bundle), or one already expired, would leave the workload unable to handshake.
        let elsewhere = scratch("rotation-elsewhere");
        let stranger = ca(&elsewhere);
        mint(&dir, &stranger, ID, 2045);
        let why = store.reload().expect_err("not signed by the bundle");
        assert!(why.contains("does not chain to the trust bundle"), "{why}");
        mint(&dir, &issuer, ID, 2021);
        let why = store.reload().expect_err("expired");
        assert!(
            why.contains("the new certificate expired at 1609459200"),
            "{why}"
        );
        assert_eq!(store.generation(), 1);
        assert_eq!(store.current().not_after, 2_208_988_800);
        let text = metrics.render();
        assert!(
            text.contains("weir_tls_identity_reloads_total{result=\"success\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("weir_tls_identity_reloads_total{result=\"failure\"} 4"),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "weir_tls_certificate_expiry_timestamp_seconds{{identity=\"{ID}\"}} 2208988800"
            )),
            "{text}"
        );
    }

    #[test]
    fn an_expired_certificate_makes_the_workload_not_ready() {
        let dir = scratch("expired");
        let issuer = ca(&dir);
        let files = mint(&dir, &issuer, ID, 2021);
        let store = IdentityStore::load(&files, &Metrics::new()).expect("loads");
        let why = store.expired(1_700_000_000).expect("expired");
        assert!(
            why.contains(&format!("the certificate of {ID} expired at 1609459200")),
            "{why}"
        );
        assert_eq!(
            store.expired(1_600_000_000),
            None,
            "before 2021 it was valid"
        );
    }
}
