//! The ceremonies end to end, with an authenticator written for these
//! tests (webauthn-authenticator-rs's soft tokens make no resident key and
//! answer no discoverable request). It builds the authenticator data,
//! `none` attestation and ES256 signatures the way the WebAuthn spec says;
//! the browser tests (tests/tests/passkeys.rs) do the same with Chromium's.

use std::collections::BTreeMap;
use std::path::Path;

use crypto_glue::ecdsa_p256::{
    self, EcdsaP256PrivateKey, EcdsaP256PublicSec1Point, EcdsaP256Signature, EcdsaP256SigningKey,
};
use crypto_glue::traits::Signer;
use serde_cbor_2::Value as Cbor;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use webauthn_rs_core::proto::{CreationChallengeResponse, RequestChallengeResponse};

use super::*;
use crate::{Limits, Policy};

const T0: u64 = 1_900_000_000;
const ORIGIN: &str = "https://hitvault.test:8443";

fn addr(s: &str) -> AddressKey {
    s.parse::<std::net::IpAddr>().unwrap().into()
}

fn hostnames() -> Vec<String> {
    vec!["hitvault.test".into()]
}

/// Accounts with the admin `alice` (a password, no passkey yet).
fn accounts(dir: &Path, require_second_factor: bool) -> (Accounts, UserId) {
    let policy = Policy {
        require_second_factor,
        ..Policy::default()
    };
    let a = Accounts::open(dir, policy, Limits::default(), T0).unwrap();
    let link = a.setup_link(T0).unwrap().unwrap();
    let s = a
        .accept_invite(&link, Some("alice"), Some("correct horse battery"), "t", T0)
        .unwrap();
    (a, s.user)
}

struct Key {
    id: Vec<u8>,
    key: EcdsaP256PrivateKey,
    user_handle: Vec<u8>,
    counter: u32,
}

/// A CTAP2-like authenticator with resident keys.
struct Authenticator {
    keys: Vec<Key>,
    /// Whether it verifies its user (a PIN or a fingerprint).
    uv: bool,
    /// Whether it says it kept the key (credProps.rk).
    rk: bool,
    /// The id the next credential gets, instead of a random one.
    fixed_id: Option<Vec<u8>>,
}

fn b64(bytes: &[u8]) -> String {
    crate::secret::b64url(bytes)
}

fn sha256(b: &[u8]) -> Vec<u8> {
    Sha256::digest(b).to_vec()
}

impl Authenticator {
    fn new() -> Authenticator {
        Authenticator {
            keys: Vec::new(),
            uv: true,
            rk: true,
            fixed_id: None,
        }
    }

    fn flags(&self, attested: bool) -> u8 {
        1 | if self.uv { 4 } else { 0 } | if attested { 0x40 } else { 0 }
    }

    fn client_data(kind: &str, challenge: &[u8], origin: &str) -> Vec<u8> {
        json!({"type": kind, "challenge": b64(challenge), "origin": origin, "crossOrigin": false})
            .to_string()
            .into_bytes()
    }

    /// `navigator.credentials.create()`.
    fn create(&mut self, options: &Value, origin: &str) -> Value {
        let o: CreationChallengeResponse = serde_json::from_value(options.clone()).unwrap();
        let o = o.public_key;
        for ex in o.exclude_credentials.iter().flatten() {
            assert!(
                !self.keys.iter().any(|k| k.id == ex.id.as_slice()),
                "excluded credential offered"
            );
        }
        let key = ecdsa_p256::new_key();
        let point = EcdsaP256PublicSec1Point::from(key.public_key());
        let mut cose = BTreeMap::new();
        cose.insert(Cbor::Integer(1), Cbor::Integer(2));
        cose.insert(Cbor::Integer(3), Cbor::Integer(-7));
        cose.insert(Cbor::Integer(-1), Cbor::Integer(1));
        cose.insert(Cbor::Integer(-2), Cbor::Bytes(point.x().unwrap().to_vec()));
        cose.insert(Cbor::Integer(-3), Cbor::Bytes(point.y().unwrap().to_vec()));
        let cose = serde_cbor_2::to_vec(&Cbor::Map(cose)).unwrap();
        let id = self
            .fixed_id
            .take()
            .unwrap_or_else(|| crate::secret::random_bytes::<16>().to_vec());
        let mut auth_data = sha256(o.rp.id.as_bytes());
        auth_data.push(self.flags(true));
        auth_data.extend([0, 0, 0, 0]);
        auth_data.extend([0u8; 16]);
        auth_data.extend((id.len() as u16).to_be_bytes());
        auth_data.extend(&id);
        auth_data.extend(cose);
        let mut att = BTreeMap::new();
        att.insert(Cbor::Text("fmt".into()), Cbor::Text("none".into()));
        att.insert(Cbor::Text("attStmt".into()), Cbor::Map(BTreeMap::new()));
        att.insert(Cbor::Text("authData".into()), Cbor::Bytes(auth_data));
        let att = serde_cbor_2::to_vec(&Cbor::Map(att)).unwrap();
        let cdj = Self::client_data("webauthn.create", o.challenge.as_slice(), origin);
        self.keys.push(Key {
            id: id.clone(),
            key,
            user_handle: o.user.id.clone(),
            counter: 0,
        });
        json!({
            "id": b64(&id), "rawId": b64(&id), "type": "public-key",
            "response": {"attestationObject": b64(&att), "clientDataJSON": b64(&cdj)},
            "clientExtensionResults": {"credProps": {"rk": self.rk}},
        })
    }

    /// `navigator.credentials.get()` with the key at `which`.
    fn get_with(&mut self, which: usize, options: &Value, origin: &str) -> Value {
        let o: RequestChallengeResponse = serde_json::from_value(options.clone()).unwrap();
        let o = o.public_key;
        assert!(o.allow_credentials.is_empty(), "a discoverable request");
        let flags = self.flags(false);
        let k = &mut self.keys[which];
        k.counter += 1;
        let mut auth_data = sha256(o.rp_id.as_bytes());
        auth_data.push(flags);
        auth_data.extend(k.counter.to_be_bytes());
        let cdj = Self::client_data("webauthn.get", o.challenge.as_slice(), origin);
        let mut signed = auth_data.clone();
        signed.extend(sha256(&cdj));
        let sig: EcdsaP256Signature = EcdsaP256SigningKey::from(&k.key).try_sign(&signed).unwrap();
        json!({
            "id": b64(&k.id), "rawId": b64(&k.id), "type": "public-key",
            "response": {
                "authenticatorData": b64(&auth_data), "clientDataJSON": b64(&cdj),
                "signature": b64(&sig.to_der().to_bytes()), "userHandle": b64(&k.user_handle),
            },
            "clientExtensionResults": {},
        })
    }

    fn get(&mut self, options: &Value, origin: &str) -> Value {
        self.get_with(0, options, origin)
    }
}

/// Registers a passkey of `auth` for `user`.
fn register(p: &Passkeys, a: &Accounts, user: UserId, auth: &mut Authenticator) -> String {
    let s = p.start_registration(a, user, T0).unwrap();
    let answer = auth.create(&s.options, ORIGIN);
    p.finish_registration(a, user, &s.ceremony, &answer, "laptop", T0)
        .unwrap()
}

fn sign_in(
    p: &Passkeys,
    a: &Accounts,
    auth: &mut Authenticator,
    from: &str,
) -> Result<NewSession, PasskeyError> {
    let s = p.start_sign_in(a, addr(from), T0).unwrap();
    let answer = auth.get(&s.options, ORIGIN);
    p.finish_sign_in(a, &s.ceremony, &answer, addr(from), "t", T0 * 1000)
}

fn refused(r: Result<NewSession, PasskeyError>) -> String {
    match r {
        Err(PasskeyError::Refused(m)) => m,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_registered_passkey_signs_in_without_a_user_name() {
    let dir = tempfile::tempdir().unwrap();
    let (a, alice) = accounts(dir.path(), false);
    let p = Passkeys::new(&hostnames()).unwrap();
    let mut auth = Authenticator::new();

    let s = p.start_registration(&a, alice, T0).unwrap();
    let sel = &s.options["publicKey"]["authenticatorSelection"];
    assert_eq!(sel["residentKey"], "required");
    assert_eq!(sel["requireResidentKey"], true);
    assert_eq!(sel["userVerification"], "preferred");
    assert_eq!(s.options["publicKey"]["rp"]["id"], "hitvault.test");
    let answer = auth.create(&s.options, ORIGIN);
    let id = p
        .finish_registration(&a, alice, &s.ceremony, &answer, "  ", T0)
        .unwrap();
    let (owner, pk) = a.passkey_owner(&id).unwrap();
    assert_eq!((owner.id, pk.name.as_str()), (alice, DEFAULT_NAME));

    let s = p.start_sign_in(&a, addr("192.0.2.1"), T0).unwrap();
    assert_eq!(s.options["publicKey"]["userVerification"], "preferred");
    assert_eq!(s.options["publicKey"]["rpId"], "hitvault.test");
    let answer = auth.get(&s.options, "https://hitvault.test:9999");
    let session = p
        .finish_sign_in(&a, &s.ceremony, &answer, addr("192.0.2.1"), "t", T0 * 1000)
        .unwrap();
    assert_eq!(session.user, alice);
    let view = a.session(&session.token, T0).unwrap();
    assert_eq!(view.user.id, alice);
    assert_eq!(
        a.sessions_of(alice)
            .iter()
            .filter(|s| s.method == METHOD)
            .count(),
        1
    );
    let (_, pk) = a.passkey_owner(&id).unwrap();
    assert_eq!(pk.passkey["cred"]["counter"], 1);
    assert_eq!(pk.last_used, Some(T0));

    // The passkey is kept in the journal in a form that signs in again.
    drop(a);
    let a = Accounts::open(dir.path(), Policy::default(), Limits::default(), T0).unwrap();
    sign_in(&p, &a, &mut auth, "192.0.2.1").unwrap();
    let (_, pk) = a.passkey_owner(&id).unwrap();
    assert_eq!(pk.passkey["cred"]["counter"], 2);
}

#[test]
fn a_second_registration_excludes_the_users_passkeys() {
    let dir = tempfile::tempdir().unwrap();
    let (a, alice) = accounts(dir.path(), false);
    let p = Passkeys::new(&hostnames()).unwrap();
    let mut auth = Authenticator::new();
    let first = register(&p, &a, alice, &mut auth);
    let s = p.start_registration(&a, alice, T0).unwrap();
    let excluded: Vec<&str> = s.options["publicKey"]["excludeCredentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(excluded, [first.as_str()]);
    // Another authenticator registers a second passkey; both sign in.
    let mut phone = Authenticator::new();
    let answer = phone.create(&s.options, ORIGIN);
    p.finish_registration(&a, alice, &s.ceremony, &answer, "phone", T0)
        .unwrap();
    assert_eq!(a.user(alice).unwrap().passkeys.len(), 2);
    sign_in(&p, &a, &mut auth, "192.0.2.1").unwrap();
    sign_in(&p, &a, &mut phone, "192.0.2.1").unwrap();
}

#[test]
fn a_ceremony_is_used_once_and_expires() {
    let dir = tempfile::tempdir().unwrap();
    let (a, alice) = accounts(dir.path(), false);
    let p = Passkeys::new(&hostnames()).unwrap();
    let mut auth = Authenticator::new();

    // Registration: finishing twice, or late, or with another's token.
    let s = p.start_registration(&a, alice, T0).unwrap();
    let answer = auth.create(&s.options, ORIGIN);
    assert!(matches!(
        p.finish_registration(&a, alice, "not-the-token", &answer, "x", T0),
        Err(PasskeyError::Expired)
    ));
    p.finish_registration(&a, alice, &s.ceremony, &answer, "x", T0)
        .unwrap();
    assert!(matches!(
        p.finish_registration(&a, alice, &s.ceremony, &answer, "x", T0),
        Err(PasskeyError::Expired)
    ));
    let s = p.start_registration(&a, alice, T0).unwrap();
    let answer = Authenticator::new().create(&s.options, ORIGIN);
    assert!(matches!(
        p.finish_registration(&a, alice, &s.ceremony, &answer, "x", T0 + CEREMONY_SECS),
        Err(PasskeyError::Expired)
    ));

    // Sign-in: the same answer twice is refused (the ceremony is gone) ...
    let from = addr("192.0.2.1");
    let s = p.start_sign_in(&a, from, T0).unwrap();
    let answer = auth.get(&s.options, ORIGIN);
    p.finish_sign_in(&a, &s.ceremony, &answer, from, "t", T0 * 1000)
        .unwrap();
    assert!(matches!(
        p.finish_sign_in(&a, &s.ceremony, &answer, from, "t", T0 * 1000),
        Err(PasskeyError::Expired)
    ));
    // ... and so is that answer given to a new ceremony (another challenge).
    let s = p.start_sign_in(&a, from, T0).unwrap();
    let m = refused(p.finish_sign_in(&a, &s.ceremony, &answer, from, "t", T0 * 1000));
    assert!(m.contains("another sign-in request"), "{m}");
    // A ceremony finished after its time is gone.
    let s = p.start_sign_in(&a, from, T0).unwrap();
    let answer = auth.get(&s.options, ORIGIN);
    let late = (T0 + CEREMONY_SECS) * 1000;
    assert!(matches!(
        p.finish_sign_in(&a, &s.ceremony, &answer, from, "t", late),
        Err(PasskeyError::Expired)
    ));
    assert_eq!(p.in_progress(T0), (0, 0));
}

#[test]
fn a_counter_that_does_not_increase_is_refused_as_a_clone() {
    let dir = tempfile::tempdir().unwrap();
    let (a, alice) = accounts(dir.path(), false);
    let p = Passkeys::new(&hostnames()).unwrap();
    let mut auth = Authenticator::new();
    register(&p, &a, alice, &mut auth);
    sign_in(&p, &a, &mut auth, "192.0.2.1").unwrap();
    sign_in(&p, &a, &mut auth, "192.0.2.1").unwrap();
    // A copy of the key that has signed once only (counter 1 after 2).
    auth.keys[0].counter = 0;
    let m = refused(sign_in(&p, &a, &mut auth, "192.0.2.1"));
    assert!(m.contains("counter did not increase"), "{m}");
    // The stored counter did not go back.
    let id = b64(&auth.keys[0].id);
    assert_eq!(
        a.passkey_owner(&id).unwrap().1.passkey["cred"]["counter"],
        2
    );
}

#[test]
fn a_bad_signature_or_a_foreign_answer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (a, alice) = accounts(dir.path(), false);
    let p = Passkeys::new(&hostnames()).unwrap();
    let mut auth = Authenticator::new();
    register(&p, &a, alice, &mut auth);
    let from = addr("192.0.2.1");

    // A signature over other bytes.
    let s = p.start_sign_in(&a, from, T0).unwrap();
    let mut answer = auth.get(&s.options, ORIGIN);
    let other = auth.get(&s.options, ORIGIN);
    answer["response"]["signature"] = other["response"]["signature"].clone();
    let m = refused(p.finish_sign_in(&a, &s.ceremony, &answer, from, "t", T0 * 1000));
    assert!(m.contains("signature does not verify"), "{m}");
    // Garbage where the signature goes.
    let s = p.start_sign_in(&a, from, T0).unwrap();
    let mut answer = auth.get(&s.options, ORIGIN);
    answer["response"]["signature"] = json!(b64(b"not a signature"));
    let m = refused(p.finish_sign_in(&a, &s.ceremony, &answer, from, "t", T0 * 1000));
    assert!(m.contains("signature does not verify"), "{m}");
    // Another site's page.
    let s = p.start_sign_in(&a, from, T0).unwrap();
    let answer = auth.get(&s.options, "https://evil.test");
    let m = refused(p.finish_sign_in(&a, &s.ceremony, &answer, from, "t", T0 * 1000));
    assert!(m.contains("origin refused"), "{m}");
    // Plain http on the hostname is not a secure origin.
    let s = p.start_sign_in(&a, from, T0).unwrap();
    let answer = auth.get(&s.options, "http://hitvault.test");
    let m = refused(p.finish_sign_in(&a, &s.ceremony, &answer, from, "t", T0 * 1000));
    assert!(m.contains("origin refused"), "{m}");
    // A user handle that is not the owner's.
    let s = p.start_sign_in(&a, from, T0).unwrap();
    let mut answer = auth.get(&s.options, ORIGIN);
    answer["response"]["userHandle"] = json!(b64(&99u64.to_be_bytes()));
    let m = refused(p.finish_sign_in(&a, &s.ceremony, &answer, from, "t", T0 * 1000));
    assert!(m.contains("user handle"), "{m}");
    // A credential nobody registered.
    let mut stranger = Authenticator::new();
    let s = p.start_registration(&a, alice, T0).unwrap();
    stranger.create(&s.options, ORIGIN);
    let m = refused(sign_in(&p, &a, &mut stranger, "192.0.2.1"));
    assert!(m.contains("not registered here"), "{m}");
    // Not JSON of a credential at all.
    let s = p.start_sign_in(&a, from, T0).unwrap();
    let m = refused(p.finish_sign_in(&a, &s.ceremony, &json!({"id": 1}), from, "t", 0));
    assert!(m.contains("not a WebAuthn credential"), "{m}");
    // Those were failures: this address waits now; from another the real
    // passkey still signs in.
    assert!(matches!(
        sign_in(&p, &a, &mut auth, "192.0.2.1"),
        Err(PasskeyError::TooMany(_))
    ));
    sign_in(&p, &a, &mut auth, "198.51.100.7").unwrap();
}

#[test]
fn failures_count_in_the_sign_in_limiter() {
    let dir = tempfile::tempdir().unwrap();
    let (a, alice) = accounts(dir.path(), false);
    let p = Passkeys::new(&hostnames()).unwrap();
    let mut auth = Authenticator::new();
    register(&p, &a, alice, &mut auth);
    let from = addr("192.0.2.1");
    let bad = |auth: &mut Authenticator| {
        let s = p.start_sign_in(&a, from, T0).unwrap();
        let mut answer = auth.get(&s.options, ORIGIN);
        answer["response"]["signature"] = json!(b64(b"bad"));
        p.finish_sign_in(&a, &s.ceremony, &answer, from, "t", T0 * 1000)
    };
    for _ in 0..Limits::default().pair_free {
        refused(bad(&mut auth));
    }
    assert!(matches!(bad(&mut auth), Err(PasskeyError::TooMany(_))));
    // The real user, from another address, still signs in.
    sign_in(&p, &a, &mut auth, "198.51.100.7").unwrap();
}

#[test]
fn user_verification_is_preferred_and_kept_once_shown() {
    let dir = tempfile::tempdir().unwrap();
    let (a, alice) = accounts(dir.path(), false);
    let p = Passkeys::new(&hostnames()).unwrap();
    // A security key without a PIN: registers and signs in.
    let mut key = Authenticator::new();
    key.uv = false;
    register(&p, &a, alice, &mut key);
    sign_in(&p, &a, &mut key, "192.0.2.1").unwrap();
    // A passkey that verified its user at registration must keep doing so.
    let mut phone = Authenticator::new();
    register(&p, &a, alice, &mut phone);
    sign_in(&p, &a, &mut phone, "192.0.2.1").unwrap();
    phone.uv = false;
    let m = refused(sign_in(&p, &a, &mut phone, "192.0.2.1"));
    assert!(m.contains("did not verify you"), "{m}");
}

#[test]
fn user_verification_is_required_under_the_second_factor_policy() {
    let dir = tempfile::tempdir().unwrap();
    let (a, alice) = accounts(dir.path(), true);
    let p = Passkeys::new(&hostnames()).unwrap();
    let mut key = Authenticator::new();
    key.uv = false;
    let s = p.start_registration(&a, alice, T0).unwrap();
    assert_eq!(
        s.options["publicKey"]["authenticatorSelection"]["userVerification"],
        "required"
    );
    let answer = key.create(&s.options, ORIGIN);
    match p.finish_registration(&a, alice, &s.ceremony, &answer, "key", T0) {
        Err(PasskeyError::Refused(m)) => assert!(m.contains("requires user verification"), "{m}"),
        other => panic!("{other:?}"),
    }
    let mut auth = Authenticator::new();
    register(&p, &a, alice, &mut auth);
    let s = p.start_sign_in(&a, addr("192.0.2.1"), T0).unwrap();
    assert_eq!(s.options["publicKey"]["userVerification"], "required");
    auth.uv = false;
    let m = refused(sign_in(&p, &a, &mut auth, "192.0.2.1"));
    assert!(m.contains("did not verify you"), "{m}");
    auth.uv = true;
    let s = sign_in(&p, &a, &mut auth, "192.0.2.1").unwrap();
    assert!(!a.session(&s.token, T0).unwrap().must_enrol);
}

#[test]
fn a_passkey_that_is_not_kept_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (a, alice) = accounts(dir.path(), false);
    let p = Passkeys::new(&hostnames()).unwrap();
    let mut auth = Authenticator::new();
    auth.rk = false;
    let s = p.start_registration(&a, alice, T0).unwrap();
    let answer = auth.create(&s.options, ORIGIN);
    match p.finish_registration(&a, alice, &s.ceremony, &answer, "x", T0) {
        Err(PasskeyError::Refused(m)) => assert!(m.contains("not discoverable"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(a.user(alice).unwrap().passkeys.is_empty());
}

#[test]
fn a_passkey_belongs_to_one_account() {
    let dir = tempfile::tempdir().unwrap();
    let (a, alice) = accounts(dir.path(), false);
    let bob = a.add_user("bob", false, T0).unwrap();
    let p = Passkeys::new(&hostnames()).unwrap();
    let mut auth = Authenticator::new();
    let s = p.start_registration(&a, alice, T0).unwrap();
    let answer = auth.create(&s.options, ORIGIN);
    // Bob cannot finish Alice's ceremony, even with her token.
    assert!(matches!(
        p.finish_registration(&a, bob, &s.ceremony, &answer, "x", T0),
        Err(PasskeyError::Expired)
    ));
    p.finish_registration(&a, alice, &s.ceremony, &answer, "x", T0)
        .unwrap();
    // The same credential id registered for Bob is refused.
    let s = p.start_registration(&a, bob, T0).unwrap();
    auth.fixed_id = Some(auth.keys[0].id.clone());
    let answer = auth.create(&s.options, ORIGIN);
    match p.finish_registration(&a, bob, &s.ceremony, &answer, "x", T0) {
        Err(PasskeyError::Account(AccountError::Conflict(m))) => {
            assert!(m.contains("another account"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    assert!(a.user(bob).unwrap().passkeys.is_empty());
}

#[test]
fn sign_in_ceremonies_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let (a, alice) = accounts(dir.path(), false);
    let p = Passkeys::new(&hostnames()).unwrap();
    let one = addr("192.0.2.1");
    let first = p.start_sign_in(&a, one, T0).unwrap();
    for _ in 0..MAX_SIGN_INS_PER_ADDRESS {
        p.start_sign_in(&a, one, T0 + 1).unwrap();
    }
    assert_eq!(p.in_progress(T0 + 1).1, MAX_SIGN_INS_PER_ADDRESS);
    // The address's oldest gave way.
    let mut auth = Authenticator::new();
    let answer = auth_answer(&mut auth, &p, &a, alice, &first.options);
    assert!(matches!(
        p.finish_sign_in(&a, &first.ceremony, &answer, one, "t", T0 * 1000),
        Err(PasskeyError::Expired)
    ));
    // Many addresses fill the whole table; then a new one waits.
    let mut n = MAX_SIGN_INS_PER_ADDRESS;
    let mut i = 0u32;
    while n < MAX_SIGN_INS {
        let from: AddressKey =
            std::net::IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i)).into();
        p.start_sign_in(&a, from, T0 + 2).unwrap();
        n += 1;
        i += 1;
    }
    match p.start_sign_in(&a, addr("203.0.113.9"), T0 + 3) {
        Err(PasskeyError::Busy(wait)) => assert_eq!(wait, CEREMONY_SECS - 2),
        other => panic!("{other:?}"),
    }
    // Once the oldest have expired there is room again.
    p.start_sign_in(&a, addr("203.0.113.9"), T0 + 1 + CEREMONY_SECS)
        .unwrap();
}

/// An answer for `options` from a fresh key (its check does not matter).
fn auth_answer(
    auth: &mut Authenticator,
    p: &Passkeys,
    a: &Accounts,
    user: UserId,
    options: &Value,
) -> Value {
    let reg = p.start_registration(a, user, T0).unwrap();
    auth.create(&reg.options, ORIGIN);
    auth.get(options, ORIGIN)
}

#[test]
fn the_relying_party_is_the_first_hostname() {
    let (id, origins, outside) = relying_party(&[
        "Analytics.Clinic.lan.".into(),
        "eu.analytics.clinic.lan".into(),
        "other.lan".into(),
    ])
    .unwrap();
    assert_eq!(id, "analytics.clinic.lan");
    let origins: Vec<&str> = origins.iter().map(Url::as_str).collect();
    assert_eq!(
        origins,
        [
            "https://analytics.clinic.lan/",
            "https://eu.analytics.clinic.lan/"
        ]
    );
    assert_eq!(outside, ["other.lan"]);
    let e = relying_party(&["192.168.1.10".into()]).unwrap_err();
    assert!(e.contains("IP address"), "{e}");
    let (id, origins, _) = relying_party(&[]).unwrap();
    assert_eq!(id, "localhost");
    assert_eq!(origins.len(), 2);

    // On loopback without a hostname, http://localhost works on any port.
    let dir = tempfile::tempdir().unwrap();
    let (a, alice) = accounts(dir.path(), false);
    let p = Passkeys::new(&[]).unwrap();
    let mut auth = Authenticator::new();
    let s = p.start_registration(&a, alice, T0).unwrap();
    let answer = auth.create(&s.options, "http://localhost:8080");
    p.finish_registration(&a, alice, &s.ceremony, &answer, "x", T0)
        .unwrap();
    let s = p.start_sign_in(&a, addr("127.0.0.1"), T0).unwrap();
    let answer = auth.get(&s.options, "http://localhost:41234");
    p.finish_sign_in(&a, &s.ceremony, &answer, addr("127.0.0.1"), "t", T0 * 1000)
        .unwrap();
}
