//! The tracker in a real browser.
//!
//! Debian's headless Chromium, driven over WebDriver, visits pages served by a
//! throwaway static server (a different origin from the daemon, as on a real
//! site) that embed `/hv.js` from the real daemon. After a graceful stop, the
//! store must hold exactly what the visit did, no more (deduplicated SPA
//! navigation, nothing under Do Not Track) and no less.
//!
//! Needs `chromium` and `chromium-driver` (Debian packages; `tests/run` installs
//! them). Without them the tests fail: they are never skipped.

use hitvault_tests::webdriver::{Browser, Options};
use hitvault_tests::{CHROME_UA, Daemon};
use std::collections::HashMap;
use std::error::Error;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const SITE: &str = "test.example";

/// How long a hit may take from the browser to the daemon's counters.
const HIT_TIMEOUT: Duration = Duration::from_secs(10);

/// After the expected count is reached: time for an unexpected extra hit to show up.
const SETTLE: Duration = Duration::from_millis(750);

type TestResult = Result<(), Box<dyn Error>>;

#[test]
fn tracker_in_headless_chromium() -> TestResult {
    let daemon = Daemon::start(&[("HITVAULT_SITES", SITE)]);
    let tracker = format!(
        r#"<script defer src="{}" data-domain="{SITE}" data-outbound data-downloads></script>"#,
        daemon.url("/hv.js")
    );
    let pages = StaticSite::start(|port| {
        // Another host than the page's (127.0.0.1:PORT), served by the same server.
        let outbound = format!("http://localhost:{port}/elsewhere.html");
        vec![
            (
                "/index.html",
                page(
                    "index",
                    &tracker,
                    r#"<a id="to-page2" href="/page2.html">Page 2</a>"#,
                ),
            ),
            (
                "/page2.html",
                page(
                    "page 2",
                    &tracker,
                    &format!(
                        r#"<button id="signup" onclick="hitvault('event','Signup',{{plan:'pro'}})">Sign up</button>
                           <a id="outbound" href="{outbound}">Elsewhere</a>
                           <a id="download" href="/files/report.pdf?token=secret#p2">Report</a>"#
                    ),
                ),
            ),
            (
                "/elsewhere.html",
                page("elsewhere", "", "<p>not tracked</p>"),
            ),
        ]
    })?;
    let browser = Browser::start(Options {
        // Headless Chromium says "HeadlessChrome", which the bot filter drops.
        user_agent: Some(CHROME_UA.into()),
        ..Options::default()
    })?;
    let accepted = |n| wait_for_accepted(&daemon, &browser, n);

    // 1. Landing from a newsletter campaign.
    browser.navigate(&pages.url("/index.html?utm_source=newsletter&utm_campaign=nov"))?;
    accepted(1);
    let (width, language) = {
        let v = browser.execute("return [window.innerWidth, navigator.language]", &[])?;
        (
            v[0].to_string(),
            v[1].as_str().unwrap_or_default().to_string(),
        )
    };

    // 2. An ordinary link to another page of the site (internal referrer).
    browser.click(&browser.find_css("#to-page2")?)?;
    wait_until("page 2 to load", || {
        Ok(browser.current_url()?.ends_with("/page2.html"))
    })?;
    accepted(2);

    // 3. SPA navigation, twice to the same URL: one pageview.
    browser.execute("history.pushState({}, '', '/spa/route')", &[])?;
    browser.execute("history.pushState({}, '', '/spa/route')", &[])?;
    accepted(3);

    // 4. A custom event with a property, from an inline onclick.
    browser.click(&browser.find_css("#signup")?)?;
    accepted(4);

    // 5. A file download, middle-clicked (the page stays): its URL is sent
    // without the query string and fragment.
    browser.execute(
        "document.getElementById('download').dispatchEvent(new MouseEvent('auxclick', {bubbles: true, button: 1}))",
        &[],
    )?;
    accepted(5);

    // 6. An outbound link: the beacon must survive the navigation it starts.
    browser.click(&browser.find_css("#outbound")?)?;
    accepted(6);
    thread::sleep(SETTLE);
    assert_eq!(
        accepted_hits(&daemon),
        6,
        "exactly six hits (the second pushState is deduplicated)"
    );
    assert_no_tracker_errors(&browser)?;
    browser.quit()?;

    let stopped = daemon.stop();
    let rows = stopped.query(
        "SELECT site, kind, name, path, referrer, source, utm_source, utm_medium, utm_campaign, \
         browser, device, language, screen_width, visitor FROM hits_v ORDER BY ts, id",
    );
    let got: Vec<[&str; 4]> = rows
        .iter()
        .map(|r| [r[1].as_str(), r[2].as_str(), r[3].as_str(), r[4].as_str()])
        .collect();
    assert_eq!(
        got,
        [
            ["pageview", "pageview", "/index.html", ""],
            ["pageview", "pageview", "/page2.html", ""],
            ["pageview", "pageview", "/spa/route", ""],
            ["event", "Signup", "/spa/route", ""],
            ["event", "File Download", "/spa/route", ""],
            ["event", "Outbound Link: Click", "/spa/route", ""],
        ],
        "kind, name, path, referrer of every stored hit, in order (internal referrers are empty)"
    );
    let landing = &rows[0];
    assert_eq!(
        [&landing[5], &landing[6], &landing[7], &landing[8]],
        ["newsletter", "newsletter", "", "nov"],
        "source, utm_source, utm_medium, utm_campaign of the landing pageview"
    );
    // Page 2's URL has no UTM, but it belongs to the same visit, which
    // came from the newsletter: every hit stores the visit's acquisition.
    for row in &rows[1..] {
        assert_eq!(
            [&row[5], &row[6], &row[8]],
            ["newsletter", "newsletter", "nov"],
            "the visit's source, utm_source and utm_campaign on {row:?}"
        );
    }
    let visitor = &landing[13];
    assert!(
        !visitor.is_empty() && visitor != "0",
        "visitor hash is set: {visitor:?}"
    );
    for row in &rows {
        assert_eq!(row[0], SITE, "site of {row:?}");
        assert_eq!(
            [&row[9], &row[10]],
            ["Chrome", "desktop"],
            "browser and device of {row:?}"
        );
        assert_eq!(row[11], language, "language of {row:?}");
        assert_eq!(row[12], width, "screen width of {row:?}");
        assert_eq!(
            &row[13], visitor,
            "one visitor for the whole visit: {row:?}"
        );
    }

    let props = stopped.query(
        "SELECT h.name, p.key, p.value FROM props_v p JOIN hits_v h ON h.id = p.id \
         ORDER BY h.ts, p.key",
    );
    assert_eq!(
        props,
        [
            vec!["Signup".to_string(), "plan".into(), "pro".into()],
            vec![
                "File Download".into(),
                "url".into(),
                format!("http://127.0.0.1:{}/files/report.pdf", pages.addr.port()),
            ],
            vec![
                "Outbound Link: Click".into(),
                "url".into(),
                format!("http://localhost:{}/elsewhere.html", pages.addr.port()),
            ],
        ]
    );
    Ok(())
}

/// Engagement: a visitor reads a tall page, scrolls part of it, and leaves.
/// The page turning hidden (the navigation away) makes the tracker send one
/// `engagement` with the time the page was visible and the deepest point
/// seen; the daemon stores it with its pageview, never as an event. A SPA
/// navigation first reports the page it leaves.
#[test]
fn tracker_reports_engagement_when_the_page_is_hidden() -> TestResult {
    let daemon = Daemon::start(&[("HITVAULT_SITES", SITE)]);
    let tracker = format!(
        r#"<script defer src="{}" data-domain="{SITE}"></script>"#,
        daemon.url("/hv.js")
    );
    let pages = StaticSite::start(|_| {
        vec![
            (
                "/long.html",
                page(
                    "long",
                    &tracker,
                    r#"<div style="height:4000px">A long read</div><a id="away" href="/away.html">Away</a>"#,
                ),
            ),
            ("/away.html", page("away", "", "<p>not tracked</p>")),
        ]
    })?;
    let browser = Browser::start(Options {
        user_agent: Some(CHROME_UA.into()),
        ..Options::default()
    })?;
    let engaged = |n: u64| {
        wait_until("the engagement to be accepted", || {
            Ok(daemon.metric("hitvault_engagements_accepted_total") >= n)
        })
    };

    browser.navigate(&pages.url("/long.html"))?;
    wait_for_accepted(&daemon, &browser, 1);
    // Read for a while, scrolled down 1000 px, then back to the top: the
    // deepest point counts, not the last.
    let v = browser.execute(
        "window.scrollTo(0, 1000); return [window.innerHeight, document.documentElement.scrollHeight]",
        &[],
    )?;
    let (inner, height) = (v[0].as_f64().unwrap(), v[1].as_f64().unwrap());
    let deepest = ((1000.0 + inner) * 100.0 / height).floor();
    thread::sleep(Duration::from_millis(1500));
    browser.execute("window.scrollTo(0, 0)", &[])?;
    assert_eq!(
        daemon.metric("hitvault_engagements_accepted_total"),
        0,
        "nothing is sent while the page is read"
    );
    // An SPA navigation reports the page it leaves before its pageview.
    browser.execute("history.pushState({}, '', '/next.html')", &[])?;
    engaged(1)?;
    wait_for_accepted(&daemon, &browser, 2);
    thread::sleep(Duration::from_millis(300));
    // Leaving the page hides it: the second engagement goes out by beacon.
    browser.navigate(&pages.url("/away.html"))?;
    engaged(2)?;
    thread::sleep(SETTLE);
    assert_eq!(daemon.metric("hitvault_engagements_accepted_total"), 2);
    assert_eq!(accepted_hits(&daemon), 2, "engagements are not hits");
    assert_no_tracker_errors(&browser)?;
    browser.quit()?;

    let stopped = daemon.stop();
    let rows = stopped.query(
        "SELECT h.path, e.engaged_ms, e.scroll_depth FROM engagements e \
         JOIN hits h ON h.id = e.hit_id ORDER BY e.id",
    );
    assert_eq!(rows.len(), 2, "{rows:?}");
    let first: Vec<f64> = rows[0][1..].iter().map(|v| v.parse().unwrap()).collect();
    assert_eq!(rows[0][0], "/long.html", "{rows:?}");
    assert!(
        (1500.0..10_000.0).contains(&first[0]),
        "engaged time of the first view: {rows:?}"
    );
    assert_eq!(first[1], deepest, "deepest scroll of the first view");
    assert_eq!(rows[1][0], "/next.html", "the SPA view: {rows:?}");
    let second: u64 = rows[1][1].parse()?;
    assert!((300..10_000).contains(&second), "{rows:?}");
    // Two pageviews; nothing stored as an event.
    assert_eq!(
        stopped.query("SELECT kind, path FROM hits_v ORDER BY id"),
        [
            vec!["pageview".to_string(), "/long.html".into()],
            vec!["pageview".to_string(), "/next.html".into()],
        ]
    );
    Ok(())
}

/// Do Not Track and Global Privacy Control are honoured by default; `data-dnt="false"`
/// opts out of that. The positive control at the end proves that silence before it
/// was the tracker's doing, not a broken pipeline.
#[test]
fn tracker_sends_nothing_under_dnt() -> TestResult {
    let daemon = Daemon::start(&[("HITVAULT_SITES", SITE)]);
    let src = daemon.url("/hv.js");
    // Inline scripts run before the deferred tracker, so the overrides are in place when it reads them.
    let dnt = "<script>Object.defineProperty(navigator, 'doNotTrack', { get: () => '1' })</script>";
    let gpc = "<script>Object.defineProperty(navigator, 'globalPrivacyControl', { get: () => true })</script>";
    let tracker =
        format!(r#"<script defer src="{src}" data-domain="{SITE}" data-outbound></script>"#);
    let tracker_dnt_off =
        format!(r#"<script defer src="{src}" data-domain="{SITE}" data-dnt="false"></script>"#);
    let body = r#"<button id="signup" onclick="hitvault('event','Signup')">Sign up</button>
                  <a id="outbound" href="https://elsewhere.invalid/">Elsewhere</a>"#;
    let pages = StaticSite::start(|_| {
        vec![
            ("/dnt.html", page("dnt", &format!("{dnt}{tracker}"), body)),
            ("/gpc.html", page("gpc", &format!("{gpc}{tracker}"), body)),
            (
                "/dnt-off.html",
                page("dnt off", &format!("{dnt}{tracker_dnt_off}"), body),
            ),
        ]
    })?;
    let browser = Browser::start(Options {
        user_agent: Some(CHROME_UA.into()),
        ..Options::default()
    })?;

    for (path, flag) in [
        ("/dnt.html", "navigator.doNotTrack"),
        ("/gpc.html", "navigator.globalPrivacyControl"),
    ] {
        browser.navigate(&pages.url(path))?;
        // The override took effect and the tracker ran (hitvault is its function, not undefined).
        let state = browser.execute(&format!("return [String({flag}), typeof hitvault]"), &[])?;
        assert_eq!(state[1], "function", "{path}: tracker loaded");
        assert!(
            state[0] == "1" || state[0] == "true",
            "{path}: {flag} overridden: {state}"
        );
        browser.click(&browser.find_css("#signup")?)?;
        // A middle click does not navigate away, so the page stays to (not) send it.
        browser.execute(
            "document.getElementById('outbound').dispatchEvent(new MouseEvent('auxclick', {bubbles: true, button: 1}))",
            &[],
        )?;
    }
    // The positive control: the same DNT page with data-dnt="false" is counted.
    browser.navigate(&pages.url("/dnt-off.html"))?;
    wait_for_accepted(&daemon, &browser, 1);
    thread::sleep(SETTLE);
    assert_eq!(
        accepted_hits(&daemon),
        1,
        "only the data-dnt=\"false\" pageview was sent"
    );
    assert_no_tracker_errors(&browser)?;
    browser.quit()?;

    let stopped = daemon.stop();
    let rows = stopped.query("SELECT kind, path FROM hits_v");
    assert_eq!(rows, [vec!["pageview".to_string(), "/dnt-off.html".into()]]);
    Ok(())
}

fn page(title: &str, head: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title>\
         <link rel=\"icon\" href=\"data:,\">{head}</head>\n\
         <body>{body}</body></html>\n"
    )
}

/// Hits the daemon has accepted so far (all label sets of the counter).
fn accepted_hits(daemon: &Daemon) -> u64 {
    daemon.metric("hitvault_hits_accepted_total")
}

/// Polls /metrics until at least `n` hits were accepted; on timeout, panics
/// with what explains it: a screenshot, the counters, the browser console.
fn wait_for_accepted(daemon: &Daemon, browser: &Browser, n: u64) {
    let start = Instant::now();
    loop {
        let count = accepted_hits(daemon);
        if count >= n {
            return;
        }
        if start.elapsed() > HIT_TIMEOUT {
            let shot =
                std::env::temp_dir().join(format!("hitvault-browser-{}.png", std::process::id()));
            let shot = match browser.screenshot_png(&shot) {
                Ok(()) => shot.display().to_string(),
                Err(e) => format!("(no screenshot: {e})"),
            };
            let console = browser.console_log().unwrap_or_default();
            // Dropped (bot, excluded address...) and refused hits say where the others went.
            let metrics = daemon
                .get("/metrics")
                .map(|r| String::from_utf8_lossy(&r.body).into_owned());
            let counters: Vec<&str> = match &metrics {
                Ok(text) => text
                    .lines()
                    .filter(|l| l.starts_with("hitvault_") && !l.ends_with(" 0"))
                    .collect(),
                Err(_) => Vec::new(),
            };
            panic!(
                "{count} hits accepted after {HIT_TIMEOUT:?}, expected {n}\npage: {}\nscreenshot: {shot}\n\
                 non-zero counters: {counters:#?}\nconsole: {console:#?}",
                browser.current_url().unwrap_or_default(),
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> Result<bool, Box<dyn Error>>) -> TestResult {
    let start = Instant::now();
    while !done()? {
        if start.elapsed() > HIT_TIMEOUT {
            return Err(format!("timed out waiting for {what}").into());
        }
        thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// No console message about the tracker: no script error in hv.js, no CORS
/// complaint about /api/collect, no failed beacon.
fn assert_no_tracker_errors(browser: &Browser) -> TestResult {
    let log = browser.console_log()?;
    let about_tracker: Vec<_> = log
        .iter()
        .filter(|e| e.message.contains("hv.js") || e.message.contains("/api/collect"))
        .collect();
    assert!(
        about_tracker.is_empty(),
        "browser console mentions the tracker: {about_tracker:#?}"
    );
    Ok(())
}

/// A static HTTP server for the test pages, on 127.0.0.1 and its own port, one
/// thread per connection, `Connection: close`. Unknown paths get a 404.
struct StaticSite {
    addr: SocketAddr,
}

impl StaticSite {
    /// `pages` receives the port (for absolute links back to this server).
    fn start<P: Into<String>>(
        pages: impl FnOnce(u16) -> Vec<(&'static str, P)>,
    ) -> Result<StaticSite, Box<dyn Error>> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let pages: Arc<HashMap<&'static str, String>> = Arc::new(
            pages(addr.port())
                .into_iter()
                .map(|(path, html)| (path, html.into()))
                .collect(),
        );
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let pages = Arc::clone(&pages);
                thread::spawn(move || serve_one(stream, &pages));
            }
        });
        Ok(StaticSite { addr })
    }

    fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.addr)
    }
}

fn serve_one(mut stream: TcpStream, pages: &HashMap<&'static str, String>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    // Chromium may open a connection and never use it: the read timeout ends those.
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let target = head.split_whitespace().nth(1).unwrap_or("/");
    let path = target.split(['?', '#']).next().unwrap_or("/");
    let (status, body) = match pages.get(path) {
        Some(html) => ("200 OK", html.as_str()),
        None => ("404 Not Found", "not found\n"),
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}
