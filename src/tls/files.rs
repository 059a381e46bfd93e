//! Minted certificates on disk: the files `weir certs` reads and writes, and how.
//!
//! A CA directory holds [`CA_CERT`] and [`CA_KEY`]. A workload directory holds [`CERT`],
//! [`KEY`] and the trust bundle [`TRUST_BUNDLE`] (a copy of the CA certificate), and with a
//! Secret also [`SECRET`]: the names a `kubernetes.io/tls` Secret gives when mounted, so
//! the same `identity` paths serve on a laptop and in a pod.
//!
//! Every file is written whole or not at all (a temporary file in the same directory, then
//! renamed over the old one), so a proxy re-reading its identity never sees half a file.
//! Files with a private key are created with mode 0600 before a byte is written.

use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::mint::{Issued, MeshCa, MintError};
use super::secret::tls_secret;
use super::spiffe::SpiffeIdError;

/// The CA certificate in a CA directory: the trust bundle.
pub const CA_CERT: &str = "ca.crt";
/// The CA's private key in a CA directory (mode 0600).
pub const CA_KEY: &str = "ca.key";
/// The workload certificate in a workload directory.
pub const CERT: &str = "tls.crt";
/// The workload's private key in a workload directory (mode 0600).
pub const KEY: &str = "tls.key";
/// The trust bundle in a workload directory: a copy of the CA certificate.
pub const TRUST_BUNDLE: &str = "ca.crt";
/// The Kubernetes Secret manifest in a workload directory (mode 0600: it holds the key).
pub const SECRET: &str = "secret.yaml";

/// The largest certificate or key file read: far above any PEM that `weir certs` writes.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// One file written, and what it is for a person reading the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Where.
    pub path: PathBuf,
    /// What it holds, in a few words.
    pub what: String,
}

/// Why minted files could not be read or written. The message names the file and the fix.
#[derive(Debug)]
pub enum FileError {
    /// A CA directory or one of its files does not exist.
    Missing { path: PathBuf },
    /// The path is there but is not what it must be (a file where a directory must be, a
    /// device, a file too large).
    NotAFile { path: PathBuf, problem: String },
    /// The CA's files are there but are not a usable mesh CA.
    InvalidCa { dir: PathBuf, error: MintError },
    /// A CA is already there and `--force` was not given.
    Exists { path: PathBuf },
    /// A name for the Secret is not valid.
    SecretName(SpiffeIdError),
    /// A file could not be read.
    Read { path: PathBuf, source: io::Error },
    /// A file or directory could not be written.
    Write { path: PathBuf, source: io::Error },
}

// === impl MeshCa (files) ===

impl MeshCa {
    /// Loads the CA that `weir certs ca` wrote to `dir` ([`CA_CERT`] and [`CA_KEY`]).
    pub fn load(dir: &Path) -> Result<MeshCa, FileError> {
        match fs::metadata(dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(FileError::Missing {
                    path: dir.to_path_buf(),
                })
            }
            Err(source) => {
                return Err(FileError::Read {
                    path: dir.to_path_buf(),
                    source,
                })
            }
            Ok(meta) if !meta.is_dir() => {
                return Err(FileError::NotAFile {
                    path: dir.to_path_buf(),
                    problem: format!(
                        "is not a directory; name the directory that holds {CA_CERT} and {CA_KEY}"
                    ),
                })
            }
            Ok(_) => {}
        }
        let cert = read_text(&dir.join(CA_CERT))?;
        let key = read_text(&dir.join(CA_KEY))?;
        MeshCa::from_pem(&cert, &key).map_err(|error| FileError::InvalidCa {
            dir: dir.to_path_buf(),
            error,
        })
    }

    /// Writes [`CA_CERT`] and [`CA_KEY`] (mode 0600) to `dir`, creating it if needed.
    /// Refuses to replace a CA already there unless `force`: every certificate it signed
    /// would stop being trusted.
    pub fn write(&self, dir: &Path, force: bool) -> Result<Vec<Written>, FileError> {
        create_dir(dir)?;
        let (cert, key) = (dir.join(CA_CERT), dir.join(CA_KEY));
        if !force {
            for path in [&cert, &key] {
                if fs::symlink_metadata(path).is_ok() {
                    return Err(FileError::Exists { path: path.clone() });
                }
            }
        }
        write_file(&key, self.key_pem().as_bytes(), SECRET_MODE)?;
        write_file(&cert, self.cert_pem().as_bytes(), PUBLIC_MODE)?;
        Ok(vec![
            Written {
                path: cert,
                what: "CA certificate: the trust bundle, for every workload".into(),
            },
            Written {
                path: key,
                what: "CA private key (mode 0600): keep it off the pods".into(),
            },
        ])
    }
}

// === impl Issued (files) ===

impl Issued {
    /// Writes [`CERT`], [`KEY`] (mode 0600) and [`TRUST_BUNDLE`] to `dir`, creating it if
    /// needed and replacing a workload certificate already there; with `secret`, also
    /// [`SECRET`] (mode 0600), a Secret of that name in the workload's namespace.
    pub fn write(
        &self,
        dir: &Path,
        ca: &MeshCa,
        secret: Option<&str>,
    ) -> Result<Vec<Written>, FileError> {
        // Made first, so that an invalid name writes nothing.
        let manifest = secret
            .map(|name| tls_secret(name, self, ca.cert_pem()).map(|m| (name, m)))
            .transpose()
            .map_err(FileError::SecretName)?;
        create_dir(dir)?;
        let (cert, key, bundle) = (dir.join(CERT), dir.join(KEY), dir.join(TRUST_BUNDLE));
        write_file(&key, self.key_pem.as_bytes(), SECRET_MODE)?;
        write_file(&cert, self.cert_pem.as_bytes(), PUBLIC_MODE)?;
        // With `--out` the CA's own directory, the bundle is the CA certificate itself:
        // leave it untouched.
        if fs::read(&bundle).ok().as_deref() != Some(ca.cert_pem().as_bytes()) {
            write_file(&bundle, ca.cert_pem().as_bytes(), PUBLIC_MODE)?;
        }
        let mut written = vec![
            Written {
                path: cert,
                what: format!("certificate of {}", self.spiffe_id),
            },
            Written {
                path: key,
                what: "private key (mode 0600)".into(),
            },
            Written {
                path: bundle,
                what: format!(
                    "trust bundle: the CA certificate of {}",
                    self.spiffe_id.trust_domain()
                ),
            },
        ];
        if let Some((name, manifest)) = manifest {
            let path = dir.join(SECRET);
            write_file(&path, manifest.as_bytes(), SECRET_MODE)?;
            written.push(Written {
                path,
                what: format!(
                    "Secret {}/{name} of type kubernetes.io/tls (mode 0600)",
                    self.spiffe_id.namespace()
                ),
            });
        }
        Ok(written)
    }
}

// === impl FileError ===

impl FileError {
    /// True when the input is at fault (exit 1), false when the machine failed (exit 2).
    pub fn is_input(&self) -> bool {
        match self {
            FileError::Missing { .. }
            | FileError::NotAFile { .. }
            | FileError::Exists { .. }
            | FileError::SecretName(_) => true,
            FileError::InvalidCa { error, .. } => error.is_input(),
            FileError::Read { .. } | FileError::Write { .. } => false,
        }
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileError::Missing { path } => write!(
                f,
                "{}: not found; mint a CA with `weir certs ca --out DIR` and name that \
                 directory",
                path.display()
            ),
            FileError::NotAFile { path, problem } => write!(f, "{}: {problem}", path.display()),
            FileError::InvalidCa { dir, error } => write!(
                f,
                "{}: not a usable mesh CA ({CA_CERT}, {CA_KEY}): {error}",
                dir.display()
            ),
            FileError::Exists { path } => write!(
                f,
                "{}: a CA is already there; replacing it makes every certificate it signed \
                 untrusted: add `--force` to replace it, or choose another `--out`",
                path.display()
            ),
            FileError::SecretName(e) => write!(f, "--secret: {e}"),
            FileError::Read { path, source } => {
                write!(f, "{}: cannot read: {source}", path.display())
            }
            FileError::Write { path, source } => {
                write!(f, "{}: cannot write: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for FileError {}

// === helpers ===

const SECRET_MODE: u32 = 0o600;
const PUBLIC_MODE: u32 = 0o644;

/// A certificate or key file's text: a regular file of at most [`MAX_FILE_BYTES`], UTF-8.
fn read_text(path: &Path) -> Result<String, FileError> {
    let not_a_file = |problem: &str| FileError::NotAFile {
        path: path.to_path_buf(),
        problem: problem.to_string(),
    };
    let read_err = |source| FileError::Read {
        path: path.to_path_buf(),
        source,
    };
    // Checked before opening: opening a FIFO would wait for a writer.
    match fs::metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(FileError::Missing {
                path: path.to_path_buf(),
            })
        }
        Err(e) => return Err(read_err(e)),
        Ok(meta) if !meta.is_file() => {
            return Err(not_a_file(
                "is not a regular file; it must be the PEM file `weir certs ca` wrote",
            ))
        }
        Ok(meta) if meta.len() > MAX_FILE_BYTES => {
            return Err(not_a_file(
                "is larger than 1 MiB, far larger than a PEM certificate or key",
            ))
        }
        Ok(_) => {}
    }
    let mut bytes = Vec::new();
    fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(read_err)?;
    String::from_utf8(bytes)
        .map_err(|_| not_a_file("is not text; it must be the PEM file `weir certs ca` wrote"))
}

fn create_dir(dir: &Path) -> Result<(), FileError> {
    fs::create_dir_all(dir).map_err(|source| FileError::Write {
        path: dir.to_path_buf(),
        source,
    })
}

/// Writes `bytes` to `path` whole: into a new temporary file of `mode` beside it, then renamed
/// over `path`.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), FileError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| {
        // A temporary file left by a crash would make `create_new` fail: remove it first.
        let _ = fs::remove_file(&tmp);
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    result.map_err(|source| {
        let _ = fs::remove_file(&tmp);
        FileError::Write {
            path: path.to_path_buf(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::spiffe::TrustDomain;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    const HOUR: Duration = Duration::from_secs(3600);

    /// A new empty directory under the system temp dir, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new() -> Scratch {
            static N: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "weir-files-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).expect("scratch dir");
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("exists").permissions().mode() & 0o777
    }

    fn ca() -> MeshCa {
        MeshCa::new(TrustDomain::new("cluster.local").expect("td"), 48 * HOUR).expect("ca")
    }

    #[test]
    fn a_ca_written_loads_back_and_its_key_is_0600() {
        let scratch = Scratch::new();
        let dir = scratch.0.join("new/ca");
        let ca = ca();
        let written = ca.write(&dir, false).expect("written");
        let paths: Vec<_> = written.iter().map(|w| w.path.clone()).collect();
        assert_eq!(paths, [dir.join("ca.crt"), dir.join("ca.key")]);
        assert_eq!(mode(&dir.join("ca.key")), 0o600);
        assert_eq!(
            fs::read_to_string(dir.join("ca.crt")).expect("read"),
            ca.cert_pem()
        );
        let loaded = MeshCa::load(&dir).expect("loads");
        assert_eq!(loaded.cert_pem(), ca.cert_pem());
        assert_eq!(loaded.key_pem(), ca.key_pem());
        let leftovers: Vec<_> = fs::read_dir(&dir)
            .expect("dir")
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .filter(|n| n.to_string_lossy().starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    }

    #[test]
    fn a_ca_is_replaced_only_with_force() {
        let scratch = Scratch::new();
        let first = ca();
        first.write(&scratch.0, false).expect("first");
        let err = ca().write(&scratch.0, false).expect_err("exists");
        assert!(matches!(err, FileError::Exists { .. }) && err.is_input());
        assert!(err.to_string().contains("--force"), "{err}");
        assert_eq!(
            MeshCa::load(&scratch.0).expect("load").cert_pem(),
            first.cert_pem()
        );
        // A key alone is a CA too.
        fs::remove_file(scratch.0.join(CA_CERT)).expect("rm");
        assert!(ca().write(&scratch.0, false).is_err());
        let second = ca();
        second.write(&scratch.0, true).expect("forced");
        assert_eq!(
            MeshCa::load(&scratch.0).expect("load").cert_pem(),
            second.cert_pem()
        );
        assert_eq!(mode(&scratch.0.join(CA_KEY)), 0o600);
    }

    #[test]
    fn a_workload_directory_holds_the_certificate_key_and_bundle() {
        let scratch = Scratch::new();
        let ca = ca();
        let issued = ca.issue("shop", "reviews", HOUR).expect("issued");
        let dir = scratch.0.join("reviews");
        let written = issued
            .write(&dir, &ca, Some("reviews-tls"))
            .expect("written");
        let names: Vec<_> = written
            .iter()
            .map(|w| {
                w.path
                    .file_name()
                    .expect("name")
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(names, ["tls.crt", "tls.key", "ca.crt", "secret.yaml"]);
        assert_eq!(
            fs::read_to_string(dir.join(CERT)).expect("r"),
            issued.cert_pem
        );
        assert_eq!(
            fs::read_to_string(dir.join(KEY)).expect("r"),
            issued.key_pem
        );
        assert_eq!(
            fs::read_to_string(dir.join(TRUST_BUNDLE)).expect("r"),
            ca.cert_pem()
        );
        assert_eq!(mode(&dir.join(KEY)), 0o600);
        assert_eq!(mode(&dir.join(SECRET)), 0o600);
        // Rotation: a new certificate replaces the old one in place.
        let next = ca.issue("shop", "reviews", HOUR).expect("next");
        next.write(&dir, &ca, None).expect("rewritten");
        assert_eq!(fs::read_to_string(dir.join(KEY)).expect("r"), next.key_pem);
        assert_eq!(mode(&dir.join(KEY)), 0o600);
    }

    #[test]
    fn issuing_into_the_ca_directory_leaves_the_ca_untouched() {
        let scratch = Scratch::new();
        let ca = ca();
        ca.write(&scratch.0, false).expect("ca");
        let inode = fs::metadata(scratch.0.join(CA_CERT)).expect("meta").ino();
        let issued = ca.issue("shop", "reviews", HOUR).expect("issued");
        issued.write(&scratch.0, &ca, None).expect("written");
        assert_eq!(
            fs::metadata(scratch.0.join(CA_CERT)).expect("meta").ino(),
            inode
        );
        assert!(MeshCa::load(&scratch.0).is_ok());
    }

    #[test]
    fn an_invalid_secret_name_writes_nothing() {
        let scratch = Scratch::new();
        let ca = ca();
        let issued = ca.issue("shop", "reviews", HOUR).expect("issued");
        let dir = scratch.0.join("out");
        let err = issued
            .write(&dir, &ca, Some("Bad_Name"))
            .expect_err("invalid");
        assert!(err.is_input());
        assert!(err
            .to_string()
            .starts_with("--secret: invalid Kubernetes object name `Bad_Name`"));
        assert!(!dir.exists());
    }

    #[test]
    fn loading_says_what_is_missing_or_wrong() {
        let scratch = Scratch::new();
        let missing = MeshCa::load(&scratch.0.join("nope")).expect_err("missing dir");
        assert!(matches!(missing, FileError::Missing { .. }) && missing.is_input());
        assert!(
            missing.to_string().contains("weir certs ca --out"),
            "{missing}"
        );

        let file = scratch.0.join("file");
        fs::write(&file, "x").expect("write");
        let err = MeshCa::load(&file).expect_err("a file");
        assert!(err.to_string().contains("is not a directory"), "{err}");

        let ca = ca();
        ca.write(&scratch.0, false).expect("ca");
        fs::remove_file(scratch.0.join(CA_KEY)).expect("rm");
        let err = MeshCa::load(&scratch.0).expect_err("no key");
        assert!(err.to_string().contains("ca.key: not found"), "{err}");

        fs::create_dir(scratch.0.join(CA_KEY)).expect("mkdir");
        let err = MeshCa::load(&scratch.0).expect_err("a directory");
        assert!(err.to_string().contains("is not a regular file"), "{err}");
        fs::remove_dir(scratch.0.join(CA_KEY)).expect("rmdir");

        fs::write(scratch.0.join(CA_KEY), vec![b'x'; 2 << 20]).expect("big");
        let err = MeshCa::load(&scratch.0).expect_err("too large");
        assert!(err.to_string().contains("larger than 1 MiB"), "{err}");

        fs::write(scratch.0.join(CA_KEY), [0xff, 0xfe, 0]).expect("binary");
        let err = MeshCa::load(&scratch.0).expect_err("binary");
        assert!(err.to_string().contains("is not text"), "{err}");

        fs::write(
            scratch.0.join(CA_KEY),
            MeshCa::new(TrustDomain::new("x.org").expect("td"), HOUR)
                .expect("other")
                .key_pem(),
        )
        .expect("other key");
        let err = MeshCa::load(&scratch.0).expect_err("other key");
        assert!(matches!(err, FileError::InvalidCa { .. }) && err.is_input());
        assert!(
            err.to_string()
                .contains("not a usable mesh CA (ca.crt, ca.key): the key is not"),
            "{err}"
        );
    }

    /// Moves TLS records between two in-memory connections until both finish the handshake
    /// (or one refuses).
    fn handshake(
        client: &mut rustls::ClientConnection,
        server: &mut rustls::ServerConnection,
    ) -> Result<(), rustls::Error> {
        for _ in 0..10 {
            let mut bytes = Vec::new();
            client.write_tls(&mut bytes).expect("client writes");
            server
                .read_tls(&mut bytes.as_slice())
                .expect("server reads");
            server.process_new_packets()?;
            let mut bytes = Vec::new();
            server.write_tls(&mut bytes).expect("server writes");
            client
                .read_tls(&mut bytes.as_slice())
                .expect("client reads");
            client.process_new_packets()?;
            if !client.is_handshaking() && !server.is_handshaking() {
                return Ok(());
            }
        }
        panic!("the handshake did not finish in 10 rounds");
    }

    fn identity(dir: &Path) -> Result<crate::tls::Identity, crate::tls::IdentityError> {
        crate::tls::Identity::load(&crate::config::Identity {
            cert: dir.join(CERT),
            key: dir.join(KEY),
            trust_bundle: dir.join(TRUST_BUNDLE),
        })
    }

    #[test]
    fn workload_directories_load_as_weir_identities_that_complete_mutual_tls() {
        let scratch = Scratch::new();
        let ca = ca();
        let (reviews, frontend) = (scratch.0.join("reviews"), scratch.0.join("frontend"));
        for (dir, sa) in [(&reviews, "reviews"), (&frontend, "frontend")] {
            let issued = ca.issue("shop", sa, HOUR).expect("issued");
            issued.write(dir, &ca, None).expect("written");
        }
        let server_id = identity(&reviews).expect("reviews loads as an identity");
        let client_id = identity(&frontend).expect("frontend loads as an identity");
        assert_eq!(
            server_id.spiffe_id,
            "spiffe://cluster.local/ns/shop/sa/reviews"
        );
        assert_eq!(server_id.trust_domain(), "cluster.local");

        let server_config = server_id.server_config().expect("server settings");
        let client_config = client_id
            .client_config("spiffe://cluster.local/ns/shop/sa/reviews", b"h2")
            .expect("client settings");
        let name = rustls::pki_types::ServerName::try_from("reviews").expect("name");
        let mut client =
            rustls::ClientConnection::new(client_config, name.clone()).expect("client");
        let mut server = rustls::ServerConnection::new(server_config.clone()).expect("server");
        handshake(&mut client, &mut server).expect("mutual TLS");
        let peer = server.peer_certificates().expect("a client certificate");
        assert_eq!(
            crate::tls::peer::spiffe_id(&peer[0]).as_deref(),
            Ok("spiffe://cluster.local/ns/shop/sa/frontend")
        );

        // A workload of another CA is refused, though its SPIFFE ID looks the same.
        let other_ca = MeshCa::new(TrustDomain::new("cluster.local").expect("td"), 48 * HOUR)
            .expect("other CA");
        let intruder = scratch.0.join("intruder");
        other_ca
            .issue("shop", "frontend", HOUR)
            .expect("issued")
            .write(&intruder, &other_ca, None)
            .expect("written");
        let intruder_id = identity(&intruder).expect("loads: it is consistent in itself");
        let client_config = intruder_id
            .client_config("spiffe://cluster.local/ns/shop/sa/reviews", b"h2")
            .expect("client settings");
        let mut client = rustls::ClientConnection::new(client_config, name).expect("client");
        let mut server = rustls::ServerConnection::new(server_config).expect("server");
        assert!(handshake(&mut client, &mut server).is_err());
    }

    #[test]
    fn an_unwritable_directory_is_a_runtime_failure() {
        let scratch = Scratch::new();
        let file = scratch.0.join("file");
        fs::write(&file, "x").expect("write");
        let err = ca()
            .write(&file.join("sub"), false)
            .expect_err("under a file");
        assert!(matches!(err, FileError::Write { .. }) && !err.is_input());
        assert!(err.to_string().contains("cannot write"), "{err}");
    }
}
