use super::*;
use hitvault_core::{Device, Hit, Kind, Utm};

pub(crate) fn hit(site: &str, ts_ms: i64, path: &str) -> Hit {
    Hit {
        ts_ms,
        site: site.into(),
        kind: Kind::Pageview,
        name: "pageview".into(),
        path: path.into(),
        referrer: String::new(),
        source: String::new(),
        utm: Utm::default(),
        browser: "Firefox".into(),
        browser_version: "128".into(),
        os: "Linux".into(),
        os_version: String::new(),
        device: Device::Desktop,
        country: "FR".into(),
        language: "fr-FR".into(),
        screen_width: 1280,
        visitor: 42,
        props: vec![],
    }
}

fn open(dir: &Path) -> Store {
    Store::open(dir, &StoreOptions::default()).expect("open store")
}

#[test]
fn migrations_apply_once_and_record_version() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    let s = open(dir.path());
    let rows = s
        .query_text("SELECT version, name FROM schema_migrations ORDER BY version")
        .unwrap();
    assert_eq!(
        rows,
        vec![
            vec![Some("1".into()), Some("initial".into())],
            vec![Some("2".into()), Some("goals_funnels_rollups".into())],
            vec![Some("3".into()), Some("imported".into())],
            vec![Some("4".into()), Some("engagements".into())],
            vec![Some("5".into()), Some("sessions".into())],
            vec![Some("6".into()), Some("cluster".into())],
        ]
    );
    assert_eq!(s.committed_seq().unwrap(), 0);
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    s.conn
        .execute_batch("INSERT INTO schema_migrations VALUES (999, 'future', now())")
        .unwrap();
    drop(s);
    match Store::open(dir.path(), &StoreOptions::default()) {
        Err(OpenError::TooNew { found: 999, .. }) => {}
        other => panic!("expected TooNew, got {other:?}"),
    }
}

#[test]
fn append_stores_rows_props_and_position_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path());
    s.upsert_site("example.com", &["www.example.com".into()], "config")
        .unwrap();
    let mut e = hit("example.com", 1_700_000_000_000, "/buy");
    e.kind = Kind::Event;
    e.name = "Signup".into();
    e.props = vec![("plan".into(), "pro".into()), ("seats".into(), "3".into())];
    e.referrer = String::new();
    let batch = vec![(1, hit("example.com", 1_700_000_000_000, "/")), (2, e)];
    let stats = s.append(&batch, 2).unwrap();
    assert_eq!(
        stats,
        AppendStats {
            hits: 2,
            props: 2,
            ..Default::default()
        }
    );
    assert_eq!(s.committed_seq().unwrap(), 2);
    let rows = s
        .query_text("SELECT id, site, ts, kind, name, path, referrer, device, country, screen_width FROM hits_v ORDER BY id")
        .unwrap();
    assert_eq!(rows[0][1].as_deref(), Some("example.com"));
    assert_eq!(rows[0][2].as_deref(), Some("2023-11-14 22:13:20+00"));
    assert_eq!(rows[0][3].as_deref(), Some("pageview"));
    assert_eq!(rows[0][6], None, "empty referrer is stored as NULL");
    assert_eq!(rows[0][7].as_deref(), Some("desktop"));
    assert_eq!(rows[1][4].as_deref(), Some("Signup"));
    assert_eq!(rows[1][3].as_deref(), Some("event"));
    let props = s
        .query_text("SELECT id, key, value FROM props_v ORDER BY key")
        .unwrap();
    assert_eq!(props.len(), 2);
    assert_eq!(
        props[0],
        vec![Some("2".into()), Some("plan".into()), Some("pro".into())]
    );
    assert_eq!(s.max_hit_id().unwrap(), 2);
}

#[test]
fn stale_batch_is_refused_and_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path());
    s.upsert_site("example.com", &[], "config").unwrap();
    s.append(&[(1, hit("example.com", 0, "/"))], 1).unwrap();
    match s.append(&[(1, hit("example.com", 0, "/"))], 1) {
        Err(AppendError::Stale {
            batch_end: 1,
            committed: 1,
        }) => {}
        other => panic!("expected Stale, got {other:?}"),
    }
    assert_eq!(s.hit_count().unwrap(), 1);
}

#[test]
fn unknown_site_is_skipped_but_position_advances() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path());
    s.upsert_site("a.test", &[], "config").unwrap();
    let stats = s
        .append(
            &[(1, hit("a.test", 0, "/")), (2, hit("gone.test", 0, "/"))],
            2,
        )
        .unwrap();
    assert_eq!(stats.unknown_site, 1);
    assert_eq!(s.hit_count().unwrap(), 1);
    assert_eq!(s.committed_seq().unwrap(), 2);
}

#[test]
fn sites_upsert_rules() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path());
    let a = s.upsert_site("a.test", &[], "runtime").unwrap();
    assert_eq!(a.id, 1);
    assert!(matches!(
        s.upsert_site("a.test", &[], "runtime"),
        Err(QueryError::SiteExists(_))
    ));
    let b = s
        .upsert_site("b.test", &["www.b.test".into()], "config")
        .unwrap();
    assert_eq!(b.aliases, vec!["www.b.test".to_string()]);
    let b2 = s
        .upsert_site("b.test", &["m.b.test".into(), "b2.test".into()], "config")
        .unwrap();
    assert_eq!(b2.id, b.id);
    assert_eq!(
        b2.aliases,
        vec!["m.b.test".to_string(), "b2.test".to_string()]
    );
    assert_eq!(s.sites().unwrap().len(), 2);
}

#[test]
fn a_hit_appended_by_one_connection_is_seen_after_reopen_read_only() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = open(dir.path());
        s.upsert_site("a.test", &[], "config").unwrap();
        s.append(&[(7, hit("a.test", 0, "/x"))], 7).unwrap();
        s.checkpoint().unwrap();
    }
    let ro = Store::open_read_only(dir.path()).unwrap();
    assert_eq!(ro.hit_count().unwrap(), 1);
    assert_eq!(ro.committed_seq().unwrap(), 7);
    assert!(ro.disk_bytes() > 0);
}

/// A snapshot taken while another connection keeps appending holds the state
/// of one commit: ids 1..=committed_seq exactly, with their props, the sites
/// and the views, and the figures it reports are the copy's.
#[test]
fn snapshot_during_appends_is_one_consistent_commit() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path());
    s.upsert_site("shop.test", &[], "config").unwrap();
    let mut next = 1u64;
    let mut batch = move |s: &mut Store, n: u64| {
        let hits: Vec<(u64, Hit)> = (next..next + n)
            .map(|id| {
                let mut h = hit(
                    "shop.test",
                    1_700_000_000_000 + id as i64,
                    &format!("/{id}"),
                );
                h.props = vec![("n".into(), id.to_string())];
                (id, h)
            })
            .collect();
        next += n;
        s.append(&hits, next - 1).unwrap();
    };
    for _ in 0..20 {
        batch(&mut s, 500);
    }
    let reader = s.reader().unwrap();
    let out = dir.path().join("snap");
    std::fs::create_dir(&out).unwrap();
    let file = out.join(DB_FILE);
    let writer = std::thread::spawn(move || {
        for _ in 0..40 {
            batch(&mut s, 250);
        }
        s
    });
    let info = reader.snapshot(&file).unwrap();
    let s = writer.join().unwrap();
    assert!(
        reader.snapshot(&file).is_err(),
        "an existing file is never overwritten"
    );
    drop(reader);
    assert_eq!(s.hit_count().unwrap(), 20_000);
    assert!(info.committed_seq >= 10_000, "{info:?}");
    assert_eq!(info.hits, info.committed_seq);
    assert_eq!(info.props, info.hits);
    assert_eq!(info.max_hit_id, info.committed_seq);
    assert_eq!(info.sites, 1);
    assert_eq!(info.schema_version, SCHEMA_VERSION);
    assert!(!out.join("hitvault.duckdb.wal").exists());
    let copy = Store::open_read_only(&out).unwrap();
    let q = |sql: &str| copy.query_text(sql).unwrap()[0][0].clone().unwrap();
    assert_eq!(
        q(
            "SELECT count(DISTINCT id) = count(*) AND min(id) = 1 AND max(id) = count(*) FROM hits_v"
        ),
        "true"
    );
    assert_eq!(
        q("SELECT count(*) FROM props_v WHERE value::UBIGINT = id"),
        info.hits.to_string()
    );
    assert_eq!(
        q("SELECT committed_seq FROM ingest_state"),
        info.committed_seq.to_string()
    );
    // The copy opens for writing too (migrations find it current).
    drop(copy);
    let w = Store::open(&out, &StoreOptions::default()).unwrap();
    assert_eq!(w.committed_seq().unwrap(), info.committed_seq);
}

#[test]
fn the_memory_limit_is_read_back_in_bytes() {
    let dir = tempfile::tempdir().unwrap();
    for (set, lo, hi) in [
        ("64MB", 60_000_000, 64_000_001),
        ("1GB", 950_000_000, 1_000_000_001),
        ("512MiB", 536_000_000, 536_870_913),
    ] {
        let s = Store::open(
            dir.path(),
            &StoreOptions {
                memory_limit: set.into(),
                ..StoreOptions::default()
            },
        )
        .unwrap();
        let b = s.memory_limit_bytes().unwrap().expect("understood");
        assert!((lo..hi).contains(&b), "{set}: {b}");
    }
    assert_eq!(
        super::parse_bytes("953.6 MiB").map(|b| b / 1_000_000),
        Some(999)
    );
    assert_eq!(super::parse_bytes("many"), None);
}

/// A cluster node far behind installs another node's snapshot: the copy
/// replaces everything but its own queue position, in one transaction, and
/// the store goes on appending with what it learned (the copy's sites).
#[test]
fn a_cluster_snapshot_installs_whole_and_keeps_the_nodes_queue_position() {
    let dir = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    let mut a = open(&a_dir);
    a.upsert_site("shop.test", &[], "config").unwrap();
    let hits: Vec<(u64, Hit)> = (1..=300u64)
        .map(|id| (id, hit("shop.test", 1_700_000_000_000 + id as i64, "/a")))
        .collect();
    let refs: Vec<_> = hits.iter().map(|(s, h)| (*s, h.as_ref())).collect();
    a.append_replicated(&refs, &[], 300, b"state of node a")
        .unwrap();
    let file = dir.path().join("snap.duckdb");
    let info = a.reader().unwrap().snapshot(&file).unwrap();
    assert_eq!(info.cluster_state.as_deref(), Some(&b"state of node a"[..]));

    // Node b is behind: another site, a few hits, its own queue's ids.
    let mut b = open(&b_dir);
    b.upsert_site("old.test", &[], "config").unwrap();
    let own = (2u64 << 48) + 7;
    let old: Vec<(u64, Hit)> = vec![(own, hit("old.test", 1_700_000_000_000, "/b"))];
    let refs: Vec<_> = old.iter().map(|(s, h)| (*s, h.as_ref())).collect();
    b.append_replicated(&refs, &[], own, b"state of node b")
        .unwrap();
    // A reader made before the install sees the new store after it.
    let reader = b.reader().unwrap();

    // A copy without a cluster state is refused, and nothing changes.
    let plain = dir.path().join("plain.duckdb");
    let mut c = open(&dir.path().join("c"));
    c.upsert_site("c.test", &[], "config").unwrap();
    c.reader().unwrap().snapshot(&plain).unwrap();
    assert!(matches!(b.install_copy(&plain), Err(InstallError::NoState)));
    assert_eq!(b.hit_count().unwrap(), 1);

    let state = b.install_copy(&file).unwrap();
    assert_eq!(state, b"state of node a");
    assert_eq!(b.cluster_state().unwrap().as_deref(), Some(&state[..]));
    assert_eq!(b.hit_count().unwrap(), 300);
    let sites: Vec<String> = b.sites().unwrap().into_iter().map(|s| s.hostname).collect();
    assert_eq!(sites, vec!["shop.test".to_owned()]);
    // Its queue position is its own, not node a's.
    assert_eq!(b.committed_seq().unwrap(), own);
    let seen: u64 = reader
        .conn
        .query_row("SELECT count(*) FROM hits", [], |r| r.get(0))
        .unwrap();
    assert_eq!(seen, 300);
    // It appends hits of the copy's site at once.
    let more: Vec<(u64, Hit)> = vec![(own + 1, hit("shop.test", 1_700_000_100_000, "/b"))];
    let refs: Vec<_> = more.iter().map(|(s, h)| (*s, h.as_ref())).collect();
    let st = b.append_replicated(&refs, &[], own + 1, b"next").unwrap();
    assert_eq!(st.hits, 1);
    assert_eq!(b.hit_count().unwrap(), 301);
}
