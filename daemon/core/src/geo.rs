//! Offline IP-to-country lookup over an in-memory MaxMind DB (mmdb) file.
//!
//! This module owns reading a country database from bytes the caller hands over
//! (the bundled DB-IP Lite file, [`BUNDLED_GEOIP`], or one the operator supplies),
//! checking it has the field we need, and answering "which country" for public
//! addresses. It never opens a file, never downloads an update, and never keeps the
//! address it was asked about.
//!
//! The bundled database is "IP to Country Lite" by DB-IP (<https://db-ip.com>),
//! licensed CC BY 4.0: the dashboard must credit DB-IP (see `data/DBIP-LICENSE`).

use maxminddb::{PathElement, Reader, WithinOptions};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The DB-IP Lite country database shipped in the binary (mmdb, `country_code` field).
pub const BUNDLED_GEOIP: &[u8] = include_bytes!("../data/dbip-country.mmdb");

/// Why a GeoIP database was refused.
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    #[error("not a readable MaxMind DB (mmdb) file: {0}")]
    Invalid(String),
    #[error(
        "the GeoIP database (type {database_type:?}) has no country field: expected a \
         `country_code` string (DB-IP / ip-location-db layout) or `country.iso_code` \
         (GeoIP2 / GeoLite2 layout)"
    )]
    NoCountryField { database_type: String },
    #[error("the GeoIP database (type {database_type:?}) has no records")]
    Empty { database_type: String },
}

/// Where the two-letter code sits in a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// `{ "country_code": "US" }`: DB-IP Lite and the ip-location-db packages.
    Flat,
    /// `{ "country": { "iso_code": "US" } }`: GeoIP2 / GeoLite2 Country and City.
    Nested,
}

const FLAT_PATH: &[PathElement<'static>] = &[PathElement::Key("country_code")];
const NESTED_PATH: &[PathElement<'static>] =
    &[PathElement::Key("country"), PathElement::Key("iso_code")];

/// How many records [`GeoIp::from_bytes`] inspects to recognise the layout.
const PROBE_RECORDS: usize = 64;

/// A country database held in memory. `Send + Sync`; lookups take no lock.
pub struct GeoIp {
    reader: Reader<Vec<u8>>,
    layout: Layout,
}

// Checked by the compiler: `GeoIp` is shared between threads.
const _: () = {
    fn assert_send_sync<T: Send + Sync>() {}
    let _ = assert_send_sync::<GeoIp>;
};

impl std::fmt::Debug for GeoIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (t, epoch) = self.metadata();
        f.debug_struct("GeoIp")
            .field("database_type", &t)
            .field("build_epoch", &epoch)
            .field("layout", &self.layout)
            .finish()
    }
}

impl GeoIp {
    /// Reads a database from its bytes and checks that its records carry a country
    /// code, by probing the first records that have data.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<GeoIp, GeoError> {
        let reader = Reader::from_source(bytes).map_err(|e| GeoError::Invalid(e.to_string()))?;
        let database_type = reader.metadata().database_type.clone();
        let mut seen = 0;
        let mut layout = None;
        let networks = reader
            .networks(WithinOptions::default())
            .map_err(|e| GeoError::Invalid(e.to_string()))?;
        for item in networks.take(PROBE_RECORDS) {
            let rec = item.map_err(|e| GeoError::Invalid(e.to_string()))?;
            seen += 1;
            if matches!(rec.decode_path::<&str>(FLAT_PATH), Ok(Some(_))) {
                layout = Some(Layout::Flat);
                break;
            }
            if matches!(rec.decode_path::<&str>(NESTED_PATH), Ok(Some(_))) {
                layout = Some(Layout::Nested);
                break;
            }
        }
        match layout {
            Some(layout) => Ok(GeoIp { reader, layout }),
            None if seen == 0 => Err(GeoError::Empty { database_type }),
            None => Err(GeoError::NoCountryField { database_type }),
        }
    }

    /// The bundled DB-IP Lite database (copies its 8 MB once).
    pub fn bundled() -> Result<GeoIp, GeoError> {
        GeoIp::from_bytes(BUNDLED_GEOIP.to_vec())
    }

    /// The ISO 3166-1 alpha-2 code (uppercase ASCII) of a public address.
    ///
    /// `None` for addresses that are not on the public internet (private, loopback,
    /// link-local, unspecified, documentation, shared CGNAT, benchmarking, multicast,
    /// broadcast, reserved, IPv6 unique-local), for addresses the database does not
    /// know, and for entries that are not two letters (such as the `ZZ` placeholder).
    /// An IPv4-mapped IPv6 address is looked up as the IPv4 address.
    pub fn country(&self, ip: IpAddr) -> Option<[u8; 2]> {
        let ip = ip.to_canonical();
        if !is_public(ip) {
            return None;
        }
        let rec = self.reader.lookup(ip).ok()?;
        let path = match self.layout {
            Layout::Flat => FLAT_PATH,
            Layout::Nested => NESTED_PATH,
        };
        let code: &str = rec.decode_path(path).ok()??;
        match code.as_bytes() {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                let cc = [a.to_ascii_uppercase(), b.to_ascii_uppercase()];
                (cc != *b"ZZ" && cc != *b"XX").then_some(cc)
            }
            _ => None,
        }
    }

    /// `(database_type, build_epoch)` from the file's metadata, for the startup log.
    pub fn metadata(&self) -> (&str, u64) {
        let m = self.reader.metadata();
        (&m.database_type, m.build_epoch)
    }
}

/// True for addresses that can appear as a client on the public internet.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_documentation()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0 // "this network"
        || (a == 100 && (b & 0xc0) == 64) // 100.64.0.0/10 shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // 192.0.0.0/24 IETF protocol assignments
        || (a == 198 && (b & 0xfe) == 18) // 198.18.0.0/15 benchmarking
        || a >= 240) // 240.0.0.0/4 reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // fc00::/7 unique local
        || (s[0] & 0xffc0) == 0xfe80 // fe80::/10 link-local
        || (s[0] & 0xffc0) == 0xfec0 // fec0::/10 deprecated site-local
        || (s[0] == 0x2001 && s[1] == 0x0db8) // 2001:db8::/32 documentation
        || (s[0] == 0x3fff && s[1] < 0x1000) // 3fff::/20 documentation (RFC 9637)
        || (s[0] == 0x0100 && s[1] == 0 && s[2] == 0 && s[3] == 0) // 100::/64 discard
        || s[0] == 0) // ::/16 other than mapped (handled by to_canonical): IPv4-compatible, reserved
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::LazyLock;

    static BUNDLED: LazyLock<GeoIp> = LazyLock::new(|| GeoIp::bundled().expect("bundled db loads"));

    fn cc(ip: &str) -> Option<String> {
        BUNDLED
            .country(ip.parse().unwrap())
            .map(|c| String::from_utf8(c.to_vec()).unwrap())
    }

    #[test]
    fn bundled_database_loads_with_flat_layout() {
        assert_eq!(BUNDLED.layout, Layout::Flat);
        let (t, epoch) = BUNDLED.metadata();
        assert!(!t.is_empty());
        // Built after 2024-01-01 and not in the future of this code.
        assert!(epoch > 1_704_067_200, "{epoch}");
    }

    #[test]
    fn well_known_public_addresses() {
        // Checked against the bundled file. Anycast addresses other than 8.8.8.8 are
        // avoided: DB-IP places e.g. 2001:4860:4860::8888 and 1.1.1.1 outside the US.
        // Google Public DNS, registered in the US.
        assert_eq!(cc("8.8.8.8").as_deref(), Some("US"));
        // Apple's 17.0.0.0/8.
        assert_eq!(cc("17.0.0.1").as_deref(), Some("US"));
        // Deutsche Telekom (AS3320): an IPv4 DSL pool and its IPv6 block 2003::/19.
        assert_eq!(cc("80.128.0.1").as_deref(), Some("DE"));
        assert_eq!(cc("2003::1").as_deref(), Some("DE"));
        // NTT's OCN (AS4713) and the University of Tokyo.
        assert_eq!(cc("153.156.0.1").as_deref(), Some("JP"));
        assert_eq!(cc("133.11.0.1").as_deref(), Some("JP"));
        // WIDE project, Japan's first IPv6 block.
        assert_eq!(cc("2001:200::1").as_deref(), Some("JP"));
        // Orange France (AS3215) IPv6.
        assert_eq!(cc("2a01:cb00::1").as_deref(), Some("FR"));
        // RIPE NCC in Amsterdam.
        assert_eq!(cc("193.0.6.139").as_deref(), Some("NL"));
        // An IPv4-mapped IPv6 address is the IPv4 address.
        assert_eq!(cc("::ffff:8.8.8.8").as_deref(), Some("US"));
        assert_eq!(cc("::ffff:80.128.0.1").as_deref(), Some("DE"));
    }

    #[test]
    fn non_public_addresses_have_no_country() {
        for ip in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.1.1",
            "0.0.0.0",
            "100.64.0.1",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "198.18.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "2001:db8::1",
            "ff02::1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
        ] {
            assert_eq!(cc(ip), None, "{ip}");
        }
    }

    #[test]
    fn garbage_is_refused() {
        assert!(matches!(
            GeoIp::from_bytes(vec![]),
            Err(GeoError::Invalid(_))
        ));
        assert!(matches!(
            GeoIp::from_bytes(b"not a database at all".to_vec()),
            Err(GeoError::Invalid(_))
        ));
        assert!(matches!(
            GeoIp::from_bytes(vec![0xab; 4096]),
            Err(GeoError::Invalid(_))
        ));
        // A truncated copy of the real file has lost its metadata section.
        let truncated = BUNDLED_GEOIP[..BUNDLED_GEOIP.len() / 2].to_vec();
        assert!(GeoIp::from_bytes(truncated).is_err());
    }

    #[test]
    fn error_message_names_the_problem() {
        let e = GeoIp::from_bytes(b"hello".to_vec())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("not a readable MaxMind DB"), "{e}");
    }

    // A minimal hand-built mmdb: IPv4, one node whose both halves point at `data`
    // (or at "no data"), then the metadata map.
    fn tiny_mmdb(data: Option<Vec<u8>>) -> Vec<u8> {
        fn s(x: &str) -> Vec<u8> {
            assert!(x.len() < 29);
            let mut v = vec![0x40 | x.len() as u8];
            v.extend(x.as_bytes());
            v
        }
        fn map(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
            let mut v = vec![0xe0 | entries.len() as u8];
            for (k, val) in entries {
                v.extend(s(k));
                v.extend(val);
            }
            v
        }
        let node_count = 1u32;
        let record = if data.is_some() {
            node_count + 16
        } else {
            node_count
        };
        let mut out = Vec::new();
        for _ in 0..2 {
            out.extend(&record.to_be_bytes()[1..]); // 24-bit records
        }
        out.extend([0u8; 16]);
        if let Some(d) = data {
            out.extend(d);
        }
        out.extend(b"\xab\xcd\xefMaxMind.com");
        out.extend(map(&[
            ("binary_format_major_version", vec![0xa1, 2]),
            ("binary_format_minor_version", vec![0xa0]),
            ("build_epoch", vec![0x04, 0x02, 0x65, 0x92, 0x00, 0x80]), // uint64
            ("database_type", s("Test-Country")),
            ("description", vec![0xe0]),
            ("ip_version", vec![0xa1, 4]),
            ("languages", vec![0x00, 0x04]), // empty array
            ("node_count", vec![0xc1, 1]),
            ("record_size", vec![0xa1, 24]),
        ]));
        out
    }

    fn record(key: &str, value: &str) -> Vec<u8> {
        let mut v = vec![0xe1, 0x40 | key.len() as u8];
        v.extend(key.as_bytes());
        v.push(0x40 | value.len() as u8);
        v.extend(value.as_bytes());
        v
    }

    #[test]
    fn database_without_country_field_is_refused() {
        let e = GeoIp::from_bytes(tiny_mmdb(Some(record("asn", "64500")))).unwrap_err();
        assert!(
            matches!(e, GeoError::NoCountryField { ref database_type } if database_type == "Test-Country"),
            "{e}"
        );
        assert!(e.to_string().contains("country_code"), "{e}");
    }

    #[test]
    fn database_without_records_is_refused() {
        let e = GeoIp::from_bytes(tiny_mmdb(None)).unwrap_err();
        assert!(matches!(e, GeoError::Empty { .. }), "{e}");
    }

    #[test]
    fn hand_built_database_answers_and_normalises_case() {
        let g = GeoIp::from_bytes(tiny_mmdb(Some(record("country_code", "se")))).unwrap();
        assert_eq!(g.metadata(), ("Test-Country", 0x6592_0080));
        assert_eq!(g.country("8.8.4.4".parse().unwrap()), Some(*b"SE"));
        assert_eq!(g.country("10.1.1.1".parse().unwrap()), None);
        // An IPv6 address in an IPv4-only database is unknown, not an error.
        assert_eq!(g.country("2a01:cb00::1".parse().unwrap()), None);
        let zz = GeoIp::from_bytes(tiny_mmdb(Some(record("country_code", "ZZ")))).unwrap();
        assert_eq!(zz.country("8.8.4.4".parse().unwrap()), None);
        let long = GeoIp::from_bytes(tiny_mmdb(Some(record("country_code", "USA")))).unwrap();
        assert_eq!(long.country("8.8.4.4".parse().unwrap()), None);
    }
}
