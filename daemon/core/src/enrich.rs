//! Enrichment: a [`RawHit`] plus its parsed page URL becomes a [`Hit`], or is dropped.
//!
//! This module owns the order of the steps and what is copied where: bot filter,
//! referrer classification and spam filter, visitor hash, country, device, language.
//! It never stores or forwards the client IP or the raw User-Agent: both are consumed
//! here (the `RawHit` is taken by value and dropped) and [`Hit`] has no field for
//! them. It does no I/O: the GeoIP bytes, the salt and the time come from the caller.
//!
//! The caller parses the page URL first ([`PageUrl::parse`]), because it needs the
//! host to find the site and must answer a bad URL with a 4xx before enrichment.
//! [`Enricher::enrich`] therefore takes the parsed [`PageUrl`], so it has no
//! "bad URL" outcome: its only failures are deliberate drops ([`Dropped`]).

use crate::bots::SpamList;
use crate::geo::GeoIp;
use crate::hit::{Hit, Kind, RawHit};
use crate::page::PageUrl;
use crate::referrer::Referrer;
use crate::sites::SiteEntry;
use crate::ua::{UaParser, device_for};
use crate::visitor::{Salt, visitor_id};

/// Longest language tag kept, in bytes (BCP 47's recommended buffer size).
pub const MAX_LANGUAGE_LEN: usize = 35;

/// Why a hit was not kept. Dropped hits are counted by the caller, not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dropped {
    /// The User-Agent is a crawler, tool, headless browser or monitor.
    Bot,
    /// The referrer is on the referrer-spam list.
    ReferrerSpam,
}

impl Dropped {
    /// Every reason, for registering metric labels up front.
    pub const ALL: [Dropped; 2] = [Dropped::Bot, Dropped::ReferrerSpam];

    /// The metric label: `bot` or `referrer_spam`.
    pub fn reason(&self) -> &'static str {
        match self {
            Dropped::Bot => "bot",
            Dropped::ReferrerSpam => "referrer_spam",
        }
    }
}

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

/// Turns raw hits into enriched ones. `Send + Sync`: one per process, shared by
/// all handlers (the UA cache inside is sharded and locked per shard).
#[derive(Debug)]
pub struct Enricher {
    ua: UaParser,
    geo: Option<GeoIp>,
    spam: SpamList,
}

// Checked by the compiler: `Enricher` is shared between threads.
const _: () = {
    fn assert_send_sync<T: Send + Sync>() {}
    let _ = assert_send_sync::<Enricher>;
};

impl Enricher {
    /// `geo: None` leaves every hit's country empty.
    pub fn new(ua: UaParser, geo: Option<GeoIp>, spam: SpamList) -> Enricher {
        Enricher { ua, geo, spam }
    }

    /// The UA parser (for its cache size metric).
    pub fn ua_parser(&self) -> &UaParser {
        &self.ua
    }

    /// The GeoIP database, if any (for its metadata in the startup log).
    pub fn geo(&self) -> Option<&GeoIp> {
        self.geo.as_ref()
    }

    /// Enriches one hit for `site` under today's `salt`.
    ///
    /// `page` is `raw.url` already parsed by the caller. Steps: drop bots; classify
    /// the referrer (internal to the site or the page host: none) and drop referrer
    /// spam; then fill in the rest. `source` is the referrer's source, or the UTM
    /// source when there is no external referrer. `kind` is `Pageview` exactly when
    /// `name == "pageview"`. The visitor id hashes the canonical site hostname, the
    /// IP and the full User-Agent under the salt.
    pub fn enrich(
        &self,
        raw: RawHit,
        page: PageUrl,
        site: &SiteEntry,
        salt: &Salt,
    ) -> Result<Hit, Dropped> {
        let ua = self.ua.parse(&raw.user_agent);
        if ua.bot {
            return Err(Dropped::Bot);
        }
        let referrer = Referrer::classify_for_site(raw.referrer.as_deref(), &page.host, site);
        if !referrer.host.is_empty() && self.spam.is_spam(&referrer.host) {
            return Err(Dropped::ReferrerSpam);
        }

        let visitor = visitor_id(salt, &site.hostname, raw.ip, &raw.user_agent);
        let country = match self.geo.as_ref().and_then(|g| g.country(raw.ip)) {
            // Two ASCII letters, checked by GeoIp::country.
            Some(cc) => String::from_utf8_lossy(&cc).into_owned(),
            None => String::new(),
        };
        let source = if referrer.source.is_empty() {
            page.utm.source.clone()
        } else {
            referrer.source
        };
        let kind = if raw.name == "pageview" {
            Kind::Pageview
        } else {
            Kind::Event
        };

        Ok(Hit {
            ts_ms: raw.ts_ms,
            site: site.hostname.clone(),
            kind,
            name: raw.name,
            path: page.path,
            referrer: referrer.url,
            source,
            utm: page.utm,
            browser: ua.browser.clone(),
            browser_version: ua.browser_version.clone(),
            os: ua.os.clone(),
            os_version: ua.os_version.clone(),
            device: device_for(&ua, raw.screen_width),
            country,
            language: raw
                .language
                .as_deref()
                .map(normalize_language)
                .unwrap_or_default(),
            screen_width: raw.screen_width.unwrap_or(0),
            visitor,
            props: raw.props,
        })
    }
}

/// Normalises a language tag to BCP 47 casing: `en_us` -> `en-US`,
/// `zh-hant-tw` -> `zh-Hant-TW`, `es-419` stays.
///
/// Accepts what `navigator.language` gives and also the first entry of an
/// `Accept-Language` header (`de-CH,de;q=0.9` -> `de-CH`). The primary subtag must
/// be 2 to 8 letters, the others 1 to 8 letters or digits; anything else gives an
/// empty string. Tags longer than [`MAX_LANGUAGE_LEN`] lose whole trailing subtags.
pub fn normalize_language(raw: &str) -> String {
    let first = raw.split(',').next().unwrap_or("");
    let tag = first.split(';').next().unwrap_or("").trim();
    let mut out = String::with_capacity(tag.len().min(MAX_LANGUAGE_LEN));
    for (i, sub) in tag.split(['-', '_']).enumerate() {
        let ok = if i == 0 {
            (2..=8).contains(&sub.len()) && sub.bytes().all(|b| b.is_ascii_alphabetic())
        } else {
            (1..=8).contains(&sub.len()) && sub.bytes().all(|b| b.is_ascii_alphanumeric())
        };
        if !ok {
            return String::new();
        }
        let extra = if i == 0 { sub.len() } else { sub.len() + 1 };
        if out.len() + extra > MAX_LANGUAGE_LEN {
            break;
        }
        if i > 0 {
            out.push('-');
        }
        let alpha = sub.bytes().all(|b| b.is_ascii_alphabetic());
        if i > 0 && sub.len() == 2 && alpha {
            out.push_str(&sub.to_ascii_uppercase()); // region
        } else if i > 0 && sub.len() == 4 && alpha {
            let mut s = sub.to_ascii_lowercase(); // script
            s[..1].make_ascii_uppercase();
            out.push_str(&s);
        } else {
            out.push_str(&sub.to_ascii_lowercase());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hit::{Device, Utm};
    use crate::visitor::visitor_id;
    use std::net::IpAddr;
    use std::sync::LazyLock;

    const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0";
    const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";
    const DE_IP: &str = "80.128.0.1";

    fn enricher(geo: Option<GeoIp>) -> Enricher {
        Enricher::new(
            UaParser::new([5; 16]),
            geo,
            SpamList::new(&["spam.example".to_string()]),
        )
    }

    /// One enricher with the bundled database, shared by the tests (loading it
    /// copies 8 MB).
    fn shared() -> &'static Enricher {
        static E: LazyLock<Enricher> = LazyLock::new(|| enricher(Some(GeoIp::bundled().unwrap())));
        &E
    }

    fn site() -> SiteEntry {
        SiteEntry {
            hostname: "example.com".into(),
            aliases: vec!["example.org".into()],
        }
    }

    fn raw(url: &str) -> RawHit {
        RawHit {
            ts_ms: 1_700_000_000_123,
            domain: Some("example.com".into()),
            name: "pageview".into(),
            url: url.into(),
            referrer: None,
            props: vec![],
            screen_width: None,
            language: None,
            user_agent: FIREFOX.into(),
            ip: DE_IP.parse().unwrap(),
        }
    }

    fn run(r: RawHit) -> Result<Hit, Dropped> {
        let page = PageUrl::parse(&r.url).unwrap();
        shared().enrich(r, page, &site(), &Salt([1; 16]))
    }

    #[test]
    fn full_pageview() {
        let mut r =
            raw("https://www.example.com/pricing?utm_source=newsletter&utm_campaign=spring#plans");
        r.referrer = Some("https://www.google.co.uk/search?q=secret+terms".into());
        r.screen_width = Some(1440);
        r.language = Some("en_gb".into());
        r.props = vec![("plan".into(), "pro".into())];
        let ip: IpAddr = r.ip;
        let hit = run(r).unwrap();
        assert_eq!(
            hit,
            Hit {
                ts_ms: 1_700_000_000_123,
                site: "example.com".into(),
                kind: Kind::Pageview,
                name: "pageview".into(),
                path: "/pricing".into(),
                referrer: "https://www.google.co.uk/search".into(),
                source: "Google".into(),
                utm: Utm {
                    source: "newsletter".into(),
                    campaign: "spring".into(),
                    ..Utm::default()
                },
                browser: "Firefox".into(),
                browser_version: "125".into(),
                os: "Linux".into(),
                os_version: "".into(),
                device: Device::Desktop,
                country: "DE".into(),
                language: "en-GB".into(),
                screen_width: 1440,
                visitor: visitor_id(&Salt([1; 16]), "example.com", ip, FIREFOX),
                props: vec![("plan".into(), "pro".into())],
            }
        );
    }

    #[test]
    fn custom_event_kind() {
        let mut r = raw("https://example.com/");
        r.name = "signup".into();
        let hit = run(r).unwrap();
        assert_eq!(hit.kind, Kind::Event);
        assert_eq!(hit.name, "signup");
        let mut r = raw("https://example.com/");
        r.name = "Pageview".into();
        assert_eq!(run(r).unwrap().kind, Kind::Event);
    }

    #[test]
    fn bots_are_dropped() {
        let mut r = raw("https://example.com/");
        r.user_agent =
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)".into();
        assert_eq!(run(r), Err(Dropped::Bot));
        let mut r = raw("https://example.com/");
        r.user_agent = "curl/8.5.0".into();
        assert_eq!(run(r), Err(Dropped::Bot));
        let mut r = raw("https://example.com/");
        r.user_agent = String::new();
        assert_eq!(run(r), Err(Dropped::Bot));
    }

    #[test]
    fn referrer_spam_is_dropped_builtin_and_configured() {
        for spam in [
            "https://semalt.com/",
            "http://www.darodar.com/x?y",
            "https://a.spam.example/",
        ] {
            let mut r = raw("https://example.com/");
            r.referrer = Some(spam.into());
            assert_eq!(run(r), Err(Dropped::ReferrerSpam), "{spam}");
        }
        // A bot with a spam referrer is counted as a bot (checked first).
        let mut r = raw("https://example.com/");
        r.referrer = Some("https://semalt.com/".into());
        r.user_agent = "curl/8.5.0".into();
        assert_eq!(run(r), Err(Dropped::Bot));
    }

    #[test]
    fn dropped_reasons() {
        assert_eq!(Dropped::Bot.reason(), "bot");
        assert_eq!(Dropped::ReferrerSpam.reason(), "referrer_spam");
        assert_eq!(Dropped::ReferrerSpam.to_string(), "referrer_spam");
        assert_eq!(Dropped::ALL.len(), 2);
    }

    #[test]
    fn internal_referrer_falls_back_to_utm_source() {
        let mut r = raw("https://example.com/b?ref=producthunt");
        r.referrer = Some("https://example.org/a".into()); // the site's alias
        let hit = run(r).unwrap();
        assert_eq!(hit.referrer, "");
        assert_eq!(hit.source, "producthunt");
        assert_eq!(hit.utm.source, "producthunt");

        let hit = run(raw("https://example.com/")).unwrap();
        assert_eq!((hit.referrer.as_str(), hit.source.as_str()), ("", ""));
    }

    #[test]
    fn device_uses_width_only_when_ua_is_silent() {
        let mut r = raw("https://example.com/");
        r.user_agent = IPHONE.into();
        r.screen_width = Some(1920);
        let hit = run(r).unwrap();
        assert_eq!(
            (hit.device, hit.os.as_str(), hit.browser.as_str()),
            (Device::Mobile, "iOS", "Safari")
        );

        let mut r = raw("https://example.com/");
        r.user_agent = "SomeEmbeddedBrowser/1.0 (unrecognised platform)".into();
        r.screen_width = Some(800);
        assert_eq!(run(r).unwrap().device, Device::Tablet);
    }

    #[test]
    fn country_needs_geo_and_a_public_ip() {
        let mut r = raw("https://example.com/");
        r.ip = "10.1.2.3".parse().unwrap();
        assert_eq!(run(r).unwrap().country, "");

        let e = enricher(None);
        let r = raw("https://example.com/");
        let page = PageUrl::parse(&r.url).unwrap();
        assert_eq!(
            e.enrich(r, page, &site(), &Salt([1; 16])).unwrap().country,
            ""
        );
        assert!(e.geo().is_none());
        assert!(shared().geo().is_some());
    }

    #[test]
    fn visitor_changes_with_salt_and_is_per_site() {
        let e = shared();
        let go = |salt: u8, site: &SiteEntry| {
            let r = raw("https://example.com/");
            let page = PageUrl::parse(&r.url).unwrap();
            e.enrich(r, page, site, &Salt([salt; 16])).unwrap().visitor
        };
        let other = SiteEntry {
            hostname: "other.example".into(),
            aliases: vec![],
        };
        assert_eq!(go(1, &site()), go(1, &site()));
        assert_ne!(go(1, &site()), go(2, &site()));
        assert_ne!(go(1, &site()), go(1, &other));
    }

    #[test]
    fn the_ip_is_not_in_the_hit() {
        let mut r = raw("https://example.com/x");
        r.ip = "81.2.69.160".parse().unwrap();
        r.referrer = Some("https://news.ycombinator.com/".into());
        r.language = Some("fr".into());
        let hit = run(r).unwrap();
        let json = serde_json::to_string(&hit).unwrap();
        assert!(!json.contains("81.2.69.160"), "{json}");
        assert!(!json.contains("81,2,69,160"), "{json}");
        let bytes = hit.encode();
        assert!(!bytes.windows(4).any(|w| w == [81, 2, 69, 160]));
        // Nor is the raw User-Agent.
        assert!(!json.contains("Gecko/20100101"), "{json}");
    }

    #[test]
    fn language_normalisation() {
        let n = normalize_language;
        assert_eq!(n("en-US"), "en-US");
        assert_eq!(n("en-us"), "en-US");
        assert_eq!(n("EN_gb"), "en-GB");
        assert_eq!(n("de"), "de");
        assert_eq!(n("  fr-CA  "), "fr-CA");
        assert_eq!(n("zh-hant-tw"), "zh-Hant-TW");
        assert_eq!(n("es-419"), "es-419");
        assert_eq!(n("de-CH,de;q=0.9,en;q=0.8"), "de-CH");
        assert_eq!(n("en;q=0.5"), "en");
        assert_eq!(n(""), "");
        assert_eq!(n("*"), "");
        assert_eq!(n("e"), "");
        assert_eq!(n("12-US"), "");
        assert_eq!(n("en--US"), "");
        assert_eq!(n("en-US-"), "");
        assert_eq!(n("<script>"), "");
        assert_eq!(n("en-ÜS"), "");
        assert_eq!(n("toolongtag-US"), "");
        // Bounded at 35 bytes, cut between subtags.
        let long = "en-aaaaaaaa-bbbbbbbb-cccccccc-dddddddd-eeeeeeee";
        let got = n(long);
        assert_eq!(got, "en-aaaaaaaa-bbbbbbbb-cccccccc");
        assert!(got.len() <= MAX_LANGUAGE_LEN);
    }
}
