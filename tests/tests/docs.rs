//! Tidy tests: the docs say what the code does. Each reads what a doc
//! describes at test time (the source tree, the binary's own answers, a
//! running daemon, the policy file) and fails when the doc has drifted from
//! it, so a change that forgets its doc is caught here rather than by a
//! reader.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use hitvault_tests::config::{check_config, file_keys};
use hitvault_tests::{Daemon, hitvault_ok};

/// The repository's root (the tests crate sits directly in it).
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_path_buf()
}

fn read(rel: &str) -> String {
    let p = repo().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The names of the entries directly in `dir`, each with whether it is a directory.
fn entries(dir: &Path) -> Vec<(String, bool)> {
    let mut v: Vec<(String, bool)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            (name, e.file_type().unwrap().is_dir())
        })
        .collect();
    v.sort();
    v
}

/// Every Markdown file of the repository, relative to its root (hidden
/// directories and build output left out).
fn markdown_files() -> Vec<PathBuf> {
    fn walk(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
        for (name, is_dir) in entries(&root.join(rel)) {
            if name.starts_with('.') || name == "target" {
                continue;
            }
            let p = rel.join(&name);
            if is_dir {
                walk(root, &p, out);
            } else if name.ends_with(".md") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&repo(), Path::new(""), &mut out);
    out
}

/// The part of `doc` under the heading that contains `needle`, up to the
/// next heading of the same or a higher level.
fn section<'a>(doc: &'a str, needle: &str) -> Option<&'a str> {
    let mut start = None;
    let mut level = 0;
    let mut offset = 0;
    for line in doc.split_inclusive('\n') {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        let heading = hashes > 0 && line[hashes..].starts_with(' ');
        match start {
            None if heading && line.contains(needle) => {
                start = Some(offset);
                level = hashes;
            }
            Some(s) if heading && hashes <= level => return Some(&doc[s..offset]),
            _ => {}
        }
        offset += line.len();
    }
    start.map(|s| &doc[s..])
}

/// Whether `text` names `name` as code: in backticks, or as the last part
/// of a backticked path (`` `daemon/hitvault/src/main.rs` `` names `main.rs`).
fn names_code(text: &str, name: &str) -> bool {
    text.match_indices(&format!("{name}`"))
        .any(|(i, _)| i > 0 && matches!(text.as_bytes()[i - 1], b'`' | b'/'))
}

/// The maximal runs of `[A-Za-z0-9_]` in `text` that start with `prefix`.
fn words_with_prefix(text: &str, prefix: &str) -> BTreeSet<String> {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.split(|c: char| !is_word(c))
        .filter(|w| w.starts_with(prefix) && w.len() > prefix.len())
        .map(str::to_owned)
        .collect()
}

/// The names a Cargo manifest gives its `[[bin]]` targets.
fn bin_targets(manifest: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_bin = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if in_bin && let Some(v) = line.strip_prefix("name") {
            let v = v.trim_start().trim_start_matches('=').trim();
            names.push(v.trim_matches('"').to_owned());
        }
    }
    names
}

#[test]
fn architecture_names_every_crate_every_bench_binary_and_every_room_of_the_binary() {
    let arch = read("ARCHITECTURE.md");
    let daemon = repo().join("daemon");
    let mut missing = Vec::new();

    let crates: Vec<String> = entries(&daemon)
        .into_iter()
        .filter(|(name, is_dir)| *is_dir && daemon.join(name).join("Cargo.toml").exists())
        .map(|(name, _)| name)
        .collect();
    assert!(crates.contains(&"hitvault".to_owned()), "{crates:?}");
    for name in &crates {
        if section(&arch, &format!("`daemon/{name}`")).is_none() {
            missing.push(format!("a `### `daemon/{name}`` heading"));
        }
    }

    let bench = daemon.join("bench");
    let mut bins = bin_targets(&read("daemon/bench/Cargo.toml"));
    let bin_dir = bench.join("src/bin");
    if bin_dir.exists() {
        for (name, is_dir) in entries(&bin_dir) {
            match name.strip_suffix(".rs") {
                Some(stem) if !is_dir => bins.push(stem.to_owned()),
                _ if is_dir => bins.push(name),
                _ => {}
            }
        }
    }
    assert!(!bins.is_empty(), "daemon/bench has no binaries");
    let bench_text = section(&arch, "`daemon/bench`").unwrap_or_default();
    for bin in bins {
        if !names_code(bench_text, &bin) {
            missing.push(format!("`{bin}` under `daemon/bench`"));
        }
    }

    // The binary crate's rooms: every file and directory directly in its src/.
    let bin_text = section(&arch, "`daemon/hitvault`").unwrap_or_default();
    for (name, is_dir) in entries(&daemon.join("hitvault/src")) {
        let named = if is_dir {
            names_code(bin_text, &format!("{name}/"))
        } else {
            !name.ends_with(".rs") || names_code(bin_text, &name)
        };
        if !named {
            let shown = if is_dir { format!("{name}/") } else { name };
            missing.push(format!("`{shown}` under `daemon/hitvault`"));
        }
    }

    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md does not name what the tree holds; add:\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn the_configuration_reference_lists_exactly_the_settings_the_binary_reads() {
    let doc = read("docs/reference/configuration.md");

    // Environment: the binary names every variable it knows when it refuses one.
    let (ok, _, err) = check_config("", &[("HITVAULT_NO_SUCH", "1")]);
    assert!(!ok, "an unknown HITVAULT_ variable was accepted");
    let (_, known) = err
        .split_once("known:")
        .unwrap_or_else(|| panic!("no list of known variables in: {err}"));
    let known = words_with_prefix(known, "HITVAULT_");
    assert!(known.contains("HITVAULT_DATA_DIR"), "{err}");
    let documented = words_with_prefix(&doc, "HITVAULT_");
    assert_eq!(
        documented.difference(&known).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "variables the configuration reference names but the binary does not know"
    );
    assert_eq!(
        known.difference(&documented).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "variables the binary reads but the configuration reference does not name"
    );

    // File keys: the first column of the settings table.
    let table = section(&doc, "Settings").expect("a Settings section");
    let rows: BTreeSet<String> = table
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .map(|l| l.split('`').next().unwrap().to_owned())
        .collect();
    assert_eq!(
        rows,
        file_keys(),
        "the settings table's file keys differ from those the binary accepts"
    );

    // The effective configuration: every key it prints has its row, and
    // every row is a key it prints. The JSON may be flat (`queue_max_bytes`)
    // or nested by table (`queue.max_bytes`); a table's key may also stand
    // alone in it (`retention.archive_dir` as `archive_dir`).
    let (ok, json, err) = check_config("", &[]);
    assert!(ok, "check-config of an empty file failed: {err}");
    let json: serde_json::Value = serde_json::from_str(&json).expect("check-config prints JSON");
    let mut printed = BTreeSet::new();
    for (k, v) in json.as_object().expect("a JSON object") {
        let is_table = rows.iter().any(|r| r.starts_with(&format!("{k}.")));
        match v.as_object() {
            Some(fields) if is_table => {
                printed.extend(fields.keys().map(|f| format!("{k}.{f}")));
            }
            _ => {
                printed.insert(k.clone());
            }
        }
    }
    let same = |row: &str, key: &str| {
        row == key || row.replace('.', "_") == key || row.ends_with(&format!(".{key}"))
    };
    let unprinted: Vec<_> = rows
        .iter()
        .filter(|r| !printed.iter().any(|k| same(r, k)))
        .collect();
    let undocumented: Vec<_> = printed
        .iter()
        .filter(|k| !rows.iter().any(|r| same(r, k)))
        .collect();
    assert!(
        unprinted.is_empty() && undocumented.is_empty(),
        "settings table rows missing from `check-config`'s output: {unprinted:?}; \
         keys of the output the table lacks: {undocumented:?}"
    );
}

#[test]
fn the_metrics_reference_lists_exactly_the_metrics_the_daemon_serves() {
    let d = Daemon::start(&[]);
    let reply = d.get("/metrics").expect("GET /metrics");
    assert_eq!(reply.status, 200);
    let text = String::from_utf8(reply.body).unwrap();
    let served: BTreeMap<String, String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let mut parts = l.split_whitespace();
            let name = parts.next().unwrap().to_owned();
            (name, parts.next().unwrap_or_default().to_owned())
        })
        .collect();
    assert!(
        served.contains_key("hitvault_hits_accepted_total"),
        "{text}"
    );

    let doc = read("docs/reference/metrics.md");
    let documented: BTreeMap<String, String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `hitvault_"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let name = format!("hitvault_{}", cells[0].trim_end_matches('`'));
            (name, cells.get(1).copied().unwrap_or_default().to_owned())
        })
        .collect();
    assert_eq!(
        documented, served,
        "docs/reference/metrics.md (name: type) differs from what GET /metrics serves"
    );
    let named = words_with_prefix(&doc, "hitvault_");
    let unknown: Vec<_> = named.iter().filter(|n| !served.contains_key(*n)).collect();
    assert!(
        unknown.is_empty(),
        "docs/reference/metrics.md names metrics the daemon does not serve: {unknown:?}"
    );
}

/// Number words a count could hide in, which this test could not check.
const NUMBER_WORDS: [&str; 20] = [
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
];

#[test]
fn counts_of_system_calls_stated_in_the_docs_are_those_of_the_policy() {
    let policy: serde_json::Value =
        serde_json::from_str(&read("policy/seccomp.json")).expect("policy/seccomp.json");
    let allowed = policy["allow"]["filter"]
        .as_array()
        .expect("an allow filter")
        .len();
    let mut wrong = Vec::new();
    let mut stated = 0;
    for file in markdown_files() {
        let text = read(file.to_str().unwrap());
        // One line of words, so that a count broken over two lines is seen.
        let words: Vec<&str> = text.split_whitespace().collect();
        for (i, pair) in words.windows(2).enumerate() {
            let unit = pair[0] == "syscalls"
                || pair[0].starts_with("syscalls")
                || (pair[0] == "system" && pair[1].starts_with("calls"));
            if !unit || i == 0 {
                continue;
            }
            let before = words[i - 1].trim_start_matches(['(', '`', '*']);
            let digits = before.replace(',', "");
            if let Ok(n) = digits.parse::<usize>() {
                stated += 1;
                if n != allowed {
                    wrong.push(format!("{}: \"{before} {}\"", file.display(), pair[0]));
                }
            } else if NUMBER_WORDS.contains(&before.to_lowercase().as_str()) {
                wrong.push(format!(
                    "{}: \"{before} {}\" (write a count in digits, so that this test checks it)",
                    file.display(),
                    pair[0]
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "policy/seccomp.json allows {allowed} system calls, but the docs say otherwise \
         ({stated} stated counts):\n  {}",
        wrong.join("\n  ")
    );
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces
/// to hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(doc: &str) -> BTreeSet<String> {
    let mut in_code = false;
    let mut out = BTreeSet::new();
    for line in doc.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            out.insert(anchor(line.trim_start_matches('#')));
        }
    }
    out
}

#[test]
fn relative_links_between_the_docs_resolve() {
    let root = repo();
    let mut broken = Vec::new();
    for file in markdown_files() {
        let text = read(file.to_str().unwrap());
        for (i, _) in text.match_indices("](") {
            let rest = &text[i + 2..];
            let Some(end) = rest.find(')') else { continue };
            let target = &rest[..end];
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, fragment) = target.split_once('#').unwrap_or((target, ""));
            let resolved = if path.is_empty() {
                root.join(&file)
            } else {
                root.join(file.parent().unwrap()).join(path)
            };
            if !resolved.exists() {
                broken.push(format!("{}: {target} (no such file)", file.display()));
            } else if !fragment.is_empty()
                && resolved.extension().is_some_and(|e| e == "md")
                && !anchors(&std::fs::read_to_string(&resolved).unwrap()).contains(fragment)
            {
                broken.push(format!("{}: {target} (no such heading)", file.display()));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "broken links:\n  {}",
        broken.join("\n  ")
    );
}

#[test]
fn the_docs_name_no_path_of_one_machine() {
    let mut found = Vec::new();
    for file in markdown_files() {
        let text = read(file.to_str().unwrap());
        for needle in ["/work/", "/root/", "/home/"] {
            if text.contains(needle) {
                found.push(format!("{}: {needle}", file.display()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "machine paths in docs:\n  {}",
        found.join("\n  ")
    );
}

#[test]
fn the_takeout_format_reference_states_the_version_the_binary_writes() {
    let d = Daemon::start(&[("HITVAULT_SITES", "docs.test")]);
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("takeout");
    hitvault_ok(&[
        "--data-dir",
        d.data_dir.to_str().unwrap(),
        "takeout",
        "--to",
        dir.to_str().unwrap(),
    ]);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("MANIFEST")).unwrap()).unwrap();
    let version = manifest["takeout_version"]
        .as_u64()
        .expect("takeout_version");
    let doc = read("docs/reference/takeout-format.md");
    assert!(
        doc.contains(&format!("`takeout_version` is {version}.")),
        "docs/reference/takeout-format.md must say \"`takeout_version` is {version}.\""
    );
}

#[test]
fn the_http_reference_lists_exactly_the_refusal_codes_the_daemon_answers_with() {
    let d = Daemon::start(&[]);
    let reply = d
        .get("/api/v1/openapi.json")
        .expect("GET /api/v1/openapi.json");
    assert_eq!(reply.status, 200);
    let openapi: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    let served: BTreeSet<String> = openapi["components"]["schemas"]["Error"]["properties"]["error"]
        ["enum"]
        .as_array()
        .expect("the Error schema's list of codes")
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert!(served.contains("bad_parameter"), "{served:?}");

    let doc = read("docs/reference/http-api.md");
    let table = section(&doc, "Refusals").expect("a Refusals section");
    let documented: BTreeSet<String> = table
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .map(|l| l.split('`').next().unwrap().to_owned())
        .collect();
    assert_eq!(
        documented, served,
        "the Refusals table of docs/reference/http-api.md differs from the codes of the \
         OpenAPI document the daemon serves"
    );
}
