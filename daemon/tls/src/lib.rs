//! TLS material for the daemon's listener: where its certificate comes from,
//! how it is renewed or reloaded, and the rustls configuration that serves
//! it. Speaks neither HTTP nor tokio; the daemon calls [`Certs::refresh`]
//! from its own timers and signal handler, and the server crate serves with
//! [`server_config`].
//!
//! Two sources ([`Source`]):
//! - the appliance's own local CA ([`ca`]): created on first start in a
//!   directory of the data dir (ECDSA P-256, keys 0600), with a server
//!   certificate for the configured hostnames and the loopback names, signed
//!   by it and re-issued well before it expires or when the names change;
//! - an organisation's own certificate chain and key ([`files`]), reloaded
//!   on demand, with the current one kept when a new file is bad.
//!
//! Private keys never leave this crate but inside a rustls `CertifiedKey`,
//! and nothing here formats one into a message.

pub mod ca;
pub mod files;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

pub use rustls;
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};

/// A failure to produce or load TLS material, with what it concerns.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file was read but its content is not usable.
    #[error("{what} {}: {reason}", path.display())]
    Bad {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// Generating a key or a certificate failed.
    #[error("cannot generate {what}: {reason}")]
    Generate { what: &'static str, reason: String },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// Where the served certificate comes from.
#[derive(Clone, Debug)]
pub enum Source {
    /// The appliance's own CA, kept in `dir`, and a server certificate for
    /// `names` (DNS names or IP addresses; the loopback names are added).
    LocalCa { dir: PathBuf, names: Vec<String> },
    /// An organisation's certificate chain (leaf first) and its private key,
    /// as PEM files.
    Files { cert: PathBuf, key: PathBuf },
}

/// What asked for a refresh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// An operator's request (SIGHUP): reload the files whatever their
    /// state; check the local CA's certificate.
    Signal,
    /// The short poll of the files: reload them only if they changed.
    Poll,
    /// The daily timer: re-issue the local CA's certificate when due.
    Daily,
}

/// Facts about a certificate, for the log (never a key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// The subject, as text.
    pub subject: String,
    /// Its DNS and IP subject alternative names.
    pub names: Vec<String>,
    /// Validity, Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// SHA-256 of the certificate, `AB:CD:...`.
    pub fingerprint: String,
}

/// What a refresh did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refreshed {
    /// Nothing was due or had changed.
    Unchanged,
    /// A new certificate is served; `why` says what made it.
    Replaced { why: String, cert: Summary },
}

/// The local CA's certificate as the server offers it for download.
#[derive(Clone, Debug)]
pub struct CaCert {
    /// PEM text of the CA certificate.
    pub pem: String,
    /// SHA-256 of its DER encoding, `AB:CD:...` (as `openssl x509
    /// -fingerprint -sha256` prints it).
    pub fingerprint: String,
}

/// SHA-256 of `der`, as colon-separated upper-case hex pairs.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Reads the facts of a DER certificate.
pub fn summarize(der: &[u8]) -> Result<Summary, String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| format!("not X.509: {e}"))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(d) => names.push(d.to_ascii_lowercase()),
                GeneralName::IPAddress(b) => {
                    let ip = match b.len() {
                        4 => <[u8; 4]>::try_from(*b).map(std::net::IpAddr::from).ok(),
                        16 => <[u8; 16]>::try_from(*b).map(std::net::IpAddr::from).ok(),
                        _ => None,
                    };
                    if let Some(ip) = ip {
                        names.push(ip.to_string());
                    }
                }
                _ => {}
            }
        }
    }
    Ok(Summary {
        subject: cert.subject().to_string(),
        names,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        fingerprint: fingerprint(der),
    })
}

/// The certificate the listener serves, swapped in place by a refresh: each
/// handshake takes the current one.
#[derive(Debug)]
pub struct Resolver(RwLock<Arc<CertifiedKey>>);

impl Resolver {
    fn new(key: Arc<CertifiedKey>) -> Resolver {
        Resolver(RwLock::new(key))
    }

    fn set(&self, key: Arc<CertifiedKey>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = key;
    }

    /// The certificate chain served now (leaf first).
    pub fn chain(&self) -> Vec<rustls::pki_types::CertificateDer<'static>> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .cert
            .clone()
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

/// The crypto provider: rustls on *ring*, chosen because it builds with
/// the C compiler alone (aws-lc-rs needs cmake). rustls marks it deprecated
/// since it has no post-quantum key exchange (X25519MLKEM768); the key
/// exchanges it has are X25519, P-256 and P-384.
#[allow(deprecated)]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server side: TLS 1.3 and 1.2 only (rustls speaks nothing older),
/// HTTP/1.1 offered by ALPN, the certificate taken from `resolver` at each
/// handshake.
pub fn server_config(resolver: Arc<Resolver>) -> Result<Arc<ServerConfig>, TlsError> {
    let mut c = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(c))
}

/// The served certificate and where it comes from; [`Certs::refresh`]
/// renews or reloads it.
#[derive(Debug)]
pub struct Certs {
    source: Source,
    resolver: Arc<Resolver>,
    ca: Option<ca::LocalCa>,
    /// The files' identity when last read (files source).
    stamp: Option<files::Stamp>,
    current: Summary,
}

/// What [`Certs::start`] did, for the log.
#[derive(Debug)]
pub struct Started {
    /// The local CA was created now (first start).
    pub created_ca: bool,
    /// Why the server certificate was issued now, if it was.
    pub issued: Option<String>,
}

impl Certs {
    /// Loads the certificate of `source`: for the local CA, creates the CA
    /// on first start and issues a server certificate when none fits
    /// (missing, due for renewal at `now` (Unix seconds), other names).
    pub fn start(source: Source, now: i64) -> Result<(Certs, Started), TlsError> {
        match &source {
            Source::LocalCa { dir, names } => {
                let (ca, created_ca) = ca::LocalCa::open_or_create(dir, now)?;
                let (key, current, issued) = ca.server_cert(names, now, false)?;
                Ok((
                    Certs {
                        resolver: Arc::new(Resolver::new(key)),
                        ca: Some(ca),
                        stamp: None,
                        current,
                        source,
                    },
                    Started { created_ca, issued },
                ))
            }
            Source::Files { cert, key } => {
                let stamp = files::Stamp::of(cert, key);
                let (k, current) = files::load(cert, key)?;
                Ok((
                    Certs {
                        resolver: Arc::new(Resolver::new(k)),
                        ca: None,
                        stamp: Some(stamp),
                        current,
                        source,
                    },
                    Started {
                        created_ca: false,
                        issued: None,
                    },
                ))
            }
        }
    }

    /// The resolver the listener serves from.
    pub fn resolver(&self) -> Arc<Resolver> {
        self.resolver.clone()
    }

    /// The local CA's certificate, if the source is the local CA.
    pub fn ca(&self) -> Option<CaCert> {
        self.ca.as_ref().map(|c| c.cert())
    }

    /// The certificate served now.
    pub fn current(&self) -> &Summary {
        &self.current
    }

    /// Where the certificate comes from.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// Renews (local CA) or reloads (files) when `trigger` and the state call
    /// for it. On an error the current certificate stays served: the error
    /// says why the new one was not taken.
    pub fn refresh(&mut self, trigger: Trigger, now: i64) -> Result<Refreshed, TlsError> {
        match (&self.source, trigger) {
            (Source::LocalCa { names, .. }, Trigger::Signal | Trigger::Daily) => {
                let ca = self.ca.as_ref().expect("a local CA source has its CA");
                let (key, summary, issued) = ca.server_cert(names, now, false)?;
                match issued {
                    Some(why) => {
                        self.resolver.set(key);
                        self.current = summary.clone();
                        Ok(Refreshed::Replaced { why, cert: summary })
                    }
                    None => Ok(Refreshed::Unchanged),
                }
            }
            (Source::LocalCa { .. }, Trigger::Poll) => Ok(Refreshed::Unchanged),
            (Source::Files { cert, key }, _) => {
                let stamp = files::Stamp::of(cert, key);
                if trigger != Trigger::Signal && self.stamp.as_ref() == Some(&stamp) {
                    return Ok(Refreshed::Unchanged);
                }
                // Remember this state even if it is bad: the next poll waits
                // for the next change instead of repeating the same error.
                self.stamp = Some(stamp);
                let (k, summary) = files::load(cert, key)?;
                let why = match trigger {
                    Trigger::Signal => "reloaded on SIGHUP",
                    _ => "the files changed",
                };
                self.resolver.set(k);
                self.current = summary.clone();
                Ok(Refreshed::Replaced {
                    why: why.to_owned(),
                    cert: summary,
                })
            }
        }
    }
}

/// The directories a confined process must be able to read so that the
/// files can be reloaded: the parent of each path as written and of the file
/// it resolves to (a link, as certbot's `live/` names are, points elsewhere;
/// a renewal writes a new file beside the old, which a rule on the file
/// itself would not cover).
pub fn reload_dirs(paths: &[&Path]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for p in paths {
        let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        let mut dirs = vec![abs.parent().map(Path::to_path_buf)];
        if let Ok(real) = abs.canonicalize() {
            dirs.push(real.parent().map(Path::to_path_buf));
        }
        for d in dirs.into_iter().flatten() {
            if !out.contains(&d) {
                out.push(d);
            }
        }
    }
    out
}

/// Writes `bytes` to `path` atomically with mode 0600: a temporary file
/// beside it, fsync'd, renamed over it, the directory fsync'd.
pub(crate) fn write_private(path: &Path, bytes: &[u8], what: &'static str) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| TlsError::Io {
        what,
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_colon_separated_upper_case_sha256() {
        let f = fingerprint(b"abc");
        assert_eq!(f.len(), 32 * 3 - 1);
        assert!(f.starts_with("BA:78:16:BF:"), "{f}");
    }

    fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    #[test]
    fn files_reload_when_changed_and_a_bad_file_keeps_the_served_certificate() {
        let d = tempfile::tempdir().unwrap();
        let (cert, key) = write_pair(d.path(), "one.test");
        let source = Source::Files {
            cert: cert.clone(),
            key: key.clone(),
        };
        let (mut certs, _) = Certs::start(source, 0).unwrap();
        let first = certs.resolver().chain();
        assert_eq!(
            certs.refresh(Trigger::Poll, 0).unwrap(),
            Refreshed::Unchanged
        );
        // A bad key: refused, the first certificate still served, and the
        // next poll does not repeat the error until the files change again.
        std::fs::write(&key, "not a key").unwrap();
        let e = certs.refresh(Trigger::Poll, 0).unwrap_err();
        assert!(e.to_string().contains("tls.key_file"), "{e}");
        assert_eq!(certs.resolver().chain(), first);
        assert_eq!(certs.current().names, ["one.test"]);
        assert_eq!(
            certs.refresh(Trigger::Poll, 0).unwrap(),
            Refreshed::Unchanged
        );
        // A signal retries whatever the state.
        assert!(certs.refresh(Trigger::Signal, 0).is_err());
        write_pair(d.path(), "two.test");
        match certs.refresh(Trigger::Poll, 0).unwrap() {
            Refreshed::Replaced { cert, .. } => assert_eq!(cert.names, ["two.test"]),
            other => panic!("{other:?}"),
        }
        assert_ne!(certs.resolver().chain(), first);
        assert!(matches!(
            certs.refresh(Trigger::Signal, 0).unwrap(),
            Refreshed::Replaced { .. }
        ));
    }

    #[test]
    fn reload_dirs_name_the_parent_of_a_link_and_of_its_target() {
        let d = tempfile::tempdir().unwrap();
        let real = d.path().join("archive");
        let live = d.path().join("live");
        std::fs::create_dir_all(&real).unwrap();
        std::fs::create_dir_all(&live).unwrap();
        std::fs::write(real.join("cert1.pem"), "x").unwrap();
        std::os::unix::fs::symlink(real.join("cert1.pem"), live.join("cert.pem")).unwrap();
        let dirs = reload_dirs(&[&live.join("cert.pem"), &live.join("key.pem")]);
        assert_eq!(dirs, vec![live.clone(), real.canonicalize().unwrap()]);
    }
}
