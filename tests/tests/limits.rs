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
const BODY: usize = 8 * 1024;

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
    assert_alive_with(d, "shop.test", after)
}

/// [`assert_alive`] with the overview of `site`.
fn assert_alive_with(d: &mut Daemon, site: &str, after: &str) {
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

/// A body of exactly `len` bytes: `json` (one object) followed by spaces,
/// which JSON allows.
fn padded(json: &str, len: usize) -> Vec<u8> {
    assert!(json.len() <= len, "{} > {len}", json.len());
    let mut b = json.as_bytes().to_vec();
    b.resize(len, b' ');
    b
}

#[test]
fn the_largest_bodies_are_accepted_and_one_byte_more_is_413() {
    let tok = IngestToken::new(TOKEN);
    let mut d = Daemon::start(&[SITES, tok.env()]);
    let now = now_ms();

    // /api/ingest/batch: 10,000 hits filling exactly 8 MiB (a note of about
    // 380 bytes in each, the rest as spaces after the last one).
    let note = "n".repeat(380);
    let mut body = ndjson((0..BATCH_HITS).map(|i| {
        let mut h = hit(i, now);
        h["props"] = serde_json::json!({ "note": note, "i": i });
        h
    }))
    .into_bytes();
    assert!(body.len() <= BATCH_BODY, "{}", body.len());
    body.resize(BATCH_BODY, b' ');
    let r = post_batch(&mut d, &body, false);
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["accepted"], BATCH_HITS);
    assert_alive(&mut d, "a batch body of exactly 8 MiB");

    // One byte more: 413, whether announced by Content-Length or streamed.
    body.push(b' ');
    for chunked in [false, true] {
        let r = post_batch(&mut d, &body, chunked);
        assert_eq!(r.status, 413, "chunked {chunked}: {:?}", r);
        assert_eq!(refusal(&r), "body_too_large");
        assert_alive(&mut d, "a batch body of 8 MiB + 1 byte");
    }

    // The browser endpoints: 8 KiB exactly, then one byte more.
    let props: serde_json::Map<String, serde_json::Value> = (0..12)
        .map(|i| (format!("{i:02}{}", "k".repeat(62)), "v".repeat(500).into()))
        .collect();
    for (path, json) in [
        (
            "/api/collect",
            serde_json::json!({ "n": "Signup", "u": "https://shop.test/pricing", "p": props }),
        ),
        (
            "/api/event",
            serde_json::json!({ "name": "Signup", "url": "https://shop.test/pricing", "domain": "shop.test", "props": props }),
        ),
    ] {
        let body = padded(&json.to_string(), BODY);
        let headers = [("User-Agent", CHROME_UA), ("Content-Type", "text/plain")];
        let r = send(&mut d, path, &headers, &body, false);
        assert_eq!(
            r.status,
            202,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let r = send(
            &mut d,
            path,
            &headers,
            &padded(&json.to_string(), BODY + 1),
            false,
        );
        assert_eq!(r.status, 413, "{path}: {r:?}");
        assert_eq!(refusal(&r), "body_too_large");
        assert_alive(&mut d, path);
    }

    let s = d.stop();
    assert_eq!(s.count("SELECT count(*) FROM hits"), BATCH_HITS as u64 + 2);
}

/// A 253-byte hostname (four labels, none over 63 bytes).
fn long_host(len: usize) -> String {
    let mut h = format!("{}.{}.{}.", "a".repeat(63), "b".repeat(63), "c".repeat(63));
    h.push_str(&"d".repeat(len - h.len() - 5));
    h.push_str(".test");
    assert_eq!(h.len(), len);
    h
}

/// Every field at its limit: name 120, url 2,048, referrer 2,048,
/// user_agent 1,024, language 35, ten domains (one of 253 bytes),
/// screen_width 16,384, 30 properties with 64-byte names and 512-byte values.
fn widest_hit(i: usize, now: i64, domains: &str) -> serde_json::Value {
    let fill = |prefix: String, len: usize| {
        let mut s = prefix;
        assert!(s.len() <= len);
        while s.len() < len {
            s.push(char::from(b'a' + (s.len() % 26) as u8));
        }
        s
    };
    let props: serde_json::Map<String, serde_json::Value> = (0..30)
        .map(|p| {
            (
                fill(format!("k{p:02}_"), 64),
                fill(format!("v{i}_{p}_"), 512).into(),
            )
        })
        .collect();
    serde_json::json!({
        "name": fill(format!("Event {} ", i % 3), 120),
        "url": fill(format!("https://shop.test/p/{i}?utm_source=mail&utm_medium=email&utm_campaign=c{}&utm_term=t&utm_content=x&q=", i % 4), 2048),
        "referrer": fill(format!("https://ref{}.example/path/", i % 5), 2048),
        "user_agent": fill(format!("{} ", UAS[i % UAS.len()]), 1024),
        "language": fill("en-US-x-".to_owned(), 35),
        "domain": domains,
        "screen_width": 16_384,
        "ip": format!("2001:db8::{:x}", i),
        "timestamp": now - 120_000 - (i as i64) * 1000,
        "props": props,
    })
}

/// A change that takes a hit one past a limit.
type Change = Box<dyn Fn(&mut serde_json::Value)>;

#[test]
fn the_most_props_and_longest_fields_are_stored_and_one_more_is_refused() {
    let long = long_host(253);
    let others: Vec<String> = (0..9).map(|i| format!("d{i}.test")).collect();
    let sites = format!("shop.test,{long},{}", others[1..].join(","));
    let domains = format!("shop.test,{long},{}", others[1..].join(","));
    assert_eq!(domains.split(',').count(), 10);
    let tok = IngestToken::new(TOKEN);
    let mut d = Daemon::start(&[("HITVAULT_SITES", &sites), tok.env()]);
    let now = now_ms();

    const N: usize = 300;
    let body = ndjson((0..N).map(|i| widest_hit(i, now, &domains)));
    assert!(body.len() < BATCH_BODY, "{}", body.len());
    let r = post_batch(&mut d, body.as_bytes(), false);
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    assert_alive(&mut d, "a batch of hits with every field at its limit");

    // One past each limit, in an otherwise valid hit: a 400 naming why.
    let over: Vec<(&str, Change, &str)> = vec![
        (
            "name",
            Box::new(|h| h["name"] = "n".repeat(121).into()),
            "field_too_long",
        ),
        (
            "url",
            Box::new(|h| {
                let u = h["url"].as_str().unwrap().to_owned() + "x";
                h["url"] = u.into();
            }),
            "field_too_long",
        ),
        (
            "referrer",
            Box::new(|h| {
                let r = h["referrer"].as_str().unwrap().to_owned() + "x";
                h["referrer"] = r.into();
            }),
            "field_too_long",
        ),
        (
            "user_agent",
            Box::new(|h| {
                let u = h["user_agent"].as_str().unwrap().to_owned() + "x";
                h["user_agent"] = u.into();
            }),
            "field_too_long",
        ),
        (
            "language",
            Box::new(|h| h["language"] = "l".repeat(36).into()),
            "field_too_long",
        ),
        (
            "a 254-byte domain",
            Box::new(|h| h["domain"] = long_host(254).into()),
            "field_too_long",
        ),
        (
            "11 domains",
            Box::new(|h| {
                let d = h["domain"].as_str().unwrap().to_owned() + ",d0.test";
                h["domain"] = d.into();
            }),
            "invalid_field",
        ),
        (
            "31 props",
            Box::new(|h| h["props"]["one_more"] = "x".into()),
            "too_many_props",
        ),
        (
            "a 65-byte prop name",
            Box::new(|h| {
                let p = h["props"].as_object_mut().unwrap();
                let (k, v) = p
                    .iter()
                    .next()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .unwrap();
                p.remove(&k);
                p.insert(format!("{k}x"), v);
            }),
            "field_too_long",
        ),
        (
            "a 513-byte prop value",
            Box::new(|h| {
                let p = h["props"].as_object_mut().unwrap();
                let (k, v) = p
                    .iter()
                    .next()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .unwrap();
                p.insert(k, (v.as_str().unwrap().to_owned() + "x").into());
            }),
            "field_too_long",
        ),
        (
            "screen_width",
            Box::new(|h| h["screen_width"] = 16_385.into()),
            "invalid_field",
        ),
    ];
    for (what, change, reason) in &over {
        let mut h = widest_hit(0, now, &domains);
        change(&mut h);
        let r = post_batch(&mut d, h.to_string().as_bytes(), false);
        assert_eq!(
            r.status,
            400,
            "{what}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(refusal(&r), *reason, "{what}");
    }
    assert_alive(&mut d, "hits one past each field limit");

    // The browser endpoint, 30 props and 31.
    let props = |n: usize| -> serde_json::Map<String, serde_json::Value> {
        (0..n).map(|i| (format!("p{i}"), i.into())).collect()
    };
    let headers = [("User-Agent", CHROME_UA), ("Content-Type", "text/plain")];
    let ok = serde_json::json!({ "n": "Signup", "u": "https://shop.test/a", "p": props(30) });
    let r = send(
        &mut d,
        "/api/collect",
        &headers,
        ok.to_string().as_bytes(),
        false,
    );
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let bad = serde_json::json!({ "n": "Signup", "u": "https://shop.test/a", "p": props(31) });
    let r = send(
        &mut d,
        "/api/collect",
        &headers,
        bad.to_string().as_bytes(),
        false,
    );
    assert_eq!(r.status, 400);
    assert_eq!(refusal(&r), "too_many_props");
    assert_alive(&mut d, "the browser endpoint at and past the props limit");

    // The widest hits are readable: a stats query filtering on the longest
    // property value of them all.
    let first = widest_hit(0, now, &domains);
    let (k, v) = first["props"].as_object().unwrap().iter().next().unwrap();
    let q = format!(
        "/api/v1/stats/overview?site=shop.test&filter=prop:{k}:is:{}&limit=1000",
        v.as_str().unwrap()
    );
    let r = d.get(&q).unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));

    let s = d.stop();
    assert_eq!(
        s.count("SELECT count(*) FROM hits_v WHERE site = 'shop.test'"),
        N as u64 + 1
    );
    assert_eq!(
        s.count(&format!(
            "SELECT count(*) FROM hits_v WHERE site = '{long}'"
        )),
        N as u64
    );
    assert_eq!(
        s.count(
            "SELECT count(*) FROM props_v p JOIN hits_v h USING (id) WHERE h.site = 'shop.test'"
        ),
        30 * N as u64 + 30
    );
    assert_eq!(s.count("SELECT max(length(key)) FROM props_v"), 64);
    assert_eq!(s.count("SELECT max(length(value)) FROM props_v"), 512);
}

/// `YYYY-MM-DD` of a day counted from 1970-01-01 (proleptic Gregorian).
fn date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn get(d: &Daemon, path: &str) -> Reply {
    let t = Instant::now();
    let r = d.get(path).unwrap();
    eprintln!("{} in {:?}: {path:.160}", r.status, t.elapsed());
    r
}

fn post(d: &Daemon, path: &str, json: serde_json::Value) -> Reply {
    d.post_json(path, &json.to_string())
}

/// The widest stats questions over three years of a seeded site, the most
/// goals and funnels, a Takeout of a few hundred thousand hits exported
/// through the running daemon (CLI and HTTP) and imported into another
/// running daemon, and a backup of it all through the daemon, restored.
#[test]
fn a_large_instance_answers_the_widest_queries_and_moves_its_takeout() {
    const HITS: u64 = 300_000;
    let root = tempfile::Builder::new()
        .prefix("hitvault-test")
        .tempdir()
        .unwrap();
    let data = root.path().join("data");
    let t = Instant::now();
    hitvault_tests::seed(&data, HITS, 3, 1098);
    eprintln!("seeded {HITS} hits in {:?}", t.elapsed());
    let mut d = Daemon::start_wrapped(data, root, &[], &[]);
    let site = "site01.test";

    // Every dimension filtered at once, and a property, over the longest
    // range (1,098 days), with the biggest panels (limit=1000).
    let today = now_ms().div_euclid(86_400_000);
    let to = date(today + 1);
    let from = date(today + 1 - 1098);
    let mut filters = String::new();
    // Every dimension the stats API filters by, as the store names them.
    for (_, dim) in hitvault_store::stats::Dim::ALL {
        filters.push_str(&format!("&filter={dim}:is_not:{}", "z".repeat(40)));
    }
    filters.push_str(&format!("&filter=prop:plan:is_not:{}", "z".repeat(512)));
    let window = format!("site={site}&from={from}&to={to}&tz=UTC");
    for interval in ["day", "week", "month"] {
        let r = get(
            &d,
            &format!("/api/v1/stats/overview?{window}&interval={interval}&limit=1000"),
        );
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert!(r.json().is_object());
        let r = get(
            &d,
            &format!("/api/v1/stats/overview?{window}&interval={interval}&limit=1000{filters}"),
        );
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
    // The longest hourly series (31 days), every filter, another zone.
    let hourly = format!(
        "site={site}&from={}&to={to}&tz=Europe/Berlin&interval=hour&limit=1000",
        date(today + 1 - 31)
    );
    let r = get(&d, &format!("/api/v1/stats/overview?{hourly}{filters}"));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // One past each: 1,099 days, 32 days by the hour, 1,001 rows.
    for (past, param) in [
        (
            format!("site={site}&from={}&to={to}&tz=UTC", date(today - 1098)),
            "from",
        ),
        (
            format!(
                "site={site}&from={}&to={to}&tz=UTC&interval=hour",
                date(today - 31)
            ),
            "interval",
        ),
        (format!("{window}&limit=1001"), "limit"),
    ] {
        let r = get(&d, &format!("/api/v1/stats/overview?{past}"));
        assert_eq!(
            r.status,
            400,
            "{past}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.json()["error"], "bad_parameter", "{past}");
        let _ = param;
    }
    assert_alive_with(&mut d, site, "the widest overview queries");

    // The most goals (100) and funnels (50, of 8 steps), then one more of each.
    let defs = format!("/api/v1/sites/{site}");
    for i in 0..100 {
        let g = if i % 2 == 0 {
            serde_json::json!({ "kind": "page", "value": format!("/*{i}*"), "name": format!("goal {i}") })
        } else {
            serde_json::json!({ "kind": "event", "value": format!("Event {i}"), "name": format!("goal {i}") })
        };
        let r = post(&d, &format!("{defs}/goals"), g);
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    }
    let r = post(
        &d,
        &format!("{defs}/goals"),
        serde_json::json!({ "kind": "page", "value": "/", "name": "goal 101" }),
    );
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    let steps = |n: usize| -> Vec<serde_json::Value> {
        (0..n)
            .map(|s| {
                if s % 3 == 2 {
                    serde_json::json!({ "kind": "event", "value": format!("Event {s}") })
                } else {
                    serde_json::json!({ "kind": "page", "value": format!("/*{s}*") })
                }
            })
            .collect()
    };
    let mut funnel = 0;
    for i in 0..50 {
        let r = post(
            &d,
            &format!("{defs}/funnels"),
            serde_json::json!({ "name": format!("funnel {i}"), "steps": steps(8) }),
        );
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        funnel = r.json()["id"].as_u64().unwrap();
    }
    for (name, n) in [("funnel 51", 8), ("nine steps", 9)] {
        let r = post(
            &d,
            &format!("{defs}/funnels"),
            serde_json::json!({ "name": name, "steps": steps(n) }),
        );
        assert_eq!(
            r.status,
            400,
            "{name}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    for path in [
        format!("/api/v1/stats/goals?{window}{filters}"),
        format!("/api/v1/stats/funnel?{window}&funnel={funnel}{filters}"),
        format!(
            "/api/v1/stats/funnel?{window}{}{filters}",
            (1..=8)
                .map(|s| format!("&step=page:/*{s}*"))
                .collect::<String>()
        ),
        format!("/api/v1/stats/props?{window}&limit=1000{filters}"),
        format!("/api/v1/stats/props?{window}&key=plan&limit=1000{filters}"),
    ] {
        let r = get(&d, &path);
        assert_eq!(
            r.status,
            200,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    assert_alive_with(
        &mut d,
        site,
        "goals, funnels and properties at their limits",
    );

    // Takeout over HTTP: the whole bundle, streamed.
    let t = Instant::now();
    let r = get(&d, "/api/v1/takeout?format=csv&bundle=zip");
    assert_eq!(r.status, 200);
    assert!(
        r.body.windows(4).any(|w| w == b"PK\x05\x06"),
        "the zip has no end of central directory"
    );
    eprintln!(
        "HTTP Takeout zip (csv): {} bytes in {:?}",
        r.body.len(),
        t.elapsed()
    );
    assert_alive_with(&mut d, site, "a Takeout over HTTP");

    // Takeout through the running daemon with the CLI, then import it into
    // another running daemon.
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("takeout");
    let data = d.data_dir.to_str().unwrap().to_owned();
    let t = Instant::now();
    hitvault_tests::hitvault_ok(&[
        "--data-dir",
        &data,
        "takeout",
        "--to",
        dir.to_str().unwrap(),
    ]);
    eprintln!("CLI Takeout through the daemon: {:?}", t.elapsed());
    assert_alive_with(&mut d, site, "a Takeout through the control socket");
    hitvault_tests::hitvault_ok(&["takeout", "verify", dir.to_str().unwrap()]);

    // A backup of the whole instance through the running daemon, restored.
    let backup = out.path().join("backup");
    let t = Instant::now();
    let said =
        hitvault_tests::hitvault_ok(&["--data-dir", &data, "backup", backup.to_str().unwrap()]);
    eprintln!("backup through the daemon: {:?}", t.elapsed());
    assert!(said.contains("through the running daemon"), "{said}");
    assert_alive_with(&mut d, site, "a backup through the control socket");
    let restored = out.path().join("restored");
    hitvault_tests::hitvault_ok(&[
        "--data-dir",
        restored.to_str().unwrap(),
        "restore",
        backup.to_str().unwrap(),
    ]);
    let store = hitvault_store::Store::open_read_only(&restored).unwrap();
    let rows = store.query_text("SELECT count(*) FROM hits").unwrap();
    assert_eq!(rows[0][0].as_deref(), Some(HITS.to_string().as_str()));
    drop(store);

    let mut d2 = Daemon::start(&[]);
    let t = Instant::now();
    let data2 = d2.data_dir.to_str().unwrap().to_owned();
    hitvault_tests::hitvault_ok(&["--data-dir", &data2, "import", dir.to_str().unwrap()]);
    eprintln!("import through the daemon: {:?}", t.elapsed());
    assert_alive_with(&mut d2, site, "an import of a large Takeout");
    let r = get(
        &d2,
        &format!("/api/v1/stats/overview?{window}&limit=1000{filters}"),
    );
    assert_eq!(r.status, 200);

    let s = d.stop();
    let s2 = d2.stop();
    assert_eq!(s.count("SELECT count(*) FROM hits"), HITS);
    assert_eq!(s2.count("SELECT count(*) FROM hits"), HITS);

    // Retention on the large instance, confined: a start with a year's
    // retention archives (Parquet Takeout) and deletes the two older years,
    // and `prune` through the daemon then finds nothing left to do.
    let t = Instant::now();
    let mut d = Daemon::restart(s, &[("HITVAULT_RETENTION_DAYS", "365")]);
    let said = hitvault_tests::hitvault_ok(&["--data-dir", &data, "prune"]);
    eprintln!(
        "retention pass and prune through the daemon: {:?}",
        t.elapsed()
    );
    assert_alive_with(&mut d, site, "a retention pass over the large instance");
    let s = d.stop();
    let kept = s.count("SELECT count(*) FROM hits");
    let cutoff_us = (now_ms() - 365 * 86_400_000) * 1000;
    assert_eq!(
        s.count(&format!(
            "SELECT count(*) FROM hits WHERE epoch_us(ts) < {cutoff_us}"
        )),
        0,
        "{said}"
    );
    assert!(kept > 0 && kept < HITS / 2, "kept {kept} of {HITS}: {said}");
    // Every deleted hit is in an archive, each archive a valid Takeout.
    let mut archived = 0;
    let archive = s.data_dir.join("archive");
    for site_dir in std::fs::read_dir(&archive).unwrap() {
        for run in std::fs::read_dir(site_dir.unwrap().path()).unwrap() {
            let run = run.unwrap().path();
            hitvault_tests::hitvault_ok(&["takeout", "verify", run.to_str().unwrap()]);
            let m: serde_json::Value =
                serde_json::from_slice(&std::fs::read(run.join("MANIFEST")).unwrap()).unwrap();
            archived += m["files"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|f| f["table"] == "hits")
                .map(|f| f["rows"].as_u64().unwrap())
                .sum::<u64>();
        }
    }
    assert_eq!(kept + archived, HITS, "kept {kept}, archived {archived}");
}

/// A Plausible export of three years with thousands of pages and sources,
/// imported through the running daemon.
#[test]
fn a_large_plausible_import_goes_through_the_running_daemon() {
    const DAYS: i64 = 1098;
    const PAGES: usize = 150;
    const SOURCES: usize = 30;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plausible");
    std::fs::create_dir(&dir).unwrap();
    let today = now_ms().div_euclid(86_400_000);
    let first = today - DAYS;
    let last = today - 1;
    let span = format!(
        "{}_{}",
        date(first).replace('-', ""),
        date(last).replace('-', "")
    );
    let mut visitors = String::from("date,visitors,pageviews,bounces,visits,visit_duration\n");
    let mut pages = String::from(
        "date,hostname,page,visits,visitors,pageviews,scroll_depth,pageleave_visitors\n",
    );
    let mut sources = String::from(
        "date,source,referrer,utm_source,utm_medium,utm_campaign,utm_content,utm_term,pageviews,visitors,visits,visit_duration,bounces\n",
    );
    for day in first..=last {
        let dt = date(day);
        visitors.push_str(&format!("{dt},500,1500,200,600,90000\n"));
        for p in 0..PAGES {
            pages.push_str(&format!(
                "{dt},shop.test,/page/{p}/{},8,7,20,,0\n",
                "x".repeat(p % 40)
            ));
        }
        for s in 0..SOURCES {
            sources.push_str(&format!(
                "{dt},Source {s},https://ref{s}.example/,src{s},medium{},campaign{},content{},term{},12,4,5,300,1\n",
                s % 5,
                s % 7,
                s % 3,
                s % 11
            ));
        }
    }
    let rows = (DAYS + 1) as usize * (1 + PAGES + SOURCES);
    std::fs::write(dir.join(format!("imported_visitors_{span}.csv")), visitors).unwrap();
    std::fs::write(dir.join(format!("imported_pages_{span}.csv")), pages).unwrap();
    std::fs::write(dir.join(format!("imported_sources_{span}.csv")), sources).unwrap();

    let mut d = Daemon::start(&[SITES]);
    let data = d.data_dir.to_str().unwrap().to_owned();
    let t = Instant::now();
    hitvault_tests::hitvault_ok(&[
        "--data-dir",
        &data,
        "import-plausible",
        "--site",
        "shop.test",
        dir.to_str().unwrap(),
    ]);
    eprintln!(
        "Plausible import of {rows} CSV rows through the daemon: {:?}",
        t.elapsed()
    );
    assert_alive(&mut d, "a large Plausible import");
    let r = get(
        &d,
        &format!(
            "/api/v1/stats/overview?site=shop.test&from={}&to={}&tz=UTC&limit=1000",
            date(today - 1097),
            date(today)
        ),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.json()["imported"]["included"],
        true,
        "{}",
        r.json()["imported"]
    );
    let s = d.stop();
    assert_eq!(s.count("SELECT count(*) FROM imported_days"), DAYS as u64);
}
