//! The shipped systemd unit: `systemd/hitvault.service` is exactly what
//! `nix/render-unit.nix` renders from `nix/hardening.nix`, its exposure under
//! `systemd-analyze security --offline=yes` is 1.0 or less, and
//! `systemd-analyze verify` has nothing to say about it.
//!
//! Needs Debian's `nix-bin` (nix 2.8) and `systemd` (systemd-analyze). These
//! tests fail, never skip, when either is missing: the check is the point.
//!
//! What the verify check accepts: nothing. It runs `systemd-analyze verify`
//! against a scratch root holding the committed unit, a stub
//! `/usr/bin/hitvault` (so the ExecStart binary exists) and a copy of the
//! host's `/usr/lib/systemd/system` (so the units it depends on resolve;
//! `hitvault_tests::unit`), and requires exit status 0 and empty output: an
//! unknown key, a bad value or a missing dependency all print a line.

use hitvault_tests::unit::systemd_verify;
use hitvault_tests::{output_text as text, run_tool as run};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The exposure the unit must not exceed.
const MAX_EXPOSURE: f64 = 1.0;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_owned()
}

fn unit_path() -> PathBuf {
    repo().join("systemd/hitvault.service")
}

#[test]
fn committed_unit_is_the_rendering_of_the_hardening_data() {
    let out = run(
        Command::new("nix")
            .current_dir(repo())
            .args([
                "--extra-experimental-features",
                "nix-command",
                "eval",
                "--raw",
            ])
            .args(["--option", "substituters", ""])
            .args(["-f", "nix/render-unit.nix"]),
        "nix-bin",
    );
    assert!(
        out.status.success(),
        "nix eval failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered = String::from_utf8(out.stdout).expect("UTF-8 unit");
    let committed = std::fs::read_to_string(unit_path()).expect("systemd/hitvault.service");
    assert!(
        rendered == committed,
        "systemd/hitvault.service is stale: render it again with\n  \
         nix --extra-experimental-features nix-command eval --raw --option substituters '' \
         -f nix/render-unit.nix > systemd/hitvault.service\n--- rendered ---\n{rendered}"
    );
}

#[test]
fn unit_exposure_is_at_most_one() {
    let out = run(
        Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(unit_path()),
        "systemd",
    );
    let all = text(&out);
    let line = all
        .lines()
        .find(|l| l.contains("Overall exposure level for hitvault.service"))
        .unwrap_or_else(|| panic!("no exposure line in:\n{all}"));
    let exposure: f64 = line
        .rsplit(": ")
        .next()
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("cannot parse {line:?}"));
    assert!(
        exposure <= MAX_EXPOSURE,
        "exposure {exposure} > {MAX_EXPOSURE}:\n{all}"
    );

    // The same bound through systemd-analyze's own gate (its threshold is in
    // tenths: 10 means 1.0).
    let gate = run(
        Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--no-pager", "--threshold=10"])
            .arg(unit_path()),
        "systemd",
    );
    assert!(
        gate.status.success(),
        "systemd-analyze --threshold=10 refused the unit:\n{}",
        text(&gate)
    );
}

#[test]
fn unit_verifies_without_a_word() {
    let unit = std::fs::read_to_string(unit_path()).expect("systemd/hitvault.service");
    let out = systemd_verify(&unit, &["/usr/bin/hitvault"]);
    let said = text(&out);
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify ({}):\n{said}",
        out.status
    );
}
