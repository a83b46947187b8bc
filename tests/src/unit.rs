//! `systemd-analyze verify` of a unit file, without a running systemd: the
//! unit goes into a scratch root with a stub for each executable it names
//! (so ExecStart= resolves) and a copy of the host's system unit directory
//! (so the units it depends on resolve).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use crate::{output_text, run_tool};

/// Runs `systemd-analyze verify` on `unit` (the text of
/// `hitvault.service`), with stubs at the absolute paths `executables`.
pub fn systemd_verify(unit: &str, executables: &[&str]) -> Output {
    let root = tempfile::Builder::new()
        .prefix("hitvault-unit-root")
        .tempdir()
        .unwrap();
    let r = root.path();
    std::fs::create_dir_all(r.join("etc/systemd/system")).unwrap();
    std::fs::create_dir_all(r.join("usr/lib/systemd")).unwrap();
    std::fs::write(r.join("etc/systemd/system/hitvault.service"), unit).unwrap();
    for exe in executables {
        let stub = r.join(exe.trim_start_matches('/'));
        std::fs::create_dir_all(stub.parent().unwrap()).unwrap();
        std::fs::write(&stub, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let units = ["/usr/lib/systemd/system", "/lib/systemd/system"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.join("sysinit.target").exists())
        .expect("the host's systemd unit directory (apt-get install systemd)");
    let cp = run_tool(
        Command::new("cp")
            .arg("-a")
            .arg(units)
            .arg(r.join("usr/lib/systemd/")),
        "coreutils",
    );
    assert!(
        cp.status.success(),
        "copying {}: {}",
        units.display(),
        output_text(&cp)
    );
    run_tool(
        Command::new("systemd-analyze")
            .args(["verify", "--man=no", "--generators=no"])
            .arg(format!("--root={}", r.display()))
            .arg("hitvault.service"),
        "systemd",
    )
}
