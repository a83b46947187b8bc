//! hitvault's accounts: users, their factors, sessions and sign-in limits.
//!
//! [`Accounts`] is the one handle: it holds the [`State`] in memory and
//! the [`Journal`] that makes every change durable (appended and fsync'd
//! before the change takes effect; see [`journal`]). Changes are
//! [`Record`]s applied by a pure function ([`state`]), so the journal can
//! be replayed exactly and, later, ordered by the cluster's log.
//!
//! Factors: passwords ([`password`], argon2id), TOTP ([`totp`]), recovery
//! codes (ten, single use, stored as SHA-256) and passkeys (kept as the
//! WebAuthn library's data; the ceremonies are [`passkey`]'s). Sessions are
//! server-side records; the browser holds a random token whose SHA-256 is
//! the record's key. Sign-in attempts pass the [`limiter`].
//!
//! Every method is synchronous and may block: a password check costs tens
//! to hundreds of milliseconds of CPU, a change one fsync. Callers on an
//! async runtime run them on a blocking thread. Times are unix seconds
//! (milliseconds where the name says so), passed in, never read here.

pub mod audit;
pub mod grants;
pub mod journal;
pub mod limiter;
pub mod passkey;
pub mod password;
pub mod rights;
pub mod roles;
pub mod secret;
pub mod state;
pub mod totp;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

pub use audit::{Actor, AuditError, AuditLog, Entry, Filter, Kind, NewEntry};
pub use grants::{NewSecret, TOKEN_PREFIX, TOKEN_USE_SECS, TokenSpec, TokenView};
pub use journal::{Journal, JournalError};
pub use limiter::{AddressKey, Limiter, Limits};
pub use passkey::{PasskeyError, Passkeys};
pub use rights::{Principal, Right, Scope, SiteRole, may};
pub use state::{Invite, Passkey, Record, Session, Share, State, Token, User, UserId};

/// Instance-wide rules for accounts (settings `accounts.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Every user needs a passkey or a TOTP besides a password; a user
    /// without one who signs in with a password may only enrol one.
    pub require_second_factor: bool,
    /// A session unused this long (seconds) has ended.
    pub idle_secs: u64,
    /// A session this old (seconds) has ended, used or not.
    pub absolute_secs: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            require_second_factor: false,
            idle_secs: 60 * 60,
            absolute_secs: 12 * 60 * 60,
        }
    }
}

/// How long a setup or enrolment link stays valid (seconds).
pub const INVITE_SECS: u64 = 60 * 60;
/// How long the second step of a sign-in may take (seconds).
pub const SECOND_STEP_SECS: u64 = 5 * 60;
/// Codes tried on one second step before it must start over.
pub const SECOND_STEP_TRIES: u32 = 5;
/// Recovery codes in a set.
pub const RECOVERY_CODES: usize = 10;
/// Sessions one user may hold; a new one ends the oldest.
pub const MAX_SESSIONS_PER_USER: usize = 50;
/// The longest user name, in characters.
pub const MAX_NAME: usize = 64;
/// The longest passkey name, in characters.
pub const MAX_PASSKEY_NAME: usize = 64;

/// A refused account change.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The input is wrong (the reason says how).
    #[error("{0}")]
    Invalid(String),
    /// It clashes with what exists (a name taken).
    #[error("{0}")]
    Conflict(String),
    /// What it names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The journal could not be written: nothing changed.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// On a cluster node: the cluster did not confirm the change.
    #[error("{0}")]
    Unavailable(String),
}

impl AccountError {
    /// On a cluster node, when the cluster did not confirm the change:
    /// why (nothing changed; the caller may try again).
    pub fn unconfirmed(&self) -> Option<&str> {
        match self {
            AccountError::Unavailable(m) | AccountError::Journal(JournalError::Cluster(m)) => {
                Some(m)
            }
            _ => None,
        }
    }
}

/// A refused sign-in step.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// Wrong name, password or code. One answer for all, on purpose.
    #[error("the name, password or code is not right")]
    Failed,
    /// Too many failures: try again after this many seconds.
    #[error("too many failed attempts; try again in {0} s")]
    TooMany(u64),
    /// The link or the sign-in step has expired or was used.
    #[error("this link or sign-in step has expired or was already used")]
    Expired,
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// A session just started: `token` goes into the cookie, once.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub token: String,
    pub user: UserId,
    pub csrf: String,
    /// How the user signed in (`password`, `password+totp`, `passkey`...).
    pub method: String,
}

/// What a password sign-in leads to.
#[derive(Debug, Clone)]
pub enum SignIn {
    Done(NewSession),
    /// The user has TOTP: the second step's token (for a short-lived
    /// cookie or form field).
    SecondStep(String),
}

/// A live session, as a request sees it.
#[derive(Debug, Clone)]
pub struct SessionView {
    pub user: User,
    pub digest: String,
    pub csrf: String,
    pub created: u64,
    /// The policy wants a second factor this user lacks: only enrolment
    /// pages are open to this session.
    pub must_enrol: bool,
}

/// One of a user's sessions, for the account page.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// A public handle: the first 16 hex digits of the digest.
    pub handle: String,
    pub method: String,
    pub agent: String,
    pub created: u64,
    pub last_seen: u64,
}

#[derive(Debug)]
struct SecondStep {
    user: UserId,
    expires: u64,
    tries: u32,
}

#[derive(Debug)]
struct Inner {
    journal: Journal,
    state: State,
    /// Last request per session digest (memory only: after a restart a
    /// session's idle time counts from its first request).
    last_seen: HashMap<String, u64>,
    /// Second steps of sign-ins, by token digest.
    second: HashMap<String, SecondStep>,
    /// TOTP secrets shown but not yet confirmed, by user.
    totp_pending: HashMap<UserId, (String, u64)>,
}

impl Inner {
    /// Applies `r` and makes it durable here, or changes nothing.
    fn commit_local(&mut self, r: Record) -> Result<(), AccountError> {
        let mut next = self.state.clone();
        next.apply(&r).map_err(|e| AccountError::Invalid(e.0))?;
        self.journal.append(&r)?;
        self.state = next;
        Ok(())
    }

    fn user(&self, id: UserId) -> Result<&User, AccountError> {
        self.state
            .users
            .get(&id)
            .ok_or_else(|| AccountError::NotFound(format!("no user with id {id}")))
    }
}

/// How a cluster node's account changes reach the cluster's log (the
/// daemon implements it over its cluster node).
pub trait Replicator: Send + Sync {
    /// Proposes `record` (a [`Record`] as JSON) and waits until the log
    /// holds it and this node applied it ([`Accounts::apply_logged`]).
    /// `Ok(None)`: applied; `Ok(Some(reason))`: the log ordered it after a
    /// change it no longer fits, and no node applied it; `Err`: the cluster
    /// did not confirm it (no majority, no leader in time). Blocking.
    fn propose(&self, record: &[u8]) -> Result<Option<String>, String>;
}

/// A cluster node's link to its log: set once the cluster part started.
#[derive(Default)]
struct Link(std::sync::OnceLock<std::sync::Arc<dyn Replicator>>);

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "Link(started)"
        } else {
            "Link(starting)"
        })
    }
}

/// The accounts' lock, held by a method for the whole of its work but
/// for one thing: on a cluster node, while a change waits for the cluster
/// to order it ([`Locked::commit`]), the lock is let go, so other callers
/// (every request's session check, the log's own records being applied)
/// go on. The state may have moved on when the method continues; a change
/// is checked again when the log applies it.
struct Locked<'a> {
    accounts: &'a Accounts,
    guard: Option<std::sync::MutexGuard<'a, Inner>>,
}

impl std::ops::Deref for Locked<'_> {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        self.guard.as_ref().expect("the lock is held")
    }
}

impl std::ops::DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Inner {
        self.guard.as_mut().expect("the lock is held")
    }
}

impl Locked<'_> {
    /// Runs `f` with the lock let go.
    fn unlocked<T>(&mut self, f: impl FnOnce() -> T) -> T {
        drop(self.guard.take());
        let t = f();
        self.guard = Some(self.accounts.relock());
        t
    }

    /// Applies `r` and makes it durable, or changes nothing: here, or on
    /// a cluster node through the cluster's log (applied on every node).
    fn commit(&mut self, r: Record) -> Result<(), AccountError> {
        let Some(link) = &self.accounts.cluster else {
            return self.commit_local(r);
        };
        // Refused here at once when it does not fit what this node knows.
        let mut next = self.state.clone();
        next.apply(&r).map_err(|e| AccountError::Invalid(e.0))?;
        drop(next);
        let Some(rep) = link.0.get().cloned() else {
            return Err(AccountError::Unavailable(
                "a cluster node's accounts change through the cluster's log, which this process \
                 has not joined (the daemon is starting, or no daemon runs); nothing changed"
                    .into(),
            ));
        };
        let body = serde_json::to_vec(&r).expect("records serialize");
        match self.unlocked(|| rep.propose(&body)) {
            Ok(None) => Ok(()),
            Ok(Some(reason)) => Err(AccountError::Conflict(format!(
                "a change made at the same time on another node came first ({reason}); \
                 nothing changed"
            ))),
            Err(e) => Err(AccountError::Unavailable(format!(
                "the cluster did not confirm the change ({e}); try again"
            ))),
        }
    }

    fn start_session(
        &mut self,
        user: UserId,
        method: &str,
        agent: &str,
        now: u64,
    ) -> Result<NewSession, JournalError> {
        let token = secret::token();
        let csrf = secret::token();
        let mut theirs: Vec<&Session> = self
            .state
            .sessions
            .values()
            .filter(|s| s.user == user)
            .collect();
        let mut end = Vec::new();
        if theirs.len() >= MAX_SESSIONS_PER_USER {
            theirs.sort_by_key(|s| s.created);
            end = theirs[..=theirs.len() - MAX_SESSIONS_PER_USER]
                .iter()
                .map(|s| s.digest.clone())
                .collect();
        }
        for digest in end {
            self.commit_journal(Record::SessionEnded { digest })?;
        }
        let agent: String = agent.chars().take(120).collect();
        self.commit_journal(Record::SessionStarted {
            digest: secret::digest(&token),
            id: user,
            csrf: csrf.clone(),
            method: method.to_owned(),
            at: now,
            agent,
        })?;
        Ok(NewSession {
            token,
            user,
            csrf,
            method: method.to_owned(),
        })
    }

    /// [`Locked::commit`] for records built here, which always apply to
    /// the state they were built from (on a cluster node the log may
    /// still refuse one, or not confirm it).
    fn commit_journal(&mut self, r: Record) -> Result<(), JournalError> {
        match self.commit(r) {
            Ok(()) => Ok(()),
            Err(AccountError::Journal(e)) => Err(e),
            Err(AccountError::Unavailable(m) | AccountError::Conflict(m))
                if self.accounts.cluster.is_some() =>
            {
                Err(JournalError::Cluster(m))
            }
            Err(e) => unreachable!("a record built here does not apply: {e}"),
        }
    }
}

/// The accounts of an instance (see the crate doc).
#[derive(Debug)]
pub struct Accounts {
    inner: Mutex<Inner>,
    limiter: Mutex<Limiter>,
    policy: Policy,
    /// Checked against when the name is unknown, so that an unknown name
    /// costs what a wrong password costs.
    dummy_phc: String,
    /// On a cluster node: changes go through the cluster's log.
    cluster: Option<Link>,
}

/// A user name: 1 to 64 characters, letters, digits and `.`, `_`, `-`, `@`.
pub fn check_name(name: &str) -> Result<(), AccountError> {
    let n = name.chars().count();
    if n == 0 || n > MAX_NAME {
        return Err(AccountError::Invalid(format!(
            "a user name has 1 to {MAX_NAME} characters"
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@')))
    {
        return Err(AccountError::Invalid(format!(
            "a user name may hold letters, digits and . _ - @ only, not {c:?}"
        )));
    }
    Ok(())
}

impl Accounts {
    /// Opens the accounts kept in `dir` (created if missing, mode 0700).
    /// Sessions past their absolute lifetime and used or expired invites
    /// are dropped.
    pub fn open(
        dir: &Path,
        policy: Policy,
        limits: Limits,
        now: u64,
    ) -> Result<Accounts, JournalError> {
        let accounts = Accounts::open_dir(dir, policy, limits)?;
        accounts.purge(now)?;
        Ok(accounts)
    }

    /// Opens the accounts of a cluster node: every change goes through
    /// the cluster's log ([`Accounts::replicate_through`]) and is applied
    /// on every node alike ([`Accounts::apply_logged`]); until the link is
    /// set, changes are refused. Nothing is purged here: that too would be
    /// a change.
    pub fn open_replicated(
        dir: &Path,
        policy: Policy,
        limits: Limits,
    ) -> Result<Accounts, JournalError> {
        let mut a = Accounts::open_dir(dir, policy, limits)?;
        a.cluster = Some(Link::default());
        Ok(a)
    }

    fn open_dir(dir: &Path, policy: Policy, limits: Limits) -> Result<Accounts, JournalError> {
        std::fs::create_dir_all(dir).map_err(|source| JournalError::Io {
            path: dir.to_owned(),
            source,
        })?;
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
        let (journal, state) = Journal::open(dir)?;
        Ok(Accounts {
            inner: Mutex::new(Inner {
                journal,
                state,
                last_seen: HashMap::new(),
                second: HashMap::new(),
                totp_pending: HashMap::new(),
            }),
            limiter: Mutex::new(Limiter::new(limits)),
            policy,
            dummy_phc: password::hash(&secret::token()),
            cluster: None,
        })
    }

    /// On a cluster node, from now on changes go through `link`.
    pub fn replicate_through(&self, link: std::sync::Arc<dyn Replicator>) {
        if let Some(l) = &self.cluster {
            let _ = l.0.set(link);
        }
    }

    /// Whether changes go through a cluster's log.
    pub fn replicated(&self) -> bool {
        self.cluster.is_some()
    }

    /// The highest cluster log index applied here (0: none).
    pub fn log_index(&self) -> u64 {
        self.lock().state.log_index
    }

    /// True if these accounts hold records that did not come through a
    /// cluster's log (made while the node stood alone).
    pub fn made_alone(&self) -> bool {
        let inner = self.lock();
        inner.state.log_index == 0 && !inner.state.is_new()
    }

    /// Applies the record `body` that the cluster's log holds at `index`,
    /// on every node alike: `Ok(None)` when it applied (or was applied
    /// before: a replay), `Ok(Some(reason))` when it does not fit the
    /// state (a change made at the same time on another node came first),
    /// which every node decides alike. `Err` only if the journal cannot be
    /// written.
    pub fn apply_logged(&self, index: u64, body: &[u8]) -> Result<Option<String>, JournalError> {
        let mut inner = self.lock();
        if index <= inner.state.log_index {
            return Ok(None);
        }
        let record: Record = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => return Ok(Some(format!("the record is unreadable: {e}"))),
        };
        let logged = Record::Logged {
            index,
            record: Box::new(record),
        };
        match inner.commit_local(logged) {
            Ok(()) => Ok(None),
            Err(AccountError::Journal(e)) => Err(e),
            Err(e) => Ok(Some(e.to_string())),
        }
    }

    /// The accounts as whole records, one JSON line each, the cluster log
    /// index they cover among them (what a cluster snapshot carries).
    pub fn snapshot_records(&self) -> Vec<u8> {
        journal::records_of(&self.lock().state)
    }

    /// Replaces these accounts with `lines` (from
    /// [`Accounts::snapshot_records`] on another node of the cluster),
    /// unless they cover no more of the cluster's log than these do.
    /// Whether they were replaced; `Err` (nothing changed) when the lines
    /// do not replay or the journal cannot be written.
    pub fn install_records(&self, lines: &[u8]) -> Result<bool, JournalError> {
        let mut inner = self.lock();
        let mine = inner.state.log_index;
        // Read first: a copy that covers less is left alone.
        let mut theirs = State::default();
        for (i, line) in lines.split(|b| *b == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            let damaged = |reason: String| JournalError::Damaged {
                path: "(snapshot)".into(),
                line: i + 1,
                reason,
            };
            let r: Record = serde_json::from_slice(line).map_err(|e| damaged(e.to_string()))?;
            theirs.apply(&r).map_err(|e| damaged(e.to_string()))?;
        }
        if theirs.log_index <= mine {
            return Ok(false);
        }
        inner.journal.compact(&theirs)?;
        inner.state = theirs;
        inner.second.clear();
        inner.totp_pending.clear();
        Ok(true)
    }

    fn lock(&self) -> Locked<'_> {
        Locked {
            accounts: self,
            guard: Some(self.relock()),
        }
    }

    fn relock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// The journal's path (what a backup copies).
    pub fn journal_path(&self) -> std::path::PathBuf {
        self.lock().journal.path().to_owned()
    }

    /// Ends sessions past their lifetimes and drops expired invites.
    pub fn purge(&self, now: u64) -> Result<(), JournalError> {
        let mut inner = self.lock();
        let p = self.policy;
        let ended: Vec<String> = inner
            .state
            .sessions
            .values()
            .filter(|s| {
                let seen = inner.last_seen.get(&s.digest).copied();
                expired(s, seen, p, now)
            })
            .map(|s| s.digest.clone())
            .collect();
        for digest in ended {
            inner.last_seen.remove(&digest);
            inner.commit_journal(Record::SessionEnded { digest })?;
        }
        let stale: Vec<String> = inner
            .state
            .invites
            .values()
            .filter(|i| i.expires <= now)
            .map(|i| i.digest.clone())
            .collect();
        for digest in stale {
            inner.commit_journal(Record::InviteUsed { digest })?;
        }
        inner.second.retain(|_, s| s.expires > now);
        inner.totp_pending.retain(|_, (_, exp)| *exp > now);
        Ok(())
    }

    pub fn has_admin(&self) -> bool {
        self.lock().state.has_admin()
    }

    pub fn users(&self) -> Vec<User> {
        self.lock().state.users.values().cloned().collect()
    }

    pub fn user(&self, id: UserId) -> Option<User> {
        self.lock().state.users.get(&id).cloned()
    }

    pub fn user_named(&self, name: &str) -> Option<User> {
        self.lock().state.user_named(name).cloned()
    }

    /// Adds a user without factors (they enrol through an invite).
    pub fn add_user(&self, name: &str, admin: bool, now: u64) -> Result<UserId, AccountError> {
        check_name(name)?;
        let mut inner = self.lock();
        if inner.state.user_named(name).is_some() {
            return Err(AccountError::Conflict(format!(
                "a user named {name:?} exists"
            )));
        }
        let id = inner.state.next_id;
        inner.commit(Record::UserAdded {
            id,
            name: name.to_owned(),
            admin,
            at: now,
        })?;
        Ok(id)
    }

    /// Removes a user, their factors and sessions. The last admin stays.
    pub fn remove_user(&self, id: UserId) -> Result<(), AccountError> {
        let mut inner = self.lock();
        let u = inner.user(id)?;
        if u.admin && inner.state.users.values().filter(|u| u.admin).count() == 1 {
            return Err(AccountError::Conflict(
                "the last admin cannot be removed; make another admin first".into(),
            ));
        }
        inner.commit(Record::UserRemoved { id })
    }

    /// A new one-time link token: to create an account (`user` `None`) or
    /// to enrol factors for `user`. Valid [`INVITE_SECS`].
    pub fn invite(
        &self,
        user: Option<UserId>,
        admin: bool,
        now: u64,
    ) -> Result<String, AccountError> {
        let token = secret::token();
        self.lock().commit(Record::InviteCreated {
            digest: secret::digest(&token),
            user,
            admin,
            expires: now + INVITE_SECS,
        })?;
        Ok(token)
    }

    /// With no admin yet, a new link to create the first one.
    pub fn setup_link(&self, now: u64) -> Result<Option<String>, AccountError> {
        if self.has_admin() {
            return Ok(None);
        }
        self.invite(None, true, now).map(Some)
    }

    /// The open invite `token` names, if it is valid at `now`.
    pub fn invite_of(&self, token: &str, now: u64) -> Option<Invite> {
        let inner = self.lock();
        inner
            .state
            .invites
            .get(&secret::digest(token))
            .filter(|i| i.expires > now)
            .cloned()
    }

    /// Uses an invite: creates the account (named `name`) or takes the
    /// existing one, sets `password` if given, ends the invite and starts a
    /// session. One use only.
    pub fn accept_invite(
        &self,
        token: &str,
        name: Option<&str>,
        password: Option<&str>,
        agent: &str,
        now: u64,
    ) -> Result<NewSession, AccountError> {
        let phc = match password {
            Some(p) => {
                password::check_new(p).map_err(AccountError::Invalid)?;
                Some(password::hash(p))
            }
            None => None,
        };
        let mut inner = self.lock();
        let digest = secret::digest(token);
        let invite = inner
            .state
            .invites
            .get(&digest)
            .filter(|i| i.expires > now)
            .cloned()
            .ok_or_else(|| {
                AccountError::NotFound(
                    "this link has expired or was already used; ask for a new one".into(),
                )
            })?;
        let id = match invite.user {
            Some(id) => id,
            None => {
                let name =
                    name.ok_or_else(|| AccountError::Invalid("a user name is needed".into()))?;
                check_name(name)?;
                if inner.state.user_named(name).is_some() {
                    return Err(AccountError::Conflict(format!(
                        "a user named {name:?} exists"
                    )));
                }
                let id = inner.state.next_id;
                inner.commit(Record::UserAdded {
                    id,
                    name: name.to_owned(),
                    admin: invite.admin,
                    at: now,
                })?;
                id
            }
        };
        inner.commit(Record::InviteUsed { digest })?;
        if let Some(phc) = phc {
            inner.commit(Record::PasswordSet { id, phc, at: now })?;
        }
        Ok(inner.start_session(id, "invite", agent, now)?)
    }

    /// Milliseconds `name` must wait before trying from `addr`, if any.
    pub fn wait_ms(&self, name: &str, addr: AddressKey, now_ms: u64) -> Option<u64> {
        self.limiter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .wait_ms(name, addr, now_ms)
    }

    fn limited(&self, name: &str, addr: AddressKey, now_ms: u64) -> Result<(), SignInError> {
        match self.wait_ms(name, addr, now_ms) {
            Some(ms) => Err(SignInError::TooMany(ms.div_ceil(1000).max(1))),
            None => Ok(()),
        }
    }

    pub(crate) fn lock_limiter(&self) -> std::sync::MutexGuard<'_, Limiter> {
        self.limiter.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn failed(&self, name: &str, addr: AddressKey, now_ms: u64) -> SignInError {
        self.limiter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .failed(name, addr, now_ms);
        SignInError::Failed
    }

    /// The first step of a password sign-in.
    pub fn sign_in_password(
        &self,
        name: &str,
        password: &str,
        addr: AddressKey,
        agent: &str,
        now_ms: u64,
    ) -> Result<SignIn, SignInError> {
        self.limited(name, addr, now_ms)?;
        let found = self.lock().state.user_named(name).map(|u| {
            (
                u.id,
                u.password.as_ref().map(|(p, _)| p.clone()),
                u.totp.is_some(),
            )
        });
        // The same work whether or not the name exists.
        let (phc, known) = match &found {
            Some((_, Some(phc), _)) => (phc.as_str(), true),
            _ => (self.dummy_phc.as_str(), false),
        };
        if !password::verify(password, phc) || !known {
            return Err(self.failed(name, addr, now_ms));
        }
        let (id, _, has_totp) = found.expect("known");
        self.limiter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .succeeded(name, addr);
        let now = now_ms / 1000;
        let mut inner = self.lock();
        if has_totp {
            let token = secret::token();
            inner.second.insert(
                secret::digest(&token),
                SecondStep {
                    user: id,
                    expires: now + SECOND_STEP_SECS,
                    tries: 0,
                },
            );
            return Ok(SignIn::SecondStep(token));
        }
        Ok(SignIn::Done(
            inner.start_session(id, "password", agent, now)?,
        ))
    }

    /// The user a sign-in's open second step (its token) is for.
    pub fn second_step_user(&self, step_token: &str, now: u64) -> Option<User> {
        let inner = self.lock();
        let step = inner
            .second
            .get(&secret::digest(step_token))
            .filter(|s| s.expires > now)?;
        inner.state.users.get(&step.user).cloned()
    }

    /// The second step: a TOTP code or a recovery code.
    pub fn sign_in_second(
        &self,
        step_token: &str,
        code: &str,
        addr: AddressKey,
        agent: &str,
        now_ms: u64,
    ) -> Result<NewSession, SignInError> {
        let now = now_ms / 1000;
        let digest = secret::digest(step_token);
        let (user, name) = {
            let mut inner = self.lock();
            let step = inner
                .second
                .get_mut(&digest)
                .filter(|s| s.expires > now)
                .ok_or(SignInError::Expired)?;
            step.tries += 1;
            if step.tries > SECOND_STEP_TRIES {
                inner.second.remove(&digest);
                return Err(SignInError::Expired);
            }
            let id = step.user;
            let name = inner.state.users.get(&id).map(|u| u.name.clone());
            (id, name.ok_or(SignInError::Expired)?)
        };
        self.limited(&name, addr, now_ms)?;
        let mut inner = self.lock();
        let u = inner
            .state
            .users
            .get(&user)
            .cloned()
            .ok_or(SignInError::Expired)?;
        let method = if let Some(t) = &u.totp
            && let Ok(step) = totp::check(&t.secret, code, now, Some(t.last_step))
        {
            inner.commit_journal(Record::TotpUsed { id: user, step })?;
            "password+totp"
        } else if let Some(d) = recovery_digest(code).filter(|d| u.recovery.contains(d)) {
            inner.commit_journal(Record::RecoveryCodeUsed {
                id: user,
                digest: d,
            })?;
            "password+recovery"
        } else {
            drop(inner);
            return Err(self.failed(&name, addr, now_ms));
        };
        inner.second.remove(&digest);
        Ok(inner.start_session(user, method, agent, now)?)
    }

    /// Starts a session for a user already proven by the caller (a passkey
    /// ceremony). `method` names how, for the account page.
    pub fn start_session(
        &self,
        user: UserId,
        method: &str,
        agent: &str,
        now: u64,
    ) -> Result<NewSession, AccountError> {
        let mut inner = self.lock();
        inner.user(user)?;
        Ok(inner.start_session(user, method, agent, now)?)
    }

    /// The live session of the cookie `token`, if any; counts as a use.
    pub fn session(&self, token: &str, now: u64) -> Option<SessionView> {
        let digest = secret::digest(token);
        let mut inner = self.lock();
        let s = inner.state.sessions.get(&digest)?.clone();
        let seen = inner.last_seen.get(&digest).copied();
        if expired(&s, seen, self.policy, now) {
            inner.last_seen.remove(&digest);
            // Ending it is best effort: it is refused either way. Not on
            // a cluster node: this runs on the request's thread, which
            // must not wait for the cluster.
            if self.cluster.is_none() {
                let _ = inner.commit_journal(Record::SessionEnded {
                    digest: digest.clone(),
                });
            }
            return None;
        }
        inner.last_seen.insert(digest.clone(), now);
        let user = inner.state.users.get(&s.user)?.clone();
        Some(SessionView {
            must_enrol: self.policy.require_second_factor && !user.strong(),
            user,
            digest,
            csrf: s.csrf,
            created: s.created,
        })
    }

    /// The live session whose digest is `digest` (a stream re-checking its
    /// caller); not counted as a use.
    pub fn session_by_digest(&self, digest: &str, now: u64) -> Option<SessionView> {
        let inner = self.lock();
        let s = inner.state.sessions.get(digest)?;
        if expired(s, inner.last_seen.get(digest).copied(), self.policy, now) {
            return None;
        }
        let user = inner.state.users.get(&s.user)?.clone();
        Some(SessionView {
            must_enrol: self.policy.require_second_factor && !user.strong(),
            user,
            digest: digest.to_owned(),
            csrf: s.csrf.clone(),
            created: s.created,
        })
    }

    /// Ends the session whose digest is `digest`.
    pub fn end_session(&self, digest: &str) -> Result<(), AccountError> {
        let mut inner = self.lock();
        if !inner.state.sessions.contains_key(digest) {
            return Ok(());
        }
        inner.last_seen.remove(digest);
        inner.commit(Record::SessionEnded {
            digest: digest.to_owned(),
        })
    }

    /// Ends `user`'s session with this public handle.
    pub fn end_session_handle(&self, user: UserId, handle: &str) -> Result<(), AccountError> {
        let digest = self
            .lock()
            .state
            .sessions
            .values()
            .find(|s| s.user == user && s.digest.starts_with(handle) && handle.len() == 16)
            .map(|s| s.digest.clone())
            .ok_or_else(|| AccountError::NotFound("no such session".into()))?;
        self.end_session(&digest)
    }

    /// Ends every session of `user` but `keep` (a digest).
    pub fn end_sessions_of(&self, user: UserId, keep: Option<&str>) -> Result<usize, AccountError> {
        let digests: Vec<String> = self
            .lock()
            .state
            .sessions
            .values()
            .filter(|s| s.user == user && Some(s.digest.as_str()) != keep)
            .map(|s| s.digest.clone())
            .collect();
        for d in &digests {
            self.end_session(d)?;
        }
        Ok(digests.len())
    }

    pub fn sessions_of(&self, user: UserId) -> Vec<SessionInfo> {
        let inner = self.lock();
        let mut out: Vec<SessionInfo> = inner
            .state
            .sessions
            .values()
            .filter(|s| s.user == user)
            .map(|s| SessionInfo {
                handle: s.digest[..16].to_owned(),
                method: s.method.clone(),
                agent: s.agent.clone(),
                created: s.created,
                last_seen: inner.last_seen.get(&s.digest).copied().unwrap_or(s.created),
            })
            .collect();
        out.sort_by_key(|s| std::cmp::Reverse(s.last_seen));
        out
    }

    /// Sets (or replaces) `user`'s password.
    pub fn set_password(&self, user: UserId, new: &str, now: u64) -> Result<(), AccountError> {
        password::check_new(new).map_err(AccountError::Invalid)?;
        let phc = password::hash(new);
        let mut inner = self.lock();
        inner.user(user)?;
        inner.commit(Record::PasswordSet {
            id: user,
            phc,
            at: now,
        })
    }

    /// Removes `user`'s password; refused when nothing else signs them in.
    pub fn remove_password(&self, user: UserId) -> Result<(), AccountError> {
        let mut inner = self.lock();
        if inner.user(user)?.passkeys.is_empty() {
            return Err(AccountError::Conflict(
                "the password is your only way to sign in: add a passkey first".into(),
            ));
        }
        inner.commit(Record::PasswordRemoved { id: user })
    }

    /// Starts TOTP enrolment: a new secret, shown to the user, confirmed by
    /// [`Accounts::confirm_totp`] within ten minutes. Returns the secret
    /// (base32) and its `otpauth://` URI.
    pub fn begin_totp(
        &self,
        user: UserId,
        issuer: &str,
        now: u64,
    ) -> Result<(String, String), AccountError> {
        let mut inner = self.lock();
        let name = inner.user(user)?.name.clone();
        let secret = totp::new_secret();
        let uri = totp::otpauth_uri(&secret, &name, issuer)
            .ok_or_else(|| AccountError::Invalid("cannot make a TOTP URI for this name".into()))?;
        inner.totp_pending.insert(user, (secret.clone(), now + 600));
        Ok((secret, uri))
    }

    /// Confirms the secret of [`Accounts::begin_totp`] with a code from it.
    pub fn confirm_totp(&self, user: UserId, code: &str, now: u64) -> Result<(), AccountError> {
        let mut inner = self.lock();
        let (secret, _) = inner
            .totp_pending
            .get(&user)
            .filter(|(_, exp)| *exp > now)
            .cloned()
            .ok_or_else(|| {
                AccountError::NotFound("no TOTP set-up in progress; start again".into())
            })?;
        let step = totp::check(&secret, code, now, None).map_err(|_| {
            AccountError::Invalid("that code does not match; check the device's clock".into())
        })?;
        inner.commit(Record::TotpSet {
            id: user,
            secret,
            step,
            at: now,
        })?;
        inner.totp_pending.remove(&user);
        Ok(())
    }

    pub fn remove_totp(&self, user: UserId) -> Result<(), AccountError> {
        let mut inner = self.lock();
        let u = inner.user(user)?;
        if u.totp.is_none() {
            return Err(AccountError::NotFound("no TOTP is set".into()));
        }
        if self.policy.require_second_factor && u.passkeys.is_empty() {
            return Err(AccountError::Conflict(
                "this instance requires a second factor: add a passkey before removing TOTP".into(),
            ));
        }
        inner.commit(Record::TotpRemoved { id: user })
    }

    /// A new set of [`RECOVERY_CODES`] codes, shown once; the old set ends.
    pub fn new_recovery_codes(&self, user: UserId, now: u64) -> Result<Vec<String>, AccountError> {
        let codes: Vec<String> = (0..RECOVERY_CODES).map(|_| recovery_code()).collect();
        let digests = codes
            .iter()
            .map(|c| recovery_digest(c).expect("made in the right form"))
            .collect();
        let mut inner = self.lock();
        inner.user(user)?;
        inner.commit(Record::RecoveryCodesSet {
            id: user,
            digests,
            at: now,
        })?;
        Ok(codes)
    }

    /// An admin's reset: every factor and session of `user` ends; returns
    /// a new enrolment link token for them.
    pub fn reset_factors(&self, user: UserId, now: u64) -> Result<String, AccountError> {
        let mut inner = self.lock();
        inner.user(user)?;
        inner.commit(Record::FactorsReset { id: user })?;
        drop(inner);
        self.invite(Some(user), false, now)
    }

    /// Records a passkey registered by `user`.
    pub fn add_passkey(
        &self,
        user: UserId,
        credential: &str,
        name: &str,
        passkey: serde_json::Value,
        now: u64,
    ) -> Result<(), AccountError> {
        let name = passkey_name(name)?;
        let mut inner = self.lock();
        inner.user(user)?;
        inner.commit(Record::PasskeyAdded {
            id: user,
            credential: credential.to_owned(),
            name,
            passkey,
            at: now,
        })
    }

    /// Records a sign-in with a passkey (its counter and flags updated).
    pub fn passkey_used(
        &self,
        user: UserId,
        credential: &str,
        passkey: serde_json::Value,
        now: u64,
    ) -> Result<(), AccountError> {
        self.lock().commit(Record::PasskeyUsed {
            id: user,
            credential: credential.to_owned(),
            passkey,
            at: now,
        })
    }

    pub fn rename_passkey(
        &self,
        user: UserId,
        credential: &str,
        name: &str,
    ) -> Result<(), AccountError> {
        let name = passkey_name(name)?;
        self.lock().commit(Record::PasskeyRenamed {
            id: user,
            credential: credential.to_owned(),
            name,
        })
    }

    /// Removes a passkey; refused when nothing else would sign the user in.
    pub fn remove_passkey(&self, user: UserId, credential: &str) -> Result<(), AccountError> {
        let mut inner = self.lock();
        let u = inner.user(user)?;
        if u.passkeys.len() == 1 && u.password.is_none() {
            return Err(AccountError::Conflict(
                "this passkey is your only way to sign in: add another passkey or a password first"
                    .into(),
            ));
        }
        inner.commit(Record::PasskeyRemoved {
            id: user,
            credential: credential.to_owned(),
        })
    }

    /// The user holding the passkey `credential`.
    pub fn passkey_owner(&self, credential: &str) -> Option<(User, Passkey)> {
        let inner = self.lock();
        inner.state.users.values().find_map(|u| {
            u.passkeys
                .iter()
                .find(|p| p.credential == credential)
                .map(|p| (u.clone(), p.clone()))
        })
    }
}

fn passkey_name(name: &str) -> Result<String, AccountError> {
    let name = name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_PASSKEY_NAME
        || name.chars().any(char::is_control)
    {
        return Err(AccountError::Invalid(format!(
            "a passkey's name has 1 to {MAX_PASSKEY_NAME} printable characters"
        )));
    }
    Ok(name.to_owned())
}

fn expired(s: &Session, last_seen: Option<u64>, p: Policy, now: u64) -> bool {
    let seen = last_seen.unwrap_or(s.created).max(s.created);
    now >= s.created.saturating_add(p.absolute_secs) || now >= seen.saturating_add(p.idle_secs)
}

/// Crockford's base32 alphabet: no I, L, O, U to misread.
const CODE_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A recovery code: 10 characters of Crockford base32 (50 bits), written
/// `XXXXX-XXXXX`.
fn recovery_code() -> String {
    let bytes = secret::random_bytes::<10>();
    let chars: String = bytes
        .iter()
        .map(|b| CODE_ALPHABET[(b & 31) as usize] as char)
        .collect();
    format!("{}-{}", &chars[..5], &chars[5..])
}

/// The stored digest of a recovery code as typed: case, spaces and dashes
/// do not matter, and the letters people confuse are read as Crockford
/// says (O as 0, I and L as 1). `None` when it cannot be a code.
fn recovery_digest(typed: &str) -> Option<String> {
    let norm: String = typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| match c.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        })
        .collect();
    (norm.len() == 10 && norm.bytes().all(|b| CODE_ALPHABET.contains(&b)))
        .then(|| secret::digest(&norm))
}

#[cfg(test)]
mod tests;
