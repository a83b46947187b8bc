//! Hostname rules and the site registry.
//!
//! This module owns what a valid site hostname is ([`normalize_host`]) and the
//! in-memory map from any hostname a hit may carry (canonical name, alias, with or
//! without a leading `www.`) to the site it counts for ([`Sites`]). It never reads
//! the configuration itself and never looks names up in DNS: the caller builds the
//! registry from its configuration.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// Longest hostname accepted (RFC 1035, without the trailing dot).
pub const MAX_HOST_LEN: usize = 253;
/// Longest label accepted (RFC 1035).
pub const MAX_LABEL_LEN: usize = 63;

/// Why a hostname or a site definition was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SiteError {
    #[error("hostname is empty")]
    Empty,
    #[error("hostname {host:?} contains {ch:?}: only letters, digits, '-' and '.' are allowed")]
    InvalidChar { host: String, ch: char },
    #[error("hostname {host:?} has an empty label (two dots in a row, or a leading dot)")]
    EmptyLabel { host: String },
    #[error("hostname {host:?} has a label longer than {MAX_LABEL_LEN} characters")]
    LabelTooLong { host: String },
    #[error("hostname {host:?} has a label starting or ending with '-'")]
    BadHyphen { host: String },
    #[error("hostname {host:?} is longer than {MAX_HOST_LEN} characters")]
    TooLong { host: String },
    #[error("hostname {host:?} has an invalid port")]
    BadPort { host: String },
    #[error("hostname {host:?} is all digits but not a valid IPv4 address")]
    BadIpv4 { host: String },
    #[error("site {host:?} is already defined")]
    DuplicateSite { host: String },
    #[error("{name:?} (as {wanted}) is already taken by site {existing:?}")]
    Conflict {
        /// The name as written, normalised.
        name: String,
        /// `"site hostname"` or `"alias of <site>"`: what the new definition wanted it for.
        wanted: String,
        /// The canonical hostname of the site that already has it.
        existing: String,
    },
}

/// Normalises a hostname: trims, lowercases, strips a `:port` and a trailing dot,
/// and checks the result.
///
/// Accepted: letters, digits, `-` and `.`, labels of 1 to 63 characters that do not
/// start or end with `-`, at most 253 characters in all. Single-label names
/// (`localhost`, `intranet`) are accepted, as are IPv4 literals (`10.0.0.5`).
/// No IDNA: internationalised names must be given in their `xn--` form.
/// IPv6 literals are not accepted.
pub fn normalize_host(s: &str) -> Result<String, SiteError> {
    let trimmed = s.trim();
    if trimmed.is_empty() {
        return Err(SiteError::Empty);
    }
    let mut host = trimmed.to_ascii_lowercase();
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    if let Some(ch) = host.chars().find(|&c| !(allowed(c) || c == ':')) {
        return Err(SiteError::InvalidChar { host, ch });
    }
    if let Some(colon) = host.find(':') {
        let port = &host[colon + 1..];
        if !port.bytes().all(|b| b.is_ascii_digit()) || port.parse::<u16>().is_err() {
            return Err(SiteError::BadPort { host });
        }
        host.truncate(colon);
    }
    if host.ends_with('.') {
        host.pop();
    }
    if host.is_empty() {
        return Err(SiteError::Empty);
    }
    if host.len() > MAX_HOST_LEN {
        return Err(SiteError::TooLong { host });
    }
    for label in host.split('.') {
        if label.is_empty() {
            return Err(SiteError::EmptyLabel { host });
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(SiteError::LabelTooLong { host });
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(SiteError::BadHyphen { host });
        }
    }
    // A name whose last label is all digits can only be an IPv4 literal.
    let last = host.rsplit('.').next().unwrap_or("");
    if last.bytes().all(|b| b.is_ascii_digit()) && host.parse::<Ipv4Addr>().is_err() {
        return Err(SiteError::BadIpv4 { host });
    }
    Ok(host)
}

/// Strips one leading `www.` (the lookup key of [`Sites`]).
fn strip_www(host: &str) -> &str {
    host.strip_prefix("www.")
        .filter(|rest| !rest.is_empty())
        .unwrap_or(host)
}

/// One configured site: its canonical hostname and the other names it answers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteEntry {
    /// Canonical hostname, normalised; what [`crate::Hit::site`] holds.
    pub hostname: String,
    /// Other hostnames of the same site, normalised (staging hosts, old domains).
    pub aliases: Vec<String>,
}

impl SiteEntry {
    /// True when `host` (already lowercase) is this site's hostname or one of its
    /// aliases, ignoring a leading `www.` on either side.
    pub fn owns_host(&self, host: &str) -> bool {
        let key = strip_www(host);
        strip_www(&self.hostname) == key || self.aliases.iter().any(|a| strip_www(a) == key)
    }
}

/// The registry of sites, keyed by every name each site answers to.
///
/// A name and its `www.` twin are the same key: `www.example.com` resolves to the
/// site `example.com` and the other way round. A name can belong to one site only.
#[derive(Debug, Clone, Default)]
pub struct Sites {
    entries: Vec<SiteEntry>,
    /// `www.`-stripped name -> index into `entries`.
    index: BTreeMap<String, usize>,
}

impl Sites {
    pub fn new() -> Sites {
        Sites::default()
    }

    /// Adds a site. The hostname and aliases are normalised with [`normalize_host`].
    ///
    /// Errors: an invalid name; a hostname already defined as a site
    /// ([`SiteError::DuplicateSite`]); a hostname or alias already used by another site
    /// ([`SiteError::Conflict`]). An alias that is the site's own hostname or its `www.`
    /// twin is accepted (it changes nothing). On error the registry is unchanged.
    pub fn add(&mut self, hostname: &str, aliases: Vec<String>) -> Result<(), SiteError> {
        let hostname = normalize_host(hostname)?;
        let mut norm_aliases = Vec::with_capacity(aliases.len());
        for a in &aliases {
            let a = normalize_host(a)?;
            if !norm_aliases.contains(&a) {
                norm_aliases.push(a);
            }
        }

        let key = strip_www(&hostname).to_owned();
        if let Some(&i) = self.index.get(&key) {
            let existing = &self.entries[i].hostname;
            if strip_www(existing) == key {
                return Err(SiteError::DuplicateSite { host: hostname });
            }
            return Err(SiteError::Conflict {
                name: hostname,
                wanted: "site hostname".into(),
                existing: existing.clone(),
            });
        }
        let mut keys = vec![key];
        for a in &norm_aliases {
            let k = strip_www(a).to_owned();
            if let Some(&i) = self.index.get(&k) {
                return Err(SiteError::Conflict {
                    name: a.clone(),
                    wanted: format!("alias of {hostname}"),
                    existing: self.entries[i].hostname.clone(),
                });
            }
            if !keys.contains(&k) {
                keys.push(k);
            }
        }

        let i = self.entries.len();
        for k in keys {
            self.index.insert(k, i);
        }
        self.entries.push(SiteEntry {
            hostname,
            aliases: norm_aliases,
        });
        Ok(())
    }

    /// The site a domain or page host belongs to: its canonical hostname, an alias,
    /// or either with or without a leading `www.`. Case, a port and a trailing dot
    /// are ignored. `None` for unknown or invalid names.
    pub fn resolve(&self, domain_or_host: &str) -> Option<&SiteEntry> {
        self.resolve_index(domain_or_host).map(|i| &self.entries[i])
    }

    /// Like [`Sites::resolve`], as an index into [`Sites::list`].
    pub fn resolve_index(&self, domain_or_host: &str) -> Option<usize> {
        let host = normalize_host(domain_or_host).ok()?;
        self.index.get(strip_www(&host)).copied()
    }

    /// All sites, in the order they were added.
    pub fn list(&self) -> &[SiteEntry] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_lowercases_trims_and_strips_port_and_dot() {
        assert_eq!(normalize_host("  Example.COM  ").unwrap(), "example.com");
        assert_eq!(normalize_host("example.com:8443").unwrap(), "example.com");
        assert_eq!(normalize_host("example.com.").unwrap(), "example.com");
        assert_eq!(normalize_host("Example.com.:80").unwrap(), "example.com");
        assert_eq!(normalize_host("localhost").unwrap(), "localhost");
        assert_eq!(normalize_host("localhost:3000").unwrap(), "localhost");
        assert_eq!(normalize_host("intranet").unwrap(), "intranet");
        assert_eq!(normalize_host("10.0.0.5").unwrap(), "10.0.0.5");
        assert_eq!(
            normalize_host("xn--bcher-kva.example").unwrap(),
            "xn--bcher-kva.example"
        );
        assert_eq!(normalize_host("a-b.c1.example").unwrap(), "a-b.c1.example");
    }

    #[test]
    fn normalize_rejects_bad_names() {
        assert_eq!(normalize_host(""), Err(SiteError::Empty));
        assert_eq!(normalize_host("   "), Err(SiteError::Empty));
        assert_eq!(normalize_host("."), Err(SiteError::Empty));
        assert!(matches!(
            normalize_host("exa mple.com"),
            Err(SiteError::InvalidChar { ch: ' ', .. })
        ));
        assert!(matches!(
            normalize_host("https://example.com"),
            Err(SiteError::InvalidChar { ch: '/', .. })
        ));
        assert!(matches!(
            normalize_host("example.com/path"),
            Err(SiteError::InvalidChar { ch: '/', .. })
        ));
        assert!(matches!(
            normalize_host("ex_ample.com"),
            Err(SiteError::InvalidChar { ch: '_', .. })
        ));
        assert!(matches!(
            normalize_host("bücher.de"),
            Err(SiteError::InvalidChar { ch: 'ü', .. })
        ));
        assert!(matches!(
            normalize_host("a..b"),
            Err(SiteError::EmptyLabel { .. })
        ));
        assert!(matches!(
            normalize_host(".example.com"),
            Err(SiteError::EmptyLabel { .. })
        ));
        assert!(matches!(
            normalize_host("-a.example.com"),
            Err(SiteError::BadHyphen { .. })
        ));
        assert!(matches!(
            normalize_host("example.com:"),
            Err(SiteError::BadPort { .. })
        ));
        assert!(matches!(
            normalize_host("example.com:99999"),
            Err(SiteError::BadPort { .. })
        ));
        assert!(matches!(
            normalize_host("example.com:8a"),
            Err(SiteError::BadPort { .. })
        ));
        assert!(matches!(
            normalize_host("[::1]"),
            Err(SiteError::InvalidChar { ch: '[', .. })
        ));
        assert!(matches!(
            normalize_host("a:1:2"),
            Err(SiteError::BadPort { .. })
        ));
        assert!(matches!(
            normalize_host("999.1.1.1"),
            Err(SiteError::BadIpv4 { .. })
        ));
        assert!(matches!(
            normalize_host("1.2.3"),
            Err(SiteError::BadIpv4 { .. })
        ));

        let label63 = "a".repeat(63);
        assert!(normalize_host(&format!("{label63}.com")).is_ok());
        let label64 = "a".repeat(64);
        assert!(matches!(
            normalize_host(&format!("{label64}.com")),
            Err(SiteError::LabelTooLong { .. })
        ));

        // 4 labels of 63 + 3 dots = 255 > 253; 3 labels of 63 + "a" = 193 ok.
        let long = [label63.as_str(); 4].join(".");
        assert!(matches!(
            normalize_host(&long),
            Err(SiteError::TooLong { .. })
        ));
        let ok = format!("{}.{}", [label63.as_str(); 3].join("."), "a".repeat(61));
        assert_eq!(ok.len(), 253);
        assert!(normalize_host(&ok).is_ok());
    }

    #[test]
    fn error_messages_are_clear() {
        let e = normalize_host("exa mple.com").unwrap_err().to_string();
        assert!(e.contains("exa mple.com") && e.contains("' '"), "{e}");
        let mut s = Sites::new();
        s.add("example.com", vec!["blog.example.com".into()])
            .unwrap();
        let e = s
            .add("other.org", vec!["Blog.Example.com".into()])
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"blog.example.com\" (as alias of other.org) is already taken by site \"example.com\""
        );
    }

    #[test]
    fn resolve_matches_canonical_aliases_and_www_twins() {
        let mut s = Sites::new();
        s.add(
            "Example.com",
            vec!["staging.example.net".into(), "www.old-example.org".into()],
        )
        .unwrap();
        s.add("www.shop.example", vec![]).unwrap();

        let host = |x: &str| s.resolve(x).map(|e| e.hostname.as_str());
        assert_eq!(host("example.com"), Some("example.com"));
        assert_eq!(host("www.example.com"), Some("example.com"));
        assert_eq!(host("EXAMPLE.COM:443"), Some("example.com"));
        assert_eq!(host("example.com."), Some("example.com"));
        assert_eq!(host("staging.example.net"), Some("example.com"));
        assert_eq!(host("www.staging.example.net"), Some("example.com"));
        assert_eq!(host("old-example.org"), Some("example.com"));
        assert_eq!(host("www.old-example.org"), Some("example.com"));
        // A canonical name given with www. also answers without it.
        assert_eq!(host("shop.example"), Some("www.shop.example"));
        assert_eq!(host("www.shop.example"), Some("www.shop.example"));
        // Not a subdomain match, and invalid names resolve to nothing.
        assert_eq!(host("blog.example.com"), None);
        assert_eq!(host("example.co"), None);
        assert_eq!(host("exa mple.com"), None);
        assert_eq!(host(""), None);

        assert_eq!(s.len(), 2);
        assert_eq!(
            s.list()[0].aliases,
            vec!["staging.example.net", "www.old-example.org"]
        );
    }

    #[test]
    fn duplicates_and_conflicts_are_errors_and_leave_the_registry_unchanged() {
        let mut s = Sites::new();
        s.add("example.com", vec!["example.net".into()]).unwrap();

        assert_eq!(
            s.add("EXAMPLE.com", vec![]),
            Err(SiteError::DuplicateSite {
                host: "example.com".into()
            })
        );
        assert_eq!(
            s.add("www.example.com", vec![]),
            Err(SiteError::DuplicateSite {
                host: "www.example.com".into()
            })
        );
        assert!(matches!(
            s.add("example.net", vec![]),
            Err(SiteError::Conflict { ref existing, .. }) if existing == "example.com"
        ));
        assert!(matches!(
            s.add("other.org", vec!["fresh.org".into(), "www.example.net".into()]),
            Err(SiteError::Conflict { ref name, .. }) if name == "www.example.net"
        ));
        // The failed add registered nothing, not even the valid first alias.
        assert!(s.resolve("fresh.org").is_none());
        assert!(s.resolve("other.org").is_none());
        assert!(matches!(
            s.add("bad site", vec![]),
            Err(SiteError::InvalidChar { .. })
        ));
        assert!(matches!(
            s.add("ok.org", vec!["bad/alias".into()]),
            Err(SiteError::InvalidChar { .. })
        ));
        assert_eq!(s.len(), 1);

        // Its own www. twin as an alias is harmless.
        s.add(
            "solo.org",
            vec!["www.solo.org".into(), "www.solo.org".into()],
        )
        .unwrap();
        assert_eq!(s.resolve("www.solo.org").unwrap().hostname, "solo.org");
        assert_eq!(s.list()[1].aliases, vec!["www.solo.org"]);
    }

    #[test]
    fn owns_host_ignores_www() {
        let e = SiteEntry {
            hostname: "example.com".into(),
            aliases: vec!["www.example.org".into()],
        };
        assert!(e.owns_host("example.com"));
        assert!(e.owns_host("www.example.com"));
        assert!(e.owns_host("example.org"));
        assert!(!e.owns_host("blog.example.com"));
        assert!(!e.owns_host("example.net"));
    }
}
