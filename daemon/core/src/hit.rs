//! The hit: one pageview or custom event, after enrichment.
//!
//! [`Hit`] is the unit the durable queue carries (encoded with [`Hit::encode`])
//! and the row the store appends. It deliberately has no field for the client
//! IP address or the raw User-Agent: those exist only in [`RawHit`], in memory.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// What kind of hit this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum Kind {
    /// A page view (event name `pageview`).
    Pageview = 0,
    /// A custom event (outbound link, file download, or `hitvault('event', …)`).
    Event = 1,
}

/// Device class, from the User-Agent and, when known, the screen width.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum Device {
    Unknown = 0,
    Desktop = 1,
    Mobile = 2,
    Tablet = 3,
}

impl Device {
    /// The name used in the store and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Device::Unknown => "",
            Device::Desktop => "desktop",
            Device::Mobile => "mobile",
            Device::Tablet => "tablet",
        }
    }
}

/// The five UTM campaign fields, taken from the page URL's query string.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Utm {
    pub source: String,
    pub medium: String,
    pub campaign: String,
    pub term: String,
    pub content: String,
}

/// An enriched hit, ready for the queue and the store. Empty strings mean "unknown".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hit {
    /// When the hit happened: UTC milliseconds since the Unix epoch.
    pub ts_ms: i64,
    /// Canonical hostname of the site (after alias resolution).
    pub site: String,
    pub kind: Kind,
    /// `pageview` for page views, otherwise the event name.
    pub name: String,
    /// Path of the page (no query string, no fragment), always starting with `/`.
    pub path: String,
    /// Referrer URL without query or fragment; empty for direct and internal traffic.
    pub referrer: String,
    /// Referrer grouped into a source name (`Google`, `Facebook`, or the referrer host);
    /// `utm_source` when there is no referrer.
    pub source: String,
    pub utm: Utm,
    pub browser: String,
    /// Major version of the browser.
    pub browser_version: String,
    pub os: String,
    pub os_version: String,
    pub device: Device,
    /// ISO 3166-1 alpha-2 country code, or empty.
    pub country: String,
    /// Primary language tag as the browser reports it (`en-US`), or empty.
    pub language: String,
    /// Screen (viewport) width in CSS pixels, 0 when unknown.
    pub screen_width: u16,
    /// Keyed hash of (daily salt, site, client IP, User-Agent). Changes every day.
    pub visitor: u64,
    /// Custom properties, sorted by name, bounded by the ingest limits.
    pub props: Vec<(String, String)>,
}

impl Hit {
    /// Encodes the hit for the durable queue (postcard: compact, versioned by the
    /// queue record's format byte).
    pub fn encode(&self) -> Vec<u8> {
        // One buffer, written in place (a typical hit is 100-300 bytes).
        let mut out = Vec::with_capacity(256);
        out.push(FORMAT_V1);
        // Serialising a plain struct into a Vec cannot fail.
        postcard::to_extend(self, out).expect("hit encodes")
    }

    /// Decodes a queue record written by [`Hit::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Hit, DecodeError> {
        match bytes.split_first() {
            Some((&FORMAT_V1, rest)) => {
                postcard::from_bytes(rest).map_err(|e| DecodeError::Malformed(e.to_string()))
            }
            Some((&v, _)) => Err(DecodeError::UnknownFormat(v)),
            None => Err(DecodeError::Malformed("empty record".into())),
        }
    }
}

const FORMAT_V1: u8 = 1;

/// Format byte of an [`Engagement`] record in the queue.
const FORMAT_ENGAGEMENT: u8 = 2;

/// How long a visitor read a page and how far down they scrolled, sent by
/// the tracker while the page was open (Plausible's `engagement` event).
/// Not a hit of its own: the store attributes it to the pageview it follows
/// (same site, visitor and path; see `docs/internals/engagement.md`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Engagement {
    /// When it was received: UTC milliseconds since the Unix epoch.
    pub ts_ms: i64,
    /// Canonical hostname of the site.
    pub site: String,
    /// Path of the page read, normalised as a pageview's.
    pub path: String,
    /// The visitor id, computed as for a hit (same day, same id).
    pub visitor: u64,
    /// Engaged time since the previous engagement of the same page view:
    /// milliseconds the page was visible and focused.
    pub engaged_ms: u32,
    /// Deepest point seen, in percent of the page's height (0..=100);
    /// `None` when the tracker did not say.
    pub scroll_depth: Option<u8>,
}

impl Engagement {
    /// The engagement of the page `hit` describes (its site, path, visitor, time).
    pub fn of(hit: Hit, engaged_ms: u32, scroll_depth: Option<u8>) -> Engagement {
        Engagement {
            ts_ms: hit.ts_ms,
            site: hit.site,
            path: hit.path,
            visitor: hit.visitor,
            engaged_ms,
            scroll_depth,
        }
    }

    /// Encodes the engagement for the durable queue (its own format byte, so
    /// hit records keep theirs).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.push(FORMAT_ENGAGEMENT);
        postcard::to_extend(self, out).expect("engagement encodes")
    }
}

/// An [`Engagement`] whose texts borrow from a queue record.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct EngagementRef<'a> {
    pub ts_ms: i64,
    pub site: &'a str,
    pub path: &'a str,
    pub visitor: u64,
    pub engaged_ms: u32,
    pub scroll_depth: Option<u8>,
}

impl Engagement {
    /// The engagement as an [`EngagementRef`] borrowing its texts.
    pub fn as_ref(&self) -> EngagementRef<'_> {
        EngagementRef {
            ts_ms: self.ts_ms,
            site: &self.site,
            path: &self.path,
            visitor: self.visitor,
            engaged_ms: self.engaged_ms,
            scroll_depth: self.scroll_depth,
        }
    }
}

/// One queue record: a hit, or the engagement of a page view.
// Decoded one at a time and moved straight into per-kind lists: boxing the
// hit would cost an allocation per hit on the writer's hot path.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record<'a> {
    Hit(HitRef<'a>),
    Engagement(EngagementRef<'a>),
}

impl<'a> Record<'a> {
    /// Decodes a queue record written by [`Hit::encode`] or
    /// [`Engagement::encode`], borrowing its texts.
    pub fn decode(bytes: &'a [u8]) -> Result<Record<'a>, DecodeError> {
        match bytes.split_first() {
            Some((&FORMAT_ENGAGEMENT, rest)) => postcard::from_bytes(rest)
                .map(Record::Engagement)
                .map_err(|e| DecodeError::Malformed(e.to_string())),
            _ => HitRef::decode(bytes).map(Record::Hit),
        }
    }
}

/// The five UTM fields of a [`HitRef`], borrowed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct UtmRef<'a> {
    pub source: &'a str,
    pub medium: &'a str,
    pub campaign: &'a str,
    pub term: &'a str,
    pub content: &'a str,
}

/// A [`Hit`] whose texts borrow from a queue record (or from a `Hit`): what
/// the writer hands to the store, so that decoding a batch allocates no
/// string per field. Same fields, same order, same encoding as `Hit`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct HitRef<'a> {
    pub ts_ms: i64,
    pub site: &'a str,
    pub kind: Kind,
    pub name: &'a str,
    pub path: &'a str,
    pub referrer: &'a str,
    pub source: &'a str,
    #[serde(borrow)]
    pub utm: UtmRef<'a>,
    pub browser: &'a str,
    pub browser_version: &'a str,
    pub os: &'a str,
    pub os_version: &'a str,
    pub device: Device,
    pub country: &'a str,
    pub language: &'a str,
    pub screen_width: u16,
    pub visitor: u64,
    #[serde(borrow)]
    pub props: Vec<(&'a str, &'a str)>,
}

impl<'a> HitRef<'a> {
    /// Decodes a queue record written by [`Hit::encode`], borrowing its texts.
    pub fn decode(bytes: &'a [u8]) -> Result<HitRef<'a>, DecodeError> {
        match bytes.split_first() {
            Some((&FORMAT_V1, rest)) => {
                postcard::from_bytes(rest).map_err(|e| DecodeError::Malformed(e.to_string()))
            }
            Some((&v, _)) => Err(DecodeError::UnknownFormat(v)),
            None => Err(DecodeError::Malformed("empty record".into())),
        }
    }
}

impl Hit {
    /// The hit as a [`HitRef`] borrowing its texts.
    pub fn as_ref(&self) -> HitRef<'_> {
        HitRef {
            ts_ms: self.ts_ms,
            site: &self.site,
            kind: self.kind,
            name: &self.name,
            path: &self.path,
            referrer: &self.referrer,
            source: &self.source,
            utm: UtmRef {
                source: &self.utm.source,
                medium: &self.utm.medium,
                campaign: &self.utm.campaign,
                term: &self.utm.term,
                content: &self.utm.content,
            },
            browser: &self.browser,
            browser_version: &self.browser_version,
            os: &self.os,
            os_version: &self.os_version,
            device: self.device,
            country: &self.country,
            language: &self.language,
            screen_width: self.screen_width,
            visitor: self.visitor,
            props: self
                .props
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
        }
    }
}

/// A queue record that is not a hit this version can read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown hit record format {0}")]
    UnknownFormat(u8),
    #[error("malformed hit record: {0}")]
    Malformed(String),
}

/// What an ingest handler knows about a hit before enrichment. Lives only in memory.
#[derive(Clone, Debug)]
pub struct RawHit {
    /// When the hit happened: UTC milliseconds since the Unix epoch.
    pub ts_ms: i64,
    /// The site the hit claims (data-domain / Plausible `domain`), if given;
    /// otherwise the host of `url` is used.
    pub domain: Option<String>,
    /// Event name; `pageview` for page views.
    pub name: String,
    /// Full page URL as the browser saw it.
    pub url: String,
    /// `document.referrer`, if any.
    pub referrer: Option<String>,
    pub props: Vec<(String, String)>,
    pub screen_width: Option<u16>,
    pub language: Option<String>,
    /// The User-Agent header of the visitor's request.
    pub user_agent: String,
    /// The client address (from the socket, or a trusted proxy's header).
    /// Used for the country and the visitor hash, then dropped.
    pub ip: IpAddr,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Hit {
        Hit {
            ts_ms: 1_700_000_000_123,
            site: "example.com".into(),
            kind: Kind::Event,
            name: "signup".into(),
            path: "/pricing".into(),
            referrer: "https://www.google.com/".into(),
            source: "Google".into(),
            utm: Utm {
                source: "news".into(),
                ..Utm::default()
            },
            browser: "Firefox".into(),
            browser_version: "120".into(),
            os: "Linux".into(),
            os_version: "".into(),
            device: Device::Desktop,
            country: "DE".into(),
            language: "de-DE".into(),
            screen_width: 1440,
            visitor: 0xdead_beef_cafe_f00d,
            props: vec![("plan".into(), "pro".into())],
        }
    }

    #[test]
    fn encode_decode_round_trip() {
        let h = sample();
        assert_eq!(Hit::decode(&h.encode()).unwrap(), h);
    }

    #[test]
    fn borrowed_decode_reads_the_same_record() {
        let mut h = sample();
        let bytes = h.encode();
        assert_eq!(HitRef::decode(&bytes).unwrap(), h.as_ref());
        h.props.clear();
        h.utm = Utm::default();
        let bytes = h.encode();
        assert_eq!(HitRef::decode(&bytes).unwrap(), h.as_ref());
        let mut bad = bytes.clone();
        bad[0] = 9;
        assert!(matches!(
            HitRef::decode(&bad),
            Err(DecodeError::UnknownFormat(9))
        ));
        assert!(HitRef::decode(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn records_tell_hits_from_engagements() {
        let h = sample();
        let e = Engagement::of(h.clone(), 12_345, Some(80));
        assert_eq!((e.path.as_str(), e.visitor), ("/pricing", h.visitor));
        let (hb, eb) = (h.encode(), e.encode());
        assert_eq!(Record::decode(&hb).unwrap(), Record::Hit(h.as_ref()));
        assert_eq!(Record::decode(&eb).unwrap(), Record::Engagement(e.as_ref()));
        // A hit decoder never mistakes an engagement for a hit.
        assert!(matches!(
            HitRef::decode(&eb),
            Err(DecodeError::UnknownFormat(2))
        ));
        assert!(Record::decode(&eb[..eb.len() - 1]).is_err());
        let none = Engagement {
            scroll_depth: None,
            ..e
        };
        assert_eq!(
            Record::decode(&none.encode()).unwrap(),
            Record::Engagement(none.as_ref())
        );
    }

    #[test]
    fn decode_refuses_unknown_format_and_garbage() {
        let mut bytes = sample().encode();
        bytes[0] = 9;
        assert!(matches!(
            Hit::decode(&bytes),
            Err(DecodeError::UnknownFormat(9))
        ));
        assert!(Hit::decode(&[]).is_err());
        assert!(Hit::decode(&[FORMAT_V1, 0xff, 0xff]).is_err());
    }
}
