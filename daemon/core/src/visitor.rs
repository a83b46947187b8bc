//! The cookieless visitor id: a keyed hash of (daily salt, site, client IP, User-Agent).
//!
//! This module owns the hash and its input framing, and the UTC day number callers
//! use to decide when to rotate the salt. It never creates, stores or rotates a salt
//! itself (the caller draws random bytes and forgets them after 48 h), and it never
//! keeps the IP address: the address goes into the hash and nowhere else.

use siphasher::sip::SipHasher24;
use std::fmt;
use std::hash::Hasher;
use std::net::IpAddr;

/// A secret 128-bit salt, the SipHash key of [`visitor_id`].
///
/// `Debug` prints `Salt(..)`: the bytes never reach a log line by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Salt(pub [u8; 16]);

impl fmt::Debug for Salt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Salt(..)")
    }
}

/// Milliseconds in a UTC day (no leap seconds in Unix time).
const DAY_MS: i64 = 86_400_000;

/// The UTC day number of a Unix-millisecond timestamp: day 0 is 1970-01-01.
///
/// Floors towards minus infinity, so times before 1970 get negative days and
/// `day_index(-1) == -1`.
pub fn day_index(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(DAY_MS)
}

/// The visitor id of one (site, IP, User-Agent) under one salt.
///
/// SipHash-2-4 keyed with the salt, over an unambiguous encoding of the inputs:
/// `len(site) as u64 LE ‖ site ‖ 4 ‖ octets` (or `6 ‖ 16 octets`) `‖ len(ua) as u64 LE ‖ ua`.
/// The length prefixes make `("ab", "c")` and `("a", "bc")` different inputs.
/// An IPv4-mapped IPv6 address (`::ffff:1.2.3.4`) is the same visitor as `1.2.3.4`.
pub fn visitor_id(salt: &Salt, site: &str, ip: IpAddr, user_agent: &str) -> u64 {
    let mut h = SipHasher24::new_with_key(&salt.0);
    h.write(&(site.len() as u64).to_le_bytes());
    h.write(site.as_bytes());
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            h.write(&[4]);
            h.write(&v4.octets());
        }
        IpAddr::V6(v6) => {
            h.write(&[6]);
            h.write(&v6.octets());
        }
    }
    h.write(&(user_agent.len() as u64).to_le_bytes());
    h.write(user_agent.as_bytes());
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn same_inputs_same_id() {
        let salt = Salt([7; 16]);
        let a = visitor_id(&salt, "example.com", ip("81.2.69.160"), UA);
        let b = visitor_id(&salt.clone(), "example.com", ip("81.2.69.160"), UA);
        assert_eq!(a, b);
    }

    #[test]
    fn each_input_changes_the_id() {
        let salt = Salt([7; 16]);
        let base = visitor_id(&salt, "example.com", ip("81.2.69.160"), UA);
        let mut other_salt = [7; 16];
        other_salt[15] = 8;
        assert_ne!(
            base,
            visitor_id(&Salt(other_salt), "example.com", ip("81.2.69.160"), UA)
        );
        assert_ne!(
            base,
            visitor_id(&salt, "example.org", ip("81.2.69.160"), UA)
        );
        assert_ne!(
            base,
            visitor_id(&salt, "example.com", ip("81.2.69.161"), UA)
        );
        assert_ne!(
            base,
            visitor_id(&salt, "example.com", ip("81.2.69.160"), "curl/8.5.0")
        );
    }

    #[test]
    fn framing_is_unambiguous() {
        let salt = Salt([1; 16]);
        let a = visitor_id(&salt, "ab", ip("1.2.3.4"), "c");
        let b = visitor_id(&salt, "a", ip("1.2.3.4"), "bc");
        assert_ne!(a, b);
        // An IPv4 address and an IPv6 address whose first bytes match are different.
        let v4 = visitor_id(&salt, "s", ip("1.2.3.4"), "");
        let v6 = visitor_id(&salt, "s", ip("102:304::"), "");
        assert_ne!(v4, v6);
    }

    #[test]
    fn ipv4_mapped_ipv6_is_the_same_visitor() {
        let salt = Salt([3; 16]);
        let v4 = visitor_id(&salt, "example.com", ip("81.2.69.160"), UA);
        let mapped = visitor_id(&salt, "example.com", ip("::ffff:81.2.69.160"), UA);
        assert_eq!(v4, mapped);
        // A real IPv6 address is not folded onto anything.
        let v6 = visitor_id(&salt, "example.com", ip("2001:db8::1"), UA);
        assert_ne!(v4, v6);
    }

    #[test]
    fn debug_hides_the_salt() {
        let s = format!("{:?}", Salt([0xab; 16]));
        assert_eq!(s, "Salt(..)");
        assert!(!s.contains("171") && !s.to_lowercase().contains("ab,"));
    }

    #[test]
    fn day_index_is_utc_floor() {
        assert_eq!(day_index(0), 0);
        assert_eq!(day_index(DAY_MS - 1), 0);
        assert_eq!(day_index(DAY_MS), 1);
        assert_eq!(day_index(-1), -1);
        // 2023-11-14T22:13:20Z is day 19675 (1_700_000_000 s / 86_400).
        assert_eq!(day_index(1_700_000_000_000), 19_675);
        // 2024-01-01T00:00:00Z = 1_704_067_200 s is exactly day 19723.
        assert_eq!(day_index(1_704_067_200_000), 19_723);
        assert_eq!(day_index(1_704_067_200_000 - 1), 19_722);
    }
}
