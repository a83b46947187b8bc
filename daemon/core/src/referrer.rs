//! The referrer of a hit: a cleaned URL and a grouped source name.
//!
//! This module owns turning `document.referrer` into what the store keeps: the URL
//! without query or fragment, and a source such as `Google` or `Reddit` (search
//! engines and social networks grouped over their many hostnames by the [`SOURCES`]
//! table), or the bare host for everything else. Internal navigation (the page's own
//! site) counts as no referrer. It never keeps a referrer's query string (search
//! terms, tokens) and never resolves or fetches anything.

use crate::page::bounded;
use crate::sites::SiteEntry;
use std::sync::LazyLock;
use url::Url;

/// Longest referrer URL kept, in bytes (cut at a char boundary).
pub const MAX_REFERRER_LEN: usize = 2048;
/// Longest referrer accepted for parsing at all, in bytes; longer ones are ignored.
pub const MAX_REFERRER_INPUT_LEN: usize = 8 * 1024;

/// How a table row matches a referrer host. Hosts are compared lowercase, without a
/// trailing dot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SourceRule {
    /// This domain and all its subdomains.
    Domain(&'static str),
    /// Exactly this host, or it with a leading `www.`.
    Host(&'static str),
    /// A brand under any country domain, and subdomains: `google` matches
    /// `google.de`, `www.google.co.uk`, `news.google.com.br`, but not
    /// `google.example.com` or `googleusercontent.com`. After the brand label come
    /// either one label (`de`, `com`) or a generic second-level label
    /// ([`GENERIC_SLD`]) and one more (`co.uk`, `com.br`).
    Brand(&'static str),
    /// An Android app, as Chrome reports it: `android-app://<package>`.
    AndroidApp(&'static str),
}

use SourceRule::{AndroidApp, Brand, Domain, Host};

/// Second-level labels under which country domains put commercial names.
pub const GENERIC_SLD: &[&str] = &[
    "ac", "co", "com", "edu", "go", "gob", "gov", "ne", "net", "or", "org",
];

/// Referrer grouping. When several rows match a host, the first one wins, so
/// specific rows (`mail.google.com`) come before general ones (`google.*`).
pub const SOURCES: &[(SourceRule, &str)] = &[
    // Mail and specific Google / Yahoo hosts, before their brands.
    (Host("mail.google.com"), "Gmail"),
    (AndroidApp("com.google.android.gm"), "Gmail"),
    (Host("news.google.com"), "Google News"),
    (Host("mail.yahoo.com"), "Yahoo! Mail"),
    (Host("outlook.live.com"), "Outlook"),
    (Host("outlook.office.com"), "Outlook"),
    (Host("outlook.office365.com"), "Outlook"),
    // Search engines
    (Brand("google"), "Google"),
    (
        AndroidApp("com.google.android.googlequicksearchbox"),
        "Google",
    ),
    (Domain("bing.com"), "Bing"),
    (Domain("duckduckgo.com"), "DuckDuckGo"),
    (Brand("yahoo"), "Yahoo!"),
    (Brand("yandex"), "Yandex"),
    (Domain("ya.ru"), "Yandex"),
    (Domain("baidu.com"), "Baidu"),
    (Domain("ecosia.org"), "Ecosia"),
    (Domain("qwant.com"), "Qwant"),
    (Domain("startpage.com"), "Startpage"),
    (Host("search.brave.com"), "Brave Search"),
    (Domain("kagi.com"), "Kagi"),
    (Domain("naver.com"), "Naver"),
    (Domain("seznam.cz"), "Seznam"),
    (Domain("sogou.com"), "Sogou"),
    (Domain("chatgpt.com"), "ChatGPT"),
    (Host("chat.openai.com"), "ChatGPT"),
    (Domain("perplexity.ai"), "Perplexity"),
    // Social networks and communities
    (Domain("facebook.com"), "Facebook"),
    (Domain("fb.com"), "Facebook"),
    (Domain("fb.me"), "Facebook"),
    (AndroidApp("com.facebook.katana"), "Facebook"),
    (Domain("messenger.com"), "Messenger"),
    (Domain("instagram.com"), "Instagram"),
    (AndroidApp("com.instagram.android"), "Instagram"),
    (Domain("t.co"), "X (Twitter)"),
    (Domain("twitter.com"), "X (Twitter)"),
    (Domain("x.com"), "X (Twitter)"),
    (AndroidApp("com.twitter.android"), "X (Twitter)"),
    (Domain("linkedin.com"), "LinkedIn"),
    (Domain("lnkd.in"), "LinkedIn"),
    (AndroidApp("com.linkedin.android"), "LinkedIn"),
    (Domain("reddit.com"), "Reddit"),
    (Domain("redd.it"), "Reddit"),
    (AndroidApp("com.reddit.frontpage"), "Reddit"),
    (Domain("youtube.com"), "YouTube"),
    (Domain("youtu.be"), "YouTube"),
    (Brand("pinterest"), "Pinterest"),
    (Domain("pin.it"), "Pinterest"),
    (Domain("tiktok.com"), "TikTok"),
    (Domain("threads.net"), "Threads"),
    (Domain("threads.com"), "Threads"),
    (Domain("bsky.app"), "Bluesky"),
    (Host("news.ycombinator.com"), "Hacker News"),
    (Domain("lobste.rs"), "Lobsters"),
    (Domain("github.com"), "GitHub"),
    (Domain("gitlab.com"), "GitLab"),
    (Domain("stackoverflow.com"), "Stack Overflow"),
    (Domain("medium.com"), "Medium"),
    (Domain("producthunt.com"), "Product Hunt"),
    (Domain("quora.com"), "Quora"),
    (Domain("vk.com"), "VKontakte"),
    (Domain("wikipedia.org"), "Wikipedia"),
    (Domain("t.me"), "Telegram"),
    (Host("web.telegram.org"), "Telegram"),
    (AndroidApp("org.telegram.messenger"), "Telegram"),
    (Domain("whatsapp.com"), "WhatsApp"),
    (Domain("wa.me"), "WhatsApp"),
    (Domain("discord.com"), "Discord"),
    (Domain("discordapp.com"), "Discord"),
    (Domain("slack.com"), "Slack"),
    (AndroidApp("com.slack"), "Slack"),
    // Mastodon: the largest instances, and mastodon.<tld>.
    (Domain("mastodon.social"), "Mastodon"),
    (Domain("mastodon.online"), "Mastodon"),
    (Domain("mastodon.world"), "Mastodon"),
    (Domain("mastodon.cloud"), "Mastodon"),
    (Domain("mas.to"), "Mastodon"),
    (Domain("masto.ai"), "Mastodon"),
    (Domain("mstdn.social"), "Mastodon"),
    (Domain("mstdn.jp"), "Mastodon"),
    (Domain("fosstodon.org"), "Mastodon"),
    (Domain("hachyderm.io"), "Mastodon"),
    (Domain("infosec.exchange"), "Mastodon"),
    (Domain("techhub.social"), "Mastodon"),
    (Domain("chaos.social"), "Mastodon"),
    (Domain("troet.cafe"), "Mastodon"),
    (Host("social.vivaldi.net"), "Mastodon"),
    (Brand("mastodon"), "Mastodon"),
];

/// A classified referrer. All fields are empty for direct and internal traffic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Referrer {
    /// `scheme://host/path`: no port, query or fragment; at most
    /// [`MAX_REFERRER_LEN`] bytes.
    pub url: String,
    /// The group name from [`SOURCES`], or the host without a leading `www.`
    /// (for Android apps without a row: the package name).
    pub source: String,
    /// The referrer host, lowercase (with `www.` if it had one); what the spam list
    /// checks.
    pub host: String,
}

impl Referrer {
    /// Classifies `document.referrer` for a hit on `page_host`.
    ///
    /// Empty when the referrer is missing, blank, unparsable, too long, of a scheme
    /// other than `http`, `https` or `android-app`, or internal: its host equals
    /// `page_host` or one of `internal_hosts`, ignoring a leading `www.` on either
    /// side. Hosts in `page_host` and `internal_hosts` must be lowercase.
    pub fn classify(
        referrer: Option<&str>,
        page_host: &str,
        internal_hosts: &[String],
    ) -> Referrer {
        classify_with(referrer, |h| {
            same_host(h, page_host) || internal_hosts.iter().any(|i| same_host(h, i))
        })
    }

    /// Like [`Referrer::classify`], with the site's hostname and aliases as the
    /// internal hosts (what [`crate::Enricher`] uses; no allocation).
    pub fn classify_for_site(
        referrer: Option<&str>,
        page_host: &str,
        site: &SiteEntry,
    ) -> Referrer {
        classify_with(referrer, |h| same_host(h, page_host) || site.owns_host(h))
    }

    /// True for direct and internal traffic.
    pub fn is_empty(&self) -> bool {
        self.source.is_empty()
    }
}

fn strip_www(h: &str) -> &str {
    h.strip_prefix("www.")
        .filter(|r| !r.is_empty())
        .unwrap_or(h)
}

fn same_host(a: &str, b: &str) -> bool {
    strip_www(a) == strip_www(b)
}

fn classify_with(referrer: Option<&str>, is_internal: impl Fn(&str) -> bool) -> Referrer {
    let Some(raw) = referrer.map(str::trim).filter(|r| !r.is_empty()) else {
        return Referrer::default();
    };
    if raw.len() > MAX_REFERRER_INPUT_LEN {
        return Referrer::default();
    }
    let Ok(url) = Url::parse(raw) else {
        return Referrer::default();
    };
    let scheme = url.scheme();
    let android = match scheme {
        "http" | "https" => false,
        "android-app" => true,
        _ => return Referrer::default(),
    };
    let Some(host) = url.host_str() else {
        return Referrer::default();
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() {
        return Referrer::default();
    }
    // Special schemes lowercase the host already; android-app:// does not.
    let host = host.to_ascii_lowercase();
    if !android && is_internal(&host) {
        return Referrer::default();
    }

    let path = if android { "" } else { url.path() };
    let mut full = String::with_capacity(scheme.len() + 3 + host.len() + path.len());
    full.push_str(scheme);
    full.push_str("://");
    full.push_str(&host);
    full.push_str(path);
    if full.len() > MAX_REFERRER_LEN {
        let keep = bounded(&full, MAX_REFERRER_LEN).len();
        full.truncate(keep);
    }

    let source = match lookup(&host, android) {
        Some(name) => name.to_owned(),
        None => strip_www(&host).to_owned(),
    };
    Referrer {
        url: full,
        source,
        host,
    }
}

/// Sorted keys of each rule kind, pointing back into [`SOURCES`].
struct Index {
    domains: Vec<(&'static str, usize)>,
    hosts: Vec<(&'static str, usize)>,
    brands: Vec<(&'static str, usize)>,
    apps: Vec<(&'static str, usize)>,
}

static INDEX: LazyLock<Index> = LazyLock::new(|| {
    let mut ix = Index {
        domains: vec![],
        hosts: vec![],
        brands: vec![],
        apps: vec![],
    };
    for (i, (rule, _)) in SOURCES.iter().enumerate() {
        match *rule {
            Domain(d) => ix.domains.push((d, i)),
            Host(h) => ix.hosts.push((h, i)),
            Brand(b) => ix.brands.push((b, i)),
            AndroidApp(a) => ix.apps.push((a, i)),
        }
    }
    for v in [&mut ix.domains, &mut ix.hosts, &mut ix.brands, &mut ix.apps] {
        v.sort();
    }
    ix
});

fn find(keys: &[(&'static str, usize)], key: &str) -> Option<usize> {
    keys.binary_search_by(|(k, _)| (*k).cmp(key))
        .ok()
        .map(|p| keys[p].1)
}

/// The source name for a lowercase host: the first matching row of [`SOURCES`].
fn lookup(host: &str, android: bool) -> Option<&'static str> {
    let ix = &*INDEX;
    if android {
        return find(&ix.apps, host).map(|i| SOURCES[i].1);
    }
    let mut best = find(&ix.hosts, strip_www(host));
    let mut consider = |i: Option<usize>| {
        if let Some(i) = i {
            best = Some(best.map_or(i, |b| b.min(i)));
        }
    };
    let mut rest = host;
    loop {
        consider(find(&ix.domains, rest));
        let (label, tail) = match rest.split_once('.') {
            Some((l, t)) => (l, Some(t)),
            None => (rest, None),
        };
        if let Some(tail) = tail {
            if brand_tail_ok(tail) {
                consider(find(&ix.brands, label));
            }
            rest = tail;
        } else {
            break;
        }
    }
    best.map(|i| SOURCES[i].1)
}

/// `de`, `com` or `co.uk`, `com.br`: what may follow a brand label.
fn brand_tail_ok(tail: &str) -> bool {
    match tail.split_once('.') {
        None => !tail.is_empty(),
        Some((sld, tld)) => !tld.is_empty() && !tld.contains('.') && GENERIC_SLD.contains(&sld),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(r: &str) -> String {
        Referrer::classify(Some(r), "example.com", &[]).source
    }

    #[test]
    fn missing_blank_unparsable_and_odd_schemes_are_empty() {
        let empty = Referrer::default();
        assert_eq!(Referrer::classify(None, "example.com", &[]), empty);
        assert_eq!(Referrer::classify(Some(""), "example.com", &[]), empty);
        assert_eq!(Referrer::classify(Some("   "), "example.com", &[]), empty);
        assert_eq!(
            Referrer::classify(Some("not a url"), "example.com", &[]),
            empty
        );
        assert_eq!(
            Referrer::classify(Some("/relative/path"), "example.com", &[]),
            empty
        );
        assert_eq!(
            Referrer::classify(Some("http://"), "example.com", &[]),
            empty
        );
        assert_eq!(
            Referrer::classify(Some("http://exa mple.com/"), "example.com", &[]),
            empty
        );
        assert_eq!(
            Referrer::classify(Some("about:blank"), "example.com", &[]),
            empty
        );
        assert_eq!(
            Referrer::classify(Some("file:///home/me/x.html"), "example.com", &[]),
            empty
        );
        assert_eq!(
            Referrer::classify(
                Some("chrome-extension://abcdef/popup.html"),
                "example.com",
                &[]
            ),
            empty
        );
        let huge = format!("https://a.example/{}", "x".repeat(MAX_REFERRER_INPUT_LEN));
        assert_eq!(Referrer::classify(Some(&huge), "example.com", &[]), empty);
        assert!(empty.is_empty());
    }

    #[test]
    fn url_is_cleaned() {
        let r = Referrer::classify(
            Some("HTTPS://Blog.Other.ORG:8443/posts/1?utm_source=x&q=secret#frag"),
            "example.com",
            &[],
        );
        assert_eq!(r.url, "https://blog.other.org/posts/1");
        assert_eq!(r.source, "blog.other.org");
        assert_eq!(r.host, "blog.other.org");
        let r = Referrer::classify(Some("http://other.org"), "example.com", &[]);
        assert_eq!(r.url, "http://other.org/");
        let r = Referrer::classify(Some("https://www.other.org./a"), "example.com", &[]);
        assert_eq!(r.url, "https://www.other.org/a");
        assert_eq!(r.source, "other.org");
        assert_eq!(r.host, "www.other.org");
    }

    #[test]
    fn url_is_bounded() {
        let long = format!("https://other.org/{}", "é".repeat(1500)); // encoded: 6 bytes each
        let r = Referrer::classify(Some(&long), "example.com", &[]);
        assert!(r.url.len() <= MAX_REFERRER_LEN);
        assert!(r.url.len() > MAX_REFERRER_LEN - 4);
        assert!(r.url.starts_with("https://other.org/%C3%A9"));
        assert_eq!(r.source, "other.org");
    }

    #[test]
    fn internal_referrers_are_empty() {
        let aliases = vec![
            "staging.example.net".to_string(),
            "www.old.example".to_string(),
        ];
        let c = |r: &str| Referrer::classify(Some(r), "example.com", &aliases);
        assert!(c("https://example.com/pricing").is_empty());
        assert!(c("https://www.example.com/").is_empty());
        assert!(c("http://EXAMPLE.com:8080/x?y").is_empty());
        assert!(c("https://staging.example.net/").is_empty());
        assert!(c("https://www.staging.example.net/").is_empty());
        assert!(c("https://old.example/").is_empty());
        // A subdomain is a different host, so it is a real referrer.
        assert_eq!(c("https://blog.example.com/").source, "blog.example.com");
        // The page host counts even when it is not the site's canonical name.
        let r = Referrer::classify(Some("https://www.shop.example/"), "shop.example", &[]);
        assert!(r.is_empty());
    }

    #[test]
    fn classify_for_site_uses_hostname_and_aliases() {
        let site = SiteEntry {
            hostname: "example.com".into(),
            aliases: vec!["example.org".into()],
        };
        let c = |r: &str, page: &str| Referrer::classify_for_site(Some(r), page, &site);
        assert!(c("https://example.com/", "example.org").is_empty());
        assert!(c("https://www.example.org/", "example.com").is_empty());
        assert!(c("https://preview.example/", "preview.example").is_empty());
        assert_eq!(
            c("https://example.net/", "example.com").source,
            "example.net"
        );
    }

    #[test]
    fn group_google() {
        for r in [
            "https://www.google.com/",
            "https://google.com/search?q=x",
            "https://www.google.de/",
            "https://www.google.co.uk/",
            "https://www.google.com.br/",
            "https://google.co.jp/",
            "https://scholar.google.com/",
            "android-app://com.google.android.googlequicksearchbox/",
            "android-app://com.google.android.googlequicksearchbox/https/www.google.com",
        ] {
            assert_eq!(source(r), "Google", "{r}");
        }
        // Not Google: a brand label with a foreign tail, or a longer label.
        assert_eq!(source("https://google.example.com/"), "google.example.com");
        assert_eq!(
            source("https://googleusercontent.com/"),
            "googleusercontent.com"
        );
        assert_eq!(
            source("https://google.com.evil.net/"),
            "google.com.evil.net"
        );
        assert_eq!(source("https://notgoogle.com/"), "notgoogle.com");
    }

    #[test]
    fn group_mail() {
        assert_eq!(source("https://mail.google.com/mail/u/0/"), "Gmail");
        assert_eq!(source("android-app://com.google.android.gm"), "Gmail");
        assert_eq!(source("android-app://com.google.android.gm/"), "Gmail");
        assert_eq!(source("https://outlook.live.com/"), "Outlook");
        assert_eq!(source("https://outlook.office.com/"), "Outlook");
        assert_eq!(source("https://mail.yahoo.com/"), "Yahoo! Mail");
        assert_eq!(source("https://news.google.com/"), "Google News");
    }

    #[test]
    fn group_search_engines() {
        let cases = [
            ("https://www.bing.com/search?q=x", "Bing"),
            ("https://cn.bing.com/", "Bing"),
            ("https://duckduckgo.com/", "DuckDuckGo"),
            ("https://html.duckduckgo.com/", "DuckDuckGo"),
            ("https://search.yahoo.com/", "Yahoo!"),
            ("https://uk.search.yahoo.com/", "Yahoo!"),
            ("https://yahoo.co.jp/", "Yahoo!"),
            ("https://yandex.ru/", "Yandex"),
            ("https://yandex.com.tr/", "Yandex"),
            ("https://ya.ru/", "Yandex"),
            ("https://www.baidu.com/", "Baidu"),
            ("https://m.baidu.com/", "Baidu"),
            ("https://www.ecosia.org/", "Ecosia"),
            ("https://www.qwant.com/", "Qwant"),
            ("https://www.startpage.com/", "Startpage"),
            ("https://search.brave.com/search?q=x", "Brave Search"),
            ("https://kagi.com/", "Kagi"),
            ("https://search.naver.com/", "Naver"),
            ("https://www.seznam.cz/", "Seznam"),
            ("https://chatgpt.com/", "ChatGPT"),
            ("https://chat.openai.com/", "ChatGPT"),
            ("https://www.perplexity.ai/", "Perplexity"),
        ];
        for (r, want) in cases {
            assert_eq!(source(r), want, "{r}");
        }
        // brave.com itself is not the search engine.
        assert_eq!(source("https://brave.com/"), "brave.com");
    }

    #[test]
    fn group_facebook_and_instagram() {
        for r in [
            "https://www.facebook.com/",
            "https://m.facebook.com/",
            "https://l.facebook.com/l.php?u=x",
            "https://lm.facebook.com/",
            "https://fb.com/",
            "https://fb.me/abc",
            "android-app://com.facebook.katana/",
        ] {
            assert_eq!(source(r), "Facebook", "{r}");
        }
        assert_eq!(source("https://www.messenger.com/"), "Messenger");
        assert_eq!(source("https://www.instagram.com/"), "Instagram");
        assert_eq!(source("https://l.instagram.com/"), "Instagram");
        // Look-alike domains stay themselves.
        assert_eq!(
            source("https://facebook.com.evil.example/"),
            "facebook.com.evil.example"
        );
        assert_eq!(source("https://notfacebook.com/"), "notfacebook.com");
    }

    #[test]
    fn group_x_twitter() {
        for r in [
            "https://t.co/abc",
            "https://twitter.com/",
            "https://mobile.twitter.com/",
            "https://x.com/",
            "android-app://com.twitter.android",
        ] {
            assert_eq!(source(r), "X (Twitter)", "{r}");
        }
        // Other *.co domains are not t.co.
        assert_eq!(source("https://at.co/"), "at.co");
    }

    #[test]
    fn group_linkedin_reddit_youtube() {
        assert_eq!(source("https://www.linkedin.com/feed/"), "LinkedIn");
        assert_eq!(source("https://lnkd.in/abc"), "LinkedIn");
        for r in [
            "https://www.reddit.com/r/rust/",
            "https://old.reddit.com/",
            "https://out.reddit.com/t3_x",
            "https://redd.it/x",
        ] {
            assert_eq!(source(r), "Reddit", "{r}");
        }
        for r in [
            "https://www.youtube.com/watch?v=x",
            "https://m.youtube.com/",
            "https://youtu.be/x",
        ] {
            assert_eq!(source(r), "YouTube", "{r}");
        }
    }

    #[test]
    fn group_pinterest_tiktok_threads_bluesky() {
        for r in [
            "https://www.pinterest.com/",
            "https://pinterest.co.uk/",
            "https://de.pinterest.com/",
            "https://pinterest.fr/",
            "https://pin.it/x",
        ] {
            assert_eq!(source(r), "Pinterest", "{r}");
        }
        assert_eq!(source("https://www.tiktok.com/@x"), "TikTok");
        assert_eq!(source("https://www.threads.net/"), "Threads");
        assert_eq!(source("https://bsky.app/profile/x"), "Bluesky");
        assert_eq!(source("https://go.bsky.app/x"), "Bluesky");
    }

    #[test]
    fn group_developer_communities() {
        assert_eq!(
            source("https://news.ycombinator.com/item?id=1"),
            "Hacker News"
        );
        assert_eq!(source("https://www.news.ycombinator.com/"), "Hacker News");
        // Only that host: the rest of ycombinator.com is not Hacker News.
        assert_eq!(source("https://www.ycombinator.com/"), "ycombinator.com");
        assert_eq!(source("https://github.com/user/repo"), "GitHub");
        assert_eq!(source("https://gist.github.com/x"), "GitHub");
        assert_eq!(source("https://gitlab.com/x"), "GitLab");
        assert_eq!(source("https://lobste.rs/"), "Lobsters");
        assert_eq!(
            source("https://stackoverflow.com/questions/1"),
            "Stack Overflow"
        );
    }

    #[test]
    fn group_mastodon() {
        for r in [
            "https://mastodon.social/@x",
            "https://fosstodon.org/",
            "https://hachyderm.io/",
            "https://infosec.exchange/",
            "https://mas.to/",
            "https://social.vivaldi.net/",
            "https://mastodon.art/",
            "https://mastodon.nl/",
        ] {
            assert_eq!(source(r), "Mastodon", "{r}");
        }
        assert_eq!(source("https://vivaldi.net/"), "vivaldi.net");
    }

    #[test]
    fn group_wikipedia_and_messengers() {
        assert_eq!(source("https://en.wikipedia.org/wiki/Rust"), "Wikipedia");
        assert_eq!(source("https://de.m.wikipedia.org/wiki/Rust"), "Wikipedia");
        assert_eq!(source("https://t.me/channel"), "Telegram");
        assert_eq!(source("android-app://org.telegram.messenger"), "Telegram");
        assert_eq!(source("https://wa.me/1"), "WhatsApp");
        assert_eq!(source("https://web.whatsapp.com/"), "WhatsApp");
        assert_eq!(source("https://discord.com/channels/1"), "Discord");
        assert_eq!(source("https://app.slack.com/client/x"), "Slack");
        assert_eq!(source("android-app://com.slack"), "Slack");
    }

    #[test]
    fn unknown_hosts_and_apps_keep_their_name() {
        assert_eq!(
            source("https://www.some-blog.example/post"),
            "some-blog.example"
        );
        assert_eq!(source("https://www/"), "www");
        assert_eq!(source("http://192.0.2.7/x"), "192.0.2.7");
        let r = Referrer::classify(Some("android-app://com.Example.App/"), "example.com", &[]);
        assert_eq!(r.source, "com.example.app");
        assert_eq!(r.url, "android-app://com.example.app");
    }

    #[test]
    fn table_is_consistent() {
        let mut seen = std::collections::BTreeSet::new();
        for (rule, name) in SOURCES {
            assert!(!name.is_empty());
            assert!(seen.insert(*rule), "duplicate rule {rule:?}");
            let key = match rule {
                Domain(k) | Host(k) | Brand(k) | AndroidApp(k) => *k,
            };
            assert_eq!(key, key.to_ascii_lowercase(), "{rule:?} must be lowercase");
            assert!(!key.starts_with("www."), "{rule:?}: www. is implied");
        }
    }
}
