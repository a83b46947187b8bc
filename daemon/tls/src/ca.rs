//! The appliance's local certificate authority, kept in one directory of the
//! data dir:
//!
//! | file | what |
//! | --- | --- |
//! | `ca.key` | the CA's private key (PKCS#8 PEM, mode 0600) |
//! | `ca.crt` | the CA's certificate (PEM, mode 0600; served at `/ca.crt`) |
//! | `server.key` | the server certificate's private key (PKCS#8 PEM, 0600) |
//! | `server.crt` | the server certificate, signed by the CA (PEM, 0600) |
//!
//! The CA is ECDSA P-256, valid [`CA_DAYS`] days: BasicConstraints CA
//! (critical), KeyUsage keyCertSign and cRLSign (critical), a subject key
//! identifier, and a subject naming the appliance with a random id (so two
//! appliances' CAs are told apart in a trust store). It is created once and
//! never replaced by the daemon: clients trust it.
//!
//! The server certificate is ECDSA P-256 too, valid [`SERVER_DAYS`] days
//! (never past the CA): subject alternative names for the configured names
//! and the loopback names (`localhost`, 127.0.0.1, ::1), not a CA,
//! KeyUsage digitalSignature, ExtendedKeyUsage serverAuth, an authority key
//! identifier. It is issued again when less than a third of its life is
//! left, when its names differ from the wanted ones, or when it cannot be
//! read; its key is new each time.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use crate::{CaCert, Summary, TlsError, fingerprint, provider, summarize, write_private};

/// Days the CA certificate is valid (about ten years).
pub const CA_DAYS: i64 = 3650;
/// Days a server certificate is valid.
pub const SERVER_DAYS: i64 = 90;
/// Back-dating of `notBefore`, for clients whose clock is a little behind.
const BACKDATE_SECS: i64 = 3600;
const DAY: i64 = 86_400;

/// The names every server certificate carries besides the configured ones.
pub const LOOPBACK_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// File names inside the CA's directory.
pub const CA_KEY: &str = "ca.key";
pub const CA_CERT: &str = "ca.crt";
pub const SERVER_KEY: &str = "server.key";
pub const SERVER_CERT: &str = "server.crt";

/// The CA, loaded: its certificate and its key (which stays in here).
pub struct LocalCa {
    dir: PathBuf,
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    key: KeyPair,
    not_after: i64,
}

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCa")
            .field("dir", &self.dir)
            .field("fingerprint", &fingerprint(&self.cert_der))
            .finish_non_exhaustive()
    }
}

fn when(unix: i64) -> Result<time::OffsetDateTime, TlsError> {
    time::OffsetDateTime::from_unix_timestamp(unix).map_err(|e| TlsError::Generate {
        what: "a validity period",
        reason: e.to_string(),
    })
}

fn generate(what: &'static str) -> impl Fn(rcgen::Error) -> TlsError {
    move |e| TlsError::Generate {
        what,
        reason: e.to_string(),
    }
}

/// A random positive serial number of 16 bytes.
fn serial() -> Result<SerialNumber, TlsError> {
    let mut b = [0u8; 16];
    provider()
        .secure_random
        .fill(&mut b)
        .map_err(|_| TlsError::Generate {
            what: "a serial number",
            reason: "no randomness".into(),
        })?;
    b[0] &= 0x7f;
    b[0] |= 0x01;
    Ok(SerialNumber::from_slice(&b))
}

fn read(dir: &Path, name: &str, what: &'static str) -> Result<Option<String>, TlsError> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(TlsError::Io { what, path, source }),
    }
}

impl LocalCa {
    /// Opens the CA kept in `dir`, or creates it there (and `dir`, mode
    /// 0700) when there is none yet. Returns whether it was created. A CA
    /// certificate whose key is missing or does not match is an error: the
    /// daemon never silently replaces a CA that clients may trust.
    pub fn open_or_create(dir: &Path, now: i64) -> Result<(LocalCa, bool), TlsError> {
        use std::os::unix::fs::PermissionsExt;
        let io = |source| TlsError::Io {
            what: "the local CA's directory",
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
        let cert = read(dir, CA_CERT, "the local CA's certificate")?;
        let key = read(dir, CA_KEY, "the local CA's key")?;
        match (cert, key) {
            (Some(cert), key) => Ok((LocalCa::load(dir, &cert, key.as_deref())?, false)),
            // No certificate: nobody can trust this CA yet (a key alone is a
            // creation cut short), so make it anew.
            (None, _) => Ok((LocalCa::create(dir, now)?, true)),
        }
    }

    fn load(dir: &Path, cert_pem: &str, key_pem: Option<&str>) -> Result<LocalCa, TlsError> {
        let bad = |what, reason: String| TlsError::Bad {
            what,
            path: dir.join(if what == "the local CA's key" {
                CA_KEY
            } else {
                CA_CERT
            }),
            reason,
        };
        let fix = format!(
            "; to start a new CA (every client must then trust the new one), move {} away",
            dir.display()
        );
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| {
            bad(
                "the local CA's certificate",
                format!("not a PEM certificate ({e}){fix}"),
            )
        })?;
        let key_pem = key_pem.ok_or_else(|| {
            bad(
                "the local CA's key",
                format!("missing beside the CA certificate{fix}"),
            )
        })?;
        let key = KeyPair::from_pem(key_pem)
            .map_err(|e| bad("the local CA's key", format!("not a usable key ({e}){fix}")))?;
        let summary = summarize(&cert_der).map_err(|e| bad("the local CA's certificate", e))?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&cert_der)
            .map_err(|e| bad("the local CA's certificate", e.to_string()))?;
        if parsed.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(bad(
                "the local CA's key",
                format!("does not belong to the CA certificate{fix}"),
            ));
        }
        Ok(LocalCa {
            dir: dir.to_path_buf(),
            cert_pem: cert_pem.to_owned(),
            cert_der,
            key,
            not_after: summary.not_after,
        })
    }

    fn create(dir: &Path, now: i64) -> Result<LocalCa, TlsError> {
        let key = KeyPair::generate().map_err(generate("the local CA's key"))?;
        let id = fingerprint(key.public_key_raw())
            .replace(':', "")
            .to_ascii_lowercase();
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "hitvault");
        dn.push(
            DnType::CommonName,
            format!("hitvault local CA {}", &id[..12]),
        );
        p.distinguished_name = dn;
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.not_before = when(now - BACKDATE_SECS)?;
        p.not_after = when(now + CA_DAYS * DAY)?;
        p.serial_number = Some(serial()?);
        let cert = p
            .self_signed(&key)
            .map_err(generate("the local CA's certificate"))?;
        // The key first: a crash between the two leaves a key without a
        // certificate, which the next start replaces.
        write_private(
            &dir.join(CA_KEY),
            key.serialize_pem().as_bytes(),
            "the local CA's key",
        )?;
        write_private(
            &dir.join(CA_CERT),
            cert.pem().as_bytes(),
            "the local CA's certificate",
        )?;
        Ok(LocalCa {
            dir: dir.to_path_buf(),
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            key,
            not_after: now + CA_DAYS * DAY,
        })
    }

    /// The CA's certificate and fingerprint.
    pub fn cert(&self) -> CaCert {
        CaCert {
            pem: self.cert_pem.clone(),
            fingerprint: fingerprint(&self.cert_der),
        }
    }

    /// When the CA certificate expires (Unix seconds).
    pub fn not_after(&self) -> i64 {
        self.not_after
    }

    /// The names a server certificate for `names` carries, in order, without
    /// duplicates: `names`, then the loopback names.
    pub fn wanted_names(names: &[String]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for n in names
            .iter()
            .map(|n| normalize(n))
            .chain(LOOPBACK_NAMES.iter().map(|n| n.to_string()))
        {
            if !out.contains(&n) {
                out.push(n);
            }
        }
        out
    }

    /// The server certificate to serve for `names` at `now`: the one kept
    /// in the directory when it still fits, else a new one (written there).
    /// `force` issues a new one whatever. Returns why it was issued, if it was.
    pub fn server_cert(
        &self,
        names: &[String],
        now: i64,
        force: bool,
    ) -> Result<(Arc<CertifiedKey>, Summary, Option<String>), TlsError> {
        let wanted = LocalCa::wanted_names(names);
        let why = if force {
            "asked for".to_owned()
        } else {
            match self.kept(&wanted, now) {
                Ok(kept) => return Ok((kept.0, kept.1, None)),
                Err(why) => why,
            }
        };
        let (key, summary) = self.issue(&wanted, now)?;
        Ok((key, summary, Some(why)))
    }

    /// The kept server certificate, or why it does not fit.
    fn kept(&self, wanted: &[String], now: i64) -> Result<(Arc<CertifiedKey>, Summary), String> {
        let cert = read(&self.dir, SERVER_CERT, "the server certificate")
            .map_err(|e| e.to_string())?
            .ok_or("there was none")?;
        let key = read(&self.dir, SERVER_KEY, "the server key")
            .map_err(|e| e.to_string())?
            .ok_or("its key was missing")?;
        let der = CertificateDer::from_pem_slice(cert.as_bytes())
            .map_err(|e| format!("the kept one was unreadable ({e})"))?;
        let summary = summarize(&der).map_err(|e| format!("the kept one was unreadable ({e})"))?;
        let mut have = summary.names.clone();
        let mut want = wanted.to_vec();
        have.sort();
        want.sort();
        if have != want {
            return Err(format!(
                "the names changed (had {}, want {})",
                summary.names.join(", "),
                wanted.join(", ")
            ));
        }
        let life = summary.not_after - summary.not_before;
        if summary.not_after - now < life / 3 {
            return Err(format!(
                "less than a third of its life was left (it expires at Unix time {})",
                summary.not_after
            ));
        }
        let key_der = PrivateKeyDer::from_pem_slice(key.as_bytes())
            .map_err(|e| format!("its key was unreadable ({e})"))?;
        let certified =
            CertifiedKey::from_der(vec![der, self.cert_der.clone()], key_der, &provider())
                .map_err(|e| format!("its key did not fit ({e})"))?;
        Ok((Arc::new(certified), summary))
    }

    fn issue(&self, wanted: &[String], now: i64) -> Result<(Arc<CertifiedKey>, Summary), TlsError> {
        let key = KeyPair::generate().map_err(generate("a server key"))?;
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "hitvault");
        dn.push(DnType::CommonName, wanted[0].clone());
        p.distinguished_name = dn;
        p.subject_alt_names = wanted
            .iter()
            .map(|n| match n.parse::<IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => n
                    .clone()
                    .try_into()
                    .map(SanType::DnsName)
                    .map_err(|e: rcgen::Error| TlsError::Generate {
                        what: "a server certificate",
                        reason: format!("{n:?}: {e}"),
                    }),
            })
            .collect::<Result<_, _>>()?;
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.use_authority_key_identifier_extension = true;
        p.not_before = when(now - BACKDATE_SECS)?;
        p.not_after = when((now + SERVER_DAYS * DAY).min(self.not_after))?;
        p.serial_number = Some(serial()?);
        let issuer = Issuer::from_ca_cert_der(&self.cert_der, &self.key)
            .map_err(generate("a server certificate"))?;
        let cert = p
            .signed_by(&key, &issuer)
            .map_err(generate("a server certificate"))?;
        write_private(
            &self.dir.join(SERVER_KEY),
            key.serialize_pem().as_bytes(),
            "the server key",
        )?;
        write_private(
            &self.dir.join(SERVER_CERT),
            cert.pem().as_bytes(),
            "the server certificate",
        )?;
        let summary = summarize(cert.der()).map_err(|reason| TlsError::Bad {
            what: "the server certificate",
            path: self.dir.join(SERVER_CERT),
            reason,
        })?;
        let key_der =
            PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| TlsError::Generate {
                what: "a server key",
                reason: e.to_string(),
            })?;
        let certified = CertifiedKey::from_der(
            vec![cert.der().clone(), self.cert_der.clone()],
            key_der,
            &provider(),
        )
        .map_err(|e| TlsError::Generate {
            what: "a server certificate",
            reason: e.to_string(),
        })?;
        Ok((Arc::new(certified), summary))
    }
}

/// A name as certificates spell it: lower case, no trailing dot; an IP
/// address in its canonical text.
fn normalize(n: &str) -> String {
    match n.parse::<IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => n.trim_end_matches('.').to_ascii_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const NOW: i64 = 1_800_000_000;

    fn names() -> Vec<String> {
        vec!["analytics.clinic.lan".into(), "192.0.2.7".into()]
    }

    #[test]
    fn the_ca_is_created_once_with_private_files_and_kept() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("tls");
        let (ca, created) = LocalCa::open_or_create(&dir, NOW).unwrap();
        assert!(created);
        let (_, _, issued) = ca.server_cert(&names(), NOW, false).unwrap();
        assert_eq!(issued.as_deref(), Some("there was none"));
        for f in [CA_KEY, CA_CERT, SERVER_KEY, SERVER_CERT] {
            let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let (again, created) = LocalCa::open_or_create(&dir, NOW + 10).unwrap();
        assert!(!created);
        assert_eq!(again.cert().fingerprint, ca.cert().fingerprint);
        let (_, _, issued) = again.server_cert(&names(), NOW + 10, false).unwrap();
        assert_eq!(issued, None, "the kept certificate still fits");
    }

    #[test]
    fn the_server_certificate_is_reissued_when_due_or_when_the_names_change() {
        let d = tempfile::tempdir().unwrap();
        let (ca, _) = LocalCa::open_or_create(d.path(), NOW).unwrap();
        let (_, first, _) = ca.server_cert(&names(), NOW, false).unwrap();
        assert_eq!(
            first.names,
            [
                "analytics.clinic.lan",
                "192.0.2.7",
                "localhost",
                "127.0.0.1",
                "::1"
            ]
        );
        // Two thirds of its life later: still kept; a day after: renewed.
        let life = first.not_after - first.not_before;
        let (_, _, issued) = ca
            .server_cert(&names(), first.not_after - life / 3 + 1 - DAY, false)
            .unwrap();
        assert_eq!(issued, None);
        let later = first.not_after - life / 3 + DAY;
        let (_, renewed, issued) = ca.server_cert(&names(), later, false).unwrap();
        assert!(issued.unwrap().contains("third"));
        assert!(renewed.not_after > first.not_after);
        let (_, other, issued) = ca
            .server_cert(&["stats.clinic.lan".to_owned()], later, false)
            .unwrap();
        assert!(issued.unwrap().contains("names changed"));
        assert_eq!(other.names[0], "stats.clinic.lan");
    }

    #[test]
    fn the_certificates_carry_the_extensions_browsers_require() {
        use x509_parser::prelude::*;
        let d = tempfile::tempdir().unwrap();
        let (ca, _) = LocalCa::open_or_create(d.path(), NOW).unwrap();
        let (key, _, _) = ca.server_cert(&names(), NOW, false).unwrap();
        assert_eq!(key.cert.len(), 2, "leaf and CA are sent");
        let (_, leaf) = parse_x509_certificate(&key.cert[0]).unwrap();
        let (_, root) = parse_x509_certificate(&key.cert[1]).unwrap();
        let bc = root.basic_constraints().unwrap().unwrap();
        assert!(bc.critical && bc.value.ca);
        let ku = root.key_usage().unwrap().unwrap();
        assert!(ku.critical && ku.value.key_cert_sign() && ku.value.crl_sign());
        let ski = root
            .iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
                _ => None,
            })
            .expect("the CA has a subject key identifier");
        assert!(!leaf.basic_constraints().unwrap().unwrap().value.ca);
        assert!(leaf.key_usage().unwrap().unwrap().value.digital_signature());
        assert!(
            leaf.extended_key_usage()
                .unwrap()
                .unwrap()
                .value
                .server_auth
        );
        let aki = leaf
            .iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(a) => {
                    a.key_identifier.as_ref().map(|k| k.0.to_vec())
                }
                _ => None,
            })
            .expect("the leaf has an authority key identifier");
        assert_eq!(aki, ski);
        assert_eq!(leaf.issuer(), root.subject());
        assert!(leaf.verify_signature(Some(root.public_key())).is_ok());
    }

    #[test]
    fn a_ca_certificate_without_its_key_is_refused_not_replaced() {
        let d = tempfile::tempdir().unwrap();
        let (ca, _) = LocalCa::open_or_create(d.path(), NOW).unwrap();
        std::fs::remove_file(d.path().join(CA_KEY)).unwrap();
        let e = LocalCa::open_or_create(d.path(), NOW).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
        assert!(e.to_string().contains("move"), "{e}");
        // A key alone (creation cut short) is replaced.
        std::fs::remove_file(d.path().join(CA_CERT)).unwrap();
        let (fresh, created) = LocalCa::open_or_create(d.path(), NOW).unwrap();
        assert!(created);
        assert_ne!(fresh.cert().fingerprint, ca.cert().fingerprint);
    }
}
