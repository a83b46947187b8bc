//! Who may do what: roles, token scopes, and the one decision over them.
//!
//! An instance has admins and users ([`crate::User::admin`]). A user holds
//! a [`SiteRole`] per site: a viewer reads its numbers, an editor also
//! changes its goals, funnels and settings, an owner also manages its
//! members and share links and may take its data out (Takeout). An admin
//! may do everything on every site, and manage users and sites.
//!
//! An API token acts for the user who made it, narrowed twice: to its
//! [`Scope`]s, and to its sites when it names any. Its user's roles are
//! read at each request, so a user who loses a role loses it for their
//! tokens too.
//!
//! [`may`] is the decision. It is pure, allocation-free and costs well
//! under a microsecond (see the `authorize` benchmark of `hitvault-bench`).

use serde::Serialize;

pub use crate::roles::{Scope, SiteRole};
use crate::state::{Token, User};

/// What a route needs on a site (or on the instance, for [`Right::Admin`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Right {
    /// Read the site's numbers: viewer or more; token scope `stats:read`.
    View,
    /// Change its goals, funnels and settings: editor or more; scope `admin`.
    Edit,
    /// Manage its members and share links: owner; scope `admin`.
    Manage,
    /// Take its data out (Takeout): owner; scope `export`.
    Export,
    /// Send hits for it: editor or more; scope `ingest`.
    Ingest,
    /// Manage users, sites and the instance: an admin; scope `admin`.
    Admin,
}

impl Right {
    pub fn as_str(self) -> &'static str {
        match self {
            Right::View => "view",
            Right::Edit => "edit",
            Right::Manage => "manage",
            Right::Export => "export",
            Right::Ingest => "ingest",
            Right::Admin => "admin",
        }
    }

    /// The least role that holds this right on a site (none for
    /// [`Right::Admin`], which no site role holds).
    pub fn role(self) -> Option<SiteRole> {
        match self {
            Right::View => Some(SiteRole::Viewer),
            Right::Edit | Right::Ingest => Some(SiteRole::Editor),
            Right::Manage | Right::Export => Some(SiteRole::Owner),
            Right::Admin => None,
        }
    }

    /// The scope a token needs for this right.
    pub fn scope(self) -> Scope {
        match self {
            Right::View => Scope::StatsRead,
            Right::Ingest => Scope::Ingest,
            Right::Export => Scope::Export,
            Right::Edit | Right::Manage | Right::Admin => Scope::Admin,
        }
    }
}

/// Who asks, as far as rights go.
#[derive(Debug, Clone, Copy)]
pub enum Principal<'a> {
    /// The operator on this machine (loopback, or the control socket).
    Operator,
    /// A signed-in user.
    User(&'a User),
    /// A token, and the user it acts for.
    Token(&'a Token, &'a User),
}

/// Whether `who` has `right` on `site` (`None`: on every site, which only
/// an admin has; [`Right::Admin`] ignores the site).
pub fn may(who: Principal<'_>, right: Right, site: Option<&str>) -> bool {
    match who {
        Principal::Operator => true,
        Principal::User(u) => user_may(u, right, site),
        Principal::Token(t, u) => {
            t.scopes.contains(&right.scope())
                && (t.sites.is_empty()
                    || (right != Right::Admin
                        && site.is_some_and(|s| t.sites.iter().any(|x| x == s))))
                && user_may(u, right, site)
        }
    }
}

fn user_may(u: &User, right: Right, site: Option<&str>) -> bool {
    if u.admin {
        return true;
    }
    match (right.role(), site) {
        (Some(least), Some(site)) => u.roles.get(site).is_some_and(|r| *r >= least),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn user(admin: bool, roles: &[(&str, SiteRole)]) -> User {
        User {
            id: 1,
            name: "u".into(),
            admin,
            created: 0,
            password: None,
            totp: None,
            recovery: vec![],
            recovery_created: None,
            passkeys: vec![],
            roles: roles
                .iter()
                .map(|(s, r)| ((*s).to_owned(), *r))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    fn token(scopes: &[Scope], sites: &[&str]) -> Token {
        Token {
            id: 1,
            digest: String::new(),
            user: 1,
            name: "t".into(),
            sites: sites.iter().map(|s| (*s).to_owned()).collect(),
            scopes: scopes.to_vec(),
            expires: None,
            created: 0,
            last_used: None,
        }
    }

    #[test]
    fn roles_include_the_ones_below_and_only_on_their_site() {
        let rights = [
            Right::View,
            Right::Edit,
            Right::Ingest,
            Right::Manage,
            Right::Export,
        ];
        for (role, allowed) in [
            (SiteRole::Viewer, 1),
            (SiteRole::Editor, 3),
            (SiteRole::Owner, 5),
        ] {
            let u = user(false, &[("a.test", role)]);
            let got: Vec<Right> = rights
                .into_iter()
                .filter(|r| may(Principal::User(&u), *r, Some("a.test")))
                .collect();
            assert_eq!(got, rights[..allowed].to_vec(), "{role:?}");
            for r in rights {
                assert!(
                    !may(Principal::User(&u), r, Some("b.test")),
                    "{role:?} {r:?}"
                );
                assert!(
                    !may(Principal::User(&u), r, None),
                    "{role:?} {r:?} all sites"
                );
            }
            assert!(!may(Principal::User(&u), Right::Admin, None));
        }
        let admin = user(true, &[]);
        for r in rights.into_iter().chain([Right::Admin]) {
            assert!(may(Principal::User(&admin), r, Some("b.test")));
            assert!(may(Principal::User(&admin), r, None));
        }
    }

    #[test]
    fn a_token_is_its_user_narrowed_to_its_scopes_and_sites() {
        let owner = user(
            false,
            &[("a.test", SiteRole::Owner), ("b.test", SiteRole::Owner)],
        );
        let read_a = token(&[Scope::StatsRead], &["a.test"]);
        let p = Principal::Token(&read_a, &owner);
        assert!(may(p, Right::View, Some("a.test")));
        assert!(
            !may(p, Right::View, Some("b.test")),
            "site outside the token"
        );
        assert!(!may(p, Right::Export, Some("a.test")), "scope missing");
        assert!(!may(p, Right::Edit, Some("a.test")), "scope missing");
        let export_any = token(&[Scope::Export], &[]);
        let p = Principal::Token(&export_any, &owner);
        assert!(may(p, Right::Export, Some("b.test")));
        assert!(!may(p, Right::Export, None), "every site needs an admin");
        let viewer = user(false, &[("a.test", SiteRole::Viewer)]);
        let all = token(&Scope::ALL, &[]);
        let p = Principal::Token(&all, &viewer);
        assert!(may(p, Right::View, Some("a.test")));
        assert!(
            !may(p, Right::Export, Some("a.test")),
            "no more than the user"
        );
        assert!(!may(p, Right::Admin, None));
        let admin = user(true, &[]);
        let admin_scoped = token(&[Scope::Admin], &["a.test"]);
        let p = Principal::Token(&admin_scoped, &admin);
        assert!(may(p, Right::Edit, Some("a.test")));
        assert!(
            !may(p, Right::Admin, None),
            "a token narrowed to sites is not an instance admin"
        );
        let admin_all = token(&[Scope::Admin], &[]);
        assert!(may(
            Principal::Token(&admin_all, &admin),
            Right::Admin,
            None
        ));
    }

    #[test]
    fn names_round_trip() {
        for r in SiteRole::ALL {
            assert_eq!(SiteRole::parse(r.as_str()), Some(r));
        }
        for s in Scope::ALL {
            assert_eq!(Scope::parse(s.as_str()), Some(s));
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        assert_eq!(Scope::parse("stats"), None);
    }
}
