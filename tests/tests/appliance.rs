//! The appliance image (image/, docs/operations/appliance.md), built with
//! `image/build` from Debian packages and the release binary, booted in qemu
//! with OVMF under software emulation (TCG), as an operator would run it:
//!
//! - `lifecycle`: version 1 boots. From the host, over the forwarded port,
//!   as a LAN client: plain HTTP is redirected to HTTPS; `/ca.crt` is
//!   downloaded without trust (`curl -k`), its SHA-256 fingerprint must be
//!   the one the console and `/etc/issue` show, and from then on the host
//!   trusts that CA only and asks for the appliance's name
//!   (`hitvault.local`, its `hostnames`; the test "resolves" it to the
//!   forwarded port). The console's set-up link makes the admin with a
//!   password through the HTML forms, and that session reads the stats API
//!   and the dashboard from outside, as a browser would. `/usr` is the
//!   dm-verity device, verified and read-only, with the root hash from the
//!   UKI's command line. Hits ingested over HTTPS (a 202 each, and 20,000
//!   more by batch) are counted by the stats API. A USB stick with the
//!   Takeout label gets a Takeout that `hitvault takeout verify` accepts on
//!   the host, and the admin's dashboard shows that run (USB Takeout page);
//!   a stick with another label is left byte for byte as it
//!   was. An update stick (signed SHA256SUMS) installs version 2 into the
//!   spare slot with boot counting; the next boot runs version 2 from slot
//!   B, verified, with the data, the CA and the session kept, and the health
//!   check marks the boot good. On that blessed boot a failing health check
//!   (the daemon stopped) is reported and does not reboot. A bad version 3
//!   rolls back to 2 by itself: its trial boot fails the health check, which
//!   marks it bad and reboots, and the next boot, which is also
//!   a factory reset, runs version 2 and makes /var again: the data, the
//!   session and the CA are gone (a new CA, a new set-up link).
//! - `tampered_usr_is_refused`: one block of the /usr partition changed;
//!   dm-verity refuses it and the daemon never answers.
//!
//! The guest is reached only through what an appliance has: the forwarded
//! port, the serial console (a file), and the QEMU guest agent on a virtio
//! port (the hypervisor's channel, used here to run commands in the guest
//! such as `veritysetup status`, `hitvault site add` and editing
//! /etc/hitvault; the image has no ssh and no login). Everything an operator
//! reads through the dashboard or the API is read over HTTPS from outside.
//!
//! Needs root, qemu-system-x86 10 and OVMF, dosfstools, mtools, e2fsprogs
//! and the tools of image/build (tests/run installs them all); it fails,
//! never skips, when any is missing. KVM is not used. The figures of
//! the figures of docs/operations/appliance.md are printed (`--nocapture`).

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hitvault_tests::{
    CHROME_UA, Reply, binary, free_port, output_text as text, parse_reply, request, require_root,
    run_tool as run,
};
use rustls::ClientConfig;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
/// Software emulation is slow, and other work shares the machine: generous.
const BOOT_TIMEOUT: Duration = Duration::from_secs(900);
const SITE: &str = "shop.example.org";
const TOKEN: &str = "appliance-test-ingest-token";
/// The appliance's name: `hostnames` in image/mkosi.extra/etc/hitvault/
/// hitvault.toml. The host connects to the forwarded port and asks for this
/// name (SNI, the certificate's name, `Host`), as a LAN client whose DNS or
/// hosts file points the name at the appliance.
const NAME: &str = "hitvault.local";
/// The port the daemon listens on in the guest (the console's URLs carry it;
/// the host reaches it through qemu's forwarded port).
const GUEST_PORT: u16 = 8080;
const ADMIN: &str = "operator";
const PASSWORD: &str = "correct horse battery staple";
/// Hits sent by batch before the Takeout (a multiple of 10,000, the batch limit).
const BULK: u64 = 20_000;

/// One VM at a time: two TCG guests on a small machine time each other out.
static SERIAL: Mutex<()> = Mutex::new(());

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn elapsed(t: Instant) -> String {
    format!("{:.1} s", t.elapsed().as_secs_f64())
}

/// `image/build --version N` with the binary under test; the directory of
/// the result. Built once per run and version (image/build itself caches by
/// inputs outside the clone).
fn image(version: u32, bin: &Path) -> PathBuf {
    static IMAGES: Mutex<Vec<(u32, PathBuf)>> = Mutex::new(Vec::new());
    let mut built = IMAGES.lock().unwrap();
    if let Some((_, p)) = built.iter().find(|(v, _)| *v == version) {
        return p.clone();
    }
    let t = Instant::now();
    let out = Command::new(repo().join("image/build"))
        .args(["--version", &version.to_string(), "--bin"])
        .arg(bin)
        .stderr(Stdio::inherit())
        .output()
        .expect("image/build runs");
    assert!(
        out.status.success(),
        "image/build --version {version} failed"
    );
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).lines().last().unwrap());
    let raw = dir.join(format!("hitvault_{version}.raw"));
    let meta = fs::metadata(&raw).unwrap();
    use std::os::unix::fs::MetadataExt;
    // build.txt: what image/build measured when it built these inputs (a
    // cache hit reuses the image and its figures).
    let info = fs::read_to_string(dir.join("build.txt")).unwrap_or_default();
    let field = |key: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(key))
            .map_or("?", str::trim)
            .to_owned()
    };
    let mib = |bytes: String| {
        bytes
            .parse::<u64>()
            .map_or(bytes, |b| (b >> 20).to_string())
    };
    let payload: u64 = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.contains(".usr-") || n.ends_with(".efi")
        })
        .map(|p| fs::metadata(p).unwrap().len())
        .sum();
    println!(
        "image v{version}: image/build {} (mkosi {} s when these inputs were built); {} MiB apparent, {} MiB allocated, {} MiB with zstd -3; update payload {} MiB ({})",
        elapsed(t),
        field("mkosi build seconds:"),
        meta.len() >> 20,
        (meta.blocks() * 512) >> 20,
        mib(field("image bytes (zstd -3):")),
        payload >> 20,
        dir.display(),
    );
    built.push((version, dir.clone()));
    dir
}

/// A qemu guest of the appliance: TCG, q35, OVMF, the disk on virtio-scsi,
/// user networking with the dashboard port forwarded to 127.0.0.1, a USB
/// controller for sticks, the serial console in a file, the HMP monitor and
/// the guest agent on Unix sockets.
struct Vm {
    child: Child,
    dir: PathBuf,
    port: u16,
    started: Instant,
    serial: PathBuf,
    sticks: u32,
}

impl Vm {
    fn boot(dir: &Path, disk: &Path, extra: &[&str]) -> Vm {
        let port = free_port();
        let serial = dir.join(format!("serial-{port}.log"));
        let vars = dir.join("vars.fd");
        if !vars.exists() {
            fs::copy(OVMF_VARS, &vars).expect("OVMF (apt-get install ovmf)");
        }
        for s in ["mon.sock", "qga.sock"] {
            let _ = fs::remove_file(dir.join(s));
        }
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(["-accel", "tcg", "-machine", "q35", "-cpu", "max"])
            .args(["-smp", "2", "-m", "1536", "-nographic", "-no-reboot"])
            .arg("-drive")
            .arg(format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"))
            .arg("-drive")
            .arg(format!("if=pflash,format=raw,file={}", vars.display()))
            .args(["-device", "virtio-scsi-pci,id=scsi"])
            .arg("-drive")
            .arg(format!(
                "if=none,id=disk,file={},format=qcow2",
                disk.display()
            ))
            .args(["-device", "scsi-hd,drive=disk,bootindex=1"])
            .arg("-nic")
            .arg(format!(
                "user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:{port}-:8080"
            ))
            .args(["-device", "qemu-xhci,id=xhci"])
            .arg("-chardev")
            .arg(format!(
                "socket,path={},server=on,wait=off,id=qga0",
                dir.join("qga.sock").display()
            ))
            .args(["-device", "virtio-serial-pci"])
            .args([
                "-device",
                "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0",
            ])
            .arg("-serial")
            .arg(format!("file:{}", serial.display()))
            .arg("-monitor")
            .arg(format!(
                "unix:{},server=on,wait=off",
                dir.join("mon.sock").display()
            ))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                fs::File::create(dir.join(format!("qemu-{port}.err"))).unwrap(),
            ));
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => panic!(
                "qemu-system-x86_64 does not start ({e}): `apt-get install -t bookworm-backports qemu-system-x86` (tests/run installs it)"
            ),
        };
        Vm {
            child,
            dir: dir.to_owned(),
            port,
            started: Instant::now(),
            serial,
            sticks: 0,
        }
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn serial_log(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.serial).unwrap_or_default()).into_owned()
    }

    fn tail(&self) -> String {
        let log = self.serial_log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits until `GET path` over HTTPS on the forwarded port (for NAME,
    /// trusting what `tls` trusts) answers `status`; the time since qemu
    /// started.
    fn wait_https(&mut self, tls: &Arc<ClientConfig>, path: &str, status: u16) -> Duration {
        loop {
            if let Ok(r) = https(self.addr(), tls, NAME, "GET", path, &[], b"")
                && r.status == status
            {
                return self.started.elapsed();
            }
            assert!(
                self.alive(),
                "qemu exited before {path} answered {status}; serial console:\n{}",
                self.tail()
            );
            assert!(
                self.started.elapsed() < BOOT_TIMEOUT,
                "{path} did not answer {status} over HTTPS within {BOOT_TIMEOUT:?}; serial console:\n{}",
                self.tail()
            );
            std::thread::sleep(Duration::from_secs(2));
        }
    }

    /// Waits for the line of this boot's console banner (the serial
    /// console shows it as `[time] console-banner[pid]: line`) that starts
    /// with `prefix`; the line.
    fn console_line(&mut self, prefix: &str) -> String {
        let t = Instant::now();
        loop {
            let log = self.serial_log();
            if let Some(line) = log.lines().find_map(|l| {
                let (_, banner) = l.split_once("console-banner[")?;
                let line = banner.split_once("]: ")?.1.trim_end();
                line.starts_with(prefix).then_some(line)
            }) {
                return line.to_owned();
            }
            assert!(
                self.alive() && t.elapsed() < Duration::from_secs(180),
                "the console shows no line {prefix:?}:\n{}",
                self.tail()
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// One HMP command on the monitor; its output.
    fn monitor(&self, command: &str) -> String {
        let mut s = UnixStream::connect(self.dir.join("mon.sock")).expect("monitor socket");
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let read_prompt = |s: &mut UnixStream| {
            let mut out = Vec::new();
            let mut b = [0u8; 4096];
            while !out.ends_with(b"(qemu) ") {
                let n = s.read(&mut b).expect("monitor answers");
                assert!(n > 0, "monitor closed");
                out.extend_from_slice(&b[..n]);
            }
            String::from_utf8_lossy(&out).into_owned()
        };
        read_prompt(&mut s);
        s.write_all(format!("{command}\n").as_bytes()).unwrap();
        read_prompt(&mut s)
    }

    /// Runs `sh -c script` in the guest through the guest agent: exit code
    /// and stdout+stderr. Retries until the agent answers.
    fn exec(&mut self, script: &str) -> (i64, String) {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            match qga_exec(&self.dir.join("qga.sock"), script) {
                Ok(r) => return r,
                Err(e) => {
                    assert!(
                        self.alive() && Instant::now() < deadline,
                        "the guest agent does not answer ({e}); serial console:\n{}",
                        self.tail()
                    );
                    std::thread::sleep(Duration::from_secs(2));
                }
            }
        }
    }

    /// `exec` that must exit 0.
    fn sh(&mut self, script: &str) -> String {
        let (code, out) = self.exec(script);
        assert_eq!(code, 0, "in the guest, `{script}` failed:\n{out}");
        out
    }

    /// Polls `script` in the guest until its output contains `needle`.
    fn wait_output(&mut self, script: &str, needle: &str, timeout: Duration) -> String {
        let t = Instant::now();
        loop {
            let (_, out) = self.exec(script);
            if out.contains(needle) {
                return out;
            }
            assert!(
                t.elapsed() < timeout,
                "`{script}` did not show {needle:?} within {timeout:?}; last output:\n{out}"
            );
            std::thread::sleep(Duration::from_secs(2));
        }
    }

    /// Plugs a raw disk image in as a USB stick; its device id.
    fn plug(&mut self, image: &Path) -> String {
        self.sticks += 1;
        let id = format!("stick{}", self.sticks);
        let r = self.monitor(&format!(
            "drive_add 0 if=none,id={id},file={},format=raw",
            image.display()
        ));
        assert!(r.contains("OK"), "drive_add: {r}");
        let r = self.monitor(&format!(
            "device_add usb-storage,bus=xhci.0,drive={id},id={id}dev,removable=on"
        ));
        assert!(!r.contains("rror"), "device_add: {r}");
        id
    }

    fn unplug(&mut self, id: &str) {
        let r = self.monitor(&format!("device_del {id}dev"));
        assert!(!r.contains("rror"), "device_del: {r}");
        std::thread::sleep(Duration::from_secs(3));
    }

    /// ACPI power button; waits for qemu to exit.
    fn power_off(mut self) {
        let t = Instant::now();
        self.monitor("system_powerdown");
        while self.alive() {
            if t.elapsed() > Duration::from_secs(180) {
                let _ = self.child.kill();
                panic!(
                    "the guest did not power off; serial console:\n{}",
                    self.tail()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        println!("  power-off: {}", elapsed(t));
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if self.alive() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One request to the guest agent; its answer (`return`).
fn qga(s: &mut BufReader<UnixStream>, request: &Value) -> Result<Value, String> {
    s.get_mut()
        .write_all(format!("{request}\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    loop {
        line.clear();
        s.read_line(&mut line).map_err(|e| e.to_string())?;
        if line.is_empty() {
            return Err("closed".into());
        }
        let v: Value = match serde_json::from_str(line.trim_start_matches('\u{ff}')) {
            Ok(v) => v,
            Err(_) => continue,
        };
        if let Some(e) = v.get("error") {
            return Err(e.to_string());
        }
        if let Some(r) = v.get("return") {
            return Ok(r.clone());
        }
    }
}

fn qga_exec(sock: &Path, script: &str) -> Result<(i64, String), String> {
    let stream = UnixStream::connect(sock).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut s = BufReader::new(stream);
    // guest-sync with a fresh id: answers left over from an earlier
    // connection are skipped until this one comes back.
    let id = (std::process::id() as u64) << 20 | (Instant::now().elapsed().subsec_nanos() as u64);
    loop {
        let r = qga(
            &mut s,
            &json!({"execute": "guest-sync", "arguments": {"id": id}}),
        )?;
        if r == json!(id) {
            break;
        }
    }
    s.get_ref()
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let pid = qga(
        &mut s,
        &json!({"execute": "guest-exec", "arguments": {
            "path": "/bin/sh", "arg": ["-c", format!("{script} 2>&1")], "capture-output": true}}),
    )?["pid"]
        .clone();
    let t = Instant::now();
    loop {
        let st = qga(
            &mut s,
            &json!({"execute": "guest-exec-status", "arguments": {"pid": pid}}),
        )?;
        if st["exited"] == json!(true) {
            let out = st["out-data"].as_str().map(base64).unwrap_or_default();
            return Ok((st["exitcode"].as_i64().unwrap_or(-1), out));
        }
        if t.elapsed() > Duration::from_secs(600) {
            return Err(format!("`{script}` still runs after 600 s"));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Standard base64 (the guest agent's encoding of command output).
fn base64(s: &str) -> String {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => continue,
        };
        acc = acc << 6 | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A qcow2 disk on top of the raw image (the image file stays as built),
/// with room after it for the /var that first boot makes.
fn disk(dir: &Path, raw: &Path, name: &str) -> PathBuf {
    let d = dir.join(name);
    let o = run(
        Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
            .arg(raw)
            .arg(&d)
            .arg("4G"),
        "qemu-utils",
    );
    assert!(o.status.success(), "qemu-img create: {}", text(&o));
    d
}

fn sha256(path: &Path) -> String {
    let o = run(Command::new("sha256sum").arg(path), "coreutils");
    text(&o).split_whitespace().next().unwrap().to_owned()
}

/// Checks no certificate (signatures of the handshake still are): only for
/// the first download of `/ca.crt`, as `curl -k` in docs/operations/tls.md.
/// What makes that download trusted is that its fingerprint is the one on
/// the appliance's console.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS client configuration (rustls): trusting the CA certificate `ca`
/// (PEM) and nothing else, or, with `None`, checking no certificate.
/// rustls on *ring*, as the daemon (rustls marks it deprecated for its lack
/// of a post-quantum key exchange; X25519 and the NIST curves remain).
#[allow(deprecated)]
fn tls_client(ca: Option<&[u8]>) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    Arc::new(match ca {
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(CertificateDer::from_pem_slice(pem).expect("/ca.crt is a PEM certificate"))
                .expect("/ca.crt is a usable CA certificate");
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
            .with_no_client_auth(),
    })
}

/// One HTTPS request to `addr` for the server name `name` (SNI, the name
/// the certificate must carry, and `Host: name:port`), the certificate
/// checked by `tls`. An untrusted certificate is an error.
fn https(
    addr: SocketAddr,
    tls: &Arc<ClientConfig>,
    name: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Reply> {
    let server = ServerName::try_from(name.to_owned()).map_err(std::io::Error::other)?;
    let conn = rustls::ClientConnection::new(tls.clone(), server).map_err(std::io::Error::other)?;
    let sock = TcpStream::connect(addr)?;
    sock.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut s = rustls::StreamOwned::new(conn, sock);
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nHost: {name}:{}\r\nContent-Length: {}\r\n",
        addr.port(),
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    s.flush()?;
    let mut raw = Vec::new();
    match s.read_to_end(&mut raw) {
        Ok(_) => {}
        // A server that closes without close_notify: the reply is whole
        // when it parses.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(e),
    }
    parse_reply(&raw)
}

/// The SHA-256 fingerprint of a PEM certificate as the daemon logs it
/// (upper-case hex pairs joined by colons).
fn fingerprint(pem: &[u8]) -> String {
    let der = CertificateDer::from_pem_slice(pem).expect("a PEM certificate");
    Sha256::digest(der.as_ref())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The host as a browser on the LAN: the CA it trusts, and its cookies.
struct Browser {
    tls: Arc<ClientConfig>,
    cookies: BTreeMap<String, String>,
}

impl Browser {
    fn send(
        &mut self,
        vm: &Vm,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply {
        let cookie: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let cookie = cookie.join("; ");
        let mut all = headers.to_vec();
        if !cookie.is_empty() {
            all.push(("Cookie", &cookie));
        }
        let r = https(vm.addr(), &self.tls, NAME, method, path, &all, body)
            .unwrap_or_else(|e| panic!("{method} {path} over HTTPS: {e}"));
        for (k, v) in &r.headers {
            if k.eq_ignore_ascii_case("set-cookie") {
                let (pair, _) = v.split_once(';').unwrap_or((v, ""));
                let (name, value) = pair.split_once('=').unwrap();
                if value.is_empty() || v.contains("Max-Age=0") {
                    self.cookies.remove(name);
                } else {
                    self.cookies.insert(name.to_owned(), value.to_owned());
                }
            }
        }
        r
    }

    fn get(&mut self, vm: &Vm, path: &str) -> Reply {
        self.send(vm, "GET", path, &[("User-Agent", CHROME_UA)], b"")
    }

    /// Submits an HTML form as a browser does (same origin).
    fn form(&mut self, vm: &Vm, path: &str, fields: &[(&str, &str)]) -> Reply {
        let body: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{k}={}", enc(v)))
            .collect();
        let origin = format!("https://{NAME}:{}", vm.port);
        self.send(
            vm,
            "POST",
            path,
            &[
                ("User-Agent", CHROME_UA),
                ("Origin", &origin),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            body.join("&").as_bytes(),
        )
    }
}

fn enc(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn body(r: &Reply) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// The value of the hidden input `name` in a page.
fn hidden(page: &str, name: &str) -> Option<String> {
    let at = page.find(&format!("name=\"{name}\" value=\""))?;
    let rest = &page[at + name.len() + 15..];
    Some(rest[..rest.find('"')?].to_owned())
}

/// First boot's trust, as docs/operations/tls.md tells an operator: download
/// `/ca.crt` without trust, and compare its fingerprint with the console's.
/// Returns the certificate (PEM) and its fingerprint.
fn trust_on_console(vm: &mut Vm) -> (Vec<u8>, String) {
    let any = tls_client(None);
    let r = https(vm.addr(), &any, NAME, "GET", "/ca.crt", &[], b"").expect("GET /ca.crt");
    assert_eq!(r.status, 200, "{}", body(&r));
    let fp = fingerprint(&r.body);
    let line = vm.console_line("CA fingerprint (SHA-256):");
    assert!(
        line.contains(&fp),
        "the console's fingerprint is not that of the CA the host downloaded ({fp}): {line}"
    );
    (r.body, fp)
}

/// A pageview of SITE at `path`, over HTTPS on the forwarded port, as a
/// browser's tracker sends it; asserts 202.
fn pageview(vm: &Vm, tls: &Arc<ClientConfig>, path: &str) {
    let body = json!({"n": "pageview", "u": format!("https://{SITE}{path}"), "d": SITE});
    let r = https(
        vm.addr(),
        tls,
        NAME,
        "POST",
        "/api/event",
        &[("User-Agent", CHROME_UA), ("Content-Type", "text/plain")],
        body.to_string().as_bytes(),
    )
    .expect("ingest over HTTPS on the forwarded port");
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
}

/// The stats API over HTTPS on the forwarded port, with the browser's
/// session.
fn overview(vm: &Vm, b: &mut Browser) -> Reply {
    b.get(vm, &format!("/api/v1/stats/overview?site={SITE}"))
}

fn wait_pageviews(vm: &mut Vm, b: &mut Browser, n: u64) {
    let t = Instant::now();
    loop {
        let r = overview(vm, b);
        assert_eq!(
            r.status,
            200,
            "the stats API refuses the session: {}",
            body(&r)
        );
        if r.json()["kpis"]["pageviews"].as_u64() == Some(n) {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(180),
            "the stats API does not count {n} pageviews: {}",
            body(&r)
        );
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// Writes the update in `build` (image/build's result) onto an ext4 stick
/// labelled HVUPDATE, plugs it in, and waits until the journal says the
/// update `version` is installed.
fn install_update(vm: &mut Vm, dir: &Path, build: &Path, version: u32) {
    let payload = dir.join(format!("update-{version}"));
    fs::create_dir(&payload).unwrap();
    for e in fs::read_dir(build).unwrap() {
        let p = e.unwrap().path();
        let n = p.file_name().unwrap().to_string_lossy().into_owned();
        if n.starts_with("SHA256SUMS") || n.contains(".usr-") || n.ends_with(".efi") {
            fs::copy(&p, payload.join(&n)).unwrap();
        }
    }
    let upd = dir.join(format!("update-{version}.img"));
    let o = run(
        Command::new("mkfs.ext4")
            .args(["-q", "-L", "HVUPDATE", "-d"])
            .arg(&payload)
            .arg(&upd)
            .arg("1200M"),
        "e2fsprogs",
    );
    assert!(o.status.success(), "mkfs.ext4: {}", text(&o));
    let before = vm
        .exec("journalctl -o cat --no-pager -u 'hitvault-update@*' | grep -c 'update from stick'")
        .1
        .trim()
        .parse::<u32>()
        .unwrap_or(0);
    let t = Instant::now();
    let id = vm.plug(&upd);
    let journal = loop {
        let (_, out) = vm.exec("journalctl -o cat --no-pager -u 'hitvault-update@*'");
        if out.matches("update from stick").count() as u32 > before {
            break out;
        }
        assert!(
            t.elapsed() < Duration::from_secs(900),
            "the update stick was not used: {out}"
        );
        std::thread::sleep(Duration::from_secs(2));
    };
    println!(
        "  update to version {version} installed: {} after device_add",
        elapsed(t)
    );
    assert!(
        journal.contains("installed in"),
        "the update failed: {journal}"
    );
    vm.unplug(&id);
    let efi = vm.sh("ls /boot/EFI/Linux");
    assert!(
        efi.contains(&format!("hitvault_{version}+3-0.efi"))
            || efi.contains(&format!("hitvault_{version}+1-0.efi")),
        "the new UKI is not there with its tries counter: {efi}"
    );
}

/// A vfat file system with `label` in a raw file (a USB stick).
fn vfat_stick(path: &Path, label: &str, mib: u64) {
    let _ = fs::remove_file(path);
    let o = run(
        Command::new("mkfs.vfat")
            .args(["-n", label, "-C"])
            .arg(path)
            .arg((mib * 1024).to_string()),
        "dosfstools",
    );
    assert!(o.status.success(), "mkfs.vfat: {}", text(&o));
}

fn verity_checks(vm: &mut Vm) -> String {
    let status = vm.sh("veritysetup status usr");
    assert!(
        status.contains("status:      verified") && status.contains("mode:        readonly"),
        "/usr is not verified: {status}"
    );
    let mount = vm.sh("findmnt -n -o SOURCE,FSTYPE,OPTIONS /usr");
    assert!(
        mount.starts_with("/dev/mapper/usr erofs ro"),
        "/usr is not the verity device, read-only: {mount}"
    );
    let cmdline = vm.sh("cat /proc/cmdline");
    let hash = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("usrhash="))
        .unwrap_or_else(|| panic!("no usrhash= on the command line: {cmdline}"));
    assert_eq!(hash.len(), 64, "{cmdline}");
    assert!(
        status.contains(&format!("root hash:   {hash}")) || !status.contains("root hash:"),
        "the verity device is not the command line's root hash {hash}: {status}"
    );
    hash.to_owned()
}

fn image_version(vm: &mut Vm) -> String {
    vm.sh(". /usr/lib/os-release && echo $IMAGE_VERSION")
        .trim()
        .to_owned()
}

#[test]
fn lifecycle() {
    require_root("qemu guests, loop-free disk images and USB sticks");
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let total = Instant::now();
    let v1 = image(1, &binary());
    let v2 = image(2, &binary());
    // A bad update: version 3 whose daemon exits at once.
    let v3 = image(3, Path::new("/bin/false"));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let disk = disk(dir, &v1.join("hitvault_1.raw"), "disk.qcow2");

    // First boot of version 1.
    println!("boot 1 (version 1, first boot)");
    let mut vm = Vm::boot(dir, &disk, &[]);
    let health = vm.wait_https(&tls_client(None), "/healthz", 200);
    println!(
        "  /healthz 200 over HTTPS after {:.1} s",
        health.as_secs_f64()
    );

    // Plain HTTP from outside the guest is redirected to HTTPS.
    let r = request(vm.addr(), "GET", "/healthz", &[], b"").unwrap();
    assert_eq!(r.status, 308, "{r:?}");
    assert!(
        r.header("location")
            .is_some_and(|l| l.starts_with("https://") && l.ends_with("/healthz")),
        "{r:?}"
    );

    // The CA: downloaded, compared with the console, then the only trust.
    let (ca, fp) = trust_on_console(&mut vm);
    println!("  CA fingerprint {fp}: the console's and /ca.crt's");
    let trusted = tls_client(Some(&ca));
    assert!(
        https(
            vm.addr(),
            &trusted,
            "not-the-appliance.example",
            "GET",
            "/healthz",
            &[],
            b""
        )
        .is_err(),
        "the certificate was accepted for a name it does not carry"
    );
    let ready = https(vm.addr(), &trusted, NAME, "GET", "/readyz", &[], b"").unwrap();
    assert_eq!(ready.status, 200, "{ready:?}");
    assert_eq!(image_version(&mut vm), "1");
    let hash1 = verity_checks(&mut vm);
    println!("  /usr verified, usrhash {hash1}");

    // The console and /etc/issue: the dashboard's URL by the certificate's
    // name, the address, the fingerprint and the set-up link, as the host
    // uses them (the host reaches GUEST_PORT through the forwarded port).
    let url = format!("Dashboard: https://{NAME}:{GUEST_PORT}/");
    assert_eq!(vm.console_line("Dashboard:"), url);
    let address = vm.console_line("Address:");
    assert_eq!(
        address,
        format!(
            "Address: 10.0.2.15 (make {NAME} resolve to it: a DNS record, or each client's hosts file)"
        )
    );
    let line = vm.console_line("Set-up link");
    let link = line[line.find("https://").unwrap_or_else(|| panic!("{line}"))..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let origin = format!("https://{NAME}:{GUEST_PORT}");
    let setup = link
        .strip_prefix(&origin)
        .filter(|p| p.starts_with("/setup/"))
        .unwrap_or_else(|| panic!("the set-up link is not on {origin}: {link}"))
        .to_owned();
    let issue = vm.sh("cat /etc/issue /etc/issue.d/*.issue");
    for want in [url.as_str(), "Address: ", fp.as_str(), link.as_str()] {
        assert!(issue.contains(want), "/etc/issue lacks {want:?}:\n{issue}");
    }

    // The dashboard answers over the forwarded port: a sign-in page until
    // the set-up link makes the admin (with a password, through the
    // forms); then the session opens it, and the stats API.
    let mut browser = Browser {
        tls: trusted.clone(),
        cookies: BTreeMap::new(),
    };
    let r = browser.get(&vm, "/sites");
    assert_eq!(r.status, 303, "{}", body(&r));
    assert_eq!(r.header("location"), Some("/login?next=/sites"));
    let page = browser.get(&vm, &setup);
    assert_eq!(page.status, 200, "{}", body(&page));
    assert!(
        body(&page).contains(&fp),
        "the set-up page does not show the CA's fingerprint"
    );
    let form = hidden(&body(&page), "form").expect("the set-up form has its token");
    let r = browser.form(
        &vm,
        &setup,
        &[
            ("form", &form),
            ("name", ADMIN),
            ("password", PASSWORD),
            ("confirm", PASSWORD),
        ],
    );
    assert_eq!(r.status, 303, "{}", body(&r));
    assert_eq!(r.header("location"), Some("/account?done=welcome"));
    let r = browser.get(&vm, "/sites");
    assert_eq!(
        r.status,
        200,
        "the dashboard refuses the admin's session: {}",
        body(&r)
    );
    println!("  admin made through the console's set-up link; the dashboard answers its session");

    // Ingest over HTTPS on the forwarded port, read back through the stats
    // API with that session.
    vm.sh(&format!("hitvault site add {SITE}"));
    pageview(&vm, &trusted, "/first");
    println!(
        "  first 202 after {:.1} s (qemu start to the first acknowledged hit over HTTPS, after one `hitvault site add`)",
        vm.started.elapsed().as_secs_f64()
    );
    for i in 0..4 {
        pageview(&vm, &trusted, &format!("/p/{i}"));
    }
    wait_pageviews(&mut vm, &mut browser, 5);

    // More rows for the Takeout, through the batch endpoint: its token is
    // a setting of the daemon's configuration file in /etc.
    vm.sh(&format!(
        "printf %s {TOKEN} >/etc/hitvault/ingest-token && echo 'ingest_token_file = \"/etc/hitvault/ingest-token\"' >>/etc/hitvault/hitvault.toml && systemctl restart hitvault"
    ));
    vm.wait_https(&trusted, "/readyz", 200);
    let t = Instant::now();
    let bearer = format!("Bearer {TOKEN}");
    for batch in 0..BULK / 10_000 {
        let ndjson: String = (0..10_000)
            .map(|i| {
                json!({"name": "pageview", "url": format!("https://{SITE}/bulk/{}", i % 500),
                    "domain": SITE, "user_agent": CHROME_UA,
                    "ip": format!("203.0.{}.{}", batch, i % 250)})
                .to_string()
                    + "\n"
            })
            .collect();
        let r = https(
            vm.addr(),
            &trusted,
            NAME,
            "POST",
            "/api/ingest/batch",
            &[
                ("Authorization", &bearer),
                ("Content-Type", "application/x-ndjson"),
            ],
            ndjson.as_bytes(),
        )
        .expect("batch ingest over HTTPS");
        assert_eq!(r.status, 202, "{}", body(&r));
    }
    wait_pageviews(&mut vm, &mut browser, 5 + BULK);
    println!(
        "  {BULK} hits by batch over HTTPS on the forwarded port, counted by the stats API: {}",
        elapsed(t)
    );

    // A stick with another label is never written.
    let other = dir.join("other.img");
    vfat_stick(&other, "HOLIDAYS", 32);
    let before = sha256(&other);
    let id = vm.plug(&other);
    vm.wait_output(
        "journalctl -o cat --no-pager -u 'hitvault-takeout@*'",
        "labelled \"HOLIDAYS\" is not the takeout stick",
        Duration::from_secs(120),
    );
    vm.unplug(&id);
    assert_eq!(
        sha256(&other),
        before,
        "a stick with another label was written"
    );

    // USB Takeout onto a stick with the label; verified on the host.
    let stick = dir.join("takeout.img");
    vfat_stick(&stick, "HVTAKEOUT", 128);
    let t = Instant::now();
    let id = vm.plug(&stick);
    let journal = vm.wait_output(
        "journalctl -o cat --no-pager -u 'hitvault-takeout@*'",
        "it can be removed",
        Duration::from_secs(300),
    );
    println!("  USB Takeout: {} after device_add", elapsed(t));
    for line in journal.lines() {
        if line.starts_with("exported ") || line.starts_with("Takeout ") {
            println!("    {line}");
        }
    }
    assert!(
        journal.contains("written to the stick and verified against its MANIFEST"),
        "{journal}"
    );
    vm.unplug(&id);
    let listing = run(
        Command::new("mdir")
            .args(["-b", "-i"])
            .arg(&stick)
            .arg("::/"),
        "mtools",
    );
    let name = text(&listing)
        .lines()
        .map(|l| {
            l.trim()
                .trim_start_matches("::/")
                .trim_end_matches('/')
                .to_owned()
        })
        .find(|l| l.starts_with("hitvault-takeout-"))
        .unwrap_or_else(|| panic!("no Takeout on the stick: {}", text(&listing)));
    let out = dir.join("from-stick");
    fs::create_dir(&out).unwrap();
    let o = run(
        Command::new("mcopy")
            .args(["-s", "-n", "-i"])
            .arg(&stick)
            .arg(format!("::/{name}"))
            .arg(&out),
        "mtools",
    );
    assert!(o.status.success(), "mcopy: {}", text(&o));
    let o = Command::new(binary())
        .args(["takeout", "verify"])
        .arg(out.join(&name))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "hitvault takeout verify on the host: {}",
        text(&o)
    );
    let manifest: Value =
        serde_json::from_str(&fs::read_to_string(out.join(&name).join("MANIFEST")).unwrap())
            .expect("the MANIFEST is JSON");
    let rows: u64 = manifest["files"]
        .as_array()
        .unwrap_or_else(|| panic!("{manifest}"))
        .iter()
        .filter(|f| f["table"] == "hits")
        .filter_map(|f| f["rows"].as_u64())
        .sum();
    assert_eq!(rows, 5 + BULK, "the Takeout's hits: {manifest}");
    // The admin sees the run on the dashboard's USB Takeout page.
    let r = browser.get(&vm, "/admin/usb-takeouts");
    let page = body(&r);
    assert_eq!(r.status, 200, "{page}");
    let run = page
        .split("<tr class=\"usb-run\"")
        .nth(1)
        .unwrap_or_else(|| panic!("no USB Takeout on the dashboard: {page}"));
    assert!(
        run.contains("data-result=\"done\"")
            && run.contains(&name)
            && run.contains("HVTAKEOUT on sd")
            && run.contains("<td>yes</td>"),
        "the dashboard does not show the verified stick run: {run}"
    );

    // Update to version 2 from a stick with the update label.
    install_update(&mut vm, dir, &v2, 2);
    vm.power_off();

    // Version 2, from slot B, data, CA and session kept, boot marked good.
    println!("boot 2 (version 2 on trial)");
    let mut vm = Vm::boot(dir, &disk, &[]);
    let health = vm.wait_https(&trusted, "/healthz", 200);
    println!(
        "  /healthz 200 over HTTPS (the same CA) after {:.1} s",
        health.as_secs_f64()
    );
    assert_eq!(image_version(&mut vm), "2");
    let hash2 = verity_checks(&mut vm);
    assert_ne!(hash1, hash2);
    assert!(vm.console_line("CA fingerprint (SHA-256):").contains(&fp));
    wait_pageviews(&mut vm, &mut browser, 5 + BULK);
    vm.wait_output(
        "systemctl is-active hitvault-health.service systemd-bless-boot.service; ls /boot/EFI/Linux",
        "hitvault_2.efi",
        Duration::from_secs(300),
    );

    // On a boot that is not on trial (version 2, blessed just now) a
    // failing health check is reported and does not reboot: with the daemon
    // stopped, the check runs again with a short timeout and fails; the
    // machine stays up on the same boot, the unit is failed, the console
    // and /etc/issue say so. Then the daemon comes back and the check passes.
    let t = Instant::now();
    assert_eq!(
        vm.sh("/usr/lib/systemd/systemd-bless-boot status").trim(),
        "good",
        "boot 2 is not blessed"
    );
    let boot_id = vm.sh("cat /proc/sys/kernel/random/boot_id");
    vm.sh(
        "echo APPLIANCE_HEALTH_TIMEOUT=5 >/etc/hitvault/appliance.conf && systemctl mask --runtime --now hitvault.service",
    );
    let (code, out) = vm.exec("systemctl restart hitvault-health.service");
    assert_ne!(
        code, 0,
        "the health check passed with the daemon stopped: {out}"
    );
    let report = vm.wait_output(
        "journalctl -b -o cat --no-pager -u hitvault-health-failed.service",
        "not rebooting",
        Duration::from_secs(60),
    );
    assert!(
        report.contains("not on trial (boot counting: good)"),
        "{report}"
    );
    std::thread::sleep(Duration::from_secs(10));
    assert!(
        vm.alive(),
        "the failed health check powered the machine off"
    );
    assert_eq!(
        vm.sh("cat /proc/sys/kernel/random/boot_id"),
        boot_id,
        "a failed health check on a blessed boot rebooted the machine"
    );
    assert_eq!(
        vm.exec("systemctl is-failed hitvault-health.service")
            .1
            .trim(),
        "failed"
    );
    let issue = vm.sh("cat /etc/issue.d/60-hitvault-health.issue");
    assert!(issue.contains("did not answer its health check"), "{issue}");
    assert!(
        vm.serial_log()
            .contains("FAILED on a boot that is not on trial"),
        "the console does not show the failed health check:\n{}",
        vm.tail()
    );
    vm.sh(
        "rm /etc/hitvault/appliance.conf && systemctl unmask --runtime hitvault.service && systemctl restart hitvault-health.service && systemctl is-active hitvault-health.service && ! test -e /etc/issue.d/60-hitvault-health.issue",
    );
    assert_eq!(vm.sh("cat /proc/sys/kernel/random/boot_id"), boot_id);
    println!(
        "  a failed health check on the blessed boot: reported, no reboot; passed again after the daemon's restart, {}",
        elapsed(t)
    );

    // A bad update (version 3: its daemon does not start) rolls back by
    // itself: its trial boot fails the health check, which marks it bad
    // (though it has two tries left) and reboots, so the next boot starts
    // version 2. A short health timeout (a setting, see
    // docs/operations/appliance.md) so the test does not wait 240 s.
    vm.sh("echo APPLIANCE_HEALTH_TIMEOUT=60 >/etc/hitvault/appliance.conf");
    install_update(&mut vm, dir, &v3, 3);
    vm.power_off();
    println!("boot 3 (version 3 on trial: its daemon fails)");
    let mut vm = Vm::boot(dir, &disk, &[]);
    let t = Instant::now();
    while vm.alive() {
        assert!(
            t.elapsed() < BOOT_TIMEOUT,
            "the bad boot did not end in a reboot; serial console:\n{}",
            vm.tail()
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    let log = vm.serial_log();
    assert!(
        log.contains("image version 3"),
        "the trial boot did not run version 3:\n{}",
        vm.tail()
    );
    assert!(
        log.contains("FAILED on a trial boot of an update: marked bad, rebooting"),
        "the trial boot did not end by its failed health check:\n{}",
        vm.tail()
    );
    println!(
        "  the health check failed, marked the boot bad and rebooted after {}",
        elapsed(t)
    );
    drop(vm);

    // The next boot falls back to version 2, and is the factory reset too:
    // one boot for both keeps the test within CI's time. (The /var a
    // fallback boots with is the one version 2 ran with, and boot 2 showed
    // that /var outlives a switch of slots.)
    println!("boot 4 (the fallback to version 2, with a factory reset)");
    let mut vm = Vm::boot(
        dir,
        &disk,
        &[
            "-smbios",
            "type=11,value=io.systemd.stub.kernel-cmdline-extra=systemd.factory_reset=1",
        ],
    );
    let health = vm.wait_https(&tls_client(None), "/healthz", 200);
    println!("  /healthz 200 after {:.1} s", health.as_secs_f64());
    assert_eq!(image_version(&mut vm), "2", "no fallback to version 2");
    let efi = vm.sh("ls /boot/EFI/Linux");
    assert!(
        efi.contains("hitvault_3+0-1.efi") && efi.contains("hitvault_2.efi"),
        "version 3 is not marked bad, or version 2 not good: {efi}"
    );
    assert!(
        vm.sh("cat /proc/cmdline")
            .contains("systemd.factory_reset=1"),
        "the reset was not asked for"
    );
    // /var made again: a new CA (the old one was in /var), so the host's
    // trust no longer holds, and the console shows the new CA's
    // fingerprint and a new set-up link (no admin any more).
    assert!(
        https(vm.addr(), &trusted, NAME, "GET", "/healthz", &[], b"").is_err(),
        "the CA survived the reset"
    );
    let (ca, new_fp) = trust_on_console(&mut vm);
    assert_ne!(new_fp, fp, "the CA survived the reset");
    vm.console_line("Set-up link");
    let sites = vm.sh("hitvault site list");
    assert!(
        !sites.contains(SITE),
        "the site survived the reset: {sites}"
    );
    browser.tls = tls_client(Some(&ca));
    let r = overview(&vm, &mut browser);
    assert_eq!(
        r.status,
        401,
        "the session survived the reset: {}",
        body(&r)
    );
    vm.power_off();
    println!("appliance lifecycle: {}", elapsed(total));
}

#[test]
fn tampered_usr_is_refused() {
    require_root("qemu guests and disk images");
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let total = Instant::now();
    let v1 = image(1, &binary());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let raw = v1.join("hitvault_1.raw");
    let disk = disk(dir, &raw, "disk.qcow2");

    // The /usr partition of slot A, from the partition table.
    let o = run(Command::new("sfdisk").arg("--json").arg(&raw), "fdisk");
    let table: Value = serde_json::from_slice(&o.stdout).expect("sfdisk --json");
    let part = table["partitiontable"]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "hitvault_1")
        .unwrap_or_else(|| panic!("no hitvault_1 partition: {table}"))
        .clone();
    let sector = table["partitiontable"]["sectorsize"]
        .as_u64()
        .unwrap_or(512);
    let start = part["start"].as_u64().unwrap() * sector;
    // The first 4 KiB of the erofs: its superblock, read by every mount.
    let o = run(
        Command::new("qemu-io")
            .args(["-f", "qcow2", "-c"])
            .arg(format!("write -P 0x5a {start} 4096"))
            .arg(&disk),
        "qemu-utils",
    );
    assert!(o.status.success(), "qemu-io: {}", text(&o));

    let mut vm = Vm::boot(dir, &disk, &[]);
    let t = Instant::now();
    loop {
        let log = vm.serial_log();
        if log.contains("verity") && log.contains("corrupted") {
            break;
        }
        assert!(
            vm.alive() && t.elapsed() < BOOT_TIMEOUT,
            "no dm-verity refusal on the console:\n{}",
            vm.tail()
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    println!("  dm-verity refused /usr after {}", elapsed(t));
    // Give the boot time to go on if it were to: it must not serve.
    std::thread::sleep(Duration::from_secs(30));
    // Nothing answers on the forwarded port: a daemon would answer plain
    // HTTP (with its redirect to HTTPS).
    assert!(
        request(vm.addr(), "GET", "/healthz", &[], b"").is_err(),
        "a tampered /usr booted and serves"
    );
    println!("tampered /usr refused: {}", elapsed(total));
}
