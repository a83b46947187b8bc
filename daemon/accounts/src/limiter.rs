//! Sign-in limits: growing delays per account, per address, and per both.
//!
//! Every failed sign-in (a wrong password, an unknown name, a wrong second
//! factor) counts against three keys: the pair (account, address), the
//! address alone and the account alone. Each key has a number of free
//! failures; past it, the next attempt must wait `BASE × 2^(excess)`,
//! capped at [`Limits::max_delay`], counted from the last failure. A key
//! forgets its failures after [`Limits::forget`] without one.
//!
//! The pair's limit is the tight one (5 free): it stops one address
//! guessing one account's password. The address's limit (20) stops one
//! address trying many accounts. The account's limit is loose (100) and
//! only slows a guess spread over many addresses: it never locks an
//! account for good (the delay is capped), and a burst from one address
//! does not reach it, so the real user, from their own address, still
//! signs in while the attacker waits.
//!
//! Addresses are keyed by their /64 for IPv6 (one host usually holds a
//! whole /64). The state lives in memory: a restart forgets it, which at
//! worst gives an attacker one more round of free attempts.

use std::collections::HashMap;
use std::net::IpAddr;

/// The limits (see the module doc).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub pair_free: u32,
    pub address_free: u32,
    pub account_free: u32,
    /// Milliseconds of the first delay.
    pub base_ms: u64,
    /// Milliseconds of the longest delay.
    pub max_delay_ms: u64,
    /// Milliseconds without a failure after which a key starts over.
    pub forget_ms: u64,
    /// Keys tracked per kind; beyond it the stalest are dropped.
    pub max_keys: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            pair_free: 5,
            address_free: 20,
            account_free: 100,
            base_ms: 1_000,
            max_delay_ms: 15 * 60 * 1_000,
            forget_ms: 60 * 60 * 1_000,
            max_keys: 100_000,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Counter {
    failures: u32,
    last_ms: u64,
}

/// Where a request comes from, as the limiter keys it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddressKey(u128);

impl From<IpAddr> for AddressKey {
    fn from(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => AddressKey(u128::from(u32::from(v4))),
            IpAddr::V6(v6) => AddressKey(u128::from(v6) & !((1u128 << 64) - 1) | 1 << 127),
        }
    }
}

/// The failure counts (see the module doc).
#[derive(Debug, Default)]
pub struct Limiter {
    limits: Limits,
    pair: HashMap<(String, AddressKey), Counter>,
    address: HashMap<AddressKey, Counter>,
    account: HashMap<String, Counter>,
}

impl Limiter {
    pub fn new(limits: Limits) -> Limiter {
        Limiter {
            limits,
            ..Limiter::default()
        }
    }

    /// Milliseconds to wait before `account` may be tried from `addr`, or
    /// `None` when it may be tried now.
    pub fn wait_ms(&self, account: &str, addr: AddressKey, now_ms: u64) -> Option<u64> {
        let l = &self.limits;
        let account = account.to_lowercase();
        [
            (self.pair.get(&(account.clone(), addr)), l.pair_free),
            (self.address.get(&addr), l.address_free),
            (self.account.get(&account), l.account_free),
        ]
        .into_iter()
        .filter_map(|(c, free)| self.wait_of(c?, free, now_ms))
        .max()
    }

    fn wait_of(&self, c: &Counter, free: u32, now_ms: u64) -> Option<u64> {
        let l = &self.limits;
        if now_ms.saturating_sub(c.last_ms) >= l.forget_ms || c.failures < free {
            return None;
        }
        let excess = (c.failures - free).min(32);
        let delay = l.base_ms.saturating_mul(1u64 << excess).min(l.max_delay_ms);
        let ready = c.last_ms.saturating_add(delay);
        (now_ms < ready).then(|| ready - now_ms)
    }

    /// Counts a failed attempt.
    pub fn failed(&mut self, account: &str, addr: AddressKey, now_ms: u64) {
        let account = account.to_lowercase();
        let (forget, max) = (self.limits.forget_ms, self.limits.max_keys);
        bump(&mut self.pair, (account.clone(), addr), now_ms, forget, max);
        bump(&mut self.address, addr, now_ms, forget, max);
        bump(&mut self.account, account, now_ms, forget, max);
    }

    /// A good sign-in clears the pair's failures (not the address's or the
    /// account's: one good account must not reset a guesser's count).
    pub fn succeeded(&mut self, account: &str, addr: AddressKey) {
        self.pair.remove(&(account.to_lowercase(), addr));
    }
}

fn bump<K: std::hash::Hash + Eq + Clone>(
    map: &mut HashMap<K, Counter>,
    key: K,
    now_ms: u64,
    forget_ms: u64,
    max_keys: usize,
) {
    if map.len() >= max_keys && !map.contains_key(&key) {
        map.retain(|_, c| now_ms.saturating_sub(c.last_ms) < forget_ms);
        if map.len() >= max_keys
            && let Some(stalest) = map
                .iter()
                .min_by_key(|(_, c)| c.last_ms)
                .map(|(k, _)| k.clone())
        {
            map.remove(&stalest);
        }
    }
    let c = map.entry(key).or_insert(Counter {
        failures: 0,
        last_ms: now_ms,
    });
    if now_ms.saturating_sub(c.last_ms) >= forget_ms {
        c.failures = 0;
    }
    c.failures = c.failures.saturating_add(1);
    c.last_ms = now_ms;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> AddressKey {
        s.parse::<IpAddr>().unwrap().into()
    }

    #[test]
    fn a_burst_from_one_address_waits_but_the_owner_elsewhere_does_not() {
        let mut l = Limiter::new(Limits::default());
        let (a, b) = (addr("192.0.2.1"), addr("192.0.2.2"));
        let mut t = 1_000_000;
        for _ in 0..5 {
            assert_eq!(l.wait_ms("alice", a, t), None);
            l.failed("alice", a, t);
            t += 10;
        }
        // Sixth try: 1 s after the fifth failure, then doubling.
        assert_eq!(l.wait_ms("Alice", a, t), Some(990));
        l.failed("alice", a, t + 1_000);
        assert_eq!(l.wait_ms("alice", a, t + 1_000), Some(2_000));
        // Another address is not held back by this burst.
        assert_eq!(l.wait_ms("alice", b, t + 1_000), None);
        // The delay is capped and forgotten after an hour.
        for i in 0..40 {
            l.failed("alice", a, t + 2_000 + i);
        }
        let w = l.wait_ms("alice", a, t + 2_040).unwrap();
        assert!(w <= 15 * 60 * 1_000 && w > 14 * 60 * 1_000, "{w}");
        assert_eq!(l.wait_ms("alice", a, t + 2_040 + 3_600_000), None);
    }

    #[test]
    fn one_address_trying_many_accounts_is_slowed() {
        let mut l = Limiter::new(Limits::default());
        let a = addr("2001:db8::1");
        for i in 0..20 {
            l.failed(&format!("user{i}"), a, 1_000);
        }
        assert!(l.wait_ms("someone-new", a, 1_000).is_some());
        // The same /64 is the same address.
        assert!(
            l.wait_ms("someone-new", addr("2001:db8::ffff"), 1_000)
                .is_some()
        );
        assert_eq!(l.wait_ms("someone-new", addr("2001:db9::1"), 1_000), None);
    }

    #[test]
    fn success_clears_the_pair_only() {
        let mut l = Limiter::new(Limits::default());
        let a = addr("192.0.2.9");
        for _ in 0..6 {
            l.failed("bob", a, 5_000);
        }
        assert!(l.wait_ms("bob", a, 5_000).is_some());
        l.succeeded("bob", a);
        assert_eq!(l.wait_ms("bob", a, 5_000), None);
    }

    #[test]
    fn the_number_of_keys_is_bounded() {
        let mut l = Limiter::new(Limits {
            max_keys: 10,
            ..Limits::default()
        });
        for i in 0..100u32 {
            l.failed(&format!("u{i}"), AddressKey(u128::from(i)), u64::from(i));
        }
        assert!(l.pair.len() <= 10 && l.address.len() <= 10 && l.account.len() <= 10);
    }
}
