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
