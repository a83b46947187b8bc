//! The accounts as data: [`Record`]s, the changes, and [`State`], what
//! applying them in order gives.
//!
//! Every change to accounts is one record, appended to the journal before
//! it takes effect, and [`State::apply`] is a pure function of the state
//! and the record: no clock, no randomness (times, ids, salts and tokens
//! are decided before a record is made). So replaying the journal rebuilds
//! the state exactly, and a cluster orders the same records in its log and
//! applies them on every node alike: there each is journaled as a
//! [`Record::Logged`], which carries its log index ([`State::log_index`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::roles::{Scope, SiteRole};

/// A user id. Never reused (the next id is one past the largest ever given).
pub type UserId = u64;

/// One change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Record {
    UserAdded {
        id: UserId,
        name: String,
        admin: bool,
        at: u64,
    },
    UserRemoved {
        id: UserId,
    },
    PasswordSet {
        id: UserId,
        phc: String,
        at: u64,
    },
    PasswordRemoved {
        id: UserId,
    },
    /// A TOTP secret confirmed by a first good code (whose step is `step`).
    TotpSet {
        id: UserId,
        secret: String,
        step: u64,
        at: u64,
    },
    TotpUsed {
        id: UserId,
        step: u64,
    },
    TotpRemoved {
        id: UserId,
    },
    /// A new set of recovery codes (SHA-256 of each), replacing any old set.
    RecoveryCodesSet {
        id: UserId,
        digests: Vec<String>,
        at: u64,
    },
    RecoveryCodeUsed {
        id: UserId,
        digest: String,
    },
    /// A passkey: `credential` is its id (base64url), `passkey` what the
    /// WebAuthn library keeps of it (public key, counter, flags).
    PasskeyAdded {
        id: UserId,
        credential: String,
        name: String,
        passkey: serde_json::Value,
        at: u64,
    },
    PasskeyUsed {
        id: UserId,
        credential: String,
        passkey: serde_json::Value,
        at: u64,
    },
    PasskeyRenamed {
        id: UserId,
        credential: String,
        name: String,
    },
    PasskeyRemoved {
        id: UserId,
        credential: String,
    },
    /// An admin's reset: every factor and session of the user removed.
    FactorsReset {
        id: UserId,
    },
    SessionStarted {
        digest: String,
        id: UserId,
        csrf: String,
        method: String,
        at: u64,
        agent: String,
    },
    SessionEnded {
        digest: String,
    },
    /// A one-time link to set up an account: for a new user (`user` is
    /// `None`; `admin` says which kind), or to enrol factors for an
    /// existing one (after `hitvault user add` or an admin's reset).
    InviteCreated {
        digest: String,
        user: Option<UserId>,
        admin: bool,
        expires: u64,
    },
    InviteUsed {
        digest: String,
    },
    /// The instance role: admin or user.
    AdminSet {
        id: UserId,
        admin: bool,
    },
    /// A role on a site (by its domain), replacing any other there.
    RoleSet {
        id: UserId,
        site: String,
        role: SiteRole,
    },
    RoleRemoved {
        id: UserId,
        site: String,
    },
    /// An API token: `digest` is the SHA-256 of its secret; `sites` empty
    /// means every site its user may reach; `expires` `None` is "never",
    /// which only an admin may choose.
    TokenCreated {
        token: u64,
        digest: String,
        id: UserId,
        name: String,
        sites: Vec<String>,
        scopes: Vec<Scope>,
        expires: Option<u64>,
        at: u64,
    },
    TokenUsed {
        token: u64,
        at: u64,
    },
    TokenRevoked {
        token: u64,
    },
    /// A read-only link to one site's numbers, made by user `id`;
    /// `password` is an argon2id PHC string when it asks for one.
    ShareCreated {
        share: u64,
        digest: String,
        id: UserId,
        site: String,
        name: String,
        password: Option<String>,
        expires: u64,
        at: u64,
    },
    ShareRevoked {
        share: u64,
    },
    /// The last record of a compacted journal: ids below `next_id` were
    /// given once and are never given again, even when their user is gone
    /// (likewise tokens below `next_token` and share links below
    /// `next_share`).
    IdsGiven {
        next_id: UserId,
        #[serde(default)]
        next_token: u64,
        #[serde(default)]
        next_share: u64,
        /// The highest cluster log index applied ([`State::log_index`]).
        #[serde(default)]
        log_index: u64,
    },
    /// On a cluster node: `record`, applied from the cluster's log at
    /// `index` (the same record at the same index on every node).
    Logged {
        index: u64,
        record: Box<Record>,
    },
}

/// A user and their factors.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: UserId,
    pub name: String,
    pub admin: bool,
    pub created: u64,
    pub password: Option<(String, u64)>,
    /// Secret (base32), last step used, set at.
    pub totp: Option<Totp>,
    pub recovery: Vec<String>,
    pub recovery_created: Option<u64>,
    pub passkeys: Vec<Passkey>,
    /// Roles on sites, by domain.
    pub roles: BTreeMap<String, SiteRole>,
}

/// An API token (see [`crate::rights`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub id: u64,
    pub digest: String,
    pub user: UserId,
    pub name: String,
    pub sites: Vec<String>,
    pub scopes: Vec<Scope>,
    pub expires: Option<u64>,
    pub created: u64,
    /// The last use journaled (uses are journaled at most every
    /// [`crate::TOKEN_USE_SECS`]).
    pub last_used: Option<u64>,
}

impl Token {
    /// Whether it still admits at `now`: it expires at the start of the
    /// second `expires`.
    pub fn live(&self, now: u64) -> bool {
        self.expires.is_none_or(|e| now < e)
    }
}

/// A share link (see [`Record::ShareCreated`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Share {
    pub id: u64,
    pub digest: String,
    pub user: UserId,
    pub site: String,
    pub name: String,
    pub password: Option<String>,
    pub expires: u64,
    pub created: u64,
}

impl Share {
    pub fn live(&self, now: u64) -> bool {
        now < self.expires
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Totp {
    pub secret: String,
    pub last_step: u64,
    pub at: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Passkey {
    pub credential: String,
    pub name: String,
    pub passkey: serde_json::Value,
    pub created: u64,
    pub last_used: Option<u64>,
}

impl User {
    /// A factor a sign-in can start with (a passkey or a password).
    pub fn can_sign_in(&self) -> bool {
        self.password.is_some() || !self.passkeys.is_empty()
    }

    /// Whether the user has more than a password: a passkey (it is two
    /// factors in one: the device and its unlock) or a TOTP.
    pub fn strong(&self) -> bool {
        !self.passkeys.is_empty() || self.totp.is_some()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub digest: String,
    pub user: UserId,
    pub csrf: String,
    pub method: String,
    pub created: u64,
    pub agent: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Invite {
    pub digest: String,
    pub user: Option<UserId>,
    pub admin: bool,
    pub expires: u64,
}

/// Every user, session and open invite.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    pub users: BTreeMap<UserId, User>,
    pub sessions: BTreeMap<String, Session>,
    pub invites: BTreeMap<String, Invite>,
    pub tokens: BTreeMap<u64, Token>,
    /// Token ids by digest: the lookup of every request with a token.
    pub token_digests: BTreeMap<String, u64>,
    pub shares: BTreeMap<u64, Share>,
    /// One past the largest user id ever given.
    pub next_id: UserId,
    /// One past the largest token id ever given.
    pub next_token: u64,
    /// One past the largest share link id ever given.
    pub next_share: u64,
    /// On a cluster node, the highest log index applied here (0: none).
    pub log_index: u64,
}

/// A record that does not fit the state (a journal written by something
/// else, or edited).
#[derive(Debug, thiserror::Error)]
#[error("record does not apply: {0}")]
pub struct Inconsistent(pub String);

impl State {
    pub fn user_named(&self, name: &str) -> Option<&User> {
        self.users
            .values()
            .find(|u| u.name.eq_ignore_ascii_case(name))
    }

    pub fn has_admin(&self) -> bool {
        self.users.values().any(|u| u.admin)
    }

    fn user(&mut self, id: UserId) -> Result<&mut User, Inconsistent> {
        self.users
            .get_mut(&id)
            .ok_or_else(|| Inconsistent(format!("no user {id}")))
    }

    /// Applies one record.
    pub fn apply(&mut self, r: &Record) -> Result<(), Inconsistent> {
        match r {
            Record::UserAdded {
                id,
                name,
                admin,
                at,
            } => {
                if self.users.contains_key(id) || *id < self.next_id {
                    return Err(Inconsistent(format!("user id {id} reused")));
                }
                if self.user_named(name).is_some() {
                    return Err(Inconsistent(format!("user name {name:?} taken")));
                }
                self.next_id = id + 1;
                self.users.insert(
                    *id,
                    User {
                        id: *id,
                        name: name.clone(),
                        admin: *admin,
                        created: *at,
                        password: None,
                        totp: None,
                        recovery: Vec::new(),
                        recovery_created: None,
                        passkeys: Vec::new(),
                        roles: BTreeMap::new(),
                    },
                );
            }
            Record::UserRemoved { id } => {
                self.users
                    .remove(id)
                    .ok_or_else(|| Inconsistent(format!("no user {id}")))?;
                self.sessions.retain(|_, s| s.user != *id);
                self.invites.retain(|_, i| i.user != Some(*id));
                self.tokens.retain(|_, t| t.user != *id);
                self.token_digests
                    .retain(|_, t| self.tokens.contains_key(t));
                self.shares.retain(|_, s| s.user != *id);
            }
            Record::AdminSet { id, admin } => self.user(*id)?.admin = *admin,
            Record::RoleSet { id, site, role } => {
                self.user(*id)?.roles.insert(site.clone(), *role);
            }
            Record::RoleRemoved { id, site } => {
                self.user(*id)?
                    .roles
                    .remove(site)
                    .ok_or_else(|| Inconsistent(format!("user {id} has no role on {site}")))?;
            }
            Record::TokenCreated {
                token,
                digest,
                id,
                name,
                sites,
                scopes,
                expires,
                at,
            } => {
                self.user(*id)?;
                if *token < self.next_token {
                    return Err(Inconsistent(format!("token id {token} reused")));
                }
                self.next_token = token + 1;
                self.token_digests.insert(digest.clone(), *token);
                self.tokens.insert(
                    *token,
                    Token {
                        id: *token,
                        digest: digest.clone(),
                        user: *id,
                        name: name.clone(),
                        sites: sites.clone(),
                        scopes: scopes.clone(),
                        expires: *expires,
                        created: *at,
                        last_used: None,
                    },
                );
            }
            Record::TokenUsed { token, at } => {
                let t = self
                    .tokens
                    .get_mut(token)
                    .ok_or_else(|| Inconsistent(format!("no token {token}")))?;
                t.last_used = Some(t.last_used.unwrap_or(0).max(*at));
            }
            Record::TokenRevoked { token } => {
                let t = self
                    .tokens
                    .remove(token)
                    .ok_or_else(|| Inconsistent(format!("no token {token}")))?;
                self.token_digests.remove(&t.digest);
            }
            Record::ShareCreated {
                share,
                digest,
                id,
                site,
                name,
                password,
                expires,
                at,
            } => {
                self.user(*id)?;
                if *share < self.next_share {
                    return Err(Inconsistent(format!("share link id {share} reused")));
                }
                self.next_share = share + 1;
                self.shares.insert(
                    *share,
                    Share {
                        id: *share,
                        digest: digest.clone(),
                        user: *id,
                        site: site.clone(),
                        name: name.clone(),
                        password: password.clone(),
                        expires: *expires,
                        created: *at,
                    },
                );
            }
            Record::ShareRevoked { share } => {
                self.shares
                    .remove(share)
                    .ok_or_else(|| Inconsistent(format!("no share link {share}")))?;
            }
            Record::PasswordSet { id, phc, at } => {
                self.user(*id)?.password = Some((phc.clone(), *at))
            }
            Record::PasswordRemoved { id } => self.user(*id)?.password = None,
            Record::TotpSet {
                id,
                secret,
                step,
                at,
            } => {
                self.user(*id)?.totp = Some(Totp {
                    secret: secret.clone(),
                    last_step: *step,
                    at: *at,
                })
            }
            Record::TotpUsed { id, step } => match &mut self.user(*id)?.totp {
                Some(t) => t.last_step = t.last_step.max(*step),
                None => return Err(Inconsistent(format!("user {id} has no TOTP"))),
            },
            Record::TotpRemoved { id } => self.user(*id)?.totp = None,
            Record::RecoveryCodesSet { id, digests, at } => {
                let u = self.user(*id)?;
                u.recovery = digests.clone();
                u.recovery_created = Some(*at);
            }
            Record::RecoveryCodeUsed { id, digest } => {
                let u = self.user(*id)?;
                let before = u.recovery.len();
                u.recovery.retain(|d| d != digest);
                if u.recovery.len() == before {
                    return Err(Inconsistent(format!("user {id} has no such recovery code")));
                }
            }
            Record::PasskeyAdded {
                id,
                credential,
                name,
                passkey,
                at,
            } => {
                if self
                    .users
                    .values()
                    .any(|u| u.passkeys.iter().any(|p| &p.credential == credential))
                {
                    return Err(Inconsistent("passkey registered twice".into()));
                }
                self.user(*id)?.passkeys.push(Passkey {
                    credential: credential.clone(),
                    name: name.clone(),
                    passkey: passkey.clone(),
                    created: *at,
                    last_used: None,
                });
            }
            Record::PasskeyUsed {
                id,
                credential,
                passkey,
                at,
            } => {
                let p = self.passkey(*id, credential)?;
                p.passkey = passkey.clone();
                p.last_used = Some(*at);
            }
            Record::PasskeyRenamed {
                id,
                credential,
                name,
            } => self.passkey(*id, credential)?.name = name.clone(),
            Record::PasskeyRemoved { id, credential } => {
                let u = self.user(*id)?;
                let before = u.passkeys.len();
                u.passkeys.retain(|p| &p.credential != credential);
                if u.passkeys.len() == before {
                    return Err(Inconsistent(format!("user {id} has no such passkey")));
                }
            }
            Record::FactorsReset { id } => {
                let u = self.user(*id)?;
                u.password = None;
                u.totp = None;
                u.recovery.clear();
                u.recovery_created = None;
                u.passkeys.clear();
                self.sessions.retain(|_, s| s.user != *id);
            }
            Record::SessionStarted {
                digest,
                id,
                csrf,
                method,
                at,
                agent,
            } => {
                self.user(*id)?;
                self.sessions.insert(
                    digest.clone(),
                    Session {
                        digest: digest.clone(),
                        user: *id,
                        csrf: csrf.clone(),
                        method: method.clone(),
                        created: *at,
                        agent: agent.clone(),
                    },
                );
            }
            Record::SessionEnded { digest } => {
                self.sessions.remove(digest);
            }
            Record::InviteCreated {
                digest,
                user,
                admin,
                expires,
            } => {
                if let Some(id) = user {
                    self.user(*id)?;
                }
                self.invites.insert(
                    digest.clone(),
                    Invite {
                        digest: digest.clone(),
                        user: *user,
                        admin: *admin,
                        expires: *expires,
                    },
                );
            }
            Record::IdsGiven {
                next_id,
                next_token,
                next_share,
                log_index,
            } => {
                self.next_id = self.next_id.max(*next_id);
                self.next_token = self.next_token.max(*next_token);
                self.next_share = self.next_share.max(*next_share);
                self.log_index = self.log_index.max(*log_index);
            }
            Record::Logged { index, record } => {
                if *index <= self.log_index {
                    return Err(Inconsistent(format!(
                        "log index {index} is not above {}",
                        self.log_index
                    )));
                }
                if matches!(**record, Record::Logged { .. } | Record::IdsGiven { .. }) {
                    return Err(Inconsistent(
                        "a logged record holds a record of its own kind".into(),
                    ));
                }
                self.apply(record)?;
                self.log_index = *index;
            }
            Record::InviteUsed { digest } => {
                self.invites
                    .remove(digest)
                    .ok_or_else(|| Inconsistent("no such invite".into()))?;
            }
        }
        Ok(())
    }

    fn passkey(&mut self, id: UserId, credential: &str) -> Result<&mut Passkey, Inconsistent> {
        self.user(id)?
            .passkeys
            .iter_mut()
            .find(|p| p.credential == credential)
            .ok_or_else(|| Inconsistent(format!("user {id} has no such passkey")))
    }

    /// Records that rebuild this state from nothing (the journal's
    /// compaction). Sessions and invites that have ended are not in it.
    pub fn to_records(&self) -> Vec<Record> {
        let mut out = Vec::new();
        for u in self.users.values() {
            out.push(Record::UserAdded {
                id: u.id,
                name: u.name.clone(),
                admin: u.admin,
                at: u.created,
            });
            for (site, role) in &u.roles {
                out.push(Record::RoleSet {
                    id: u.id,
                    site: site.clone(),
                    role: *role,
                });
            }
            if let Some((phc, at)) = &u.password {
                out.push(Record::PasswordSet {
                    id: u.id,
                    phc: phc.clone(),
                    at: *at,
                });
            }
            if let Some(t) = &u.totp {
                out.push(Record::TotpSet {
                    id: u.id,
                    secret: t.secret.clone(),
                    step: t.last_step,
                    at: t.at,
                });
            }
            if let Some(at) = u.recovery_created {
                out.push(Record::RecoveryCodesSet {
                    id: u.id,
                    digests: u.recovery.clone(),
                    at,
                });
            }
            for p in &u.passkeys {
                out.push(Record::PasskeyAdded {
                    id: u.id,
                    credential: p.credential.clone(),
                    name: p.name.clone(),
                    passkey: p.passkey.clone(),
                    at: p.created,
                });
                if let Some(at) = p.last_used {
                    out.push(Record::PasskeyUsed {
                        id: u.id,
                        credential: p.credential.clone(),
                        passkey: p.passkey.clone(),
                        at,
                    });
                }
            }
        }
        for s in self.sessions.values() {
            out.push(Record::SessionStarted {
                digest: s.digest.clone(),
                id: s.user,
                csrf: s.csrf.clone(),
                method: s.method.clone(),
                at: s.created,
                agent: s.agent.clone(),
            });
        }
        for i in self.invites.values() {
            out.push(Record::InviteCreated {
                digest: i.digest.clone(),
                user: i.user,
                admin: i.admin,
                expires: i.expires,
            });
        }
        for t in self.tokens.values() {
            out.push(Record::TokenCreated {
                token: t.id,
                digest: t.digest.clone(),
                id: t.user,
                name: t.name.clone(),
                sites: t.sites.clone(),
                scopes: t.scopes.clone(),
                expires: t.expires,
                at: t.created,
            });
            if let Some(at) = t.last_used {
                out.push(Record::TokenUsed { token: t.id, at });
            }
        }
        for s in self.shares.values() {
            out.push(Record::ShareCreated {
                share: s.id,
                digest: s.digest.clone(),
                id: s.user,
                site: s.site.clone(),
                name: s.name.clone(),
                password: s.password.clone(),
                expires: s.expires,
                at: s.created,
            });
        }
        out.push(Record::IdsGiven {
            next_id: self.next_id,
            next_token: self.next_token,
            next_share: self.next_share,
            log_index: self.log_index,
        });
        out
    }

    /// True if no record ever changed this state (a new journal).
    pub fn is_new(&self) -> bool {
        *self == State::default()
    }
}
