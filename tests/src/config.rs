//! The binary's own view of its configuration, for tests that hold
//! something to it (the configuration reference, the Nix settings):
//! `hitvault check-config` of a given file, and every key a file may hold.

use std::collections::BTreeSet;
use std::process::{Command, Output};

use crate::binary;

/// Runs the binary with no `HITVAULT_*` variable but those in `env`.
pub fn hitvault_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(binary());
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("HITVAULT_")) {
        cmd.env_remove(k);
    }
    cmd.args(args).envs(env.iter().copied());
    cmd.output().expect("run hitvault")
}

/// `hitvault check-config` of a TOML file holding `toml`: its exit
/// status, stdout and stderr.
pub fn check_config(toml: &str, env: &[(&str, &str)]) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hitvault.toml");
    std::fs::write(&file, toml).unwrap();
    let out = hitvault_env(&["check-config", file.to_str().unwrap()], env);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The backticked names after "expected" in serde's unknown-field error:
/// the keys the refusing table accepts.
pub fn expected_keys(stderr: &str) -> Vec<String> {
    let (_, after) = stderr
        .split_once("expected")
        .unwrap_or_else(|| panic!("no list of expected keys in: {stderr}"));
    after
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// Every key a configuration file may hold, as the binary itself lists
/// them when it refuses an unknown one: `data_dir`, ..., `queue.max_bytes`.
pub fn file_keys() -> BTreeSet<String> {
    const NO_SUCH: &str = "no_such_key";
    let (ok, _, err) = check_config(&format!("{NO_SUCH} = 1\n"), &[]);
    assert!(!ok && err.contains(NO_SUCH), "unknown key accepted: {err}");
    let mut keys = BTreeSet::new();
    for top in expected_keys(&err) {
        // A table refuses an unknown key inside it and lists its own keys;
        // any other setting refuses the table itself.
        let (_, _, err) = check_config(&format!("[{top}]\n{NO_SUCH} = 1\n"), &[]);
        if err.contains(&format!("unknown field `{NO_SUCH}`")) {
            keys.extend(
                expected_keys(&err)
                    .into_iter()
                    .map(|k| format!("{top}.{k}")),
            );
        } else {
            keys.insert(top);
        }
    }
    keys
}
