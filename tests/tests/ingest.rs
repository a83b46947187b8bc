//! Black-box tests of the ingest pipeline: the real binary, real HTTP, real
//! fsync, real DuckDB read back after the daemon stopped.

use std::collections::HashSet;
use std::io::Read;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hitvault_tests::{CHROME_UA, Daemon, binary, files_under, request, test_user};

const SITES: (&str, &str) = ("HITVAULT_SITES", "shop.test,blog.test");

fn token_env(dir: &tempfile::TempDir) -> String {
    let p = dir.path().join("token");
    std::fs::write(&p, "s3cret-token-0123456789\n").unwrap();
    p.to_str().unwrap().to_owned()
}

#[test]
fn tracker_plausible_and_batch_hits_reach_duckdb() {
    let tok = tempfile::tempdir().unwrap();
    let token_file = token_env(&tok);
    let d = Daemon::start(&[SITES, ("HITVAULT_INGEST_TOKEN_FILE", &token_file)]);

    let r = d.beacon(
        "/api/collect",
        r#"{"n":"pageview","u":"https://shop.test/products/42?utm_source=newsletter&utm_medium=email&utm_campaign=nov&x=1#top","d":"shop.test","r":"https://www.google.com/search?q=secret","w":1440,"l":"de-DE"}"#,
    );
    assert_eq!(r.status, 202, "{:?}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["accepted"], 1);

    let r = d.beacon(
        "/api/collect",
        r#"{"n":"Signup","u":"https://shop.test/pricing","d":"shop.test","p":{"plan":"pro","seats":3}}"#,
    );
    assert_eq!(r.status, 202);

    // Plausible's Events API, long keys, JSON content type, as its docs show.
    let r = d
        .request(
            "POST",
            "/api/event",
            &[("User-Agent", CHROME_UA), ("Content-Type", "application/json")],
            br#"{"name":"pageview","url":"https://blog.test/post/1","domain":"blog.test","referrer":"https://news.ycombinator.com/item?id=1"}"#,
        )
        .unwrap();
    assert_eq!(r.status, 202);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    // Plausible's official script: short keys, text/plain, props as an object.
    let r = d.beacon(
        "/api/event",
        r#"{"n":"Download","u":"https://blog.test/files","d":"blog.test","r":null,"p":{"file":"a.pdf"}}"#,
    );
    assert_eq!(r.status, 202);

    let batch = r#"{"name":"pageview","url":"https://shop.test/api-side","user_agent":"Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1","ip":"8.8.8.8","timestamp":"2026-01-02T03:04:05Z"}
{"name":"Purchase","url":"https://shop.test/checkout","user_agent":"Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0","props":{"amount":"12.50"}}"#;
    let r = d
        .request(
            "POST",
            "/api/ingest/batch",
            &[
                ("Authorization", "Bearer s3cret-token-0123456789"),
                ("Content-Type", "application/x-ndjson"),
            ],
            batch.as_bytes(),
        )
        .unwrap();
    assert_eq!(r.status, 202, "{:?}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["accepted"], 2);
    assert_eq!(d.metric("hitvault_hits_accepted_total"), 6);

    let s = d.stop();
    assert_eq!(s.count("SELECT count(*) FROM hits"), 6);
    let rows = s.query(
        "SELECT site, kind, name, path, referrer, source, utm_source, utm_medium, utm_campaign, browser, os, device, language, screen_width \
         FROM hits_v WHERE path = '/products/42'",
    );
    assert_eq!(
        rows,
        vec![
            vec![
                "shop.test",
                "pageview",
                "pageview",
                "/products/42",
                "https://www.google.com/search",
                "Google",
                "newsletter",
                "email",
                "nov",
                "Chrome",
                "Linux",
                "desktop",
                "de-DE",
                "1440"
            ]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>()
        ]
    );
    let ev = s.query("SELECT kind, name FROM hits_v WHERE name = 'Signup'");
    assert_eq!(ev, vec![vec!["event".to_string(), "Signup".to_string()]]);
    let props = s.query("SELECT key, value FROM props_v p JOIN hits_v h USING (id) WHERE h.name = 'Signup' ORDER BY key");
    assert_eq!(
        props,
        vec![
            vec!["plan".to_string(), "pro".to_string()],
            vec!["seats".to_string(), "3".to_string()]
        ]
    );
    let hn = s.query("SELECT site, source FROM hits_v WHERE path = '/post/1'");
    assert_eq!(
        hn,
        vec![vec!["blog.test".to_string(), "Hacker News".to_string()]]
    );
    let api = s.query("SELECT ts, device, country, browser FROM hits_v WHERE path = '/api-side'");
    assert_eq!(api[0][0], "2026-01-02 03:04:05+00");
    assert_eq!(api[0][1], "mobile");
    assert_eq!(api[0][2], "US", "country from the bundled database");
    let ids = s.query("SELECT count(DISTINCT id), min(id) > 0 FROM hits");
    assert_eq!(ids, vec![vec!["6".to_string(), "true".to_string()]]);
}

/// (what, headers, body, expected status, expected reason)
type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, String, u16, &'a str);

/// Each bad input gets its documented status and reason, is counted, stores
/// nothing, and leaves the daemon healthy.
#[test]
fn bad_input_is_refused_with_a_reason_and_counted() {
    let d = Daemon::start(&[SITES]);
    let ok = r#"{"n":"pageview","u":"https://shop.test/"}"#;
    let long_url = format!(
        r#"{{"n":"pageview","u":"https://shop.test/{}"}}"#,
        "a".repeat(3000)
    );
    let many_props = format!(
        r#"{{"n":"x","u":"https://shop.test/","p":{{{}}}}}"#,
        (0..31)
            .map(|i| format!(r#""k{i}":"v""#))
            .collect::<Vec<_>>()
            .join(",")
    );
    let huge = format!(
        r#"{{"n":"pageview","u":"https://shop.test/","p":{{"k":"{}"}}}}"#,
        "x".repeat(20_000)
    );
    let cases: Vec<Case> = vec![
        (
            "invalid json",
            vec![("User-Agent", CHROME_UA)],
            "{nope".into(),
            400,
            "invalid_json",
        ),
        (
            "not an object",
            vec![("User-Agent", CHROME_UA)],
            "[1,2]".into(),
            400,
            "invalid_json",
        ),
        (
            "wrong type",
            vec![("User-Agent", CHROME_UA)],
            r#"{"n":1,"u":"https://shop.test/"}"#.into(),
            400,
            "invalid_field",
        ),
        (
            "missing url",
            vec![("User-Agent", CHROME_UA)],
            r#"{"n":"pageview"}"#.into(),
            400,
            "invalid_field",
        ),
        (
            "bad url",
            vec![("User-Agent", CHROME_UA)],
            r#"{"n":"pageview","u":"javascript:alert(1)"}"#.into(),
            400,
            "invalid_url",
        ),
        (
            "long field",
            vec![("User-Agent", CHROME_UA)],
            long_url,
            400,
            "field_too_long",
        ),
        (
            "too many props",
            vec![("User-Agent", CHROME_UA)],
            many_props,
            400,
            "too_many_props",
        ),
        (
            "oversized body",
            vec![("User-Agent", CHROME_UA)],
            huge,
            413,
            "body_too_large",
        ),
        (
            "unknown site",
            vec![("User-Agent", CHROME_UA)],
            r#"{"n":"pageview","u":"https://evil.test/"}"#.into(),
            400,
            "unknown_site",
        ),
        (
            "missing user agent",
            vec![],
            ok.into(),
            400,
            "missing_user_agent",
        ),
    ];
    for (what, headers, body, status, reason) in &cases {
        let r = d
            .request("POST", "/api/collect", headers, body.as_bytes())
            .unwrap();
        assert_eq!(
            r.status,
            *status,
            "{what}: {:?}",
            String::from_utf8_lossy(&r.body)
        );
        let j = r.json();
        assert_eq!(j["error"], *reason, "{what}");
        assert!(
            j["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: no message"
        );
    }
    let text = String::from_utf8(d.get("/metrics").unwrap().body).unwrap();
    for (what, _, _, _, reason) in &cases {
        let line = format!("hitvault_hits_refused_total{{reason=\"{reason}\"}} ");
        let n: u64 = text.lines().find(|l| l.starts_with(&line)).unwrap()[line.len()..]
            .parse()
            .unwrap();
        assert!(n >= 1, "{what}: refusal not counted");
    }
    // Batch: no token configured -> 401 with a reason.
    let r = d
        .request(
            "POST",
            "/api/ingest/batch",
            &[("Authorization", "Bearer x")],
            b"[]",
        )
        .unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "unauthorized");
    // A bot is dropped (200, header says why), not stored.
    let r = d
        .request(
            "POST",
            "/api/collect",
            &[(
                "User-Agent",
                "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            )],
            ok.as_bytes(),
        )
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-hitvault-dropped"), Some("bot"));
    // Referrer spam is dropped too.
    let spam = r#"{"n":"pageview","u":"https://shop.test/","r":"https://semalt.com/x"}"#;
    let r = d
        .request(
            "POST",
            "/api/collect",
            &[("User-Agent", CHROME_UA)],
            spam.as_bytes(),
        )
        .unwrap();
    assert_eq!(r.header("x-hitvault-dropped"), Some("referrer_spam"));
    // Wrong method, unknown route.
    assert_eq!(d.get("/api/collect").unwrap().status, 405);
    assert_eq!(d.get("/nope").unwrap().status, 404);
    // Still healthy and still ingesting.
    assert_eq!(d.get("/healthz").unwrap().status, 200);
    assert_eq!(d.get("/readyz").unwrap().status, 200);
    assert_eq!(d.beacon("/api/collect", ok).status, 202);
    let s = d.stop();
    assert_eq!(
        s.count("SELECT count(*) FROM hits"),
        1,
        "only the good hit is stored"
    );
}

#[test]
fn batch_is_all_or_nothing_and_needs_the_token() {
    let tok = tempfile::tempdir().unwrap();
    let token_file = token_env(&tok);
    let d = Daemon::start(&[SITES, ("HITVAULT_INGEST_TOKEN_FILE", &token_file)]);
    let auth = ("Authorization", "Bearer s3cret-token-0123456789");
    let r = d
        .request(
            "POST",
            "/api/ingest/batch",
            &[("Authorization", "Bearer wrong-token-0123456789")],
            b"[]",
        )
        .unwrap();
    assert_eq!(r.status, 401);
    let half_bad = r#"[{"name":"pageview","url":"https://shop.test/a","user_agent":"Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"},
                      {"name":"pageview","url":"https://shop.test/b"}]"#;
    let r = d
        .request("POST", "/api/ingest/batch", &[auth], half_bad.as_bytes())
        .unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "missing_user_agent");
    assert!(r.json()["message"].as_str().unwrap().starts_with("hit 1:"));
    let good: Vec<String> = (0..500)
        .map(|i| format!(r#"{{"name":"pageview","url":"https://shop.test/p{i}","user_agent":"Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0","ip":"192.0.2.{}"}}"#, i % 250))
        .collect();
    let r = d
        .request(
            "POST",
            "/api/ingest/batch",
            &[auth],
            format!("[{}]", good.join(",")).as_bytes(),
        )
        .unwrap();
    assert_eq!(r.status, 202);
    let s = d.stop();
    assert_eq!(s.count("SELECT count(*) FROM hits"), 500);
    assert!(s.count("SELECT count(DISTINCT visitor) FROM hits") >= 250);
}

#[test]
fn tracker_script_is_served_small_and_cacheable() {
    let d = Daemon::start(&[SITES]);
    let r = d
        .request("GET", "/hv.js", &[("Accept-Encoding", "gzip")], b"")
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/javascript")
    );
    assert!(
        r.body.len() < 1024,
        "served tracker is {} bytes gzipped",
        r.body.len()
    );
    let mut plain = String::new();
    flate_decode(&r.body, &mut plain);
    assert!(plain.contains("sendBeacon"));
    assert!(
        !plain.contains("localStorage")
            && !plain.contains("sessionStorage")
            && !plain.contains("document.cookie")
    );
    let etag = r.header("etag").unwrap().to_owned();
    let r = d
        .request("GET", "/hv.js", &[("If-None-Match", &etag)], b"")
        .unwrap();
    assert_eq!(r.status, 304);
    let r = d.get("/hv.js").unwrap();
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(String::from_utf8(r.body).unwrap(), plain);
}

fn flate_decode(gz: &[u8], out: &mut String) {
    // gzip via the system's gzip, so the test does not trust our own encoder.
    let mut child = Command::new("gzip")
        .arg("-dc")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gzip");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(gz).unwrap();
    child.stdout.take().unwrap().read_to_string(out).unwrap();
    assert!(child.wait().unwrap().success());
}

/// The client address from a trusted proxy's header is used (country, visitor)
/// and then forgotten: no byte sequence of it is anywhere under the data dir.
#[test]
fn client_address_never_reaches_disk() {
    let d = Daemon::start(&[SITES, ("HITVAULT_TRUSTED_PROXIES", "127.0.0.1")]);
    let ip = "81.2.69.160";
    for i in 0..200 {
        let body = format!(r#"{{"n":"pageview","u":"https://shop.test/p/{i}"}}"#);
        let r = d
            .request(
                "POST",
                "/api/collect",
                &[("User-Agent", CHROME_UA), ("X-Forwarded-For", ip)],
                body.as_bytes(),
            )
            .unwrap();
        assert_eq!(r.status, 202);
    }
    let s = d.stop();
    let countries = s.query("SELECT DISTINCT country FROM hits");
    assert_eq!(
        countries,
        vec![vec!["GB".to_string()]],
        "the forwarded address was used for the country"
    );
    assert_eq!(s.count("SELECT count(DISTINCT visitor) FROM hits"), 1);
    let needles: Vec<Vec<u8>> = vec![
        ip.as_bytes().to_vec(),
        vec![81, 2, 69, 160],
        "81.2.69".as_bytes().to_vec(),
        "::ffff:81.2.69.160".as_bytes().to_vec(),
        "::ffff:5102:45a0".as_bytes().to_vec(),
    ];
    let files = files_under(&s.data_dir);
    assert!(files.iter().any(|f| f.ends_with("hitvault.duckdb")));
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        for n in &needles {
            assert!(
                !bytes.windows(n.len()).any(|w| w == n.as_slice()),
                "{} contains {:?}",
                f.display(),
                String::from_utf8_lossy(n)
            );
        }
    }
    let log = std::fs::read(&s.log).unwrap();
    assert!(
        !log.windows(ip.len()).any(|w| w == ip.as_bytes()),
        "the log mentions the client address"
    );
}

/// SIGKILL during load; every hit answered 202 is stored exactly once after restart.
#[test]
fn sigkill_during_load_loses_no_acknowledged_hit() {
    let d = Daemon::start(&[SITES]);
    let addr = d.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sent = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (stop, acked, sent) = (stop.clone(), acked.clone(), sent.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let path = format!("/w{w}/{i}");
                    let body = format!(r#"{{"n":"pageview","u":"https://shop.test{path}"}}"#);
                    sent.fetch_add(1, Ordering::Relaxed);
                    match request(
                        addr,
                        "POST",
                        "/api/collect",
                        &[("User-Agent", CHROME_UA)],
                        body.as_bytes(),
                    ) {
                        Ok(r) if r.status == 202 => acked.lock().unwrap().push(path),
                        Ok(r) => panic!("unexpected status {} before the kill", r.status),
                        Err(_) => {} // connection died with the daemon: not acknowledged
                    }
                    i += 1;
                }
            })
        })
        .collect();
    let t = Instant::now();
    while acked.lock().unwrap().len() < 3000 && t.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let stopped = d.kill();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 3000,
        "only {} hits acknowledged before the kill",
        acked.len()
    );

    let d = Daemon::restart(stopped, &[SITES]);
    // The replay happens at start; wait until the queue is drained.
    let t = Instant::now();
    while d.metric("hitvault_queue_depth") > 0 && t.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let s = d.stop();
    let stored: Vec<Vec<String>> = s.query("SELECT path, count(*) FROM hits GROUP BY path");
    let counts: std::collections::HashMap<String, u64> = stored
        .into_iter()
        .map(|r| (r[0].clone(), r[1].parse().unwrap()))
        .collect();
    for p in &acked {
        assert_eq!(
            counts.get(p).copied(),
            Some(1),
            "acknowledged hit {p} stored {:?} times",
            counts.get(p)
        );
    }
    assert!(
        counts.values().all(|&n| n == 1),
        "some hit was stored twice"
    );
    assert_eq!(
        s.count("SELECT count(*) - count(DISTINCT id) FROM hits"),
        0,
        "ids are unique"
    );
    let unacked = counts.len() - acked.len();
    eprintln!(
        "acknowledged {}, stored {}, sent {}, stored but not acknowledged {unacked}",
        acked.len(),
        counts.len(),
        sent.load(Ordering::Relaxed)
    );
}

#[test]
fn bad_configuration_fails_at_start_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let run = |env: &[(&str, &str)], args: &[&str]| {
        let mut c = Command::new(binary());
        c.arg("serve")
            .arg("--data-dir")
            .arg(dir.path().join("d"))
            .args(args);
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("HITVAULT_")) {
            c.env_remove(k);
        }
        if let Some(u) = test_user() {
            c.env("HITVAULT_USER", u);
        }
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let out = run(&[("HITVAULT_LISTEN", "not-an-address")], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`listen`") && err.contains("HITVAULT_LISTEN"),
        "{err}"
    );
    let out = run(&[("HITVAULT_TRUSTED_PROXIES", "10.0.0.0/99")], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`trusted_proxies`"));
    let f = dir.path().join("c.toml");
    std::fs::write(&f, "data_dir = \"x\"\nqueue_size = 1\n").unwrap();
    let out = run(&[], &["--config", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("`queue_size`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(binary())
        .arg("check-config")
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    std::fs::write(
        &f,
        "sites = [\"a.test\"]\n[queue]\nmax_bytes = \"256MiB\"\n",
    )
    .unwrap();
    let out = Command::new(binary())
        .arg("check-config")
        .arg(&f)
        .env_remove("HITVAULT_SITES")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["queue_max_bytes"], 256 << 20);
    // A port already in use: exit 3 and the setting named.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let out = run(&[], &["--listen", &busy.local_addr().unwrap().to_string()]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`listen`"));
}

#[test]
fn sites_added_at_run_time_through_the_daemon_and_offline() {
    let d = Daemon::start(&[("HITVAULT_SITES", "declared.test")]);
    let body = r#"{"n":"pageview","u":"https://added.test/"}"#;
    assert_eq!(d.beacon("/api/collect", body).status, 400, "not a site yet");
    let out = Command::new(binary())
        .args([
            "site",
            "add",
            "added.test",
            "--alias",
            "www.added.test",
            "--data-dir",
        ])
        .arg(&d.data_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        d.beacon("/api/collect", body).status,
        202,
        "accepted once added, without a restart"
    );
    assert_eq!(
        d.beacon(
            "/api/collect",
            r#"{"n":"pageview","u":"https://www.added.test/"}"#
        )
        .status,
        202
    );
    let out = Command::new(binary())
        .args(["site", "add", "added.test", "--data-dir"])
        .arg(&d.data_dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a duplicate is refused");
    let s = d.stop();
    // Offline: the CLI opens the store itself.
    let out = Command::new(binary())
        .args(["site", "add", "offline.test", "--data-dir"])
        .arg(&s.data_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(binary())
        .args(["site", "list", "--json", "--data-dir"])
        .arg(&s.data_dir)
        .env("HITVAULT_SITES", "declared.test")
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: HashSet<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["hostname"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        HashSet::from(["declared.test", "added.test", "offline.test"])
    );
    assert_eq!(
        s.count("SELECT count(*) FROM hits_v WHERE site = 'added.test'"),
        2
    );
}
