//! The accounts as data: [`Record`]s, the changes, and [`State`], what
//! applying them in order gives.
//!
//! Every change to accounts is one record, appended to the journal before
//! it takes effect, and [`State::apply`] is a pure function of the state
//! and the record: no clock, no randomness (times, ids, salts and tokens
//! are decided before a record is made). So replaying the journal rebuilds
//! the state exactly, and the cluster can later order the same records in
//! its log and apply them on every node alike.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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
    /// The last record of a compacted journal: ids below `next_id` were
    /// given once and are never given again, even when their user is gone.
    IdsGiven {
        next_id: UserId,
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
    /// One past the largest user id ever given.
    pub next_id: UserId,
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
                    },
                );
            }
            Record::UserRemoved { id } => {
                self.users
                    .remove(id)
                    .ok_or_else(|| Inconsistent(format!("no user {id}")))?;
                self.sessions.retain(|_, s| s.user != *id);
                self.invites.retain(|_, i| i.user != Some(*id));
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
            Record::IdsGiven { next_id } => self.next_id = self.next_id.max(*next_id),
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
        out.push(Record::IdsGiven {
            next_id: self.next_id,
        });
        out
    }
}
