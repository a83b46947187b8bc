//! Wire formats of the ingest endpoints, parsed and bounded.
//!
//! Every body is parsed into a JSON object first and each field is read by
//! name, so an error can say which field is wrong and why. Unknown keys are
//! ignored (trackers newer than the server keep working). Every limit lives in
//! [`Limits`] and is documented in `docs/reference/http-api.md` (Limits).

use std::net::IpAddr;

use serde_json::{Map, Value};

use crate::metrics::Refusal;

mod fast;

/// Every bound the ingest endpoints enforce.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Body of `POST /api/collect` and `POST /api/event`.
    pub body_bytes: usize,
    /// Body of `POST /api/ingest/batch`.
    pub batch_body_bytes: usize,
    /// Hits in one batch.
    pub batch_hits: usize,
    pub url_bytes: usize,
    pub referrer_bytes: usize,
    pub name_bytes: usize,
    pub domain_bytes: usize,
    pub language_bytes: usize,
    pub user_agent_bytes: usize,
    pub props: usize,
    pub prop_key_bytes: usize,
    pub prop_value_bytes: usize,
    pub screen_width_max: u64,
    /// Longest engaged time one `engagement` may report, in milliseconds.
    pub engagement_ms_max: u64,
    /// Sites named in one Plausible `domain` list.
    pub domains: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            body_bytes: 8 * 1024,
            batch_body_bytes: 8 * 1024 * 1024,
            batch_hits: 10_000,
            url_bytes: 2048,
            referrer_bytes: 2048,
            name_bytes: 120,
            domain_bytes: 253,
            language_bytes: 35,
            user_agent_bytes: 1024,
            props: 30,
            // The longest a property filter can name (one rule for both).
            prop_key_bytes: hitvault_store::stats::MAX_PROP_KEY_BYTES,
            prop_value_bytes: hitvault_store::stats::MAX_PROP_VALUE_BYTES,
            screen_width_max: 16_384,
            // A visitor id lasts one UTC day, so no page view is read longer.
            engagement_ms_max: 86_400_000,
            domains: 10,
        }
    }
}

/// A refused request: the reason code, a message for people, and the field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireError {
    pub reason: Refusal,
    pub message: String,
    pub field: Option<String>,
}

impl WireError {
    pub fn new(reason: Refusal, message: impl Into<String>) -> Self {
        WireError {
            reason,
            message: message.into(),
            field: None,
        }
    }
    fn field(reason: Refusal, field: &str, message: impl Into<String>) -> Self {
        WireError {
            reason,
            message: message.into(),
            field: Some(field.to_owned()),
        }
    }
}

/// A browser hit (tracker or Plausible format) as sent, before the site is resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrowserHit {
    pub name: String,
    pub url: String,
    /// Sites claimed by the hit (`d`/`domain`); empty: use the URL's host.
    pub domains: Vec<String>,
    pub referrer: Option<String>,
    pub screen_width: Option<u16>,
    pub language: Option<String>,
    pub props: Vec<(String, String)>,
    /// For an `engagement` (the name [`ENGAGEMENT`]): the reading time and
    /// scroll depth it reports. `None` for every other name.
    pub engagement: Option<Engaged>,
}

/// The event name of Plausible's engagement events, reserved: a hit with
/// this name reports time on page and scroll depth, and is never stored as
/// a custom event.
pub const ENGAGEMENT: &str = "engagement";

/// What an `engagement` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Engaged {
    /// `e` / `engagement_time`: milliseconds the page was visible and
    /// focused since the previous engagement of the same page view.
    pub engaged_ms: u32,
    /// `sd` / `scroll_depth`: the deepest point seen, in percent of the
    /// page's height; values above 100 (a page that got shorter) count as 100.
    pub scroll_depth: Option<u8>,
}

/// Reads an engagement's `e` and `sd` fields from integer values (`None`
/// when absent), checking them against `limits`.
fn engaged(
    e: Option<(&str, Option<u64>)>,
    sd: Option<(&str, Option<u64>)>,
    limits: &Limits,
) -> Result<Engaged, WireError> {
    let engaged_ms = match e {
        None => 0,
        Some((_, Some(ms))) if ms <= limits.engagement_ms_max => ms as u32,
        Some((k, _)) => {
            return Err(WireError::field(
                Refusal::InvalidField,
                k,
                format!(
                    "field '{k}' must be an integer from 0 to {} (milliseconds)",
                    limits.engagement_ms_max
                ),
            ));
        }
    };
    let scroll_depth = match sd {
        None => None,
        Some((_, Some(p))) => Some(p.min(100) as u8),
        Some((k, None)) => {
            return Err(WireError::field(
                Refusal::InvalidField,
                k,
                format!("field '{k}' must be a non-negative integer (percent)"),
            ));
        }
    };
    Ok(Engaged {
        engaged_ms,
        scroll_depth,
    })
}

/// A server-side hit from `POST /api/ingest/batch`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerHit {
    pub hit: BrowserHit,
    pub user_agent: String,
    pub ip: Option<IpAddr>,
    pub ts_ms: Option<i64>,
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, WireError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(WireError::new(
            Refusal::InvalidJson,
            "the body must be a JSON object",
        )),
        Err(e) => Err(WireError::new(
            Refusal::InvalidJson,
            format!("the body is not valid JSON: {e}"),
        )),
    }
}

/// Value of the first of `keys` present and not null.
fn get<'a>(m: &'a Map<String, Value>, keys: &[&str]) -> Option<(&'a str, &'a Value)> {
    keys.iter().find_map(|k| {
        m.get_key_value(*k)
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.as_str(), v))
    })
}

fn string<'a>(
    m: &'a Map<String, Value>,
    keys: &[&str],
    limit: usize,
) -> Result<Option<&'a str>, WireError> {
    match get(m, keys) {
        None => Ok(None),
        Some((k, Value::String(s))) if s.len() > limit => Err(WireError::field(
            Refusal::FieldTooLong,
            k,
            format!("field '{k}' is {} bytes; the limit is {limit}", s.len()),
        )),
        Some((_, Value::String(s))) => Ok(Some(s.as_str())),
        Some((k, _)) => Err(WireError::field(
            Refusal::InvalidField,
            k,
            format!("field '{k}' must be a string"),
        )),
    }
}

fn required<'a>(
    m: &'a Map<String, Value>,
    keys: &[&str],
    limit: usize,
) -> Result<&'a str, WireError> {
    match string(m, keys, limit)? {
        Some(s) if !s.trim().is_empty() => Ok(s),
        _ => Err(WireError::field(
            Refusal::InvalidField,
            keys[0],
            format!(
                "field '{}' is required and must be a non-empty string",
                keys.join("' or '")
            ),
        )),
    }
}

fn prop_value(k: &str, v: &Value) -> Result<Option<String>, WireError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Bool(b) => Ok(Some(b.to_string())),
        Value::Number(n) => Ok(Some(n.to_string())),
        _ => Err(WireError::field(
            Refusal::InvalidField,
            "props",
            format!("property '{k}' must be a string, number or boolean"),
        )),
    }
}

fn props(
    m: &Map<String, Value>,
    keys: &[&str],
    limits: &Limits,
) -> Result<Vec<(String, String)>, WireError> {
    let owned;
    let obj = match get(m, keys) {
        None => return Ok(vec![]),
        Some((_, Value::Object(o))) => o,
        // Older Plausible scripts send props (`m`/`p`) as a JSON-encoded string.
        Some((k, Value::String(s))) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(o)) => {
                owned = o;
                &owned
            }
            _ => {
                return Err(WireError::field(
                    Refusal::InvalidField,
                    k,
                    format!("field '{k}' must be an object of properties"),
                ));
            }
        },
        Some((k, _)) => {
            return Err(WireError::field(
                Refusal::InvalidField,
                k,
                format!("field '{k}' must be an object"),
            ));
        }
    };
    if obj.len() > limits.props {
        return Err(WireError::field(
            Refusal::TooManyProps,
            "props",
            format!("{} properties; the limit is {}", obj.len(), limits.props),
        ));
    }
    let mut out = Vec::with_capacity(obj.len());
    for (k, v) in obj {
        if k.is_empty() {
            return Err(WireError::field(
                Refusal::InvalidField,
                "props",
                "property names must not be empty",
            ));
        }
        if k.len() > limits.prop_key_bytes {
            return Err(WireError::field(
                Refusal::FieldTooLong,
                "props",
                format!(
                    "property name is {} bytes; the limit is {}",
                    k.len(),
                    limits.prop_key_bytes
                ),
            ));
        }
        let Some(v) = prop_value(k, v)? else { continue };
        if v.len() > limits.prop_value_bytes {
            return Err(WireError::field(
                Refusal::FieldTooLong,
                "props",
                format!(
                    "property '{k}' is {} bytes; the limit is {}",
                    v.len(),
                    limits.prop_value_bytes
                ),
            ));
        }
        out.push((k.clone(), v));
    }
    Ok(out)
}

fn browser_fields(m: &Map<String, Value>, limits: &Limits) -> Result<BrowserHit, WireError> {
    let name = required(m, &["n", "name"], limits.name_bytes)?
        .trim()
        .to_owned();
    let url = required(m, &["u", "url"], limits.url_bytes)?
        .trim()
        .to_owned();
    let domains = match string(
        m,
        &["d", "domain", "site"],
        limits.domain_bytes * limits.domains,
    )? {
        None => vec![],
        Some(d) => {
            let list: Vec<String> = d
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect();
            if list.len() > limits.domains {
                return Err(WireError::field(
                    Refusal::InvalidField,
                    "domain",
                    format!("{} domains; the limit is {}", list.len(), limits.domains),
                ));
            }
            if let Some(long) = list.iter().find(|d| d.len() > limits.domain_bytes) {
                return Err(WireError::field(
                    Refusal::FieldTooLong,
                    "domain",
                    format!(
                        "domain is {} bytes; the limit is {}",
                        long.len(),
                        limits.domain_bytes
                    ),
                ));
            }
            list
        }
    };
    let referrer = string(m, &["r", "referrer"], limits.referrer_bytes)?.map(str::to_owned);
    let screen_width = match get(m, &["w", "screen_width"]) {
        None => None,
        Some((k, v)) => match v.as_u64() {
            Some(w) if w <= limits.screen_width_max => Some(w as u16),
            _ => {
                return Err(WireError::field(
                    Refusal::InvalidField,
                    k,
                    format!(
                        "field '{k}' must be an integer from 0 to {}",
                        limits.screen_width_max
                    ),
                ));
            }
        },
    };
    let language = string(m, &["l", "language"], limits.language_bytes)?.map(str::to_owned);
    let props = props(m, &["p", "props", "m", "meta"], limits)?;
    let engagement = if name == ENGAGEMENT {
        let int = |keys: &[&str]| get(m, keys).map(|(k, v)| (k, v.as_u64()));
        Some(engaged(
            int(&["e", "engagement_time"]),
            int(&["sd", "scroll_depth"]),
            limits,
        )?)
    } else {
        None
    };
    Ok(BrowserHit {
        name,
        url,
        domains,
        referrer,
        screen_width,
        language,
        props,
        engagement,
    })
}

/// Parses the body of `POST /api/collect` or `POST /api/event` (our tracker's
/// short keys and Plausible's long and short keys are the same parser).
///
/// Bodies as browsers send them take a borrowing fast path; anything it does
/// not take (escapes, floats, duplicate keys, any refusal) goes through the
/// general parser, which alone decides refusals.
pub fn parse_browser(body: &[u8], limits: &Limits) -> Result<BrowserHit, WireError> {
    if let Some(hit) = fast::browser(body, limits) {
        return Ok(hit);
    }
    browser_fields(&parse_object(body)?, limits)
}

/// The general parser alone (the fast path's reference in tests).
#[cfg(test)]
fn parse_browser_general(body: &[u8], limits: &Limits) -> Result<BrowserHit, WireError> {
    browser_fields(&parse_object(body)?, limits)
}

/// Splits a batch body into objects: a JSON array, or NDJSON (one object per line).
pub fn parse_batch(body: &[u8], limits: &Limits, now_ms: i64) -> Result<Vec<ServerHit>, WireError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let items: Vec<Map<String, Value>> = if first == Some(&b'[') {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Array(a)) => a
                .into_iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::Object(m) => Ok(m),
                    _ => Err(at(
                        i,
                        WireError::new(Refusal::InvalidJson, "each hit must be a JSON object"),
                    )),
                })
                .collect::<Result<_, _>>()?,
            Ok(_) => unreachable!("a body starting with '[' parses as an array or fails"),
            Err(e) => {
                return Err(WireError::new(
                    Refusal::InvalidJson,
                    format!("the body is not valid JSON: {e}"),
                ));
            }
        }
    } else {
        body.split(|b| *b == b'\n')
            .enumerate()
            .filter(|(_, l)| l.iter().any(|b| !b.is_ascii_whitespace()))
            .map(|(i, l)| parse_object(l).map_err(|e| at(i, e)))
            .collect::<Result<_, _>>()?
    };
    if items.is_empty() {
        return Err(WireError::new(
            Refusal::InvalidJson,
            "the batch holds no hits",
        ));
    }
    if items.len() > limits.batch_hits {
        return Err(WireError::new(
            Refusal::TooManyHits,
            format!(
                "{} hits in one batch; the limit is {}",
                items.len(),
                limits.batch_hits
            ),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, m)| server_hit(m, limits, now_ms).map_err(|e| at(i, e)))
        .collect()
}

fn at(i: usize, mut e: WireError) -> WireError {
    e.message = format!("hit {i}: {}", e.message);
    e
}

/// Earliest accepted timestamp for server-side hits: 2000-01-01T00:00:00Z.
pub const MIN_TS_MS: i64 = 946_684_800_000;
/// How far in the future a server-side timestamp may be (clock skew).
pub const MAX_FUTURE_MS: i64 = 5 * 60 * 1000;

fn server_hit(
    m: &Map<String, Value>,
    limits: &Limits,
    now_ms: i64,
) -> Result<ServerHit, WireError> {
    let hit = browser_fields(m, limits)?;
    let user_agent = match string(m, &["user_agent"], limits.user_agent_bytes)? {
        Some(ua) if !ua.trim().is_empty() => ua.to_owned(),
        _ => {
            return Err(WireError::field(
                Refusal::MissingUserAgent,
                "user_agent",
                "field 'user_agent' is required: the visitor's User-Agent",
            ));
        }
    };
    let ip = match string(m, &["ip"], 64)? {
        None => None,
        Some(s) => Some(s.trim().parse::<IpAddr>().map_err(|_| {
            WireError::field(
                Refusal::InvalidField,
                "ip",
                format!("field 'ip' is not an IP address: {s:?}"),
            )
        })?),
    };
    let ts_ms = match get(m, &["timestamp"]) {
        None => None,
        Some((_, v)) => {
            let ms = match v {
                Value::Number(n) => n.as_i64(),
                Value::String(s) => s
                    .parse::<jiff::Timestamp>()
                    .ok()
                    .map(|t| t.as_millisecond()),
                _ => None,
            };
            match ms {
                Some(ms) if (MIN_TS_MS..=now_ms + MAX_FUTURE_MS).contains(&ms) => Some(ms),
                _ => {
                    return Err(WireError::field(
                        Refusal::InvalidField,
                        "timestamp",
                        "field 'timestamp' must be RFC 3339 or Unix milliseconds, \
                         from 2000-01-01 to 5 minutes from now",
                    ));
                }
            }
        }
    };
    Ok(ServerHit {
        hit,
        user_agent,
        ip,
        ts_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lim() -> Limits {
        Limits::default()
    }

    #[test]
    fn tracker_short_keys() {
        let h = parse_browser(
            br#"{"n":"pageview","u":"https://a.test/x?y=1","d":"a.test","r":null,"w":1280,"l":"en-US","p":{"k":"v","n":3,"b":true}}"#,
            &lim(),
        )
        .unwrap();
        assert_eq!(h.name, "pageview");
        assert_eq!(h.domains, vec!["a.test"]);
        assert_eq!(h.referrer, None);
        assert_eq!(h.screen_width, Some(1280));
        assert_eq!(
            h.props,
            vec![
                ("b".into(), "true".into()),
                ("k".into(), "v".into()),
                ("n".into(), "3".into())
            ]
        );
    }

    #[test]
    fn plausible_long_keys_string_props_and_domain_lists() {
        let h = parse_browser(
            br#"{"name":"Signup","url":"https://a.test/","domain":"a.test,b.test","referrer":"https://g.test/","props":"{\"plan\":\"pro\"}","revenue":{"amount":1}}"#,
            &lim(),
        )
        .unwrap();
        assert_eq!(h.domains, vec!["a.test", "b.test"]);
        assert_eq!(h.props, vec![("plan".into(), "pro".into())]);
        assert_eq!(h.referrer.as_deref(), Some("https://g.test/"));
    }

    #[test]
    fn errors_name_the_field_and_reason() {
        let e = parse_browser(b"{not json", &lim()).unwrap_err();
        assert_eq!(e.reason, Refusal::InvalidJson);
        let e = parse_browser(b"[1]", &lim()).unwrap_err();
        assert_eq!(e.reason, Refusal::InvalidJson);
        let e = parse_browser(br#"{"n":5,"u":"https://a.test/"}"#, &lim()).unwrap_err();
        assert_eq!(
            (e.reason, e.field.as_deref()),
            (Refusal::InvalidField, Some("n"))
        );
        let e = parse_browser(br#"{"u":"https://a.test/"}"#, &lim()).unwrap_err();
        assert_eq!(
            (e.reason, e.field.as_deref()),
            (Refusal::InvalidField, Some("n"))
        );
        let long = format!(
            r#"{{"n":"pageview","u":"https://a.test/{}"}}"#,
            "x".repeat(3000)
        );
        let e = parse_browser(long.as_bytes(), &lim()).unwrap_err();
        assert_eq!(
            (e.reason, e.field.as_deref()),
            (Refusal::FieldTooLong, Some("u"))
        );
        let e = parse_browser(br#"{"n":"x","u":"https://a.test/","w":-1}"#, &lim()).unwrap_err();
        assert_eq!(
            (e.reason, e.field.as_deref()),
            (Refusal::InvalidField, Some("w"))
        );
        let e = parse_browser(
            br#"{"n":"x","u":"https://a.test/","p":{"a":{"b":1}}}"#,
            &lim(),
        )
        .unwrap_err();
        assert_eq!(e.reason, Refusal::InvalidField);
        let many: Vec<String> = (0..31).map(|i| format!(r#""k{i}":"v""#)).collect();
        let body = format!(
            r#"{{"n":"x","u":"https://a.test/","p":{{{}}}}}"#,
            many.join(",")
        );
        assert_eq!(
            parse_browser(body.as_bytes(), &lim()).unwrap_err().reason,
            Refusal::TooManyProps
        );
        let body = format!(
            r#"{{"n":"x","u":"https://a.test/","p":{{"k":"{}"}}}}"#,
            "v".repeat(513)
        );
        assert_eq!(
            parse_browser(body.as_bytes(), &lim()).unwrap_err().reason,
            Refusal::FieldTooLong
        );
    }

    /// Bodies the fast path must take (what the tracker and Plausible's script
    /// send), and bodies it must leave to the general parser or refuse there.
    #[test]
    fn fast_path_takes_browser_bodies_and_agrees_with_the_general_parser() {
        let taken: &[&str] = &[
            r#"{"n":"pageview","u":"https://a.test/x?utm_source=n&b=1","d":"a.test","r":null,"w":1280,"l":"en-US"}"#,
            r#"{"n":"Signup","u":"https://a.test/p","d":"a.test","r":"https://g.test/","w":390,"l":"de","p":{"plan":"pro","n":3,"b":true,"z":null,"a":-7}}"#,
            r#"{"name":"pageview","url":"https://a.test/","domain":"a.test, b.test ,,","referrer":"","props":{}}"#,
            " { \"n\" : \"x\" ,\r\n\t\"u\" : \"https://a.test/\" } ",
            "{\"n\":\"caf\u{e9} \u{1f600}\",\"u\":\"https://a.test/\",\"w\":0,\"revenue\":{\"amount\":1,\"currency\":\"EUR\"}}",
            r#"{"n":" spaced ","u":"https://a.test/","r":null,"referrer":"https://x.test/","screen_width":16384}"#,
        ];
        let left: &[&str] = &[
            r#"{"n":"a\"b","u":"https://a.test/"}"#,
            r#"{"n":"x","u":"https://a.test/\u00e9"}"#,
            r#"{"n":"x","u":"https://a.test/","n":"y"}"#,
            r#"{"n":"x","u":"https://a.test/","w":1280.0}"#,
            r#"{"n":"x","u":"https://a.test/","w":1e3}"#,
            r#"{"n":"x","u":"https://a.test/","w":-1}"#,
            r#"{"n":"x","u":"https://a.test/","w":99999}"#,
            r#"{"n":"x","u":"https://a.test/","w":01}"#,
            r#"{"n":"x","u":"https://a.test/","p":{"k":-0}}"#,
            r#"{"n":"x","u":"https://a.test/","p":{"k":"v","k":"w"}}"#,
            r#"{"n":"x","u":"https://a.test/","p":"{\"plan\":\"pro\"}"}"#,
            r#"{"n":"x","u":"https://a.test/","p":{"a":{"b":1}}}"#,
            r#"{"n":"x","u":"https://a.test/","p":{"":"v"}}"#,
            r#"{"n":"x","u":"https://a.test/","p":[1]}"#,
            r#"{"n":"x","u":"https://a.test/",}"#,
            r#"{"n":"x","u":"https://a.test/"} x"#,
            r#"{"n":"x","u":"https://a.test/""#,
            r#"{"n":"   ","u":"https://a.test/"}"#,
            r#"{"n":5,"u":"https://a.test/"}"#,
            r#"{"u":"https://a.test/"}"#,
            r#"{"n":"x","u":"https://a.test/","r":5}"#,
            r#"{"n":"x","u":"https://a.test/","l":truex}"#,
            r#"{"n":"x","u":"https://a.test/","d":"a,b,c,d,e,f,g,h,i,j,k"}"#,
            "{\"n\":\"x\u{1}\",\"u\":\"https://a.test/\"}",
            "[1]",
            "",
            "\u{feff}{\"n\":\"x\",\"u\":\"https://a.test/\"}",
        ];
        let mut bodies: Vec<String> = taken.iter().chain(left).map(|s| s.to_string()).collect();
        bodies.push(format!(
            r#"{{"n":"x","u":"https://a.test/{}"}}"#,
            "x".repeat(3000)
        ));
        bodies.push(format!(
            r#"{{"n":"x","u":"https://a.test/","p":{{"k":"{}"}}}}"#,
            "v".repeat(513)
        ));
        let many: Vec<String> = (0..31).map(|i| format!(r#""k{i}":"v""#)).collect();
        bodies.push(format!(
            r#"{{"n":"x","u":"https://a.test/","p":{{{}}}}}"#,
            many.join(",")
        ));
        for (i, body) in bodies.iter().enumerate() {
            let fast = fast::browser(body.as_bytes(), &lim());
            let general = parse_browser_general(body.as_bytes(), &lim());
            if i < taken.len() {
                let h = fast.unwrap_or_else(|| panic!("fast path refused {body}"));
                assert_eq!(Ok(h), general, "{body}");
            } else {
                assert_eq!(fast, None, "{body}");
            }
            assert_eq!(parse_browser(body.as_bytes(), &lim()), general, "{body}");
        }
    }

    #[test]
    fn engagements_carry_time_and_scroll_depth() {
        let plausible = br#"{"n":"engagement","sd":62,"d":"a.test","u":"https://a.test/post","p":{},"e":15230,"v":26}"#;
        let h = parse_browser(plausible, &lim()).unwrap();
        assert_eq!(
            h.engagement,
            Some(Engaged {
                engaged_ms: 15_230,
                scroll_depth: Some(62)
            })
        );
        assert_eq!(parse_browser_general(plausible, &lim()).unwrap(), h);
        // Long names, a page that got shorter, nothing scrolled.
        let h = parse_browser(
            br#"{"name":"engagement","url":"https://a.test/","engagement_time":0,"scroll_depth":140}"#,
            &lim(),
        )
        .unwrap();
        assert_eq!(h.engagement.unwrap().scroll_depth, Some(100));
        let h = parse_browser(br#"{"n":"engagement","u":"https://a.test/"}"#, &lim()).unwrap();
        assert_eq!(
            h.engagement,
            Some(Engaged {
                engaged_ms: 0,
                scroll_depth: None
            })
        );
        // Other names ignore the fields, as any unknown key.
        let h = parse_browser(br#"{"n":"pageview","u":"https://a.test/","e":-1}"#, &lim()).unwrap();
        assert_eq!(h.engagement, None);
        for (body, field) in [
            (r#"{"n":"engagement","u":"https://a.test/","e":-5}"#, "e"),
            (
                r#"{"n":"engagement","u":"https://a.test/","e":86400001}"#,
                "e",
            ),
            (r#"{"n":"engagement","u":"https://a.test/","e":1.5}"#, "e"),
            (r#"{"n":"engagement","u":"https://a.test/","e":"5"}"#, "e"),
            (r#"{"n":"engagement","u":"https://a.test/","sd":-1}"#, "sd"),
            (
                r#"{"n":"engagement","u":"https://a.test/","scroll_depth":"x"}"#,
                "scroll_depth",
            ),
        ] {
            let e = parse_browser(body.as_bytes(), &lim()).unwrap_err();
            assert_eq!(
                (e.reason, e.field.as_deref()),
                (Refusal::InvalidField, Some(field)),
                "{body}"
            );
        }
    }

    #[test]
    fn batch_array_and_ndjson() {
        let now = 1_800_000_000_000;
        let arr = br#"[{"name":"pageview","url":"https://a.test/","user_agent":"Mozilla/5.0 X","ip":"203.0.113.9","timestamp":"2025-01-02T03:04:05Z"}]"#;
        let hits = parse_batch(arr, &lim(), now).unwrap();
        assert_eq!(hits[0].ts_ms, Some(1_735_787_045_000));
        assert_eq!(hits[0].ip, Some("203.0.113.9".parse().unwrap()));
        let nd = b"{\"name\":\"a\",\"url\":\"https://a.test/\",\"user_agent\":\"UA UA UA UA\",\"timestamp\":1735787045000}\n\n{\"name\":\"b\",\"url\":\"https://a.test/b\",\"user_agent\":\"UA UA UA UA\"}\n";
        let hits = parse_batch(nd, &lim(), now).unwrap();
        assert_eq!(hits.len(), 2);
        assert_eq!(hits[1].hit.name, "b");
    }

    #[test]
    fn batch_errors_say_which_hit() {
        let now = 1_800_000_000_000;
        let nd = b"{\"name\":\"a\",\"url\":\"https://a.test/\",\"user_agent\":\"UA UA UA UA\"}\n{\"name\":\"b\",\"url\":\"https://a.test/\"}";
        let e = parse_batch(nd, &lim(), now).unwrap_err();
        assert_eq!(e.reason, Refusal::MissingUserAgent);
        assert!(e.message.starts_with("hit 1:"), "{}", e.message);
        let e = parse_batch(
            br#"[{"name":"a","url":"https://a.test/","user_agent":"UA UA UA UA","timestamp":"2999-01-01T00:00:00Z"}]"#,
            &lim(),
            now,
        )
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("timestamp"));
        assert_eq!(
            parse_batch(b"[]", &lim(), now).unwrap_err().reason,
            Refusal::InvalidJson
        );
        let big: Vec<&str> = (0..10_001)
            .map(|_| r#"{"name":"a","url":"https://a.test/","user_agent":"UA UA UA"}"#)
            .collect();
        let body = big.join("\n");
        assert_eq!(
            parse_batch(body.as_bytes(), &lim(), now)
                .unwrap_err()
                .reason,
            Refusal::TooManyHits
        );
    }
}
