//! Enrichment throughput: UA parsing without cache, and full enrichment with a warm
//! UA cache, on a mix of about 200 realistic User-Agents (desktop, mobile, tablet,
//! bots and tools).
//!
//! Run: `cargo run --release -p hitvault-core --example enrich_bench`

use hitvault_core::{
    Dropped, Enricher, GeoIp, PageUrl, RawHit, Salt, Sites, SpamList, UaParser, ua::parse_ua,
};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

fn user_agents() -> Vec<String> {
    let mut v = Vec::new();
    let win = "Windows NT 10.0; Win64; x64";
    let mac = "Macintosh; Intel Mac OS X 10_15_7";
    for n in 118..=126 {
        v.push(format!("Mozilla/5.0 ({win}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{n}.0.0.0 Safari/537.36"));
        v.push(format!("Mozilla/5.0 ({mac}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{n}.0.0.0 Safari/537.36"));
        v.push(format!(
            "Mozilla/5.0 ({win}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{n}.0.0.0 Safari/537.36 Edg/{n}.0.{}.{}",
            2000 + n,
            n % 90
        ));
        v.push(format!("Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{n}.0.0.0 Mobile Safari/537.36"));
    }
    for n in 120..=125 {
        v.push(format!("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{n}.0.0.0 Safari/537.36"));
        v.push(format!("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/{n}.0.6367.71 Mobile/15E148 Safari/604.1"));
    }
    for n in [115, 118, 119, 120, 121, 122, 123, 124, 125, 126, 127] {
        v.push(format!(
            "Mozilla/5.0 ({win}; rv:{n}.0) Gecko/20100101 Firefox/{n}.0"
        ));
        v.push(format!(
            "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:{n}.0) Gecko/20100101 Firefox/{n}.0"
        ));
    }
    for n in 120..=126 {
        v.push(format!(
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.{}; rv:{n}.0) Gecko/20100101 Firefox/{n}.0",
            n % 6
        ));
        v.push(format!(
            "Mozilla/5.0 (Android 14; Mobile; rv:{n}.0) Gecko/{n}.0 Firefox/{n}.0"
        ));
    }
    for s in [
        "15.6.1", "16.0", "16.1", "16.3", "16.5", "16.6", "17.0", "17.1", "17.2", "17.3", "17.4",
        "17.4.1", "17.5",
    ] {
        v.push(format!("Mozilla/5.0 ({mac}) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{s} Safari/605.1.15"));
        let ios = s.replace('.', "_");
        v.push(format!("Mozilla/5.0 (iPhone; CPU iPhone OS {ios} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{s} Mobile/15E148 Safari/604.1"));
    }
    for s in ["16_6", "17_2", "17_4", "17_5"] {
        v.push(format!("Mozilla/5.0 (iPad; CPU OS {s} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{} Mobile/15E148 Safari/604.1", s.replace('_', ".")));
    }
    for model in [
        "Pixel 7",
        "Pixel 8 Pro",
        "SM-G991B",
        "SM-A536B",
        "moto g(60)",
        "M2101K6G",
        "CPH2211",
        "2201116SG",
    ] {
        v.push(format!("Mozilla/5.0 (Linux; Android 13; {model}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36"));
    }
    for model in ["SM-X700", "SM-T220", "Lenovo TB-X606F", "KFTRWI"] {
        v.push(format!("Mozilla/5.0 (Linux; Android 12; {model}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.6312.118 Safari/537.36"));
    }
    for (sb, chrome) in [("22.0", 111), ("23.0", 115), ("24.0", 117), ("25.0", 121)] {
        v.push(format!("Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/{sb} Chrome/{chrome}.0.0.0 Mobile Safari/537.36"));
    }
    for n in 105..=110 {
        v.push(format!("Mozilla/5.0 ({win}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{}.0.0.0 Safari/537.36 OPR/{n}.0.0.0", n + 14));
    }
    v.extend(
        [
            "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
            "Mozilla/5.0 (X11; CrOS aarch64 15633.69.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.6045.212 Safari/537.36",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Vivaldi/6.7.3329.17",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 YaBrowser/24.4.0.0 Safari/537.36",
            "Mozilla/5.0 (Windows NT 6.1; Win64; x64; rv:115.0) Gecko/20100101 Firefox/115.0",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Slack/4.36.140 Chrome/120.0.6099.199 Electron/28.1.3 Safari/537.36",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_3 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/450.0.0.38.108;FBBV/564431005]",
            "Mozilla/5.0 (Linux; Android 14; SM-A546B Build/UP1A.231005.007; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/122.0.6261.119 Mobile Safari/537.36 Instagram 321.0.0.39.106 Android",
            "Mozilla/5.0 (Linux; Android 14; Pixel 8 Build/UQ1A.240205.004; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/122.0.6261.119 Mobile Safari/537.36",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) FxiOS/125.0 Mobile/15E148 Safari/605.1.15",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 DuckDuckGo/7 Safari/605.1.15",
            "Mozilla/5.0 (Linux; Android 8.1.0; Nokia 3.1) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.210 Mobile Safari/537.36 EdgA/120.0.2210.157",
            "Mozilla/5.0 (Windows NT 6.1; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/109.0.0.0 Safari/537.36",
            "Mozilla/5.0 (Windows NT 6.3; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/109.0.0.0 Safari/537.36",
            "Mozilla/5.0 (Windows NT 10.0; WOW64; Trident/7.0; rv:11.0) like Gecko",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 OPR/110.0.0.0 (Edition std-1)",
            "Mozilla/5.0 (Linux; Android 10; VOG-L29) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/99.0.4844.88 HuaweiBrowser/14.0.5.302 Mobile Safari/537.36",
            "Mozilla/5.0 (Linux; U; Android 11; en-US; RMX2185 Build/RP1A.201005.001) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/100.0.4896.58 UCBrowser/13.4.0.1306 Mobile Safari/537.36",
            "Mozilla/5.0 (Linux; Android 12; M2007J20CG) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36 OPR/82.0.4227.78592",
            "Mozilla/5.0 (Linux; Android 9; KFTRWI) AppleWebKit/537.36 (KHTML, like Gecko) Silk/124.2.1 like Chrome/124.0.6367.118 Safari/537.36",
            "Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36 Telegram-Android/10.12.0 (Samsung SM-S911B; Android 13; SDK 33; HIGH)",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 16_7_8 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) EdgiOS/124.0.2478.50 Version/17.0 Mobile/15E148 Safari/604.1",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) GSA/315.0.630091404 Mobile/15E148 Safari/604.1",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64; Xbox; Xbox One) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edge/44.18363.8131",
            "Mozilla/5.0 (PlayStation; PlayStation 5/2.26) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.0 Safari/605.1.15",
            "Mozilla/5.0 (SMART-TV; Linux; Tizen 6.0) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/4.0 Chrome/76.0.3809.146 TV Safari/537.36",
            "Mozilla/5.0 (X11; Linux aarch64; rv:109.0) Gecko/20100101 Firefox/115.0",
            "Mozilla/5.0 (X11; Fedora; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
            "Mozilla/5.0 (X11; FreeBSD amd64; rv:124.0) Gecko/20100101 Firefox/124.0",
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.67",
            "Mozilla/5.0 (Linux; Android 14; SM-S928B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
            "Mozilla/5.0 (compatible; Yahoo! Slurp; http://help.yahoo.com/help/us/ysearch/slurp)",
            "Mozilla/5.0 (compatible; Amazonbot/0.1; +https://developer.amazon.com/support/amazonbot)",
            "Scrapy/2.11.1 (+https://scrapy.org)",
            // bots and tools
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.60 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm) Chrome/116.0.1938.76 Safari/537.36",
            "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
            "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)",
            "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
            "Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)",
            "Mozilla/5.0 (compatible; DotBot/1.2; +https://opensiteexplorer.org/dotbot; help@moz.com)",
            "Mozilla/5.0 (compatible; MJ12bot/v1.4.8; http://mj12bot.com/)",
            "Mozilla/5.0 (Linux; Android 7.0;) AppleWebKit/537.36 (KHTML, like Gecko) Mobile Safari/537.36 (compatible; PetalBot;+https://webmaster.petalsearch.com/site/petalbot)",
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.1.1 Safari/605.1.15 (Applebot/0.1; +http://www.apple.com/go/applebot)",
            "DuckDuckBot/1.1; (+http://duckduckgo.com/duckduckbot.html)",
            "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
            "Twitterbot/1.0",
            "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
            "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
            "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
            "WhatsApp/2.23.20.0",
            "TelegramBot (like TwitterBot)",
            "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
            "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ClaudeBot/1.0; +claudebot@anthropic.com)",
            "CCBot/2.0 (https://commoncrawl.org/faq/)",
            "Mozilla/5.0 (Linux; Android 5.0) AppleWebKit/537.36 (KHTML, like Gecko) Mobile Safari/537.36 (compatible; Bytespider; spider-feedback@bytedance.com)",
            "Mozilla/5.0 (compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)",
            "Pingdom.com_bot_version_1.4_(http://www.pingdom.com/)",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/124.0.6367.60 Safari/537.36",
            "curl/8.5.0",
            "Wget/1.21.4",
            "python-requests/2.31.0",
            "Go-http-client/1.1",
            "okhttp/4.12.0",
            "axios/1.6.7",
            "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
        ]
        .map(String::from),
    );
    v
}

const REFERRERS: &[Option<&str>] = &[
    None,
    None,
    None,
    Some("https://www.google.com/"),
    Some("https://www.google.de/"),
    Some("https://www.bing.com/search?q=hitvault"),
    Some("https://duckduckgo.com/"),
    Some("https://news.ycombinator.com/item?id=40000000"),
    Some("https://www.reddit.com/r/selfhosted/comments/abc/"),
    Some("https://t.co/x1y2z3"),
    Some("https://github.com/hitvault/hitvault"),
    Some("https://blog.some-site.example/posts/analytics"),
    Some("https://www.example.com/pricing"), // internal
    Some("android-app://com.google.android.gm"),
    Some("https://semalt.com/"), // spam
];

const PATHS: &[&str] = &[
    "/",
    "/pricing",
    "/docs/getting-started",
    "/blog/2024/05/privacy-first-analytics?utm_source=newsletter&utm_medium=email&utm_campaign=may",
    "/features#export",
    "/about?ref=producthunt",
];

fn hits(uas: &[String]) -> Vec<RawHit> {
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    (0..4096)
        .map(|i| {
            let r = next();
            RawHit {
                ts_ms: 1_717_000_000_000 + i as i64,
                domain: Some("example.com".into()),
                name: if i % 10 == 9 {
                    "signup".into()
                } else {
                    "pageview".into()
                },
                url: format!(
                    "https://www.example.com{}",
                    PATHS[(r % PATHS.len() as u64) as usize]
                ),
                referrer: REFERRERS[((r >> 8) % REFERRERS.len() as u64) as usize].map(String::from),
                props: if i % 10 == 9 {
                    vec![("plan".into(), "pro".into())]
                } else {
                    vec![]
                },
                screen_width: Some([390, 414, 768, 1280, 1440, 1920][((r >> 16) % 6) as usize]),
                language: Some(
                    ["en-US", "de-DE", "fr", "en-GB", "ja"][((r >> 24) % 5) as usize].into(),
                ),
                user_agent: uas[((r >> 32) % uas.len() as u64) as usize].clone(),
                ip: IpAddr::V4(Ipv4Addr::from((r >> 32) as u32)),
            }
        })
        .collect()
}

/// CPU time this thread has spent running, from `/proc/thread-self/schedstat`
/// (Linux); `None` elsewhere. Lets the figures be per core even when other
/// processes compete for the CPUs.
fn thread_cpu() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = s.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// Calls per second of wall time and per second of this thread's CPU time.
struct Rate {
    wall: f64,
    cpu: Option<f64>,
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:>11.0} /s wall", self.wall)?;
        if let Some(cpu) = self.cpu {
            write!(f, "  {:>11.0} /s per CPU-second", cpu)?;
        }
        Ok(())
    }
}

/// Runs `f(i)` for at least `min` wall time.
fn rate(min: Duration, mut f: impl FnMut(usize)) -> Rate {
    let cpu0 = thread_cpu();
    let start = Instant::now();
    let mut n = 0usize;
    loop {
        for _ in 0..1024 {
            f(n);
            n += 1;
        }
        let el = start.elapsed();
        if el >= min {
            let cpu = match (cpu0, thread_cpu()) {
                (Some(a), Some(b)) if b > a => Some(n as f64 / (b - a).as_secs_f64()),
                _ => None,
            };
            return Rate {
                wall: n as f64 / el.as_secs_f64(),
                cpu,
            };
        }
    }
}

fn main() {
    let uas = user_agents();
    let bots = uas.iter().filter(|u| parse_ua(u).bot).count();
    println!("user agents: {} ({} bots/tools)", uas.len(), bots);

    let t = Duration::from_secs(2);
    let uncached = rate(t, |i| {
        black_box(parse_ua(black_box(&uas[i % uas.len()])));
    });
    println!("UA parse, uncached (woothee + bot markers):   {uncached}");

    let geo = GeoIp::bundled().expect("bundled GeoIP");
    let enricher = Enricher::new(UaParser::new([42; 16]), Some(geo), SpamList::new(&[]));
    let mut sites = Sites::new();
    sites
        .add("example.com", vec!["example.org".into()])
        .unwrap();
    let salt = Salt([7; 16]);
    let raws = hits(&uas);
    let pages: Vec<PageUrl> = raws
        .iter()
        .map(|r| PageUrl::parse(&r.url).unwrap())
        .collect();
    let site = sites.resolve("example.com").unwrap();

    // Warm the UA cache and count outcomes.
    let (mut kept, mut bot, mut spam) = (0, 0, 0);
    for (r, p) in raws.iter().zip(&pages) {
        match enricher.enrich(r.clone(), p.clone(), site, &salt) {
            Ok(_) => kept += 1,
            Err(Dropped::Bot) => bot += 1,
            Err(Dropped::ReferrerSpam) => spam += 1,
        }
    }
    println!(
        "mix of {} hits: {kept} kept, {bot} bots, {spam} referrer spam; UA cache holds {}",
        raws.len(),
        enricher.ua_parser().cached()
    );

    let cached = rate(t, |i| {
        black_box(enricher.ua_parser().parse(black_box(&uas[i % uas.len()])));
    });
    println!("UA parse, cached:                             {cached}");

    let enrich_only = rate(t, |i| {
        let k = i % raws.len();
        let r = raws[k].clone();
        let p = pages[k].clone();
        black_box(enricher.enrich(r, p, site, &salt).ok());
    });
    println!("enrich (warm UA cache, incl. input clones):   {enrich_only}");

    let full = |i: usize| {
        let r = raws[i % raws.len()].clone();
        let p = PageUrl::parse(&r.url).unwrap();
        let s = sites
            .resolve(r.domain.as_deref().unwrap_or(&p.host))
            .unwrap();
        black_box(enricher.enrich(r, p, s, &salt).ok());
    };
    let one = rate(t, full);
    println!("URL parse + site resolve + enrich, 1 thread:  {one}");

    let threads = 2;
    let rates: Vec<Rate> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|k| s.spawn(move || rate(t, |i| full(i * 7 + k))))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let wall: f64 = rates.iter().map(|r| r.wall).sum();
    println!(
        "URL parse + site resolve + enrich, {threads} threads: {wall:>11.0} /s wall, all threads"
    );
}
