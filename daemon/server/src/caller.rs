//! Who a request comes from, once its kind's gate admitted it, and what
//! rights that gives ([`hitvault_accounts::may`]).

use std::sync::Arc;

use hitvault_accounts::{Principal, SessionView, TokenView};

/// Who a request comes from, once admitted (see `access::admit`).
#[derive(Debug, Clone)]
pub enum Caller {
    /// A client on this machine, addressing a loopback name.
    Local,
    /// A signed-in user.
    Session(Arc<SessionView>),
    /// An API token (`Authorization: Bearer hvt_…`), JSON routes only.
    Token(Arc<TokenView>),
}

impl Caller {
    /// The session's CSRF token (none for the others).
    pub fn csrf(&self) -> Option<&str> {
        match self {
            Caller::Session(s) => Some(&s.csrf),
            Caller::Local | Caller::Token(_) => None,
        }
    }

    /// Whether `right` on `site` (`None`: every site) is the caller's
    /// (see [`hitvault_accounts::rights`]).
    pub fn may(&self, right: hitvault_accounts::Right, site: Option<&str>) -> bool {
        hitvault_accounts::may(principal(self), right, site)
    }
}

/// The principal of a caller, for [`hitvault_accounts::may`].
pub fn principal(caller: &Caller) -> Principal<'_> {
    match caller {
        Caller::Local => Principal::Operator,
        Caller::Session(s) => Principal::User(&s.user),
        Caller::Token(t) => Principal::Token(&t.token, &t.user),
    }
}
