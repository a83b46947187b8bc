//! Every endpoint and CLI path driven at and past its documented limit, with
//! the daemon confined as in production (the harness runs it in seccomp
//! enforce mode): a valid request at a limit is accepted, one past it gets a
//! clear 4xx, and in both cases the daemon is still alive and answering.
//!
//! The seccomp allow-list was first derived from traced runs, which only see
//! the paths they ran: a batch of 10,000 hits (the documented maximum) made
//! glibc's `realloc` move a large block with `mremap`, which no traced run had
//! done, and the daemon died of SIGSYS. These tests drive the large paths on
//! purpose. The limits are those of `docs/reference/http-api.md` (the
//! `Limits` of `daemon/server/src/wire.rs`), the stats parameters, and the
//! Takeout and Plausible import guides. The data is generated here.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use hitvault_tests::{CHROME_UA, Daemon, IngestToken, Reply};

const TOKEN: &str = "limits-token-0123456789";
const SITES: (&str, &str) = ("HITVAULT_SITES", "shop.test,blog.test");

/// The documented limits (docs/reference/http-api.md).
const BATCH_HITS: usize = 10_000;
const BATCH_BODY: usize = 8 * 1024 * 1024;

const UAS: [&str; 5] = [
    CHROME_UA,
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.6478.71 Mobile Safari/537.36",
];

const REFERRERS: [&str; 5] = [
    "https://www.google.com/search?q=analytics",
    "https://news.ycombinator.com/item?id=40000000",
    "",
    "https://duckduckgo.com/",
    "https://t.co/abc123",
];

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// One ordinary server-side hit, as an analytics proxy would forward it:
/// every field the batch endpoint takes, a week of timestamps.
fn hit(i: usize, now: i64) -> serde_json::Value {
    let site = if i.is_multiple_of(3) {
        "blog.test"
    } else {
        "shop.test"
    };
    let event = i.is_multiple_of(7);
    let mut h = serde_json::json!({
        "name": if event { "Signup" } else { "pageview" },
        "url": format!(
            "https://{site}/products/{}/item-{}?utm_source=newsletter&utm_medium=email&utm_campaign=week{}",
            i % 40,
            i,
            i % 5
        ),
        "domain": site,
        "user_agent": UAS[i % UAS.len()],
        "ip": format!("203.0.{}.{}", (i / 250) % 250, i % 250),
        "timestamp": now - 60_000 - (i as i64) * 61_000,
        "screen_width": ([390, 768, 1280, 1920][i % 4]),
        "language": (["de-DE", "en-US", "fr-FR"][i % 3]),
    });
    let r = REFERRERS[i % REFERRERS.len()];
    if !r.is_empty() {
        h["referrer"] = r.into();
    }
    if event {
        h["props"] = serde_json::json!({ "plan": (["free", "pro", "team"][i % 3]), "seats": i % 12, "trial": i.is_multiple_of(2) });
    }
    h
}

fn ndjson(hits: impl Iterator<Item = serde_json::Value>) -> String {
    let mut s = String::new();
    for h in hits {
        s.push_str(&h.to_string());
        s.push('\n');
    }
    s
}

/// POSTs a batch; the reply. Tolerates the daemon answering (413) before it
/// read the whole body.
fn post_batch(d: &mut Daemon, body: &[u8], chunked: bool) -> Reply {
    send(
        d,
        "/api/ingest/batch",
        &[
            ("Authorization", &format!("Bearer {TOKEN}")),
            ("Content-Type", "application/x-ndjson"),
        ],
        body,
        chunked,
    )
}

/// One request over a fresh connection, the body sent with a Content-Length
/// or chunked; a write the daemon cut short (it refused early) is not an
/// error, the reply is read either way. No reply: the test fails saying how
/// the daemon died.
fn send(d: &mut Daemon, path: &str, headers: &[(&str, &str)], body: &[u8], chunked: bool) -> Reply {
    match exchange(d.addr, path, headers, body, chunked) {
        Some(r) => r,
        None => {
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(5) {
                if let Some(status) = d.child.try_wait().unwrap() {
                    panic!(
                        "no reply to POST {path}: the daemon died: {}\n{}",
                        hitvault_tests::describe_exit(status),
                        d.log_text()
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            panic!("no reply to POST {path}, the daemon still runs");
        }
    }
}

fn exchange(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    chunked: bool,
) -> Option<Reply> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head = format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if chunked {
        head.push_str("Transfer-Encoding: chunked\r\n\r\n");
    } else {
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    }
    let _ = s.write_all(head.as_bytes()).and_then(|_| {
        if chunked {
            for c in body.chunks(64 * 1024) {
                s.write_all(format!("{:x}\r\n", c.len()).as_bytes())?;
                s.write_all(c)?;
                s.write_all(b"\r\n")?;
            }
            s.write_all(b"0\r\n\r\n")
        } else {
            s.write_all(body)
        }
    });
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse(&raw)
}

fn parse(raw: &[u8]) -> Option<Reply> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"))
    {
        // Small JSON refusals only: one chunk.
        let text = String::from_utf8_lossy(&body).to_string();
        body = text
            .split("\r\n")
            .nth(1)
            .unwrap_or_default()
            .as_bytes()
            .to_vec();
    }
    Some(Reply {
        status,
        headers,
        body,
    })
}

/// The daemon is alive and answers: its process has not exited, `/readyz`
/// says 200 and the overview of shop.test answers 200.
fn assert_alive(d: &mut Daemon, after: &str) {
    let site = "shop.test";
    if let Some(status) = d.child.try_wait().unwrap() {
        panic!(
            "the daemon died after {after}: {}\n{}",
            hitvault_tests::describe_exit(status),
            d.log_text()
        );
    }
    let r = d.get("/readyz").unwrap();
    assert_eq!(r.status, 200, "after {after}: /readyz");
    let r = d
        .get(&format!("/api/v1/stats/overview?site={site}"))
        .unwrap();
    assert_eq!(r.status, 200, "after {after}: overview");
}

fn refusal(r: &Reply) -> String {
    r.json()["error"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn the_largest_batch_is_accepted_and_one_hit_more_is_refused() {
    let tok = IngestToken::new(TOKEN);
    let mut d = Daemon::start(&[SITES, tok.env()]);
    let now = now_ms();

    // Exactly the maximum, NDJSON and a JSON array: well under 8 MiB.
    let body = ndjson((0..BATCH_HITS).map(|i| hit(i, now)));
    assert!(body.len() < BATCH_BODY / 2, "{} bytes", body.len());
    let t = Instant::now();
    let r = post_batch(&mut d, body.as_bytes(), false);
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["accepted"], BATCH_HITS);
    eprintln!("{BATCH_HITS} hits, {} bytes: {:?}", body.len(), t.elapsed());
    assert_alive(&mut d, "the largest NDJSON batch");

    let array = serde_json::Value::Array((0..BATCH_HITS).map(|i| hit(i + 20_000, now)).collect())
        .to_string();
    let r = send(
        &mut d,
        "/api/ingest/batch",
        &[
            ("Authorization", &format!("Bearer {TOKEN}")),
            ("Content-Type", "application/json"),
        ],
        array.as_bytes(),
        false,
    );
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["accepted"], BATCH_HITS);
    assert_alive(&mut d, "the largest JSON-array batch");

    // One more hit: a clear 400, nothing stored.
    let body = ndjson((0..=BATCH_HITS).map(|i| hit(i + 40_000, now)));
    let r = post_batch(&mut d, body.as_bytes(), false);
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(refusal(&r), "too_many_hits");
    assert_alive(&mut d, "a batch of one hit too many");

    let s = d.stop();
    assert_eq!(s.count("SELECT count(*) FROM hits"), 2 * BATCH_HITS as u64);
}
