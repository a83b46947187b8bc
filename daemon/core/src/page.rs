//! The page URL of a hit: host, path and UTM campaign fields.
//!
//! This module owns parsing the URL a browser reports (`location.href`) into what
//! the store keeps: a lowercase host (used to find the site), a path without query
//! or fragment, and the five UTM fields. It never keeps the query string or the
//! fragment (they may carry tokens or personal data), and never fetches anything.

use crate::hit::Utm;
use url::Url;

/// Longest page URL accepted, in bytes.
pub const MAX_URL_LEN: usize = 8 * 1024;
/// Longest UTM value kept, in bytes (longer values are cut at a char boundary).
pub const MAX_UTM_LEN: usize = 256;

/// Why a page URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("page URL is empty")]
    Empty,
    #[error("page URL is longer than {MAX_URL_LEN} bytes")]
    TooLong,
    #[error("page URL is not absolute (expected http:// or https://)")]
    NotAbsolute,
    #[error("page URL scheme {0:?} is not http or https")]
    BadScheme(String),
    #[error("page URL has no host")]
    NoHost,
    #[error("page URL is malformed: {0}")]
    Malformed(String),
}

/// A parsed page URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageUrl {
    /// Lowercase host without port or trailing dot (IPv6 literals keep their brackets).
    pub host: String,
    /// Path, starting with `/`, percent-encoded as sent; no query, no fragment.
    pub path: String,
    /// UTM fields from the query string (decoded, trimmed, at most [`MAX_UTM_LEN`] bytes).
    pub utm: Utm,
}

impl PageUrl {
    /// Parses an absolute `http` or `https` URL.
    ///
    /// The UTM fields come from `utm_source`, `utm_medium`, `utm_campaign`, `utm_term`
    /// and `utm_content`. Like Plausible, `source` and then `ref` stand in for
    /// `utm_source` when it is absent or empty. Of repeated keys the first non-empty
    /// value wins.
    pub fn parse(url: &str) -> Result<PageUrl, UrlError> {
        let url = url.trim();
        if url.is_empty() {
            return Err(UrlError::Empty);
        }
        if url.len() > MAX_URL_LEN {
            return Err(UrlError::TooLong);
        }
        let parsed = Url::parse(url).map_err(|e| match e {
            url::ParseError::RelativeUrlWithoutBase => UrlError::NotAbsolute,
            url::ParseError::EmptyHost => UrlError::NoHost,
            other => UrlError::Malformed(other.to_string()),
        })?;
        match parsed.scheme() {
            "http" | "https" => {}
            other => return Err(UrlError::BadScheme(other.to_owned())),
        }
        let host = parsed.host_str().ok_or(UrlError::NoHost)?;
        let host = host.strip_suffix('.').unwrap_or(host);
        if host.is_empty() {
            return Err(UrlError::NoHost);
        }
        Ok(PageUrl {
            host: host.to_ascii_lowercase(),
            path: parsed.path().to_owned(),
            utm: utm_from_query(&parsed),
        })
    }
}

fn utm_from_query(url: &Url) -> Utm {
    let mut utm = Utm::default();
    if url.query().is_none() {
        return utm;
    }
    let mut alias_source = String::new();
    let mut alias_ref = String::new();
    for (k, v) in url.query_pairs() {
        let slot = match &*k {
            "utm_source" => &mut utm.source,
            "utm_medium" => &mut utm.medium,
            "utm_campaign" => &mut utm.campaign,
            "utm_term" => &mut utm.term,
            "utm_content" => &mut utm.content,
            "source" => &mut alias_source,
            "ref" => &mut alias_ref,
            _ => continue,
        };
        if slot.is_empty() {
            *slot = bounded(v.trim(), MAX_UTM_LEN).to_owned();
        }
    }
    if utm.source.is_empty() {
        utm.source = if alias_source.is_empty() {
            alias_ref
        } else {
            alias_source
        };
    }
    utm
}

/// The longest prefix of `s` that is at most `max` bytes and ends on a char boundary.
pub(crate) fn bounded(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_path() {
        let p = PageUrl::parse("https://WWW.Example.COM:8443/Docs/Intro?x=1#top").unwrap();
        assert_eq!(p.host, "www.example.com");
        assert_eq!(p.path, "/Docs/Intro");
        assert_eq!(p.utm, Utm::default());

        let p = PageUrl::parse("http://example.com").unwrap();
        assert_eq!(p.path, "/");
        let p = PageUrl::parse("http://example.com.?utm_source=x").unwrap();
        assert_eq!(p.host, "example.com");
        assert_eq!(p.path, "/");
        let p = PageUrl::parse("http://10.0.0.5:8080/a").unwrap();
        assert_eq!(p.host, "10.0.0.5");
        let p = PageUrl::parse("http://[::1]:3000/").unwrap();
        assert_eq!(p.host, "[::1]");
        let p = PageUrl::parse("  https://example.com/a  ").unwrap();
        assert_eq!(p.path, "/a");
    }

    #[test]
    fn path_keeps_percent_encoding() {
        let p = PageUrl::parse("https://example.com/caf%C3%A9/a%2Fb?q").unwrap();
        assert_eq!(p.path, "/caf%C3%A9/a%2Fb");
        // A raw non-ASCII path (what a non-browser client may send) is encoded the
        // way browsers encode it.
        let p = PageUrl::parse("https://example.com/café").unwrap();
        assert_eq!(p.path, "/caf%C3%A9");
        let p = PageUrl::parse("https://example.com/a/b/#/spa-route").unwrap();
        assert_eq!(p.path, "/a/b/");
    }

    #[test]
    fn errors() {
        assert_eq!(PageUrl::parse(""), Err(UrlError::Empty));
        assert_eq!(PageUrl::parse("/just/a/path"), Err(UrlError::NotAbsolute));
        assert_eq!(
            PageUrl::parse("example.com/page"),
            Err(UrlError::NotAbsolute)
        );
        assert_eq!(
            PageUrl::parse("ftp://example.com/"),
            Err(UrlError::BadScheme("ftp".into()))
        );
        assert_eq!(
            PageUrl::parse("file:///etc/passwd"),
            Err(UrlError::BadScheme("file".into()))
        );
        assert_eq!(
            PageUrl::parse("javascript:alert(1)"),
            Err(UrlError::BadScheme("javascript".into()))
        );
        assert_eq!(PageUrl::parse("http://"), Err(UrlError::NoHost));
        // As in browsers, extra slashes after a special scheme are skipped.
        assert_eq!(PageUrl::parse("https:///path").unwrap().host, "path");
        assert!(matches!(
            PageUrl::parse("http://exa mple.com/"),
            Err(UrlError::Malformed(_))
        ));
        assert!(matches!(
            PageUrl::parse("http://example.com:99999/"),
            Err(UrlError::Malformed(_))
        ));
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert_eq!(PageUrl::parse(&long), Err(UrlError::TooLong));
    }

    #[test]
    fn utm_fields() {
        let p = PageUrl::parse(
            "https://example.com/?utm_source=news%20letter&utm_medium=email&utm_campaign=spring+sale\
             &utm_term=%20shoes%20&utm_content=hero&other=1",
        )
        .unwrap();
        assert_eq!(
            p.utm,
            Utm {
                source: "news letter".into(),
                medium: "email".into(),
                campaign: "spring sale".into(),
                term: "shoes".into(),
                content: "hero".into(),
            }
        );
    }

    #[test]
    fn source_and_ref_alias_utm_source() {
        let src = |u: &str| PageUrl::parse(u).unwrap().utm.source;
        assert_eq!(src("https://e.com/?ref=producthunt"), "producthunt");
        assert_eq!(src("https://e.com/?source=newsletter"), "newsletter");
        assert_eq!(src("https://e.com/?ref=a&source=b"), "b");
        assert_eq!(src("https://e.com/?ref=a&utm_source=c"), "c");
        assert_eq!(src("https://e.com/?utm_source=&ref=a"), "a");
        assert_eq!(src("https://e.com/?utm_source=%20%20&ref=a"), "a");
        // First non-empty value of a repeated key wins.
        assert_eq!(
            src("https://e.com/?utm_source=&utm_source=x&utm_source=y"),
            "x"
        );
        // Keys are case-sensitive, as everywhere else.
        assert_eq!(src("https://e.com/?UTM_SOURCE=x"), "");
        // The fragment is not the query.
        assert_eq!(src("https://e.com/#utm_source=x"), "");
    }

    #[test]
    fn utm_values_are_bounded_at_char_boundaries() {
        let long = "é".repeat(200); // 400 bytes
        let p = PageUrl::parse(&format!("https://e.com/?utm_campaign={long}")).unwrap();
        assert_eq!(p.utm.campaign.len(), 256);
        assert_eq!(p.utm.campaign, "é".repeat(128));
        let odd = format!("a{}", "é".repeat(200));
        let p = PageUrl::parse(&format!("https://e.com/?utm_term={odd}")).unwrap();
        assert_eq!(p.utm.term.len(), 255);
        assert!(p.utm.term.starts_with("aé"));
    }

    #[test]
    fn bounded_helper() {
        assert_eq!(bounded("abc", 5), "abc");
        assert_eq!(bounded("abc", 2), "ab");
        assert_eq!(bounded("aé", 2), "a");
        assert_eq!(bounded("", 0), "");
    }
}
