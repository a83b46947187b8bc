//! `hitvault import` into a running daemon while it takes hits: the import
//! goes through the daemon's writer; every acknowledged hit is stored once;
//! imported rows arrive with every column; those whose id the instance had
//! already given to its own hits arrive under new ids, the others keep
//! theirs; hits acknowledged after the import get ids above every imported
//! and new one; a second import changes nothing; imported sites take hits at
//! once.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Command, Output};

use hitvault_tests::{Daemon, Load, binary, sibling_binary};

const SITES: (&str, &str) = ("HITVAULT_SITES", "shop.test");

fn hv(args: &[&str], data: &Path) -> Output {
    Command::new(binary())
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .output()
        .expect("run hitvault")
}

fn ok(args: &[&str], data: &Path) -> String {
    hitvault_tests::succeeded(args, hv(args, data))
}

fn query(data: &Path, sql: &str) -> Vec<Vec<Option<String>>> {
    let s = hitvault_store::Store::open_read_only(data).expect("open the store");
    s.query_text(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// "imported DIR ...: 123 hits added (6 under new ids), 45 already present, ..."
fn counts(out: &str) -> (u64, u64, u64) {
    let num = |word: &str| -> u64 {
        let i = out
            .find(word)
            .unwrap_or_else(|| panic!("{word:?} in {out}"));
        out[..i].split_whitespace().last().unwrap().parse().unwrap()
    };
    let renumbered = out
        .split_once("hits added (")
        .and_then(|(_, r)| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no renumbered count in {out}"))
        .parse()
        .unwrap();
    (num("hits added"), num("already present"), renumbered)
}

#[test]
fn import_through_a_running_daemon_under_ingest() {
    let root = tempfile::tempdir().unwrap();
    let src = root.path().join("src");
    let out = Command::new(sibling_binary("hv-seed"))
        .args(["--data-dir", src.to_str().unwrap()])
        .args(["--hits", "20000", "--sites", "3", "--days", "30"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let takeout = root.path().join("takeout");
    ok(
        &[
            "takeout",
            "--to",
            takeout.to_str().unwrap(),
            "--format",
            "parquet",
        ],
        &src,
    );

    let d = Daemon::start(&[SITES]);
    let load = Load::start(&d, "a");
    load.wait_for(300);
    let out = ok(&["import", takeout.to_str().unwrap()], &d.data_dir);
    assert!(out.contains("through the running daemon"), "{out}");
    let (added, present, renumbered) = counts(&out);
    let at_import = load.acked().len();
    load.wait_for(at_import + 300);
    let again = ok(&["import", takeout.to_str().unwrap()], &d.data_dir);
    assert_eq!(
        counts(&again),
        (0, 20_000, 0),
        "a second import changes nothing"
    );
    let acked = load.finish();
    // An imported site takes hits at once.
    let r = d.beacon(
        "/api/collect",
        r#"{"n":"pageview","u":"https://site01.test/after-import"}"#,
    );
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let s = d.stop();

    let local: HashMap<String, (u64, u64)> = s
        .query("SELECT path, count(*), max(id) FROM hits_v WHERE site = 'shop.test' GROUP BY path")
        .into_iter()
        .map(|r| (r[0].clone(), (r[1].parse().unwrap(), r[2].parse().unwrap())))
        .collect();
    for p in &acked {
        assert_eq!(local.get(p).map(|v| v.0), Some(1), "acknowledged hit {p}");
    }
    assert_eq!(
        local.len(),
        acked.len(),
        "nothing unacknowledged stored twice"
    );
    assert!(
        acked[at_import..].iter().all(|p| local[p].1 > 20_000),
        "hits acknowledged after the import are numbered above the imported ids"
    );
    assert_eq!(
        s.count("SELECT count(*) - count(DISTINCT id) FROM hits"),
        0,
        "ids are unique"
    );
    // Every imported row arrived. Those whose id the target had already
    // given to its own hits came under new ids, above every imported one;
    // the others kept theirs. Every column but the id is the source's.
    let taken: HashSet<u64> = local
        .values()
        .map(|v| v.1)
        .filter(|id| *id <= 20_000)
        .collect();
    assert!(!taken.is_empty(), "the target's own hits took imported ids");
    assert_eq!(
        (added, present, renumbered),
        (20_000, 0, taken.len() as u64),
        "{out}"
    );
    let imported = "site <> 'shop.test' AND path <> '/after-import'";
    let cols = "SELECT * EXCLUDE (id) FROM hits_v";
    let got = query(
        &s.data_dir,
        &format!("{cols} WHERE {imported} ORDER BY ALL"),
    );
    let want = query(&src, &format!("{cols} ORDER BY ALL"));
    assert_eq!(got.len(), 20_000);
    assert_eq!(got, want, "imported hits, every column");
    let taken_ids = taken
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(
        query(
            &s.data_dir,
            &format!("SELECT * FROM hits_v WHERE {imported} AND id <= 20000 ORDER BY id")
        ),
        query(
            &src,
            &format!("SELECT * FROM hits_v WHERE id NOT IN ({taken_ids}) ORDER BY id")
        ),
        "ids kept where the target had not used them"
    );
    let new_ids = query(
        &s.data_dir,
        &format!("SELECT min(id), max(id), count(*) FROM hits_v WHERE {imported} AND id > 20000"),
    );
    let n = |i: usize| -> u64 { new_ids[0][i].as_deref().unwrap().parse().unwrap() };
    assert_eq!(n(2), renumbered, "new ids, above every imported one");
    assert!(
        acked[at_import..].iter().all(|p| local[p].1 > n(1)),
        "hits acknowledged after the import are numbered above the new ids too"
    );
    // The ids reserved for new ones were as many as the target had used
    // (at most every hit acknowledged), not one per imported id.
    let first_after = acked[at_import..].iter().map(|p| local[p].1).min().unwrap();
    assert!(
        first_after <= 20_000 + acked.len() as u64 + 1,
        "first id after the import {first_after}, {} hits acknowledged in all",
        acked.len()
    );
    let props = "SELECT h.site, h.ts, h.visitor, h.path, p.key, p.value \
                 FROM props_v p JOIN hits_v h ON h.id = p.id";
    assert_eq!(
        query(
            &s.data_dir,
            &format!("{props} WHERE h.site <> 'shop.test' ORDER BY ALL")
        ),
        query(&src, &format!("{props} ORDER BY ALL")),
        "imported props, with their hits"
    );
}
