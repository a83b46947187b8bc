//! Passwords: argon2id with OWASP's parameters.
//!
//! OWASP's password storage cheat sheet gives, for argon2id, 19 MiB of
//! memory, 2 passes and 1 lane as its first configuration; [`PARAMS`] is
//! that. A check costs about that memory and tens to hundreds of
//! milliseconds of one core, so callers run checks off the async runtime
//! and bound how many run at once. A password is stored as its PHC string
//! (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`), which carries its own
//! parameters: stronger ones later still verify old hashes.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// Memory in KiB, passes, lanes.
pub const PARAMS: (u32, u32, u32) = (19 * 1024, 2, 1);

/// The shortest password accepted.
pub const MIN_LEN: usize = 10;
/// The longest password accepted, in bytes (a bound on hashing work and
/// request size; passphrases fit easily).
pub const MAX_LEN: usize = 1024;

fn hasher() -> Argon2<'static> {
    let (m, t, p) = PARAMS;
    Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new(m, t, p, None).expect("OWASP's argon2id parameters are valid"),
    )
}

/// Why a new password is refused.
pub fn check_new(password: &str) -> Result<(), String> {
    let chars = password.chars().count();
    if chars < MIN_LEN {
        return Err(format!(
            "a password needs at least {MIN_LEN} characters (this one has {chars})"
        ));
    }
    if password.len() > MAX_LEN {
        return Err(format!("a password may have at most {MAX_LEN} bytes"));
    }
    Ok(())
}

/// The PHC string of `password` with a fresh random salt.
pub fn hash(password: &str) -> String {
    let salt = SaltString::encode_b64(&crate::secret::random_bytes::<16>())
        .expect("16 bytes make a valid salt");
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .expect("hashing with valid parameters cannot fail")
        .to_string()
}

/// Whether `password` matches the PHC string `phc`. A malformed `phc`
/// never matches.
pub fn verify(password: &str, phc: &str) -> bool {
    if password.len() > MAX_LEN {
        return false;
    }
    match PasswordHash::new(phc) {
        Ok(parsed) => hasher()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let phc = hash("correct horse battery");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify("correct horse battery", &phc));
        assert!(!verify("correct horse batterY", &phc));
        assert!(!verify("correct horse battery", "not a phc string"));
        assert_ne!(phc, hash("correct horse battery"), "salted");
    }

    #[test]
    fn new_passwords_have_bounds() {
        assert!(check_new("short").unwrap_err().contains("10 characters"));
        assert!(check_new("ten chars!").is_ok());
        assert!(check_new(&"x".repeat(MAX_LEN + 1)).is_err());
    }
}
