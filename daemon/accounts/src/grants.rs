//! What users are given beyond their factors: the instance role, roles on
//! sites, API tokens and share links (the rules are [`crate::rights`]).
//!
//! Tokens and share links are random secrets shown once and kept as their
//! SHA-256, like sessions. A token is `hvt_` and 43 base64url characters;
//! a share link's secret is the last part of its URL.

use crate::rights::{Scope, SiteRole};
use crate::state::{Record, Share, Token, User, UserId};
use crate::{AccountError, Accounts, AddressKey, SignInError, password, secret};

/// The prefix of every API token (so a leaked one is recognisable).
pub const TOKEN_PREFIX: &str = "hvt_";
/// A token's use is journaled at most this often (seconds); the account
/// page shows the last use to this precision.
pub const TOKEN_USE_SECS: u64 = 300;
/// Tokens one user may hold.
pub const MAX_TOKENS_PER_USER: usize = 50;
/// Share links one site may have.
pub const MAX_SHARES_PER_SITE: usize = 50;
/// Sites one token may name.
pub const MAX_TOKEN_SITES: usize = 64;
/// The longest a token or share link may live, unless an admin makes a
/// token that never expires (seconds: 366 days).
pub const MAX_LIFETIME_SECS: u64 = 366 * 86_400;
/// The longest token or share link name, in characters.
pub const MAX_LABEL: usize = 64;

/// What a new token is for.
#[derive(Debug, Clone)]
pub struct TokenSpec {
    pub name: String,
    /// Empty: every site its user may reach.
    pub sites: Vec<String>,
    pub scopes: Vec<Scope>,
    /// Unix seconds; `None` is "never", for admins only.
    pub expires: Option<u64>,
}

/// A token or share link just made: `secret` is shown once.
#[derive(Debug, Clone)]
pub struct NewSecret {
    pub id: u64,
    pub secret: String,
}

/// A live token and the user it acts for, as a request sees them.
#[derive(Debug, Clone)]
pub struct TokenView {
    pub token: Token,
    pub user: User,
}

fn label(what: &str, name: &str) -> Result<String, AccountError> {
    let name = name.trim();
    let n = name.chars().count();
    if n == 0 || n > MAX_LABEL || name.chars().any(char::is_control) {
        return Err(AccountError::Invalid(format!(
            "a {what} name has 1 to {MAX_LABEL} printable characters"
        )));
    }
    Ok(name.to_owned())
}

fn expiry(expires: u64, now: u64) -> Result<(), AccountError> {
    if expires <= now {
        return Err(AccountError::Invalid(
            "the expiry must be in the future".into(),
        ));
    }
    if expires - now > MAX_LIFETIME_SECS {
        return Err(AccountError::Invalid(format!(
            "the expiry may be at most {} days ahead",
            MAX_LIFETIME_SECS / 86_400
        )));
    }
    Ok(())
}

impl Accounts {
    /// Makes `id` an admin or a user. The last admin stays one.
    pub fn set_admin(&self, id: UserId, admin: bool) -> Result<(), AccountError> {
        let mut inner = self.lock();
        let u = inner.user(id)?;
        if u.admin == admin {
            return Ok(());
        }
        if !admin && inner.state.users.values().filter(|u| u.admin).count() == 1 {
            return Err(AccountError::Conflict(
                "the last admin stays an admin; make another admin first".into(),
            ));
        }
        inner.commit(Record::AdminSet { id, admin })
    }

    /// Gives `id` `role` on `site`, or takes their role there (`None`).
    /// The caller checks that the site exists.
    pub fn set_role(
        &self,
        id: UserId,
        site: &str,
        role: Option<SiteRole>,
    ) -> Result<(), AccountError> {
        let mut inner = self.lock();
        let has = inner.user(id)?.roles.get(site).copied();
        match role {
            Some(role) if has == Some(role) => Ok(()),
            Some(role) => inner.commit(Record::RoleSet {
                id,
                site: site.to_owned(),
                role,
            }),
            None if has.is_none() => Ok(()),
            None => inner.commit(Record::RoleRemoved {
                id,
                site: site.to_owned(),
            }),
        }
    }

    /// The members of `site` and their roles, by name.
    pub fn members(&self, site: &str) -> Vec<(User, SiteRole)> {
        let inner = self.lock();
        let mut out: Vec<(User, SiteRole)> = inner
            .state
            .users
            .values()
            .filter_map(|u| u.roles.get(site).map(|r| (u.clone(), *r)))
            .collect();
        out.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        out
    }

    /// A new API token for `user`. `by_admin` allows "never" as expiry.
    pub fn create_token(
        &self,
        user: UserId,
        spec: TokenSpec,
        by_admin: bool,
        now: u64,
    ) -> Result<NewSecret, AccountError> {
        let name = label("token", &spec.name)?;
        if spec.scopes.is_empty() {
            return Err(AccountError::Invalid(
                "a token needs at least one scope: stats:read, ingest, export or admin".into(),
            ));
        }
        if spec.sites.len() > MAX_TOKEN_SITES {
            return Err(AccountError::Invalid(format!(
                "a token may name at most {MAX_TOKEN_SITES} sites"
            )));
        }
        match spec.expires {
            Some(e) => expiry(e, now)?,
            None if by_admin => {}
            None => {
                return Err(AccountError::Invalid(
                    "only an admin may make a token that never expires; give an expiry".into(),
                ));
            }
        }
        let mut scopes = spec.scopes;
        scopes.sort();
        scopes.dedup();
        let mut sites = spec.sites;
        sites.sort();
        sites.dedup();
        let mut inner = self.lock();
        inner.user(user)?;
        if inner
            .state
            .tokens
            .values()
            .filter(|t| t.user == user)
            .count()
            >= MAX_TOKENS_PER_USER
        {
            return Err(AccountError::Conflict(format!(
                "a user may hold at most {MAX_TOKENS_PER_USER} tokens; revoke one first"
            )));
        }
        let secret = format!("{TOKEN_PREFIX}{}", secret::token());
        let id = inner.state.next_token.max(1);
        inner.commit(Record::TokenCreated {
            token: id,
            digest: secret::digest(&secret),
            id: user,
            name,
            sites,
            scopes,
            expires: spec.expires,
            at: now,
        })?;
        Ok(NewSecret { id, secret })
    }

    /// Every token (`user` `None`) or those of one user, oldest first.
    pub fn tokens(&self, user: Option<UserId>) -> Vec<Token> {
        let inner = self.lock();
        inner
            .state
            .tokens
            .values()
            .filter(|t| user.is_none_or(|u| t.user == u))
            .cloned()
            .collect()
    }

    /// Revokes token `id`; with `owner` set, only if it is theirs.
    pub fn revoke_token(&self, id: u64, owner: Option<UserId>) -> Result<Token, AccountError> {
        let mut inner = self.lock();
        let t = inner
            .state
            .tokens
            .get(&id)
            .filter(|t| owner.is_none_or(|o| t.user == o))
            .cloned()
            .ok_or_else(|| AccountError::NotFound(format!("no token with id {id}")))?;
        inner.commit(Record::TokenRevoked { token: id })?;
        Ok(t)
    }

    /// The live token whose secret is `secret`, and its user. Journaling
    /// the use is the caller's: [`Accounts::token_used`], when
    /// [`Accounts::token_use_due`].
    pub fn token(&self, secret: &str, now: u64) -> Option<TokenView> {
        if !secret.starts_with(TOKEN_PREFIX) {
            return None;
        }
        let digest = secret::digest(secret);
        let inner = self.lock();
        // A lookup by the SHA-256 of a random secret: its timing tells
        // nothing of the secret.
        let id = inner.state.token_digests.get(&digest)?;
        let token = inner.state.tokens.get(id)?;
        if !token.live(now) {
            return None;
        }
        let user = inner.state.users.get(&token.user)?.clone();
        Some(TokenView {
            token: token.clone(),
            user,
        })
    }

    /// The live token `id` and its user (a stream re-checking its caller).
    pub fn token_by_id(&self, id: u64, now: u64) -> Option<TokenView> {
        let inner = self.lock();
        let token = inner.state.tokens.get(&id).filter(|t| t.live(now))?;
        let user = inner.state.users.get(&token.user)?.clone();
        Some(TokenView {
            token: token.clone(),
            user,
        })
    }

    /// Journals a use of token `id` at `now` when the last journaled one
    /// is [`TOKEN_USE_SECS`] old or more (one fsync; call it off the
    /// request's thread).
    pub fn token_used(&self, id: u64, now: u64) -> Result<(), AccountError> {
        let mut inner = self.lock();
        match inner.state.tokens.get(&id) {
            Some(t) if Accounts::token_use_due(t, now) => {
                inner.commit(Record::TokenUsed { token: id, at: now })
            }
            _ => Ok(()),
        }
    }

    /// Whether a use of `t` at `now` should be journaled.
    pub fn token_use_due(t: &Token, now: u64) -> bool {
        t.last_used.is_none_or(|l| now >= l + TOKEN_USE_SECS)
    }

    /// A new share link to `site`'s numbers, made by `user`.
    pub fn create_share(
        &self,
        user: UserId,
        site: &str,
        name: &str,
        password: Option<&str>,
        expires: u64,
        now: u64,
    ) -> Result<NewSecret, AccountError> {
        let name = label("share link", name)?;
        expiry(expires, now)?;
        let phc = match password {
            Some(p) => {
                crate::password::check_new(p).map_err(AccountError::Invalid)?;
                Some(password::hash(p))
            }
            None => None,
        };
        let mut inner = self.lock();
        inner.user(user)?;
        if inner
            .state
            .shares
            .values()
            .filter(|s| s.site == site)
            .count()
            >= MAX_SHARES_PER_SITE
        {
            return Err(AccountError::Conflict(format!(
                "a site may have at most {MAX_SHARES_PER_SITE} share links; revoke one first"
            )));
        }
        let secret = secret::token();
        let id = inner.state.next_share.max(1);
        inner.commit(Record::ShareCreated {
            share: id,
            digest: secret::digest(&secret),
            id: user,
            site: site.to_owned(),
            name,
            password: phc,
            expires,
            at: now,
        })?;
        Ok(NewSecret { id, secret })
    }

    /// Every share link of `site` (or of every site), oldest first.
    pub fn shares(&self, site: Option<&str>) -> Vec<Share> {
        let inner = self.lock();
        inner
            .state
            .shares
            .values()
            .filter(|s| site.is_none_or(|x| s.site == x))
            .cloned()
            .collect()
    }

    /// Revokes share link `id` of `site`.
    pub fn revoke_share(&self, id: u64, site: &str) -> Result<Share, AccountError> {
        let mut inner = self.lock();
        let s = inner
            .state
            .shares
            .get(&id)
            .filter(|s| s.site == site)
            .cloned()
            .ok_or_else(|| AccountError::NotFound(format!("no share link with id {id}")))?;
        inner.commit(Record::ShareRevoked { share: id })?;
        Ok(s)
    }

    /// Checks the password of share link `share` typed from `addr`: the
    /// same growing delays as sign-in (the limiter's "account" is the
    /// link), and one argon2id verification. `Ok` carries the value of
    /// the link's pass cookie ([`Accounts::share_pass`]).
    pub fn share_password(
        &self,
        share: &Share,
        typed: &str,
        addr: AddressKey,
        now_ms: u64,
    ) -> Result<String, SignInError> {
        // A space: no user name has one, so the keys never meet.
        let key = format!("share {}", share.id);
        let phc = share.password.as_deref().unwrap_or(&self.dummy_phc);
        if let Some(ms) = self.wait_ms(&key, addr, now_ms) {
            return Err(SignInError::TooMany(ms.div_ceil(1000).max(1)));
        }
        if share.password.is_none() || !password::verify(typed, phc) {
            self.lock_limiter().failed(&key, addr, now_ms);
            return Err(SignInError::Failed);
        }
        self.lock_limiter().succeeded(&key, addr);
        Ok(Self::share_pass(share).expect("the link has a password"))
    }

    /// The value of the cookie that admits a browser to the password-
    /// protected share link `share` (`None` without a password):
    /// `<id>.<HMAC-SHA256 of the id and secret digest, keyed by the
    /// link's password hash>`. Only the server can make it (the hash never
    /// leaves it), it is good for this link only, and it stops working
    /// with the link (revoked or expired: the link is not found).
    pub fn share_pass(share: &Share) -> Option<String> {
        let phc = share.password.as_deref()?;
        let msg = format!("hitvault share {} {}", share.id, share.digest);
        Some(format!(
            "{}.{}",
            share.id,
            secret::mac(phc.as_bytes(), msg.as_bytes())
        ))
    }

    /// Whether the cookie value `pass` admits to `share` (always, for a
    /// link without a password).
    pub fn share_pass_ok(share: &Share, pass: Option<&str>) -> bool {
        match (Self::share_pass(share), pass) {
            (None, _) => true,
            (Some(want), Some(got)) => secret::same(&want, got),
            (Some(_), None) => false,
        }
    }

    /// The live share link whose secret is `secret`.
    pub fn share(&self, secret: &str, now: u64) -> Option<Share> {
        let digest = secret::digest(secret);
        let inner = self.lock();
        inner
            .state
            .shares
            .values()
            .find(|s| secret::same(&s.digest, &digest))
            .filter(|s| s.live(now))
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Limits, Policy};

    fn open() -> (tempfile::TempDir, Accounts) {
        let dir = tempfile::tempdir().unwrap();
        let a = Accounts::open(dir.path(), Policy::default(), Limits::default(), 1000).unwrap();
        (dir, a)
    }

    fn spec(expires: Option<u64>) -> TokenSpec {
        TokenSpec {
            name: "ci".into(),
            sites: vec!["a.test".into()],
            scopes: vec![Scope::StatsRead],
            expires,
        }
    }

    #[test]
    fn a_token_admits_until_the_second_it_expires_and_not_after_revocation() {
        let (_d, a) = open();
        let u = a.add_user("ana", false, 1000).unwrap();
        let t = a.create_token(u, spec(Some(2000)), false, 1000).unwrap();
        assert!(t.secret.starts_with(TOKEN_PREFIX));
        assert_eq!(a.token(&t.secret, 1999).unwrap().user.id, u);
        assert!(a.token(&t.secret, 2000).is_none(), "expired at 2000");
        assert!(a.token("hvt_wrong", 1500).is_none());
        assert!(a.revoke_token(t.id, Some(u + 1)).is_err(), "not theirs");
        a.revoke_token(t.id, Some(u)).unwrap();
        assert!(a.token(&t.secret, 1500).is_none());
    }

    #[test]
    fn token_rules_are_enforced_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let a = Accounts::open(dir.path(), Policy::default(), Limits::default(), 1000).unwrap();
        let u = a.add_user("ana", false, 1000).unwrap();
        let e = a.create_token(u, spec(None), false, 1000).unwrap_err();
        assert!(e.to_string().contains("only an admin"), "{e}");
        assert!(a.create_token(u, spec(None), true, 1000).is_ok());
        assert!(a.create_token(u, spec(Some(1000)), false, 1000).is_err());
        let far = 1000 + MAX_LIFETIME_SECS + 1;
        assert!(a.create_token(u, spec(Some(far)), false, 1000).is_err());
        let mut none = spec(Some(5000));
        none.scopes.clear();
        assert!(a.create_token(u, none, false, 1000).is_err());
        let t = a.create_token(u, spec(Some(5000)), false, 1000).unwrap();
        a.token_used(t.id, 1200).unwrap();
        a.set_role(u, "a.test", Some(SiteRole::Editor)).unwrap();
        let s = a
            .create_share(u, "a.test", "board", Some("a long password"), 9000, 1000)
            .unwrap();
        drop(a);
        let a = Accounts::open(dir.path(), Policy::default(), Limits::default(), 1300).unwrap();
        let v = a.token(&t.secret, 1300).unwrap();
        assert_eq!(v.token.last_used, Some(1200));
        assert_eq!(v.user.roles.get("a.test"), Some(&SiteRole::Editor));
        let share = a.share(&s.secret, 1300).unwrap();
        assert!(password::verify(
            "a long password",
            share.password.as_ref().unwrap()
        ));
        assert!(a.share(&s.secret, 9000).is_none(), "expired");
        // Ids are never given twice, even after revocation and a reopen.
        a.revoke_token(t.id, None).unwrap();
        let t2 = a.create_token(u, spec(Some(5000)), false, 1300).unwrap();
        assert!(t2.id > t.id);
    }

    #[test]
    fn a_share_password_is_checked_under_the_limiter_and_gives_a_pass() {
        let (_d, a) = open();
        let u = a.add_user("ana", false, 1000).unwrap();
        let with = a
            .create_share(u, "a.test", "board", Some("a long password"), 9000, 1000)
            .unwrap();
        let open_link = a
            .create_share(u, "a.test", "open", None, 9000, 1000)
            .unwrap();
        let s = a.share(&with.secret, 1000).unwrap();
        let o = a.share(&open_link.secret, 1000).unwrap();
        let addr = AddressKey::from(std::net::IpAddr::from([192, 0, 2, 1]));
        assert!(Accounts::share_pass_ok(&o, None), "no password, no pass");
        assert!(!Accounts::share_pass_ok(&s, None));
        let pass = a
            .share_password(&s, "a long password", addr, 1_000_000)
            .unwrap();
        assert!(Accounts::share_pass_ok(&s, Some(&pass)));
        assert!(!Accounts::share_pass_ok(&s, Some(&format!("{pass}0"))));
        // The pass of one link does not open another.
        let other = a
            .create_share(u, "a.test", "other", Some("a long password"), 9000, 1000)
            .unwrap();
        let other = a.share(&other.secret, 1000).unwrap();
        assert!(!Accounts::share_pass_ok(&other, Some(&pass)));
        // Wrong passwords, then the delay.
        let mut last = Ok(String::new());
        for _ in 0..6 {
            last = a.share_password(&s, "wrong password", addr, 1_000_000);
        }
        assert!(matches!(last, Err(SignInError::TooMany(_))), "{last:?}");
        assert!(matches!(
            a.share_password(&o, "anything", addr, 1_000_000),
            Err(SignInError::Failed)
        ));
    }

    #[test]
    fn the_last_admin_stays_and_roles_come_and_go() {
        let (_d, a) = open();
        let root = a.add_user("root", true, 1000).unwrap();
        let ana = a.add_user("ana", false, 1000).unwrap();
        assert!(a.set_admin(root, false).is_err());
        a.set_admin(ana, true).unwrap();
        a.set_admin(root, false).unwrap();
        a.set_role(root, "a.test", Some(SiteRole::Viewer)).unwrap();
        a.set_role(root, "a.test", Some(SiteRole::Owner)).unwrap();
        assert_eq!(a.members("a.test").len(), 1);
        assert_eq!(a.members("a.test")[0].1, SiteRole::Owner);
        a.set_role(root, "a.test", None).unwrap();
        a.set_role(root, "a.test", None).unwrap();
        assert!(a.members("a.test").is_empty());
    }
}
