//! Realistic synthetic traffic: what the load generator sends over HTTP and
//! what the seeder writes through the store.
//!
//! Shape: a few large sites and many small ones (Zipf), thousands of paths per
//! site (Zipf), 40% direct traffic and the rest from search, social and other
//! sites, one visit in ten with UTM tags, visits of one to eight pageviews a
//! few seconds to minutes apart, 6% custom events with properties, a daily and
//! weekly rhythm, desktop/mobile/tablet user agents of the browsers people use.

use hitvault_core::{Device, Hit, Kind, Utm};

use crate::Rng;

/// (User-Agent, browser, major version, OS, OS version, device, weight)
pub type UaProfile = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Device,
    u32,
);

pub const USER_AGENTS: &[UaProfile] = &[
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
        "Chrome",
        "126",
        "Windows",
        "10",
        Device::Desktop,
        30,
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
        "Chrome",
        "126",
        "macOS",
        "10.15.7",
        Device::Desktop,
        10,
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
        "Safari",
        "17",
        "macOS",
        "10.15.7",
        Device::Desktop,
        7,
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0",
        "Firefox",
        "128",
        "Windows",
        "10",
        Device::Desktop,
        6,
    ),
    (
        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        "Firefox",
        "128",
        "Linux",
        "",
        Device::Desktop,
        2,
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0",
        "Edge",
        "126",
        "Windows",
        "10",
        Device::Desktop,
        8,
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
        "Safari",
        "17",
        "iOS",
        "17.5",
        Device::Mobile,
        18,
    ),
    (
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36",
        "Chrome",
        "126",
        "Android",
        "14",
        Device::Mobile,
        14,
    ),
    (
        "Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/25.0 Chrome/121.0.0.0 Mobile Safari/537.36",
        "Samsung Internet",
        "25",
        "Android",
        "13",
        Device::Mobile,
        3,
    ),
    (
        "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
        "Safari",
        "17",
        "iOS",
        "17.5",
        Device::Tablet,
        2,
    ),
];

/// (referrer URL, grouped source, weight); empty means direct.
pub const REFERRERS: &[(&str, &str, u32)] = &[
    ("", "", 40),
    ("https://www.google.com/", "Google", 30),
    ("https://www.bing.com/", "Bing", 4),
    ("https://duckduckgo.com/", "DuckDuckGo", 3),
    ("https://www.ecosia.org/", "Ecosia", 1),
    ("https://t.co/", "X (Twitter)", 2),
    ("https://www.facebook.com/", "Facebook", 3),
    ("https://www.linkedin.com/", "LinkedIn", 2),
    ("https://www.reddit.com/r/rust/", "Reddit", 2),
    ("https://news.ycombinator.com/", "Hacker News", 2),
    ("https://github.com/", "GitHub", 2),
    (
        "https://en.wikipedia.org/wiki/Web_analytics",
        "Wikipedia",
        1,
    ),
    (
        "https://blog.example.org/2024/review",
        "blog.example.org",
        2,
    ),
    ("https://forum.example.net/t/123", "forum.example.net", 2),
    (
        "https://newsletter.example.com/issue/42",
        "newsletter.example.com",
        1,
    ),
];

pub const COUNTRIES: &[(&str, u32)] = &[
    ("US", 28),
    ("DE", 12),
    ("GB", 8),
    ("FR", 7),
    ("IN", 6),
    ("NL", 4),
    ("CA", 4),
    ("ES", 3),
    ("IT", 3),
    ("BR", 3),
    ("PL", 2),
    ("SE", 2),
    ("CH", 2),
    ("JP", 2),
    ("AU", 2),
    ("AT", 1),
    ("BE", 1),
    ("DK", 1),
    ("NO", 1),
    ("FI", 1),
    ("", 2),
];

/// Addresses whose country in the bundled database is stable enough for load tests.
pub const IPS: &[&str] = &[
    "8.8.8.8",
    "81.2.69.160",
    "2.16.0.1",
    "5.1.1.1",
    "1.1.1.1",
    "9.9.9.9",
    "62.0.0.1",
    "80.0.0.1",
];

pub const LANGUAGES: &[(&str, u32)] = &[
    ("en-US", 35),
    ("de-DE", 12),
    ("en-GB", 9),
    ("fr-FR", 7),
    ("es-ES", 4),
    ("nl-NL", 4),
    ("it-IT", 3),
    ("pt-BR", 3),
    ("", 2),
];

pub const CAMPAIGNS: &[(&str, &str, &str)] = &[
    ("newsletter", "email", "weekly"),
    ("twitter", "social", "launch"),
    ("google", "cpc", "brand"),
    ("partner", "referral", "spring-sale"),
    ("podcast", "audio", "sponsor"),
];

const SECTIONS: &[&str] = &[
    "blog", "docs", "products", "pricing", "about", "careers", "help", "news",
];

/// The path of rank `n` on a site.
pub fn path(n: u64) -> String {
    match n {
        0 => "/".to_owned(),
        1..=7 => format!("/{}", SECTIONS[n as usize]),
        _ => {
            let s = SECTIONS[(n % SECTIONS.len() as u64) as usize];
            format!(
                "/{s}/{}-{}",
                ["intro", "guide", "item", "story", "faq"][(n % 5) as usize],
                n
            )
        }
    }
}

/// Hostname of site `i` (0-based).
pub fn site(i: usize) -> String {
    format!("site{:02}.test", i + 1)
}

/// Distinct paths per site.
pub const PATHS: u64 = 5000;

/// A visit: one visitor's consecutive hits on one site.
pub struct Visit {
    pub site: String,
    pub visitor: u64,
    pub ua: &'static UaProfile,
    pub referrer: (&'static str, &'static str),
    pub utm: Option<(&'static str, &'static str, &'static str)>,
    pub country: &'static str,
    pub language: &'static str,
    pub width: u16,
    pub ip: &'static str,
}

impl Visit {
    pub fn random(rng: &mut Rng, sites: usize) -> Visit {
        let ua = &USER_AGENTS[{
            let w: Vec<(usize, u32)> = USER_AGENTS
                .iter()
                .enumerate()
                .map(|(i, u)| (i, u.6))
                .collect();
            rng.weighted(&w)
        }];
        let width = match ua.5 {
            Device::Mobile => [360, 375, 390, 393, 412, 430][rng.below(6) as usize],
            Device::Tablet => [768, 810, 820, 1024][rng.below(4) as usize],
            _ => [1280, 1366, 1440, 1536, 1920, 2560][rng.below(6) as usize],
        };
        let r = {
            let w: Vec<(usize, u32)> = REFERRERS
                .iter()
                .enumerate()
                .map(|(i, r)| (i, r.2))
                .collect();
            REFERRERS[rng.weighted(&w)]
        };
        let country: &'static str = rng.weighted(COUNTRIES);
        let language: &'static str = rng.weighted(LANGUAGES);
        Visit {
            site: site(rng.zipf(sites as u64) as usize),
            visitor: rng.next_u64(),
            ua,
            referrer: (r.0, r.1),
            utm: if rng.chance(0.1) {
                Some(CAMPAIGNS[rng.below(CAMPAIGNS.len() as u64) as usize])
            } else {
                None
            },
            country,
            language,
            width,
            ip: IPS[rng.below(IPS.len() as u64) as usize],
        }
    }

    /// Number of hits in this visit: 1 (about half the visits bounce) to 8.
    pub fn length(rng: &mut Rng) -> usize {
        if rng.chance(0.5) {
            1
        } else {
            2 + rng.zipf(7) as usize
        }
    }

    /// The `i`-th hit of the visit, as the store keeps it.
    pub fn hit(&self, rng: &mut Rng, i: usize, ts_ms: i64) -> Hit {
        let event = i > 0 && rng.chance(0.06);
        let (name, props) = if event {
            match rng.below(4) {
                0 => (
                    "Signup".to_owned(),
                    vec![(
                        "plan".to_owned(),
                        ["free", "pro", "team"][rng.below(3) as usize].to_owned(),
                    )],
                ),
                1 => (
                    "Outbound Link: Click".to_owned(),
                    vec![("url".to_owned(), "https://github.com/".to_owned())],
                ),
                2 => (
                    "File Download".to_owned(),
                    vec![(
                        "url".to_owned(),
                        format!("https://x.test/file-{}.pdf", rng.below(20)),
                    )],
                ),
                _ => (
                    "Purchase".to_owned(),
                    vec![("amount".to_owned(), format!("{}.00", 5 + rng.below(200)))],
                ),
            }
        } else {
            ("pageview".to_owned(), vec![])
        };
        let first = i == 0;
        let utm = match (first, self.utm) {
            (true, Some((s, m, c))) => Utm {
                source: s.into(),
                medium: m.into(),
                campaign: c.into(),
                ..Utm::default()
            },
            _ => Utm::default(),
        };
        let (referrer, source) = if first {
            let src = if self.referrer.1.is_empty() {
                utm.source.clone()
            } else {
                self.referrer.1.to_owned()
            };
            (self.referrer.0.to_owned(), src)
        } else {
            (String::new(), String::new())
        };
        Hit {
            ts_ms,
            site: self.site.clone(),
            kind: if event { Kind::Event } else { Kind::Pageview },
            name,
            path: path(rng.zipf(PATHS)),
            referrer,
            source,
            utm,
            browser: self.ua.1.into(),
            browser_version: self.ua.2.into(),
            os: self.ua.3.into(),
            os_version: self.ua.4.into(),
            device: self.ua.5,
            country: self.country.into(),
            language: self.language.into(),
            screen_width: self.width,
            visitor: self.visitor,
            props,
        }
    }

    /// The `i`-th hit as the tracker would send it (JSON body of /api/collect).
    pub fn beacon(&self, rng: &mut Rng, i: usize) -> String {
        let p = path(rng.zipf(PATHS));
        let mut url = format!("https://{}{}", self.site, p);
        if i == 0
            && let Some((s, m, c)) = self.utm
        {
            url.push_str(&format!("?utm_source={s}&utm_medium={m}&utm_campaign={c}"));
        }
        let r = if i == 0 && !self.referrer.0.is_empty() {
            format!("\"{}\"", self.referrer.0)
        } else {
            "null".into()
        };
        if i > 0 && rng.chance(0.06) {
            format!(
                r#"{{"n":"Signup","u":"{url}","d":"{}","r":{r},"w":{},"l":"{}","p":{{"plan":"pro"}}}}"#,
                self.site, self.width, self.language
            )
        } else {
            format!(
                r#"{{"n":"pageview","u":"{url}","d":"{}","r":{r},"w":{},"l":"{}"}}"#,
                self.site, self.width, self.language
            )
        }
    }
}
