//! User-Agent parsing: browser, OS, device class and the bot verdict, with a
//! bounded cache shared by all request handlers.
//!
//! This module owns the mapping from woothee's categories and names to the names
//! people know (`Chrome`, `Samsung Internet`, `macOS`, `iOS`...) and the device
//! class, and the cache in front of it. It never keeps the User-Agent anywhere but
//! in that cache (in memory, bounded), and never reads the clock or the OS: the
//! cache's hash key comes from the caller.
//!
//! Known limits of UA parsing: iPads since iPadOS 13 send a macOS UA by default
//! (reported as macOS / Desktop); Windows 11 sends `Windows NT 10.0` (reported as
//! Windows 10); macOS versions are frozen at 10.15.7 in Safari and Chrome UAs.

use crate::bots::is_bot_ua;
use crate::hit::Device;
use crate::page::bounded;
use siphasher::sip::SipHasher13;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex};
use woothee::parser::Parser;

/// User-Agents are judged (and cached) by their first `MAX_UA_LEN` bytes. Real
/// browser UAs are under 400 bytes; this bounds the cache's memory.
pub const MAX_UA_LEN: usize = 512;
/// Number of independently locked cache shards.
pub const CACHE_SHARDS: usize = 16;
/// Entries per shard. When a shard is full it is cleared before the next insert,
/// so the cache never holds more than `CACHE_SHARDS * CACHE_SHARD_CAPACITY`
/// (16384) entries, each with a key of at most [`MAX_UA_LEN`] bytes: at most
/// about 12 MiB even when every request carries a new, maximal UA.
pub const CACHE_SHARD_CAPACITY: usize = 1024;

/// What a User-Agent says about the visitor's software.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UaInfo {
    /// `Chrome`, `Firefox`, `Safari`, `Edge`, `Opera`, `Samsung Internet`, ...; empty when unknown.
    pub browser: String,
    /// Major version only (`124`); empty when unknown.
    pub browser_version: String,
    /// `Windows`, `macOS`, `iOS`, `Android`, `Linux`, `ChromeOS`, ...; empty when unknown.
    pub os: String,
    /// `10`, `17.4`, `14`, ...; empty when unknown.
    pub os_version: String,
    /// From the UA alone; see [`device_for`] for the screen-width refinement.
    pub device: Device,
    /// A crawler, tool, headless browser or monitor (woothee's crawler category,
    /// its HTTP-library and RSS-reader names, or [`is_bot_ua`]).
    pub bot: bool,
}

/// The device class, refined by the screen width when the UA says nothing:
/// below 576 px Mobile, below 992 px Tablet, otherwise Desktop.
/// A width of 0 counts as unknown.
pub fn device_for(ua: &UaInfo, screen_width: Option<u16>) -> Device {
    if ua.device != Device::Unknown {
        return ua.device;
    }
    match screen_width {
        None | Some(0) => Device::Unknown,
        Some(w) if w < 576 => Device::Mobile,
        Some(w) if w < 992 => Device::Tablet,
        Some(_) => Device::Desktop,
    }
}

/// Parses a User-Agent without the cache (at most [`MAX_UA_LEN`] bytes of it are read).
pub fn parse_ua(user_agent: &str) -> UaInfo {
    let ua = bounded(user_agent, MAX_UA_LEN).trim();
    let marker_bot = is_bot_ua(ua);
    let Some(r) = Parser::new().parse(ua) else {
        return UaInfo {
            browser: String::new(),
            browser_version: String::new(),
            os: String::new(),
            os_version: String::new(),
            device: Device::Unknown,
            bot: marker_bot,
        };
    };
    let woothee_bot =
        r.category == "crawler" || r.name == "HTTP Library" || r.name.ends_with("RSSReader");
    let bot = marker_bot || woothee_bot;

    let (os, os_version) = os_name(r.os, &r.os_version);
    // Appliance entries (Xbox, PlayStation) overwrite the browser name with the device's.
    let browser = if r.name == r.os {
        ""
    } else {
        browser_name(r.name, os)
    };
    let browser_version = if r.name == "Webview" && os == "Android" {
        // Android WebView says `Version/4.0`; its real version is Chrome's.
        ua.split_once("Chrome/")
            .map(|(_, v)| major(v))
            .unwrap_or_default()
    } else {
        major(r.version)
    };
    let device = if bot {
        Device::Unknown
    } else {
        match r.category {
            "pc" => Device::Desktop,
            "smartphone" => match r.os {
                "iPad" => Device::Tablet,
                // Android tablets leave out the `Mobile` token (Chrome: "Mobile Safari",
                // Firefox: "Mobile;" vs "Tablet;").
                "Android" if !ua.contains("Mobile") => Device::Tablet,
                _ => Device::Mobile,
            },
            "mobilephone" => Device::Mobile,
            _ => Device::Unknown,
        }
    };
    UaInfo {
        browser: browser.to_owned(),
        browser_version,
        os: os.to_owned(),
        os_version,
        device,
        bot,
    }
}

fn browser_name<'a>(name: &'a str, os: &str) -> &'a str {
    match name {
        "SamsungBrowser" => "Samsung Internet",
        "Google Search App" => "Google App",
        "Webview" if os == "Android" => "Android WebView",
        "Webview" if os == "iOS" => "Safari (in-app)",
        "Webview" => "WebView",
        "UNKNOWN" => "",
        other => other,
    }
}

fn os_name<'a>(os: &'a str, version: &str) -> (&'a str, String) {
    let fixed = |v: &str| ("Windows", v.to_owned());
    match os {
        "Windows 10" => fixed("10"),
        "Windows 8.1" => fixed("8.1"),
        "Windows 8" => fixed("8"),
        "Windows 7" => fixed("7"),
        "Windows Vista" => fixed("Vista"),
        "Windows XP" => fixed("XP"),
        "Windows 2000" => fixed("2000"),
        "Windows NT 4.0" => fixed("NT 4.0"),
        "Windows Me" => fixed("Me"),
        "Windows 98" => fixed("98"),
        "Windows 95" => fixed("95"),
        "Windows UNKNOWN Ver" => fixed(""),
        "Windows Phone OS" => ("Windows Phone", short_version(version, 2)),
        "Mac OSX" => ("macOS", short_version(version, 2)),
        "Mac OS Classic" => ("Mac OS", short_version(version, 2)),
        "iPhone" | "iPad" | "iPod" | "iOS" => ("iOS", short_version(version, 2)),
        "Android" => ("Android", short_version(version, 2)),
        "Linux" => ("Linux", String::new()),
        // The CrOS platform number (14541.0.0) means nothing to people.
        "ChromeOS" => ("ChromeOS", String::new()),
        "BlackBerry" | "BlackBerry 10" => ("BlackBerry", short_version(version, 2)),
        "UNKNOWN" | "" => ("", String::new()),
        other => (other, short_version(version, 2)),
    }
}

/// The leading run of digits, as in `124` from `124.0.6367.60`; empty if none.
fn major(v: &str) -> String {
    let end = v.bytes().take_while(u8::is_ascii_digit).count();
    v[..end].to_owned()
}

/// The first `parts` numeric components, dropping a trailing `.0`:
/// `17.4.1` -> `17.4`, `8.1.0` -> `8.1`, `14.0` -> `14`, `UNKNOWN` -> ``.
fn short_version(v: &str, parts: usize) -> String {
    let run_end = v
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b'.')
        .count();
    let mut out = String::new();
    for (i, part) in v[..run_end]
        .split('.')
        .filter(|p| !p.is_empty())
        .take(parts)
        .enumerate()
    {
        if i > 0 {
            out.push('.');
        }
        out.push_str(part);
    }
    while out.ends_with(".0") {
        out.truncate(out.len() - 2);
    }
    out
}

/// A hasher for keys that are already keyed SipHash outputs: passes them through.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed; fold anything else so it is still correct.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

struct Entry {
    ua: Box<str>,
    info: Arc<UaInfo>,
}

type Shard = HashMap<u64, Entry, BuildHasherDefault<PassThrough>>;

/// A User-Agent parser with a bounded, sharded cache. `Send + Sync`: share one
/// (behind an `Arc`, or inside the [`crate::Enricher`]) between all handlers.
///
/// The cache maps the keyed SipHash-1-3 of a UA to its [`UaInfo`]; the UA itself is
/// stored too and compared on every hit, so a hash collision costs a re-parse, never
/// a wrong answer. Bounds: see [`CACHE_SHARD_CAPACITY`].
pub struct UaParser {
    key: [u8; 16],
    shards: Box<[Mutex<Shard>]>,
    /// [`CACHE_SHARD_CAPACITY`], smaller in tests.
    shard_capacity: usize,
}

// Checked by the compiler: `UaParser` is shared between threads.
const _: () = {
    fn assert_send_sync<T: Send + Sync>() {}
    let _ = assert_send_sync::<UaParser>;
};

impl fmt::Debug for UaParser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UaParser")
            .field("cached", &self.cached())
            .finish_non_exhaustive()
    }
}

impl UaParser {
    /// A parser with an empty cache. `cache_key` keys the cache's hash: pass 16
    /// random bytes so nobody can craft User-Agents that all land in one shard.
    pub fn new(cache_key: [u8; 16]) -> UaParser {
        UaParser::with_shard_capacity(cache_key, CACHE_SHARD_CAPACITY)
    }

    fn with_shard_capacity(cache_key: [u8; 16], shard_capacity: usize) -> UaParser {
        let shards = (0..CACHE_SHARDS)
            .map(|_| Mutex::new(Shard::default()))
            .collect();
        UaParser {
            key: cache_key,
            shards,
            shard_capacity,
        }
    }

    /// Parses a User-Agent, from the cache when it was seen before.
    pub fn parse(&self, user_agent: &str) -> Arc<UaInfo> {
        let ua = bounded(user_agent, MAX_UA_LEN);
        let mut h = SipHasher13::new_with_key(&self.key);
        h.write(ua.as_bytes());
        let hash = h.finish();
        // The map uses the low bits (bucket) and the top 7 bits (tag) of the key:
        // pick the shard from bits in between so neither loses entropy.
        let shard = &self.shards[(hash >> 32) as usize % CACHE_SHARDS];

        if let Some(e) = lock(shard).get(&hash)
            && &*e.ua == ua
        {
            return e.info.clone();
        }
        // Parse outside the lock: two handlers may parse the same new UA at once,
        // which costs a little work and gives the same answer.
        let info = Arc::new(parse_ua(ua));
        let mut map = lock(shard);
        if map.len() >= self.shard_capacity && !map.contains_key(&hash) {
            map.clear();
        }
        map.insert(
            hash,
            Entry {
                ua: ua.into(),
                info: info.clone(),
            },
        );
        info
    }

    /// Number of cached User-Agents (for metrics).
    pub fn cached(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }
}

fn lock(m: &Mutex<Shard>) -> std::sync::MutexGuard<'_, Shard> {
    // A panic while holding the lock cannot leave the map half-updated in a way
    // that matters for a cache: keep using it.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(ua: &str) -> UaInfo {
        parse_ua(ua)
    }

    fn check(ua: &str, browser: &str, bv: &str, os: &str, ov: &str, device: Device) {
        let i = p(ua);
        assert_eq!(
            (
                i.browser.as_str(),
                i.browser_version.as_str(),
                i.os.as_str(),
                i.os_version.as_str(),
                i.device,
                i.bot
            ),
            (browser, bv, os, ov, device, false),
            "{ua}"
        );
    }

    #[test]
    fn desktop_browsers() {
        check(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
            "Chrome",
            "124",
            "Windows",
            "10",
            Device::Desktop,
        );
        check(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.51",
            "Edge",
            "124",
            "Windows",
            "10",
            Device::Desktop,
        );
        check(
            "Mozilla/5.0 (Windows NT 6.1; Win64; x64; rv:115.0) Gecko/20100101 Firefox/115.0",
            "Firefox",
            "115",
            "Windows",
            "7",
            Device::Desktop,
        );
        check(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36 OPR/109.0.0.0",
            "Opera",
            "109",
            "Windows",
            "10",
            Device::Desktop,
        );
        check(
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Safari/605.1.15",
            "Safari",
            "17",
            "macOS",
            "10.15",
            Device::Desktop,
        );
        check(
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.4; rv:125.0) Gecko/20100101 Firefox/125.0",
            "Firefox",
            "125",
            "macOS",
            "",
            Device::Desktop,
        );
        check(
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
            "Chrome",
            "124",
            "Linux",
            "",
            Device::Desktop,
        );
        check(
            "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
            "Firefox",
            "125",
            "Linux",
            "",
            Device::Desktop,
        );
        check(
            "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
            "Chrome",
            "124",
            "ChromeOS",
            "",
            Device::Desktop,
        );
        check(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Vivaldi/6.7.3329.17",
            "Vivaldi",
            "6",
            "Windows",
            "10",
            Device::Desktop,
        );
    }

    #[test]
    fn mobile_browsers() {
        check(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
            "Safari",
            "17",
            "iOS",
            "17.4",
            Device::Mobile,
        );
        check(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/124.0.6367.71 Mobile/15E148 Safari/604.1",
            "Chrome",
            "124",
            "iOS",
            "17.4",
            Device::Mobile,
        );
        check(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) FxiOS/125.0 Mobile/15E148 Safari/605.1.15",
            "Firefox",
            "125",
            "iOS",
            "17.4",
            Device::Mobile,
        );
        check(
            "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
            "Chrome",
            "124",
            "Android",
            "10",
            Device::Mobile,
        );
        check(
            "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36",
            "Samsung Internet",
            "24",
            "Android",
            "14",
            Device::Mobile,
        );
        check(
            "Mozilla/5.0 (Android 14; Mobile; rv:125.0) Gecko/125.0 Firefox/125.0",
            "Firefox",
            "125",
            "Android",
            "14",
            Device::Mobile,
        );
        check(
            "Mozilla/5.0 (Linux; Android 8.1.0; Nokia 3.1) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.210 Mobile Safari/537.36 EdgA/120.0.2210.157",
            "Edge",
            "120",
            "Android",
            "8.1",
            Device::Mobile,
        );
        check(
            "Mozilla/5.0 (Linux; Android 14; Pixel 8 Build/UQ1A.240205.004; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/122.0.6261.119 Mobile Safari/537.36",
            "Android WebView",
            "122",
            "Android",
            "14",
            Device::Mobile,
        );
    }

    #[test]
    fn tablets() {
        check(
            "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
            "Safari",
            "16",
            "iOS",
            "16.6",
            Device::Tablet,
        );
        check(
            "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
            "Chrome",
            "124",
            "Android",
            "13",
            Device::Tablet,
        );
        check(
            "Mozilla/5.0 (Android 13; Tablet; rv:125.0) Gecko/125.0 Firefox/125.0",
            "Firefox",
            "125",
            "Android",
            "13",
            Device::Tablet,
        );
    }

    #[test]
    fn crawlers_and_tools_are_bots() {
        for ua in [
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.60 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/124.0.6367.60 Safari/537.36",
            "curl/8.5.0",
            "Wget/1.21.4",
            "python-requests/2.31.0",
            "PHP/8.2",
            "",
        ] {
            let i = p(ua);
            assert!(i.bot, "not a bot: {ua:?}");
            assert_eq!(i.device, Device::Unknown, "{ua}");
        }
    }

    #[test]
    fn appliances_and_in_app_browsers() {
        let xbox = p(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64; Xbox; Xbox One) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edge/44.18363.8131",
        );
        assert_eq!(
            (
                xbox.browser.as_str(),
                xbox.os.as_str(),
                xbox.device,
                xbox.bot
            ),
            ("", "Xbox One", Device::Unknown, false)
        );
        check(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_3 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/450.0.0.38.108;FBBV/564431005]",
            "Safari (in-app)",
            "",
            "iOS",
            "17.3",
            Device::Mobile,
        );
        check(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) GSA/315.0.630091404 Mobile/15E148 Safari/604.1",
            "Google App",
            "315",
            "iOS",
            "17.4",
            Device::Mobile,
        );
        check(
            "Mozilla/5.0 (Windows NT 10.0; WOW64; Trident/7.0; rv:11.0) like Gecko",
            "Internet Explorer",
            "11",
            "Windows",
            "10",
            Device::Desktop,
        );
    }

    #[test]
    fn unknown_ua_is_unknown_not_bot() {
        let i = p("SomeEmbeddedBrowser/1.0 (unrecognised platform)");
        assert!(!i.bot);
        assert_eq!(i.browser, "");
        assert_eq!(i.os, "");
        assert_eq!(i.device, Device::Unknown);
    }

    #[test]
    fn device_refined_by_width_only_when_ua_is_silent() {
        let unknown = p("SomeEmbeddedBrowser/1.0 (unrecognised platform)");
        assert_eq!(device_for(&unknown, None), Device::Unknown);
        assert_eq!(device_for(&unknown, Some(0)), Device::Unknown);
        assert_eq!(device_for(&unknown, Some(375)), Device::Mobile);
        assert_eq!(device_for(&unknown, Some(575)), Device::Mobile);
        assert_eq!(device_for(&unknown, Some(576)), Device::Tablet);
        assert_eq!(device_for(&unknown, Some(991)), Device::Tablet);
        assert_eq!(device_for(&unknown, Some(992)), Device::Desktop);
        assert_eq!(device_for(&unknown, Some(2560)), Device::Desktop);
        let desktop = p("Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0");
        assert_eq!(device_for(&desktop, Some(375)), Device::Desktop);
    }

    #[test]
    fn version_helpers() {
        assert_eq!(major("124.0.6367.60"), "124");
        assert_eq!(major("UNKNOWN"), "");
        assert_eq!(major(""), "");
        assert_eq!(short_version("17.4.1", 2), "17.4");
        assert_eq!(short_version("8.1.0", 2), "8.1");
        assert_eq!(short_version("14.0", 2), "14");
        assert_eq!(short_version("10", 2), "10");
        assert_eq!(short_version("UNKNOWN", 2), "");
    }

    #[test]
    fn cache_returns_the_same_answer_and_shares_it() {
        let parser = UaParser::new([9; 16]);
        let ua = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0";
        let a = parser.parse(ua);
        let b = parser.parse(ua);
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(*a, parse_ua(ua));
        assert_eq!(parser.cached(), 1);
    }

    #[test]
    fn cache_is_bounded() {
        // The production bound is CACHE_SHARDS * CACHE_SHARD_CAPACITY; a small
        // capacity exercises the same eviction path quickly.
        let cap = 8;
        let parser = UaParser::with_shard_capacity([1; 16], cap);
        let mut max_seen = 0;
        for i in 0..(CACHE_SHARDS * cap * 4) {
            let ua =
                format!("Mozilla/5.0 (X11; Linux x86_64; rv:{i}.0) Gecko/20100101 Firefox/{i}.0");
            let info = parser.parse(&ua);
            assert_eq!(info.browser_version, i.to_string());
            for shard in parser.shards.iter() {
                max_seen = max_seen.max(lock(shard).len());
            }
        }
        assert_eq!(
            max_seen, cap,
            "a shard filled up to, and never beyond, its capacity"
        );
        assert!(parser.cached() <= CACHE_SHARDS * cap);
        // After eviction, answers are still right (re-parsed).
        assert_eq!(
            parser
                .parse("Mozilla/5.0 (X11; Linux x86_64; rv:3.0) Gecko/20100101 Firefox/3.0")
                .browser_version,
            "3"
        );
        assert_eq!(UaParser::new([0; 16]).shard_capacity * CACHE_SHARDS, 16_384);
    }

    #[test]
    fn long_uas_are_cut() {
        let parser = UaParser::new([2; 16]);
        let base = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0 ";
        let a = format!("{base}{}", "x".repeat(1000));
        let b = format!("{base}{}", "x".repeat(2000));
        let ia = parser.parse(&a);
        let ib = parser.parse(&b);
        // Both are judged by their first MAX_UA_LEN bytes: one cache entry.
        assert!(Arc::ptr_eq(&ia, &ib));
        assert_eq!(ia.browser, "Firefox");
        // A cut inside a multi-byte character does not panic.
        let c = format!("{}{}", "a".repeat(MAX_UA_LEN - 1), "é".repeat(10));
        parser.parse(&c);
    }
}
