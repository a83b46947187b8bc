//! The Nix side, checked here without nixpkgs (which this CI cannot fetch):
//! every `.nix` file parses, is formatted (alejandra) and has no dead code
//! (deadnix); the builtins-only parts are evaluated for real with Debian's
//! `nix-bin` and held to the binary: the settings defaults are the daemon's
//! defaults, the TOML the module writes loads and reads back as written,
//! the keys the module writes ahead of the daemon are still unknown to it,
//! the module's unit is the shipped unit with its own command line, and the
//! Takeout formats are the CLI's; the USB Takeout script (nix/takeout-usb.sh)
//! writes a verified Takeout onto a real file system on a loop device from a
//! running daemon and unmounts it, and passes shellcheck. What needs nixpkgs
//! (`nix flake check`, `nix build .#image`) is listed in docs/guide/nixos.md.
//!
//! Tools: `nix-instantiate` (Debian's `nix-bin`), `shellcheck`, `mkfs.ext4`
//! (`e2fsprogs`) and `losetup` (`util-linux`) from Debian, and `alejandra` and
//! `deadnix` from crates.io, which tests/run installs with `cargo install
//! --locked --root ~/.cache/hitvault-tools`. A missing tool fails the test.
//! The USB test needs root (to mount), as the suite runs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hitvault_tests::config::{check_config, file_keys};
use hitvault_tests::unit::systemd_verify;
use hitvault_tests::{Daemon, IngestToken, binary, hitvault, output_text, require_root, run_tool};
use serde_json::{Value, json};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_owned()
}

/// Every `.nix` file of the repository (hidden directories and build
/// output left out), relative to its root.
fn nix_files() -> Vec<PathBuf> {
    fn walk(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(root.join(rel))
            .unwrap()
            .map(|e| e.unwrap())
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name == "target" || name == "result" {
                continue;
            }
            let p = rel.join(&name);
            if e.file_type().unwrap().is_dir() {
                walk(root, &p, out);
            } else if name.ends_with(".nix") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&repo(), Path::new(""), &mut out);
    out
}

/// A tool that tests/run installs from crates.io into
/// `~/.cache/hitvault-tools/bin` (or found on PATH).
fn cargo_tool(name: &str) -> Command {
    let home = std::env::var_os("HOME").expect("HOME");
    let installed = Path::new(&home)
        .join(".cache/hitvault-tools/bin")
        .join(name);
    let mut cmd = Command::new(if installed.exists() {
        installed.into_os_string()
    } else {
        name.into()
    });
    cmd.current_dir(repo());
    cmd
}

fn run_cargo_tool(cmd: &mut Command, how: &str) -> Output {
    match cmd.output() {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "{:?} is not installed: tests/run installs it with `cargo install --locked --root \
             ~/.cache/hitvault-tools {how}`",
            cmd.get_program()
        ),
        Err(e) => panic!("running {cmd:?}: {e}"),
    }
}

/// `nix-instantiate --eval --strict --json` of `expr`, evaluated in the
/// repository's root (`./nix/settings.nix` and so on), as JSON.
fn eval(expr: &str) -> Value {
    let out = run_tool(
        Command::new("nix-instantiate")
            .current_dir(repo())
            .args([
                "--eval",
                "--strict",
                "--json",
                "--option",
                "substituters",
                "",
            ])
            .args(["--expr", expr]),
        "nix-bin",
    );
    assert!(
        out.status.success(),
        "nix-instantiate --eval failed for\n{expr}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("nix prints JSON")
}

/// `eval` of an expression giving a string.
fn eval_string(expr: &str) -> String {
    match eval(expr) {
        Value::String(s) => s,
        other => panic!("{expr} gave {other}, not a string"),
    }
}

/// Evaluation of `expr` that must fail; its error message.
fn eval_error(expr: &str) -> String {
    let out = run_tool(
        Command::new("nix-instantiate")
            .current_dir(repo())
            .args(["--eval", "--strict", "--option", "substituters", ""])
            .args(["--expr", expr]),
        "nix-bin",
    );
    assert!(
        !out.status.success(),
        "{expr} evaluated: {}",
        output_text(&out)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const SETTINGS: &str = "(import ./nix/settings.nix)";

/// `check-config` of `toml`, which must load; the effective configuration.
fn loads(toml: &str) -> Value {
    let (ok, json, err) = check_config(toml, &[]);
    assert!(ok, "check-config refused\n{toml}\n{err}");
    serde_json::from_str(&json).expect("check-config prints JSON")
}

/// Dotted keys of the leaves of a JSON object; an empty object is a leaf
/// (a table of the daemon's that defaults to empty, such as `retention.sites`).
fn leaf_keys(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v.as_object() {
        Some(m) if !m.is_empty() => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaf_keys(v, &key, out);
            }
        }
        _ => {
            out.insert(prefix.to_owned());
        }
    }
}

#[test]
fn every_nix_file_parses() {
    let files = nix_files();
    for must in [
        "flake.nix",
        "nix/module.nix",
        "nix/settings.nix",
        "nix/hardening.nix",
    ] {
        assert!(
            files.iter().any(|f| f == Path::new(must)),
            "{must} is missing"
        );
    }
    for f in &files {
        let out = run_tool(
            Command::new("nix-instantiate")
                .current_dir(repo())
                .arg("--parse")
                .arg(f),
            "nix-bin",
        );
        assert!(
            out.status.success(),
            "{} does not parse: {}",
            f.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn nix_files_are_formatted_with_alejandra() {
    let files = nix_files();
    let out = run_cargo_tool(
        cargo_tool("alejandra").arg("--check").args(&files),
        "--path tools/alejandra",
    );
    assert!(
        out.status.success(),
        "not formatted as alejandra formats them (format with `alejandra FILE`):\n{}",
        output_text(&out)
    );
    // The check can fail: a badly spaced file is refused.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.nix");
    std::fs::write(&bad, "{ a = 1;   b=[ 1 2 ];}\n").unwrap();
    let out = run_cargo_tool(
        cargo_tool("alejandra").arg("--check").arg(&bad),
        "--path tools/alejandra",
    );
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
}

#[test]
fn nix_files_have_no_dead_code() {
    let out = run_cargo_tool(
        cargo_tool("deadnix")
            .args(["--fail", "--no-underscore"])
            .args(nix_files()),
        "deadnix --version 1.3.1",
    );
    assert!(
        out.status.success(),
        "deadnix found unused bindings:\n{}",
        output_text(&out)
    );
    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("dead.nix");
    std::fs::write(&dead, "{ a, b }: let c = 1; in a\n").unwrap();
    let out = run_cargo_tool(
        cargo_tool("deadnix").arg("--fail").arg(&dead),
        "deadnix --version 1.3.1",
    );
    assert!(!out.status.success(), "deadnix missed unused b and c");
}

#[test]
fn the_settings_defaults_are_the_daemons_defaults() {
    // Exactly the keys a configuration file may hold.
    let defaults = eval(&format!("{SETTINGS}.defaults"));
    let mut keys = BTreeSet::new();
    leaf_keys(&defaults, "", &mut keys);
    assert_eq!(
        keys,
        file_keys(),
        "nix/settings.nix `defaults` has other keys than the binary accepts"
    );

    // Written out, they load as the daemon's own defaults (an empty file).
    let toml = eval_string(&format!("{SETTINGS}.toTOML {SETTINGS}.defaults"));
    assert!(toml.contains("listen = \"127.0.0.1:8080\""), "{toml}");
    assert!(toml.contains("[queue]\nmax_bytes = \"1GiB\""), "{toml}");
    assert_eq!(
        loads(&toml),
        loads(""),
        "the defaults of nix/settings.nix, rendered:\n{toml}"
    );
}

#[test]
fn keys_the_module_writes_ahead_of_the_daemon_are_still_unknown_to_it() {
    let pending = eval(&format!("{SETTINGS}.pending"));
    let known = file_keys();
    let mut all = Vec::new();
    for (issue, keys) in pending.as_object().expect("pending: issue -> keys") {
        for key in keys.as_array().unwrap() {
            let key = key.as_str().unwrap();
            assert!(
                !known.contains(key),
                "the daemon now reads `{key}` (issue {issue}): move it from `pending` to \
                 `defaults` in nix/settings.nix, with the daemon's default"
            );
            // And the binary refuses it, naming it.
            let (table, leaf) = key.rsplit_once('.').unwrap_or(("", key));
            let toml = if table.is_empty() {
                format!("{leaf} = \"x\"\n")
            } else {
                format!("[{table}]\n{leaf} = \"x\"\n")
            };
            let (ok, _, err) = check_config(&toml, &[]);
            let named = key.split('.').next().unwrap();
            assert!(
                !ok && err.contains(&format!("unknown field `{named}`")),
                "{key}: {err}"
            );
            all.push(key.to_owned());
        }
    }

    // Left at their defaults, the module's typed options write none of them.
    let toml = eval_string(&format!(
        "{SETTINGS}.toTOML ({SETTINGS}.configOf {{ settings = {{ listen = \"0.0.0.0:8080\"; }}; }})"
    ));
    assert_eq!(toml, "listen = \"0.0.0.0:8080\"\n");
}

/// The value at dotted `key` of `check-config`'s output, whether the output
/// nests it (`tls.mode`) or flattens it (`tls_mode`).
fn effective<'a>(c: &'a Value, key: &str) -> Option<&'a Value> {
    c.get(key.replace('.', "_"))
        .or_else(|| key.split('.').try_fold(c, |v, k| v.get(k)))
}

#[test]
fn the_modules_typed_options_load_in_the_daemon_as_far_as_it_reads_them() {
    // Every typed option set, as the module passes them (key files as
    // credential paths); the keys still pending are left out, the rest must
    // load and read back as written. Today that leaves `listen`; each key
    // the daemon learns joins the check by itself.
    let config = eval(&format!(
        r#"let s = {SETTINGS}; in s.configOf {{
          settings = {{ listen = "0.0.0.0:8080"; }};
          hostnames = [ "analytics.clinic.lan" ];
          allow_plain_http = false;
          tls = {{ mode = "files"; cert_file = s.credential "tls-cert"; key_file = s.credential "tls-key"; }};
          cluster = {{ enable = true; node_id = 1; bind = "10.77.0.1:7946";
                      peers = {{ "2" = "10.77.0.2:7946"; "3" = "10.77.0.3:7946"; }};
                      key_file = s.credential "cluster-key"; ack = "majority"; init = true; }};
        }}"#
    ));
    let pending: BTreeSet<String> = eval(&format!(
        "builtins.concatLists (builtins.attrValues {SETTINGS}.pending)"
    ))
    .as_array()
    .unwrap()
    .iter()
    .map(|k| k.as_str().unwrap().to_owned())
    .collect();
    let mut written = BTreeSet::new();
    leaf_keys(&config, "", &mut written);
    let kept: BTreeSet<&String> = written.iter().filter(|k| !pending.contains(*k)).collect();
    let mut kept_config = serde_json::Map::new();
    for (k, v) in config.as_object().unwrap() {
        if !pending
            .iter()
            .any(|p| p == k || p.starts_with(&format!("{k}.")))
        {
            kept_config.insert(k.clone(), v.clone());
        }
    }
    assert!(kept.contains(&"listen".to_owned()), "{kept:?}");
    let toml = eval_string(&format!(
        "{SETTINGS}.toTOML (builtins.fromJSON {:?})",
        Value::Object(kept_config).to_string()
    ));
    let c = loads(&toml);
    for key in kept {
        let value = key.split('.').try_fold(&config, |v, k| v.get(k)).unwrap();
        assert_eq!(
            effective(&c, key),
            Some(value),
            "{key} does not read back as written from\n{toml}"
        );
    }
}

#[test]
fn settings_of_every_shape_load_as_written() {
    // Strings with every character TOML must escape, quoted keys, inline
    // tables in a list, nested tables, sizes as text and as numbers.
    let settings = r#"{
      listen = "0.0.0.0:8090";
      sites = [
        "example.com"
        { hostname = "shop.example.com"; aliases = [ "www.shop.example.com" ]; }
      ];
      referrer_spam = [ "quote\"back\\slash" "tab\tnew\nline\rret${builtins.fromJSON "\"\\u0001\\u0008\\u000c\\u001f\\u007f\""}end" "ünï©ødé ✓" ];
      trusted_proxies = [ "10.0.0.1" "fd00::/8" ];
      log_level = "info,hitvault=debug";
      queue = { max_bytes = "2GiB"; segment_bytes = 1048576; };
      store.threads = 3;
      batch = { max_rows = 500; max_wait_ms = 50; };
      retention = {
        days = 395;
        sites = { "shop.example.com" = 90; "example.com" = 0; };
        archive_dir = null;
      };
      user = null;
    }"#;
    let toml = eval_string(&format!("{SETTINGS}.toTOML {settings}"));
    let written = eval(&format!("builtins.removeAttrs {settings} [\"user\"]"));
    let c = loads(&toml);
    assert_eq!(c["listen"], "0.0.0.0:8090");
    assert_eq!(c["sites"], written["sites"], "{toml}");
    assert_eq!(c["referrer_spam"], written["referrer_spam"], "{toml}");
    assert_eq!(
        c["referrer_spam"][1],
        "tab\tnew\nline\rret\u{1}\u{8}\u{c}\u{1f}\u{7f}end"
    );
    assert_eq!(c["trusted_proxies"], json!(["10.0.0.1/32", "fd00::/8"]));
    assert_eq!(c["log_level"], "info,hitvault=debug");
    assert_eq!(c["queue_max_bytes"], 2u64 << 30);
    assert_eq!(c["queue_segment_bytes"], 1u64 << 20);
    assert_eq!(c["store_threads"], 3);
    assert_eq!(c["batch_max_rows"], 500);
    assert_eq!(c["batch_max_wait_ms"], 50);
    assert_eq!(c["retention_days"], 395);
    assert_eq!(
        c["retention_sites"],
        json!({"shop.example.com": 90, "example.com": 0})
    );
    // Null leaves the key out: unset, as the daemon's default.
    assert!(
        !toml.contains("archive_dir") && !toml.contains("user"),
        "{toml}"
    );
    assert_eq!(c["archive_dir"], Value::Null);

    // A bad value is refused by the daemon naming the key, as the module's
    // build-time check will refuse it.
    let toml = eval_string(&format!(
        "{SETTINGS}.toTOML {{ retention.sites.\"shop.example.com\" = -1; }}"
    ));
    let (ok, _, err) = check_config(&toml, &[]);
    assert!(
        !ok && err.contains("retention.sites.shop.example.com"),
        "{err}"
    );
}

#[test]
fn the_toml_renderer_writes_what_a_toml_parser_reads_back() {
    // Shapes no setting has yet (booleans, floats, arrays of tables, deep
    // tables, empty lists), read by the toml crate into plain values.
    let value = r#"{
      a = true; b = false; f = 1.5; n = -7; e = [];
      s = "with \"quotes\" and \\ and ${"$"}{not interpolated}";
      list = [ 1 "two" [ 3 ] { x = 1; y = { z = "deep"; }; } ];
      t = { u = { v = { w = 1; }; k = "in u"; }; empty = { gone = null; }; };
      "key with spaces" = { "a.b" = 1; };
      dropped = null;
    }"#;
    let toml = eval_string(&format!("{SETTINGS}.toTOML {value}"));
    let parsed: toml::Value =
        toml::from_str(&toml).unwrap_or_else(|e| panic!("not TOML: {e}\n{toml}"));
    let parsed = serde_json::to_value(parsed).unwrap();
    let expected = json!({
        "a": true, "b": false, "f": 1.5, "n": -7, "e": [],
        "s": "with \"quotes\" and \\ and ${not interpolated}",
        "list": [1, "two", [3], {"x": 1, "y": {"z": "deep"}}],
        "t": {"u": {"v": {"w": 1}, "k": "in u"}},
        "key with spaces": {"a.b": 1},
    });
    assert_eq!(parsed, expected, "rendered:\n{toml}");

    // What cannot be TOML is refused, naming its type.
    let err = eval_error(&format!("{SETTINGS}.toTOML {{ f = x: x; }}"));
    assert!(err.contains("a lambda cannot be written as TOML"), "{err}");
}

#[test]
fn the_module_merges_its_typed_options_into_the_settings() {
    let config = eval(&format!(
        r#"{SETTINGS}.configOf {{
          settings = {{ listen = "0.0.0.0:8080"; tls.mode = "from-settings"; allow_plain_http = true; }};
          hostnames = [ "analytics.clinic.lan" ];
          tls = {{ mode = null; cert_file = "/run/credentials/hitvault.service/tls-cert"; key_file = null; }};
          cluster = {{ enable = false; node_id = 1; bind = null; peers = {{ }}; key_file = null; ack = "majority"; init = null; }};
        }}"#
    ));
    assert_eq!(
        config,
        json!({
            "listen": "0.0.0.0:8080",
            "hostnames": ["analytics.clinic.lan"],
            // A null option leaves what `settings` says.
            "tls": {"mode": "from-settings", "cert_file": "/run/credentials/hitvault.service/tls-cert"},
            "allow_plain_http": true,
            // No cluster table while the cluster is off.
        })
    );
    let config = eval(&format!(
        r#"{SETTINGS}.configOf {{
          cluster = {SETTINGS}.options.cluster // {{ enable = true; node_id = 2; bind = "10.77.0.2:7946"; peers = {{ "1" = "10.77.0.1:7946"; }}; }};
        }}"#
    ));
    assert_eq!(
        config,
        json!({"cluster": {"enable": true, "node_id": 2, "bind": "10.77.0.2:7946",
                           "peers": {"1": "10.77.0.1:7946"}, "ack": "majority"}})
    );
    // The typed options' defaults: every one leaves its key to the daemon.
    assert_eq!(
        eval(&format!("{SETTINGS}.configOf {{ }}")),
        json!({}),
        "the module's option defaults write keys"
    );
    assert_eq!(
        eval(&format!("{SETTINGS}.credential \"tls-key\"")),
        "/run/credentials/hitvault.service/tls-key"
    );
}

#[test]
fn ports_for_the_firewall_come_from_the_addresses() {
    assert_eq!(
        eval(&format!(
            "map {SETTINGS}.portOf [ \"127.0.0.1:8080\" \"0.0.0.0:443\" \"[::]:8443\" \"[fd00::1]:7946\" ]"
        )),
        json!([8080, 443, 8443, 7946])
    );
    let err = eval_error(&format!("{SETTINGS}.portOf \"analytics.lan\""));
    assert!(err.contains("analytics.lan is not host:port"), "{err}");
    // The default listen address gives the daemon's default port.
    let c = loads("");
    let listen = c["listen"].as_str().unwrap();
    assert_eq!(
        eval(&format!("{SETTINGS}.portOf {SETTINGS}.defaults.listen")),
        json!(listen.rsplit(':').next().unwrap().parse::<u16>().unwrap())
    );
}

#[test]
fn the_firewall_opens_the_dashboard_on_the_lan_and_the_cluster_port_on_its_interface_only() {
    let fw = |args: &str| eval(&format!("{SETTINGS}.firewall {args}"));
    // No LAN interface named: the dashboard's port on every interface.
    assert_eq!(
        fw(r#"{ listen = "0.0.0.0:8080"; }"#),
        json!({"allowedTCPPorts": [8080]})
    );
    // Named: there only.
    assert_eq!(
        fw(r#"{ listen = "0.0.0.0:8443"; lanInterfaces = [ "enp1s0" "enp3s0" ]; }"#),
        json!({"interfaces": {
            "enp1s0": {"allowedTCPPorts": [8443]},
            "enp3s0": {"allowedTCPPorts": [8443]},
        }})
    );
    // The cluster's port on the cluster interface, and nowhere else.
    assert_eq!(
        fw(r#"{
          listen = "0.0.0.0:8080"; lanInterfaces = [ "enp1s0" ];
          cluster = { bind = "10.77.0.1:7946"; interface = "enp2s0"; };
        }"#),
        json!({"interfaces": {
            "enp1s0": {"allowedTCPPorts": [8080]},
            "enp2s0": {"allowedTCPPorts": [7946]},
        }})
    );
    let err = eval_error(&format!(
        r#"{SETTINGS}.firewall {{ listen = "0.0.0.0:8080"; lanInterfaces = [ "enp1s0" ];
             cluster = {{ bind = "10.77.0.1:7946"; interface = "enp1s0"; }}; }}"#
    ));
    assert!(
        err.contains("enp1s0 is both a LAN interface and the cluster interface"),
        "{err}"
    );
    let err = eval_error(&format!(
        r#"{SETTINGS}.firewall {{ listen = "0.0.0.0:8080";
             cluster = {{ bind = "10.77.0.1:7946"; interface = null; }}; }}"#
    ));
    assert!(err.contains("name the cluster interface"), "{err}");
}

/// The unit file nix/unit-file.nix renders for `execStart` and credentials.
fn unit(exec_start: &str, credentials: &[&str]) -> String {
    let creds: Vec<String> = credentials.iter().map(|c| format!("{c:?}")).collect();
    eval_string(&format!(
        "import ./nix/unit-file.nix {{ execStart = {exec_start:?}; loadCredential = [ {} ]; }}",
        creds.join(" ")
    ))
}

#[test]
fn the_modules_unit_is_the_shipped_unit_with_its_own_command_and_credentials() {
    let shipped = std::fs::read_to_string(repo().join("systemd/hitvault.service")).unwrap();
    let exec = "/nix/store/0000000000000000000000000000000-hitvault-0.1.0/bin/hitvault \
                --config /nix/store/1111111111111111111111111111111-hitvault.toml serve";
    let creds = [
        "tls-cert:/var/lib/acme/a/fullchain.pem",
        "tls-key:/var/lib/acme/a/key.pem",
    ];
    let module = unit(exec, &creds);
    let lines = |t: &str| t.lines().map(str::to_owned).collect::<BTreeSet<_>>();
    let (shipped_lines, module_lines) = (lines(&shipped), lines(&module));
    let only_shipped: Vec<_> = shipped_lines.difference(&module_lines).collect();
    let only_module: Vec<_> = module_lines.difference(&shipped_lines).collect();
    assert_eq!(only_shipped, vec!["ExecStart=/usr/bin/hitvault serve"]);
    let mut expected = [
        format!("ExecStart={exec}"),
        format!("LoadCredential={}", creds[0]),
        format!("LoadCredential={}", creds[1]),
    ];
    expected.sort();
    assert_eq!(only_module, expected.iter().collect::<Vec<_>>());
    // With the same command, no difference at all: the shipped unit is the
    // rendering of the same data.
    assert_eq!(unit("/usr/bin/hitvault serve", &[]), shipped);

    // The module runs exactly that service (it builds it with nix/service.nix
    // and sets it whole; nix/module.nix is evaluated only with nixpkgs).
    let module_nix = std::fs::read_to_string(repo().join("nix/module.nix")).unwrap();
    assert!(
        module_nix.contains("service = import ./service.nix {")
            && module_nix.contains("systemd.services.hitvault = service;"),
        "nix/module.nix no longer sets the service of nix/service.nix"
    );

    // systemd has nothing to say about it either.
    let out = systemd_verify(&module, &[exec.split(' ').next().unwrap()]);
    assert!(
        out.status.success() && output_text(&out).trim().is_empty(),
        "systemd-analyze verify of the module's unit ({}):\n{}",
        out.status,
        output_text(&out)
    );

    // Its exposure stays within the shipped unit's bound.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hitvault.service");
    std::fs::write(&path, &module).unwrap();
    let gate = run_tool(
        Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--no-pager", "--threshold=10"])
            .arg(&path),
        "systemd",
    );
    assert!(
        gate.status.success(),
        "the module's unit is above exposure 1.0:\n{}",
        output_text(&gate)
    );
}

#[test]
fn the_usb_takeout_formats_are_the_clis() {
    let usb = eval(&format!("{SETTINGS}.takeout.usb"));
    let formats: Vec<&str> = usb["formats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    // The CLI names its formats when it refuses one, and its default in --help.
    let out = hitvault(&["takeout", "--to", "/nonexistent", "--format", "nope"]);
    let err = output_text(&out);
    let listed = err
        .rsplit_once('(')
        .and_then(|(_, l)| l.split_once(')'))
        .map(|(l, _)| l.replace(" or ", ", "))
        .unwrap_or_else(|| panic!("no list of formats in: {err}"));
    let listed: Vec<&str> = listed.split(", ").collect();
    assert_eq!(formats, listed, "{err}");
    let help = String::from_utf8_lossy(&hitvault(&["takeout", "--help"]).stdout).into_owned();
    assert!(
        help.contains(&format!("[default: {}]", usb["format"].as_str().unwrap())),
        "{help}"
    );
    // The label fits a FAT file system (11 characters) and the module's type.
    let label = usb["label"].as_str().unwrap();
    assert!(
        label.len() <= 11
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "{label}"
    );
}

#[test]
fn the_flake_takes_nixpkgs_from_a_release_branch_and_nothing_else() {
    let flake = eval(
        "let f = import ./flake.nix; in { inherit (f) description inputs; \
         args = builtins.functionArgs f.outputs; }",
    );
    let url = flake["inputs"]["nixpkgs"]["url"].as_str().unwrap();
    let branch = url
        .strip_prefix("github:NixOS/nixpkgs/nixos-")
        .unwrap_or_else(|| panic!("nixpkgs is not a NixOS release branch: {url}"));
    assert!(
        branch.len() == 5 && branch.as_bytes()[2] == b'.',
        "not a release branch (nixos-YY.MM): {url}"
    );
    assert_eq!(
        flake["inputs"].as_object().unwrap().len(),
        1,
        "{}",
        flake["inputs"]
    );
    assert_eq!(flake["args"], json!({"self": false, "nixpkgs": false}));
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn the_package_source_holds_everything_the_crates_compile_in() {
    // nix/package.nix builds from these paths only.
    let sources: Vec<PathBuf> = eval("import ./nix/sources.nix")
        .as_array()
        .unwrap()
        .iter()
        .map(|p| repo().join(p.as_str().unwrap()))
        .collect();
    let inside = |p: &Path| sources.iter().any(|s| p.starts_with(s));
    for s in &sources {
        assert!(
            s.exists(),
            "nix/sources.nix lists {}, which does not exist",
            s.display()
        );
    }
    // Every workspace member's manifest and crate files.
    let manifest: toml::Value =
        toml::from_str(&std::fs::read_to_string(repo().join("Cargo.toml")).unwrap()).unwrap();
    let mut crates = Vec::new();
    for member in manifest["workspace"]["members"].as_array().unwrap() {
        let member = member.as_str().unwrap();
        match member.strip_suffix("/*") {
            Some(parent) => {
                for e in std::fs::read_dir(repo().join(parent)).unwrap() {
                    let p = e.unwrap().path();
                    if p.join("Cargo.toml").exists() {
                        crates.push(p);
                    }
                }
            }
            None => crates.push(repo().join(member)),
        }
    }
    assert!(crates.len() > 5, "{crates:?}");
    let mut files = Vec::new();
    for c in &crates {
        assert!(
            inside(&c.join("Cargo.toml")),
            "{} is not in nix/sources.nix: Cargo cannot load the workspace",
            c.display()
        );
        if c.join("src").is_dir() {
            assert!(
                inside(&c.join("src")),
                "{}/src is not in nix/sources.nix",
                c.display()
            );
            rust_files(&c.join("src"), &mut files);
        }
    }
    // Every file a crate compiles in.
    let mut included = 0;
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for mac in ["include_str!(\"", "include_bytes!(\""] {
            for (i, _) in text.match_indices(mac) {
                let rest = &text[i + mac.len()..];
                let rel = &rest[..rest.find('"').unwrap()];
                let target = f
                    .parent()
                    .unwrap()
                    .join(rel)
                    .canonicalize()
                    .unwrap_or_else(|e| panic!("{}: {rel}: {e}", f.display()));
                assert!(
                    inside(&target),
                    "{} compiles in {}, which nix/sources.nix leaves out of the Nix build",
                    f.display(),
                    target.display()
                );
                included += 1;
            }
        }
    }
    assert!(included >= 10, "only {included} included files found");
}

#[test]
fn the_vm_tests_script_is_python() {
    // The VM test needs nixpkgs to run; its script is plain Python with
    // store paths spliced in, so it is parsed here (paths stand in for the
    // host's packages).
    let script = eval_string(
        "((import ./nix/tests/one-node.nix { module = { }; package = \"/nix/store/hitvault\"; }) \
         { hostPkgs = { dosfstools = \"/nix/store/dosfstools\"; mtools = \"/nix/store/mtools\"; }; }).testScript",
    );
    assert!(
        script.contains("wait_for_unit(\"hitvault.service\")"),
        "{script}"
    );
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import ast, sys; ast.parse(sys.stdin.read(), 'testScript')",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (Debian's python3, which tests/run installs)");
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
    }
    let py = child.wait_with_output().unwrap();
    assert!(
        py.status.success(),
        "the VM test's script does not parse:\n{}",
        output_text(&py)
    );
}

#[test]
fn the_shell_scripts_pass_shellcheck() {
    let scripts = ["nix/takeout-usb.sh", "nix/update-usb.sh"];
    let out = run_tool(
        Command::new("shellcheck").current_dir(repo()).args(scripts),
        "shellcheck",
    );
    assert!(out.status.success(), "shellcheck:\n{}", output_text(&out));
}

/// A file system with `label` in a file, attached to a loop device; the
/// device is detached on drop.
struct Stick {
    image: PathBuf,
    device: String,
}

impl Stick {
    fn new(dir: &Path, label: &str) -> Stick {
        let image = dir.join(format!("{label}.img"));
        let out = run_tool(
            Command::new("mkfs.ext4")
                .args(["-q", "-F", "-L", label])
                .arg(&image)
                .arg("32M"),
            "e2fsprogs",
        );
        assert!(out.status.success(), "mkfs.ext4: {}", output_text(&out));
        let out = run_tool(
            Command::new("losetup")
                .args(["--find", "--show"])
                .arg(&image),
            "util-linux",
        );
        assert!(out.status.success(), "losetup: {}", output_text(&out));
        let device = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        Stick { image, device }
    }

    /// Mounts the stick read-only on a new directory, runs `f` on it.
    fn read<T>(&self, f: impl FnOnce(&Path) -> T) -> T {
        let mnt = tempfile::tempdir().unwrap();
        let out = run_tool(
            Command::new("mount")
                .args(["-o", "ro"])
                .arg(&self.device)
                .arg(mnt.path()),
            "util-linux",
        );
        assert!(out.status.success(), "mount: {}", output_text(&out));
        let r = f(mnt.path());
        let out = run_tool(Command::new("umount").arg(mnt.path()), "util-linux");
        assert!(out.status.success(), "umount: {}", output_text(&out));
        r
    }
}

impl Drop for Stick {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.device]).output();
        let _ = std::fs::remove_file(&self.image);
    }
}

fn mounted(dir: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let dir = dir.to_str().unwrap();
    mounts.lines().any(|l| l.split(' ').nth(4) == Some(dir))
}

/// Runs nix/takeout-usb.sh as the module's unit does: on `device`, with
/// the daemon's data dir, `mnt` as its runtime directory.
fn takeout_usb(device: &str, data_dir: &Path, mnt: &Path, format: &str) -> Output {
    let bin_dir = binary().parent().unwrap().to_owned();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("bash");
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("HITVAULT_")) {
        cmd.env_remove(k);
    }
    run_tool(
        cmd.arg(repo().join("nix/takeout-usb.sh"))
            .arg(device)
            .env("PATH", path)
            .env("RUNTIME_DIRECTORY", mnt)
            .env("TAKEOUT_FORMAT", format)
            .env("TAKEOUT_LABEL", "HV-TAKEOUT")
            .env("HITVAULT_DATA_DIR", data_dir),
        "bash",
    )
}

#[test]
fn the_usb_takeout_script_writes_a_verified_takeout_and_unmounts() {
    require_root("it mounts a file system on a loop device, as the module's unit does");
    let token = IngestToken::new("usb-takeout-token-0123456789");
    let d = Daemon::start(&[("HITVAULT_SITES", "usb.test"), token.env()]);
    let hits: String = (0..25)
        .map(|i| {
            format!(
                "{{\"name\":\"pageview\",\"url\":\"https://usb.test/p{i}\",\"user_agent\":\
                 \"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\"}}\n"
            )
        })
        .collect();
    d.ingest(&token.token, &hits);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while d.metric("hitvault_hits_stored_total") < 25 {
        assert!(std::time::Instant::now() < deadline, "25 hits not stored");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    let dir = tempfile::tempdir().unwrap();
    let stick = Stick::new(dir.path(), "HV-TAKEOUT");
    let mnt = tempfile::tempdir().unwrap();
    let out = takeout_usb(&stick.device, &d.data_dir, mnt.path(), "csv");
    let said = output_text(&out);
    assert!(out.status.success(), "takeout-usb.sh failed:\n{said}");
    assert!(
        said.contains("verified, synced and unmounted: the stick can be removed"),
        "{said}"
    );
    assert!(
        said.contains("through the running daemon"),
        "the export did not go through the daemon:\n{said}"
    );
    assert!(!mounted(mnt.path()), "the stick is still mounted");
    // On the stick, read on its own: one export that verifies, with every hit.
    let rows = stick.read(|root| {
        let exports: Vec<_> = std::fs::read_dir(root)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("hitvault-takeout-")
            })
            .collect();
        assert_eq!(exports.len(), 1, "{exports:?}");
        let verify = hitvault(&["takeout", "verify", exports[0].to_str().unwrap()]);
        assert!(verify.status.success(), "{}", output_text(&verify));
        let manifest: Value =
            serde_json::from_slice(&std::fs::read(exports[0].join("MANIFEST")).unwrap()).unwrap();
        assert_eq!(manifest["format"], "csv", "{manifest}");
        manifest["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["table"] == "hits")
            .map(|f| f["rows"].clone())
            .unwrap_or_else(|| panic!("no hits file in {manifest}"))
    });
    assert_eq!(rows, 25, "every stored hit is on the stick");
    // The daemon recorded the run for the dashboard's USB Takeout page.
    let runs = d.get("/api/v1/control/usb-takeouts").unwrap().json();
    let device = stick.device.rsplit('/').next().unwrap();
    assert!(
        runs[0]["ok"] == true
            && runs[0]["verified"] == true
            && runs[0]["label"] == "HV-TAKEOUT"
            && runs[0]["device"] == device
            && runs[0]["format"] == "csv",
        "{runs}"
    );

    // A failure half-way (a format the CLI refuses) leaves the stick
    // unmounted, says so, and exits non-zero.
    let out = takeout_usb(&stick.device, &d.data_dir, mnt.path(), "xlsx");
    let said = output_text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("FAILED"), "{said}");
    assert!(
        !mounted(mnt.path()),
        "the stick stayed mounted after a failure"
    );
}
