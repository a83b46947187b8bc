//! Bot and referrer-spam filters.
//!
//! This module owns two pattern lists compiled into the binary: User-Agent markers of
//! automated clients ([`is_bot_ua`]: crawlers, headless browsers, HTTP libraries,
//! uptime monitors, link-preview fetchers) and well-known referrer-spam domains
//! ([`SpamList`], plus the operator's own). It never fetches a list from anywhere:
//! a list that updates itself over the network would break the air gap.
//! It only answers yes or no; counting the dropped hits is the caller's job.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use std::collections::BTreeSet;
use std::sync::LazyLock;

/// A User-Agent shorter than this (in bytes, after trimming) is treated as a bot.
/// Every real browser sends well over 50; `curl/8.5.0` is 10.
pub const MIN_BROWSER_UA_LEN: usize = 10;

/// Substrings (ASCII case-insensitive) that mark an automated client.
///
/// Deliberately absent: `Electron` (desktop apps with real users), in-app browsers
/// (`FBAN`, `Instagram`, `Snapchat`, `Telegram-Android`: real people), `Dalvik`
/// (Android apps), `Sogou` (also a browser; its spider says "spider").
/// Selenium and Playwright drive real browsers without a UA marker; only their
/// headless mode (`HeadlessChrome`) is visible here.
const BOT_MARKERS: &[&str] = &[
    // generic words used by crawlers, fetchers and monitors
    "bot",
    "crawl",
    "spider",
    "slurp",
    "fetcher",
    "scraper",
    "monitor",
    "uptime",
    "preview",
    "archiver",
    "checker",
    "validator",
    "scanner",
    "headless",
    // headless browsers and automation
    "phantomjs",
    "slimerjs",
    "puppeteer",
    "playwright",
    "cypress",
    "jsdom",
    "lighthouse",
    "ptst/", // WebPageTest
    "gtmetrix",
    "pingdom",
    "statuscake",
    "site24x7",
    "newrelicpinger",
    "datadog",
    // HTTP tools and libraries
    "curl/",
    "wget/",
    "python-requests",
    "python-urllib",
    "python-httpx",
    "python/",
    "aiohttp",
    "httpx/",
    "go-http-client",
    "java/",
    "okhttp",
    "axios/",
    "node-fetch",
    "undici",
    "got (https://github.com/sindresorhus/got)",
    "libwww-perl",
    "lwp::",
    "www-mechanize",
    "scrapy",
    "httpclient",
    "guzzlehttp",
    "postmanruntime",
    "insomnia/",
    "httpie/",
    "rest-client/",
    "faraday v",
    "ruby/",
    "php/",
    "winhttp",
    "powershell",
    "reqwest",
    "hyper/",
    "httrack",
    "zgrab",
    "masscan",
    "nmap",
    "nikto",
    "sqlmap",
    "nuclei",
    // link previews, feeds and AI agents without "bot" in their name
    "facebookexternalhit",
    "facebookcatalog",
    "whatsapp",
    "skypeuripreview",
    "embedly",
    "iframely",
    "vkshare",
    "cardyb", // Bluesky link cards
    "mastodon/",
    "feedburner",
    "feedparser",
    "feedly",
    "newsblur",
    "inoreader",
    "ia_archiver",
    "chatgpt-user",
    "perplexity",
    "claude-web",
    "anthropic-ai",
    "google-inspectiontool",
    "googleother",
    "google-read-aloud",
    "mediapartners-google",
    "adsbot-google",
    "bingpreview",
    "yandex.com/bots",
    "qwantify",
    "exabot",
    "ahrefs",
    "semrush",
    "dataforseo",
];

/// Substrings that contain a marker above but belong to real users' devices.
/// Matching is leftmost-first, so an exception that starts earlier than the marker
/// inside it (`cubot` before `bot`) hides it.
const NOT_BOT: &[&str] = &[
    "cubot", // Cubot phones: "Android 11; CUBOT_X30"
];

static MATCHER: LazyLock<AhoCorasick> = LazyLock::new(|| {
    let patterns: Vec<&str> = NOT_BOT.iter().chain(BOT_MARKERS).copied().collect();
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::LeftmostFirst)
        .build(patterns)
        .expect("bot patterns compile")
});

/// True when the User-Agent looks automated: empty or shorter than
/// [`MIN_BROWSER_UA_LEN`], or containing one of the bot markers (case-insensitive).
///
/// This complements woothee's crawler category (see [`crate::ua`]), which the UA
/// parser checks too.
pub fn is_bot_ua(ua: &str) -> bool {
    let ua = ua.trim();
    if ua.len() < MIN_BROWSER_UA_LEN {
        return true;
    }
    MATCHER
        .find_iter(ua)
        .any(|m| m.pattern().as_usize() >= NOT_BOT.len())
}

/// Referrer-spam domains known for years of fake "visits" that advertise SEO
/// services, share buttons and worse. Subdomains match too.
const SPAM_DOMAINS: &[&str] = &[
    "semalt.com",
    "buttons-for-website.com",
    "buttons-for-your-website.com",
    "darodar.com",
    "ilovevitaly.com",
    "ilovevitaly.ru",
    "ilovevitaly.co",
    "priceg.com",
    "best-seo-offer.com",
    "best-seo-solution.com",
    "4webmasters.org",
    "free-social-buttons.com",
    "free-share-buttons.com",
    "social-buttons.com",
    "simple-share-buttons.com",
    "floating-share-buttons.com",
    "share-buttons.xyz",
    "trafficmonetize.org",
    "trafficmonetizer.org",
    "traffic2money.com",
    "hulfingtonpost.com",
    "humanorightswatch.org",
    "blackhatworth.com",
    "hundejo.com",
    "econom.co",
    "savetubevideo.com",
    "kambasoft.com",
    "get-free-traffic-now.com",
    "100dollars-seo.com",
    "success-seo.com",
    "videos-for-your-business.com",
    "video--production.com",
    "website-analyzer.info",
    "event-tracking.com",
    "sanjosestartups.com",
    "o-o-6-o-o.com",
    "o-o-8-o-o.com",
    "7makemoneyonline.com",
    "cenoval.ru",
    "cenokos.ru",
    "goodprotein.ru",
    "iskalko.ru",
    "luxup.ru",
    "ranksonic.info",
    "ranksonic.org",
    "webmonetizer.net",
    "fix-website-errors.com",
    "keywords-monitoring-your-success.com",
    "bestwebsitesawards.com",
    "googlsucks.com",
    "site-auditor.online",
    "rank-checker.online",
    "seo-platform.com",
];

/// A set of referrer-spam domains: the built-in list plus the operator's own.
#[derive(Debug, Clone)]
pub struct SpamList {
    /// Lowercase domains without `www.` or trailing dot. A BTreeSet, not a HashSet:
    /// no hash seed to draw from the OS.
    domains: BTreeSet<Box<str>>,
}

impl Default for SpamList {
    fn default() -> Self {
        SpamList::new(&[])
    }
}

impl SpamList {
    /// The built-in list plus `extra` domains from the configuration. Each extra
    /// entry is trimmed, lowercased, and stripped of a leading `*.`, `.` or `www.` and
    /// a trailing dot; empty entries are ignored.
    pub fn new(extra: &[String]) -> SpamList {
        let mut domains: BTreeSet<Box<str>> = SPAM_DOMAINS.iter().map(|d| Box::from(*d)).collect();
        for d in extra {
            let d = normalize(d);
            if !d.is_empty() {
                domains.insert(d.into_boxed_str());
            }
        }
        SpamList { domains }
    }

    /// True when `host` is a listed domain or a subdomain of one (case-insensitive).
    pub fn is_spam(&self, host: &str) -> bool {
        if host.is_empty() {
            return false;
        }
        let host: std::borrow::Cow<'_, str> =
            if host.bytes().any(|b| b.is_ascii_uppercase()) || host.ends_with('.') {
                normalize(host).into()
            } else {
                host.into()
            };
        let mut rest = &*host;
        loop {
            if self.domains.contains(rest) {
                return true;
            }
            match rest.find('.') {
                Some(dot) => rest = &rest[dot + 1..],
                None => return false,
            }
        }
    }

    /// Number of domains in the list (built-in and extra).
    pub fn len(&self) -> usize {
        self.domains.len()
    }

    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }
}

fn normalize(d: &str) -> String {
    let d = d.trim().to_ascii_lowercase();
    let d = d.strip_prefix("*.").unwrap_or(&d);
    let d = d.strip_prefix('.').unwrap_or(d);
    let d = d.strip_prefix("www.").unwrap_or(d);
    d.strip_suffix('.').unwrap_or(d).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BROWSERS: &[&str] = &[
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
        "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
        "Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.51",
        // Electron desktop apps are people, not bots.
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Slack/4.36.140 Chrome/120.0.6099.199 Electron/28.1.3 Safari/537.36",
        // In-app browsers are people too.
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_3 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/450.0.0.38.108;FBBV/564431005]",
        "Mozilla/5.0 (Linux; Android 14; SM-A546B Build/UP1A.231005.007; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/122.0.6261.119 Mobile Safari/537.36 Instagram 321.0.0.39.106 Android",
        "Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36 Telegram-Android/10.12.0 (Samsung SM-S911B; Android 13; SDK 33; HIGH)",
        // A Cubot phone: "bot" inside a brand name.
        "Mozilla/5.0 (Linux; Android 11; CUBOT_X30) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.144 Mobile Safari/537.36",
    ];

    #[test]
    fn real_browsers_are_not_bots() {
        for ua in BROWSERS {
            assert!(!is_bot_ua(ua), "flagged as bot: {ua}");
        }
    }

    #[test]
    fn crawlers_and_generic_tokens() {
        for ua in [
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm) Chrome/116.0.1938.76 Safari/537.36",
            "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
            "Mozilla/5.0 (compatible; Yahoo! Slurp; http://help.yahoo.com/help/us/ysearch/slurp)",
            "Baiduspider+(+http://www.baidu.com/search/spider.htm)",
            "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
            "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
            "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ChatGPT-User/1.0; +https://openai.com/bot)",
            "CCBot/2.0 (https://commoncrawl.org/faq/)",
            "Mozilla/5.0 (compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)",
            "Pingdom.com_bot_version_1.4_(http://www.pingdom.com/)",
            "Mozilla/5.0 (compatible; SomeCorp Site Monitor 1.0)",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 GTmetrix",
            "Mozilla/5.0 (Linux; Android 11; moto g power (2022)) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Mobile Safari/537.36 Chrome-Lighthouse",
            "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
            "WhatsApp/2.23.20.0",
            "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
            "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
            "TelegramBot (like TwitterBot)",
            "Mozilla/5.0 (Windows NT 6.1; WOW64) SkypeUriPreview Preview/0.5",
            "Mastodon/4.2.8 (http.rb/5.1.1; +https://mastodon.social/) Bot",
        ] {
            assert!(is_bot_ua(ua), "not flagged: {ua}");
        }
    }

    #[test]
    fn headless_browsers() {
        for ua in [
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/124.0.6367.60 Safari/537.36",
            "Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) PhantomJS/2.1.1 Safari/538.1",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Cypress/13.6.0 Chrome/118.0.5993.159 Electron/27.1.3 Safari/537.36",
            "Mozilla/5.0 (linux) AppleWebKit/537.36 (KHTML, like Gecko) jsdom/22.1.0",
        ] {
            assert!(is_bot_ua(ua), "not flagged: {ua}");
        }
    }

    #[test]
    fn http_tools_and_libraries() {
        for ua in [
            "curl/8.5.0",
            "Wget/1.21.4",
            "python-requests/2.31.0",
            "Python-urllib/3.11",
            "Python/3.11 aiohttp/3.9.3",
            "python-httpx/0.27.0",
            "Go-http-client/1.1",
            "Go-http-client/2.0",
            "Java/17.0.9",
            "okhttp/4.12.0",
            "axios/1.6.7",
            "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
            "undici",
            "libwww-perl/6.72",
            "Scrapy/2.11.1 (+https://scrapy.org)",
            "Apache-HttpClient/4.5.14 (Java/17.0.9)",
            "GuzzleHttp/7",
            "PostmanRuntime/7.36.3",
            "HTTPie/3.2.2",
            "Ruby/3.3 (net-http)",
            "Mozilla/5.0 (Windows NT; Windows NT 10.0; en-US) WindowsPowerShell/5.1.19041.3803",
            "reqwest/0.12.4 example",
        ] {
            assert!(is_bot_ua(ua), "not flagged: {ua}");
        }
    }

    #[test]
    fn empty_and_short_uas_are_bots() {
        assert!(is_bot_ua(""));
        assert!(is_bot_ua("   "));
        assert!(is_bot_ua("-"));
        assert!(is_bot_ua("Mozilla"));
        assert!(is_bot_ua("Mozilla/5 "));
    }

    #[test]
    fn matching_is_case_insensitive() {
        assert!(is_bot_ua("Mozilla/5.0 (compatible; MyCRAWLER 1.0)"));
        assert!(is_bot_ua("CURL/7.1 something"));
        assert!(is_bot_ua("x HEADLESSchrome/120 y"));
    }

    #[test]
    fn cubot_exception_does_not_hide_a_real_bot() {
        assert!(is_bot_ua(
            "Mozilla/5.0 (Linux; Android 11; CUBOT_X30) Googlebot/2.1"
        ));
    }

    #[test]
    fn spam_builtin_and_subdomains() {
        let s = SpamList::new(&[]);
        assert!(s.len() >= 40);
        assert!(s.is_spam("semalt.com"));
        assert!(s.is_spam("semalt.semalt.com"));
        assert!(s.is_spam("www.darodar.com"));
        assert!(s.is_spam("forum.darodar.com"));
        assert!(s.is_spam("Buttons-For-Website.COM"));
        assert!(s.is_spam("hulfingtonpost.com."));
        assert!(s.is_spam("4webmasters.org"));
        assert!(s.is_spam("priceg.com"));
        assert!(s.is_spam("ilovevitaly.ru"));
        // Look-alikes and containing names are not spam.
        assert!(!s.is_spam("notsemalt.com"));
        assert!(!s.is_spam("semalt.com.example.org"));
        assert!(!s.is_spam("huffingtonpost.com"));
        assert!(!s.is_spam("google.com"));
        assert!(!s.is_spam("com"));
        assert!(!s.is_spam(""));
    }

    #[test]
    fn spam_extra_domains_are_normalised() {
        let extra = vec![
            " Spam-Example.NET ".to_string(),
            "*.wild.example".to_string(),
            "www.with-www.example".to_string(),
            ".leading-dot.example".to_string(),
            "trailing.example.".to_string(),
            "".to_string(),
            "   ".to_string(),
        ];
        let s = SpamList::new(&extra);
        assert_eq!(s.len(), SpamList::new(&[]).len() + 5);
        assert!(s.is_spam("spam-example.net"));
        assert!(s.is_spam("cdn.spam-example.net"));
        assert!(s.is_spam("wild.example"));
        assert!(s.is_spam("a.wild.example"));
        assert!(s.is_spam("with-www.example"));
        assert!(s.is_spam("www.with-www.example"));
        assert!(s.is_spam("leading-dot.example"));
        assert!(s.is_spam("trailing.example"));
        assert!(!s.is_spam("example"));
        assert!(!s.is_spam("other.example"));
    }
}
