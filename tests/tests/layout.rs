//! The shape of the source tree, checked from the files themselves:
//! inside every crate under `daemon/`, the files' imports form a DAG, and in
//! the binary crate the two rooms `cli/` and `daemon/` never import each
//! other (what they share lives in the leaves beside them).
//!
//! An import is a `crate::…` path (a `use` or a path in code, groups
//! `crate::{a, b::c}` included) or a `super::…` path, in non-test code:
//! `#[cfg(test)] mod` blocks, `tests.rs` and `*_tests.rs` files are left
//! out, and so are comments. A path names the longest module (file) it
//! starts with. The crate root (`lib.rs`, `main.rs`) declares and re-exports
//! modules, so its edges are left out, and so is a module's use of its own
//! ancestors (a parent declares its children).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is inside the workspace")
        .to_path_buf()
}

/// Module path (`a::b`; the root is the empty path) -> file, for one crate.
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    fn walk(dir: &Path, src: &Path, out: &mut BTreeMap<String, PathBuf>) {
        for e in std::fs::read_dir(dir).expect("read a source directory") {
            let p = e.expect("a directory entry").path();
            if p.is_dir() {
                walk(&p, src, out);
                continue;
            }
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if !name.ends_with(".rs") || name == "tests.rs" || name.ends_with("_tests.rs") {
                continue;
            }
            let rel = p.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(
                parts.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                parts.pop();
            }
            if parts.first().map(String::as_str) == Some("bin") {
                continue; // each bin is a crate of its own
            }
            out.insert(parts.join("::"), p);
        }
    }
    let mut out = BTreeMap::new();
    walk(src, src, &mut out);
    out
}

/// The text of a file without its test modules and comments.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("read a source file");
    let mut text = match text.find("#[cfg(test)]") {
        Some(i)
            if text[i..]
                .trim_start_matches("#[cfg(test)]")
                .trim_start()
                .starts_with("mod ") =>
        {
            text[..i].to_owned()
        }
        _ => text,
    };
    // Comments (line and doc comments; block comments are not used here).
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let cut = line.find("//").map_or(line, |i| &line[..i]);
        out.push_str(cut);
        out.push('\n');
    }
    text.clear();
    out
}

/// Every module path `text` reaches through `crate::` or `super::` paths,
/// spelled from the crate root (`super::` resolved against `module`).
fn paths(text: &str, module: &str) -> Vec<Vec<String>> {
    let segs: Vec<&str> = if module.is_empty() {
        vec![]
    } else {
        module.split("::").collect()
    };
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    for (start, base) in [("crate::", None), ("super::", Some(()))] {
        let mut from = 0;
        while let Some(i) = text[from..].find(start) {
            let at = from + i;
            from = at + start.len();
            // A whole word: not `my_crate::` or `hitvault_crate::`.
            if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
                continue;
            }
            let prefix: Vec<String> = match base {
                None => vec![],
                Some(()) => {
                    // `super` of a file module `a::b` is `a`; of `a/mod.rs`
                    // (module `a`) it is the root. Chains of `super::` too.
                    let mut up = 1;
                    let mut rest = &text[from..];
                    while let Some(r) = rest.strip_prefix("super::") {
                        up += 1;
                        rest = r;
                    }
                    from = text.len() - rest.len();
                    let keep = segs.len().saturating_sub(up);
                    segs[..keep].iter().map(|s| s.to_string()).collect()
                }
            };
            for tail in expand(&text[from..]) {
                let mut p = prefix.clone();
                p.extend(tail);
                out.push(p);
            }
        }
    }
    out
}

/// The paths that `rest` (what follows `crate::`) names: one, or one per
/// item of a `{…}` group (nested groups give their common prefix).
fn expand(rest: &str) -> Vec<Vec<String>> {
    let word = |s: &str| -> Vec<String> {
        let mut v = Vec::new();
        for seg in s.split("::") {
            let w: String = seg
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if w.is_empty() || w.len() != seg.len() {
                if !w.is_empty() {
                    v.push(w);
                }
                break;
            }
            v.push(w);
        }
        v
    };
    if let Some(group) = rest.strip_prefix('{') {
        let mut depth = 0;
        let mut items = Vec::new();
        let mut cur = String::new();
        for c in group.chars() {
            match c {
                '{' => {
                    depth += 1;
                    cur.push(c);
                }
                '}' if depth == 0 => break,
                '}' => {
                    depth -= 1;
                    cur.push(c);
                }
                ',' if depth == 0 => items.push(std::mem::take(&mut cur)),
                _ => cur.push(c),
            }
        }
        items.push(cur);
        items
            .iter()
            .map(|i| word(i.trim()))
            .filter(|p| !p.is_empty())
            .collect()
    } else {
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        vec![word(&rest[..end])]
    }
}

/// Crate -> module -> the modules it imports.
fn graphs() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let mut all = BTreeMap::new();
    let daemon = workspace().join("daemon");
    for e in std::fs::read_dir(&daemon).unwrap() {
        let src = e.unwrap().path().join("src");
        if !src.is_dir() {
            continue;
        }
        let crate_name = src.parent().unwrap().file_name().unwrap();
        let mods = modules(&src);
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (m, file) in &mods {
            let targets = edges.entry(m.clone()).or_default();
            if m.is_empty() {
                continue;
            }
            for p in paths(&code(file), m) {
                let Some(target) = (1..=p.len())
                    .rev()
                    .map(|k| p[..k].join("::"))
                    .find(|c| mods.contains_key(c))
                else {
                    continue;
                };
                let ancestor = m.starts_with(&format!("{target}::"));
                if target != *m && !ancestor {
                    targets.insert(target);
                }
            }
        }
        all.insert(crate_name.to_string_lossy().into_owned(), edges);
    }
    all
}

/// The circles of a graph (its strongly connected components of more than one).
fn circles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    // Kosaraju: finish order on the graph, then components on the reverse.
    fn visit(
        v: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        seen: &mut BTreeSet<String>,
        order: &mut Vec<String>,
    ) {
        if !seen.insert(v.to_owned()) {
            return;
        }
        for w in edges.get(v).into_iter().flatten() {
            visit(w, edges, seen, order);
        }
        order.push(v.to_owned());
    }
    let mut seen = BTreeSet::new();
    let mut order = Vec::new();
    for v in edges.keys() {
        visit(v, edges, &mut seen, &mut order);
    }
    let mut reverse: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (v, ws) in edges {
        for w in ws {
            reverse.entry(w.clone()).or_default().insert(v.clone());
        }
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for v in order.iter().rev() {
        let mut comp = Vec::new();
        visit(v, &reverse, &mut seen, &mut comp);
        if comp.len() > 1 {
            comp.sort();
            out.push(comp);
        }
    }
    out
}

#[test]
fn the_files_of_every_crate_import_each_other_without_a_circle() {
    let graphs = graphs();
    assert!(
        graphs.contains_key("hitvault") && graphs.contains_key("store"),
        "crates found: {:?}",
        graphs.keys()
    );
    let mut found = Vec::new();
    for (krate, edges) in &graphs {
        let n: usize = edges.values().map(BTreeSet::len).sum();
        println!("{krate}: {} files, {n} import edges", edges.len());
        for c in circles(edges) {
            found.push(format!("{krate}: {}", c.join(" <-> ")));
        }
    }
    assert!(found.is_empty(), "circles:\n{}", found.join("\n"));
}

#[test]
fn the_cli_and_the_daemon_never_import_each_other() {
    let graphs = graphs();
    let bin = &graphs["hitvault"];
    let room = |m: &str, r: &str| m == r || m.starts_with(&format!("{r}::"));
    assert!(
        bin.keys().any(|m| room(m, "cli")) && bin.keys().any(|m| room(m, "daemon")),
        "the binary crate has no cli/ or daemon/ room: {:?}",
        bin.keys()
    );
    let mut wrong = Vec::new();
    for (m, targets) in bin {
        for t in targets {
            if (room(m, "cli") && room(t, "daemon")) || (room(m, "daemon") && room(t, "cli")) {
                wrong.push(format!("{m} -> {t}"));
            }
        }
    }
    assert!(wrong.is_empty(), "imports across the rooms: {wrong:?}");
}

/// The checker itself: a circle and a crossing it must see.
#[test]
fn the_import_checker_sees_circles_groups_and_super_paths() {
    let text = "use crate::{a::X, b::{c::Y, Z}};\nfn f() { super::sib::g(); crate::d::h() }\n// crate::e::nope\n";
    let got = paths(&code_of(text), "x::y");
    let names: Vec<String> = got.iter().map(|p| p.join("::")).collect();
    assert_eq!(names, ["a::X", "b", "d::h", "x::sib::g"], "{names:?}");
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("c".into());
    g.entry("c".into()).or_default().insert("a".into());
    g.entry("d".into()).or_default().insert("a".into());
    assert_eq!(circles(&g), vec![vec!["a", "b", "c"]]);
}

fn code_of(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.rs");
    std::fs::write(&p, text).unwrap();
    code(&p)
}
