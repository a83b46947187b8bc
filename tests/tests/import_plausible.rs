//! `hitvault import-plausible`, black box: the hand-written export in
//! `tests/fixtures/plausible` (a directory, then the same files zipped by
//! Python's zipfile) goes into a running daemon and comes back through
//! `GET /api/v1/stats/overview` and the dashboard's overview page (which
//! says that it includes imported days); importing again never doubles; filtered
//! queries leave imported data out and say so; bad files are refused with
//! the file, row and reason and change nothing; without a daemon the CLI
//! writes the store itself.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hitvault_tests::{Daemon, binary, edited_plausible_fixture, plausible_fixture};
use serde_json::Value;

fn fixture() -> PathBuf {
    plausible_fixture()
}

fn import(data: &Path, site: &str, path: &Path) -> Output {
    Command::new(binary())
        .arg("--data-dir")
        .arg(data)
        .args(["import-plausible", "--site", site])
        .arg(path)
        .output()
        .expect("run hitvault")
}

fn ok(data: &Path, path: &Path) -> String {
    let o = import(data, "ex.test", path);
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn overview(d: &Daemon, extra: &str) -> Value {
    let r = d
        .get(&format!(
            "/api/v1/stats/overview?site=ex.test&from=2024-03-01&to=2024-03-03{extra}"
        ))
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

/// The dashboard's overview page of the fixture's two days.
fn dashboard(d: &Daemon, extra: &str) -> String {
    let r = d
        .get(&format!(
            "/sites/ex.test?period=custom&from=2024-03-01&to=2024-03-02{extra}"
        ))
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    String::from_utf8_lossy(&r.body).into_owned()
}

/// The numbers summed by hand from the fixture files.
fn check_fixture_overview(v: &Value) {
    assert_eq!(v["imported"]["included"], true, "{v}");
    assert_eq!(v["imported"]["days"], 2);
    let k = &v["kpis"];
    assert_eq!(
        (
            &k["visitors"],
            &k["pageviews"],
            &k["events"],
            &k["sessions"]
        ),
        (&15.into(), &39.into(), &6.into(), &18.into()),
        "{k}"
    );
    assert!((k["bounce_rate"].as_f64().unwrap() - 5.0 / 18.0).abs() < 1e-9);
    assert!((k["avg_visit_duration_s"].as_f64().unwrap() - 50.0).abs() < 1e-9);
    let series: Vec<(u64, u64)> = v["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["visitors"].as_u64().unwrap(),
                p["sessions"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(series, [(10, 12), (5, 6)]);
    let first = |panel: &str| {
        let r = &v["breakdowns"][panel][0];
        (
            r["value"].clone(),
            r["visitors"].clone(),
            r["count"].clone(),
        )
    };
    assert_eq!(first("page"), ("/".into(), 12.into(), 29.into()));
    assert_eq!(first("source"), (Value::Null, 6.into(), 18.into()));
    assert_eq!(first("utm_campaign"), (Value::Null, 10.into(), 30.into()));
    assert_eq!(first("entry_page"), ("/".into(), 14.into(), 17.into()));
    assert_eq!(first("exit_page"), ("/".into(), 12.into(), 14.into()));
    assert_eq!(first("country"), ("DE".into(), 11.into(), 29.into()));
    assert_eq!(first("screen"), ("desktop".into(), 12.into(), 31.into()));
    assert_eq!(first("browser"), ("Firefox".into(), 11.into(), 27.into()));
    assert_eq!(first("os"), ("Linux".into(), 11.into(), 27.into()));
    assert_eq!(first("event"), ("Signup".into(), 3.into(), 4.into()));
    assert_eq!(v["breakdowns"]["source"].as_array().unwrap().len(), 3);
}

fn zip_of(dir: &Path, zip: &Path) {
    let o = Command::new("python3")
        .args([
            "-c",
            "import os, sys, zipfile\n\
             z = zipfile.ZipFile(sys.argv[2], 'w', zipfile.ZIP_DEFLATED)\n\
             for n in sorted(os.listdir(sys.argv[1])): z.write(os.path.join(sys.argv[1], n), n)\n\
             z.close()",
        ])
        .arg(dir)
        .arg(zip)
        .output()
        .expect("python3");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn plausible_export_into_a_running_daemon_and_back_through_the_stats_api() {
    let d = Daemon::start(&[("HITVAULT_SITES", "ex.test")]);
    let before = overview(&d, "");
    assert_eq!(before["imported"]["included"], false);
    assert_eq!(before["kpis"]["visitors"], 0);

    assert!(!dashboard(&d, "&interval=day").contains("imported-note"));

    let out = ok(&d.data_dir, &fixture());
    assert!(out.contains("through the running daemon"), "{out}");
    assert!(out.contains("2024-03-01 to 2024-03-02, 2 days"), "{out}");
    assert!(out.contains("0 earlier rows"), "{out}");
    check_fixture_overview(&overview(&d, ""));

    // The overview page says that its numbers include imported days, and
    // where; a filtered page has none of them and no note.
    let page = dashboard(&d, "&interval=day");
    assert!(
        page.contains("<p class=\"imported-note\" role=\"note\" data-imported-days=\"2\">")
            && page.contains("Includes 2 days imported from Plausible, added to the figures, the chart and the panels."),
        "{page}"
    );
    assert!(
        page.contains("data-kpi=\"visitors\"><h2>Visitors</h2><p class=\"value\">15</p>"),
        "{page}"
    );
    let hourly = dashboard(&d, "");
    assert!(
        hourly.contains("the hourly chart leaves them out"),
        "{hourly}"
    );
    assert!(!dashboard(&d, "&f=page:is:/").contains("imported-note"));

    // Again, and as a zip: the same range is replaced, never doubled.
    let again = ok(&d.data_dir, &fixture());
    assert!(!again.contains(" 0 earlier rows"), "{again}");
    check_fixture_overview(&overview(&d, ""));
    let tmp = tempfile::tempdir().unwrap();
    let zip = tmp.path().join("plausible-export.zip");
    zip_of(&fixture(), &zip);
    ok(&d.data_dir, &zip);
    check_fixture_overview(&overview(&d, ""));

    // Filtered: imported data is left out, and the answer says so.
    let f = overview(&d, "&filter=page:is:/");
    assert_eq!(f["imported"]["included"], false);
    assert_eq!(f["kpis"]["visitors"], 0);
    // Hour buckets: in the KPIs, not in the series.
    let h = overview(&d, "&interval=hour");
    assert_eq!(
        (&h["imported"]["included"], &h["imported"]["in_series"]),
        (&true.into(), &false.into())
    );
    assert_eq!(h["kpis"]["visitors"], 15);

    // Bad input: refused with file, row and reason; nothing changes.
    let bad = tmp.path().join("bad");
    edited_plausible_fixture(&bad, "2024-03-01,10,", "2024-03-01,1e3,");
    let o = import(&d.data_dir, "ex.test", &bad);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("imported_visitors_20240301_20240302.csv, row 1")
            && err.contains("visitors: \"1e3\" is not an unsigned integer")
            && err.contains("nothing imported"),
        "{err}"
    );
    // A truncated zip.
    let bytes = std::fs::read(&zip).unwrap();
    let cut = tmp.path().join("cut.zip");
    std::fs::write(&cut, &bytes[..bytes.len() - 40]).unwrap();
    let o = import(&d.data_dir, "ex.test", &cut);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("cut.zip") && err.contains("truncated"),
        "{err}"
    );
    // A site the instance does not have.
    let o = import(&d.data_dir, "other.test", &fixture());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("no site named \"other.test\""), "{err}");
    check_fixture_overview(&overview(&d, ""));

    // Without a daemon the CLI writes the store itself; still no doubling.
    let s = d.stop();
    let out = ok(&s.data_dir, &fixture());
    assert!(!out.contains("through the running daemon"), "{out}");
    assert_eq!(s.count("SELECT count(*) FROM imported_days"), 2);
    assert_eq!(s.count("SELECT sum(visitors) FROM imported_days"), 15);
    assert_eq!(
        s.count("SELECT sum(count) FROM imported_values WHERE dim = 'page'"),
        39
    );
}

/// Plausible's current `imported_pages` layout (scroll depth and time on
/// page as totals) and its oldest (neither) import to the same numbers as
/// the fixture's; the engagement columns are read and checked, not stored,
/// so the imported pages have no time on page and no scroll depth (`null`,
/// never 0).
#[test]
fn current_and_oldest_pages_layouts_import_alike() {
    let d = Daemon::start(&[("HITVAULT_SITES", "ex.test")]);
    let tmp = tempfile::tempdir().unwrap();
    for (name, pages) in [
        (
            "current",
            "date,hostname,page,visits,visitors,pageviews,total_scroll_depth,\
             total_scroll_depth_visits,total_time_on_page,total_time_on_page_visits\n\
             2024-03-01,ex.test,/,8,7,20,0,0,0,0\n\
             2024-03-01,ex.test,/pricing,4,3,10,110,2,95,3\n\
             2024-03-02,ex.test,/,6,5,9,,,,\n",
        ),
        (
            "oldest",
            "date,hostname,page,visits,visitors,pageviews\n\
             2024-03-01,ex.test,/,8,7,20\n\
             2024-03-01,ex.test,/pricing,4,3,10\n\
             2024-03-02,ex.test,/,6,5,9\n",
        ),
    ] {
        let dir = tmp.path().join(name);
        edited_plausible_fixture(&dir, "2024-03-01", "2024-03-01");
        std::fs::write(dir.join("imported_pages_20240301_20240302.csv"), pages).unwrap();
        let out = ok(&d.data_dir, &dir);
        assert!(out.contains("through the running daemon"), "{name}: {out}");
        let v = overview(&d, "");
        check_fixture_overview(&v);
        let k = &v["kpis"];
        assert_eq!(
            (&k["time_on_page"], &k["scroll_depth"]),
            (&Value::Null, &Value::Null),
            "{name}: {k}"
        );
        let page = &v["breakdowns"]["page"];
        assert_eq!(page.as_array().unwrap().len(), 2, "{name}: {page}");
        for p in page.as_array().unwrap() {
            assert_eq!(
                (&p["time_on_page"], &p["scroll_depth"]),
                (&Value::Null, &Value::Null),
                "{name}: {p}"
            );
        }
    }
    d.stop();
}
