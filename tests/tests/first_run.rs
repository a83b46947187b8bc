//! The README's first command as a newcomer runs it on a fresh machine:
//! `hitvault serve --user auto`, from a clone under a home only its owner can
//! enter (as `/root` is, mode 0700), as root and as an ordinary account.
//!
//! As root it keeps its data in /var/lib/hitvault (a private mount namespace
//! puts an empty directory there, so the machine's own /var/lib is never
//! touched), switches to the account `auto` picks (`hitvault`, else
//! `nobody`) before it opens the store, and leaves every file owned by that
//! account. A data dir the account cannot reach is refused before anything
//! is created, naming the directory that blocks it and the fix, where it
//! used to end in a bare "Permission denied" from DuckDB after confinement.

use std::ffi::CString;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use hitvault_sandbox::privileges::{self, User};
use hitvault_tests::{CHROME_UA, binary, describe_exit, files_under, request, require_root};

/// What `user = "auto"` becomes as root.
fn auto_account() -> User {
    privileges::lookup("hitvault")
        .or_else(|_| privileges::lookup("nobody"))
        .expect("an account `hitvault` or `nobody`")
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A directory like `/root`: owned by root, mode 0700, with `clone/` (0755)
/// in it, the working directory of the README's command.
fn home_with_a_clone() -> (tempfile::TempDir, PathBuf) {
    let home = tempfile::Builder::new()
        .prefix("hitvault-home")
        .tempdir()
        .unwrap();
    chmod(home.path(), 0o700);
    let clone = home.path().join("clone");
    std::fs::create_dir(&clone).unwrap();
    chmod(&clone, 0o755);
    (home, clone)
}

/// `hitvault ARGS` in `cwd`, with no HITVAULT_* from the caller but `env`.
fn hitvault_in(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    program_in(&binary(), cwd, args, env)
}

/// [`hitvault_in`] with the binary at `program`.
fn program_in(program: &Path, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(program);
    c.args(args).current_dir(cwd);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("HITVAULT_")) {
        c.env_remove(k);
    }
    if let Some(mode) = std::env::var_os("HV_TEST_SECCOMP") {
        c.env("HITVAULT_SECCOMP", mode);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// Runs `cmd` in a private mount namespace where `/var/lib` is `var_lib`.
fn with_var_lib(cmd: &mut Command, var_lib: &Path) {
    let src = CString::new(var_lib.as_os_str().as_bytes()).unwrap();
    let dst = c"/var/lib";
    let root = c"/";
    // SAFETY: only system calls between fork and exec, on strings made before.
    unsafe {
        cmd.pre_exec(move || {
            let fail = |r: libc::c_int| {
                if r == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            };
            fail(libc::unshare(libc::CLONE_NEWNS))?;
            fail(libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            fail(libc::mount(
                src.as_ptr(),
                dst.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            ))
        });
    }
}

/// An empty stand-in for `/var/lib`, mode 0755 as on a fresh machine.
fn fresh_var_lib() -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("hitvault-varlib")
        .tempdir()
        .unwrap();
    chmod(d.path(), 0o755);
    d
}

/// A daemon started by a test of this file.
struct Running {
    child: Child,
    addr: SocketAddr,
    pid: i32,
    log: PathBuf,
}

impl Running {
    /// Spawns `cmd` (logging to `log`) and waits until `data_dir/run.json` appears.
    fn start(mut cmd: Command, data_dir: &Path, log: &Path) -> Running {
        let logf = std::fs::File::create(log).unwrap();
        cmd.stdin(Stdio::null())
            .stdout(logf.try_clone().unwrap())
            .stderr(logf);
        let mut child = cmd.spawn().expect("spawn hitvault");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "hitvault exited with {} while starting:\n{}",
                    describe_exit(status),
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            if let Ok(text) = std::fs::read_to_string(data_dir.join("run.json")) {
                let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                return Running {
                    child,
                    addr: v["listen"].as_str().unwrap().parse().unwrap(),
                    pid: v["pid"].as_i64().unwrap() as i32,
                    log: log.to_owned(),
                };
            }
            assert!(Instant::now() < deadline, "hitvault was not ready in 60 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The real, effective, saved and filesystem uids of the daemon.
    fn uids(&self) -> String {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .unwrap()
            .trim()
            .to_owned()
    }

    fn pageview(&self) {
        let r = request(
            self.addr,
            "POST",
            "/api/collect",
            &[("User-Agent", CHROME_UA), ("Content-Type", "text/plain")],
            br#"{"n":"pageview","u":"https://shop.test/a"}"#,
        )
        .unwrap();
        assert_eq!(r.status, 202, "{}", self.log());
    }

    /// SIGTERM, then the exit status must be 0.
    fn stop(mut self) -> String {
        // SAFETY: a signal to the child we started.
        unsafe { libc::kill(self.pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "no stop within 60 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        };
        let log = self.log();
        assert!(status.success(), "{}:\n{log}", describe_exit(status));
        log
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn hits(data_dir: &Path) -> String {
    let store = hitvault_store::Store::open_read_only(data_dir).unwrap();
    let rows = store.query_text("SELECT count(*) FROM hits").unwrap();
    rows[0][0].clone().unwrap_or_default()
}

#[test]
fn as_root_the_first_command_keeps_its_data_in_var_lib_and_runs_as_the_service_account() {
    require_root("it starts the README's command as root");
    let (home, clone) = home_with_a_clone();
    let var_lib = fresh_var_lib();
    let account = auto_account();
    // A database an earlier run as an ordinary account left in the clone.
    let earlier = clone.join("data/hitvault.duckdb");
    std::fs::create_dir(clone.join("data")).unwrap();
    std::fs::write(&earlier, b"").unwrap();
    let mut cmd = hitvault_in(
        &clone,
        &["serve", "--user", "auto", "--listen", "127.0.0.1:0"],
        &[("HITVAULT_SITES", "shop.test")],
    );
    with_var_lib(&mut cmd, var_lib.path());
    let data = var_lib.path().join("hitvault");
    let d = Running::start(cmd, &data, &home.path().join("daemon.log"));
    let id = account.uid;
    assert_eq!(d.uids(), format!("{id}\t{id}\t{id}\t{id}"), "{}", d.log());
    d.pageview();
    let log = d.stop();
    for want in [
        "data_dir is /var/lib/hitvault".to_owned(),
        format!("`user = auto` switches to the account {:?}", account.name),
        format!("switched from root to {:?}", account.name),
        "data_dir=/var/lib/hitvault".to_owned(),
        "./data/hitvault.duckdb holds a database from an earlier run".to_owned(),
        "pass `--data-dir ./data` to keep using it".to_owned(),
    ] {
        assert!(log.contains(&want), "{want:?} missing from:\n{log}");
    }
    // The data dir was created for the account, and everything in it is its.
    let meta = std::fs::metadata(&data).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (id, 0o700));
    let files = files_under(&data);
    assert!(
        files.iter().any(|f| f.ends_with("hitvault.duckdb")),
        "{files:?}"
    );
    for f in &files {
        let m = std::fs::symlink_metadata(f).unwrap();
        assert_eq!((m.uid(), m.gid()), (id, account.gid), "{}", f.display());
    }
    assert_eq!(hits(&data), "1");
    // The clone's data dir was left as it was.
    assert_eq!(files_under(&clone), vec![earlier.clone()]);
    assert_eq!(std::fs::metadata(&earlier).unwrap().uid(), 0);
}

#[test]
fn as_an_ordinary_account_the_first_command_keeps_its_data_in_the_clone() {
    require_root("it starts the README's command as another account");
    let nobody = privileges::lookup("nobody").unwrap();
    let top = tempfile::Builder::new()
        .prefix("hitvault-user")
        .tempdir()
        .unwrap();
    chmod(top.path(), 0o711);
    // The binary, where the account can run it (the target dir may be under /root).
    let bin_dir = top.path().join("bin");
    std::fs::create_dir(&bin_dir).unwrap();
    let bin = bin_dir.join("hitvault");
    if std::fs::hard_link(binary(), &bin).is_err() {
        std::fs::copy(binary(), &bin).unwrap();
    }
    chmod(&bin_dir, 0o755);
    // Its home, 0700 as homes are, with the clone in it.
    let home = top.path().join("home");
    let clone = home.join("clone");
    std::fs::create_dir_all(&clone).unwrap();
    for d in [&home, &clone] {
        std::os::unix::fs::chown(d, Some(nobody.uid), Some(nobody.gid)).unwrap();
    }
    chmod(&home, 0o700);
    let mut cmd = program_in(
        &bin,
        &clone,
        &["serve", "--user", "auto", "--listen", "127.0.0.1:0"],
        &[("HITVAULT_SITES", "shop.test")],
    );
    cmd.uid(nobody.uid).gid(nobody.gid);
    let data = clone.join("data");
    let d = Running::start(cmd, &data, &top.path().join("daemon.log"));
    let id = nobody.uid;
    assert_eq!(d.uids(), format!("{id}\t{id}\t{id}\t{id}"), "{}", d.log());
    d.pageview();
    let log = d.stop();
    assert!(!log.contains("switched from root"), "{log}");
    assert!(!log.contains("/var/lib/hitvault"), "{log}");
    assert!(log.contains("data_dir=./data"), "{log}");
    for f in files_under(&data) {
        assert_eq!(std::fs::metadata(&f).unwrap().uid(), id, "{}", f.display());
    }
    assert_eq!(hits(&data), "1");
}

#[test]
fn a_data_dir_the_account_cannot_reach_is_refused_naming_the_directory_and_the_fix() {
    require_root("it starts the daemon as root with a user that cannot reach the data dir");
    let (home, clone) = home_with_a_clone();
    let blocked = home.path().display().to_string();
    // What the README's command did before: data in the clone, user nobody.
    for args in [
        &["serve", "--user", "nobody", "--data-dir", "./data"][..],
        &[
            "sandbox",
            "check",
            "--user",
            "nobody",
            "--data-dir",
            "./data",
        ][..],
    ] {
        let out = hitvault_in(&clone, args, &[]).output().unwrap();
        let said = text(&out);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {said}");
        for want in [
            "`data_dir`".to_owned(),
            "user \"nobody\" cannot reach ./data".to_owned(),
            format!("{blocked} (owner uid 0, group gid 0, mode 0700)"),
            "--data-dir /var/lib/hitvault".to_owned(),
            format!("chmod o+x {blocked}"),
        ] {
            assert!(
                said.contains(&want),
                "{args:?}: {want:?} missing from: {said}"
            );
        }
        assert!(!said.contains("Permission denied"), "{said}");
        assert!(
            !clone.join("data").exists(),
            "{args:?}: refused before creating anything"
        );
    }
    // The same data dir as an absolute path, nested deeper.
    let deep = clone.join("x/y/data");
    let out = hitvault_in(
        &clone,
        &[
            "serve",
            "--user",
            "nobody",
            "--data-dir",
            deep.to_str().unwrap(),
        ],
        &[],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("chmod o+x {blocked}")),
        "{}",
        text(&out)
    );
    assert!(!clone.join("x").exists());
    // Once the account can pass, the same command starts.
    chmod(home.path(), 0o711);
    let cmd = hitvault_in(
        &clone,
        &[
            "serve",
            "--user",
            "nobody",
            "--data-dir",
            "./data",
            "--listen",
            "127.0.0.1:0",
        ],
        &[("HITVAULT_SITES", "shop.test")],
    );
    let d = Running::start(cmd, &clone.join("data"), &home.path().join("daemon.log"));
    d.pageview();
    d.stop();
    assert_eq!(hits(&clone.join("data")), "1");
}

#[test]
fn root_without_user_is_told_the_exact_fix_and_nothing_is_created() {
    require_root("it starts the daemon as root without `user`");
    let (_home, clone) = home_with_a_clone();
    let var_lib = fresh_var_lib();
    let mut cmd = hitvault_in(&clone, &["serve", "--listen", "127.0.0.1:0"], &[]);
    with_var_lib(&mut cmd, var_lib.path());
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--user auto"), "{}", text(&out));
    assert_eq!(std::fs::read_dir(var_lib.path()).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(&clone).unwrap().count(), 0);
}
