//! Time-based one-time passwords (RFC 6238): HMAC-SHA1, 6 digits, 30 s
//! steps, one step of clock skew either way, as every authenticator app
//! expects.
//!
//! A code is accepted once: [`check`] returns the time step it matched,
//! the caller stores it, and a later code for the same or an earlier step
//! is refused (RFC 6238 section 5.2).

use totp_rs::{Algorithm, Builder, Secret, Totp};

/// Digits of a code.
pub const DIGITS: u8 = 6;
/// Seconds per step.
pub const STEP: u64 = 30;

/// Why a code was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not the code of the current step (or one step either side).
    Wrong,
    /// The code of a step already used.
    Replayed,
}

/// A new secret: 20 random bytes (RFC 4226 recommends 160 bits), base32.
pub fn new_secret() -> String {
    Secret::from(crate::secret::random_bytes::<20>().to_vec()).to_base32()
}

fn totp(secret_b32: &str, digits: u8) -> Option<Totp> {
    let secret = Secret::try_from_base32(secret_b32).ok()?;
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(digits)
        .with_step_duration(STEP)
        .with_skew(1)
        .with_secret(secret)
        .build()
        .ok()
}

/// The `otpauth://` URI an authenticator app takes (typed in, or read from
/// a QR code the page draws).
pub fn otpauth_uri(secret_b32: &str, account: &str, issuer: &str) -> Option<String> {
    let secret = Secret::try_from_base32(secret_b32).ok()?;
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(DIGITS)
        .with_step_duration(STEP)
        .with_secret(secret)
        .with_account_name(account.replace(':', "_"))
        .with_issuer(Some(issuer.replace(':', "_")))
        .build()
        .ok()?
        .to_url()
        .ok()
}

/// Checks `code` against `secret_b32` at unix time `now`. `last_step` is the
/// step of the last code accepted for this secret. Returns the matched step.
pub fn check(
    secret_b32: &str,
    code: &str,
    now: u64,
    last_step: Option<u64>,
) -> Result<u64, Refusal> {
    check_digits(secret_b32, DIGITS, code, now, last_step)
}

fn check_digits(
    secret_b32: &str,
    digits: u8,
    code: &str,
    now: u64,
    last_step: Option<u64>,
) -> Result<u64, Refusal> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != usize::from(digits) || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Refusal::Wrong);
    }
    let totp = totp(secret_b32, digits).ok_or(Refusal::Wrong)?;
    let step = totp.check(&code, now).ok_or(Refusal::Wrong)?;
    match last_step {
        Some(last) if step <= last => Err(Refusal::Replayed),
        _ => Ok(step),
    }
}

/// The code of `secret_b32` at unix time `now` (for tests and the CLI's
/// self-check).
pub fn code_at(secret_b32: &str, now: u64) -> Option<String> {
    Some(totp(secret_b32, DIGITS)?.generate(now).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 rows: the ASCII secret "12345678901234567890".
    #[test]
    fn rfc_6238_sha1_vectors() {
        let secret = Secret::from(b"12345678901234567890".to_vec()).to_base32();
        for (time, code) in [
            (59u64, "94287082"),
            (1111111109, "07081804"),
            (1111111111, "14050471"),
            (1234567890, "89005924"),
            (2000000000, "69279037"),
            (20000000000, "65353130"),
        ] {
            let step = check_digits(&secret, 8, code, time, None).expect(code);
            assert_eq!(step, time / STEP, "{code}");
            // The 6-digit code is the last 6 digits of the 8-digit one.
            assert_eq!(check(&secret, &code[2..], time, None), Ok(time / STEP));
        }
    }

    #[test]
    fn a_step_is_accepted_once_and_neighbours_are_tolerated() {
        let secret = new_secret();
        let now = 1_800_000_000;
        let code = code_at(&secret, now).unwrap();
        let step = check(&secret, &code, now, None).unwrap();
        assert_eq!(
            check(&secret, &code, now, Some(step)),
            Err(Refusal::Replayed)
        );
        // One step of skew either way, not two.
        assert!(check(&secret, &code, now + STEP, None).is_ok());
        assert_eq!(
            check(&secret, &code, now + 3 * STEP, None),
            Err(Refusal::Wrong)
        );
        // An older code after a newer one was used is a replay too.
        let next = code_at(&secret, now + STEP).unwrap();
        let later = check(&secret, &next, now + STEP, Some(step)).unwrap();
        assert_eq!(
            check(&secret, &code, now + STEP, Some(later)),
            Err(Refusal::Replayed)
        );
    }

    #[test]
    fn malformed_codes_are_wrong() {
        let secret = new_secret();
        for bad in ["", "12345", "1234567", "12a456", "１２３４５６"] {
            assert_eq!(
                check(&secret, bad, 1_800_000_000, None),
                Err(Refusal::Wrong),
                "{bad}"
            );
        }
        assert_eq!(check("not base32!", "123456", 0, None), Err(Refusal::Wrong));
    }

    #[test]
    fn the_uri_names_issuer_and_account() {
        let uri = otpauth_uri(&new_secret(), "alice", "hitvault").unwrap();
        assert!(uri.starts_with("otpauth://totp/hitvault:alice?"), "{uri}");
        assert!(
            uri.contains("secret=") && uri.contains("issuer=hitvault"),
            "{uri}"
        );
    }
}
