//! An organisation's own certificate: a PEM chain (leaf first) and its PEM
//! private key (PKCS#8, SEC1 or PKCS#1; ECDSA, Ed25519 or RSA), as the
//! settings `tls.cert_file` and `tls.key_file` name them.
//!
//! [`load`] checks what a TLS client would trip over later: no certificate,
//! no key, a key that does not belong to the leaf. Whoever reloads keeps the
//! old certificate when it fails.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use crate::{Summary, TlsError, provider, summarize};

/// What the two files are now: device, inode, size and change times of
/// each (following links), or the error of reading them. Equal stamps: no
/// reload needed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamp(Vec<Result<FileId, std::io::ErrorKind>>);

/// Device, inode, size, mtime (s, ns), ctime (s, ns).
type FileId = (u64, u64, u64, i64, i64, i64, i64);

impl Stamp {
    pub fn of(cert: &Path, key: &Path) -> Stamp {
        Stamp(
            [cert, key]
                .iter()
                .map(|p| {
                    std::fs::metadata(p)
                        .map(|m| {
                            (
                                m.dev(),
                                m.ino(),
                                m.size(),
                                m.mtime(),
                                m.mtime_nsec(),
                                m.ctime(),
                                m.ctime_nsec(),
                            )
                        })
                        .map_err(|e| e.kind())
                })
                .collect(),
        )
    }
}

/// Reads and checks the chain in `cert` and the key in `key`.
pub fn load(cert: &Path, key: &Path) -> Result<(Arc<CertifiedKey>, Summary), TlsError> {
    const CERT: &str = "tls.cert_file";
    const KEY: &str = "tls.key_file";
    let bad = |what, path: &Path, reason: String| TlsError::Bad {
        what,
        path: path.to_path_buf(),
        reason,
    };
    let cert_pem = std::fs::read(cert).map_err(|source| TlsError::Io {
        what: CERT,
        path: cert.to_path_buf(),
        source,
    })?;
    let key_pem = std::fs::read(key).map_err(|source| TlsError::Io {
        what: KEY,
        path: key.to_path_buf(),
        source,
    })?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| bad(CERT, cert, format!("not a PEM certificate chain ({e})")))?;
    if chain.is_empty() {
        return Err(bad(
            CERT,
            cert,
            "holds no certificate (-----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    let summary = summarize(&chain[0]).map_err(|e| bad(CERT, cert, e))?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        bad(
            KEY,
            key,
            format!("holds no PEM private key (PKCS#8, SEC1 or PKCS#1) ({e})"),
        )
    })?;
    let certified = CertifiedKey::from_der(chain, key_der, &provider()).map_err(|e| {
        bad(
            KEY,
            key,
            format!(
                "does not fit the first certificate of {} ({e})",
                cert.display()
            ),
        )
    })?;
    Ok((Arc::new(certified), summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_good_pair_loads_and_each_bad_file_is_named() {
        let d = tempfile::tempdir().unwrap();
        let (c, k) = pair("a.test");
        let (cert, key) = (d.path().join("c.pem"), d.path().join("k.pem"));
        std::fs::write(&cert, &c).unwrap();
        std::fs::write(&key, &k).unwrap();
        let (_, s) = load(&cert, &key).unwrap();
        assert_eq!(s.names, ["a.test"]);
        // Another certificate's key.
        let (_, other) = pair("b.test");
        std::fs::write(&key, &other).unwrap();
        let e = load(&cert, &key).unwrap_err().to_string();
        assert!(
            e.contains("tls.key_file") && e.contains("does not fit"),
            "{e}"
        );
        std::fs::write(&key, "junk").unwrap();
        let e = load(&cert, &key).unwrap_err().to_string();
        assert!(
            e.contains("tls.key_file") && e.contains("no PEM private key"),
            "{e}"
        );
        std::fs::write(&key, &k).unwrap();
        std::fs::write(&cert, "junk").unwrap();
        let e = load(&cert, &key).unwrap_err().to_string();
        assert!(
            e.contains("tls.cert_file") && e.contains("no certificate"),
            "{e}"
        );
        std::fs::remove_file(&cert).unwrap();
        let e = load(&cert, &key).unwrap_err().to_string();
        assert!(e.contains("tls.cert_file"), "{e}");
    }

    #[test]
    fn a_stamp_changes_when_a_file_is_replaced() {
        let d = tempfile::tempdir().unwrap();
        let (cert, key) = (d.path().join("c.pem"), d.path().join("k.pem"));
        std::fs::write(&cert, "a").unwrap();
        std::fs::write(&key, "b").unwrap();
        let s = Stamp::of(&cert, &key);
        assert_eq!(s, Stamp::of(&cert, &key));
        std::fs::write(d.path().join("new"), "c").unwrap();
        std::fs::rename(d.path().join("new"), &cert).unwrap();
        assert_ne!(s, Stamp::of(&cert, &key));
    }
}
