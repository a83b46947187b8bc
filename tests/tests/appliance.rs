//! The appliance image (image/, docs/operations/appliance.md), built with
//! `image/build` from Debian packages and the release binary, booted in qemu
//! with OVMF under software emulation (TCG), as an operator would run it:
//!
//! - `lifecycle` (ignored until it speaks HTTPS with the appliance's CA:
//!   from outside the guest, plain HTTP is now redirected): version 1 boots; the dashboard, health and ingest answer
//!   over the forwarded port; `/usr` is the dm-verity device, verified and
//!   read-only, with the root hash from the UKI's command line; the console
//!   and `/etc/issue` show the dashboard URL; hits ingested over the
//!   forwarded port are read back through the stats API. A USB stick with
//!   the Takeout label gets a Takeout that `hitvault takeout verify` accepts
//!   on the host, and a stick with another label is left byte for byte as it
//!   was. An update stick (signed SHA256SUMS) installs version 2 into the
//!   spare slot with boot counting; the next boot runs version 2 from slot
//!   B, verified, with the data kept, and the health check marks the boot
//!   good (the UKI loses its tries counter). A factory reset boot makes
//!   /var again: the data is gone, version 2 stays.
//! - `tampered_usr_is_refused`: one block of the /usr partition changed;
//!   dm-verity refuses it and the daemon never answers.
//!
//! The guest is reached only through what an appliance has: the forwarded
//! HTTP port, the serial console (a file), and the QEMU guest agent on a
//! virtio port (the hypervisor's channel, used here to run commands in the
//! guest such as `veritysetup status`; the image has no ssh and no login).
//!
//! Needs root, qemu-system-x86 10 and OVMF, dosfstools, mtools, e2fsprogs
//! and the tools of image/build (tests/run installs them all); it fails,
//! never skips, when any is missing. KVM is not used. Timings are printed.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hitvault_tests::{
    CHROME_UA, binary, free_port, ingest, output_text as text, request, require_root,
    run_tool as run,
};
use serde_json::{Value, json};

const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
/// Software emulation is slow, and other work shares the machine: generous.
const BOOT_TIMEOUT: Duration = Duration::from_secs(900);
const SITE: &str = "shop.example.org";
const TOKEN: &str = "appliance-test-ingest-token";
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
    println!(
        "image v{version}: built in {} ({}); {} MiB apparent, {} MiB allocated",
        elapsed(t),
        dir.display(),
        meta.len() >> 20,
        (meta.blocks() * 512) >> 20
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

    /// Waits until `GET path` over the forwarded port answers `status`.
    fn wait_http(&mut self, path: &str, status: u16) -> Duration {
        loop {
            if let Ok(r) = request(self.addr(), "GET", path, &[], b"")
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
                "{path} did not answer {status} within {BOOT_TIMEOUT:?}; serial console:\n{}",
                self.tail()
            );
            std::thread::sleep(Duration::from_secs(2));
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

/// A pageview of SITE at `path`, over the forwarded port, as a browser's
/// tracker sends it; asserts 202.
fn pageview(vm: &Vm, path: &str) {
    let body = json!({"n": "pageview", "u": format!("https://{SITE}{path}"), "d": SITE});
    let r = request(
        vm.addr(),
        "POST",
        "/api/event",
        &[("User-Agent", CHROME_UA), ("Content-Type", "text/plain")],
        body.to_string().as_bytes(),
    )
    .expect("ingest over the forwarded port");
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
}

/// The stats API, asked inside the guest on loopback (until accounts
/// exist, the JSON API serves loopback clients only).
fn overview(vm: &mut Vm) -> (i64, String) {
    vm.exec(&format!(
        "busybox wget -q -O - 'http://127.0.0.1:8080/api/v1/stats/overview?site={SITE}'"
    ))
}

fn pageviews(vm: &mut Vm) -> Option<u64> {
    let (code, out) = overview(vm);
    if code != 0 {
        return None;
    }
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    v["kpis"]["pageviews"].as_u64()
}

fn wait_pageviews(vm: &mut Vm, n: u64) {
    let t = Instant::now();
    while pageviews(vm) != Some(n) {
        assert!(
            t.elapsed() < Duration::from_secs(180),
            "the stats API does not count {n} pageviews: {:?}",
            overview(vm)
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
#[ignore = "speaks plain HTTP to the guest from outside, which TLS on the LAN now redirects; see README's Status"]
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
    let health = vm.wait_http("/healthz", 200);
    println!("  /healthz 200 after {:.1} s", health.as_secs_f64());
    assert_eq!(image_version(&mut vm), "1");
    let hash1 = verity_checks(&mut vm);
    println!("  /usr verified, usrhash {hash1}");

    // The dashboard answers over the forwarded port: until accounts exist
    // it refuses the LAN with a page saying why (docs/guide/dashboard.md).
    let page = request(vm.addr(), "GET", "/", &[], b"").unwrap();
    assert_eq!(page.status, 403, "{page:?}");
    assert!(
        String::from_utf8_lossy(&page.body).contains("account"),
        "the dashboard's page does not say why: {}",
        String::from_utf8_lossy(&page.body)
    );
    let ready = request(vm.addr(), "GET", "/readyz", &[], b"").unwrap();
    assert_eq!(ready.status, 200, "{ready:?}");

    // Ingest over the forwarded port, read back through the stats API.
    vm.sh(&format!("hitvault site add {SITE}"));
    pageview(&vm, "/first");
    println!(
        "  first 202 after {:.1} s (qemu start to the first acknowledged hit, after one `hitvault site add`)",
        vm.started.elapsed().as_secs_f64()
    );
    for i in 0..4 {
        pageview(&vm, &format!("/p/{i}"));
    }
    wait_pageviews(&mut vm, 5);

    // More rows for the Takeout, through the batch endpoint: its token is
    // a setting of the daemon's configuration file in /etc.
    vm.sh(&format!(
        "printf %s {TOKEN} >/etc/hitvault/ingest-token && echo 'ingest_token_file = \"/etc/hitvault/ingest-token\"' >>/etc/hitvault/hitvault.toml && systemctl restart hitvault"
    ));
    vm.wait_http("/readyz", 200);
    let t = Instant::now();
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
        ingest(vm.addr(), TOKEN, &ndjson);
    }
    wait_pageviews(&mut vm, 5 + BULK);
    println!(
        "  {BULK} hits by batch over the forwarded port, counted by the stats API: {}",
        elapsed(t)
    );

    // The console and /etc/issue show the dashboard URL.
    let url = "Dashboard: http://10.0.2.15:8080/";
    let t = Instant::now();
    while !vm.serial_log().contains(url) {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "the console does not show {url:?}:\n{}",
            vm.tail()
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let issue = vm.sh("cat /etc/issue /etc/issue.d/*.issue");
    assert!(issue.contains(url), "/etc/issue: {issue}");

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
    let manifest = fs::read_to_string(out.join(&name).join("MANIFEST")).unwrap();
    assert!(manifest.contains("\"rows\""), "{manifest}");

    // Update to version 2 from a stick with the update label.
    install_update(&mut vm, dir, &v2, 2);
    vm.power_off();

    // Version 2, from slot B, data kept, boot marked good.
    println!("boot 2 (version 2 on trial)");
    let mut vm = Vm::boot(dir, &disk, &[]);
    let health = vm.wait_http("/healthz", 200);
    println!("  /healthz 200 after {:.1} s", health.as_secs_f64());
    assert_eq!(image_version(&mut vm), "2");
    let hash2 = verity_checks(&mut vm);
    assert_ne!(hash1, hash2);
    wait_pageviews(&mut vm, 5 + BULK);
    vm.wait_output(
        "systemctl is-active hitvault-health.service systemd-bless-boot.service; ls /boot/EFI/Linux",
        "hitvault_2.efi",
        Duration::from_secs(300),
    );

    // A bad update (version 3: its daemon does not start) rolls back by
    // itself. One try, and a short health timeout, so the test waits for one
    // bad boot instead of three (the defaults, 3 tries and 240 s, are the
    // same mechanism; both are settings, see docs/operations/appliance.md).
    vm.sh(
        "echo APPLIANCE_HEALTH_TIMEOUT=60 >/etc/hitvault/appliance.conf && mkdir -p /etc/sysupdate.d && sed 's/^TriesLeft=3$/TriesLeft=1/' /usr/lib/sysupdate.d/20-uki.transfer >/etc/sysupdate.d/20-uki.transfer",
    );
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
    println!(
        "  the health check failed and rebooted after {}",
        elapsed(t)
    );
    drop(vm);
    println!("boot 4 (the fallback to version 2)");
    let mut vm = Vm::boot(dir, &disk, &[]);
    let health = vm.wait_http("/healthz", 200);
    println!("  /healthz 200 after {:.1} s", health.as_secs_f64());
    assert_eq!(image_version(&mut vm), "2", "no fallback to version 2");
    let efi = vm.sh("ls /boot/EFI/Linux");
    assert!(
        efi.contains("hitvault_3+0-1.efi") && efi.contains("hitvault_2.efi"),
        "version 3 is not marked bad, or version 2 not good: {efi}"
    );
    wait_pageviews(&mut vm, 5 + BULK);
    vm.sh("rm -f /etc/hitvault/appliance.conf /etc/sysupdate.d/20-uki.transfer");
    vm.power_off();

    // Factory reset: /var made again, version 2 stays.
    println!("boot 5 (factory reset)");
    let mut vm = Vm::boot(
        dir,
        &disk,
        &[
            "-smbios",
            "type=11,value=io.systemd.stub.kernel-cmdline-extra=systemd.factory_reset=1",
        ],
    );
    let health = vm.wait_http("/healthz", 200);
    println!("  /healthz 200 after {:.1} s", health.as_secs_f64());
    assert_eq!(image_version(&mut vm), "2");
    let sites = vm.sh("hitvault site list");
    assert!(
        !sites.contains(SITE),
        "the site survived the reset: {sites}"
    );
    let (code, out) = overview(&mut vm);
    assert_ne!(code, 0, "the stats survived the reset: {out}");
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
    assert!(
        !matches!(request(vm.addr(), "GET", "/healthz", &[], b""), Ok(r) if r.status == 200),
        "a tampered /usr booted and serves"
    );
    println!("tampered /usr refused: {}", elapsed(total));
}
