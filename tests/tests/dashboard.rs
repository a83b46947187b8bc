//! The dashboard and the realtime stream, black-box against the real binary.
//!
//! Hits with known times go in through the server-side batch endpoint; the
//! pages, the CSV downloads and the Server-Sent Events stream must show the
//! numbers worked out by hand below: the overview, the goals, funnels and
//! events pages, the settings forms that add and delete goals and funnels
//! (and refuse cross-site posts), the "is empty" filter. One test drives the
//! dashboard in Debian's headless Chromium (range change, filter click,
//! tooltip, live update, the settings forms, the goals, funnels and events
//! pages; no console error, no request to another host) and keeps
//! screenshots in `<target>/release/test-artefacts/`.

use std::error::Error;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use hitvault_tests::webdriver::{Browser, Options};
use hitvault_tests::{Daemon, IngestToken, Reply};
use serde_json::{Value, json};

const SITE: &str = "stats.test";
const TOKEN: &str = "dashboard-token-0123456789";
const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Gecko/20100101 Firefox/131.0";
/// The realtime stream limit docs/reference/http-api.md documents.
const MAX_STREAMS: usize = 32;

type TestResult = Result<(), Box<dyn Error>>;

fn hit(ip: &str, ts: &str, name: &str, path: &str) -> String {
    hit_at(ip, json!(ts), name, path)
}

/// A hit at `ts`: RFC 3339 text or Unix milliseconds.
fn hit_at(ip: &str, ts: Value, name: &str, path: &str) -> String {
    json!({
        "name": name,
        "url": format!("https://{SITE}{path}"),
        "user_agent": FIREFOX,
        "ip": ip,
        "timestamp": ts,
    })
    .to_string()
}

/// 2026-01-10 (as in the stats API test): visitor 1 views `/`, `/pricing`,
/// sends `signup`, views `/blog` 40 minutes later (a second session);
/// visitor 2 views `/` and `/docs`; visitor 3 views `/pricing` (a bounce).
/// Visitors 3, pageviews 6, visits 4, bounce rate 50 %, duration 750 s.
/// 2026-01-11: visitor 4 lands with a campaign whose name needs CSV quoting
/// and a term that looks like a spreadsheet formula.
/// 2026-01-20: visitor 5 views `/pricing`, visitor 6 views `/`.
fn fixture() -> String {
    [
        hit("203.0.113.1", "2026-01-10T10:00:00Z", "pageview", "/"),
        hit(
            "203.0.113.1",
            "2026-01-10T10:05:00Z",
            "pageview",
            "/pricing",
        ),
        hit("203.0.113.1", "2026-01-10T10:20:00Z", "signup", "/pricing"),
        hit("203.0.113.1", "2026-01-10T11:00:00Z", "pageview", "/blog"),
        hit("203.0.113.2", "2026-01-10T10:10:00Z", "pageview", "/"),
        hit("203.0.113.2", "2026-01-10T10:40:00Z", "pageview", "/docs"),
        hit(
            "203.0.113.3",
            "2026-01-10T12:00:00Z",
            "pageview",
            "/pricing",
        ),
        hit(
            "203.0.113.4",
            "2026-01-11T09:00:00Z",
            "pageview",
            "/?utm_campaign=spring%2C%20%22big%22%20sale&utm_term=%3DHYPERLINK(%22x%22)",
        ),
        hit(
            "203.0.113.5",
            "2026-01-20T08:00:00Z",
            "pageview",
            "/pricing",
        ),
        hit("203.0.113.6", "2026-01-20T09:00:00Z", "pageview", "/"),
    ]
    .join("\n")
}

fn start() -> (Daemon, IngestToken) {
    start_on("127.0.0.1:0")
}

fn start_on(listen: &str) -> (Daemon, IngestToken) {
    let token = IngestToken::new(TOKEN);
    let d = Daemon::start_listening(listen, &[("HITVAULT_SITES", SITE), token.env()]);
    (d, token)
}

fn send(d: &Daemon, ndjson: &str) {
    d.ingest(TOKEN, ndjson);
}

/// Waits until the stats API sees `visitors` in January 2026 (the batch is
/// durable at 202 and reaches DuckDB with the next commit).
fn wait_for_january(d: &Daemon, visitors: u64) {
    let t = Instant::now();
    loop {
        let r = d
            .get(&format!(
                "/api/v1/stats/overview?site={SITE}&from=2026-01-01&to=2026-02-01"
            ))
            .unwrap();
        assert_eq!(r.status, 200);
        if r.json()["kpis"]["visitors"] == visitors {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the hits did not arrive: {}",
            r.json()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn text(r: &Reply) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// The dashboard's headers and the absence of inline code, on any page.
fn assert_secure_html(path: &str, r: &Reply) {
    let csp = r
        .header("content-security-policy")
        .unwrap_or_else(|| panic!("{path}: no CSP"));
    assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
    assert!(!csp.contains("unsafe-eval"), "{path}: {csp}");
    assert!(csp.contains("default-src 'self'"), "{path}: {csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
    assert_eq!(
        r.header("x-content-type-options"),
        Some("nosniff"),
        "{path}"
    );
    assert!(r.header("referrer-policy").is_some(), "{path}");
    let body = text(r);
    assert!(!body.contains("<style"), "{path}: a <style> element");
    for tag in body.split('<').skip(1) {
        let tag = tag.split('>').next().unwrap_or_default();
        if tag.starts_with("script") {
            assert!(tag.contains(" src=\""), "{path}: inline script <{tag}>");
        }
        for attr in tag.split_whitespace().skip(1) {
            let name = attr
                .split('=')
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            assert!(
                name != "style" && !(name.starts_with("on") && attr.contains('=')),
                "{path}: inline style or handler in <{tag}>"
            );
        }
    }
    // Nothing is fetched from anywhere else.
    for needle in ["src=\"http", "href=\"http", "src=\"//", "href=\"//"] {
        assert!(!body.contains(needle), "{path}: {needle}");
    }
}

/// The text of a KPI tile's value.
/// A CSV download of the page at `base`: its Content-Disposition and text.
fn csv_download(d: &Daemon, base: &str, q: &str) -> (String, String) {
    let r = d.get(&format!("{base}/export.csv?{q}")).unwrap();
    assert_eq!(r.status, 200, "{q}: {}", text(&r));
    assert_eq!(r.header("content-type"), Some("text/csv; charset=utf-8"));
    (
        r.header("content-disposition").unwrap().to_owned(),
        text(&r),
    )
}

fn kpi(html: &str, key: &str) -> String {
    let tile = html
        .split(&format!("data-kpi=\"{key}\""))
        .nth(1)
        .unwrap_or_else(|| panic!("no KPI {key}"));
    let value = tile.split("class=\"value\"").nth(1).unwrap();
    let value = &value[value.find('>').unwrap() + 1..];
    value[..value.find('<').unwrap()].to_owned()
}

#[test]
fn pages_csv_and_filters_show_the_stored_numbers() {
    let (d, _tok) = start();
    send(&d, &fixture());
    wait_for_january(&d, 6);
    let day = "period=custom&from=2026-01-10&to=2026-01-10";
    let base = format!("/sites/{SITE}");

    for path in [
        "/".to_owned(),
        "/sites".into(),
        format!("{base}?{day}"),
        format!("{base}/realtime"),
        format!("{base}/settings"),
    ] {
        let r = d.get(&path).unwrap();
        assert_eq!(r.status, 200, "{path}: {}", text(&r));
        assert_eq!(
            r.header("content-type"),
            Some("text/html; charset=utf-8"),
            "{path}"
        );
        assert_secure_html(&path, &r);
    }
    let sites = text(&d.get("/sites").unwrap());
    assert!(
        sites.contains(&format!("href=\"/sites/{SITE}\"")),
        "{sites}"
    );

    // The overview of 2026-01-10.
    let o = text(&d.get(&format!("{base}?{day}")).unwrap());
    for (key, value) in [
        ("visitors", "3"),
        ("pageviews", "6"),
        ("sessions", "4"),
        ("bounce_rate", "50%"),
        ("avg_duration", "12m 30s"),
        ("views_per_visit", "1.50"),
        ("events", "1"),
        ("live", "0"),
    ] {
        assert_eq!(kpi(&o, key), value, "KPI {key}");
    }
    assert!(o.contains("2026-01-10, UTC; compared with the day before."));
    // Hourly for one day: 10:00 had visitors 1 and 2, four pageviews.
    assert!(
        o.contains("data-label=\"Jan 10, 2026 10:00\" data-visitors=\"2\" data-pageviews=\"4\""),
        "chart"
    );
    // Every panel is there, and its rows link to the filtered view.
    for panel in [
        "page",
        "entry_page",
        "exit_page",
        "source",
        "country",
        "event",
    ] {
        assert!(o.contains(&format!("data-panel=\"{panel}\"")), "{panel}");
    }
    let link = format!(
        "href=\"{base}?{}&amp;f=page:is:/pricing\"",
        day.replace('&', "&amp;")
    );
    assert!(o.contains(&link), "no filter link {link}");
    assert!(o.contains("data-filter=\"event:is:signup\""));

    // The filter applies to every number; its chip removes it.
    let filtered = text(&d.get(&format!("{base}?{day}&f=page:is:/pricing")).unwrap());
    assert_eq!(kpi(&filtered, "visitors"), "2");
    assert_eq!(kpi(&filtered, "pageviews"), "2");
    assert_eq!(kpi(&filtered, "sessions"), "2");
    assert!(filtered.contains("class=\"chip\" data-filter=\"page:is:/pricing\""));
    assert!(
        filtered.contains(&format!("href=\"{base}?{}\"", day.replace('&', "&amp;"))),
        "the chip's remove link leads back to the unfiltered view"
    );
    // Filters combine: /pricing and browser Chrome (none of these hits).
    let none = text(
        &d.get(&format!(
            "{base}?{day}&f=page:is:/pricing&f=browser:is:Chrome"
        ))
        .unwrap(),
    );
    assert_eq!(kpi(&none, "visitors"), "0");

    // CSV downloads.
    let csv = |q: &str| csv_download(&d, &base, q);
    let (disposition, pages) = csv(&format!("panel=page&{day}"));
    assert_eq!(
        disposition,
        "attachment; filename=\"stats.test-page-2026-01-10-2026-01-10.csv\""
    );
    assert_eq!(
        pages,
        "page,visitors,pageviews,share,time_on_page_s,scroll_depth\r\n/,2,2,0.6667,,\r\n\
         /pricing,2,2,0.6667,,\r\n/blog,1,1,0.3333,,\r\n/docs,1,1,0.3333,,\r\n"
    );
    let (_, filtered) = csv(&format!("panel=page&{day}&f=page:is:/pricing"));
    assert_eq!(
        filtered,
        "page,visitors,pageviews,share,time_on_page_s,scroll_depth\r\n/pricing,2,2,1.0000,,\r\n"
    );
    let jan11 = "period=custom&from=2026-01-11&to=2026-01-11";
    let (_, campaigns) = csv(&format!("panel=utm_campaign&{jan11}"));
    assert_eq!(
        campaigns,
        "utm_campaign,visitors,pageviews,share\r\n\"spring, \"\"big\"\" sale\",1,1,1.0000\r\n"
    );
    let (_, terms) = csv(&format!("panel=utm_term&{jan11}"));
    assert_eq!(
        terms,
        "utm_term,visitors,pageviews,share\r\n\"'=HYPERLINK(\"\"x\"\")\",1,1,1.0000\r\n"
    );
    let (_, series) = csv("panel=series&period=custom&from=2026-01-09&to=2026-01-11&interval=day");
    assert_eq!(
        series,
        "start,visitors,pageviews,visits\r\n2026-01-09T00:00:00,0,0,0\r\n\
         2026-01-10T00:00:00,3,6,4\r\n2026-01-11T00:00:00,1,1,1\r\n"
    );
    let (_, kpis) = csv(&format!("panel=kpis&{day}"));
    assert!(kpis.starts_with("metric,value,previous\r\nvisitors,3,0\r\npageviews,6,0\r\n"));

    // Bad requests say which parameter; unknown sites are 404.
    for (path, status, needle) in [
        (format!("{base}?period=fortnight"), 400, "period"),
        (format!("{base}?f=planet:is:mars"), 400, "planet"),
        (format!("{base}?colour=blue"), 400, "colour"),
        (format!("{base}/export.csv?panel=planets"), 400, "panel"),
        ("/sites/nowhere.test".into(), 404, "nowhere.test"),
    ] {
        let r = d.get(&path).unwrap();
        assert_eq!(r.status, status, "{path}");
        assert!(text(&r).contains(needle), "{path}: {}", text(&r));
        assert_secure_html(&path, &r);
    }
    // Assets are embedded and typed.
    let js = d.get("/assets/dashboard.js").unwrap();
    assert_eq!(js.status, 200);
    assert!(
        js.header("content-type")
            .unwrap()
            .starts_with("application/javascript")
    );
    assert_eq!(d.get("/assets/dashboard.css").unwrap().status, 200);
    d.stop();
}

#[test]
fn on_a_lan_listen_address_the_dashboard_admits_loopback_and_sends_others_to_sign_in() {
    let (d, _tok) = start_on("0.0.0.0:0");
    // From this machine, addressed to a loopback name: the operator.
    let local = format!("127.0.0.1:{}", d.addr.port());
    for path in ["/", "/sites", "/assets/dashboard.css"] {
        let r = d.request("GET", path, &[("Host", &local)], b"").unwrap();
        assert_eq!(r.status, 200, "{path}: {}", text(&r));
        assert!(r.header("content-security-policy").is_some());
    }
    // A request addressed to a name that is neither configured nor
    // loopback is refused, whoever sends it.
    let r = hitvault_tests::request_from(
        "127.0.0.2".parse().unwrap(),
        d.addr,
        "GET",
        "/sites",
        &[("Host", "rebound.evil.test")],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 403, "a foreign name is refused");
    let r = d
        .request("GET", "/login", &[("Host", &local)], b"")
        .unwrap();
    assert_eq!(r.status, 200);
    let page = text(&r);
    assert!(page.contains("id=\"passkey-signin\""), "{page}");
    assert!(page.contains("name=\"password\""), "{page}");
    // Ingest goes on.
    send(&d, &fixture());
    wait_for_january(&d, 6);
    assert_eq!(d.get("/healthz").unwrap().status, 200);
    d.stop();
}

/// One Server-Sent Events connection, read raw (chunked transfer coding).
struct Sse {
    reader: BufReader<TcpStream>,
    pending: String,
}

impl Sse {
    /// Opens the stream; `Err` carries the status and body of a refusal.
    fn open(d: &Daemon, site: &str) -> Result<Sse, (u16, String)> {
        let mut s = TcpStream::connect(d.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(
            s,
            "GET /api/v1/stats/realtime?site={site} HTTP/1.1\r\nHost: {}\r\n\r\n",
            d.addr
        )
        .unwrap();
        let mut reader = BufReader::new(s);
        let mut status_line = String::new();
        reader.read_line(&mut status_line).unwrap();
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let mut headers = Vec::new();
        loop {
            let mut l = String::new();
            reader.read_line(&mut l).unwrap();
            if l.trim().is_empty() {
                break;
            }
            headers.push(l.trim().to_ascii_lowercase());
        }
        if status != 200 {
            let len = headers
                .iter()
                .find_map(|h| h.strip_prefix("content-length:"))
                .map(|v| v.trim().parse::<usize>().unwrap())
                .unwrap_or(0);
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            return Err((status, String::from_utf8_lossy(&body).into_owned()));
        }
        assert!(
            headers
                .iter()
                .any(|h| h == "content-type: text/event-stream"),
            "{headers:?}"
        );
        Ok(Sse {
            reader,
            pending: String::new(),
        })
    }

    /// The next `data:` event as JSON (comments and `retry:` skipped).
    fn next(&mut self) -> Value {
        loop {
            if let Some(end) = self.pending.find("\n\n") {
                let event: String = self.pending.drain(..end + 2).collect();
                if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) {
                    return serde_json::from_str(data).unwrap();
                }
                continue;
            }
            let mut size = String::new();
            self.reader.read_line(&mut size).expect("an SSE chunk");
            let n = usize::from_str_radix(size.trim(), 16).expect("chunk size");
            assert!(n > 0, "the stream ended");
            let mut chunk = vec![0; n + 2];
            self.reader.read_exact(&mut chunk).unwrap();
            self.pending.push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    }
}

/// Unix milliseconds `secs` seconds ago.
fn now_minus(secs: i64) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    json!(now - secs * 1000)
}

#[test]
fn the_realtime_stream_pushes_fresh_numbers_as_batches_commit() {
    let (d, _tok) = start();
    send(&d, &fixture());
    wait_for_january(&d, 6);
    let mut sse = Sse::open(&d, SITE).expect("stream");
    // On connect: nothing in the last minutes (the fixture is old).
    let first = sse.next();
    assert_eq!(first["live_visitors"], 0, "{first}");
    assert_eq!(first["pageviews"], 0, "{first}");

    // Two visitors now, one of them twice; the stream tells without polling.
    let sent = Instant::now();
    send(
        &d,
        &[
            hit_at("198.51.100.1", now_minus(30), "pageview", "/live"),
            hit_at("198.51.100.1", now_minus(20), "pageview", "/live"),
            hit_at("198.51.100.2", now_minus(10), "pageview", "/"),
        ]
        .join("\n"),
    );
    let event = loop {
        let e = sse.next();
        if e["pageviews"] == 3 {
            break e;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(15),
            "no fresh event: {e}"
        );
    };
    assert_eq!(event["live_visitors"], 2, "{event}");
    assert_eq!(event["site"], SITE);
    assert_eq!(event["top_pages"][0]["value"], "/live", "{event}");
    assert_eq!(event["top_pages"][0]["pageviews"], 2, "{event}");
    assert_eq!(event["per_minute"].as_array().unwrap().len(), 30);
    // The overview's live tile counts them too, as does the JSON overview.
    let o = text(&d.get(&format!("/sites/{SITE}")).unwrap());
    assert_eq!(kpi(&o, "live"), "2");
    let api = d
        .get(&format!("/api/v1/stats/overview?site={SITE}"))
        .unwrap()
        .json();
    assert_eq!(api["live_visitors"], 2, "{api}");

    // Batches every 150 ms for 4.5 s: events follow, at most one a second.
    let mut arrivals = Vec::new();
    let writer = {
        let addr = d.addr;
        std::thread::spawn(move || {
            for i in 0..30 {
                let body = hit_at(
                    &format!("198.51.100.{}", 10 + i),
                    now_minus(1),
                    "pageview",
                    "/x",
                );
                hitvault_tests::ingest(addr, TOKEN, &body);
                std::thread::sleep(Duration::from_millis(150));
            }
        })
    };
    loop {
        let e = sse.next();
        arrivals.push(Instant::now());
        if e["pageviews"] == 33 {
            break;
        }
        assert!(arrivals.len() < 40, "the stream never caught up: {e}");
    }
    writer.join().unwrap();
    // The first one may have waited in the socket: gaps from the second on.
    assert!(arrivals.len() >= 3, "{} events", arrivals.len());
    for pair in arrivals[1..].windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap >= Duration::from_millis(900), "events {gap:?} apart");
    }

    // The number of streams is bounded: MAX_STREAMS in all, then 503.
    let mut more: Vec<Sse> = (1..MAX_STREAMS)
        .map(|i| Sse::open(&d, SITE).unwrap_or_else(|e| panic!("stream {i}: {e:?}")))
        .collect();
    for s in &mut more {
        let _ = s.next();
    }
    let (status, body) = Sse::open(&d, SITE).err().expect("one stream too many");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("too_many_streams"), "{body}");
    // Unknown sites are a named bad parameter.
    let (status, body) = Sse::open(&d, "nowhere.test").err().expect("unknown site");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("\"parameter\":\"site\""), "{body}");
    // Open streams do not hold up a graceful stop.
    d.stop();
    drop((sse, more));
}

/// The screenshot's place: `<target dir>/release/test-artefacts/`.
fn artefact(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("test-artefacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn wait_until(what: &str, mut done: impl FnMut() -> Result<bool, Box<dyn Error>>) -> TestResult {
    let start = Instant::now();
    while !done()? {
        if start.elapsed() > Duration::from_secs(15) {
            return Err(format!("timed out waiting for {what}").into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// No script error recorded by the page, no console error, and every
/// resource the page loaded came from the daemon.
fn assert_clean_page(browser: &Browser, origin: &str) -> TestResult {
    let v = browser.execute(
        "return [document.documentElement.getAttribute('data-js-errors'),
                 document.documentElement.getAttribute('data-js-last-error'),
                 location.href,
                 performance.getEntriesByType('resource').map(e => e.name)]",
        &[],
    )?;
    assert!(v[0].is_null(), "script errors on {}: {}", v[2], v[1]);
    let here = v[2].as_str().unwrap_or_default();
    assert!(here.starts_with(origin), "{here}");
    let resources = v[3].as_array().cloned().unwrap_or_default();
    assert!(!resources.is_empty(), "no resources on {here}");
    for r in resources {
        let r = r.as_str().unwrap_or_default();
        assert!(r.starts_with(origin), "{here} loaded {r}");
    }
    let severe: Vec<_> = browser
        .console_log()?
        .into_iter()
        .filter(|e| e.level == "SEVERE")
        .collect();
    assert!(severe.is_empty(), "console errors: {severe:#?}");
    Ok(())
}

fn kpi_in(browser: &Browser, key: &str) -> Result<String, Box<dyn Error>> {
    let v = browser.execute(
        "const e = document.querySelector('[data-kpi=\"' + arguments[0] + '\"] .value');
         return e ? e.textContent : null;",
        &[json!(key)],
    )?;
    Ok(v.as_str().unwrap_or_default().to_owned())
}

#[test]
fn the_dashboard_in_headless_chromium() -> TestResult {
    let (d, _tok) = start();
    send(&d, &fixture());
    wait_for_january(&d, 6);
    let origin = format!("http://{}/", d.addr);
    let browser = Browser::start(Options::default())?;

    // One day: three visitors.
    browser.navigate(&d.url(&format!(
        "/sites/{SITE}?period=custom&from=2026-01-10&to=2026-01-10"
    )))?;
    assert_eq!(kpi_in(&browser, "visitors")?, "3");
    assert_clean_page(&browser, &origin)?;

    // A preset applies as soon as it is picked: nothing in the last 7 days.
    browser.click(&browser.find_css("#period option[value='7d']")?)?;
    wait_until("the 7-day view", || {
        Ok(browser.current_url()?.contains("period=7d"))
    })?;
    assert_eq!(kpi_in(&browser, "visitors")?, "0");
    assert!(
        !browser.current_url()?.contains("from="),
        "unused dates left in the URL"
    );

    // A custom range through the form: all of January.
    browser.execute(
        "document.getElementById('period').value = 'custom';
         document.getElementById('from').value = '2026-01-01';
         document.getElementById('to').value = '2026-01-31';",
        &[],
    )?;
    browser.click(&browser.find_css("#apply")?)?;
    wait_until("the January view", || {
        Ok(browser.current_url()?.contains("from=2026-01-01"))
    })?;
    assert_eq!(kpi_in(&browser, "visitors")?, "6");
    assert_eq!(kpi_in(&browser, "pageviews")?, "9");

    // A panel row filters the whole page: /pricing had visitors 1, 3 and 5.
    browser.click(&browser.find_css("[data-panel=page] a[data-filter='page:is:/pricing']")?)?;
    wait_until("the filtered view", || {
        Ok(browser.current_url()?.contains("f=page:is:/pricing"))
    })?;
    assert_eq!(kpi_in(&browser, "visitors")?, "3");
    assert_eq!(kpi_in(&browser, "pageviews")?, "3");
    browser.find_css(".chip[data-filter='page:is:/pricing']")?;

    // The chart's tooltip shows a day's numbers.
    let tip = browser.execute(
        "const col = [...document.querySelectorAll('svg.chart .hot rect')]
                       .find(r => r.getAttribute('data-visitors') !== '0');
         col.dispatchEvent(new MouseEvent('mouseenter'));
         const tip = document.querySelector('.chart-card .tip');
         const t = tip.getBoundingClientRect(), c = col.getBoundingClientRect();
         return [tip.hidden, tip.textContent, col.getAttribute('data-label'),
                 Math.abs((t.left + t.right) / 2 - (c.left + c.right) / 2), t.width];",
        &[],
    )?;
    assert_eq!(tip[0], false, "{tip}");
    // Drawn above its column.
    assert!(
        tip[3].as_f64().unwrap() < 2.0 && tip[4].as_f64().unwrap() > 0.0,
        "{tip}"
    );
    let label = tip[2].as_str().unwrap_or_default();
    assert!(
        tip[1].as_str().unwrap_or_default().starts_with(label)
            && tip[1].as_str().unwrap_or_default().contains("Visitors: 2"),
        "{tip}"
    );
    // The live tile is connected to the stream.
    wait_until("the first live update", || {
        Ok(browser
            .execute(
                "return document.querySelector('[data-live-site]').getAttribute('data-live-updates')",
                &[],
            )?
            .is_string())
    })?;
    assert_clean_page(&browser, &origin)?;
    let shot = artefact("dashboard-overview.png");
    browser.screenshot_png(&shot)?;
    let png = std::fs::read(&shot)?;
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");

    // The realtime page updates itself when hits arrive.
    browser.navigate(&d.url(&format!("/sites/{SITE}/realtime")))?;
    wait_until("the realtime stream", || {
        Ok(browser
            .execute(
                "return document.querySelector('[data-live-site]').getAttribute('data-live-updates')",
                &[],
            )?
            .is_string())
    })?;
    assert_eq!(kpi_in(&browser, "live")?, "0");
    send(
        &d,
        &[
            hit_at("198.51.100.1", now_minus(5), "pageview", "/live"),
            hit_at("198.51.100.2", now_minus(5), "pageview", "/live"),
        ]
        .join("\n"),
    );
    wait_until("two live visitors", || Ok(kpi_in(&browser, "live")? == "2"))?;
    let first_page = browser.execute(
        "return document.querySelector('#rt-pages td').textContent",
        &[],
    )?;
    assert_eq!(first_page, "/live");
    assert_clean_page(&browser, &origin)?;
    browser.screenshot_png(&artefact("dashboard-realtime.png"))?;

    // Settings: a goal and a funnel through the forms (a real same-origin
    // POST from the browser passes the cross-site check).
    browser.navigate(&d.url(&format!("/sites/{SITE}/settings")))?;
    browser.execute(
        "document.getElementById('goal-kind').value = 'event';
         document.getElementById('goal-value').value = 'signup';
         document.getElementById('goal-name').value = 'Signed up';",
        &[],
    )?;
    browser.click(&browser.find_css("form[action$='/settings/goals'] button[type=submit]")?)?;
    wait_until("the goal to be added", || {
        Ok(browser.current_url()?.contains("done=goal_added"))
    })?;
    assert_clean_page(&browser, &origin)?;
    browser.execute(
        "document.getElementById('funnel-name').value = 'Pricing';
         document.getElementById('step-kind-1').value = 'page';
         document.getElementById('step-value-1').value = '/';
         document.getElementById('step-kind-2').value = 'page';
         document.getElementById('step-value-2').value = '/pricing';",
        &[],
    )?;
    browser.click(&browser.find_css("form[action$='/settings/funnels'] button[type=submit]")?)?;
    wait_until("the funnel to be added", || {
        Ok(browser.current_url()?.contains("done=funnel_added"))
    })?;
    assert_clean_page(&browser, &origin)?;
    browser.screenshot_png(&artefact("dashboard-settings.png"))?;

    // The goals page for January: visitor 1 of 6 signed up.
    let january = "period=custom&from=2026-01-01&to=2026-01-31";
    browser.navigate(&d.url(&format!("/sites/{SITE}?{january}")))?;
    browser.click(&browser.find_css(".site-nav a[href*='/goals']")?)?;
    wait_until("the goals page", || {
        Ok(browser.current_url()?.contains("/goals?"))
    })?;
    assert!(
        browser.current_url()?.contains("from=2026-01-01"),
        "the view is kept"
    );
    let goal = browser.execute(
        "const r = document.querySelector('tr[data-goal]');
         return [r.querySelector('[data-col=visitors]').textContent,
                 r.querySelector('[data-col=rate]').textContent]",
        &[],
    )?;
    assert_eq!(goal, json!(["1", "17%"]));
    assert_clean_page(&browser, &origin)?;
    browser.screenshot_png(&artefact("dashboard-goals.png"))?;

    // The funnels page: of the 4 visitors who saw /, 1 went on to /pricing.
    browser.navigate(&d.url(&format!("/sites/{SITE}/funnels?{january}")))?;
    let steps = browser.execute(
        "return [...document.querySelectorAll('.funnel-table tbody tr')].map(r =>
           [r.querySelector('[data-col=visitors]').textContent,
            r.querySelector('[data-col=share]').textContent,
            r.querySelector('[data-col=dropoff]').textContent])",
        &[],
    )?;
    assert_eq!(steps, json!([["4", "100%", "–"], ["1", "25%", "3 (75%)"]]));
    assert_clean_page(&browser, &origin)?;
    browser.screenshot_png(&artefact("dashboard-funnels.png"))?;

    // The events explorer: the signup event, then its (absent) properties.
    browser.navigate(&d.url(&format!("/sites/{SITE}/events?{january}")))?;
    browser.click(&browser.find_css("a[data-event='signup']")?)?;
    wait_until("the event's properties", || {
        Ok(browser.current_url()?.contains("event=signup"))
    })?;
    browser.find_css("#keys-h")?;
    assert_clean_page(&browser, &origin)?;
    browser.screenshot_png(&artefact("dashboard-events.png"))?;
    browser.quit()?;

    // On a phone-sized screen nothing is wider than the screen.
    let phone = Browser::start(Options {
        window_size: (390, 844),
        ..Options::default()
    })?;
    phone.navigate(&d.url(&format!(
        "/sites/{SITE}?period=custom&from=2026-01-01&to=2026-01-31"
    )))?;
    let widths = phone.execute(
        "return [document.documentElement.scrollWidth, window.innerWidth]",
        &[],
    )?;
    assert!(
        widths[0].as_u64() <= widths[1].as_u64(),
        "the page scrolls sideways on a phone: {widths}"
    );
    assert_clean_page(&phone, &origin)?;
    phone.screenshot_png(&artefact("dashboard-phone.png"))?;
    for path in ["funnels", "events", "settings"] {
        phone.navigate(&d.url(&format!(
            "/sites/{SITE}/{path}?period=custom&from=2026-01-01&to=2026-01-31"
        )))?;
        let widths = phone.execute(
            "return [document.documentElement.scrollWidth, window.innerWidth]",
            &[],
        )?;
        assert!(
            widths[0].as_u64() <= widths[1].as_u64(),
            "the {path} page scrolls sideways on a phone: {widths}"
        );
        assert_clean_page(&phone, &origin)?;
    }
    phone.quit()?;
    d.stop();
    Ok(())
}

/// A hit of [`explore_fixture`]: `extra` adds fields (referrer, props).
fn hit_with(ip: &str, ts: &str, name: &str, path: &str, extra: Value) -> String {
    let mut h = json!({
        "name": name,
        "url": format!("https://{SITE}{path}"),
        "user_agent": FIREFOX,
        "ip": ip,
        "timestamp": ts,
    });
    if let (Some(h), Some(extra)) = (h.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            h.insert(k.clone(), v.clone());
        }
    }
    h.to_string()
}

/// 2026-02-03, one session each:
/// - visitor 1, from news.example: `/`, `/pricing`, `Signup` {plan: pro, seats: 3};
/// - visitor 2, direct: `/`, `/pricing`, `Signup` {plan: free};
/// - visitor 3, direct: `/`;
/// - visitor 4, direct: `/pricing`.
///
/// Goal `Signup`: visitors 1, 2 of 4 (50 %); goal `/pricing` (and `/p*`):
/// visitors 1, 2, 4 (75 %). Direct only (source is empty): visitors 2, 3, 4,
/// pageviews 4; `Signup` 1 of 3 (33 %), `/pricing` 2 of 3 (67 %).
/// Funnel `/` → `/pricing` → `Signup`: 3, 2 (67 %, 1 dropped off), 2 (67 %).
/// Properties of `Signup`: plan on 2 of 2 events, seats on 1 (50 %); plan's
/// values free and pro, 1 each (50 %).
fn explore_fixture() -> String {
    let news = json!({"referrer": "https://news.example/story"});
    [
        hit_with(
            "192.0.2.1",
            "2026-02-03T10:00:00Z",
            "pageview",
            "/",
            news.clone(),
        ),
        hit_with(
            "192.0.2.1",
            "2026-02-03T10:01:00Z",
            "pageview",
            "/pricing",
            news.clone(),
        ),
        hit_with(
            "192.0.2.1",
            "2026-02-03T10:02:00Z",
            "Signup",
            "/pricing",
            json!({"referrer": "https://news.example/story", "props": {"plan": "pro", "seats": 3}}),
        ),
        hit_with(
            "192.0.2.2",
            "2026-02-03T10:00:00Z",
            "pageview",
            "/",
            json!({}),
        ),
        hit_with(
            "192.0.2.2",
            "2026-02-03T10:05:00Z",
            "pageview",
            "/pricing",
            json!({}),
        ),
        hit_with(
            "192.0.2.2",
            "2026-02-03T10:06:00Z",
            "Signup",
            "/pricing",
            json!({"props": {"plan": "free"}}),
        ),
        hit_with(
            "192.0.2.3",
            "2026-02-03T11:00:00Z",
            "pageview",
            "/",
            json!({}),
        ),
        hit_with(
            "192.0.2.4",
            "2026-02-03T12:00:00Z",
            "pageview",
            "/pricing",
            json!({}),
        ),
    ]
    .join("\n")
}

/// POSTs a settings form as a browser on the dashboard's own page would.
fn post_form(d: &Daemon, path: &str, body: &str) -> Reply {
    let origin = format!("http://{}", d.addr);
    d.request(
        "POST",
        path,
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Origin", &origin),
            ("Sec-Fetch-Site", "same-origin"),
        ],
        body.as_bytes(),
    )
    .unwrap()
}

/// The goals or funnels of the site, from the definitions API.
fn defs(d: &Daemon, what: &str) -> Vec<Value> {
    let r = d.get(&format!("/api/v1/sites/{SITE}/{what}")).unwrap();
    assert_eq!(r.status, 200, "{}", text(&r));
    r.json()[what].as_array().cloned().unwrap_or_default()
}

/// The text of the cell `col` in the row `row` (an attribute selector's
/// part, such as `data-goal="3"`).
fn cell(html: &str, row: &str, col: &str) -> String {
    let r = html
        .split(&format!("<tr {row}"))
        .nth(1)
        .unwrap_or_else(|| panic!("no row {row}"));
    let r = &r[..r.find("</tr>").unwrap()];
    let c = r
        .split(&format!("data-col=\"{col}\">"))
        .nth(1)
        .unwrap_or_else(|| panic!("no cell {col} in {r}"));
    c[..c.find("</td>").unwrap()].to_owned()
}

#[test]
fn goals_funnels_events_and_the_settings_forms() {
    let (d, _tok) = start();
    send(&d, &explore_fixture());
    let t = Instant::now();
    while d
        .get(&format!(
            "/api/v1/stats/overview?site={SITE}&from=2026-02-03&to=2026-02-04"
        ))
        .unwrap()
        .json()["kpis"]["visitors"]
        != 4
    {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the hits did not arrive"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let base = format!("/sites/{SITE}");
    let day = "period=custom&from=2026-02-03&to=2026-02-03";

    // Empty pages say how to begin.
    let g = text(&d.get(&format!("{base}/goals?{day}")).unwrap());
    assert!(g.contains("No goals yet"), "{g}");
    let f = text(&d.get(&format!("{base}/funnels?{day}")).unwrap());
    assert!(f.contains("No funnels yet"), "{f}");

    // Goals through the settings form: 303 back to the settings page.
    for (body, done) in [
        ("kind=event&value=Signup&name=Signed+up", "goal_added"),
        ("kind=page&value=%2Fpricing&name=", "goal_added"),
        ("kind=page&value=%2Fp*&name=P+pages", "goal_added"),
    ] {
        let r = post_form(&d, &format!("{base}/settings/goals"), body);
        assert_eq!(r.status, 303, "{body}: {}", text(&r));
        assert_eq!(
            r.header("location"),
            Some(format!("{base}/settings?done={done}#goals").as_str())
        );
    }
    let s = text(&d.get(&format!("{base}/settings?done=goal_added")).unwrap());
    assert!(s.contains("Goal added."), "{s}");
    assert!(s.contains("Signed up") && s.contains("P pages"), "{s}");
    assert_eq!(defs(&d, "goals").len(), 3);

    // Refusals are shown on the page, with the reason and the values typed.
    for (body, status, needle) in [
        (
            "kind=event&value=Other&name=Signed+up",
            409,
            "already exists",
        ),
        ("kind=page&value=pricing&name=", 400, "starts with"),
        ("kind=planet&value=Mars&name=", 400, "not a kind of goal"),
        ("kind=event&value=&name=", 400, "is empty"),
    ] {
        let r = post_form(&d, &format!("{base}/settings/goals"), body);
        assert_eq!(r.status, status, "{body}");
        let page = text(&r);
        assert!(page.contains("role=\"alert\""), "{body}: {page}");
        assert!(page.contains(needle), "{body}: {page}");
        assert_secure_html(body, &r);
    }
    let r = post_form(
        &d,
        &format!("{base}/settings/goals"),
        "kind=page&value=pricing&name=Kept",
    );
    assert!(
        text(&r).contains("value=\"Kept\""),
        "the typed name is kept"
    );
    let big = format!("kind=event&value={}", "x".repeat(17 * 1024));
    assert_eq!(
        post_form(&d, &format!("{base}/settings/goals"), &big).status,
        413
    );
    assert_eq!(defs(&d, "goals").len(), 3, "no refused goal was stored");

    // Cross-site posts are refused before anything is stored.
    for headers in [
        vec![
            ("Origin", "http://evil.test"),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        vec![("Sec-Fetch-Site", "cross-site")],
        vec![("Sec-Fetch-Site", "same-site")],
        vec![("Origin", "null")],
    ] {
        let r = d
            .request(
                "POST",
                &format!("{base}/settings/goals"),
                &headers,
                b"kind=event&value=Evil",
            )
            .unwrap();
        assert_eq!(r.status, 403, "{headers:?}");
        let page = text(&r);
        assert!(page.contains("Cross-site request refused"), "{page}");
        assert!(page.contains("Refused: "), "{page}");
    }
    assert_eq!(
        defs(&d, "goals").len(),
        3,
        "a cross-site post stored a goal"
    );

    // The goals page: every goal with its numbers, by name.
    let g = text(&d.get(&format!("{base}/goals?{day}")).unwrap());
    assert_secure_html("goals", &d.get(&format!("{base}/goals?{day}")).unwrap());
    let ids: Vec<(String, u64)> = defs(&d, "goals")
        .iter()
        .map(|g| {
            (
                g["name"].as_str().unwrap().to_owned(),
                g["id"].as_u64().unwrap(),
            )
        })
        .collect();
    let id = |name: &str| ids.iter().find(|(n, _)| n == name).unwrap().1;
    for (name, visitors, conversions, rate) in [
        ("Signed up", "2", "2", "50%"),
        ("/pricing", "3", "3", "75%"),
        ("P pages", "3", "3", "75%"),
    ] {
        let row = format!("data-goal=\"{}\"", id(name));
        assert_eq!(cell(&g, &row, "visitors"), visitors, "{name}");
        assert_eq!(cell(&g, &row, "conversions"), conversions, "{name}");
        assert_eq!(cell(&g, &row, "rate"), rate, "{name}");
    }
    // An exact goal links to the overview filtered by it.
    assert!(g.contains("data-filter=\"event:is:Signup\""), "{g}");
    // The navigation carries the view to the other view pages.
    assert!(
        g.contains(&format!(
            "href=\"{base}/funnels?{}\"",
            day.replace('&', "&amp;")
        )),
        "{g}"
    );
    let o = text(&d.get(&format!("{base}?{day}")).unwrap());
    assert!(
        o.contains(&format!(
            "href=\"{base}/goals?{}\"",
            day.replace('&', "&amp;")
        )),
        "the overview links to the goals page"
    );
    // The same filters as the overview: direct traffic only.
    let direct = text(&d.get(&format!("{base}/goals?{day}&f=source:is:")).unwrap());
    assert_eq!(
        cell(
            &direct,
            &format!("data-goal=\"{}\"", id("Signed up")),
            "rate"
        ),
        "33%"
    );
    assert_eq!(
        cell(
            &direct,
            &format!("data-goal=\"{}\"", id("/pricing")),
            "rate"
        ),
        "67%"
    );
    assert!(
        direct.contains("class=\"chip\" data-filter=\"source:is:\""),
        "{direct}"
    );
    assert!(
        direct.contains("<strong>Direct / none</strong>"),
        "{direct}"
    );

    // CSV downloads.
    let csv = |q: &str| csv_download(&d, &base, q);
    let (disposition, goals_csv) = csv(&format!("panel=goals&{day}"));
    assert_eq!(
        disposition,
        "attachment; filename=\"stats.test-goals-2026-02-03-2026-02-03.csv\""
    );
    assert_eq!(
        goals_csv,
        "goal,kind,value,visitors,conversions,conversion_rate\r\n\
         /pricing,page,/pricing,3,3,0.7500\r\nP pages,page,/p*,3,3,0.7500\r\n\
         Signed up,event,Signup,2,2,0.5000\r\n"
    );

    // A funnel through the form (empty step rows are skipped).
    let r = post_form(
        &d,
        &format!("{base}/settings/funnels"),
        "name=Buy&kind=page&value=%2F&kind=page&value=%2Fpricing&kind=event&value=Signup\
         &kind=event&value=&kind=page&value=",
    );
    assert_eq!(r.status, 303, "{}", text(&r));
    for (body, status, needle) in [
        (
            "name=Buy&kind=page&value=%2F&kind=page&value=%2Fx",
            409,
            "already exists",
        ),
        (
            "name=One&kind=page&value=%2F&kind=page&value=",
            400,
            "2 to 8 steps",
        ),
        (
            "name=Bad&kind=page&value=%2F&kind=page&value=x",
            400,
            "starts with",
        ),
    ] {
        let r = post_form(&d, &format!("{base}/settings/funnels"), body);
        assert_eq!(r.status, status, "{body}");
        let page = text(&r);
        assert!(
            page.contains("role=\"alert\"") && page.contains(needle),
            "{body}: {page}"
        );
    }
    let funnels = defs(&d, "funnels");
    assert_eq!(funnels.len(), 1);
    let fid = funnels[0]["id"].as_u64().unwrap();
    assert_eq!(funnels[0]["steps"].as_array().unwrap().len(), 3);

    // The funnels page: the first funnel when none is picked.
    let r = d.get(&format!("{base}/funnels?{day}")).unwrap();
    assert_eq!(r.status, 200);
    assert_secure_html("funnels", &r);
    let f = text(&r);
    for (step, visitors, share, dropoff) in [
        ("1", "3", "100%", None),
        ("2", "2", "67%", Some("1 (33%)")),
        ("3", "2", "67%", Some("0 (0%)")),
    ] {
        let row = format!("data-step=\"{step}\"");
        assert_eq!(cell(&f, &row, "visitors"), visitors, "step {step}");
        assert_eq!(cell(&f, &row, "share"), share, "step {step}");
        if let Some(drop) = dropoff {
            assert_eq!(cell(&f, &row, "dropoff"), drop, "step {step}");
        }
    }
    // The chart writes each step's numbers as text, not by colour alone.
    assert!(f.contains("class=\"funnel-chart\""), "{f}");
    assert!(f.contains(">2 · 67%</text>"), "{f}");
    assert!(f.contains("1 dropped off"), "{f}");
    let picked = text(
        &d.get(&format!("{base}/funnels?{day}&funnel={fid}"))
            .unwrap(),
    );
    assert!(picked.contains("aria-current=\"page\">Buy</a>"), "{picked}");
    let (_, funnel_csv) = csv(&format!("panel=funnel&funnel={fid}&{day}"));
    assert_eq!(
        funnel_csv,
        "step,kind,value,visitors,visits,share_of_step_1,dropoff,dropoff_rate\r\n\
         1,page,/,3,3,1.0000,0,0.0000\r\n2,page,/pricing,2,2,0.6667,1,0.3333\r\n\
         3,event,Signup,2,2,0.6667,0,0.0000\r\n"
    );
    assert_eq!(
        d.get(&format!("{base}/funnels?funnel=999")).unwrap().status,
        404
    );
    assert_eq!(
        d.get(&format!("{base}/funnels?funnel=abc")).unwrap().status,
        400
    );

    // The events explorer: events, then keys, then values.
    let r = d.get(&format!("{base}/events?{day}")).unwrap();
    assert_eq!(r.status, 200);
    assert_secure_html("events", &r);
    let e = text(&r);
    assert!(e.contains("data-event=\"Signup\""), "{e}");
    assert!(e.contains("data-filter=\"event:is:Signup\""), "{e}");
    let e = text(&d.get(&format!("{base}/events?{day}&event=Signup")).unwrap());
    assert!(e.contains("Properties of Signup"), "{e}");
    assert!(
        e.contains("data-key=\"plan\"") && e.contains("data-key=\"seats\""),
        "{e}"
    );
    let e = text(
        &d.get(&format!("{base}/events?{day}&event=Signup&key=plan"))
            .unwrap(),
    );
    assert!(e.contains("Values of plan"), "{e}");
    let (_, keys_csv) = csv(&format!("panel=props&event=Signup&{day}"));
    assert_eq!(
        keys_csv,
        "key,visitors,events,share\r\nplan,2,2,1.0000\r\nseats,1,1,0.5000\r\n"
    );
    let (_, values_csv) = csv(&format!("panel=props&event=Signup&key=plan&{day}"));
    assert_eq!(
        values_csv,
        "value,visitors,events,share\r\nfree,1,1,0.5000\r\npro,1,1,0.5000\r\n"
    );

    // Each property value is a link that filters the page by it, keeping the
    // chosen event and key; the filter shows as a chip.
    let free_link = format!(
        "href=\"{base}/events?{}&amp;f=prop:plan:is:free&amp;event=Signup&amp;key=plan\" \
         data-filter=\"prop:plan:is:free\"",
        day.replace('&', "&amp;")
    );
    assert!(e.contains(&free_link), "{e}");
    assert!(e.contains("data-filter=\"prop:plan:is:pro\""), "{e}");
    let free = d
        .get(&format!(
            "{base}/events?{day}&f=prop:plan:is:free&event=Signup&key=plan"
        ))
        .unwrap();
    assert_eq!(free.status, 200);
    assert_secure_html("events filtered by a property", &free);
    let free = text(&free);
    assert!(
        free.contains("class=\"chip\" data-filter=\"prop:plan:is:free\"")
            && free.contains("Property plan <span class=\"op\">is</span> <strong>free</strong>"),
        "{free}"
    );
    // Filtered, the values of plan are free alone; the pro link is gone.
    assert!(!free.contains("data-filter=\"prop:plan:is:pro\""), "{free}");
    let (_, free_csv) = csv(&format!(
        "panel=props&event=Signup&key=plan&{day}&f=prop:plan:is:free"
    ));
    assert_eq!(
        free_csv,
        "value,visitors,events,share\r\nfree,1,1,1.0000\r\n"
    );
    // The same filter on every page: the overview (visitor 2's Signup: one
    // visitor, no pageview, one event, one visit), the goals and the funnel
    // (visitor 2's visit went / then /pricing then Signup).
    let o_free = text(&d.get(&format!("{base}?{day}&f=prop:plan:is:free")).unwrap());
    assert_eq!(kpi(&o_free, "visitors"), "1");
    assert_eq!(kpi(&o_free, "pageviews"), "0");
    assert_eq!(kpi(&o_free, "events"), "1");
    assert_eq!(kpi(&o_free, "sessions"), "1");
    assert!(
        o_free.contains("data-filter=\"prop:plan:is:free\""),
        "{o_free}"
    );
    let g_free = text(
        &d.get(&format!("{base}/goals?{day}&f=prop:plan:is:free"))
            .unwrap(),
    );
    let signed = format!("data-goal=\"{}\"", id("Signed up"));
    assert_eq!(cell(&g_free, &signed, "rate"), "100%");
    let pricing = format!("data-goal=\"{}\"", id("/pricing"));
    assert_eq!(cell(&g_free, &pricing, "visitors"), "0");
    let f_free = text(
        &d.get(&format!(
            "{base}/funnels?{day}&funnel={fid}&f=prop:plan:is:free"
        ))
        .unwrap(),
    );
    for step in 1..=3 {
        assert_eq!(
            cell(&f_free, &format!("data-step=\"{step}\""), "visitors"),
            "1",
            "step {step}"
        );
    }
    // Bad property filters are a 400 page naming the parameter.
    let long = format!("f=prop:{}:is:x", "k".repeat(65));
    for (bad, why) in [
        ("f=prop::is:x", "the property key is empty"),
        (long.as_str(), "the longest is 64"),
    ] {
        let r = d.get(&format!("{base}/events?{day}&{bad}")).unwrap();
        assert_eq!(r.status, 400, "{bad}");
        let page = text(&r);
        assert!(
            page.contains("Parameter &quot;f&quot;") && page.contains(why),
            "{bad}: {page}"
        );
    }

    // "Is empty": the Direct / none row is a filter link, applied to every number.
    assert!(
        o.contains("data-filter=\"source:is:\""),
        "no link on the direct row"
    );
    let direct = text(&d.get(&format!("{base}?{day}&f=source:is:")).unwrap());
    assert_eq!(kpi(&direct, "visitors"), "3");
    assert_eq!(kpi(&direct, "pageviews"), "4");
    let api = d
        .get(&format!(
            "/api/v1/stats/overview?site={SITE}&from=2026-02-03&to=2026-02-04&filter=source:is:"
        ))
        .unwrap()
        .json();
    assert_eq!(api["kpis"]["visitors"], 3, "{api}");
    let api = d
        .get(&format!(
            "/api/v1/stats/overview?site={SITE}&from=2026-02-03&to=2026-02-04&filter=source:is_not:"
        ))
        .unwrap()
        .json();
    assert_eq!(api["kpis"]["visitors"], 1, "{api}");

    // Deleting through the forms.
    let gid = id("P pages");
    let r = post_form(&d, &format!("{base}/settings/goals/{gid}/delete"), "");
    assert_eq!(r.status, 303);
    assert_eq!(defs(&d, "goals").len(), 2);
    assert_eq!(
        post_form(&d, &format!("{base}/settings/goals/{gid}/delete"), "").status,
        404
    );
    let r = post_form(&d, &format!("{base}/settings/funnels/{fid}/delete"), "");
    assert_eq!(r.status, 303);
    assert!(defs(&d, "funnels").is_empty());
    let s = text(
        &d.get(&format!("{base}/settings?done=funnel_deleted"))
            .unwrap(),
    );
    assert!(
        s.contains("Funnel deleted.") && s.contains("No funnels yet."),
        "{s}"
    );

    // The realtime lists as CSV.
    send(
        &d,
        &[
            hit_at("198.51.100.1", now_minus(30), "pageview", "/live"),
            hit_at("198.51.100.2", now_minus(20), "pageview", "/live"),
        ]
        .join("\n"),
    );
    let t = Instant::now();
    loop {
        let (disposition, pages) = csv("panel=realtime_pages");
        if pages == "page,visitors,pageviews\r\n/live,2,2\r\n" {
            assert!(
                disposition.starts_with("attachment; filename=\"stats.test-realtime_pages-"),
                "{disposition}"
            );
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "{pages}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, sources) = csv("panel=realtime_sources");
    assert_eq!(sources, "source,visitors,pageviews\r\n,2,2\r\n");
    let rt = text(&d.get(&format!("{base}/realtime")).unwrap());
    assert!(rt.contains("export.csv?panel=realtime_pages"), "{rt}");
    d.stop();
}
