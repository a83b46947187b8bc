//! Retention, black box: `hitvault prune --dry-run` shows per site what
//! would go; `hitvault prune` (with no daemon, and through a running one)
//! archives exactly the expired rows as a verifiable Parquet Takeout and
//! then deletes exactly those; the daemon prunes by itself at start; an
//! archive that cannot be written deletes nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use hitvault_tests::{Daemon, binary};

fn hv(args: &[&str], data: &Path, config: Option<&Path>) -> Output {
    let mut c = Command::new(binary());
    c.args(args).arg("--data-dir").arg(data);
    if let Some(f) = config {
        c.arg("--config").arg(f);
    }
    c.output().expect("run hitvault")
}

fn ok(args: &[&str], data: &Path, config: Option<&Path>) -> String {
    hitvault_tests::succeeded(args, hv(args, data, config))
}

/// Microseconds since the epoch, `days` ago (DuckDB here has no ICU, so
/// no TIMESTAMPTZ arithmetic in SQL).
fn days_ago_us(days: f64) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    now - (days * 86_400e6) as i64
}

fn seed(data: &Path) {
    hitvault_tests::seed(data, 20_000, 3, 60);
}

/// One line of `hitvault prune` output.
#[derive(Debug)]
struct Line {
    site: String,
    cutoff: String,
    hits: u64,
    props: u64,
    archive: Option<PathBuf>,
    /// The oldest expired hit.
    first: Option<String>,
}

fn parse(out: &str) -> Vec<Line> {
    out.lines()
        .map(|l| {
            let t: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(
                (t[2], t[3], t[6], t[8]),
                ("days", "before", "hits", "props"),
                "{l}"
            );
            Line {
                site: t[0].into(),
                cutoff: t[4].into(),
                hits: t[5].parse().unwrap(),
                props: t[7].parse().unwrap(),
                archive: l.split_once("-> ").map(|(_, p)| PathBuf::from(p.trim())),
                first: l
                    .split_once(" .. ")
                    .and_then(|(a, _)| a.split_whitespace().last())
                    .map(str::to_owned),
            }
        })
        .collect()
}

fn query(data: &Path, sql: &str) -> Vec<Vec<Option<String>>> {
    let s = hitvault_store::Store::open_read_only(data).expect("open the store");
    s.query_text(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn count(data: &Path, sql: &str) -> u64 {
    query(data, sql)[0][0].as_deref().unwrap().parse().unwrap()
}

/// Every column of a site's hits before `cutoff`, by id.
fn rows_before(data: &Path, site: &str, cutoff: &str) -> Vec<Vec<Option<String>>> {
    query(
        data,
        &format!(
            "SELECT * FROM hits_v WHERE site = '{site}' AND ts < '{cutoff}'::TIMESTAMPTZ ORDER BY id"
        ),
    )
}

#[test]
fn prune_offline_archives_exactly_the_expired_rows_then_deletes_them() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    seed(&data);
    let cfg = root.path().join("hv.toml");
    std::fs::write(
        &cfg,
        "[retention]\ndays = 30\n[retention.sites]\n\"site01.test\" = 0\n\"site02.test\" = 10\n",
    )
    .unwrap();
    let total = count(&data, "SELECT count(*) FROM hits");

    let dry = parse(&ok(&["prune", "--dry-run"], &data, Some(&cfg)));
    let sites: Vec<&str> = dry.iter().map(|l| l.site.as_str()).collect();
    assert_eq!(
        sites,
        ["site02.test", "site03.test"],
        "site01 keeps forever"
    );
    for l in &dry {
        let expect = count(
            &data,
            &format!(
                "SELECT count(*) FROM hits_v WHERE site = '{}' AND ts < '{}'::TIMESTAMPTZ",
                l.site, l.cutoff
            ),
        );
        assert_eq!(l.hits, expect, "{l:?}");
        assert!(l.hits > 0, "the seed spans 60 days: {l:?}");
        assert!(l.archive.is_none());
    }
    assert_eq!(
        count(&data, "SELECT count(*) FROM hits"),
        total,
        "a dry run deletes nothing"
    );

    // An archive dir that cannot be made: nothing is deleted.
    let blocker = root.path().join("not-a-dir");
    std::fs::write(&blocker, "x").unwrap();
    let bad_cfg = root.path().join("bad.toml");
    std::fs::write(
        &bad_cfg,
        format!(
            "[retention]\ndays = 30\narchive_dir = \"{}\"\n",
            blocker.display()
        ),
    )
    .unwrap();
    let out = hv(&["prune"], &data, Some(&bad_cfg));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nothing deleted"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(count(&data, "SELECT count(*) FROM hits"), total);

    let before: Vec<_> = dry
        .iter()
        .map(|l| rows_before(&data, &l.site, &l.cutoff))
        .collect();
    let done = parse(&ok(&["prune"], &data, Some(&cfg)));
    assert_eq!(done.len(), 2);
    let mut gone = 0;
    for l in &done {
        let archive = l.archive.clone().expect("an archive per site");
        assert!(
            archive.starts_with(data.join("archive").join(&l.site)),
            "{archive:?}"
        );
        ok(
            &["takeout", "verify", archive.to_str().unwrap()],
            &data,
            None,
        );
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(archive.join("MANIFEST")).unwrap()).unwrap();
        assert_eq!(m["format"], "parquet");
        assert_eq!(m["filter"]["until"].as_str(), Some(l.cutoff.as_str()));
        assert_eq!(m["filter"]["sites"][0].as_str(), Some(l.site.as_str()));
        assert_eq!(
            count(
                &data,
                &format!(
                    "SELECT count(*) FROM hits_v WHERE site = '{}' AND ts < '{}'::TIMESTAMPTZ",
                    l.site, l.cutoff
                )
            ),
            0,
            "expired hits of {} deleted",
            l.site
        );
        // The archive holds exactly what was deleted, every column: import it
        // into an empty instance and compare.
        let fresh = root.path().join(format!("fresh-{}", l.site));
        ok(&["import", archive.to_str().unwrap()], &fresh, None);
        let dry_line = dry.iter().position(|d| d.site == l.site).unwrap();
        assert_eq!(count(&fresh, "SELECT count(*) FROM hits"), l.hits);
        // The prune ran a moment after the dry run: its cutoff is a little later.
        assert!(l.hits >= dry[dry_line].hits);
        let archived = query(
            &fresh,
            &format!(
                "SELECT * FROM hits_v WHERE ts < '{}'::TIMESTAMPTZ ORDER BY id",
                dry[dry_line].cutoff
            ),
        );
        assert_eq!(
            archived, before[dry_line],
            "the archive's rows are the deleted rows"
        );
        assert_eq!(count(&fresh, "SELECT count(*) FROM hit_props"), l.props);
        gone += l.hits;
    }
    assert_eq!(count(&data, "SELECT count(*) FROM hits"), total - gone);
    assert_eq!(
        count(
            &data,
            "SELECT count(*) FROM hit_props p ANTI JOIN hits h ON h.id = p.hit_id"
        ),
        0,
        "no props left without their hit"
    );
    // Nothing is left to prune but what expired since: a dry run now has a
    // later cutoff, and the seeded hits run up to now (a visit seeded a
    // second before the prune's cutoff would expire in between).
    let again = parse(&ok(&["prune", "--dry-run"], &data, Some(&cfg)));
    for l in &again {
        let pruned = done.iter().find(|d| d.site == l.site).expect("same sites");
        let since = count(
            &data,
            &format!(
                "SELECT count(*) FROM hits_v WHERE site = '{}' AND ts >= '{}'::TIMESTAMPTZ \
                 AND ts < '{}'::TIMESTAMPTZ",
                l.site, pruned.cutoff, l.cutoff
            ),
        );
        assert_eq!(l.hits, since, "{l:?} after {pruned:?}");
    }
}

#[test]
fn the_daemon_prunes_at_start_and_on_request() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    seed(&data);
    let old30 = count(
        &data,
        &format!(
            "SELECT count(*) FROM hits WHERE epoch_us(ts) < {}",
            days_ago_us(31.0)
        ),
    );
    assert!(old30 > 0);
    let tok = root.path().join("token");
    std::fs::write(&tok, "s3cret-token-0123456789\n").unwrap();
    let cfg = root.path().join("hv.toml");
    std::fs::write(
        &cfg,
        "sites = [\"old.test\"]\n[retention]\ndays = 30\n[retention.sites]\n\"old.test\" = 5\n",
    )
    .unwrap();
    let d = Daemon::start_wrapped(
        data.clone(),
        root,
        &[
            ("HITVAULT_CONFIG", cfg.to_str().unwrap()),
            ("HITVAULT_INGEST_TOKEN_FILE", tok.to_str().unwrap()),
        ],
        &[],
    );
    // The pass at start archives and deletes the seeded expired hits: every
    // seeded site has an archive, and no hit before that archive's cutoff is
    // left. A dry run now has a later cutoff than the pass had: it may find
    // seeded hits that expired since, which is why it cannot be waited on.
    let t = Instant::now();
    while !d.log_text().contains("retention pass done") {
        assert!(
            !d.log_text().contains("retention pass failed"),
            "{}",
            d.log_text()
        );
        assert!(t.elapsed() < Duration::from_secs(60), "{}", d.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(d.log_text().contains("expired hits archived and deleted"));
    let later = parse(&ok(&["prune", "--dry-run"], &data, None));
    let mut sites: Vec<&str> = later.iter().map(|l| l.site.as_str()).collect();
    sites.sort_unstable();
    assert_eq!(
        sites,
        ["old.test", "site01.test", "site02.test", "site03.test"],
        "a line for every site, each checked below"
    );
    for l in later {
        if l.site == "old.test" {
            assert_eq!(l.hits, 0, "{l:?}");
            continue;
        }
        let archives: Vec<PathBuf> = std::fs::read_dir(data.join("archive").join(&l.site))
            .unwrap()
            .map(|a| a.unwrap().path())
            .collect();
        assert_eq!(archives.len(), 1, "{l:?}: {archives:?}");
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(archives[0].join("MANIFEST")).unwrap()).unwrap();
        let start_cutoff = m["filter"]["until"].as_str().unwrap();
        // Same fixed-width UTC format: text order is time order.
        assert!(
            l.first.as_deref().is_none_or(|f| f >= start_cutoff),
            "{l:?}: hits before the cutoff {start_cutoff} of the pass at start are left"
        );
    }
    // Hits that arrive with old timestamps expire on the next prune.
    let ago = |days: i64| {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
            - days * 86_400_000;
        ms.to_string()
    };
    let hit = |i: u32, ts: &str| {
        format!(
            r#"{{"name":"pageview","url":"https://old.test/p{i}","user_agent":"Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0","ip":"192.0.2.{i}","timestamp":{ts}}}"#
        )
    };
    let body: Vec<String> = (0..20)
        .map(|i| hit(i, &ago(10)))
        .chain((20..25).map(|i| hit(i, &ago(1))))
        .collect();
    let r = d
        .request(
            "POST",
            "/api/ingest/batch",
            &[("Authorization", "Bearer s3cret-token-0123456789")],
            format!("[{}]", body.join(",")).as_bytes(),
        )
        .unwrap();
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let t = Instant::now();
    let old = loop {
        let lines = parse(&ok(&["prune", "--dry-run"], &data, None));
        let old = lines.into_iter().find(|l| l.site == "old.test").unwrap();
        if old.hits == 20 || t.elapsed() > Duration::from_secs(30) {
            break old;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(old.hits, 20, "{old:?}");
    let done = parse(&ok(&["prune"], &data, None));
    let old = done.iter().find(|l| l.site == "old.test").unwrap();
    assert_eq!(old.hits, 20);
    let archive = old.archive.clone().expect("archived");
    ok(
        &["takeout", "verify", archive.to_str().unwrap()],
        &data,
        None,
    );
    let s = d.stop();
    assert_eq!(
        s.count("SELECT count(*) FROM hits_v WHERE site = 'old.test'"),
        5
    );
    // Both are in the audit log: the pass at start as the daemon itself,
    // the requested one as the command line, each with what it deleted.
    let audit: Vec<serde_json::Value> =
        std::fs::read_to_string(data.join("accounts").join("audit.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .filter(|e: &serde_json::Value| e["kind"] == "prune")
            .collect();
    assert_eq!(audit.len(), 2, "{audit:#?}");
    assert_eq!(audit[0]["actor"]["kind"], "system");
    assert!(
        audit[0]["detail"]["hits"].as_u64().unwrap() > 0,
        "{}",
        audit[0]
    );
    assert_eq!(audit[1]["actor"]["kind"], "cli");
    // Its 20 hits of old.test, and any seeded hit that expired since the
    // pass at start (the seeded hits run up to now).
    let pruned: u64 = done.iter().map(|l| l.hits).sum();
    assert_eq!(audit[1]["detail"]["hits"], pruned);
    assert_eq!(audit[1]["detail"]["sites"][0]["site"], "old.test");
    assert_eq!(
        s.count(&format!(
            "SELECT count(*) FROM hits WHERE epoch_us(ts) < {}",
            days_ago_us(30.0 + 1.0 / 24.0)
        )),
        0
    );
    let archived: u64 = std::fs::read_dir(data.join("archive"))
        .unwrap()
        .flatten()
        .flat_map(|site| std::fs::read_dir(site.path()).unwrap().flatten())
        .map(|a| {
            let m: serde_json::Value =
                serde_json::from_slice(&std::fs::read(a.path().join("MANIFEST")).unwrap()).unwrap();
            m["files"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|f| f["table"] == "hits")
                .map(|f| f["rows"].as_u64().unwrap())
                .sum::<u64>()
        })
        .sum();
    assert!(
        archived >= old30 + 20,
        "{archived} archived, {old30} + 20 expected at least"
    );
}
