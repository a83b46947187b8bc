//! TLS on the LAN, checked from outside with OpenSSL's command-line tool:
//! the local CA's chain, names, extensions and protocol versions; the CA's
//! files and its fingerprint across restarts; `/ca.crt`; an organisation's
//! own certificate reloaded on SIGHUP and when its files change, a bad file
//! keeping the old one; plain HTTP from another machine redirected (or
//! served with `allow_plain_http`); HSTS; the Host check; ingest over TLS.
//!
//! Every daemon runs confined in seccomp enforce mode (the harness), so the
//! reloads and the CA's writes are proven under Landlock and seccomp.
//! "Another machine" is another address: the test thread enters a network
//! namespace of its own (root) where 192.0.2.1 is a local, non-loopback
//! address, and starts the daemon there.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hitvault_tests::{CHROME_UA, Daemon, Reply, output_text, parse_reply, require_root, run_tool};

const NAME: &str = "analytics.clinic.test";
const SITE: &str = "shop.test";

fn openssl(args: &[&str]) -> std::process::Output {
    run_tool(Command::new("openssl").args(args), "openssl")
}

/// `openssl s_client` to `addr` for the name `name`, verifying against
/// `ca`: its whole output (stdout and stderr), and whether it succeeded.
fn s_client(addr: SocketAddr, name: &str, ca: &Path, extra: &[&str]) -> (bool, String) {
    let target = addr.to_string();
    let mut args = vec![
        "s_client",
        "-connect",
        &target,
        "-servername",
        name,
        "-verify_hostname",
        name,
        "-verify_return_error",
        "-CAfile",
        ca.to_str().unwrap(),
        "-showcerts",
    ];
    args.extend_from_slice(extra);
    let out = run_tool(
        Command::new("openssl").args(&args).stdin(Stdio::null()),
        "openssl",
    );
    let text = output_text(&out);
    (
        out.status.success() && text.contains("Verify return code: 0 (ok)"),
        text,
    )
}

/// One HTTPS request through `openssl s_client` (the chain verified against
/// `ca` for `name`), `Host: name:port` unless `headers` name one.
fn https(
    addr: SocketAddr,
    name: &str,
    ca: &Path,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let target = addr.to_string();
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-quiet",
            "-connect",
            &target,
            "-servername",
            name,
            "-verify_hostname",
            name,
            "-verify_return_error",
            "-CAfile",
            ca.to_str().unwrap(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl is installed (apt-get install openssl; tests/run installs it)");
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {name}:{}\r\n", addr.port()));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut raw = req.into_bytes();
    raw.extend_from_slice(body);
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&raw).unwrap();
        // stdin stays open until the server closes: s_client -quiet keeps
        // reading after it.
        std::mem::forget(stdin);
    }
    let out = child.wait_with_output().unwrap();
    parse_reply(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no HTTP reply over TLS ({e}); openssl said: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The PEM certificates in `text`, in order.
fn pems(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("-----BEGIN CERTIFICATE-----") {
        let end = rest[i..].find("-----END CERTIFICATE-----").unwrap() + i + 25;
        out.push(format!("{}\n", &rest[i..end]));
        rest = &rest[end..];
    }
    out
}

/// `openssl x509 -text` of a PEM certificate.
fn x509_text(dir: &Path, pem: &str) -> String {
    let f = dir.join("cert.pem");
    std::fs::write(&f, pem).unwrap();
    let out = openssl(&["x509", "-in", f.to_str().unwrap(), "-noout", "-text"]);
    assert!(out.status.success(), "{}", output_text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// SHA-256 fingerprint of a PEM certificate file, as openssl prints it.
fn fingerprint(file: &Path) -> String {
    let out = openssl(&[
        "x509",
        "-in",
        file.to_str().unwrap(),
        "-noout",
        "-fingerprint",
        "-sha256",
    ]);
    assert!(out.status.success(), "{}", output_text(&out));
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .split_once('=')
        .unwrap()
        .1
        .to_owned()
}

/// The fingerprint of the certificate a TLS server presents first.
fn served_fingerprint(addr: SocketAddr, name: &str, ca: &Path, scratch: &Path) -> String {
    let (ok, text) = s_client(addr, name, ca, &[]);
    assert!(ok, "{text}");
    let leaf = scratch.join("served.pem");
    std::fs::write(&leaf, &pems(&text)[0]).unwrap();
    fingerprint(&leaf)
}

fn local_ca(extra: &[(&str, &str)]) -> Daemon {
    let mut env = vec![
        ("HITVAULT_TLS_MODE", "local-ca"),
        ("HITVAULT_HOSTNAMES", NAME),
        ("HITVAULT_SITES", SITE),
    ];
    env.extend_from_slice(extra);
    Daemon::start(&env)
}

/// Downloads `/ca.crt` over plain HTTP from loopback into `dir`.
fn download_ca(d: &Daemon, dir: &Path) -> PathBuf {
    let r = d.get("/ca.crt").unwrap();
    assert_eq!(r.status, 200);
    let f = dir.join("downloaded-ca.pem");
    std::fs::write(&f, &r.body).unwrap();
    f
}

#[test]
fn the_local_ca_serves_a_chain_browsers_accept_for_its_names_only() {
    let d = local_ca(&[]);
    let scratch = tempfile::tempdir().unwrap();
    let ca = download_ca(&d, scratch.path());
    let r = d.get("/ca.crt").unwrap();
    assert_eq!(r.header("content-type"), Some("application/x-x509-ca-cert"));
    // /ca.crt is the CA the daemon keeps, byte for byte.
    assert_eq!(
        r.body,
        std::fs::read(d.data_dir.join("tls/ca.crt")).unwrap(),
        "/ca.crt differs from the CA in the data dir"
    );

    // The chain verifies against the downloaded CA for the configured name
    // and for the loopback names, and for no other name.
    for name in [NAME, "localhost"] {
        let (ok, text) = s_client(d.addr, name, &ca, &[]);
        assert!(ok, "{name}: {text}");
    }
    let (ok, text) = s_client(d.addr, "other.clinic.test", &ca, &[]);
    assert!(
        !ok,
        "the chain verified for a name it does not carry: {text}"
    );
    assert!(text.contains("hostname mismatch"), "{text}");

    // Leaf then CA; the extensions Chrome requires.
    let (_, text) = s_client(d.addr, NAME, &ca, &[]);
    let chain = pems(&text);
    assert_eq!(chain.len(), 2, "the server sends leaf and CA: {text}");
    assert_eq!(chain[1], String::from_utf8(r.body.clone()).unwrap());
    let leaf = x509_text(scratch.path(), &chain[0]);
    for want in [
        &format!("DNS:{NAME}") as &str,
        "DNS:localhost",
        "IP Address:127.0.0.1",
        "CA:FALSE",
        "Digital Signature",
        "TLS Web Server Authentication",
        "X509v3 Authority Key Identifier",
        "ASN1 OID: prime256v1",
    ] {
        assert!(leaf.contains(want), "the leaf lacks {want:?}:\n{leaf}");
    }
    assert!(!leaf.contains("TLS Web Client Authentication"), "{leaf}");
    let root = x509_text(scratch.path(), &chain[1]);
    for want in [
        "X509v3 Basic Constraints: critical",
        "CA:TRUE",
        "X509v3 Key Usage: critical",
        "Certificate Sign, CRL Sign",
        "X509v3 Subject Key Identifier",
        "hitvault local CA",
        "ASN1 OID: prime256v1",
    ] {
        assert!(root.contains(want), "the CA lacks {want:?}:\n{root}");
    }

    // TLS 1.2 and 1.3 are spoken; 1.1 is refused by the server (the client
    // is told to offer it at security level 0, so the refusal is ours).
    for (flag, proto) in [("-tls1_3", "TLSv1.3"), ("-tls1_2", "TLSv1.2")] {
        let (ok, text) = s_client(d.addr, NAME, &ca, &[flag]);
        assert!(ok, "{flag}: {text}");
        assert!(text.contains(&format!("New, {proto}, Cipher is")), "{text}");
    }
    for flag in ["-tls1_1", "-tls1"] {
        let (ok, text) = s_client(d.addr, NAME, &ca, &[flag, "-cipher", "DEFAULT@SECLEVEL=0"]);
        assert!(!ok, "{flag} was accepted: {text}");
        assert!(
            text.contains("alert handshake failure"),
            "{flag}: no alert from the server: {text}"
        );
        assert!(text.contains("Cipher is (NONE)"), "{flag}: {text}");
    }
    d.stop();
}

#[test]
fn the_ca_and_its_keys_are_private_and_the_ca_is_kept_across_restarts() {
    let d = local_ca(&[]);
    let dir = d.data_dir.join("tls");
    for f in ["ca.key", "ca.crt", "server.key", "server.crt"] {
        let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{f} is {:o}", mode & 0o777);
    }
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    let first = fingerprint(&dir.join("ca.crt"));
    let log = d.log_text();
    assert!(
        log.contains("local CA created in") && log.contains(&first),
        "the fingerprint {first} is not logged:\n{log}"
    );
    // No key material in the log.
    let key = std::fs::read_to_string(dir.join("ca.key")).unwrap();
    let body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(!log.contains(&body[..40]), "the CA key is in the log");
    assert!(!log.contains("PRIVATE KEY"), "{log}");

    let stopped = d.stop();
    let d = Daemon::restart(
        stopped,
        &[
            ("HITVAULT_TLS_MODE", "local-ca"),
            ("HITVAULT_HOSTNAMES", NAME),
        ],
    );
    assert_eq!(fingerprint(&dir.join("ca.crt")), first, "the CA changed");
    let log = d.log_text();
    let kept = log
        .lines()
        .filter(|l| l.contains("local CA kept in") && l.contains(&first))
        .count();
    assert_eq!(
        kept, 1,
        "the restart did not log the same fingerprint:\n{log}"
    );
    // The server certificate still fits: kept, not issued again.
    let restart = &log[log.rfind("local CA kept").unwrap()..];
    assert!(!restart.contains("server certificate issued"), "{restart}");
    let scratch = tempfile::tempdir().unwrap();
    let ca = download_ca(&d, scratch.path());
    assert_eq!(fingerprint(&ca), first);
    let (ok, text) = s_client(d.addr, NAME, &ca, &[]);
    assert!(ok, "{text}");

    // A server certificate that cannot be read is issued again on SIGHUP,
    // written into the data dir by the confined daemon, and served at once.
    let before = served_fingerprint(d.addr, NAME, &ca, scratch.path());
    std::fs::write(dir.join("server.crt"), "damaged").unwrap();
    let issued = d.log_text().matches("server certificate issued").count();
    unsafe { libc::kill(d.pid(), libc::SIGHUP) };
    wait_until("the server certificate is issued again", || {
        d.log_text().matches("server certificate issued").count() > issued
    });
    assert!(
        d.log_text().contains("the kept one was unreadable"),
        "{}",
        d.log_text()
    );
    let after = served_fingerprint(d.addr, NAME, &ca, scratch.path());
    assert_ne!(after, before);
    assert_eq!(fingerprint(&dir.join("server.crt")), after);
    assert_eq!(fingerprint(&dir.join("ca.crt")), first);

    // Other hostnames: the same CA, a new server certificate for them.
    let stopped = d.stop();
    let d = Daemon::restart(
        stopped,
        &[
            ("HITVAULT_TLS_MODE", "local-ca"),
            ("HITVAULT_HOSTNAMES", "stats.clinic.test"),
        ],
    );
    let log = d.log_text();
    assert!(log.contains("the names changed"), "{log}");
    assert_eq!(fingerprint(&dir.join("ca.crt")), first);
    assert!(s_client(d.addr, "stats.clinic.test", &ca, &[]).0);
    assert!(!s_client(d.addr, NAME, &ca, &[]).0);
    d.stop();
}

/// A self-signed CA and a certificate for `name` signed by it, made by
/// openssl in `dir`: (ca.pem, cert.pem with the chain, key.pem).
fn org_pair(dir: &Path, tag: &str, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let p = |f: &str| dir.join(format!("{tag}-{f}"));
    let s = |p: &PathBuf| p.to_str().unwrap().to_owned();
    let (ca_key, ca, key, csr, leaf, chain) = (
        p("ca.key"),
        p("ca.pem"),
        p("key.pem"),
        p("leaf.csr"),
        p("leaf.pem"),
        p("chain.pem"),
    );
    let ext = p("ext.cnf");
    std::fs::write(
        &ext,
        format!(
            "subjectAltName=DNS:{name}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n"
        ),
    )
    .unwrap();
    for args in [
        vec![
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &s(&ca_key),
            "-out",
            &s(&ca),
            "-days",
            "30",
            "-subj",
            "/CN=Clinic Test Root",
        ],
        vec![
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &s(&key),
            "-out",
            &s(&csr),
            "-subj",
            &format!("/CN={name}"),
        ],
        vec![
            "x509",
            "-req",
            "-in",
            &s(&csr),
            "-CA",
            &s(&ca),
            "-CAkey",
            &s(&ca_key),
            "-CAcreateserial",
            "-out",
            &s(&leaf),
            "-days",
            "30",
            "-extfile",
            &s(&ext),
        ],
    ] {
        let out = openssl(&args);
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            output_text(&out)
        );
    }
    std::fs::write(
        &chain,
        std::fs::read_to_string(&leaf).unwrap() + &std::fs::read_to_string(&ca).unwrap(),
    )
    .unwrap();
    for f in [&chain, &key] {
        // The daemon reads them as the unprivileged account it switched to.
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    (ca, chain, key)
}

/// Replaces `to` by `from` with a rename, as a deployment tool does.
fn replace(from: &Path, to: &Path) {
    let tmp = to.with_extension("new");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let t = Instant::now();
    while !done() {
        assert!(t.elapsed() < Duration::from_secs(20), "{what} within 20 s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn own_certificate_files_reload_on_sighup_and_on_change_and_a_bad_file_keeps_the_old() {
    // The files live in a directory of their own, outside the data dir:
    // what Landlock grants is that directory, read-only.
    let files = tempfile::tempdir().unwrap();
    std::fs::set_permissions(files.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let made = tempfile::tempdir().unwrap();
    let (ca1, chain1, key1) = org_pair(made.path(), "one", NAME);
    let (ca2, chain2, key2) = org_pair(made.path(), "two", NAME);
    let (cert, key) = (
        files.path().join("fullchain.pem"),
        files.path().join("privkey.pem"),
    );
    replace(&chain1, &cert);
    replace(&key1, &key);
    let d = Daemon::start(&[
        ("HITVAULT_TLS_CERT_FILE", cert.to_str().unwrap()),
        ("HITVAULT_TLS_KEY_FILE", key.to_str().unwrap()),
        ("HITVAULT_HOSTNAMES", NAME),
    ]);
    let scratch = tempfile::tempdir().unwrap();
    let leaf = |n: &str| {
        let f = scratch.path().join(format!("{n}.pem"));
        std::fs::write(
            &f,
            &pems(&std::fs::read_to_string(made.path().join(format!("{n}-leaf.pem"))).unwrap())[0],
        )
        .unwrap();
        fingerprint(&f)
    };
    let (one, two) = (leaf("one"), leaf("two"));
    assert_eq!(served_fingerprint(d.addr, NAME, &ca1, scratch.path()), one);
    // No local CA in this mode.
    let r = d.get("/ca.crt").unwrap();
    assert_eq!(r.status, 404);
    assert!(r.json()["message"].as_str().unwrap().contains("files"));

    // Changed files are picked up without a signal (renamed over, as a
    // deployment tool writes them): the key first, then the certificate.
    replace(&key2, &key);
    replace(&chain2, &cert);
    wait_until("the new certificate is served", || {
        s_client(d.addr, NAME, &ca2, &[]).0
    });
    assert_eq!(served_fingerprint(d.addr, NAME, &ca2, scratch.path()), two);

    // A bad key file: the current certificate stays, and the log says why.
    let bad = made.path().join("bad.pem");
    std::fs::write(&bad, "-----BEGIN PRIVATE KEY-----\nnot a key\n").unwrap();
    let refusals = |d: &Daemon, why: &str| {
        d.log_text()
            .lines()
            .filter(|l| l.contains("keeping the certificate being served") && l.contains(why))
            .count()
    };
    let before = refusals(&d, "holds no PEM private key");
    replace(&bad, &key);
    wait_until("the bad key is reported", || {
        refusals(&d, "holds no PEM private key") > before
    });
    assert_eq!(served_fingerprint(d.addr, NAME, &ca2, scratch.path()), two);
    // A key that is not the certificate's: refused too.
    let before = refusals(&d, "does not fit");
    replace(&key1, &key);
    wait_until("the mismatch is reported", || {
        refusals(&d, "does not fit") > before
    });
    assert!(d.log_text().contains("tls.key_file"), "{}", d.log_text());
    assert_eq!(served_fingerprint(d.addr, NAME, &ca2, scratch.path()), two);

    // SIGHUP reloads whatever the files' state: back to the first pair.
    replace(&chain1, &cert);
    let before = d.log_text().matches("reloaded on SIGHUP").count();
    unsafe { libc::kill(d.pid(), libc::SIGHUP) };
    wait_until("the SIGHUP reload is logged", || {
        d.log_text().matches("reloaded on SIGHUP").count() > before
    });
    wait_until("the first certificate is served again", || {
        s_client(d.addr, NAME, &ca1, &[]).0
    });
    let hups = d.log_text().matches("reloaded on SIGHUP").count();
    unsafe { libc::kill(d.pid(), libc::SIGHUP) };
    wait_until("a second SIGHUP reloads the unchanged files", || {
        d.log_text().matches("reloaded on SIGHUP").count() > hups
    });
    assert_eq!(served_fingerprint(d.addr, NAME, &ca1, scratch.path()), one);
    d.stop();
}

#[test]
fn tls_responses_carry_hsts_and_ingest_over_tls_is_stored() {
    let d = local_ca(&[]);
    let scratch = tempfile::tempdir().unwrap();
    let ca = download_ca(&d, scratch.path());
    let r = https(d.addr, NAME, &ca, "GET", "/healthz", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("strict-transport-security"),
        Some("max-age=31536000")
    );
    // Plain HTTP (loopback) carries none: HSTS over plain HTTP means nothing.
    assert_eq!(
        d.get("/healthz")
            .unwrap()
            .header("strict-transport-security"),
        None
    );
    for n in 0..3 {
        let body = format!(r#"{{"n":"pageview","u":"https://{SITE}/tls/{n}"}}"#);
        let r = https(
            d.addr,
            NAME,
            &ca,
            "POST",
            "/api/event",
            &[("User-Agent", CHROME_UA), ("Content-Type", "text/plain")],
            body.as_bytes(),
        );
        assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
        assert!(r.header("strict-transport-security").is_some());
    }
    let stopped = d.stop();
    assert_eq!(
        stopped.count("SELECT count(*) FROM hits WHERE path LIKE '/tls/%'"),
        3
    );
}

#[test]
fn requests_to_an_unknown_host_are_refused_on_the_routes_that_read_data() {
    let d = local_ca(&[]);
    let scratch = tempfile::tempdir().unwrap();
    let ca = download_ca(&d, scratch.path());
    let path = format!("/api/v1/stats/overview?site={SITE}&from=2026-01-01&to=2026-02-01");
    for host in ["rebound.evil.test", "rebound.evil.test:8080", "192.0.2.99"] {
        for r in [
            https(d.addr, NAME, &ca, "GET", &path, &[("Host", host)], b""),
            https(d.addr, NAME, &ca, "GET", "/", &[("Host", host)], b""),
            d.request("GET", &path, &[("Host", host)], b"").unwrap(),
        ] {
            assert_eq!(r.status, 403, "{host}");
            let msg = r.json()["message"].as_str().unwrap().to_owned();
            assert!(
                msg.contains(host) && msg.contains("`hostnames`") && msg.contains(NAME),
                "{host}: {msg}"
            );
        }
    }
    // The configured name and the loopback names pass this check (what the
    // access rule then decides is another matter).
    for host in [format!("{NAME}:443"), "localhost".to_owned()] {
        let r = https(d.addr, NAME, &ca, "GET", &path, &[("Host", &host)], b"");
        let body = String::from_utf8_lossy(&r.body);
        assert!(
            !body.contains("not a name of this appliance"),
            "{host}: {body}"
        );
    }
    let r = d
        .request("GET", &path, &[("Host", "localhost")], b"")
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // Public routes answer whatever the name.
    for p in ["/healthz", "/ca.crt", "/hv.js"] {
        let r = https(d.addr, NAME, &ca, "GET", p, &[("Host", "192.0.2.99")], b"");
        assert_eq!(r.status, 200, "{p}");
    }
    d.stop();
}

#[test]
fn a_tls_handshake_is_closed_when_tls_is_off() {
    let d = Daemon::start(&[]);
    assert!(d.log_text().contains("TLS is off"));
    let target = d.addr.to_string();
    let out = run_tool(
        Command::new("openssl")
            .args(["s_client", "-connect", &target])
            .stdin(Stdio::null()),
        "openssl",
    );
    let text = output_text(&out);
    assert!(text.contains("CONNECTED"), "{text}");
    assert!(text.contains("no peer certificate available"), "{text}");
    assert_eq!(d.get("/ca.crt").unwrap().status, 404);
    assert_eq!(d.get("/healthz").unwrap().status, 200);
    d.stop();
}

/// The address of "another machine": a non-loopback address local to the
/// network namespace the test thread enters.
const LAN: &str = "192.0.2.1";

/// Runs `f` on a thread of its own inside a new network namespace where
/// [`LAN`] is a local address (on `lo`, so no interface is needed); a
/// daemon started there listens in that namespace too.
fn on_the_lan(f: impl FnOnce() + Send + 'static) {
    require_root("a network namespace gives the daemon a peer that is not loopback");
    std::thread::spawn(move || {
        // SAFETY: changes this thread's network namespace only.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "unshare: {}", std::io::Error::last_os_error());
        for args in [
            vec!["link", "set", "lo", "up"],
            vec!["addr", "add", &format!("{LAN}/32"), "dev", "lo"],
        ] {
            let out = run_tool(Command::new("ip").args(&args), "iproute2");
            assert!(out.status.success(), "ip {args:?}: {}", output_text(&out));
        }
        f();
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e));
}

fn lan_addr(d: &Daemon) -> SocketAddr {
    format!("{LAN}:{}", d.addr.port()).parse().unwrap()
}

#[test]
fn plain_http_from_another_machine_is_redirected_to_https_on_the_same_host_and_path() {
    on_the_lan(|| {
        let d = Daemon::start_listening(
            "0.0.0.0:0",
            &[("HITVAULT_HOSTNAMES", NAME), ("HITVAULT_SITES", SITE)],
        );
        assert!(
            d.log_text().contains("local CA created"),
            "local-ca is the default on 0.0.0.0"
        );
        let lan = lan_addr(&d);
        let port = lan.port();
        let host = format!("{NAME}:{port}");
        // Another machine, plain: redirected, for pages and for ingest.
        for (method, path, body) in [
            ("GET", "/sites/shop.test?period=7d", ""),
            (
                "POST",
                "/api/event",
                r#"{"n":"pageview","u":"https://shop.test/"}"#,
            ),
        ] {
            let r = hitvault_tests::request(lan, method, path, &[("Host", &host)], body.as_bytes())
                .unwrap();
            assert_eq!(r.status, 308, "{method} {path}");
            assert_eq!(
                r.header("location"),
                Some(format!("https://{host}{path}").as_str())
            );
            assert_eq!(r.header("strict-transport-security"), None);
        }
        // A Host that cannot be put in a URL gets a reason, not a redirect.
        let r = hitvault_tests::request(lan, "GET", "/", &[("Host", "a/b@evil")], b"").unwrap();
        assert_eq!(r.status, 400);
        assert!(r.json()["message"].as_str().unwrap().contains("https"));
        // The same machine over TLS from that address: served.
        let scratch = tempfile::tempdir().unwrap();
        let ca = download_ca(&d, scratch.path());
        let r = https(
            lan,
            NAME,
            &ca,
            "POST",
            "/api/event",
            &[("User-Agent", CHROME_UA), ("Content-Type", "text/plain")],
            br#"{"n":"pageview","u":"https://shop.test/lan"}"#,
        );
        assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
        // Loopback, plain: served as before.
        assert_eq!(d.get("/healthz").unwrap().status, 200);
        let stopped = d.stop();
        assert_eq!(stopped.count("SELECT count(*) FROM hits"), 1);
    });
}

#[test]
fn allow_plain_http_serves_another_machine_without_tls() {
    on_the_lan(|| {
        let d = Daemon::start_listening(
            "0.0.0.0:0",
            &[
                ("HITVAULT_HOSTNAMES", NAME),
                ("HITVAULT_SITES", SITE),
                ("HITVAULT_ALLOW_PLAIN_HTTP", "true"),
                ("HITVAULT_TLS_MODE", "off"),
            ],
        );
        let lan = lan_addr(&d);
        let r = hitvault_tests::request(
            lan,
            "POST",
            "/api/event",
            &[
                ("Host", &format!("{NAME}:{}", lan.port())),
                ("User-Agent", CHROME_UA),
                ("Content-Type", "text/plain"),
            ],
            br#"{"n":"pageview","u":"https://shop.test/proxied"}"#,
        )
        .unwrap();
        assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.header("strict-transport-security"), None);
        let stopped = d.stop();
        assert_eq!(stopped.count("SELECT count(*) FROM hits"), 1);

        // Without it, `tls.mode = off` on this address is refused at start.
        let out = Command::new(hitvault_tests::binary())
            .args(["check-config", "/dev/null"])
            .env("HITVAULT_LISTEN", "0.0.0.0:8080")
            .env("HITVAULT_TLS_MODE", "off")
            .output()
            .unwrap();
        assert!(!out.status.success());
        let text = output_text(&out);
        assert!(
            text.contains("tls.mode") && text.contains("allow_plain_http"),
            "{text}"
        );
    });
}
