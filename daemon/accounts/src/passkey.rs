//! Passkeys: the WebAuthn ceremonies (registration and discoverable
//! sign-in), checked by `webauthn-rs-core`.
//!
//! **Relying party.** Its id is the first configured hostname (a passkey
//! needs a DNS name; an IP address cannot be one), or `localhost` when no
//! hostname is set. The accepted origins are `https://` on each hostname
//! that lies within that id (the browser refuses any other: a page on
//! `a.lan` cannot use passkeys of `b.lan`), on any port; with `localhost`
//! also `http://localhost`, which browsers treat as a secure context.
//!
//! **Discoverable credentials, resident key required.** Sign-in asks for
//! no user name: the browser offers the passkeys it holds for the relying
//! party and the answer names the credential and its user. A credential the
//! authenticator does not keep (non-resident) can never answer that, so a
//! registration asks for a resident key as *required*: an authenticator
//! that cannot keep one fails the registration with a message, rather than
//! leaving behind a passkey that could never sign in. A browser that still
//! reports `credProps.rk = false` is refused the same way.
//!
//! **User verification preferred, required under the second-factor
//! policy.** By default a ceremony asks the authenticator to verify the
//! user (PIN, fingerprint, device unlock) where it can. A passkey that
//! verified its user at registration must do so at every sign-in after
//! (the library refuses a downgrade). When the instance requires a second
//! factor (`accounts.require_second_factor`), a passkey signs in alone only
//! as two factors in one (the device and its unlock): every ceremony then
//! *requires* verification, and an answer without it is refused.
//!
//! **Ceremony state** stays in this process's memory, never with the
//! client: each ceremony is named by a random token, is used once (taken
//! out before it is checked, so a replay finds nothing), and expires after
//! [`CEREMONY_SECS`]. Registration: one per user (a new one replaces the
//! last). Sign-in: at most [`MAX_SIGN_INS_PER_ADDRESS`] per address (the
//! oldest of that address gives way) and [`MAX_SIGN_INS`] in all (past it,
//! a new one is refused with a wait until the oldest expires).
//!
//! **Sign-in checks**: the challenge, origin, relying party, presence and
//! verification flags, the signature over the answer, that the answer's
//! user handle is the credential's owner, and that the signature counter
//! went up (when the authenticator keeps one): a counter that did not is a
//! replayed answer or a cloned authenticator. Each failure counts in the
//! sign-in limiter against the credential's owner (or, for an unknown
//! credential, the address alone), like a wrong password.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;

use url::Url;
use webauthn_rs_core::WebauthnCore;
use webauthn_rs_core::error::WebauthnError;
use webauthn_rs_core::proto::{
    AuthenticationState, Credential, PublicKeyCredential, RegisterPublicKeyCredential,
    RegistrationState, RequestRegistrationExtensions, UserVerificationPolicy,
};

use crate::secret;
use crate::{AccountError, Accounts, AddressKey, NewSession, SignInError, UserId};

/// How long a ceremony may take, from its start to its finish (seconds).
/// The browser is given [`BROWSER_TIMEOUT_SECS`], a little less, so that
/// it gives up before the server forgets.
pub const CEREMONY_SECS: u64 = 6 * 60;
/// The time the browser is given to talk to the authenticator (seconds).
pub const BROWSER_TIMEOUT_SECS: u64 = 5 * 60;
/// Sign-in ceremonies in progress, in all.
pub const MAX_SIGN_INS: usize = 1024;
/// Sign-in ceremonies in progress from one address (IPv6: one /64).
pub const MAX_SIGN_INS_PER_ADDRESS: usize = 8;
/// The longest answer from a browser that is read (bytes of JSON).
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// The name a passkey gets when none is given.
pub const DEFAULT_NAME: &str = "Passkey";
/// The key the limiter counts an unknown credential's failures under, with
/// the address (no user can have this name: it is empty).
const UNKNOWN_CREDENTIAL: &str = "";
/// The method a passkey sign-in gives its session.
pub const METHOD: &str = "passkey";

/// A refused passkey step.
#[derive(Debug, thiserror::Error)]
pub enum PasskeyError {
    /// The request or the browser's answer is malformed or does not verify;
    /// the message says which check failed.
    #[error("{0}")]
    Refused(String),
    /// The ceremony token is unknown: expired, used, or never given.
    #[error("this passkey request has expired or was already used; start again")]
    Expired,
    /// Too many failed sign-ins: try again after this many seconds.
    #[error("too many failed attempts; try again in {0} s")]
    TooMany(u64),
    /// Every sign-in slot is taken: try again after this many seconds.
    #[error("too many passkey sign-ins are in progress; try again in {0} s")]
    Busy(u64),
    /// The account change was refused (a credential already registered...).
    #[error(transparent)]
    Account(#[from] AccountError),
}

impl From<SignInError> for PasskeyError {
    fn from(e: SignInError) -> Self {
        match e {
            SignInError::TooMany(s) => PasskeyError::TooMany(s),
            SignInError::Expired => PasskeyError::Expired,
            SignInError::Failed => PasskeyError::Refused(e.to_string()),
            SignInError::Journal(j) => PasskeyError::Account(AccountError::Journal(j)),
        }
    }
}

/// A ceremony just started: `ceremony` names it at the finish, `options`
/// is what the browser passes to `navigator.credentials.create()` or
/// `.get()` (`{"publicKey": {...}}`, binary fields in base64url).
#[derive(Debug, Clone)]
pub struct Started {
    pub ceremony: String,
    pub options: serde_json::Value,
}

#[derive(Debug)]
struct Registration {
    digest: String,
    state: RegistrationState,
    expires: u64,
}

#[derive(Debug)]
struct SignIn {
    state: AuthenticationState,
    addr: AddressKey,
    started: u64,
}

#[derive(Debug, Default)]
struct Ceremonies {
    registrations: HashMap<UserId, Registration>,
    /// By the digest of their token.
    sign_ins: HashMap<String, SignIn>,
}

impl Ceremonies {
    fn purge(&mut self, now: u64) {
        self.registrations.retain(|_, r| r.expires > now);
        self.sign_ins
            .retain(|_, s| s.started.saturating_add(CEREMONY_SECS) > now);
    }
}

/// The relying party and its ceremonies in progress (see the module doc).
pub struct Passkeys {
    core: WebauthnCore,
    rp_id: String,
    origins: Vec<Url>,
    ceremonies: Mutex<Ceremonies>,
}

impl std::fmt::Debug for Passkeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passkeys")
            .field("rp_id", &self.rp_id)
            .field("origins", &self.origins)
            .finish_non_exhaustive()
    }
}

/// The relying party of `hostnames` (see the module doc): its id, the
/// origins it accepts, and the hostnames on which passkeys cannot work.
pub fn relying_party(hostnames: &[String]) -> Result<(String, Vec<Url>, Vec<String>), String> {
    let Some(first) = hostnames.first() else {
        let origins = ["https://localhost", "http://localhost"]
            .iter()
            .map(|o| Url::parse(o).expect("a fixed URL"))
            .collect();
        return Ok(("localhost".to_owned(), origins, Vec::new()));
    };
    let rp_id = first.trim_end_matches('.').to_ascii_lowercase();
    if rp_id.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!(
            "hostnames: the first, {first:?}, is an IP address; passkeys need a DNS name \
             (browsers refuse an address as the relying party)"
        ));
    }
    let mut origins = Vec::new();
    let mut outside = Vec::new();
    for h in hostnames {
        let h = h.trim_end_matches('.').to_ascii_lowercase();
        let url = Url::parse(&format!("https://{h}"))
            .map_err(|e| format!("hostnames: {h:?} is not a host name: {e}"))?;
        if url.domain() != Some(h.as_str()) {
            outside.push(h);
        } else if h == rp_id || h.ends_with(&format!(".{rp_id}")) {
            if !origins.contains(&url) {
                origins.push(url);
            }
        } else {
            outside.push(h);
        }
    }
    if origins.is_empty() {
        return Err(format!("hostnames: {first:?} is not a DNS name"));
    }
    Ok((rp_id, origins, outside))
}

impl Passkeys {
    /// The relying party of `hostnames` (see [`relying_party`]).
    pub fn new(hostnames: &[String]) -> Result<Passkeys, String> {
        let (rp_id, origins, _) = relying_party(hostnames)?;
        let core = WebauthnCore::new_unsafe_experts_only(
            "hitvault",
            &rp_id,
            origins.clone(),
            Duration::from_secs(BROWSER_TIMEOUT_SECS),
            Some(false),
            Some(true),
        );
        Ok(Passkeys {
            core,
            rp_id,
            origins,
            ceremonies: Mutex::new(Ceremonies::default()),
        })
    }

    /// The relying party id (what the browser's passkeys are bound to).
    pub fn rp_id(&self) -> &str {
        &self.rp_id
    }

    /// The accepted origins (any port).
    pub fn origins(&self) -> &[Url] {
        &self.origins
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ceremonies> {
        self.ceremonies.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn policy(accounts: &Accounts) -> UserVerificationPolicy {
        if accounts.policy().require_second_factor {
            UserVerificationPolicy::Required
        } else {
            UserVerificationPolicy::Preferred
        }
    }

    /// Ceremonies in progress: (registrations, sign-ins).
    pub fn in_progress(&self, now: u64) -> (usize, usize) {
        let mut c = self.lock();
        c.purge(now);
        (c.registrations.len(), c.sign_ins.len())
    }

    /// Starts registering a new passkey for `user` (signed in). Their
    /// passkeys are excluded, so an authenticator holding one says so.
    pub fn start_registration(
        &self,
        accounts: &Accounts,
        user: UserId,
        now: u64,
    ) -> Result<Started, PasskeyError> {
        let u = accounts
            .user(user)
            .ok_or_else(|| AccountError::NotFound(format!("no user with id {user}")))?;
        let exclude = u
            .passkeys
            .iter()
            .filter_map(|p| read_stored(&p.passkey).ok())
            .map(|c| c.cred_id)
            .collect::<Vec<_>>();
        let extensions = RequestRegistrationExtensions {
            cred_protect: None,
            uvm: None,
            cred_props: Some(true),
            min_pin_length: None,
            hmac_create_secret: None,
        };
        let builder = self
            .core
            .new_challenge_register_builder(&user_handle(user), &u.name, &u.name)
            .map_err(|e| PasskeyError::Refused(format!("cannot start a registration: {e}")))?
            .user_verification_policy(Self::policy(accounts))
            .require_resident_key(true)
            .exclude_credentials(Some(exclude))
            .extensions(Some(extensions));
        let (ccr, state) = self
            .core
            .generate_challenge_register(builder)
            .map_err(|e| PasskeyError::Refused(format!("cannot start a registration: {e}")))?;
        let ceremony = secret::token();
        let mut c = self.lock();
        c.purge(now);
        c.registrations.insert(
            user,
            Registration {
                digest: secret::digest(&ceremony),
                state,
                expires: now + CEREMONY_SECS,
            },
        );
        Ok(Started {
            ceremony,
            options: serde_json::to_value(&ccr).expect("options serialise"),
        })
    }

    /// Finishes a registration `user` started: checks the browser's
    /// `answer` (the credential `create()` gave, as JSON) and records the
    /// passkey under `name`. Returns the credential id (base64url).
    pub fn finish_registration(
        &self,
        accounts: &Accounts,
        user: UserId,
        ceremony: &str,
        answer: &serde_json::Value,
        name: &str,
        now: u64,
    ) -> Result<String, PasskeyError> {
        let state = {
            let mut c = self.lock();
            c.purge(now);
            match c.registrations.get(&user) {
                Some(r) if r.digest == secret::digest(ceremony) => {}
                _ => return Err(PasskeyError::Expired),
            }
            c.registrations.remove(&user).expect("just seen").state
        };
        let reg: RegisterPublicKeyCredential = parse_answer(answer)?;
        if reg
            .extensions
            .cred_props
            .as_ref()
            .and_then(|p| p.rk)
            .is_some_and(|rk| !rk)
        {
            return Err(PasskeyError::Refused(
                "the authenticator made a passkey it does not keep (not discoverable): \
                 it could not sign in without a user name; use another authenticator"
                    .into(),
            ));
        }
        let cred = self
            .core
            .register_credential(&reg, &state, None)
            .map_err(|e| PasskeyError::Refused(registration_refusal(&e)))?;
        let id = secret::b64url(cred.cred_id.as_ref());
        if let Some((owner, _)) = accounts.passkey_owner(&id) {
            let whose = if owner.id == user {
                "you registered it already"
            } else {
                "it belongs to another account"
            };
            return Err(AccountError::Conflict(format!(
                "this passkey is registered here already ({whose})"
            ))
            .into());
        }
        let name = match name.trim() {
            "" => DEFAULT_NAME,
            n => n,
        };
        accounts.add_passkey(user, &id, name, stored(&cred), now)?;
        Ok(id)
    }

    /// Starts a discoverable sign-in from `addr`: no user is named.
    pub fn start_sign_in(
        &self,
        accounts: &Accounts,
        addr: AddressKey,
        now: u64,
    ) -> Result<Started, PasskeyError> {
        let builder = self
            .core
            .new_challenge_authenticate_builder(Vec::new(), Some(Self::policy(accounts)))
            .map_err(|e| PasskeyError::Refused(format!("cannot start a sign-in: {e}")))?;
        let (rcr, state) = self
            .core
            .generate_challenge_authenticate(builder)
            .map_err(|e| PasskeyError::Refused(format!("cannot start a sign-in: {e}")))?;
        let ceremony = secret::token();
        let mut c = self.lock();
        c.purge(now);
        let mut theirs: Vec<(u64, String)> = c
            .sign_ins
            .iter()
            .filter(|(_, s)| s.addr == addr)
            .map(|(d, s)| (s.started, d.clone()))
            .collect();
        if theirs.len() >= MAX_SIGN_INS_PER_ADDRESS {
            theirs.sort();
            for (_, d) in &theirs[..=theirs.len() - MAX_SIGN_INS_PER_ADDRESS] {
                c.sign_ins.remove(d);
            }
        }
        if c.sign_ins.len() >= MAX_SIGN_INS {
            let oldest = c.sign_ins.values().map(|s| s.started).min().unwrap_or(now);
            let wait = (oldest + CEREMONY_SECS).saturating_sub(now).max(1);
            return Err(PasskeyError::Busy(wait));
        }
        c.sign_ins.insert(
            secret::digest(&ceremony),
            SignIn {
                state,
                addr,
                started: now,
            },
        );
        Ok(Started {
            ceremony,
            options: serde_json::to_value(&rcr).expect("options serialise"),
        })
    }

    /// Finishes a sign-in: checks the browser's `answer` (the credential
    /// `get()` gave, as JSON) against the passkey it names, records the
    /// passkey's new counter and flags, and starts a session.
    pub fn finish_sign_in(
        &self,
        accounts: &Accounts,
        ceremony: &str,
        answer: &serde_json::Value,
        addr: AddressKey,
        agent: &str,
        now_ms: u64,
    ) -> Result<NewSession, PasskeyError> {
        let now = now_ms / 1000;
        let state = {
            let mut c = self.lock();
            c.purge(now);
            c.sign_ins
                .remove(&secret::digest(ceremony))
                .ok_or(PasskeyError::Expired)?
                .state
        };
        let rsp: PublicKeyCredential = parse_answer(answer)?;
        let id = secret::b64url(&rsp.raw_id);
        let Some((user, pk)) = accounts.passkey_owner(&id) else {
            accounts.limited(UNKNOWN_CREDENTIAL, addr, now_ms)?;
            let _ = accounts.failed(UNKNOWN_CREDENTIAL, addr, now_ms);
            return Err(PasskeyError::Refused(
                "this passkey is not registered here (it may have been removed); \
                 sign in another way"
                    .into(),
            ));
        };
        accounts.limited(&user.name, addr, now_ms)?;
        let refuse = |why: String| {
            let _ = accounts.failed(&user.name, addr, now_ms);
            PasskeyError::Refused(why)
        };
        if rsp.response.user_handle.as_deref() != Some(&user_handle(user.id)[..]) {
            return Err(refuse(
                "the answer's user handle does not name this passkey's owner".into(),
            ));
        }
        let mut cred = read_stored(&pk.passkey).map_err(|e| {
            AccountError::Invalid(format!("the stored passkey {id} cannot be read: {e}"))
        })?;
        let result = self
            .core
            .authenticate_single_credential(&rsp, &state, &cred)
            .map_err(|e| refuse(sign_in_refusal(&e)))?;
        if result.counter() > cred.counter {
            cred.counter = result.counter();
        }
        cred.backup_state = result.backup_state();
        cred.backup_eligible |= result.backup_eligible();
        accounts.passkey_used(user.id, &id, stored(&cred), now)?;
        accounts
            .limiter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .succeeded(&user.name, addr);
        Ok(accounts.start_session(user.id, METHOD, agent, now)?)
    }
}

/// The user handle given to the authenticator for `user`: its id, 8 bytes
/// big-endian. Ids are never given twice, so a credential kept for a user
/// who is gone never names another; it holds nothing personal.
fn user_handle(user: UserId) -> [u8; 8] {
    user.to_be_bytes()
}

/// What is kept of a credential: the shape of webauthn-rs's `Passkey`.
fn stored(cred: &Credential) -> serde_json::Value {
    serde_json::json!({ "cred": cred })
}

fn read_stored(v: &serde_json::Value) -> Result<Credential, serde_json::Error> {
    Credential::deserialize(&v["cred"])
}

fn parse_answer<T: serde::de::DeserializeOwned>(
    answer: &serde_json::Value,
) -> Result<T, PasskeyError> {
    T::deserialize(answer).map_err(|e| {
        PasskeyError::Refused(format!(
            "the browser's answer is not a WebAuthn credential: {e}"
        ))
    })
}

/// A person's words for a failed registration check.
fn registration_refusal(e: &WebauthnError) -> String {
    match e {
        WebauthnError::UserNotVerified => "this instance requires user verification \
             (a PIN, fingerprint or device unlock) and the authenticator did not verify you"
            .into(),
        WebauthnError::UserNotPresent => "the authenticator did not confirm your presence".into(),
        WebauthnError::MismatchedChallenge => {
            "the answer belongs to another registration request; start again".into()
        }
        WebauthnError::InvalidRPOrigin | WebauthnError::CredentialCrossOrigin => {
            "the answer comes from a page this instance does not serve (origin refused)".into()
        }
        WebauthnError::InvalidRPIDHash => {
            "the passkey was made for another site (relying party id mismatch)".into()
        }
        WebauthnError::CredentialExcludedFromRequest => {
            "this authenticator holds one of your passkeys already".into()
        }
        WebauthnError::CredentialAlteredAlgFromRequest
        | WebauthnError::CredentialInsecureCryptography => {
            "the authenticator chose a key type this instance does not accept".into()
        }
        other => format!("the authenticator's answer does not verify: {other}"),
    }
}

/// A person's words for a failed sign-in check.
fn sign_in_refusal(e: &WebauthnError) -> String {
    match e {
        WebauthnError::AuthenticationFailure | WebauthnError::SignatureInvalid => {
            "the passkey's signature does not verify".into()
        }
        WebauthnError::CredentialPossibleCompromise => {
            "the passkey's signature counter did not increase: this answer was replayed \
             or the authenticator was cloned"
                .into()
        }
        WebauthnError::UserNotVerified => "user verification (a PIN, fingerprint or device \
             unlock) is required for this passkey and the authenticator did not verify you"
            .into(),
        WebauthnError::UserNotPresent => "the authenticator did not confirm your presence".into(),
        WebauthnError::MismatchedChallenge => {
            "the answer belongs to another sign-in request (replayed?); start again".into()
        }
        WebauthnError::InvalidRPOrigin | WebauthnError::CredentialCrossOrigin => {
            "the answer comes from a page this instance does not serve (origin refused)".into()
        }
        WebauthnError::InvalidRPIDHash => {
            "the passkey was made for another site (relying party id mismatch)".into()
        }
        WebauthnError::InvalidClientDataType => "the answer is not a sign-in answer".into(),
        WebauthnError::CredentialBackupEligibilityInconsistent
        | WebauthnError::CredentialMayNotBeHardwareBound => {
            "the passkey's backup flags changed since it was registered".into()
        }
        other => format!("the passkey's answer does not verify: {other}"),
    }
}

#[cfg(test)]
mod tests;
